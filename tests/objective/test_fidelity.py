"""Multi-fidelity trials: staged subsets first, pruned when they lose the race on the decision or are clearly
dominated, a completed trial exactly as without it."""

from __future__ import annotations

import math
import re

import numpy as np
import optuna
import pytest
import torch
from optuna.trial import TrialState

from xaiopt.config import parse_config
from xaiopt.errors import ConfigError
from xaiopt.metrics.scoring import Scorer
from xaiopt.objective import Objective
from xaiopt.objective.attrs import per_sample, timings
from xaiopt.objective.fidelity import Incumbent, clearly_better, dominating, incumbent, racing_loss
from xaiopt.study import create_study, optimize

CFG = {
    "name": "fid",
    "device": "cpu",
    "data": {"n_samples": 16},
    "space": {"layer_groups": 1, "rules": ["zplus", "flat", "gamma"], "gamma": [0.25], "canonize": [True],
              "first_layer": ["zbox", "flat"], "overrides": {"classifier": {"rules": ["epsilon", "flat"],
                                                                            "epsilon": [1e-6]}}},
    "metrics": ["sparseness", "relevance_mass_accuracy"],
    # no cross-trial caches: every forward is counted where it happens
    "runtime": {"heatmaps": 0, "lrp_cache_mb": 0, "score_cache_mb": 0},
    "fidelity": {"subset": 8, "z": 2.0, "rule": "dominance"},
}
GOOD = {"first_layer": "zbox", "conv1.rule": "zplus", "classifier.rule": "epsilon"}
BAD = {"first_layer": "flat", "conv1.rule": "flat", "classifier.rule": "flat"}
# better sparseness than GOOD, worse relevance mass accuracy: never dominated by it
OTHER = {"first_layer": "flat", "conv1.rule": "gamma", "classifier.rule": "epsilon"}


def _study(obj: Objective, enqueued: list[dict]) -> optuna.Study:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(directions=list(obj.directions.values()))
    for params in enqueued:
        study.enqueue_trial(params)
    study.optimize(obj, n_trials=len(enqueued))
    return study


class _Forwards:
    """Images forwarded through the benchmark's model and its canonized twin."""

    def __init__(self, obj: Objective):
        self.images = 0
        models = [m for m in (obj.bench.model, obj.bench.twin) if m is not None]
        self.handles = [m.register_forward_hook(self._count) for m in models]

    def _count(self, module, args, output) -> None:
        self.images += int(args[0].shape[0])

    def close(self) -> None:
        for h in self.handles:
            h.remove()


def test_a_clearly_dominated_setting_is_pruned_on_the_subset_with_its_reason():
    obj = Objective(parse_config(CFG), device=torch.device("cpu"))
    counter = _Forwards(obj)
    try:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study = optuna.create_study(directions=list(obj.directions.values()))
        study.enqueue_trial(GOOD)
        study.enqueue_trial(BAD)
        study.optimize(obj, n_trials=1)
        good_images = counter.images
        study.optimize(obj, n_trials=1)
        bad_images = counter.images - good_images
    finally:
        counter.close()
    good, bad = study.trials
    assert good.state == TrialState.COMPLETE and bad.state == TrialState.PRUNED
    # the first trial has nothing to compare with: no subset stage, one full pass (and the one-image
    # probe of activation sizes that the batching rule takes once per model)
    assert good_images == 16 + 1
    assert bad_images == 8  # the pruned one forwarded only its subset
    assert "fidelity_subset" not in timings(good)
    assert set(timings(bad)) == {"fidelity_subset", "total"} and timings(bad)["fidelity_subset"] > 0

    # the margins, recomputed by hand from the full evaluation of the bad setting and the stored good one
    ref = per_sample(good)
    full_bad, _, _ = obj.evaluate_per_sample(obj.space.suggest(optuna.trial.FixedTrial(BAD)))
    record = bad.system_attrs["xaiopt:fidelity"]
    assert record["by"] == good.number and record["subset"] == 8 and record["z"] == 2.0
    for name in ("sparseness", "relevance_mass_accuracy"):  # both maximized
        d = ref[name][:8].astype(np.float64) - full_bad[name][:8].double().numpy()
        se = d.std(ddof=1) / math.sqrt(8)
        assert record["advantage"][name] == pytest.approx(d.mean(), rel=1e-4)
        assert record["margins"][name] == pytest.approx(d.mean() / se, rel=1e-3)
        assert record["margins"][name] > 2.0
    reason = bad.user_attrs["pruned"]
    assert reason.startswith(f"dominated by trial {good.number} on the first 8 samples by more than z=2")
    assert "sparseness +" in reason and "relevance_mass_accuracy +" in reason
    assert bad.values is None and per_sample(bad) is None


