"""Which samples form the evaluation batch: seeded, balanced over classes, optionally a class subset.

Items are shuffled within each class with ``seed`` and the classes are interleaved in index order
(round robin), so the counts per class differ by at most one as far as the data allows, and a
smaller ``n`` gives a prefix of a larger one. ``n_classes`` first draws that many of the present
classes with ``seed`` (its own generator, so the subset does not depend on ``n``).

``accept`` loads an item and may refuse it (returns None: e.g. its object lies outside the centre
crop); the next item of the same class then takes its place, so the balance holds.

Example:
    >>> from xaiopt.zoo.selection import select_balanced
    >>> picked = select_balanced({0: ["a", "b"], 5: ["c"], 7: ["d", "e"]}, n=4, seed=0, label="demo")
    >>> [cls for _, cls, _ in picked]
    [0, 5, 7, 0]
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import torch

from xaiopt.errors import ConfigError
from xaiopt.zoo.evaldata import EvalData

T = TypeVar("T")


def select_balanced(
    groups: Mapping[int, Sequence[T]],
    *,
    n: int,
    seed: int,
    label: str,
    n_classes: int | None = None,
    accept: Callable[[T, int], Any] | None = None,
) -> list[tuple[T, int, Any]]:
    """``n`` triples ``(item, class, accept(item, class))`` (the last is None without ``accept``)."""
    present = sorted(c for c, items in groups.items() if items)
    if n_classes is not None:
        if n_classes < 1 or n_classes > len(present):
            raise ConfigError(f"dataset {label!r}: data.n_classes={n_classes} is invalid; valid: 1 to "
                              f"{len(present)} (the classes with images)")
        pick = torch.randperm(len(present), generator=torch.Generator().manual_seed(seed))[:n_classes]
        present = sorted(present[i] for i in pick.tolist())
    total = sum(len(groups[c]) for c in present)
    if n < 1 or n > total:
        where = f"the images of the {len(present)} selected classes" if n_classes is not None else "the images"
        raise ConfigError(f"dataset {label!r}: n={n} is invalid; valid: 1 to {total} ({where})")
    generator = torch.Generator().manual_seed(seed)
    queues = {c: [groups[c][i] for i in torch.randperm(len(groups[c]), generator=generator).tolist()]
              for c in present}
    positions = dict.fromkeys(present, 0)
    selected: list[tuple[T, int, Any]] = []
    refused = 0
    while len(selected) < n:
        took = False
        for cls in present:
            if len(selected) == n:
                break
            queue = queues[cls]
            while positions[cls] < len(queue):
                item = queue[positions[cls]]
                positions[cls] += 1
                value = accept(item, cls) if accept is not None else None
                if accept is None or value is not None:
                    selected.append((item, cls, value))
                    took = True
                    break
                refused += 1
        if not took:
            raise ConfigError(f"dataset {label!r}: n={n} is invalid; only {len(selected)} images are usable "
                              f"({refused} refused: no object pixels left after the centre crop)")
    return selected


def masked_batch(selected: list[tuple[Any, int, tuple[torch.Tensor, torch.Tensor]]], class_map: Any,
                 normalization: Any) -> EvalData:
    """The evaluation batch of ``select_balanced`` items whose ``accept`` returned ``(image, mask)``."""
    low, high = normalization.bounds()
    return EvalData(
        x=normalization(torch.stack([image for _, _, (image, _) in selected])),
        y=torch.tensor([cls for _, cls, _ in selected], dtype=torch.int64),
        masks=torch.stack([mask for _, _, (_, mask) in selected]),
        low=low,
        high=high,
        num_classes=class_map.num_classes,
        class_names=class_map.names,
    )
