"""Reference explanations (random, Sobel, gradient, input x gradient): hand-computed values, and a study
that scores them once with its own metrics."""

from __future__ import annotations

import numpy as np
import optuna
import pytest
import torch
from torch import nn

from xaiopt.config import parse_config
from xaiopt.metrics.packing import unpack_scores
from xaiopt.objective.references import REFERENCES, reference_explainer, sobel
from xaiopt.study import create_study, load_study, optimize
from xaiopt.study.manage import REFERENCES_ATTR


def test_sobel_by_hand():
    flat = torch.full((1, 3, 5, 5), 0.7, dtype=torch.float64)
    assert sobel(flat).abs().max() < 1e-14  # no edges anywhere (0.7 is not exact in binary)
    step = torch.zeros(1, 1, 4, 6, dtype=torch.float64)
    step[..., 3:] = 1.0  # a vertical edge between columns 2 and 3
    # gx = [-1 0 1; -2 0 2; -1 0 1] * image: 1 + 2 + 1 = 4 on the two columns beside the edge, 0 elsewhere
    expected = torch.zeros(1, 1, 4, 6, dtype=torch.float64)
    expected[..., 2:4] = 4.0
    torch.testing.assert_close(sobel(step), expected)
    # channels add up: three copies of the step give three times the map
    torch.testing.assert_close(sobel(step.expand(1, 3, 4, 6)), 3 * expected)


def test_gradient_and_input_x_gradient_of_a_linear_model_by_hand():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(2 * 3 * 3, 4)).double()
    w = model[1].weight.detach().view(4, 2, 3, 3)
    x = torch.randn(5, 2, 3, 3, dtype=torch.float64)
    y = torch.tensor([0, 3, 1, 2, 3])
    grad = reference_explainer("gradient", model, seed=0, batch_budget=2)(x, y)
    torch.testing.assert_close(grad, w[y].sum(1, keepdim=True))  # d logit_y / dx = W[y], channels summed
    ixg = reference_explainer("input_x_gradient", model, seed=0, batch_budget=3)(x, y)
    torch.testing.assert_close(ixg, (x * w[y]).sum(1, keepdim=True))
    # input x gradient of a bias-free linear model adds up to the logit
    bias = model[1].bias.detach()[y]
    torch.testing.assert_close(ixg.flatten(1).sum(1), model(x).gather(1, y.view(-1, 1))[:, 0] - bias)


def test_random_is_a_deterministic_noise_of_the_input_and_the_target():
    x = torch.rand(6, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    y = torch.tensor([0, 1, 2, 3, 0, 1])
    explain = reference_explainer("random", nn.Identity(), seed=4, batch_budget=4)
    first = explain(x, y)
    assert first.shape == (6, 1, 8, 8) and first.abs().max() <= 1
    torch.testing.assert_close(first, explain(x, y))  # an explainer: the same call, the same map
    torch.testing.assert_close(first[2:], explain(x[2:], y[2:]))  # each sample's own, whatever the batch
    # another target, a perturbed input or another seed: another map, uncorrelated with the first
    for other in (explain(x, (y + 1) % 4), explain(x + 0.01, y),
                  reference_explainer("random", nn.Identity(), seed=5, batch_budget=4)(x, y)):
        corr = np.corrcoef(first.flatten().numpy(), other.flatten().numpy())[0, 1]
        assert abs(corr) < 0.15, corr
    # spread like uniform noise on [-1, 1]: mean near 0, variance near 1/3
    many = explain(torch.rand(64, 3, 16, 16, generator=torch.Generator().manual_seed(2)), torch.zeros(64).long())
    assert abs(float(many.mean())) < 0.02 and abs(float(many.var()) - 1 / 3) < 0.02
    with pytest.raises(ValueError, match="valid: random, sobel, gradient, input_x_gradient"):
        reference_explainer("saliency", nn.Identity(), seed=0, batch_budget=1)


CFG = {
    "name": "refs", "seed": 2, "device": "cpu",
    "data": {"n_samples": 6},
    "space": {"layer_groups": 1, "rules": ["gamma", "epsilon"], "gamma": [0.25], "epsilon": [1e-6],
              "first_layer": ["zbox"], "canonize": [False]},
    "metrics": ["sparseness", "relevance_rank_accuracy", {"name": "random_logit", "params": {"num_classes": 4}}],
    "sampler": {"name": "random"},
    "runtime": {"heatmaps": 0},
}


def test_a_study_scores_its_references_once_on_its_search_samples(tmp_path):
    url = f"sqlite:///{tmp_path / 'r.db'}"
    create_study(parse_config(CFG), storage=url)
    loaded = optimize("refs", storage=url, n_trials=2, device="cpu")
    refs = loaded.study.user_attrs[REFERENCES_ATTR]
    assert list(refs) == list(REFERENCES)
    for name, r in refs.items():
        assert set(r["values"]) == {"sparseness", "relevance_rank_accuracy", "random_logit"}, name
        scores = unpack_scores(r["scores"])
        for m, v in r["values"].items():
            assert len(scores[m]) == 6 and np.isfinite(scores[m]).all()
            assert v == pytest.approx(float(scores[m].astype(np.float64).mean()), abs=1e-6)
    # recomputed here from the same objective: the same numbers (deterministic, so two workers agree)
    from xaiopt.objective import Objective

    objective = Objective(loaded.config, device=torch.device("cpu"))
    again, _ = objective.evaluate_reference("sobel")
    np.testing.assert_allclose(again["sparseness"].numpy(), unpack_scores(refs["sobel"]["scores"])["sparseness"])
    # Sobel ignores the class: random_logit (similarity to another class's map) is perfect, 1
    assert refs["sobel"]["values"]["random_logit"] == pytest.approx(1.0, abs=1e-5)
    # a second worker finds them and scores nothing again
    stamp = optuna.load_study(study_name="refs", storage=url).user_attrs[REFERENCES_ATTR]
    optimize("refs", storage=url, n_trials=1, device="cpu")
    assert load_study("refs", storage=url).study.user_attrs[REFERENCES_ATTR] == stamp


def test_references_can_be_switched_off(tmp_path):
    url = f"sqlite:///{tmp_path / 'off.db'}"
    create_study(parse_config({**CFG, "runtime": {"heatmaps": 0, "references": False}}), storage=url)
    loaded = optimize("refs", storage=url, n_trials=1, device="cpu")
    assert REFERENCES_ATTR not in loaded.study.user_attrs


def test_references_wait_until_the_budget_is_done(tmp_path):
    url = f"sqlite:///{tmp_path / 'b.db'}"
    create_study(parse_config({**CFG, "n_trials": 3}), storage=url)
    partial = optimize("refs", storage=url, n_trials=1, device="cpu")
    # nobody waits for them before the first trials: one of three done, none scored
    assert REFERENCES_ATTR not in partial.study.user_attrs
    done = optimize("refs", storage=url, device="cpu")
    assert list(done.study.user_attrs[REFERENCES_ATTR]) == list(REFERENCES)
