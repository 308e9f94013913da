"""The contract seam: canonize(model, example_input) -> (twin, report)."""

import torch
from torch import nn

from xaiopt.canonize import CanonizationReport, canonize

from .helpers import make_input, randomize_batch_norms


class _OrderedOddly(nn.Module):
    """BN registered before the conv it follows: module order is not dataflow order."""

    def __init__(self):
        super().__init__()
        self.bn = nn.BatchNorm2d(8)
        self.head = nn.Linear(8, 3)
        self.conv = nn.Conv2d(3, 8, 3, padding=1)

    def forward(self, x):
        x = torch.relu(self.bn(self.conv(x)))
        return self.head(x.mean((2, 3)))


def test_canonize_merges_bn_after_conv_on_a_copy():
    torch.manual_seed(0)
    model = randomize_batch_norms(_OrderedOddly().double())
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = make_input((2, 3, 16, 16))
    twin, report = canonize(model, x)

    assert isinstance(report, CanonizationReport)
    assert report.canonized
    assert [(m.batch_norm, m.layers, m.kind) for m in report.merges] == [("bn", ("conv",), "after")]
    assert report.remaining_batch_norms == []
    assert report.max_rel_diff <= 1e-12
    assert not twin.training
    assert twin is not model and twin.conv is not model.conv
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key
    torch.testing.assert_close(twin(x), model(x), rtol=1e-12, atol=1e-12)
    assert "bn -> conv [after]" in str(report)


def test_public_spelling_xaiopt_canonize_is_callable():
    import torch
    from torch import nn

    import xaiopt
    import xaiopt.canonize  # noqa: F401  (binds the subpackage onto xaiopt)

    model = nn.Sequential(nn.Conv2d(3, 2, 3), nn.BatchNorm2d(2), nn.ReLU()).eval()
    x = torch.randn(2, 3, 8, 8)
    twin, report = xaiopt.canonize(model, x)
    assert report.remaining_batch_norms == [] and len(report.merges) == 1
    torch.testing.assert_close(twin(x), model(x), rtol=1e-5, atol=1e-6)
    assert report.ok
