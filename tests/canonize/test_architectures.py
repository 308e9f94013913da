"""Every torchvision family: random weights, randomized BN statistics (negative and near-zero
scales), eval mode, float64. All batch norms merged, the function kept to 1e-5 (measured ~1e-15)."""

import pytest
import torch
from torch.nn.modules.batchnorm import _BatchNorm

from xaiopt.canonize import GraphCanonizer, canonize

from .helpers import make_input, randomize_batch_norms
from .models import ARCHITECTURES, build


@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_architecture_is_canonized_exactly(name):
    _, side, rewrites = ARCHITECTURES[name]
    model = randomize_batch_norms(build(name).double())
    n_batch_norms = sum(isinstance(m, _BatchNorm) for m in model.modules())

    twin, report = canonize(model, make_input((1, 3, side, side)), n_random=1)

    assert report.canonized, report.reason
    assert report.remaining_batch_norms == []
    assert report.skipped == []
    assert len(report.merges) == n_batch_norms
    counts = report.counts()
    for kind, expected in rewrites.items():
        assert counts.get(kind, 0) == expected, (kind, counts)
    assert report.max_rel_diff <= 1e-5
    assert report.max_rel_diff <= 1e-12  # float64: exact up to rounding


@pytest.mark.parametrize("name", ["resnet18", "densenet121", "mobilenet_v3_small"])
def test_remove_restores_torchvision_model_bit_identically(name):
    model = randomize_batch_norms(build(name)).float()
    x = make_input((1, 3, 32, 32), dtype=torch.float32)
    with torch.no_grad():
        expected = model(x)
        instances = GraphCanonizer().apply(model)
        canonized = model(x)
        for instance in instances:
            instance.remove()
        restored = model(x)
    torch.testing.assert_close(canonized, expected, rtol=1e-4, atol=1e-4)
    assert torch.equal(restored, expected)
    assert "forward" not in model.__dict__
