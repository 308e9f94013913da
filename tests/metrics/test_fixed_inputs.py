"""Metrics on a model with a fixed second input (the Relation Network and its questions): every
forward and explanation of images derived from sample i gets sample i's question.

Checked by running: the model below refuses any call whose image and question rows belong to
different samples (each sample's image is constant at a level that names it; every perturbation the
metrics make keeps the level), and, with one question shared by all samples, each metric equals its
value on the model with that question bound, computed by the ordinary path."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from xaiopt.errors import ConfigError
from xaiopt.lrp import LrpExplainer
from xaiopt.metrics import MetricContext, get_metric
from xaiopt.space import ExplainerSpec, GroupRule, LayerGroups
from xaiopt.zoo.relation_network import build_relation_network

N = 3
METRICS = {
    "sparseness": {},
    "region_perturbation": {"patch_size": 8, "regions": 4},
    "pixel_flipping": {"features_in_step": 256},
    "faithfulness_correlation": {"nr_runs": 4, "subset_size": 64},
    "avg_sensitivity": {"nr_samples": 3, "return_nan_when_prediction_changes": True},
    "max_sensitivity": {"nr_samples": 3},
    "random_logit": {},
    "relevance_mass_accuracy": {},
    "mprt": {},
}


class Paired(nn.Module):
    """The Relation Network, refusing images and questions of different samples: sample i's image is
    constant at i + 0.5 (noise of +-0.2 keeps the level), its question starts with the word i + 1."""

    def __init__(self) -> None:
        super().__init__()
        self.net = build_relation_network(seed=0, image_size=32, n_answers=6).double().eval()
        self.calls = 0

    def forward(self, image, question):
        level = torch.round(image.detach().mean(dim=(1, 2, 3)) - 0.5).long()
        if not torch.equal(level, question[:, 0] - 1):
            raise AssertionError(f"images of samples {level.tolist()} with questions {(question[:, 0] - 1).tolist()}")
        self.calls += 1
        return self.net(image, question)


class Bound(nn.Module):
    def __init__(self, model: nn.Module, question: torch.Tensor) -> None:
        super().__init__()
        self.model, self.question = model, question

    def forward(self, x):
        return self.model(x, self.question.expand(x.shape[0], -1))


def _layers(model: nn.Module) -> LayerGroups:
    names = [n for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    return LayerGroups(groups={"all": names}, first_layer=names[0])


SPEC = ExplainerSpec(canonize=False, first_layer="flat", groups={"all": GroupRule("epsilon", 0.01)})


def _context(model: nn.Module, x, questions, explain_model: nn.Module, fixed: bool) -> MetricContext:
    low, high = torch.zeros(1, 3, 1, 1, dtype=x.dtype), torch.full((1, 3, 1, 1), float(N), dtype=x.dtype)

    def explainer(m):
        return LrpExplainer(SPEC, m, _layers(m), low=low, high=high, batch_budget=4)

    explain = explainer(explain_model)
    args = (questions,) if fixed else ()
    with torch.no_grad():
        logits = model(x, *args)
    y = logits.argmax(1)
    masks = torch.zeros(N, 1, 32, 32, dtype=torch.bool)
    masks[:, :, 8:20, 4:16] = True
    return MetricContext(
        model=model, x=x, y=y, masks=masks, logits=logits, attributions=explain(x, y, fixed=args),
        explain=explain, seed=3, cache={}, batch_budget=4,
        explain_with=lambda m, xx, tt, fixed=(): explainer(m)(xx, tt, fixed=fixed), fixed=args,
    )


def _images():
    levels = torch.arange(N, dtype=torch.float64) + 0.5
    return levels.view(N, 1, 1, 1).expand(N, 3, 32, 32).contiguous()


@pytest.mark.parametrize("name", list(METRICS))
def test_every_call_pairs_each_image_with_its_own_question(name):
    model = Paired()
    questions = torch.tensor([[1, 7, 3, 0], [2, 9, 9, 4], [3, 5, 0, 0]])
    ctx = _context(model, _images(), questions, model, fixed=True)
    before = model.calls
    scores = get_metric(name)(ctx, **METRICS[name])
    assert scores.numel() % N == 0 and scores.numel() >= N
    if name not in ("sparseness", "relevance_mass_accuracy"):
        assert model.calls > before  # the metric ran the model (every call checked its pairs)


@pytest.mark.parametrize("name", [n for n in METRICS if n != "mprt"])
def test_a_shared_question_gives_the_bound_models_value(name):
    """One question for all samples: the fixed-input path equals the ordinary path on the model with
    the question bound (the same batches, the same noise, the same chunks)."""
    net = build_relation_network(seed=0, image_size=32, n_answers=6).double().eval()
    g = torch.Generator().manual_seed(2)
    x = torch.rand(N, 3, 32, 32, generator=g, dtype=torch.float64)
    question = torch.tensor([[4, 8, 15, 16, 0]])
    fixed = _context(net, x, question.expand(N, -1), net, fixed=True)
    bound = Bound(net, question)
    low, high = torch.zeros(1, 3, 1, 1, dtype=x.dtype), torch.full((1, 3, 1, 1), float(N), dtype=x.dtype)
    explain = LrpExplainer(SPEC, bound, _layers(bound), low=low, high=high, batch_budget=4)
    ordinary = MetricContext(model=bound, x=x, y=fixed.y, masks=fixed.masks, logits=fixed.logits,
                             attributions=explain(x, fixed.y), explain=explain, seed=3, cache={}, batch_budget=4)
    torch.testing.assert_close(ordinary.attributions, fixed.attributions, rtol=1e-12, atol=1e-14)
    got = get_metric(name)(fixed, **METRICS[name])
    expected = get_metric(name)(ordinary, **METRICS[name])
    torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-7, equal_nan=True)


def test_a_quantus_metric_refuses_a_model_with_fixed_inputs():
    model = Paired()
    questions = torch.tensor([[1, 7], [2, 9], [3, 5]])
    ctx = _context(model, _images(), questions, model, fixed=True)
    with pytest.raises(ConfigError, match=r"^metric 'quantus:Sparseness': Quantus calls the model with the images "
                                          r"alone and cannot pass its fixed inputs \(the questions\); valid: "
                                          r"xaiopt's own metrics$"):
        get_metric("quantus:Sparseness")(ctx)
