"""Canonization of third-party model code: a panel of timm CNNs across its families.

Random weights, randomized batch-norm statistics (negative and near-zero scales), float64. Every
claim is measured by running the twin: logits kept to 1e-10 relative, no batch norm computed, every
conv/linear on the input's path run by a Conv/Linear module (so a rule can reach it), and the
report agreeing with the measurement.
"""

from __future__ import annotations

import warnings

import pytest
import torch

from xaiopt.canonize import canonize
from xaiopt.canonize.census import census

from .helpers import make_input, randomize_batch_norms

timm = pytest.importorskip("timm")

# family: architectures (at least 25 in all); each has batch norms that the twin must not compute
PANEL = {
    "resnet": ["resnet18", "resnet50d", "ecaresnet26t", "resnest14d", "skresnet18", "res2net50_26w_4s",
               "resnetblur18", "tresnet_m"],
    "densenet": ["densenet121", "densenetblur121d"],
    "efficientnet": ["efficientnet_b0", "tf_efficientnet_b0", "efficientnetv2_rw_t", "tinynet_a"],
    "mobile": ["mobilenetv2_100", "mobilenetv3_large_100", "mixnet_s", "mnasnet_100", "fbnetc_100", "lcnet_050",
               "ghostnet_100", "rexnet_100"],
    "regnet": ["regnety_008", "regnetx_002"],
    "csp / darknet / dpn": ["cspresnet50", "cspdarknet53", "dpn68"],
    "other": ["dla34", "hrnet_w18_small", "xception41", "selecsls42b", "gernet_s", "vgg11_bn", "inception_v3"],
}
NAMES = [name for names in PANEL.values() for name in names]
SIZE = {"inception_v3": 75}


def test_panel_spans_at_least_25_architectures():
    assert len(set(NAMES)) >= 25 and len(PANEL) >= 6


@pytest.mark.parametrize("name", NAMES)
def test_timm_twin_is_measured_canonized(name):
    torch.manual_seed(0)
    model = randomize_batch_norms(timm.create_model(name, pretrained=False, num_classes=10).double().eval())
    x = make_input((1, 3, SIZE.get(name, 64), SIZE.get(name, 64)))
    before = census(model, x)
    assert before.batch_norms, "the panel is about models with batch norms"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # an untraceable top level (timm VGG) canonizes its blocks
        twin, report = canonize(model, x, n_random=0)
    after = census(twin, x)
    with torch.no_grad():
        expected, got = model(x), twin(x)
    relative = float((got - expected).abs().max() / expected.abs().max())
    assert relative < 1e-10, relative
    assert after.batch_norms == [], after.batch_norms[:5]
    assert after.unhooked == [], after.unhooked[:5]
    assert after.weighted_calls == before.weighted_calls  # every layer still runs, each once
    # the report says what the run shows
    assert report.canonized, report.reason
    assert report.remaining_batch_norms == [] and report.unhooked_layers == []
    assert report.batch_norms_before == len(before.batch_norms)
    assert len(report.merges) == len(before.batch_norms)
