"""What each Linear layer of a transformer block does, measured on a forward pass.

A transformer block's Linear layers play four parts, and LRP tuning treats them apart (a gamma per
part is what AttnLRP's authors tune by hand):

- ``qkv``: its output reaches an attention as query, key or value (``scaled_dot_product_attention``,
  or the score product ``q @ k^T`` and the softmax);
- ``proj``: it reads an attention's output (the attention's output projection);
- ``fc1``: its output goes into an elementwise activation (GELU, SiLU, ReLU, ...) or a gated product
  with one (SwiGLU);
- ``fc2``: it reads an activation's output;
- ``other``: none of these (a convolution, a downsampling projection, a layer of the embedding).

No name is trusted: the part is read off what the layer's output and input meet on a forward pass.
Tensors carry two tags through the pass, set by module hooks and a ``TorchFunctionMode``: the Linear
layers whose output they are (through reshapes, permutes, splits, dropout, products with constants),
and what they come from (an attention, an activation). A residual addition, a normalization or any
function of two input-dependent tensors other than those above clears both, so the residual stream
carries no part.
"""

from __future__ import annotations

from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

from xaiopt.canonize import operations as ops
from xaiopt.config.schema import SUBLAYER_KINDS

__all__ = ["SUBLAYER_KINDS", "sublayer_kinds"]

_SOURCES = "_xaiopt_sublayer_sources"  # the Linear layers whose output a tensor is
_AFTER = "_xaiopt_sublayer_after"  # "scores", "weights", "attention" or "activation"
_RELU = ("relu", "relu_", "threshold", "threshold_")
_SHAPE_OF_OTHER = ("reshape_as", "view_as", "expand_as")
_JOINS = ("cat", "concat", "concatenate", "stack")  # q, k and v side by side (a split qkv) stay q, k and v


def _tags(t: Tensor) -> tuple[frozenset[str], str | None]:
    return getattr(t, _SOURCES, frozenset()), getattr(t, _AFTER, None)


def _tag(out, sources: frozenset[str], after: str | None) -> None:
    for t in (out if isinstance(out, (tuple, list)) else (out,)):
        if isinstance(t, Tensor):
            try:
                setattr(t, _SOURCES, sources)
                setattr(t, _AFTER, after)
            except (AttributeError, RuntimeError):  # a tensor subclass without a __dict__
                pass


class _Provenance(TorchFunctionMode):
    def __init__(self) -> None:
        super().__init__()
        self.parts: dict[str, set[str]] = {}

    def mark(self, sources: frozenset[str], kind: str) -> None:
        for name in sources:
            self.parts.setdefault(name, set()).add(kind)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        name = ops.function_name(func)
        if name in _SHAPE_OF_OTHER and len(args) == 2:  # y.reshape_as(x) reads only x's shape
            args = args[:1]
        deps = ops.input_dependent(args, kwargs)
        if not deps:
            return out
        kind = ops.kind_of(func, args)
        tags = [_tags(t) for t in deps]
        sources = frozenset().union(*(s for s, _ in tags))
        afters = {a for _, a in tags if a is not None}
        if kind == ops.SDPA:
            self.mark(sources, "qkv")
            _tag(out, frozenset(), "attention")
        elif kind == ops.MHA:  # its projections run outside modules: no layer to mark
            _tag(out, frozenset(), "attention")
        elif kind == ops.SOFTMAX:
            self.mark(sources, "qkv")
            _tag(out, frozenset(), "weights")
        elif kind == ops.BILINEAR and len(deps) == 2:
            if "activation" in afters:  # a gated MLP: act(fc1_a(x)) * fc1_b(x)
                self.mark(sources, "fc1")
                _tag(out, frozenset(), "activation")
            else:  # q @ k^T gives scores; weights @ v gives the attention's output
                self.mark(sources, "qkv")
                _tag(out, frozenset(), "attention" if "weights" in afters else "scores")
        elif kind == ops.ACTIVATION or name in _RELU:
            if "attention" in afters:  # an activation on the attention's output (LeViT): still that output
                _tag(out, frozenset(), "attention")
            else:
                self.mark(sources, "fc1")
                _tag(out, frozenset(), "activation")
        elif (kind in (ops.LINEAR, ops.BILINEAR) and len(deps) == 1) or (name in _JOINS and len(afters) <= 1):
            _tag(out, sources, next(iter(afters), None))
        else:
            _tag(out, frozenset(), None)
        return out


def sublayer_kinds(model: nn.Module, example_input: Tensor, layers: list[str]) -> dict[str, str]:
    """The part (one of :data:`SUBLAYER_KINDS`) each named layer plays, measured by running ``model``
    on ``example_input[:1]`` with the parameters frozen. A Linear that plays two parts takes the first
    in ``qkv, fc1, proj, fc2`` order (what its output meets decides before what its input came from);
    a layer that is not an ``nn.Linear`` is ``other``."""
    modules = dict(model.named_modules())
    probe = _Provenance()
    handles = []

    def before(name: str):
        def hook(module, args):
            if args and isinstance(args[0], Tensor):
                after = _tags(args[0])[1]
                if after == "attention":
                    probe.mark(frozenset({name}), "proj")
                elif after == "activation":
                    probe.mark(frozenset({name}), "fc2")
        return hook

    def after(name: str):
        linear = isinstance(modules[name], nn.Linear)

        def hook(module, args, output):
            _tag(output, frozenset({name}) if linear else frozenset(), None)
        return hook

    for name in layers:
        module = modules[name]
        if isinstance(module, nn.Linear):
            handles.append(module.register_forward_pre_hook(before(name)))
        # every weighted layer's output starts afresh (a convolution after an activation is not one)
        handles.append(module.register_forward_hook(after(name)))
    try:
        ops.run_frozen(model, example_input, probe)
    finally:
        for h in handles:
            h.remove()
    order = ("qkv", "fc1", "proj", "fc2")
    return {name: next((k for k in order if k in probe.parts.get(name, ())), "other") for name in layers}
