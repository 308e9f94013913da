"""LRP conserves relevance on canonized DenseNet-121 and ResNet-50, and does not without canonization.

With bias-free rules (zennit ``zero_params='bias'``) every layer conserves, so the input relevance
sums to the explained logit. Without canonization that fails: a batch norm explained as the affine
layer it is (epsilon rule) absorbs relevance in its shift, and a plain residual addition (no module,
so the gradient) copies relevance into both branches. zennit's default ``Pass`` for batch norms
conserves only by ignoring the layer, so the uncanonized run maps batch norms to the epsilon rule.
"""

import pytest
import torch
from torch.nn.modules.batchnorm import _BatchNorm
from zennit.attribution import Gradient
from zennit.composites import EpsilonPlus
from zennit.rules import Epsilon
from zennit.types import BatchNorm

from xaiopt.canonize import GraphCanonizer, canonize

from .helpers import make_input, randomize_batch_norms
from .models import build


def _relevance_gap(model, canonizers, x, target):
    batch_norm_rule = [(BatchNorm, Epsilon(epsilon=1e-9, zero_params="bias"))]
    composite = EpsilonPlus(
        epsilon=1e-9, stabilizer=1e-12, zero_params="bias", canonizers=canonizers, layer_map=batch_norm_rule
    )
    onehot = torch.eye(10, dtype=x.dtype)[[target]]
    with Gradient(model, composite) as attributor:
        output, relevance = attributor(x, lambda out: out * onehot)
    logit = float(output.detach()[0, target])
    return abs(float(relevance.sum()) - logit) / abs(logit)


@pytest.mark.parametrize("name", ["densenet121", "resnet50"])
def test_canonized_model_conserves_relevance(name):
    model = randomize_batch_norms(build(name).double())
    x = make_input((1, 3, 32, 32))

    twin, report = canonize(model, x, n_random=0)
    assert report.remaining_batch_norms == []
    assert not any(isinstance(m, _BatchNorm) for m in _modules_on_path(twin))

    assert _relevance_gap(model, [GraphCanonizer()], x, 2) < 0.01
    assert _relevance_gap(model, [], x, 2) > 0.01


def _modules_on_path(twin):
    """Modules the canonized forward actually calls."""
    called = []
    handles = [m.register_forward_hook(lambda m, i, o: called.append(m)) for m in twin.modules()]
    with torch.no_grad():
        twin(make_input((1, 3, 32, 32)))
    for handle in handles:
        handle.remove()
    return called
