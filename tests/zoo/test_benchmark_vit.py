"""The embedded ViT (``benchmark:vit``): timm's layout, real attention, deterministic training, cached weights.

The full recipe (about 50 s on one thread) is not trained here; its accuracy is recorded in the cache sidecar
and in the comment next to ``RECIPES["vit"]``.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch import nn

from xaiopt.errors import UnknownNameError
from xaiopt.zoo import CacheCorruptedWarning, cache, load_model, training
from xaiopt.zoo.benchmark_models import BenchmarkViT, Block, architecture_names
from xaiopt.zoo.cache import entry_paths, read_sidecar
from xaiopt.zoo.training import TrainingRecipe, train_benchmark_model

_TINY = TrainingRecipe(steps=4, eval_samples=16)


def _same_weights(a: nn.Module, b: nn.Module) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))


def test_vit_is_a_benchmark_architecture_mapping_a_batch_to_four_logits() -> None:
    assert "vit" in architecture_names()
    model = load_model("benchmark:vit", weights="random")
    assert isinstance(model, BenchmarkViT) and not model.training
    with torch.no_grad():
        logits = model(torch.randn(2, 3, 64, 64))
    assert logits.shape == (2, 4)
    assert torch.isfinite(logits).all()


def test_module_names_follow_timm() -> None:
    model = load_model("benchmark:vit", weights="random")
    modules = dict(model.named_modules())
    patch_embed = modules["patch_embed"]
    assert isinstance(patch_embed, nn.Conv2d)
    assert (patch_embed.in_channels, patch_embed.kernel_size, patch_embed.stride) == (3, (8, 8), (8, 8))
    dim = patch_embed.out_channels
    for name, kind, shape in [
        ("blocks.0.attn.qkv", nn.Linear, (3 * dim, dim)),  # fused q, k, v
        ("blocks.0.attn.proj", nn.Linear, (dim, dim)),
        ("blocks.0.mlp.fc1", nn.Linear, None),
        ("blocks.0.mlp.fc2", nn.Linear, None),
        ("head", nn.Linear, (4, dim)),
    ]:
        assert isinstance(modules[name], kind), name
        if shape is not None:
            assert modules[name].weight.shape == shape, name
    assert isinstance(modules["blocks.0.mlp.act"], nn.GELU)
    for name in ["blocks.0.norm1", "blocks.0.norm2", "norm"]:
        assert isinstance(modules[name], nn.LayerNorm) and modules[name].normalized_shape == (dim,), name
    assert isinstance(model.blocks, nn.Sequential) and all(isinstance(b, Block) for b in model.blocks)
    assert len(model.blocks) >= 3  # a study's default three layer groups take one block each at least
    assert model.cls_token.shape == (1, 1, dim) and model.pos_embed.shape == (1, 1 + 64, dim)
    assert not any(isinstance(m, nn.Dropout) for m in model.modules())


def _reference_block(block: Block, x: torch.Tensor) -> torch.Tensor:
    """One Block's forward written out: LayerNorm, per-head softmax(q k^T / sqrt(d)) v, GELU MLP."""

    def layer_norm(t: torch.Tensor, norm: nn.LayerNorm) -> torch.Tensor:
        centred = t - t.mean(dim=-1, keepdim=True)
        variance = (centred**2).mean(dim=-1, keepdim=True)
        return centred / torch.sqrt(variance + norm.eps) * norm.weight + norm.bias

    def linear(t: torch.Tensor, layer: nn.Linear) -> torch.Tensor:
        return t @ layer.weight.T + layer.bias

    dim = x.shape[-1]
    heads = block.attn.num_heads
    d = dim // heads
    qkv = linear(layer_norm(x, block.norm1), block.attn.qkv)
    q, k, v = qkv[..., :dim], qkv[..., dim : 2 * dim], qkv[..., 2 * dim :]
    per_head = []
    for h in range(heads):  # head h owns columns h*d .. (h+1)*d of q, k and v
        qh, kh, vh = (t[..., h * d : (h + 1) * d] for t in (q, k, v))
        scores = qh @ kh.transpose(-1, -2) / math.sqrt(d)
        weights = torch.exp(scores - scores.amax(dim=-1, keepdim=True))
        per_head.append(weights / weights.sum(dim=-1, keepdim=True) @ vh)
    x = x + linear(torch.cat(per_head, dim=-1), block.attn.proj)
    hidden = linear(layer_norm(x, block.norm2), block.mlp.fc1)
    gelu = 0.5 * hidden * (1.0 + torch.erf(hidden / math.sqrt(2.0)))
    return x + linear(gelu, block.mlp.fc2)


