"""Canonization of model code written outside torch.nn, measured by running model and twin."""

from __future__ import annotations

import sys
import types

import pytest
import torch
from torch import nn

from xaiopt.canonize import canonize
from xaiopt.canonize.census import census
from xaiopt.cli import main
from xaiopt.space import resolve_groups

from . import third_party as tp
from .helpers import make_input, randomize_batch_norms


def _model(cls) -> nn.Module:
    torch.manual_seed(0)
    return randomize_batch_norms(cls().double())


def _convs_run(model: nn.Module, x: torch.Tensor) -> list[str]:
    return resolve_groups(model, x, 1).groups["conv1"]


@pytest.mark.parametrize("cls", [tp.PortedEfficientNet, tp.PreActResNet, tp.PortedDenseNet, tp.FunctionalNet,
                                 tp.MixedKernelNet])
def test_third_party_twin_computes_no_batch_norm_and_keeps_every_layer_in_a_module(cls):
    model = _model(cls)
    x = make_input((2, 3, 15, 17))  # odd sizes: same-padding differs per side
    before = census(model, x)
    twin, report = canonize(model, x)
    after = census(twin, x)
    assert before.batch_norms and after.batch_norms == []
    assert after.unhooked == []
    assert report.canonized, report.reason
    assert report.max_rel_diff < 1e-12
    torch.testing.assert_close(twin(x), model(x), rtol=1e-12, atol=1e-12)
    # a batch of another size: the same-padding forward runs for that size, too
    other = make_input((1, 3, 20, 11), seed=4)
    torch.testing.assert_close(twin(other), model(other), rtol=1e-12, atol=1e-12)
    assert after.weighted_calls == before.weighted_calls


def test_conv_subclass_with_its_own_forward_stays_a_module():
    model = _model(tp.PortedEfficientNet)
    x = make_input((1, 3, 16, 16))
    twin, report = canonize(model, x)
    convs = _convs_run(twin, x)
    assert convs == _convs_run(model, x) and len(convs) == 12  # stem, 2 x (3 + 2 SE), head
    modules = dict(twin.named_modules())
    assert all(type(modules[name]) in (tp.SamePadConv2d, nn.Conv2d) for name in convs)
    merged = {m.batch_norm: m.layers for m in report.merges}
    assert merged["blocks.0.bn1.canonizer_bn"] == ("blocks.0.depthwise",)
    assert merged["bn_head"] == ("head",)
    assert type(twin.stem) is tp.SamePadConv2d and twin.stem.bias is not None


def test_fused_norm_act_is_split_and_its_activation_stays_a_module():
    model = _model(tp.PortedEfficientNet)
    x = make_input((1, 3, 16, 16))
    twin, report = canonize(model, x)
    assert {"functional_batch_norm"} <= {r.kind for r in report.rewrites}
    fired = []
    handle = twin.bn_stem.act.register_forward_hook(lambda m, i, o: fired.append(o.shape))
    twin(x)
    handle.remove()
    assert fired == [torch.Size([1, 8, 8, 8])]
    # the model itself is untouched: its fused module still normalizes on its own
    assert census(model, x).batch_norms.count("bn_stem") == 1


def test_functional_layers_on_a_modules_own_tensors_become_modules():
    model = _model(tp.FunctionalNet)
    x = make_input((2, 3, 12, 12))
    before = census(model, x)
    assert sorted(before.unhooked) == ["blur: conv2d", "conv1: conv2d", "conv2: conv2d"]
    twin, report = canonize(model, x)
    assert sorted(report.unhooked_before) == sorted(before.unhooked) and report.unhooked_layers == []
    assert {r.module for r in report.rewrites if r.kind == "functional_conv"} == {
        "conv1.canonizer_conv", "blur.canonizer_conv", "conv2.canonizer_conv"}
    assert twin.conv1.canonizer_conv.weight is twin.conv1.weight  # shared, not copied
    assert not twin.blur.canonizer_conv.weight.requires_grad
    assert {m.batch_norm: m.layers for m in report.merges} == {
        "bn1": ("conv1.canonizer_conv",), "bn2": ("conv2.canonizer_conv",)}
    assert census(twin, x).clean


def test_a_computed_weight_is_reported_by_name_and_the_twin_is_not_called_canonized():
    model = _model(tp.ComputedWeightNet)
    x = make_input((1, 3, 8, 8))
    twin, report = canonize(model, x)
    assert report.unhooked_layers == ["<forward of ComputedWeightNet>: conv2d"]
    assert not report.canonized and "outside any Conv/Linear module" in report.reason
    assert any("weight is computed" in s.reason for s in report.skipped)
    assert report.max_rel_diff == 0


def test_a_batch_norm_that_merges_nowhere_is_measured_and_named():
    model = _model(tp.StrayNorm)
    x = make_input((1, 3, 8, 8))
    twin, report = canonize(model, x)
    assert report.remaining_batch_norms == ["identity"] and report.batch_norms_before == 1
    assert not report.canonized and "identity" in report.reason
    assert "batch norms still computed: identity" in str(report)


@pytest.mark.parametrize(("factory", "code"), [(tp.PortedEfficientNet, 0), (tp.StrayNorm, 1),
                                               (tp.ComputedWeightNet, 1)])
def test_canonize_check_exits_1_unless_measured_canonized(factory, code, capsys, monkeypatch):
    module = types.ModuleType("xaiopt_third_party_models")
    module.build = lambda: randomize_batch_norms(factory())
    monkeypatch.setitem(sys.modules, "xaiopt_third_party_models", module)
    assert main(["canonize", "check", "module:xaiopt_third_party_models:build", "--input-size", "16"]) == code
    out = capsys.readouterr().out
    assert ("NOT canonized" in out) == bool(code)


def test_a_batch_norm_after_split_convolutions_is_split_into_them():
    model = _model(tp.MixedKernelNet)
    twin, report = canonize(model, make_input((1, 3, 8, 8)))
    assert {m.batch_norm: (m.layers, m.kind) for m in report.merges} == {
        "mix.bn": (("mix.convs.0", "mix.convs.1", "mix.convs.2"), "after_concat")}


def test_a_forward_replaced_on_the_instance_is_the_one_traced():
    torch.manual_seed(0)
    model = randomize_batch_norms(tp.adapted_densenet().double())
    x = make_input((2, 3, 8, 8))
    twin, report = canonize(model, x)
    assert report.canonized, report.reason
    assert census(twin, x).clean and report.batch_norms_before == 6
    assert report.max_rel_diff < 1e-12
    assert type(twin) is tp.PortedDenseNet and type(model) is tp.PortedDenseNet
