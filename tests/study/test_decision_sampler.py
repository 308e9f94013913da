"""tpe-decision: a single-objective TPE on the study's decision score while every metric is stored."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import optuna
import pytest
import torch
from optuna.study import StudyDirection
from optuna.trial import TrialState
from torch import nn

import xaiopt
from xaiopt.analysis.replay import GridCache, GridReplay
from xaiopt.config import SamplerConfig, parse_config
from xaiopt.errors import ConfigError
from xaiopt.space import SearchSpace
from xaiopt.space.groups import LayerGroups
from xaiopt.study.decision_sampler import Decision, DecisionTPESampler, decision_scores
from xaiopt.study.samplers import check_sampler_params, make_sampler

DATA = Path(__file__).resolve().parents[2] / "benchmarks" / "data"
pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")

# a hand-made study: 2 x 3 settings, three metrics, two categories
TABLE = {
    ("a", 0): (0.10, 5.0, 0.30), ("a", 1): (0.40, 2.0, 0.10), ("a", 2): (0.25, 4.0, 0.90),
    ("b", 0): (0.90, 1.0, 0.20), ("b", 1): (0.55, 3.0, 0.60), ("b", 2): (0.70, 6.0, 0.50),
}
METRICS = ("faith", "loc_a", "loc_b")
DIRECTIONS = ("maximize", "minimize", "maximize")
CATEGORIES = ("faithfulness", "localization", "localization")


def _objective(trial: optuna.Trial) -> tuple[float, ...]:
    return TABLE[(trial.suggest_categorical("kind", ["a", "b"]), trial.suggest_categorical("level", [0, 1, 2]))]


def _by_hand(rows: list[tuple[float, ...]], settings: list[tuple[float, ...]], w_faith: float,
             w_loc: float) -> list[float]:
    """Each metric min-max over the distinct settings, minimized ones flipped; category means; weighted mean."""
    out = []
    for row in rows:
        norm = []
        for j, v in enumerate(row):
            col = [s[j] for s in settings]
            x = (v - min(col)) / (max(col) - min(col))
            norm.append(1.0 - x if DIRECTIONS[j] == "minimize" else x)
        faith, loc = norm[0], (norm[1] + norm[2]) / 2.0
        out.append((w_faith * faith + w_loc * loc) / (w_faith + w_loc))
    return out


def _study(sampler, directions=DIRECTIONS, n_trials=15):
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(directions=list(directions), sampler=sampler)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        study.optimize(_objective, n_trials=n_trials)
    return study


def test_the_inner_tpe_sees_the_weighted_score_the_study_keeps_every_metric():
    decision = Decision.of(METRICS, DIRECTIONS, CATEGORIES, {"faithfulness": 2})
    assert decision.weights == {"faithfulness": 2.0, "localization": 1.0}
    sampler = DecisionTPESampler(decision, seed=1, multivariate=True, group=True, n_startup_trials=4)
    study = _study(sampler)
    trials = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(trials) == 15
    # the study: three objectives, every trial's stored values are its metric vector
    assert study.directions == [StudyDirection.MAXIMIZE, StudyDirection.MINIMIZE, StudyDirection.MAXIMIZE]
    for t in trials:
        assert t.values == list(TABLE[(t.params["kind"], t.params["level"])])
    # the inner sampler's view: one maximized value per trial, the decision score by hand
    view = sampler.view(study)
    assert view.directions == [StudyDirection.MAXIMIZE] and not view._is_multi_objective()
    seen = list(dict.fromkeys((t.params["kind"], t.params["level"]) for t in trials))
    assert len(seen) < len(trials)  # repeats: the normalization is over the distinct settings
    want = _by_hand([TABLE[(t.params["kind"], t.params["level"])] for t in trials], [TABLE[s] for s in seen], 2, 1)
    got = view._get_trials(deepcopy=False, states=(TrialState.COMPLETE,), use_cache=False)
    assert [t.number for t in got] == [t.number for t in trials]
    np.testing.assert_allclose([t.value for t in got], want, rtol=0, atol=1e-12)
    # the view's copies leave the study's own trials as they were
    assert [t.values for t in study.trials] == [t.values for t in trials]


def test_with_one_metric_it_proposes_what_tpe_on_that_metric_proposes():
    # one metric: the score is a monotone transform of it, and TPE uses the order of the values only
    for direction in ("maximize", "minimize"):
        decision = Decision.of(["faith"], [direction], ["faithfulness"])
        ours = DecisionTPESampler(decision, seed=4, multivariate=True, group=True, n_startup_trials=3)
        plain = optuna.samplers.TPESampler(seed=4, multivariate=True, group=True, n_startup_trials=3)

        def first(trial):
            return _objective(trial)[0]

        a = optuna.create_study(directions=[direction], sampler=ours)
        b = optuna.create_study(directions=[direction], sampler=plain)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            a.optimize(first, n_trials=20)
            b.optimize(first, n_trials=20)
        assert [t.params for t in a.trials] == [t.params for t in b.trials]


def _config(prefer):
    return parse_config({"metrics": ["sparseness", "region_perturbation", "avg_sensitivity"],
                         "sampler": {"name": "tpe-decision", "params": {"constant_liar": True}},
                         "decision": {"prefer": prefer}})


def test_built_from_the_config_and_refused_without_a_decision():
    cfg = _config({"faithfulness": 3})
    decision = Decision.from_config(cfg)
    assert decision.metrics == ("sparseness", "region_perturbation", "avg_sensitivity")
    assert decision.directions == ("maximize", "maximize", "minimize")
    assert decision.categories == ("complexity", "faithfulness", "robustness")
    assert decision.weights == {"complexity": 1.0, "faithfulness": 3.0, "robustness": 1.0}
    layers = LayerGroups(groups={"conv1": ["f.0"], "classifier": ["c.0"]}, first_layer="f.0")
    space = SearchSpace(cfg.space, layers)
    sampler = make_sampler(cfg.sampler, space, seed=0, decision=decision)
    assert isinstance(sampler, DecisionTPESampler) and sampler.inner._constant_liar
    with pytest.raises(ConfigError, match="'tpe-decision' optimizes the study's decision score"):
        make_sampler(cfg.sampler, space, seed=0)
    # its params are TPESampler's
    with pytest.raises(ConfigError, match=r"tpe-decision takes no argument 'population_size' \(valid: .*n_startup"):
        check_sampler_params(SamplerConfig(name="tpe-decision", params={"population_size": 4}))
    # TPE's variants are its keyword arguments, for tpe as for tpe-decision
    variant = make_sampler(SamplerConfig(name="tpe", params={"constant_liar": True, "multivariate": False,
                                                             "group": False}), space, seed=0)
    assert isinstance(variant, optuna.samplers.TPESampler) and variant._constant_liar
    assert variant._multivariate is False and variant._group is False
    # other samplers take the decision and ignore it
    assert isinstance(make_sampler(SamplerConfig(name="tpe"), space, seed=0, decision=decision),
                      optuna.samplers.TPESampler)
    with pytest.raises(ConfigError, match="decision.prefer: the study has no localization metric"):
        Decision.from_config(_config({"localization": 2}))
    assert Decision.from_config(_config({})).weights == {"complexity": 1.0, "faithfulness": 1.0, "robustness": 1.0}


def test_a_decision_of_another_study_is_refused():
    two = Decision.of(METRICS[:2], DIRECTIONS[:2], CATEGORIES[:2])
    with pytest.raises(ConfigError, match="built for the directions"):
        _study(DecisionTPESampler(two, seed=0, n_startup_trials=1), n_trials=3)
    with pytest.raises(ConfigError, match="one direction and one category per metric"):
        Decision(("m",), ("maximize", "minimize"), ("faithfulness",), {"faithfulness": 1.0})
    with pytest.raises(ConfigError, match="no weight for category 'faithfulness'"):
        Decision(("m",), ("maximize",), ("faithfulness",), {"localization": 1.0})


def test_on_the_replayed_rule_grid_only_grid_points_and_deterministic_for_a_seed():
    cache = GridCache.load(DATA / "search_grid_rules.json", DATA / "search_grid_rules_per_sample.json")
    from xaiopt.metrics import get_metric

    decision = Decision.of(cache.metrics, cache.directions, [get_metric(m).category for m in cache.metrics],
                           "faithfulness=3")

    def run(seed: int) -> tuple[list[int], list[list[float]]]:
        replay = GridReplay(cache)
        study = optuna.create_study(directions=replay.directions, sampler=make_sampler(
            SamplerConfig(name="tpe-decision"), replay.space, seed=seed, decision=decision))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            study.optimize(replay, n_trials=30)
        return replay.asked, [t.values for t in study.trials]

    asked, values = run(5)
    assert len(asked) == 30 and all(0 <= i < len(cache.specs) for i in asked)  # a proposal off the grid raises
    np.testing.assert_array_equal(np.array(values), cache.array()[asked])
    assert run(5)[0] == asked
    assert run(6)[0] != asked


def test_a_study_with_tpe_decision_runs_end_to_end(tmp_path):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1), nn.ReLU(),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2)).eval()
    x = torch.randn(6, 3, 12, 12, generator=torch.Generator().manual_seed(1))
    masks = torch.zeros(6, 12, 12)
    masks[:, 3:9, 3:9] = 1
    cfg = xaiopt.study_config(
        name="decision", model=net, data=(x, torch.arange(6) % 2, masks), device="cpu",
        space={"layer_groups": 1, "rules": ["zplus", "epsilon"], "epsilon": [1e-6, 0.1]},
        metrics=["sparseness", "relevance_mass_accuracy"], n_trials=5, runtime={"heatmaps": 0},
        sampler={"name": "tpe-decision", "params": {"n_startup_trials": 2}}, decision={"prefer": {"localization": 2}})
    loaded = xaiopt.run_study(cfg, storage=f"sqlite:///{tmp_path / 'd.db'}", device="cpu")
    complete = loaded.study.get_trials(states=(TrialState.COMPLETE,))
    assert len(loaded.study.trials) == 5 and len(complete) == 5
    assert all(len(t.values) == 2 for t in complete) and len(loaded.study.directions) == 2
    rec = xaiopt.recommend(loaded)
    assert rec.weights_from == "decision.prefer" and rec.weights == {"complexity": 1.0, "localization": 2.0}
    # the score the sampler optimizes is the score recommend ranks by
    scores = decision_scores(Decision.from_config(loaded.config), complete)
    for setting in rec.top:
        assert scores[setting.number] == pytest.approx(setting.score, abs=1e-12)


def test_the_benchmark_runs_tpe_decision_once_per_weighting():
    import importlib.util

    spec = importlib.util.spec_from_file_location("search_efficiency_bench",
                                                  DATA.parent / "search_efficiency.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert bench.sampler_of("tpe-constant-liar", {"n_startup_trials": 4}) == (
        "tpe", {"constant_liar": True, "n_startup_trials": 4})
    cache = GridCache.load(DATA / "search_grid_rules.json", DATA / "search_grid_rules_per_sample.json")
    inputs = bench.regret_inputs(cache)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = bench.replay_run(cache, "tpe-decision", {}, 2, None, [12, 24], regret=inputs)
    asked = {}
    for w, kw in inputs.items():  # each weighting's own run: a study of tpe-decision with those weights
        replay = GridReplay(cache)
        decision = Decision(kw["metrics"], kw["directions"], kw["categories"], kw["weights"])
        study = optuna.create_study(directions=replay.directions, sampler=make_sampler(
            SamplerConfig(name="tpe-decision"), replay.space, seed=2, decision=decision))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            study.optimize(replay, n_trials=24)
        asked[w] = replay.asked
        want = [bench.decision_regret(replay.values, replay.asked[:b], **kw) for b in (12, 24)]
        assert out["chosen"][w] == [r["chosen"] for r in want]
        assert out["regret"][w] == [r["regret"] for r in want]
    assert len({tuple(a) for a in asked.values()}) > 1  # the weightings steered the runs apart
    assert out["distinct"] == [len(set(asked["equal"][:b])) for b in (12, 24)]


def test_the_settings_racing_pruned_widen_the_range_as_recommend_widens_it():
    from optuna.trial import create_trial

    from xaiopt.objective.attrs import FIDELITY_ATTR

    decision = Decision.of(METRICS, DIRECTIONS, CATEGORIES, {})
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(directions=list(DIRECTIONS))
    dist = {"kind": optuna.distributions.CategoricalDistribution(["a", "b"]),
            "level": optuna.distributions.CategoricalDistribution([0, 1, 2])}
    for key in (("a", 1), ("b", 1)):
        study.add_trial(create_trial(values=list(TABLE[key]), params={"kind": key[0], "level": key[1]},
                                     distributions=dist))
    # a pruned setting at its stage means, beyond both complete ones on every metric
    means = {"faith": 0.0, "loc_a": 9.0, "loc_b": 0.0}
    study.add_trial(create_trial(state=TrialState.PRUNED, params={"kind": "a", "level": 0}, distributions=dist,
                                 user_attrs={"pruned": "lost the race"},
                                 system_attrs={FIDELITY_ATTR: {"rule": "decision", "means": means}}))
    sampler = DecisionTPESampler(decision, seed=0)
    view = sampler.view(study)
    got = [t.values[0] for t in view.get_trials(states=(TrialState.COMPLETE,))]
    rows = [TABLE[("a", 1)], TABLE[("b", 1)]]
    assert got == pytest.approx(_by_hand(rows, rows + [(0.0, 9.0, 0.0)], 1.0, 1.0))
    # without the pruned row: min-max over the two complete settings alone
    assert list(decision_scores(decision, study.get_trials(states=(TrialState.COMPLETE,))).values()) == \
        pytest.approx(_by_hand(rows, rows, 1.0, 1.0))