def test_a_block_computes_multi_head_softmax_attention() -> None:
    torch.manual_seed(0)
    block = BenchmarkViT().blocks[0].double()
    with torch.no_grad():
        for norm in (block.norm1, block.norm2):
            norm.weight.uniform_(0.5, 1.5)
            norm.bias.normal_(0.0, 0.2)
        block.attn.qkv.weight.mul_(3.0)  # peaked, uneven attention: a wrong scale or head split shows
    x = torch.randn(2, 65, block.norm1.normalized_shape[0], dtype=torch.float64)
    with torch.no_grad():
        expected = _reference_block(block, x)
        actual = block(x)
        # the check is sharp: attention weights are far from uniform and heads differ
        assert (expected - x).abs().max() > 1.0
    torch.testing.assert_close(actual, expected, rtol=0.0, atol=1e-12)


def test_the_forward_classifies_the_class_token_of_embedded_patches() -> None:
    model = load_model("benchmark:vit", weights="random").double()
    x = torch.randn(2, 3, 64, 64, dtype=torch.float64)
    seen: dict[str, torch.Tensor] = {}
    model.blocks.register_forward_hook(lambda _m, args, out: seen.update(tokens=args[0], out=out))
    with torch.no_grad():
        logits = model(x)
        # patch token 1 + 8*r + c is the 8x8 patch at row r, column c (row-major, as timm flattens)
        patch = x[:, :, 8 * 2 : 8 * 3, 8 * 5 : 8 * 6]
        embedded = torch.einsum("bchw,dchw->bd", patch, model.patch_embed.weight) + model.patch_embed.bias
        torch.testing.assert_close(seen["tokens"][:, 1 + 8 * 2 + 5], embedded + model.pos_embed[0, 1 + 8 * 2 + 5])
        torch.testing.assert_close(seen["tokens"][:, 0], (model.cls_token[0, 0] + model.pos_embed[0, 0]).expand(2, -1))
        torch.testing.assert_close(logits, model.head(model.norm(seen["out"])[:, 0]))


def test_vit_training_is_deterministic() -> None:
    recipe = TrainingRecipe(steps=6, eval_samples=32, lr=2e-3, weight_decay=0.05)
    first, result = train_benchmark_model("vit", recipe=recipe)
    second, _ = train_benchmark_model("vit", recipe=recipe)
    assert 0.0 <= result.test_accuracy <= 1.0
    assert not torch.are_deterministic_algorithms_enabled()  # restored after training
    assert _same_weights(first, second)


def test_vit_is_trained_once_then_loaded_from_the_cache(monkeypatch, tmp_path: Path, recwarn) -> None:
    monkeypatch.setitem(training.RECIPES, "vit", _TINY)
    model = load_model("benchmark:vit", cache_dir=tmp_path)
    weights, _ = entry_paths("vit", tmp_path)
    assert weights.is_file() and weights.name.startswith("benchmark-vit-")
    sidecar = read_sidecar("vit", cache_dir=tmp_path)
    assert sidecar["architecture"] == "vit" and sidecar["recipe_key"] == _TINY.key("vit")

    def no_training(*args: object, **kwargs: object) -> None:
        raise AssertionError("the cached ViT was retrained")

    monkeypatch.setattr(cache, "train_benchmark_model", no_training)
    again = load_model("benchmark:vit", cache_dir=tmp_path)
    assert isinstance(again, BenchmarkViT) and not again.training
    assert _same_weights(model, again)
    assert not [w for w in recwarn if issubclass(w.category, CacheCorruptedWarning)]


def test_unknown_benchmark_names_list_the_vit() -> None:
    with pytest.raises(UnknownNameError, match="benchmark:densenet, benchmark:vit$"):
        load_model("benchmark:alexnet")