def test_a_completed_trial_stores_exactly_what_it_stores_without_multi_fidelity():
    # a noisy metric too (sensitivity draws), and the default cross-trial caches
    metrics = ["sparseness", "relevance_mass_accuracy", {"name": "avg_sensitivity", "params": {"nr_samples": 2}}]
    on_cfg = {**CFG, "metrics": metrics, "runtime": {"heatmaps": 0},
              "fidelity": {"subset": 8, "z": 2.0, "draws": 1, "rule": "dominance"}}
    off_cfg = {k: v for k, v in on_cfg.items() if k != "fidelity"}
    on = _study(Objective(parse_config(on_cfg), device=torch.device("cpu")), [GOOD, OTHER])
    off = _study(Objective(parse_config(off_cfg), device=torch.device("cpu")), [OTHER, GOOD])
    assert [t.state for t in on.trials] == [TrialState.COMPLETE, TrialState.COMPLETE]
    assert "fidelity_subset" in timings(on.trials[1])  # it went through the subset stage and survived
    for trial_on, trial_off in ((on.trials[0], off.trials[1]), (on.trials[1], off.trials[0])):
        assert trial_on.params == trial_off.params
        assert trial_on.values == trial_off.values  # bit for bit
        a, b = per_sample(trial_on), per_sample(trial_off)
        assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) and len(a[k]) == 16 for k in a)
        # the values are the means of the full 16 samples, not of the subset
        assert list(trial_on.values) == [float(a[k].astype(np.float64).mean()) for k in a]


def test_multi_fidelity_is_off_by_default(tmp_path):
    cfg = {k: v for k, v in CFG.items() if k != "fidelity"}
    assert parse_config(cfg).fidelity is None
    # an empty section is the variant measured best on the benchmark's grid (docs/search.md)
    on = parse_config({**cfg, "fidelity": {}}).fidelity
    assert (on.stages, on.rule, on.z, on.draws) == ([0.25, 0.5], "decision", 1.0, 1)
    assert on.stage_samples(32) == [8, 16] and on.stage_samples(16) == [4, 8] and on.stage_samples(10) == [3, 5]
    with pytest.raises(ValueError, match=r"gives \[2, 2\] of the 4 search samples: stages must increase"):
        on.stage_samples(4)
    # one subset is one stage
    assert parse_config({**cfg, "fidelity": {"subset": 6}}).fidelity.stages == [6]
    storage = f"sqlite:///{tmp_path / 'off.db'}"
    create_study(parse_config(cfg), storage=storage)
    study = optuna.load_study(study_name="fid", storage=storage)
    study.enqueue_trial(GOOD)
    study.enqueue_trial(BAD)
    optimize("fid", storage=storage, n_trials=2, device="cpu")
    trials = optuna.load_study(study_name="fid", storage=storage).trials
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.COMPLETE]
    assert all("pruned" not in t.user_attrs and "fidelity_subset" not in timings(t) for t in trials)


