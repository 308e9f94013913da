"""Reference relevance maps from LXT 2.1 (LRP-eXplains-Transformers) for torchvision vision transformers.

xaiopt's transformer engine is compared against these in float64. Every function here *calls* LXT;
none of LXT's code is copied. Both references seed the output relevance with the target logit, so a
conservative explanation's input relevance sums to the logit:

- :func:`lxt_efficient_torchvision_vit`: LXT's efficient mode (gradient x input on classes that
  ``lxt.efficient.monkey_patch`` rewrites with the CP-LRP map ``lxt.efficient.models.vit_torch.cp_LRP``),
  optionally with zennit rules on ``nn.Linear`` / ``nn.Conv2d`` through ``lxt.efficient.monkey_patch_zennit``.
  The patches are global (they replace methods on torch and zennit classes); :func:`lxt_efficient_patches`
  undoes them exactly on exit, exceptions included.
- :func:`lxt_explicit_attnlrp`: AttnLRP written out as an explicit forward of the same model with LXT's
  relevance-propagating autograd functions (``lxt.explicit.functional`` and ``lxt.explicit.rules``).

Example::

    model = small_vit(seed=0)
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    cp = lxt_efficient_torchvision_vit(model, x, [3, 7], linear_rule=zennit.rules.Epsilon(1e-6))
    attn = lxt_explicit_attnlrp(model, x, [3, 7])
    relative_error(cp, attn)
"""

from __future__ import annotations

import inspect
import math
import warnings
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass

import lxt.explicit.functional as lf
import lxt.explicit.rules as lr
import torch
import torch.nn.functional as F
import zennit.core
from torch import nn
from torchvision.models import vision_transformer
from torchvision.models.vision_transformer import EncoderBlock, VisionTransformer
from zennit.composites import LayerMapComposite

__all__ = [
    "AttnLrpTrace",
    "LXT_EXPLICIT_DEFAULTS",
    "lxt_efficient_patches",
    "lxt_efficient_torchvision_vit",
    "lxt_explicit_attnlrp",
    "lxt_explicit_attnlrp_trace",
    "relative_error",
    "restored_class_attributes",
    "small_vit",
]

# Stabilisers of the explicit rules when the caller gives none, read from LXT itself. All of LXT's explicit
# rules stabilise a denominator as ``z + eps`` (not ``z + eps * sign(z)`` as zennit does).
LXT_EXPLICIT_DEFAULTS: dict[str, float] = {
    "linear_epsilon": inspect.signature(lf.linear_epsilon).parameters["epsilon"].default,
    "matmul": inspect.signature(lf.matmul).parameters["epsilon"].default,
    "add2": inspect.signature(lf.add2).parameters["epsilon"].default,
    # lf.layer_norm does not expose it; the autograd function's forward holds the default.
    "layer_norm": inspect.signature(lf.layer_norm_grad_fn.forward).parameters["epsilon"].default,
}

_ACTIVATIONS = (nn.GELU, nn.Tanh, nn.ReLU, nn.SiLU)
_MISSING = object()


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    """``max|a - b| / max|b|``: the error of ``a`` against the reference ``b``."""
    return ((a - b).abs().max() / b.abs().max()).item()


# --------------------------------------------------------------------------- efficient mode (CP-LRP)


@contextmanager
def restored_class_attributes(*classes: type) -> Iterator[None]:
    """Put every class attribute of ``classes`` back as it was on entry: values replaced inside are restored
    (by identity), attributes added inside (LXT's ``original_forward``) are deleted."""
    saved = [(cls, dict(vars(cls))) for cls in classes]
    try:
        yield
    finally:
        for cls, before in saved:
            for name in [name for name in vars(cls) if name not in before]:
                delattr(cls, name)
            for name, value in before.items():
                if vars(cls).get(name, _MISSING) is not value:
                    setattr(cls, name, value)


