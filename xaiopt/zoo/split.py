"""The evaluation samples split into a search set and a held-out set: seeded, stratified, disjoint.

A study scores its trials on the search set only; the held-out set validates the choice made on
it (``xaiopt study validate``). ``holdout`` is a fraction of the samples (``0 < f < 1``, rounded to
the nearest count) or a count (``1 <= k < N``).

Stratified: each class gives the held-out set its share ``k * n_c / N``, rounded by largest
remainder so that the shares add up to ``k`` exactly (ties to the lower class index). A class
keeps at least one sample in the search set, so every class a study explains is searched on;
shares a class cannot give pass to the classes that can, again by largest remainder. Within a
class the held-out samples are the first of a seeded permutation (one generator, classes in
index order): the same labels and seed give the same split on every machine and every worker.

Example:
    >>> from collections import Counter
    >>> from xaiopt.zoo.split import holdout_split
    >>> labels = [0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 2, 2]
    >>> s = holdout_split(labels, 0.25, seed=0)
    >>> len(s.search), len(s.holdout)
    (9, 3)
    >>> sorted(Counter(labels[i] for i in s.holdout).items())
    [(0, 1), (1, 2)]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from xaiopt.config.schema import held_out_of
from xaiopt.errors import ConfigError


@dataclass(frozen=True)
class Split:
    """Sorted sample indices of the search and held-out sets (disjoint; together all samples)."""

    search: tuple[int, ...]
    holdout: tuple[int, ...]
    seed: int

    def to_dict(self) -> dict[str, object]:
        return {"search": list(self.search), "holdout": list(self.holdout), "seed": self.seed}

    @classmethod
    def from_dict(cls, d: dict[str, object]) -> "Split":
        return cls(search=tuple(int(i) for i in d["search"]), holdout=tuple(int(i) for i in d["holdout"]),  # type: ignore[union-attr]
                   seed=int(d["seed"]))  # type: ignore[arg-type]


def holdout_count(holdout: float | int, n: int) -> int:
    """How many of ``n`` samples ``holdout`` (a fraction or a count) holds out; one line if invalid."""
    if isinstance(holdout, bool) or not isinstance(holdout, (int, float)):
        raise ConfigError(f"data.holdout: {holdout!r} is not a number (valid: a fraction 0 < f < 1 or a count)")
    if isinstance(holdout, float):
        if not 0.0 < holdout < 1.0:
            raise ConfigError(f"data.holdout: fraction {holdout} is out of range (valid: 0 < f < 1)")
        k = held_out_of(holdout, n)
        what = f"fraction {holdout} of {n} samples is {k}"
    else:
        k = int(holdout)
        what = f"count {k} of {n} samples"
    if not 1 <= k <= n - 1:
        raise ConfigError(f"data.holdout: {what}; valid: 1 to {n - 1} held-out samples, so that both sets "
                          f"are non-empty (raise data.n_samples or change data.holdout)")
    return k


def _largest_remainder(quota: dict[int, float], cap: dict[int, int], k: int) -> dict[int, int]:
    """Integer shares summing to ``k``, each at most its cap, close to ``quota`` (largest remainder first)."""
    share = {c: min(int(q), cap[c]) for c, q in quota.items()}
    while sum(share.values()) < k:
        open_ = [c for c in quota if share[c] < cap[c]]
        if not open_:  # the caller checked the total capacity
            raise AssertionError("no class can give another held-out sample")
        # the class furthest below its quota gives the next sample; lower class index on ties
        c = max(open_, key=lambda c: (quota[c] - share[c], -c))
        share[c] += 1
    return share


def holdout_split(labels: Sequence[int] | torch.Tensor, holdout: float | int, *, seed: int) -> Split:
    """Split the samples with these class ``labels`` into search and held-out sets (see the module docstring)."""
    y = [int(v) for v in (labels.tolist() if isinstance(labels, torch.Tensor) else labels)]
    n = len(y)
    k = holdout_count(holdout, n)
    members: dict[int, list[int]] = {}
    for i, c in enumerate(y):
        members.setdefault(c, []).append(i)
    classes = sorted(members)
    cap = {c: len(members[c]) - 1 for c in classes}
    if sum(cap.values()) < k:
        raise ConfigError(f"data.holdout: {k} held-out samples leave a class without search samples ({n} samples "
                          f"in {len(classes)} classes; valid: at most {sum(cap.values())})")
    quota = {c: k * len(members[c]) / n for c in classes}
    share = _largest_remainder(quota, cap, k)
    generator = torch.Generator().manual_seed(seed)
    held: list[int] = []
    for c in classes:
        order = torch.randperm(len(members[c]), generator=generator).tolist()
        held += [members[c][j] for j in order[: share[c]]]
    held_set = set(held)
    return Split(search=tuple(i for i in range(n) if i not in held_set), holdout=tuple(sorted(held)), seed=seed)
