"""GraphCanonizer mechanics on small hand-built models: each rewrite, exactness, reversibility."""

import copy
import math
import warnings

import pytest
import torch
from torch import nn
from zennit.attribution import Gradient
from zennit.composites import EpsilonPlus

from xaiopt.canonize import (
    BiasMapConv2d,
    Concat,
    GateMul,
    GraphCanonizer,
    Sum,
    ThreshReLU,
    canonize,
    check,
    get_canonizer,
    verify_equivalence,
)
from xaiopt.errors import UnknownNameError

from .helpers import make_input, randomize_batch_norms


class BNBeforeConv(nn.Module):
    """An input batch norm feeding zero-padded convolutions: plain, strided+dilated, depthwise."""

    def __init__(self):
        super().__init__()
        self.bn0 = nn.BatchNorm2d(4)
        self.conv = nn.Conv2d(4, 6, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(6)
        self.mix = nn.Conv2d(6, 6, 3, stride=2, padding=2, dilation=2, bias=False)
        self.pool = nn.MaxPool2d(2)
        self.bn2 = nn.BatchNorm2d(6)
        self.depthwise = nn.Conv2d(6, 6, 3, padding=1, groups=3)
        self.head = nn.Linear(6, 3)

    def forward(self, x):
        x = self.conv(self.bn0(x))
        x = self.mix(self.bn1(torch.tanh(x)))
        x = self.depthwise(self.bn2(self.pool(x)))
        return self.head(x.mean((2, 3)))


class DenseLike(nn.Module):
    """BN -> ReLU -> Conv after a concatenation, BN after a padded conv that already holds a merged
    BN, a BN that merges nowhere, and BN -> ReLU -> pool -> flatten -> Linear."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, padding=1)
        self.branch = nn.Conv2d(4, 4, 3, padding=1)
        self.norm1 = nn.BatchNorm2d(8)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(8, 6, 3, padding=1)
        self.norm0 = nn.BatchNorm2d(6)
        self.norm5 = nn.BatchNorm2d(6)
        self.norm6 = nn.BatchNorm2d(6)
        self.classifier = nn.Linear(6, 5)

    def forward(self, x):
        x = self.stem(x)
        x = torch.cat([x, self.branch(x)], 1)
        y = self.norm0(self.conv1(self.relu1(self.norm1(x))))  # merges back into conv1
        x = nn.functional.max_pool2d(self.norm5(torch.tanh(y) + y), 1)  # norm5 merges nowhere
        x = nn.functional.relu(self.norm6(x), inplace=True)
        x = torch.flatten(nn.functional.adaptive_avg_pool2d(x, (1, 1)), 1)
        return self.classifier(x)


class Gated(nn.Module):
    """A residual block with a squeeze-excitation gate."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.fc1 = nn.Conv2d(4, 2, 1)
        self.fc2 = nn.Conv2d(2, 4, 1)

    def forward(self, x):
        y = self.bn(self.conv(x))
        gate = torch.sigmoid(self.fc2(torch.relu(self.fc1(y.mean((2, 3), keepdim=True)))))
        return x + y * gate


class Untraceable(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.bn = nn.BatchNorm2d(4)

    def forward(self, x):
        if x.sum() > 0:  # data-dependent control flow: fx cannot trace this
            x = -x
        return self.bn(self.conv(x)).sum((2, 3))


def _model(cls, seed=0):
    torch.manual_seed(seed)
    return randomize_batch_norms(cls().double(), seed=seed)


def test_bn_before_padded_convs_is_exact_at_the_borders():
    model = _model(BNBeforeConv)
    x = make_input((2, 4, 9, 11))
    twin, report = canonize(model, x)
    kinds = {m.batch_norm: (m.layers, m.kind) for m in report.merges}
    assert kinds == {
        "bn0": (("conv",), "before_bias_map"),
        "bn1": (("mix",), "before_bias_map"),
        "bn2": (("depthwise",), "before_bias_map"),
    }
    assert isinstance(twin.conv, BiasMapConv2d) and isinstance(twin.depthwise, BiasMapConv2d)
    assert report.max_rel_diff < 1e-12
    # a different input size than the example: the border map follows the input
    other = make_input((3, 4, 6, 5), seed=5)
    torch.testing.assert_close(twin(other), model(other), rtol=1e-12, atol=1e-12)


def test_threshrelu_rewrite_is_exact_with_zero_negative_and_tiny_scales():
    model = _model(DenseLike)
    with torch.no_grad():
        model.norm1.weight[:3] = torch.tensor([0.0, -1.5, 1e-300])
        model.norm1.bias[:3] = torch.tensor([0.7, 0.2, -0.3])
        model.norm6.weight[0] = 0.0
        model.norm6.bias[0] = -0.4
    x = make_input((2, 3, 8, 8))
    twin, report = canonize(model, x)
    merged = {m.batch_norm: (m.layers, m.kind) for m in report.merges}
    assert merged == {
        "norm1": (("conv1",), "threshrelu"),
        "norm0": (("conv1",), "after"),
        "norm6": (("classifier",), "threshrelu"),
    }
    assert [r.kind for r in report.rewrites].count("threshrelu") == 2
    assert report.remaining_batch_norms == ["norm5"]
    assert "feeds" in report.skipped[0].reason
    assert report.max_rel_diff < 1e-12
    thresh = [m for m in twin.modules() if isinstance(m, ThreshReLU)]
    assert len(thresh) == 2
    for module in thresh:
        assert torch.isfinite(module.threshold).all()
    assert thresh[0].direction[:3].tolist() == [0.0, -1.0, 0.0]  # zero scale and overflowing -t/s: constant
    assert torch.isfinite(twin(x * 1e6)).all()
    torch.testing.assert_close(twin(x * 50), model(x * 50), rtol=1e-10, atol=1e-10)
    assert any(isinstance(m, Concat) for m in twin.modules())


def test_residual_sum_and_se_gate_become_modules():
    model = _model(Gated)
    x = make_input((2, 4, 6, 6))
    twin, report = canonize(model, x)
    assert sorted(r.kind for r in report.rewrites) == ["residual_sum", "se_gate"]
    assert isinstance(twin.canonizer_sum, Sum) and isinstance(twin.canonizer_gate, GateMul)
    assert report.max_rel_diff < 1e-12
    # relevance (the gradient under zennit) passes the gate to the signal only
    x = x.clone().requires_grad_(True)
    twin(x).sum().backward()
    assert twin.fc1.weight.grad is None or torch.count_nonzero(twin.fc1.weight.grad) == 0


def test_skipped_batch_norms_say_why():
    class Shared(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 3, 3, padding=1)
            self.bn = nn.BatchNorm2d(3)
            self.other = nn.BatchNorm2d(3)

        def forward(self, x):
            y = self.conv(self.conv(x))  # conv used twice: merging would change both calls
            return nn.functional.max_pool2d(self.bn(y), 2) + self.other(x).mean()

    model = _model(Shared)
    twin, report = canonize(model, make_input((1, 3, 8, 8)))
    reasons = {s.target: s.reason for s in report.skipped}
    assert "called more than once" in reasons["bn"]
    assert "feeds" in reasons["other"]
    assert sorted(report.remaining_batch_norms) == ["bn", "other"]
    assert report.max_rel_diff < 1e-12


def test_training_mode_batch_norm_is_left_alone_by_the_canonizer():
    model = _model(Gated).train()
    instances = GraphCanonizer().apply(model)
    assert instances[0].changes.skipped[0].reason.startswith("batch norm is in training mode")
    for instance in instances:
        instance.remove()


def test_untraceable_model_runs_uncanonized_with_a_warning():
    model = _model(Untraceable)
    x = make_input((1, 3, 6, 6))
    with pytest.warns(UserWarning, match="cannot trace Untraceable"):
        twin, report = canonize(model, x)
    assert not report.canonized and "TraceError" in report.reason and "uncanonized" in report.reason
    assert report.remaining_batch_norms == ["bn"]
    assert torch.equal(twin(x), model(x))


def test_remove_restores_bit_identical_outputs():
    model = _model(DenseLike).float()
    x = make_input((2, 3, 8, 8), dtype=torch.float32)
    expected = model(x)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    names = [n for n, _ in model.named_modules()]
    instances = GraphCanonizer().apply(model)
    assert "forward" in model.__dict__
    assert not torch.equal(model.conv1.weight, state["conv1.weight"])
    torch.testing.assert_close(model(x), expected, rtol=1e-5, atol=1e-5)
    for instance in instances:
        instance.remove()
    assert "forward" not in model.__dict__
    assert [n for n, _ in model.named_modules()] == names
    assert model.state_dict().keys() == state.keys()
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key]), key
    assert torch.equal(model(x), expected)


