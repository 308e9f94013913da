"""Canonization of attention: fused projections as one Linear module per part.

LRP rules attach to Conv/Linear modules. Two common implementations of attention hide their
projections from them:

- ``nn.MultiheadAttention`` (torchvision's ViT) applies its packed ``in_proj_weight`` and its
  ``out_proj`` weights with ``F.linear`` inside ``F.multi_head_attention_forward``: no module runs;
- a fused ``qkv`` Linear (timm's ViT, DeiT, DINOv2, CLIP ports) is one module for three roles, so
  the query, key and value projections cannot take rules of their own.

:class:`UnfusedMultiheadAttention` computes ``nn.MultiheadAttention`` with four Linear modules
(``q_proj``, ``k_proj``, ``v_proj``, ``out_proj``) and ``scaled_dot_product_attention`` (or an
explicit softmax when the weights are asked for); :class:`SplitQKV` is a fused projection as three
Linear modules ``q``, ``k``, ``v`` whose outputs are concatenated. Both compute the same function
(checked on a forward pass by :func:`xaiopt.canonize.canonize`).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .changes import Rewrite, Skip


def multi_head_attention(query: Tensor, key: Tensor, value: Tensor, *, num_heads: int,
                         project: tuple[Callable[[Tensor], Tensor], ...], attn_mask: Tensor | None = None,
                         need_weights: bool = False, average_attn_weights: bool = True
                         ) -> tuple[Tensor, Tensor | None]:
    """``F.multi_head_attention_forward`` (sequence-first ``(L, N, E)`` or unbatched ``(L, E)``, no
    key bias, no zero attention, no key padding mask, no dropout) written out of its four projections
    ``project = (q, k, v, out)``, the attention products and a softmax, or
    ``scaled_dot_product_attention`` when the weights are not returned."""
    batched = query.dim() == 3
    q_in, k_in, v_in = (t if batched else t.unsqueeze(1) for t in (query, key, value))
    length, batch, embed = q_in.shape
    head_dim = embed // num_heads

    def heads(t: Tensor) -> Tensor:  # (L, N, E) -> (N, H, L, d)
        return t.reshape(t.shape[0], batch, num_heads, head_dim).permute(1, 2, 0, 3)

    q, k, v = heads(project[0](q_in)), heads(project[1](k_in)), heads(project[2](v_in))
    mask = attn_mask
    if mask is not None:
        if mask.dtype == torch.bool:  # True: not allowed (nn.MultiheadAttention's convention)
            mask = torch.zeros(mask.shape, dtype=q.dtype, device=q.device).masked_fill(mask, float("-inf"))
        mask = mask.reshape(batch, num_heads, length, -1) if mask.dim() == 3 else mask
    weights = None
    if need_weights:
        scores = torch.matmul(q * (1.0 / math.sqrt(head_dim)), k.transpose(-2, -1))
        if mask is not None:
            scores = scores + mask
        weights = torch.softmax(scores, dim=-1)
        out = torch.matmul(weights, v)
        weights = weights.mean(dim=1) if average_attn_weights else weights
        if not batched:
            weights = weights.squeeze(0)
    else:
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    out = project[3](out.permute(2, 0, 1, 3).reshape(length, batch, embed))
    return (out if batched else out.squeeze(1)), weights


def unsupported(mha: nn.MultiheadAttention) -> str | None:
    """Why ``mha`` cannot be unfused (None when it can)."""
    if mha.bias_k is not None or mha.bias_v is not None:
        return "key/value biases (add_bias_kv)"
    if mha.add_zero_attn:
        return "add_zero_attn"
    if mha.dropout and mha.training:
        return "attention dropout in training mode"
    return None


def _linear(weight: Tensor, bias: Tensor | None) -> nn.Linear:
    layer = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None, device=weight.device,
                      dtype=weight.dtype)
    with torch.no_grad():
        layer.weight.copy_(weight)
        if bias is not None:
            layer.bias.copy_(bias)
    return layer


class UnfusedMultiheadAttention(nn.Module):
    """``nn.MultiheadAttention`` with one Linear module per projection (same call signature)."""

    def __init__(self, mha: nn.MultiheadAttention) -> None:
        super().__init__()
        why = unsupported(mha)
        if why is not None:
            raise ValueError(f"nn.MultiheadAttention with {why} cannot be unfused")
        if mha._qkv_same_embed_dim:
            weights = mha.in_proj_weight.detach().chunk(3)
        else:
            weights = (mha.q_proj_weight.detach(), mha.k_proj_weight.detach(), mha.v_proj_weight.detach())
        biases = (None,) * 3 if mha.in_proj_bias is None else mha.in_proj_bias.detach().chunk(3)
        self.q_proj, self.k_proj, self.v_proj = (_linear(w, b) for w, b in zip(weights, biases))
        self.out_proj = _linear(mha.out_proj.weight.detach(),
                                None if mha.out_proj.bias is None else mha.out_proj.bias.detach())
        self.num_heads = mha.num_heads
        self.batch_first = mha.batch_first
        self.embed_dim = mha.embed_dim

    def forward(self, query: Tensor, key: Tensor, value: Tensor, key_padding_mask: Tensor | None = None,
                need_weights: bool = True, attn_mask: Tensor | None = None, average_attn_weights: bool = True,
                is_causal: bool = False) -> tuple[Tensor, Tensor | None]:
        if key_padding_mask is not None:
            raise NotImplementedError("UnfusedMultiheadAttention: key_padding_mask is not supported")
        if is_causal and attn_mask is None:
            raise NotImplementedError("UnfusedMultiheadAttention: is_causal without attn_mask is not supported")
        if self.batch_first and query.dim() == 3:
            query, key, value = (t.transpose(0, 1) for t in (query, key, value))
        out, weights = multi_head_attention(
            query, key, value, num_heads=self.num_heads, attn_mask=attn_mask, need_weights=need_weights,
            average_attn_weights=average_attn_weights,
            project=(self.q_proj, self.k_proj, self.v_proj, self.out_proj))
        if self.batch_first and query.dim() == 3:
            out = out.transpose(0, 1)
        return out, weights


class SplitQKV(nn.Module):
    """A fused query/key/value projection as three Linear modules, outputs concatenated in order."""

    def __init__(self, fused: nn.Linear) -> None:
        super().__init__()
        weights = fused.weight.detach().chunk(3)
        biases = (None,) * 3 if fused.bias is None else fused.bias.detach().chunk(3)
        self.q, self.k, self.v = (_linear(w, b) for w, b in zip(weights, biases))
        self.in_features, self.out_features = fused.in_features, fused.out_features

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([self.q(x), self.k(x), self.v(x)], dim=-1)


def _is_fused_qkv(name: str, module: nn.Module) -> bool:
    return (type(module) is nn.Linear and name.rsplit(".", 1)[-1] in ("qkv", "to_qkv", "Wqkv", "qkv_proj")
            and module.out_features % 3 == 0)


def unfuse_attention(model: nn.Module) -> tuple[list[Rewrite], list[Skip]]:
    """Replace, in place, every ``nn.MultiheadAttention`` by :class:`UnfusedMultiheadAttention` and
    every fused ``qkv`` Linear by :class:`SplitQKV`; returns what was rewritten and what was left."""
    rewrites: list[Rewrite] = []
    skipped: list[Skip] = []
    for name, module in list(model.named_modules()):
        if not name:
            continue
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name)
        if isinstance(module, nn.MultiheadAttention):
            why = unsupported(module)
            if why is not None:
                skipped.append(Skip(name, f"nn.MultiheadAttention with {why} is left fused"))
                continue
            setattr(parent, child, UnfusedMultiheadAttention(module))
            rewrites.append(Rewrite("attention_unfused", name, "q_proj, k_proj, v_proj, out_proj"))
        elif _is_fused_qkv(name, module):
            setattr(parent, child, SplitQKV(module))
            rewrites.append(Rewrite("qkv_split", name, "q, k, v"))
    return rewrites, skipped
