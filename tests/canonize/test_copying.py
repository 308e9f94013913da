"""canonize() copies a model whose forward cached a tensor with a graph (timm's LeViT after a forward
with autograd on used to end in a 42-frame deepcopy traceback)."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from xaiopt.canonize import canonize
from xaiopt.canonize.copying import copy_model


class CachesABias(nn.Module):
    """Caches a tensor computed from a parameter, as LeViT's attention-bias cache does."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.bn = nn.BatchNorm2d(4)
        self.bias_table = nn.Parameter(torch.randn(4))
        self.cache: dict[str, torch.Tensor] = {}

    def forward(self, x):
        if "cpu" not in self.cache:
            self.cache["cpu"] = self.bias_table * 2.0  # not a graph leaf when autograd is on
        return self.bn(self.conv(x)).mean(dim=(2, 3)) + self.cache["cpu"]


def test_a_cached_non_leaf_tensor_is_copied_detached_with_its_values():
    model = CachesABias().eval()
    model(torch.randn(1, 3, 8, 8, requires_grad=True)).sum().backward()
    assert model.cache["cpu"].grad_fn is not None
    copied = copy_model(model)
    assert copied.cache["cpu"].grad_fn is None and torch.equal(copied.cache["cpu"], model.cache["cpu"])
    assert copied.conv.weight is not model.conv.weight and torch.equal(copied.conv.weight, model.conv.weight)
    x = torch.randn(2, 3, 8, 8)
    twin, report = canonize(model, x)
    assert report.canonized and (twin(x) - model(x)).abs().max() <= 1e-5


def test_levit_canonizes_after_a_forward_with_autograd():
    timm = pytest.importorskip("timm")
    model = timm.create_model("levit_128s", pretrained=False, img_size=64).double().eval()
    x = torch.randn(2, 3, 64, 64, dtype=torch.float64)
    model(x.clone().requires_grad_(True)).sum().backward()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        twin, report = canonize(model, x)  # no exception; the report says what the twin computes
    assert (twin(x) - model(x)).abs().max() <= 1e-10 * model(x).abs().max()
    assert report.canonized == (not report.remaining_batch_norms and not report.unhooked_layers)
