"""Batch norms of hybrid transformers (timm's LeViT, EfficientViT, MobileViT, CoAtNet, EfficientFormer)
merged, measured by running: the census counts the batch norms a forward pass computes in the model
and in its twin, and the twin keeps the logits in float64. Each model has run one forward with
autograd on before it is canonized (LeViT then holds a non-leaf attention-bias cache).

Also the token-row form ``bn(linear(x).flatten(0, 1)).reshape_as(x)`` on a user's own module, and the
case where the same code would be wrong (a 4-d input whose rows are not tokens): the check on a
forward pass refuses that twin, it is never silently different."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from xaiopt.canonize import canonize
from xaiopt.canonize.census import census

timm = pytest.importorskip("timm")


def _randomize_norms(model: nn.Module, seed: int = 0) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.running_mean is not None:
                m.running_mean.copy_(torch.rand(m.running_mean.shape, generator=g, dtype=m.running_mean.dtype) - 0.5)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g, dtype=m.running_var.dtype) + 0.5)
                if m.weight is not None:
                    m.weight.copy_(1 + 0.2 * torch.randn(m.weight.shape, generator=g, dtype=m.weight.dtype))
                    m.bias.copy_(0.2 * torch.randn(m.bias.shape, generator=g, dtype=m.bias.dtype))
    return model


def _canonize(model: nn.Module, x: torch.Tensor):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return canonize(model, x)


HYBRIDS = [  # name, kwargs, image size, batch norms a forward computes
    ("levit_128s", {"img_size": 64}, 64, 52),
    ("efficientvit_b0", {}, 64, 26),
    ("mobilevit_xxs", {}, 64, 32),
    ("efficientformer_l1", {}, 224, 33),
    ("coatnet_nano_rw_224", {"img_size": 64}, 64, 22),
]


@pytest.mark.parametrize("name,kwargs,size,batch_norms", HYBRIDS, ids=[h[0] for h in HYBRIDS])
def test_hybrid_batch_norms_are_all_merged(name, kwargs, size, batch_norms):
    torch.manual_seed(0)
    model = _randomize_norms(timm.create_model(name, pretrained=False, **kwargs).double().eval())
    x = torch.randn(2, 3, size, size, dtype=torch.float64)
    model(x.clone().requires_grad_(True))  # caches (LeViT's attention biases) now carry a graph
    assert len(census(model, x[:1]).batch_norms) == batch_norms
    twin, report = _canonize(model, x)
    assert report.canonized, report
    assert census(twin, x[:1]).batch_norms == [] and report.remaining_batch_norms == []
    assert report.batch_norms_before == batch_norms
    y0, y1 = model(x), twin(x)
    assert ((y1 - y0).norm() / y0.norm()).item() <= 1e-10, report
    # the merged weights are the layers' own: a third batch of inputs agrees too
    x2 = torch.randn(3, 3, size, size, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    assert torch.allclose(twin(x2), model(x2), rtol=1e-10, atol=1e-12)


class TokenBlock(nn.Module):
    """A user's token block in LeViT's style: Linear then BatchNorm1d over the tokens as rows."""

    def __init__(self, dim: int = 6, hidden: int = 10, classes: int = 3) -> None:
        super().__init__()
        self.fc = nn.Linear(dim, hidden)
        self.bn = nn.BatchNorm1d(hidden)
        self.out = nn.Linear(hidden, classes)

    def forward(self, x):  # (B, N, dim)
        y = self.fc(x)
        y = self.bn(y.flatten(0, 1)).reshape_as(y)
        return self.out(torch.relu(y)).mean(1)


class RowsNotTokens(nn.Module):
    """The same code on a 4-d input whose width equals the features: flatten(0, 1) leaves (B*H, W, C),
    and the batch norm normalizes W, not the Linear's features."""

    def __init__(self, features: int = 5) -> None:
        super().__init__()
        self.fc = nn.Linear(features, features)
        self.bn = nn.BatchNorm1d(features)

    def forward(self, x):  # (B, H, W=features, features)
        y = self.fc(x)
        return self.bn(y.flatten(0, 1)).reshape_as(y).sum((1, 2))


def test_token_rows_batch_norm_is_merged_into_the_linear_before():
    model = _randomize_norms(TokenBlock().double().eval())
    x = torch.randn(4, 7, 6, dtype=torch.float64)
    twin, report = _canonize(model, x)
    assert report.canonized, report
    assert [(m.batch_norm, m.layers, m.kind) for m in report.merges] == [("bn", ("fc",), "after")]
    assert census(twin, x[:1]).batch_norms == []
    # hand-computed: the merged Linear is scale * (W x + b) + shift per output feature
    bn = model.bn
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    shift = bn.bias - bn.running_mean * scale
    assert torch.allclose(twin.fc.weight, model.fc.weight * scale[:, None], rtol=1e-14, atol=0)
    assert torch.allclose(twin.fc.bias, model.fc.bias * scale + shift, rtol=1e-14, atol=1e-15)
    assert torch.allclose(twin(x), model(x), rtol=1e-12, atol=1e-14)


def test_rows_that_are_not_tokens_never_give_a_silently_different_twin():
    model = _randomize_norms(RowsNotTokens().double().eval())
    x = torch.randn(2, 3, 5, 5, dtype=torch.float64)
    twin, report = _canonize(model, x)
    # the graph cannot see shapes, so the merge is tried; the check on a forward pass undoes it
    assert not report.canonized and report.reason.startswith("check failed"), report
    assert census(twin, x[:1]).batch_norms == ["bn"]
    assert torch.equal(twin(x), model(x))
