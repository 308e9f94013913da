"""The engine and the worker's zennit path explain a model with a fixed second input (the Relation
Network and its question): ``explain(x, targets, fixed=(questions,))`` equals zennit's composite on
the model with the questions bound (float64, 1e-10), in chunks and with the forward cache; only the
image gets relevance."""

from __future__ import annotations

import torch
from torch import nn
from zennit.attribution import Gradient
from zennit.composites import ExcitationBackprop

from xaiopt.canonize import canonize
from xaiopt.lrp import LrpExplainer
from xaiopt.lrp.cache import ForwardCache
from xaiopt.objective.explain import explainer_for
from xaiopt.space import ExplainerSpec, GroupRule, LayerGroups
from xaiopt.zoo.relation_network import build_relation_network

from .conftest import TOLERANCE, randomize_batch_norms


class Bound(nn.Module):
    """``model(x, *fixed)`` as a one-input module, for zennit's attributor (the reference)."""

    def __init__(self, model: nn.Module, fixed: tuple[torch.Tensor, ...]) -> None:
        super().__init__()
        self.model, self.fixed = model, fixed

    def forward(self, x):
        return self.model(x, *self.fixed)


def _setup():
    model = randomize_batch_norms(build_relation_network(seed=0, image_size=32)).double().eval()
    g = torch.Generator().manual_seed(1)
    x = torch.rand(3, 3, 32, 32, generator=g, dtype=torch.float64)
    questions = torch.tensor([[4, 9, 2, 31, 0], [7, 7, 12, 5, 3], [4, 9, 2, 31, 0]])
    return model, x, questions


def _layers(model: nn.Module, prefix: str = "") -> LayerGroups:
    names = [n for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    groups = {"stem": [n for n in names if n.startswith("stem.")], "g": [n for n in names if n.startswith("g.")],
              "f": [n for n in names if n.startswith("f.")]}
    return LayerGroups(groups={k: [prefix + n for n in v] for k, v in groups.items()}, first_layer=prefix + "stem.0")


SPECS = [
    ExplainerSpec(canonize=False, first_layer="flat", groups={"stem": GroupRule("gamma", 0.25),
                                                              "g": GroupRule("alpha2beta1"),
                                                              "f": GroupRule("epsilon", 0.01)}),
    ExplainerSpec(canonize=False, first_layer="same", groups={k: GroupRule("zplus") for k in ("stem", "g", "f")},
                  base="excitation_backprop"),
]


def _zennit(spec, model, x, targets, questions, low, high):
    bound = Bound(model, (questions,))
    composite = spec.to_composite(_layers(model, "model."), low=low, high=high)
    with torch.no_grad():
        n_out = bound(x).shape[1]
    onehot = nn.functional.one_hot(targets, n_out).to(x.dtype)
    with Gradient(bound, composite) as attributor:
        _, relevance = attributor(x, lambda out: out * onehot)
    return relevance.sum(1, keepdim=True)


def _close(got, expected):
    scale = expected.abs().max()
    assert scale > 0 and torch.isfinite(expected).all()
    assert (got - expected).abs().max() <= TOLERANCE * scale


def test_engine_equals_zennit_with_the_question_fixed():
    model, x, questions = _setup()
    low, high = torch.zeros(1, 3, 1, 1, dtype=torch.float64), torch.ones(1, 3, 1, 1, dtype=torch.float64)
    with torch.no_grad():
        targets = model(x, questions).argmax(1)
    for spec in SPECS:
        expected = _zennit(spec, model, x, targets, questions, low, high)
        for budget in (3, 2):  # in one chunk, and split with the questions split alongside
            got = LrpExplainer(spec, model, _layers(model), low=low, high=high, batch_budget=budget)(
                x, targets, fixed=(questions,))
            _close(got, expected)
            # the worker's zennit path (explainer_for, engine zennit) takes the same fixed inputs
            with explainer_for(spec, model, _layers(model), low=low, high=high, batch_budget=budget,
                               engine="zennit") as explain:
                _close(explain(x, targets, fixed=(questions,)), expected)
    # Excitation Backprop through the bound model is zennit's own composite
    with Gradient(Bound(model, (questions,)), ExcitationBackprop()) as attributor:
        onehot = nn.functional.one_hot(targets, 28).to(x.dtype)
        _, relevance = attributor(x, lambda out: out * onehot)
    eb = LrpExplainer(SPECS[1], model, _layers(model), low=low, high=high, batch_budget=3)(
        x, targets, fixed=(questions,))
    _close(eb, relevance.sum(1, keepdim=True))


def test_one_image_two_questions_are_two_forwards_in_the_cache():
    model, x, questions = _setup()
    spec = SPECS[0]
    low, high = torch.zeros(1, 3, 1, 1, dtype=torch.float64), torch.ones(1, 3, 1, 1, dtype=torch.float64)
    image = x[:1].expand(2, -1, -1, -1).contiguous()
    asked = questions[:2]
    targets = torch.tensor([0, 0])
    cache = ForwardCache(budget_mb=64)
    explain = LrpExplainer(spec, model, _layers(model), low=low, high=high, batch_budget=1, cache=cache)
    cached = explain(image, targets, fixed=(asked,))
    plain = LrpExplainer(spec, model, _layers(model), low=low, high=high, batch_budget=2)(image, targets,
                                                                                           fixed=(asked,))
    _close(cached, plain)
    assert (cached[0] - cached[1]).abs().max() > 1e-8  # the question changed the explanation
    again = explain(image, targets, fixed=(asked,))  # served by the cache, each with its own question
    _close(again, plain)


def test_the_canonized_relation_network():
    model, x, questions = _setup()
    twin, report = canonize(model, (x, questions))
    assert report.canonized and report.remaining_batch_norms == []
    twin = twin.double().eval()
    low, high = torch.zeros(1, 3, 1, 1, dtype=torch.float64), torch.ones(1, 3, 1, 1, dtype=torch.float64)
    with torch.no_grad():
        targets = twin(x, questions).argmax(1)
    spec = ExplainerSpec(canonize=True, first_layer="flat", groups=dict(SPECS[0].groups))
    expected = _zennit(spec, twin, x, targets, questions, low, high)
    got = LrpExplainer(spec, twin, _layers(twin), low=low, high=high, batch_budget=3)(x, targets, fixed=(questions,))
    _close(got, expected)
