"""The rules' relevance maps on a 2-layer linear net with known weights, against the LRP formulas
written out per connection (``z_ij``) in plain Python floats."""

import pytest
import torch
from torch import nn

from xaiopt.lrp import LrpExplainer
from xaiopt.space import ExplainerSpec, GroupRule, LayerGroups

W1 = [[1.0, -2.0, 0.5], [-1.5, 0.5, 2.0]]   # 3 inputs -> 2 hidden
B1 = [0.25, -0.5]
W2 = [[2.0, -1.0], [-0.5, 1.5]]             # 2 hidden -> 2 outputs
B2 = [0.1, -2.0]                             # output 1 is negative: gamma's y < 0 branch
X = [0.5, -1.0, 2.0]                         # one negative input: the general (mixed-sign) forms
LOW, HIGH = -2.0, 3.0
EPS = 1e-6


def _stab(z, eps=EPS):
    return z + eps * (1.0 if z >= 0 else -1.0)


def _pos(v):
    return max(v, 0.0)


def _neg(v):
    return min(v, 0.0)


def _epsilon(x, W, b, R, eps):
    z = [sum(x[i] * W[j][i] for i in range(len(x))) + b[j] for j in range(len(W))]
    return [sum(x[i] * W[j][i] / _stab(z[j], eps) * R[j] for j in range(len(W))) for i in range(len(x))]


def _gamma(x, W, b, R, g):
    out = [0.0] * len(x)
    for j in range(len(W)):
        y = sum(x[i] * W[j][i] for i in range(len(x))) + b[j]
        if y > 0:   # positive output: x+ with W + g W+ and x- with W + g W-
            c = [_pos(x[i]) * (W[j][i] + g * _pos(W[j][i])) + _neg(x[i]) * (W[j][i] + g * _neg(W[j][i]))
                 for i in range(len(x))]
            d = sum(c) + b[j] + g * _pos(b[j])
        elif y < 0:
            c = [_pos(x[i]) * (W[j][i] + g * _neg(W[j][i])) + _neg(x[i]) * (W[j][i] + g * _pos(W[j][i]))
                 for i in range(len(x))]
            d = sum(c) + b[j] + g * _neg(b[j])
        else:
            continue
        for i in range(len(x)):
            out[i] += c[i] / _stab(d) * R[j]
    return out


def _alpha_beta(x, W, b, R, alpha, beta):
    out = [0.0] * len(x)
    for j in range(len(W)):
        cp = [_pos(x[i]) * _pos(W[j][i]) + _neg(x[i]) * _neg(W[j][i]) for i in range(len(x))]
        cn = [_pos(x[i]) * _neg(W[j][i]) + _neg(x[i]) * _pos(W[j][i]) for i in range(len(x))]
        dp, dn = sum(cp) + _pos(b[j]), sum(cn) + _neg(b[j])
        for i in range(len(x)):
            out[i] += (alpha * cp[i] / _stab(dp) - beta * cn[i] / _stab(dn)) * R[j]
    return out


def _zbox(x, W, b, R, low, high):
    out = [0.0] * len(x)
    for j in range(len(W)):
        c = [x[i] * W[j][i] - low * _pos(W[j][i]) - high * _neg(W[j][i]) for i in range(len(x))]
        d = sum(c)  # the bias cancels: b - b+ - b-
        for i in range(len(x)):
            out[i] += c[i] / _stab(d) * R[j]
    return out


def _hidden(x):
    return [max(sum(x[i] * W1[j][i] for i in range(3)) + B1[j], 0.0) for j in range(2)]


def _expected(first, second, target):
    h = _hidden(X)
    logits = [sum(h[i] * W2[j][i] for i in range(2)) + B2[j] for j in range(2)]
    R2 = [logits[j] if j == target else 0.0 for j in range(2)]
    R1 = second(h, W2, B2, R2)            # through the ReLU unchanged (Pass)
    return first(X, W1, B1, R1)


def _engine(rule1, rule2, target):
    net = nn.Sequential(nn.Linear(3, 2), nn.ReLU(), nn.Linear(2, 2), nn.Flatten()).double()
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor(W1, dtype=torch.float64)); net[0].bias.copy_(torch.tensor(B1, dtype=torch.float64))
        net[2].weight.copy_(torch.tensor(W2, dtype=torch.float64)); net[2].bias.copy_(torch.tensor(B2, dtype=torch.float64))
    layers = LayerGroups(groups={"first": ["0"], "second": ["2"]}, first_layer="0")
    spec = ExplainerSpec(canonize=False, first_layer="same", groups={"first": rule1, "second": rule2})
    x = torch.tensor([[X]], dtype=torch.float64)  # (1, 1, 3): one "channel", so the channel sum keeps features
    rel = LrpExplainer(spec, net, layers, low=torch.tensor(LOW), high=torch.tensor(HIGH), batch_budget=1)(
        x, torch.tensor([target]))
    return rel.flatten().tolist()


CASES = {
    "epsilon": (GroupRule("epsilon", 0.1), GroupRule("epsilon", 0.5),
                lambda *a: _epsilon(*a, 0.1), lambda *a: _epsilon(*a, 0.5)),
    "gamma": (GroupRule("gamma", 0.25), GroupRule("gamma", 0.5),
              lambda *a: _gamma(*a, 0.25), lambda *a: _gamma(*a, 0.5)),
    "alpha2beta1": (GroupRule("alpha2beta1"), GroupRule("alpha2beta1"),
                    lambda *a: _alpha_beta(*a, 2.0, 1.0), lambda *a: _alpha_beta(*a, 2.0, 1.0)),
    "alpha1beta0": (GroupRule("alpha1beta0"), GroupRule("zplus"),
                    lambda *a: _alpha_beta(*a, 1.0, 0.0), lambda *a: _alpha_beta(*a, 1.0, 0.0)),
    "zbox": (GroupRule("zbox"), GroupRule("epsilon", 1e-6),
             lambda *a: _zbox(*a, LOW, HIGH), lambda *a: _epsilon(*a, 1e-6)),
}


@pytest.mark.parametrize("target", [0, 1])
@pytest.mark.parametrize("case", list(CASES))
def test_hand_computed(case, target):
    rule1, rule2, first, second = CASES[case]
    expected = _expected(first, second, target)
    got = _engine(rule1, rule2, target)
    assert max(abs(v) for v in expected) > 1e-3
    assert got == pytest.approx(expected, rel=1e-12, abs=1e-12)


def test_hand_case_reaches_every_branch():
    """Output signs +/- (gamma's two branches, non-negative hidden input) and x < 0 at the first layer."""
    h = _hidden(X)
    logits = [sum(h[i] * W2[j][i] for i in range(2)) + B2[j] for j in range(2)]
    assert logits[0] > 0 > logits[1] and min(h) > 0 and min(X) < 0
