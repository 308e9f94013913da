"""LayerNorm's affine part folded into the Linear layers that read its output.

``LN(x) = n(x) * w + b`` with ``n`` the normalization; a Linear ``L(h) = h W^T + c`` reading it
computes ``n(x) (W diag(w))^T + (W b + c)``: the same function with the norm's affine part in the
layer, where LRP rules see it (as batch norms are merged into convolutions). The Linear modules a
norm feeds are found by running the model once: the norm's output is followed through operations
that only rearrange it (reshapes, transposes, token selection, dropout in eval mode); a norm whose
output reaches anything else (a residual sum, another norm) keeps its affine part. Every fold is
then checked on a forward pass and undone if the logits move.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

from .changes import Merge, Skip
from .inputs import Example, first_rows, run
from .operations import function_name

# operations that only rearrange or select entries of a tensor (the feature axis keeps its meaning
# or the check on a forward pass undoes the fold)
_REARRANGE = {
    "reshape", "view", "view_as", "transpose", "permute", "contiguous", "__getitem__", "select", "narrow",
    "chunk", "split", "unbind", "flatten", "unflatten", "squeeze", "unsqueeze", "clone", "to", "dropout",
    "__get__", "movedim", "swapaxes", "detach",
}


class _Follow(TorchFunctionMode):
    """Follows each norm's output through rearrangements; notes any other use of it."""

    def __init__(self, tagged: dict[int, tuple[Tensor, str]], other: set[str], inside_linear: list[int],
                 weights: dict[int, str]) -> None:
        super().__init__()
        self.tagged, self.other, self.inside_linear, self.weights = tagged, other, inside_linear, weights

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if self.inside_linear[0]:
            return out
        name = function_name(func)
        if name == "layer_norm":
            # a norm is known by its weight: a traced twin calls F.layer_norm on the module's parameters
            weight = args[2] if len(args) > 2 else kwargs.get("weight")
            if isinstance(weight, Tensor) and id(weight) in self.weights:
                self.tagged[id(out)] = (out, self.weights[id(weight)])
                return out
        norms = {self.tagged[id(a)][1] for a in (*args, *kwargs.values())
                 if isinstance(a, Tensor) and id(a) in self.tagged}
        if not norms:
            return out
        if name == "__get__" or name in ("dim", "size", "numel", "__len__"):
            return out
        if name in _REARRANGE:
            for t in out if isinstance(out, (tuple, list)) else (out,):
                if isinstance(t, Tensor):
                    for norm in norms:
                        self.tagged[id(t)] = (t, norm)
        else:
            self.other.update(norms)
        return out


def _consumers(model: nn.Module, example: Example) -> dict[str, list[str]]:
    """Norm name -> the Linear modules that read only its (rearranged) output, for the norms whose
    output reaches nothing else; measured on one forward pass."""
    modules = dict(model.named_modules())
    norms = {n: m for n, m in modules.items()
             if isinstance(m, nn.LayerNorm) and m.weight is not None and m.bias is not None}
    if not norms:
        return {}
    tagged: dict[int, tuple[Tensor, str]] = {}
    other: set[str] = set()
    inside_linear = [0]
    reads: dict[str, set[str | None]] = {}  # Linear name -> the norms (None: untagged) its inputs came from
    handles = []

    def linear_pre(name):
        def hook(module, args):
            x = args[0] if args else None
            reads.setdefault(name, set()).add(tagged[id(x)][1] if isinstance(x, Tensor) and id(x) in tagged else None)
            inside_linear[0] += 1
        return hook

    def linear_post(module, args, output):
        inside_linear[0] -= 1

    for name, module in modules.items():
        if type(module) is nn.Linear:
            handles.append(module.register_forward_pre_hook(linear_pre(name)))
            handles.append(module.register_forward_hook(linear_post, always_call=True))
    try:
        weights = {id(m.weight): n for n, m in norms.items()}
        with torch.no_grad(), _Follow(tagged, other, inside_linear, weights):
            run(model, first_rows(example, 1))
    finally:
        for h in handles:
            h.remove()
    result: dict[str, list[str]] = {}
    for norm in norms:
        readers = [lin for lin, sources in reads.items() if norm in sources]
        if norm in other or not readers or any(reads[lin] != {norm} for lin in readers):
            continue
        result[norm] = readers
    return result


def _fold(norm: nn.LayerNorm, linears: list[nn.Linear]) -> None:
    with torch.no_grad():
        w, b = norm.weight.detach(), norm.bias.detach()
        for linear in linears:
            shift = linear.weight @ b
            if linear.bias is None:
                linear.bias = nn.Parameter(shift.clone())
            else:
                linear.bias.add_(shift)
            linear.weight.mul_(w)
        norm.weight.fill_(1.0)
        norm.bias.zero_()


def fold_norm_affines(model: nn.Module, example: Example, *, tol: float = 1e-5) -> tuple[list[Merge], list[Skip]]:
    """Fold, in place, the affine part of every ``nn.LayerNorm`` into the Linear layers that read it
    (see the module docstring); each fold checked on ``example`` and undone if the logits move by
    more than ``tol`` relative. Returns the merges and the norms left as they were, with why."""
    merges: list[Merge] = []
    skipped: list[Skip] = []
    if not any(isinstance(m, nn.LayerNorm) for m in model.modules()):
        return merges, skipped
    with torch.no_grad():
        reference = run(model, example)
    scale = reference.abs().max().clamp(min=1e-30)
    for norm_name, linear_names in _consumers(model, example).items():
        norm = model.get_submodule(norm_name)
        linears = [model.get_submodule(n) for n in linear_names]
        if any(lin.in_features != norm.weight.numel() for lin in linears):
            skipped.append(Skip(norm_name, f"its features reach {', '.join(linear_names)} rearranged (another "
                                           f"input width); left as it was"))
            continue
        saved = [(p, p.detach().clone()) for m in (norm, *linears) for p in m.parameters()]
        biases = [(lin, lin.bias) for lin in linears]
        _fold(norm, linears)
        with torch.no_grad():
            moved = float((run(model, example) - reference).abs().max() / scale)
        if moved > tol:
            with torch.no_grad():
                for p, value in saved:
                    p.copy_(value)
            for lin, bias in biases:
                lin.bias = bias
            skipped.append(Skip(norm_name, f"folding its affine part into {', '.join(linear_names)} changed the "
                                           f"logits by {moved:.1e} (relative); left as it was"))
            continue
        merges.append(Merge(norm_name, tuple(linear_names), "layer_norm_affine"))
    return merges, skipped