def test_a_pruned_trial_counts_against_the_budget_and_stays_out_of_the_front(tmp_path, capsys):
    from xaiopt.study import load_study, pareto_rows
    from xaiopt.study.worker import budget_status

    storage = f"sqlite:///{tmp_path / 'on.db'}"
    create_study(parse_config(CFG), storage=storage)
    study = optuna.load_study(study_name="fid", storage=storage)
    study.enqueue_trial(GOOD)
    study.enqueue_trial(BAD)
    capsys.readouterr()
    optimize("fid", storage=storage, n_trials=2, device="cpu", progress=True)
    # the progress line says why
    err = capsys.readouterr().err
    assert re.search(r"trial 1 pruned in \d+\.\d s \(dominated by trial 0 on the first 8 samples\): 2 of 2", err), err
    loaded = load_study("fid", storage=storage)
    assert [t.state for t in loaded.study.trials] == [TrialState.COMPLETE, TrialState.PRUNED]
    status = budget_status(loaded.study)
    assert (status.complete, status.pruned, status.finished) == (1, 1, 2)
    assert [r["number"] for r in pareto_rows(loaded)] == [0]
    # the report's trial counts say how many multi-fidelity pruned
    from xaiopt.report.page import _study
    assert ("pruned by multi-fidelity: dominated at stage 1 (8 samples) (user attr <code>pruned</code>)</td>"
            "<td class='num'>1</td>") in _study(loaded)


@pytest.mark.parametrize(("fidelity", "data", "message"), [
    ({"subset": 16}, {"n_samples": 16}, "fidelity.stages=[16]: a stage must score fewer than the 16 search samples"),
    ({"subset": 12}, {"n_samples": 16, "holdout": 0.25}, "fidelity.stages=[12]: a stage must score fewer than the 12"),
    ({"subset": 1}, {"n_samples": 16}, "fidelity.stages: a stage needs >= 2 samples"),
    ({"stages": [4, 4]}, {"n_samples": 16}, "fidelity.stages=[4, 4] gives [4, 4] of the 16 search samples: stages "
                                             "must increase"),
    ({"stages": [0.5, 8]}, {"n_samples": 16}, "gives [8, 8] of the 16 search samples: stages must increase"),
    ({"stages": [1.5]}, {"n_samples": 16}, "a share of them between 0 and 1, got 1.5"),
    ({"stages": []}, {"n_samples": 16}, "fidelity.stages: empty list"),
    ({"stages": [4], "subset": 4}, {"n_samples": 16}, "give stages or subset, not both"),
    ({"rule": "pareto"}, {"n_samples": 16}, "fidelity.rule"),
    ({"z": 0}, {"n_samples": 16}, "fidelity.z: z must be a finite number > 0"),
    ({"z": float("inf")}, {"n_samples": 16}, "fidelity.z: z must be a finite number > 0"),
    ({"draws": 0}, {"n_samples": 16}, "fidelity.draws: draws must be >= 1"),
    ({"stages": [4], "zz": 1}, {"n_samples": 16}, "fidelity: unknown key 'zz' (valid: stages, rule, z, draws)"),
])
def test_fidelity_config_errors_are_one_line(fidelity, data, message):
    with pytest.raises(ConfigError) as err:
        parse_config({**CFG, "data": data, "fidelity": fidelity})
    assert message in str(err.value) and "\n" not in str(err.value)


def test_the_rule_by_hand():
    # advantage d = (1, 2, 3): mean 2, std 1, se 1/sqrt(3): 2 / 0.577 = 3.46 standard errors
    adv = np.array([[[1.0, 2.0, 3.0], [0.5, 0.5, 0.5]]])
    clear, margins = clearly_better(adv, z=3.0)
    assert clear.tolist() == [True]
    assert margins[0, 0] == pytest.approx(2 * math.sqrt(3))
    assert clearly_better(adv, z=3.5)[0].tolist() == [False]
    # directions: a minimized metric where the completed trial is lower is its advantage
    cand = {"a": np.array([0.0, 0.0, 0.0]), "b": np.array([1.0, 1.2, 1.4])}
    done = [(7, {"a": np.array([1.0, 2.0, 3.0, 9.0]), "b": np.array([0.0, 0.0, 0.0, 9.0])})]
    found = dominating(cand, done, {"a": "maximize", "b": "minimize"}, z=3.0)
    assert found is not None and found.by == 7 and found.subset == 3
    assert found.advantage == pytest.approx({"a": 2.0, "b": 1.2})
    assert found.margins["b"] == pytest.approx(1.2 / (0.2 / math.sqrt(3)))
    assert dominating(cand, done, {"a": "minimize", "b": "minimize"}, z=3.0) is None
    # too few stored samples: not compared
    assert dominating(cand, [(7, {"a": np.ones(2), "b": np.zeros(2)})], {"a": "maximize", "b": "minimize"},
                      z=0.1) is None