@contextmanager
def lxt_efficient_patches() -> Iterator[None]:
    """LXT's CP-LRP patches for torchvision's ViT (``monkey_patch(vision_transformer, cp_LRP)``) and its zennit
    bridge (``monkey_patch_zennit()``) for the duration of the block, undone exactly afterwards.

    Patched: ``nn.GELU.forward`` (identity rule, adds ``nn.GELU.original_forward``), ``nn.LayerNorm.forward``
    (std detached), ``nn.MultiheadAttention.forward`` (query and key detached, adds ``original_forward``),
    ``zennit.core.BasicHook.forward`` / ``.backward`` (relevance <-> gradient x input conversion).
    A class that is already patched on entry is an error: the reference would silently run someone else's state.
    """
    # imported here: lxt.efficient imports every transformers model LXT supports (seconds)
    from lxt.efficient import monkey_patch, monkey_patch_zennit
    from lxt.efficient.models.vit_torch import cp_LRP

    with restored_class_attributes(*cp_LRP, zennit.core.BasicHook):
        with warnings.catch_warnings():
            # LXT only warns when a class is already patched (or a patch fails) and then skips it.
            warnings.filterwarnings("error", message=r".*(already patched|Failed to patch)")
            monkey_patch(vision_transformer, patch_map=cp_LRP)
            monkey_patch_zennit()
        yield


def lxt_efficient_torchvision_vit(
    model: VisionTransformer,
    x: torch.Tensor,
    targets: Sequence[int] | torch.Tensor,
    *,
    linear_rule: zennit.core.BasicHook | None = None,
    conv_rule: zennit.core.BasicHook | None = None,
) -> torch.Tensor:
    """CP-LRP relevance at the input pixels from LXT's efficient mode, summed over channels: (N, 1, H, W).

    Inside :func:`lxt_efficient_patches`, with ``LayerMapComposite([(nn.Linear, linear_rule),
    (nn.Conv2d, conv_rule)])`` registered when a rule is given (as LXT's ``examples/vit_torch.py`` does),
    the model runs on a copy of ``x``; the relevance is ``x * d logit[target] / dx``. In LXT's gradient x input
    framework a gradient seed of 1 at the target *is* an output relevance equal to the logit, so the sums are
    comparable to the logit (the explicit reference seeds its relevance with the logit itself).

    Without rules every ``nn.Linear`` / ``nn.Conv2d`` gets plain gradient x input (LRP-0 with the bias
    absorbing its share). zennit rules only reach modules that are *called*: ``MultiheadAttention``'s
    in/out projections are ``F.linear`` calls inside torch, so they stay gradient x input whatever the rule.
    """
    _check_vit(model, x)
    targets = _targets(targets, len(x))
    layer_map = [(kind, rule) for kind, rule in ((nn.Linear, linear_rule), (nn.Conv2d, conv_rule)) if rule is not None]
    with lxt_efficient_patches(), ExitStack() as stack:
        if layer_map:
            # registered after patching: zennit binds BasicHook.forward when it registers the hook
            stack.enter_context(LayerMapComposite(layer_map).context(model))
        leaf = x.detach().clone().requires_grad_()
        logits = model(leaf)
        (grad,) = torch.autograd.grad(logits, leaf, F.one_hot(targets, logits.shape[1]).to(logits))
    return (leaf * grad).sum(1, keepdim=True).detach()


# --------------------------------------------------------------------------- explicit AttnLRP


@dataclass(frozen=True)
class AttnLrpTrace:
    """One explicit AttnLRP pass. Per sample, ``pixels.sum() + class_token + pos_embedding + softmax_leak``
    is the target logit minus what biases and the stabilisers absorb (the softmax rule is not conservative:
    ``softmax_leak`` is the output relevance of all softmaxes minus their input relevance)."""

    logits: torch.Tensor  # (N, C), the explicit forward's
    pixels: torch.Tensor  # (N, 1, H, W), relevance at the input, summed over channels
    class_token: torch.Tensor  # (N,), relevance absorbed by the class token
    pos_embedding: torch.Tensor  # (N,), relevance absorbed by the position embedding
    softmax_leak: torch.Tensor  # (N,)


def lxt_explicit_attnlrp(
    model: VisionTransformer,
    x: torch.Tensor,
    targets: Sequence[int] | torch.Tensor,
    *,
    epsilon: float | None = None,
    stabilizer: float | None = None,
) -> torch.Tensor:
    """AttnLRP relevance at the input pixels, summed over channels: (N, 1, H, W). See
    :func:`lxt_explicit_attnlrp_trace` for the rules."""
    return lxt_explicit_attnlrp_trace(model, x, targets, epsilon=epsilon, stabilizer=stabilizer).pixels


