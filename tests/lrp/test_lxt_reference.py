"""Self-checks of the LXT reference helpers (tests/lrp/lxt_reference.py): LXT's global patches are undone,
the explicit forward is the model's, and both references conserve the logit where they should."""

import pytest
import torch
import zennit.core
import zennit.rules
from torch import nn

from .lxt_reference import (
    lxt_efficient_patches,
    lxt_efficient_torchvision_vit,
    lxt_explicit_attnlrp,
    lxt_explicit_attnlrp_trace,
    relative_error,
    small_vit,
)

PATCHED = (nn.LayerNorm, nn.GELU, nn.MultiheadAttention, zennit.core.BasicHook)
TARGETS = torch.tensor([1, 4, 7, 2])


def _images(seed: int) -> torch.Tensor:
    return torch.randn(4, 3, 32, 32, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))


def _target_logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(x).gather(1, TARGETS[:, None])[:, 0]


def _class_dicts() -> dict[type, dict]:
    return {cls: dict(vars(cls)) for cls in PATCHED}


def _assert_same_class_dicts(before: dict[type, dict]) -> None:
    for cls, attributes in before.items():
        now = dict(vars(cls))
        assert now.keys() == attributes.keys(), f"{cls.__name__}: {now.keys() ^ attributes.keys()}"
        changed = [name for name in attributes if now[name] is not attributes[name]]
        assert not changed, f"{cls.__name__}: {changed} not restored"


def _assert_torch_gradients_are_plain() -> None:
    """LayerNorm and GELU modules differentiate like their formulas written in plain torch ops."""
    g = torch.Generator().manual_seed(5)
    x = torch.randn(3, 6, dtype=torch.float64, generator=g, requires_grad=True)
    seed = torch.randn(3, 6, dtype=torch.float64, generator=g)
    norm = nn.LayerNorm(6, eps=1e-6).double()
    with torch.no_grad():
        norm.weight.copy_(torch.randn(6, generator=g))
    (got,) = torch.autograd.grad(norm(x), x, seed)
    centred = x - x.mean(-1, keepdim=True)
    by_hand = centred / (centred.pow(2).mean(-1, keepdim=True) + 1e-6).sqrt() * norm.weight + norm.bias
    (expected,) = torch.autograd.grad(by_hand, x, seed)
    assert relative_error(got, expected) < 1e-12
    (got,) = torch.autograd.grad(nn.GELU()(x), x, seed)
    (expected,) = torch.autograd.grad(0.5 * x * (1 + torch.erf(x / 2**0.5)), x, seed)
    assert relative_error(got, expected) < 1e-12


def test_efficient_call_restores_the_patched_classes():
    model, x = small_vit(seed=0), _images(1)
    before = _class_dicts()
    with lxt_efficient_patches():  # the check below would notice a patch
        assert nn.LayerNorm.forward is not before[nn.LayerNorm]["forward"]
        assert "original_forward" in vars(nn.GELU) and "original_forward" in vars(nn.MultiheadAttention)
    _assert_same_class_dicts(before)
    rule = zennit.rules.Epsilon(1e-6)
    relevance = lxt_efficient_torchvision_vit(model, x, TARGETS, linear_rule=rule, conv_rule=rule)
    assert relevance.shape == (4, 1, 32, 32) and relevance.dtype == torch.float64
    _assert_same_class_dicts(before)
    assert not hasattr(nn.GELU, "original_forward") and not hasattr(nn.MultiheadAttention, "original_forward")
    _assert_torch_gradients_are_plain()


def test_efficient_call_restores_the_patched_classes_on_errors():
    model = small_vit(seed=0)
    before = _class_dicts()
    with pytest.raises(AssertionError, match="Wrong image height"):  # raised inside the patched forward
        lxt_efficient_torchvision_vit(model, torch.zeros(1, 3, 24, 24, dtype=torch.float64), [0])
    _assert_same_class_dicts(before)
    with lxt_efficient_patches(), pytest.raises(UserWarning, match="already patched"):
        lxt_efficient_torchvision_vit(model, _images(1), TARGETS)
    _assert_same_class_dicts(before)
    _assert_torch_gradients_are_plain()