def test_a_subset_as_large_as_the_benchmark_is_refused_in_one_line():
    cfg = parse_config({**CFG, "data": {"n_samples": 16, "only_class": 0}, "fidelity": {"subset": 12}})
    with pytest.raises(ConfigError) as err:
        Objective(cfg, device=torch.device("cpu"))
    assert "fidelity.stages=[12]: a stage must score fewer than the" in str(err.value) and "\n" not in str(err.value)


def test_a_baseline_is_never_pruned_and_a_pruned_setting_proposed_again_costs_no_model_pass():
    obj = Objective(parse_config(CFG), device=torch.device("cpu"))
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(directions=list(obj.directions.values()))
    study.enqueue_trial(GOOD)
    # the report compares with named baselines: one is evaluated in full even where it is dominated
    study.enqueue_trial({**BAD, "conv1.rule": "zplus"}, user_attrs={"baseline": "flat_ends"})
    study.enqueue_trial(BAD)
    study.optimize(obj, n_trials=3)
    counter = _Forwards(obj)
    try:
        study.enqueue_trial(BAD)
        study.enqueue_trial(BAD)
        study.optimize(obj, n_trials=2)
    finally:
        counter.close()
    good, base, bad, again, third = study.trials
    assert [t.state for t in study.trials] == [TrialState.COMPLETE, TrialState.COMPLETE] + [TrialState.PRUNED] * 3
    assert "fidelity_subset" not in timings(base) and len(per_sample(base)["sparseness"]) == 16
    # and it was dominated: the rule would have pruned it
    found = dominating({k: v[:8] for k, v in per_sample(base).items()}, [(good.number, per_sample(good))],
                       obj.directions, z=2.0)
    assert found is not None and found.by == good.number
    assert counter.images == 0  # the repeats forwarded nothing
    assert again.user_attrs["pruned"] == f"same setting as trial {bad.number}, which was {bad.user_attrs['pruned']}"
    assert third.user_attrs["pruned"] == again.user_attrs["pruned"]
    assert again.user_attrs["pruned_as"] == third.user_attrs["pruned_as"] == bad.number
    assert again.system_attrs["xaiopt:fidelity"] == bad.system_attrs["xaiopt:fidelity"]


def _forwarded_by_trial(obj: Objective, study: optuna.Study, params: dict) -> int:
    """Run one trial of ``params`` in ``study``; the images it forwarded through the models."""
    counter = _Forwards(obj)
    try:
        study.enqueue_trial(params)
        study.optimize(obj, n_trials=1)
    finally:
        counter.close()
    return counter.images


# racing on the decision: equal weights, sparseness (complexity) and relevance mass accuracy (localization)
RACE = {**CFG, "fidelity": {"stages": [4, 8], "z": 1.0}}
RUNNER_UP = {"first_layer": "zbox", "conv1.rule": "zplus", "classifier.rule": "flat"}


def test_a_setting_that_loses_the_race_on_the_decision_is_pruned_with_the_margin_computed_by_hand():
    obj = Objective(parse_config(RACE), device=torch.device("cpu"))
    study = _study(obj, [GOOD, RUNNER_UP])  # two settings: a range to normalize over
    images = _forwarded_by_trial(obj, study, BAD)
    good, runner_up, bad = study.trials
    assert bad.state == TrialState.PRUNED and images == 4  # only the first stage's samples
    record = bad.system_attrs["xaiopt:fidelity"]
    assert (record["rule"], record["stage"], record["subset"], record["z"]) == ("decision", 1, 4, 1.0)
    # by hand: min-max over the two complete settings, both metrics maximized, one per category, equal
    # weights: coefficient 0.5 / range per metric; the incumbent is the setting of the higher score
    names = ["sparseness", "relevance_mass_accuracy"]
    values = np.array([good.values, runner_up.values])
    coef = 0.5 / (values.max(0) - values.min(0))
    best = good if coef @ np.array(good.values) >= coef @ np.array(runner_up.values) else runner_up
    assert record["by"] == best.number and record["weights"] == {"complexity": 1.0, "localization": 1.0}
    cand, _, _ = obj.evaluate_per_sample(obj.space.suggest(optuna.trial.FixedTrial(BAD)), first=4, draws=1)
    ref = per_sample(best)
    d = sum(coef[j] * (ref[m][:4].astype(np.float64) - cand[m].double().numpy()) for j, m in enumerate(names))
    se = d.std(ddof=1) / 2.0
    assert record["advantage"] == pytest.approx(d.mean(), rel=1e-5)
    assert record["se"] == pytest.approx(se, rel=1e-5)
    assert record["margin"] == pytest.approx(d.mean() / se, rel=1e-5) and record["margin"] > 1.0
    assert bad.user_attrs["pruned"].startswith(f"lost the race at stage 1 (4 samples) to the incumbent, trial "
                                               f"{best.number}: its decision score is higher by ")


