"""The fast LRP rules give zennit's relevance (float64) with and without negative layer inputs."""

import pytest
import torch
from torch import nn
from zennit.composites import LayerMapComposite
from zennit.rules import AlphaBeta, Gamma, ZPlus
from zennit.types import Convolution, Linear

from xaiopt.space.fast_rules import FastAlphaBeta, FastGamma, FastZPlus
from xaiopt.space.rules import get_rule


def _relevance(model: nn.Module, rule, x: torch.Tensor) -> torch.Tensor:
    composite = LayerMapComposite([(Convolution, rule), (Linear, rule)])
    with composite.context(model) as modified:
        inp = x.clone().requires_grad_(True)
        out = modified(inp)
        (rel,) = torch.autograd.grad(out, inp, grad_outputs=out.detach())
    return rel


def _model(kind: str, relu_first: bool) -> nn.Module:
    torch.manual_seed(0)
    if kind == "conv":
        layers = [nn.Conv2d(3, 5, 3, padding=1, bias=True), nn.Conv2d(5, 4, 3, stride=2, padding=1, bias=True)]
        tail = [nn.Flatten(), nn.Linear(4 * 4 * 4, 3)]
    else:
        layers = [nn.Linear(7, 6), nn.Linear(6, 5)]
        tail = [nn.Linear(5, 3)]
    body = [layers[0], nn.ReLU(), layers[1], nn.ReLU()]
    if relu_first:  # every weighted layer sees non-negative inputs
        body = [nn.ReLU()] + body
    for m in [*layers, *tail]:
        if getattr(m, "bias", None) is not None:
            nn.init.uniform_(m.bias, -0.5, 0.5)
    return nn.Sequential(*body, *tail).double().eval()


def _input(kind: str) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    shape = (4, 3, 8, 8) if kind == "conv" else (4, 7)
    return torch.randn(shape, generator=g, dtype=torch.float64)


CASES = [
    (lambda: Gamma(gamma=0.25), lambda: FastGamma(gamma=0.25)),
    (lambda: Gamma(gamma=0.0), lambda: FastGamma(gamma=0.0)),
    (lambda: Gamma(gamma=1.5, zero_params="bias"), lambda: FastGamma(gamma=1.5, zero_params="bias")),
    (lambda: ZPlus(), lambda: FastZPlus()),
    (lambda: AlphaBeta(2.0, 1.0), lambda: FastAlphaBeta(2.0, 1.0)),
    (lambda: AlphaBeta(1.0, 0.0), lambda: FastAlphaBeta(1.0, 0.0)),
]


@pytest.mark.parametrize("kind", ["conv", "linear"])
@pytest.mark.parametrize("relu_first", [True, False], ids=["nonneg-inputs", "negative-first-input"])
@pytest.mark.parametrize("slow, fast", CASES)
def test_fast_rule_equals_zennit(kind, relu_first, slow, fast):
    model, x = _model(kind, relu_first), _input(kind)
    expected = _relevance(model, slow(), x)
    got = _relevance(model, fast(), x)
    assert expected.abs().max() > 1e-3
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12)


def test_shortcut_taken_only_for_nonnegative_inputs(monkeypatch):
    calls = []
    original = Gamma.backward

    def spy(self, module, grad_input, grad_output):
        calls.append(bool((self.stored_tensors["input"][0] < 0).any()))
        return original(self, module, grad_input, grad_output)

    monkeypatch.setattr(Gamma, "backward", spy)  # the full computation, reached via super()
    _relevance(_model("conv", relu_first=False), FastGamma(gamma=0.25), _input("conv"))
    assert calls == [True]  # only the first layer (raw input, with negatives) takes the slow path


def test_inplace_relu_after_layer():
    torch.manual_seed(0)
    model = nn.Sequential(nn.ReLU(), nn.Conv2d(3, 4, 3), nn.ReLU(inplace=True), nn.Conv2d(4, 2, 3),
                          nn.Flatten()).double().eval()
    x = _input("conv")
    torch.testing.assert_close(_relevance(model, FastGamma(0.5), x), _relevance(model, Gamma(0.5), x),
                               rtol=1e-10, atol=1e-12)


def test_registry_uses_fast_gamma():
    hook = get_rule("gamma").hook(0.25)
    assert isinstance(hook, FastGamma)
    assert isinstance(hook.copy(), FastGamma) and hook.copy()._kwargs["gamma"] == 0.25
