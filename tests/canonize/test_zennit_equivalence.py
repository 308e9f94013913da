"""Same composite, xaiopt's graph canonizer vs zennit's own VGG/ResNet canonizers: same attributions.

zennit leaves a merged batch norm in place as ``x / sqrt(1 + eps)`` (it sets the running variance
to 1), a relative change of eps/2 per layer that xaiopt's exact merge does not make; eps is set to
0 here so the comparison measures the canonizers' logic, not that approximation.
"""

import pytest
import torch
from torch.nn.modules.batchnorm import _BatchNorm
from zennit.attribution import Gradient
from zennit.composites import EpsilonGammaBox, EpsilonPlus
from zennit.torchvision import ResNetCanonizer, VGGCanonizer

from xaiopt.canonize import GraphCanonizer

from .helpers import make_input, randomize_batch_norms
from .models import build


def _attribution(model, composite, x, target):
    with Gradient(model, composite) as attributor:
        output, relevance = attributor(x, torch.eye(10, dtype=x.dtype)[[target]])
    return output.detach(), relevance


@pytest.mark.parametrize(
    "name, zennit_canonizer", [("vgg16_bn", VGGCanonizer), ("resnet18", ResNetCanonizer)]
)
@pytest.mark.parametrize("composite_cls", [EpsilonPlus, EpsilonGammaBox])
def test_attributions_equal_zennit_canonizers(name, zennit_canonizer, composite_cls):
    model = randomize_batch_norms(build(name).double())
    for module in model.modules():
        if isinstance(module, _BatchNorm):
            module.eps = 0.0
    x = make_input((1, 3, 32, 32))
    kwargs = {"low": -3.0, "high": 3.0} if composite_cls is EpsilonGammaBox else {}

    ours = _attribution(model, composite_cls(canonizers=[GraphCanonizer()], **kwargs), x, 3)
    theirs = _attribution(model, composite_cls(canonizers=[zennit_canonizer()], **kwargs), x, 3)

    torch.testing.assert_close(ours[0], theirs[0], rtol=1e-10, atol=1e-10)
    scale = theirs[1].abs().max()
    assert scale > 0
    assert float((ours[1] - theirs[1]).abs().max() / scale) <= 1e-5