def test_a_survivor_of_every_stage_stores_exactly_what_it_stores_without_racing():
    # z so large that nothing loses: every stage runs, then the full evaluation
    metrics = ["sparseness", "relevance_mass_accuracy", {"name": "avg_sensitivity", "params": {"nr_samples": 2}}]
    on_cfg = {**RACE, "metrics": metrics, "runtime": {"heatmaps": 0, "lrp_cache_mb": 0, "score_cache_mb": 0},
              "fidelity": {"stages": [4, 8], "z": 1e6, "draws": 1}}
    off_cfg = {k: v for k, v in on_cfg.items() if k != "fidelity"}
    obj = Objective(parse_config(on_cfg), device=torch.device("cpu"))
    on = _study(obj, [GOOD, RUNNER_UP])
    images = _forwarded_by_trial(obj, on, OTHER)
    off = _study(Objective(parse_config(off_cfg), device=torch.device("cpu")), [OTHER, GOOD, RUNNER_UP])
    # stage 1 scored samples 0-3, stage 2 samples 4-7, then all 16 (the attribution's forwards; the
    # sensitivity metric forwards its perturbed copies on top, also per stage)
    plain = _Forwards(obj)
    try:
        obj.evaluate_per_sample(obj.space.suggest(optuna.trial.FixedTrial(OTHER)), first=4, draws=1)
        obj.evaluate_per_sample(obj.space.suggest(optuna.trial.FixedTrial(OTHER)), start=4, first=8, draws=1)
        obj.evaluate_per_sample(obj.space.suggest(optuna.trial.FixedTrial(OTHER)))
    finally:
        plain.close()
    assert images == plain.images
    survivor = on.trials[2]
    assert survivor.state == TrialState.COMPLETE and "fidelity_subset" in timings(survivor)
    twin = off.trials[0]
    assert survivor.params == twin.params and survivor.values == twin.values  # bit for bit
    a, b = per_sample(survivor), per_sample(twin)
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) and len(a[k]) == 16 for k in a)


def test_racing_waits_for_two_settings_and_follows_the_study_decision_weights():
    # one complete setting: no range to normalize over, so no race (the second is evaluated in full)
    obj = Objective(parse_config(RACE), device=torch.device("cpu"))
    study = _study(obj, [GOOD, BAD])
    assert [t.state for t in study.trials] == [TrialState.COMPLETE, TrialState.COMPLETE]
    assert "fidelity_subset" not in timings(study.trials[1])
    # the decision's weights pick the incumbent: all weight on complexity, the sparser setting leads
    good, bad = study.trials
    completed = [(t.number, t.values, per_sample(t)) for t in (good, bad)]
    kw = {"metrics": ["sparseness", "relevance_mass_accuracy"], "directions": ["maximize", "maximize"],
          "categories": ["complexity", "localization"]}
    for weights in ({"complexity": 1.0, "localization": 0.0}, {"complexity": 0.0, "localization": 1.0}):
        inc = incumbent(completed, weights=weights, **kw)
        j = 0 if weights["complexity"] else 1
        leader = max((good, bad), key=lambda t: t.values[j])
        assert inc is not None and inc.number == leader.number
        scorer = Scorer.fit(np.array([good.values, bad.values]), weights=weights, **kw)
        assert np.allclose(inc.coefficients, scorer.coefficients())
    cfg = parse_config({**RACE, "decision": {"prefer": {"localization": 3}}})
    assert Objective(cfg, device=torch.device("cpu")).weights == {"complexity": 1.0, "localization": 3.0}
    with pytest.raises(ConfigError) as err:
        Objective(parse_config({**RACE, "decision": {"prefer": {"robustness": 2}}}), device=torch.device("cpu"))
    assert str(err.value).startswith("decision.prefer: the study has no robustness metric")


