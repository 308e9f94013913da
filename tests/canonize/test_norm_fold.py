"""LayerNorm affine folded into the Linear layers that read it (xaiopt/canonize/norm_fold.py),
found by running the model, each fold checked on a forward pass."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from xaiopt.canonize import canonize
from xaiopt.canonize.norm_fold import fold_norm_affines


def _random_norms(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.LayerNorm):
                m.weight.copy_(1.0 + 0.3 * torch.randn(m.weight.shape, generator=g, dtype=m.weight.dtype))
                m.bias.copy_(0.3 * torch.randn(m.bias.shape, generator=g, dtype=m.bias.dtype))
    return model


class Branches(nn.Module):
    """Four norms: one read by two Linears only (folded), one also added to the residual stream (kept), one
    read by a Linear after its features are shuffled by reshapes (same width: a fold would change the
    function, the check undoes it), one read after a reshape to another width (not tried)."""

    def __init__(self):
        super().__init__()
        self.to_tokens = nn.Linear(6, 8)
        self.shared, self.residual, self.split = nn.LayerNorm(8), nn.LayerNorm(8), nn.LayerNorm(8)
        self.shuffled, self.shuffle = nn.LayerNorm(8), nn.Linear(8, 6)
        self.a, self.b, self.c = nn.Linear(8, 8), nn.Linear(8, 8, bias=False), nn.Linear(8, 8)
        self.halves = nn.Linear(4, 3)
        self.out = nn.Linear(8 + 6 + 6, 3)

    def forward(self, x):
        t = self.to_tokens(x.flatten(2).transpose(1, 2))     # (N, 9, 8)
        h = self.shared(t)
        t = t + self.a(h) * 0.5 + self.b(h.transpose(0, 1)).transpose(0, 1)
        r = self.residual(t)
        t = r + self.c(r)
        s = self.split(t).reshape(t.shape[0], t.shape[1], 2, 4)
        u = self.shuffled(t).reshape(t.shape[0], t.shape[1], 2, 4).transpose(-1, -2).reshape(t.shape)
        return self.out(torch.cat([t.mean(1), self.halves(s).mean((1, 2)).repeat(1, 2), self.shuffle(u).mean(1)],
                                  dim=-1))


def test_only_norms_read_by_linears_alone_are_folded_and_the_function_stays():
    torch.manual_seed(0)
    model = _random_norms(Branches().double().eval())
    x = torch.randn(4, 6, 3, 3, dtype=torch.float64)
    reference = model(x)
    merges, skipped = fold_norm_affines(model, x)
    assert [(m.batch_norm, m.layers) for m in merges] == [("shared", ("a", "b"))]
    reasons = {s.target: s.reason for s in skipped}
    assert sorted(reasons) == ["shuffled", "split"]
    assert "changed the logits" in reasons["shuffled"] and "another input width" in reasons["split"]
    assert (model(x) - reference).abs().max() <= 1e-12 * reference.abs().max()
    assert torch.equal(model.shared.weight, torch.ones(8, dtype=torch.float64))
    assert model.b.bias is not None  # the norm's bias went into a layer that had none
    assert not torch.equal(model.residual.weight, torch.ones(8, dtype=torch.float64))  # kept: a residual reads it
    assert not torch.equal(model.split.weight, torch.ones(8, dtype=torch.float64))
    assert not torch.equal(model.shuffled.weight, torch.ones(8, dtype=torch.float64))  # undone by the check
    assert model.halves.weight.shape == (3, 4)


def test_a_vits_norms_are_folded_in_its_canonized_twin():
    timm = pytest.importorskip("timm")
    model = _random_norms(timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=32,
                                            patch_size=8, depth=2).double().eval())
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        twin, report = canonize(model, x)
    # norm1 and norm2 of both blocks, and the final norm (read by the head through the class token)
    assert report.counts()["merge:layer_norm_affine"] == 5
    y0, y1 = model(x), twin(x)
    assert ((y1 - y0).norm() / y0.norm()) <= 1e-10
    assert all(torch.equal(m.weight, torch.ones_like(m.weight)) and not m.bias.any()
               for m in twin.modules() if isinstance(m, nn.LayerNorm))
