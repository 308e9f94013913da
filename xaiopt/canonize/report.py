"""What canonization did to a model, as a dataclass that prints as a readable report."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from .changes import Merge, Rewrite, Skip
from .verify import Equivalence


@dataclass
class CanonizationReport:
    """The record of one :func:`xaiopt.canonize.canonize` call.

    ``canonized`` is False when the twin is an unchanged copy (model not traceable, or the check
    failed), or when running the twin shows batch norms still computed or conv/linear calls outside
    any Conv/Linear module; ``reason`` then says why. The counts are measured on a forward pass
    (:func:`xaiopt.canonize.census.census`), never read off the graph: ``remaining_batch_norms``
    has one entry per batch-norm call of the twin (the module whose forward made it),
    ``unhooked_layers`` one per conv/linear call that no rule can attach to,
    ``batch_norms_before`` counts the model's own batch-norm calls and ``unhooked_before`` lists the
    model's own conv/linear calls outside any module.
    """

    model: str
    canonized: bool
    reason: str | None = None
    merges: list[Merge] = field(default_factory=list)
    rewrites: list[Rewrite] = field(default_factory=list)
    skipped: list[Skip] = field(default_factory=list)
    remaining_batch_norms: list[str] = field(default_factory=list)
    unhooked_layers: list[str] = field(default_factory=list)
    batch_norms_before: int = 0
    unhooked_before: list[str] = field(default_factory=list)
    equivalence: Equivalence | None = None
    seconds: float = 0.0

    @property
    def max_abs_diff(self) -> float | None:
        return None if self.equivalence is None else self.equivalence.max_abs

    @property
    def max_rel_diff(self) -> float | None:
        return None if self.equivalence is None else self.equivalence.max_rel

    @property
    def ok(self) -> bool:
        """False when the check found a changed function or could not run (the twin is then an
        unchanged copy); True otherwise, including a model used uncanonized because untraceable."""
        if self.equivalence is not None and not self.equivalence.ok:
            return False
        return not (self.reason or "").startswith("check could not run")

    def counts(self) -> dict[str, int]:
        """Number of merges per kind and rewrites per kind, e.g. ``{'merge:after': 53, 'residual_sum': 16}``."""
        result = Counter(f"merge:{m.kind}" for m in self.merges)
        result.update(r.kind for r in self.rewrites if r.kind != "threshrelu")
        result["skipped"] = len(self.skipped)
        return dict(result)

    def __str__(self) -> str:
        lines = [f"canonization of {self.model}: {'done' if self.canonized else 'NOT canonized'}"
                 f" in {self.seconds:.2f} s"]
        if self.reason:
            lines.append(f"  reason: {self.reason}")
        lines.append(f"  merged batch norms ({len(self.merges)}):")
        lines += [f"    {m.batch_norm} -> {', '.join(m.layers)} [{m.kind}]" for m in self.merges]
        lines.append(f"  rewrites ({len(self.rewrites)}):")
        lines += [f"    {r.kind}: {r.module}  {r.detail}".rstrip() for r in self.rewrites]
        lines.append(f"  left alone ({len(self.skipped)}):")
        lines += [f"    {s.target or '<model>'}: {s.reason}" for s in self.skipped]
        lines.append(f"  batch norms computed (measured): {self.batch_norms_before} in the model, "
                     f"{len(self.remaining_batch_norms)} in the twin")
        if self.remaining_batch_norms:
            lines.append(f"  batch norms still computed: {', '.join(dict.fromkeys(self.remaining_batch_norms))}")
        if self.unhooked_layers:
            lines.append(f"  conv/linear calls outside any module ({len(self.unhooked_layers)}): "
                         f"{', '.join(dict.fromkeys(self.unhooked_layers))}")
        if self.equivalence is not None:
            lines.append(f"  check: {self.equivalence}")
        return "\n".join(lines)