def test_the_race_rule_by_hand():
    # two metrics, coefficients (1, -2): a minimized second metric, twice the weight per unit
    inc = Incumbent(number=3, scores={"a": np.array([1.0, 2.0, 3.0, 4.0]), "b": np.array([0.0, 0.0, 0.0, 0.0])},
                    metrics=("a", "b"), coefficients=np.array([1.0, -2.0]), weights={"x": 1.0})
    cand = {"a": np.array([0.0, 1.0, 1.0]), "b": np.array([0.5, 0.0, 0.5])}
    # d = (1 - 0) - 2 (0 - 0.5) ... per sample: (1 + 1, 1 + 0, 2 + 1) = (2, 1, 3): mean 2, se 1 / sqrt(3)
    loss = racing_loss(cand, inc, z=3.0, stage=2)
    assert loss is not None and (loss.by, loss.stage, loss.subset) == (3, 2, 3)
    assert loss.advantage == pytest.approx(2.0) and loss.se == pytest.approx(1 / math.sqrt(3))
    assert loss.margin == pytest.approx(2 * math.sqrt(3))
    assert racing_loss(cand, inc, z=3.5) is None
    # a candidate ahead of the incumbent never loses, and no coefficient (no range yet) ranks nothing
    assert racing_loss({"a": np.full(3, 9.0), "b": np.zeros(3)}, inc, z=0.1) is None
    flat = Incumbent(number=3, scores=inc.scores, metrics=("a", "b"), coefficients=np.zeros(2), weights={})
    assert racing_loss(cand, flat, z=0.1) is None


def test_the_progress_line_and_the_report_say_which_stage_a_setting_lost(tmp_path, capsys):
    from xaiopt.report.page import _study
    from xaiopt.study import load_study

    storage = f"sqlite:///{tmp_path / 'race.db'}"
    create_study(parse_config(RACE), storage=storage)
    study = optuna.load_study(study_name="fid", storage=storage)
    for params in (GOOD, RUNNER_UP, BAD):
        study.enqueue_trial(params)
    capsys.readouterr()
    optimize("fid", storage=storage, n_trials=3, device="cpu", progress=True)
    err = capsys.readouterr().err
    loaded = load_study("fid", storage=storage)
    bad = loaded.study.trials[2]
    assert bad.state == TrialState.PRUNED
    by = bad.system_attrs["xaiopt:fidelity"]["by"]
    assert re.search(rf"trial 2 pruned in \d+\.\d s \(lost the race at stage 1 \(4 samples\) to the incumbent, "
                     rf"trial {by}\): 3 of 3", err), err
    assert ("pruned by multi-fidelity: lost the race at stage 1 (4 samples) (user attr <code>pruned</code>)</td>"
            "<td class='num'>1</td>") in _study(loaded)
    # the pruned setting's stage means are stored, and the recommendation normalizes over the settings the
    # study explored: the complete ones and the pruned one where its stage put it
    from xaiopt.analysis.recommend import study_scorer

    record = bad.system_attrs["xaiopt:fidelity"]
    names = ["sparseness", "relevance_mass_accuracy"]
    obj = Objective(parse_config(RACE), device=torch.device("cpu"))
    cand, _, _ = obj.evaluate_per_sample(obj.space.suggest(optuna.trial.FixedTrial(BAD)), first=4, draws=1)
    assert record["means"] == pytest.approx({m: float(cand[m].double().mean()) for m in names}, rel=1e-6)
    rows = np.array([t.values for t in loaded.study.trials[:2]] + [[record["means"][m] for m in names]])
    scorer = study_scorer(loaded)
    assert np.allclose(scorer.low, rows.min(0)) and np.allclose(scorer.high, rows.max(0))
