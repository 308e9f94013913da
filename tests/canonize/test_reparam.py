"""Re-parameterized branches (``merge:reparam``): summed conv / batch norm / identity branches of one
tensor become one convolution.

Random weights, randomized batch-norm statistics (negative and near-zero scales), float64. Batch
norms are counted by running (the census), before and after; logits are kept to 1e-10 relative.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn
from zennit.attribution import Gradient
from zennit.composites import EpsilonPlus

from xaiopt.canonize import GraphCanonizer, canonize
from xaiopt.canonize.census import census

from .helpers import make_input, randomize_batch_norms

timm = pytest.importorskip("timm")


class RepBlock(nn.Module):
    """RepVGG written by hand: 3x3 + 1x1 conv branches and an identity batch norm, summed."""

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.conv3 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv1 = nn.Conv2d(cin, cout, 1, stride, 0, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.bn3 = nn.BatchNorm2d(cin) if cin == cout and stride == 1 else None
        self.act = nn.ReLU()

    def forward(self, x):
        if self.bn3 is None:  # stride 2 / channel change: no identity branch
            return self.act(self.bn1(self.conv3(x)) + self.bn2(self.conv1(x)))
        return self.act(self.bn3(x) + self.bn1(self.conv3(x)) + self.bn2(self.conv1(x)))


class MixerBlock(nn.Module):
    """FastViT's RepMixer shape, with grouped and asymmetric kernels: ``x + gamma * (mixer(x) - bn(x))``,
    the mixer a grouped 3x3 (4 groups), a 1x1 (2 groups), 3x1 and 1x3 convolutions and a skip batch norm."""

    def __init__(self, c: int):
        super().__init__()
        self.conv3 = nn.Conv2d(c, c, 3, padding=1, groups=4)
        self.conv1 = nn.Conv2d(c, c, 1, groups=2, bias=False)
        self.conv31 = nn.Conv2d(c, c, (3, 1), padding=(1, 0), bias=False)
        self.conv13 = nn.Conv2d(c, c, (1, 3), padding=(0, 1), bias=False)
        self.bn3, self.bn1, self.bn31, self.bn13 = (nn.BatchNorm2d(c) for _ in range(4))
        self.skip = nn.BatchNorm2d(c)
        self.norm = nn.BatchNorm2d(c)
        self.gamma = nn.Parameter(torch.randn(c, 1, 1))

    def forward(self, x):
        mixer = self.bn3(self.conv3(x)) + self.bn1(self.conv1(x)) + self.skip(x)
        mixer = mixer + self.bn31(self.conv31(x)) + self.bn13(self.conv13(x))
        return x + self.gamma * (mixer - self.norm(x))


class RepNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = RepBlock(3, 8, stride=2)
        self.block = RepBlock(8, 8)
        self.mixer = MixerBlock(8)
        self.down = RepBlock(8, 16, stride=2)
        self.head = nn.Linear(16, 5)

    def forward(self, x):
        x = self.down(torch.relu(self.mixer(self.block(self.stem(x)))))
        return self.head(x.mean((2, 3)))


class StrideMismatch(nn.Module):
    """Two branches of one input with different strides (equal output sizes on a 5x5 input)."""

    def __init__(self):
        super().__init__()
        self.conv3 = nn.Conv2d(4, 4, 3, stride=1, padding=0, bias=False)
        self.bn1 = nn.BatchNorm2d(4)
        self.conv1 = nn.Conv2d(4, 4, 1, stride=2, padding=0, bias=False)
        self.bn2 = nn.BatchNorm2d(4)

    def forward(self, x):
        return (self.bn1(self.conv3(x)) + self.bn2(self.conv1(x))).flatten(1)


class NonlinearUse(nn.Module):
    """The identity batch norm's partner branch uses the input nonlinearly (``conv(x) * x``)."""

    def __init__(self):
        super().__init__()
        self.conv3 = nn.Conv2d(4, 4, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(4)
        self.bn_id = nn.BatchNorm2d(4)

    def forward(self, x):
        return (self.bn_id(x) + self.bn1(self.conv3(x)) * x).flatten(1)


def _model(cls) -> nn.Module:
    torch.manual_seed(0)
    return randomize_batch_norms(cls().double())


def _relative(model: nn.Module, twin: nn.Module, x: torch.Tensor) -> float:
    with torch.no_grad():
        expected, got = model(x), twin(x)
    return float((got - expected).abs().max() / expected.abs().max())


def test_hand_written_rep_blocks_become_single_convolutions():
    model = _model(RepNet)
    x = make_input((2, 3, 16, 16))
    before = census(model, x)
    twin, report = canonize(model, x, n_random=1)
    after = census(twin, x)
    assert len(before.batch_norms) == 2 + 3 + 6 + 2 == 13
    assert after.batch_norms == [] and after.unhooked == []
    assert _relative(model, twin, x) < 1e-10 and report.max_rel_diff < 1e-10
    assert report.canonized and report.counts()["merge:reparam"] == 13
    assert report.counts()["reparam"] == 4 and report.skipped == []
    # one convolution per block: 4 (stem), 3 (block), 4 (mixer), 2 (down) branch convs -> 4 convs
    assert before.weighted_calls == 2 + 2 + 4 + 2 + 1 and after.weighted_calls == 4 + 1
    merged = {r.module: r.detail for r in report.rewrites if r.kind == "reparam"}
    assert set(merged) == {"stem.canonizer_reparam", "block.canonizer_reparam", "mixer.canonizer_reparam",
                           "down.canonizer_reparam"}
    assert "bn3 [identity]" in merged["block.canonizer_reparam"]
    assert "constant scales" in merged["mixer.canonizer_reparam"]
    mixer = twin.get_submodule("mixer.canonizer_reparam")
    assert mixer.kernel_size == (3, 3) and mixer.groups == 1 and mixer.padding == (1, 1)
    stem = twin.get_submodule("stem.canonizer_reparam")
    assert stem.stride == (2, 2) and stem.in_channels == 3 and stem.out_channels == 8


def test_branches_with_different_strides_are_left_alone_with_a_reason():
    model = _model(StrideMismatch)
    x = make_input((1, 4, 5, 5))
    twin, report = canonize(model, x, n_random=1)
    [skip] = [s for s in report.skipped if "not merged into one convolution" in s.reason]
    assert "differ in stride" in skip.reason and "conv3" in skip.reason and "conv1" in skip.reason
    assert not any(r.kind == "reparam" for r in report.rewrites)
    # each batch norm still merges into its own convolution; the sum stays a Sum of two convolutions
    assert sorted(m.kind for m in report.merges) == ["after", "after"]
    after = census(twin, x)
    assert after.batch_norms == [] and after.weighted_calls == 2
    assert _relative(model, twin, x) < 1e-10


def test_input_used_nonlinearly_is_left_alone_with_a_reason():
    model = _model(NonlinearUse)
    x = make_input((1, 4, 6, 6))
    twin, report = canonize(model, x, n_random=1)
    reasons = {s.target: s.reason for s in report.skipped}
    assert "not re-parameterized" in reasons["bn_id"] and "other tensors" in reasons["bn_id"]
    assert not any(r.kind == "reparam" for r in report.rewrites)
    assert census(twin, x).batch_norms == ["bn_id"] and not report.canonized
    assert _relative(model, twin, x) < 1e-10


def test_remove_restores_the_model_bit_identically():
    model = _model(RepNet).float()
    x = make_input((2, 3, 16, 16), dtype=torch.float32)
    expected = model(x)
    state = {k: v for k, v in model.state_dict().items()}
    names = [n for n, _ in model.named_modules()]
    instances = GraphCanonizer().apply(model)
    assert "mixer.canonizer_reparam" in dict(model.named_modules())
    assert census(model, x).batch_norms == []
    torch.testing.assert_close(model(x), expected, rtol=1e-4, atol=1e-5)
    for instance in instances:
        instance.remove()
    assert "forward" not in model.__dict__
    assert [n for n, _ in model.named_modules()] == names
    for key, value in model.state_dict().items():
        assert value is state[key] or value.data_ptr() == state[key].data_ptr(), key
    assert torch.equal(model(x), expected)
    assert len(census(model, x).batch_norms) == 13


def test_switched_off_by_option():
    model = _model(RepNet)
    x = make_input((1, 3, 16, 16))
    twin, report = canonize(model, x, canonizer=GraphCanonizer(reparam=False), n_random=0)
    assert "reparam" not in report.counts()
    assert len(census(twin, x).batch_norms) == 3  # block.bn3, mixer.skip, mixer.norm: no layer to merge into


def test_lrp_relevance_of_the_reparameterized_twin():
    model = _model(RepNet).float()
    x = make_input((2, 3, 16, 16), dtype=torch.float32)
    expected = model(x)
    composite = EpsilonPlus(canonizers=[GraphCanonizer()])
    with Gradient(model, composite) as attributor:
        output, relevance = attributor(x, torch.eye(5)[[0, 3]])
    torch.testing.assert_close(output, expected, rtol=1e-4, atol=1e-5)
    assert relevance.shape == x.shape and torch.isfinite(relevance).all() and relevance.abs().sum() > 0
    assert torch.equal(model(x), expected) and "forward" not in model.__dict__


# model: (batch norms computed by the model, sums merged, conv/linear calls of the model -> of the twin)
TIMM = {"repvgg_a0": (61, 22, 45, 23), "mobileone_s0": (226, 43, 192, 44), "fastvit_t8": (70, 20, 69, 53),
        "repghostnet_050": (112, 32, 96, 96)}


@pytest.mark.parametrize("name", list(TIMM))
def test_timm_reparameterized_models_compute_no_batch_norm(name):
    torch.manual_seed(0)
    model = randomize_batch_norms(timm.create_model(name, pretrained=False).double().eval())
    x = make_input((1, 3, 64, 64))
    before = census(model, x)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        twin, report = canonize(model, x, n_random=0)
    after = census(twin, x)
    expected_norms, expected_reparam, calls_before, calls_after = TIMM[name]
    assert len(before.batch_norms) == expected_norms
    assert after.batch_norms == [], after.batch_norms[:5]
    assert after.unhooked == []
    assert _relative(model, twin, x) < 1e-10
    assert report.canonized, report.reason
    assert report.counts()["reparam"] == expected_reparam
    assert len(report.merges) == expected_norms
    # every branch convolution of a merged sum is gone (RepGhost's extra branch is a batch norm only)
    assert (before.weighted_calls, after.weighted_calls) == (calls_before, calls_after)


def test_timm_lrp_and_remove_on_repvgg():
    torch.manual_seed(0)
    model = randomize_batch_norms(timm.create_model("repvgg_a0", pretrained=False, num_classes=10).eval())
    x = make_input((1, 3, 32, 32), dtype=torch.float32)
    expected = model(x)
    composite = EpsilonPlus(canonizers=[GraphCanonizer()])
    with Gradient(model, composite) as attributor:
        output, relevance = attributor(x, torch.eye(10)[[2]])
        assert census(model, x).batch_norms == []  # the composite runs the canonized model
    torch.testing.assert_close(output, expected, rtol=1e-4, atol=1e-4)
    assert torch.isfinite(relevance).all() and relevance.abs().sum() > 0
    assert torch.equal(model(x), expected)  # removed: bit-identical
