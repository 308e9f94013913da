"""The record of what a canonizer changed: merges, rewrites and what it left alone, and why."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Merge:
    """A batch norm folded into linear layers. ``kind``: ``after`` (BN follows the layer),
    ``after_concat`` (BN follows a channel concatenation of layers, split into each),
    ``before`` (BN feeds the layers), ``before_bias_map`` (feeds a zero-padded conv),
    ``threshrelu`` (BN -> ReLU -> layer, rewritten with a ThreshReLU), ``reparam`` (BN on one of several
    summed branches of one tensor, all merged into one new convolution), ``layer_norm_affine`` (a layer
    norm's affine part folded into the Linear layers reading it; ``batch_norm`` then names the norm)."""

    batch_norm: str
    layers: tuple[str, ...]
    kind: str


@dataclass(frozen=True)
class Rewrite:
    """An operation made explicit: ``kind`` in ``residual_sum``, ``concat``, ``se_gate``, ``threshrelu``,
    ``reparam`` (summed branches of one tensor as one convolution; ``detail`` names the branches),
    ``functional_batch_norm``, ``functional_conv``, ``functional_linear`` (a function call on a
    module's own tensors turned into a module)."""

    kind: str
    module: str
    detail: str = ""


@dataclass(frozen=True)
class Skip:
    """Something left as it was, and why."""

    target: str
    reason: str


@dataclass
class Changes:
    merges: list[Merge] = field(default_factory=list)
    rewrites: list[Rewrite] = field(default_factory=list)
    skipped: list[Skip] = field(default_factory=list)

    def prefixed(self, prefix: str) -> "Changes":
        """The same changes with module names qualified from the model root."""
        if not prefix:
            return self

        def q(name: str) -> str:
            return f"{prefix}.{name}" if name else prefix

        return Changes(
            [Merge(q(m.batch_norm), tuple(q(n) for n in m.layers), m.kind) for m in self.merges],
            [Rewrite(r.kind, q(r.module), r.detail) for r in self.rewrites],
            [Skip(q(s.target), s.reason) for s in self.skipped],
        )