def lxt_explicit_attnlrp_trace(
    model: VisionTransformer,
    x: torch.Tensor,
    targets: Sequence[int] | torch.Tensor,
    *,
    epsilon: float | None = None,
    stabilizer: float | None = None,
) -> AttnLrpTrace:
    """Explicit AttnLRP on torchvision's ViT: the model's forward re-written with LXT's relevance functions,
    the output relevance seeded with ``one_hot(target) * logit``, the relevance read off as the gradient.

    Rules (LXT call):
    - conv_proj patch embedding: epsilon rule, ``lxt.explicit.rules.epsilon_lrp(conv, epsilon, x)``;
      the class token is concatenated, the position embedding added with ``lf.add2`` (epsilon rule on the
      sum: it keeps its share, as in LXT's own BERT model);
    - every linear (fused q/k/v in_proj, out_proj, MLP, head): ``lf.linear_epsilon(.., epsilon)``;
    - LayerNorm: ``lf.layer_norm`` (identity through the detached std, epsilon rule on the centring);
    - scores ``lf.matmul(q, k^T)`` (epsilon + uniform rule), scaled by ``lf.mul2(., 1/sqrt(d))`` (relevance
      passes whole to the scores, as LXT's explicit BERT/LLaMA do), ``lf.softmax`` (AttnLRP softmax rule),
      ``lf.matmul(attention, v)``;
    - residual sums: ``lf.add2``; GELU (and Tanh in a ``pre_logits`` head): ``lxt.explicit.rules.identity``.

    ``epsilon`` is the stabiliser of the linear rules (linears and the conv), default LXT's ``linear_epsilon``
    default; ``stabilizer`` the one of ``matmul``, ``add2`` and ``layer_norm``, default LXT's own per rule
    (see :data:`LXT_EXPLICIT_DEFAULTS`). Dropout is skipped (eval mode is required).
    """
    _check_vit(model, x)
    targets = _targets(targets, len(x))
    eps_linear = LXT_EXPLICIT_DEFAULTS["linear_epsilon"] if epsilon is None else epsilon
    stab_kwargs = {} if stabilizer is None else {"epsilon": stabilizer}
    leaks: list[torch.Tensor] = []

    def norm(layer: nn.LayerNorm, h: torch.Tensor) -> torch.Tensor:
        if stabilizer is None:
            return lf.layer_norm(h, layer.weight, layer.bias, layer.eps)
        return lf.layer_norm_grad_fn.apply(h, layer.weight, layer.bias, layer.eps, stabilizer)

    def sequential(layers: nn.Sequential, h: torch.Tensor) -> torch.Tensor:
        for layer in layers:
            if isinstance(layer, nn.Linear):
                h = lf.linear_epsilon(h, layer.weight, layer.bias, eps_linear)
            elif isinstance(layer, _ACTIVATIONS):
                h = lr.identity(layer, h)
            elif not isinstance(layer, nn.Dropout):
                raise ValueError(f"no AttnLRP rule here for {type(layer).__name__}")
        return h

    def attention(mha: nn.MultiheadAttention, h: torch.Tensor) -> torch.Tensor:
        n, s, d = h.shape
        heads, head_dim = mha.num_heads, mha.head_dim
        qkv = lf.linear_epsilon(h, mha.in_proj_weight, mha.in_proj_bias, eps_linear)
        q, k, v = (t.reshape(n, s, heads, head_dim).transpose(1, 2) for t in qkv.chunk(3, dim=-1))
        scores = lf.mul2(lf.matmul(q, k.transpose(-1, -2), **stab_kwargs), 1 / math.sqrt(head_dim))
        weights = lf.softmax(scores, -1)
        _record_leak(scores, weights, leaks)
        out = lf.matmul(weights, v, **stab_kwargs).transpose(1, 2).reshape(n, s, d)
        return lf.linear_epsilon(out, mha.out_proj.weight, mha.out_proj.bias, eps_linear)

    def block(layer: EncoderBlock, h: torch.Tensor) -> torch.Tensor:
        h = lf.add2(attention(layer.self_attention, norm(layer.ln_1, h)), h, **stab_kwargs)
        return lf.add2(h, sequential(layer.mlp, norm(layer.ln_2, h)), **stab_kwargs)

    n = len(x)
    pixels = x.detach().clone().requires_grad_()
    class_token = model.class_token.detach().expand(n, -1, -1).clone().requires_grad_()
    pos_embedding = model.encoder.pos_embedding.detach().expand(n, -1, -1).clone().requires_grad_()
    conv = model.conv_proj

    def patch_embedding(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(t, conv.weight, conv.bias, conv.stride, conv.padding, conv.dilation, conv.groups)

    with torch.enable_grad():
        h = lr.epsilon_lrp(patch_embedding, eps_linear, pixels)
        h = torch.cat([class_token, h.flatten(2).transpose(1, 2)], dim=1)
        h = lf.add2(h, pos_embedding, **stab_kwargs)
        for layer in model.encoder.layers:
            h = block(layer, h)
        h = norm(model.encoder.ln, h)
        logits = sequential(model.heads, h[:, 0])
        seed = F.one_hot(targets, logits.shape[1]).to(logits) * logits.detach()
        grads = torch.autograd.grad(logits, (pixels, class_token, pos_embedding), seed)
    return AttnLrpTrace(
        logits=logits.detach(),
        pixels=grads[0].sum(1, keepdim=True),
        class_token=grads[1].flatten(1).sum(1),
        pos_embedding=grads[2].flatten(1).sum(1),
        softmax_leak=sum(leaks, torch.zeros(n, dtype=x.dtype)),
    )


def _record_leak(scores: torch.Tensor, weights: torch.Tensor, leaks: list[torch.Tensor]) -> None:
    """Per sample, add the softmax's output relevance and subtract its input relevance when the backward
    reaches them (each tensor has one consumer, so its gradient is that relevance)."""
    weights.register_hook(lambda r: leaks.append(r.flatten(1).sum(1)))
    scores.register_hook(lambda r: leaks.append(-r.flatten(1).sum(1)))


# --------------------------------------------------------------------------- shared


def _check_vit(model: nn.Module, x: torch.Tensor) -> None:
    if not isinstance(model, VisionTransformer):
        raise ValueError(f"model: expected a torchvision VisionTransformer, got {type(model).__name__}")
    if model.training:
        raise ValueError("model: expected eval mode (dropout would change the reference), got training mode")
    if not isinstance(model.conv_proj, nn.Conv2d):
        raise ValueError("model.conv_proj: expected one nn.Conv2d patch embedding, got a conv stem")
    dtypes = {p.dtype for p in model.parameters()} | {x.dtype}
    if dtypes != {torch.float64}:
        raise ValueError(f"model and x: expected float64 throughout, got {sorted(map(str, dtypes))}")
    for layer in model.encoder.layers:
        mha = layer.self_attention
        if not (mha._qkv_same_embed_dim and mha.batch_first and mha.bias_k is None and not mha.add_zero_attn):
            raise ValueError("self_attention: expected torchvision's fused-in_proj, batch_first attention")


def _targets(targets: Sequence[int] | torch.Tensor, n: int) -> torch.Tensor:
    targets = torch.as_tensor(targets, dtype=torch.long).reshape(-1)
    if len(targets) != n:
        raise ValueError(f"targets: expected one class per sample ({n}), got {len(targets)}")
    return targets


def small_vit(
    *,
    seed: int,
    image_size: int = 32,
    patch_size: int = 8,
    num_layers: int = 2,
    num_heads: int = 2,
    hidden_dim: int = 16,
    mlp_dim: int = 32,
    num_classes: int = 10,
    representation_size: int | None = None,
    zero_bias: bool = False,
) -> VisionTransformer:
    """A float64 eval-mode VisionTransformer with every parameter drawn at random from ``seed``.

    torchvision initialises the head weight, the class token and the in/out-projection biases to zero, which
    would make the logits (and the attention's bias terms) vanish. ``zero_bias`` zeroes every Linear, Conv2d,
    LayerNorm and attention bias; the class token and position embedding stay random.
    """
    model = VisionTransformer(
        image_size=image_size, patch_size=patch_size, num_layers=num_layers, num_heads=num_heads,
        hidden_dim=hidden_dim, mlp_dim=mlp_dim, num_classes=num_classes, representation_size=representation_size,
    ).double().eval()
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            noise = torch.randn(param.shape, generator=generator, dtype=param.dtype)
            if name.endswith("bias"):
                param.copy_(0.0 if zero_bias else 0.1 * noise)
            elif param.dim() == 1:  # LayerNorm weight
                param.copy_(1.0 + 0.2 * noise)
            elif name in ("class_token", "encoder.pos_embedding"):
                param.copy_(0.5 * noise)
            else:
                param.copy_(noise / math.sqrt(param[0].numel()))
    return model