def test_zennit_composite_applies_and_reverts_the_canonizer():
    model = _model(Gated).float()
    x = make_input((1, 4, 6, 6), dtype=torch.float32)
    expected = model(x)
    composite = EpsilonPlus(canonizers=[GraphCanonizer()])
    with Gradient(model, composite) as attributor:
        output, relevance = attributor(x, torch.ones_like(expected))
    assert relevance.shape == x.shape and torch.isfinite(relevance).all()
    torch.testing.assert_close(output, expected)
    assert torch.equal(model(x), expected)
    assert "forward" not in model.__dict__


def test_canonized_twin_is_idempotent_copyable_and_castable():
    model = _model(DenseLike)
    x = make_input((1, 3, 8, 8))
    twin, _ = canonize(model, x)
    assert GraphCanonizer().apply(twin) == []
    again, report = canonize(twin, x)
    assert report.merges == [] and report.max_rel_diff == 0
    # norm5 merges nowhere: measured on the twin's forward, the report says so, both times
    assert report.remaining_batch_norms == ["norm5"] and not report.canonized
    assert canonize(model, x)[1].remaining_batch_norms == ["norm5"]
    clone = copy.deepcopy(twin).float()
    torch.testing.assert_close(clone(x.float()), model(x).float(), rtol=1e-4, atol=1e-4)
    assert clone.conv1.weight.dtype == torch.float32
    assert twin.conv1.weight.dtype == torch.float64