@pytest.mark.parametrize("representation_size", [None, 12])
def test_explicit_forward_reproduces_the_logits(representation_size):
    model, x = small_vit(seed=2, representation_size=representation_size), _images(3)
    with torch.no_grad():
        logits = model(x)
    trace = lxt_explicit_attnlrp_trace(model, x, TARGETS)
    assert relative_error(trace.logits, logits) < 1e-12  # measured 2e-16
    assert trace.pixels.shape == (4, 1, 32, 32) and trace.pixels.dtype == torch.float64


@pytest.mark.parametrize("seed", [0, 1])
def test_explicit_attnlrp_conserves_the_logit_up_to_the_softmax(seed):
    """Without biases every rule but the softmax conserves relevance up to its stabiliser, so pixels, class
    token, position embedding and the softmax rule's leak add up to the logit. Measured |total/logit - 1|:
    <= 1e-5 with LXT's stabilisers (1e-6 linear and layer norm, 1e-8 matmul and add), <= 2e-11 with 1e-12.
    The pixels alone hold between -1.1 and 1.5 times the logit on these random models."""
    model, x = small_vit(seed=seed, zero_bias=True), _images(10 + seed)
    logit = _target_logits(model, x)
    for stabilizer, tolerance in ((None, 1e-4), (1e-12, 1e-9)):
        trace = lxt_explicit_attnlrp_trace(model, x, TARGETS, epsilon=stabilizer, stabilizer=stabilizer)
        total = trace.pixels.flatten(1).sum(1) + trace.class_token + trace.pos_embedding + trace.softmax_leak
        assert ((total - logit) / logit).abs().max() < tolerance
    assert (trace.softmax_leak / logit).abs().max() > 1e-2  # the leak is real, not a rounding term
    assert torch.equal(lxt_explicit_attnlrp(model, x, TARGETS), lxt_explicit_attnlrp_trace(model, x, TARGETS).pixels)


def test_efficient_cp_lrp_conserves_the_logit():
    """CP-LRP is linear in the input once std and attention are detached: without biases, class token and
    position embedding the pixels hold the whole logit (measured 4e-10; GELU's identity rule divides by
    input + 1e-10)."""
    model, x = small_vit(seed=0, zero_bias=True), _images(10)
    with torch.no_grad():
        model.class_token.zero_()
        model.encoder.pos_embedding.zero_()
    relevance = lxt_efficient_torchvision_vit(model, x, TARGETS)
    logit = _target_logits(model, x)
    assert ((relevance.flatten(1).sum(1) - logit) / logit).abs().max() < 1e-8


def test_efficient_epsilon_rule_moves_the_relevance_in_proportion_to_epsilon():
    """zennit's Epsilon through LXT's bridge differs from plain gradient x input by eps / z: measured relative
    3.47e-5 at eps 1e-6, 3.47e-7 at 1e-8 (and a 3e-9 floor from the bridge's input + 1e-10 division)."""
    model, x = small_vit(seed=0), _images(1)
    plain = lxt_efficient_torchvision_vit(model, x, TARGETS)
    differences = [
        relative_error(lxt_efficient_torchvision_vit(model, x, TARGETS, linear_rule=zennit.rules.Epsilon(eps)), plain)
        for eps in (1e-6, 1e-8)
    ]
    assert 0 < differences[0] < 1e-3
    assert 80 < differences[0] / differences[1] < 120
    gamma = lxt_efficient_torchvision_vit(model, x, TARGETS, linear_rule=zennit.rules.Gamma(0.25))
    assert relative_error(gamma, plain) > 0.1  # the rule reaches the model


def test_relative_error():
    b = torch.tensor([1.0, -4.0])
    assert relative_error(torch.tensor([1.5, -4.0]), b) == pytest.approx(0.125)