def test_verify_equivalence_detects_a_changed_function():
    model = _model(Gated)
    other = copy.deepcopy(model)
    with torch.no_grad():
        other.conv.weight[0, 0, 0, 0] += 1.0
    result = verify_equivalence(model, other, input_shape=(2, 4, 6, 6), n_random=2)
    assert not result.ok and result.max_abs > 1e-3 and result.n_inputs == 2
    assert "FAILED" in str(result)
    same = verify_equivalence(model, copy.deepcopy(model), make_input((1, 4, 6, 6)))
    assert same.ok and same.max_abs == 0.0 and math.isfinite(same.max_rel)


def test_check_report_prints_merges_rewrites_and_differences():
    text = str(check(_model(Gated), make_input((1, 4, 6, 6))))
    assert "bn -> conv [after]" in text
    assert "residual_sum" in text and "se_gate" in text
    assert "relative" in text and ": ok" in text


def test_presets_by_name():
    model = _model(Gated)
    instances = get_canonizer("vgg").apply(model)
    assert [r.kind for r in instances[0].changes.rewrites] == []
    instances[0].remove()
    with pytest.raises(UnknownNameError, match="valid: auto"):
        get_canonizer("nope")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        canonize(model, make_input((1, 4, 6, 6)))


class _UntraceableWrapper(nn.Module):
    """Data-dependent control flow at the top; traceable blocks inside."""

    def __init__(self):
        super().__init__()
        self.block = Gated()
        self.features = nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU())
        self.stray = Untraceable()

    def forward(self, x):
        y = self.features(self.block(x))
        if y.mean() > 100:
            y = y * 2
        return y.mean((2, 3)) + self.stray(x[:, :3]).mean()


def test_untraceable_model_canonizes_its_traceable_submodules():
    model = _model(_UntraceableWrapper)
    x = make_input((2, 4, 6, 6))
    with pytest.warns(UserWarning, match="canonized its traceable submodules only"):
        twin, report = canonize(model, x)
    # partly canonized: the untraceable block still computes its batch norm, so not "canonized"
    assert not report.canonized and "stray.bn" in report.reason
    assert report.batch_norms_before == 3
    assert {(m.batch_norm, m.layers) for m in report.merges} == {
        ("block.bn", ("block.conv",)),
        ("features.1", ("features.0",)),
    }
    assert {s.target for s in report.skipped} == {"", "stray"}
    assert report.remaining_batch_norms == ["stray.bn"]
    assert report.max_rel_diff < 1e-12
    assert isinstance(twin.block.canonizer_sum, Sum)


class OtherLayers(nn.Module):
    """BN after a transposed conv and after a Linear; BN1d before a padded Conv1d and a Linear."""

    def __init__(self):
        super().__init__()
        self.up = nn.ConvTranspose2d(3, 4, 2, stride=2)
        self.bn_up = nn.BatchNorm2d(4)
        self.bn_seq = nn.BatchNorm1d(4)
        self.conv1d = nn.Conv1d(4, 5, 3, padding=2, bias=False)
        self.fc = nn.Linear(5, 6)
        self.bn_fc = nn.BatchNorm1d(6)
        self.bn_in = nn.BatchNorm1d(6)
        self.out = nn.Linear(6, 2)

    def forward(self, x):
        x = torch.tanh(self.bn_up(self.up(x))).flatten(2)  # (N, 4, L)
        x = self.conv1d(self.bn_seq(x)).amax(2)
        x = torch.tanh(self.bn_fc(self.fc(x)))
        return self.out(self.bn_in(x))


def test_transposed_conv_linear_and_1d_layers():
    model = _model(OtherLayers)
    twin, report = canonize(model, make_input((2, 3, 3, 4)))
    assert {(m.batch_norm, m.layers, m.kind) for m in report.merges} == {
        ("bn_up", ("up",), "after"),
        ("bn_seq", ("conv1d",), "before_bias_map"),
        ("bn_fc", ("fc",), "after"),
        ("bn_in", ("out",), "before"),
    }
    assert report.max_rel_diff < 1e-12


def test_failed_check_falls_back_to_the_unchanged_model(monkeypatch):
    import xaiopt.canonize.affine as affine

    real = affine.batch_norm_affine

    def wrong(bn):
        scale, shift = real(bn)
        return scale, shift + 1.0

    monkeypatch.setattr("xaiopt.canonize.canonizer.batch_norm_affine", wrong)
    model = _model(Gated)
    x = make_input((1, 4, 6, 6))
    with pytest.warns(UserWarning, match="check failed"):
        twin, report = canonize(model, x)
    assert not report.ok and not report.canonized
    assert report.remaining_batch_norms == ["bn"]
    assert torch.equal(twin(x), model(x))
    monkeypatch.undo()
    assert check(_model(Gated), x).ok
