"""Replaying a cached grid: exactly the values a real study computes, and no point off the grid."""

from __future__ import annotations

import copy

import numpy as np
import optuna
import pytest
from optuna._hypervolume import compute_hypervolume

from xaiopt.analysis.hypervolume import hypervolume_fraction
from xaiopt.analysis.replay import GridCache, GridReplay, evaluate_grid, grid_key
from xaiopt.config import parse_config
from xaiopt.errors import ConfigError, StudyError
from xaiopt.space import SearchSpace
from xaiopt.study import create_study, load_study, optimize

CFG = {
    "name": "grid",
    "device": "cpu",
    "data": {"n_samples": 4},
    "space": {"canonize": [True, False], "first_layer": ["zbox"], "layer_groups": 1, "rules": ["gamma"],
              "gamma": [0, 1]},
    "metrics": ["sparseness", "relevance_mass_accuracy"],
    "sampler": "random",
    "runtime": {"heatmaps": 0},
}


@pytest.fixture(scope="module")
def cache():
    return evaluate_grid(parse_config(CFG))


def test_grid_has_every_point_once(cache):
    # canonize x conv1 gamma x classifier gamma
    assert len(cache.specs) == 2 * 2 * 2
    assert len({s.describe() for s in cache.specs}) == 8
    assert np.array(cache.per_sample).shape == (8, 2, 4)


def test_replay_returns_what_a_real_study_computes(cache, tmp_path):
    storage = f"sqlite:///{tmp_path / 'real.db'}"
    cfg = parse_config(CFG)
    created = create_study(cfg, storage=storage)
    wanted = [{"canonize": True, "conv1.gamma": 1.0, "classifier.gamma": 0.0},
              {"canonize": False, "conv1.gamma": 0.0, "classifier.gamma": 1.0}]
    for params in wanted:
        created.study.enqueue_trial(params)
    optimize("grid", storage=storage, n_trials=len(wanted), device="cpu")
    real = sorted(load_study("grid", storage=storage).study.trials, key=lambda t: t.number)
    replay = GridReplay(cache)
    for t in real:
        got = replay(optuna.trial.FixedTrial(t.params))
        assert got == tuple(t.values)  # bit for bit: the replay is the trial's own float64 mean
    # and through a sampler: every replayed trial carries its grid point's cached vector
    replay = GridReplay(cache)
    study = optuna.create_study(directions=replay.directions, sampler=optuna.samplers.RandomSampler(seed=1))
    study.optimize(replay, n_trials=12)
    for t in study.trials:
        assert t.values == cache.values[t.user_attrs["grid_point"]]
        spec = replay.space.suggest(optuna.trial.FixedTrial(t.params))
        assert spec.to_dict() == cache.specs[t.user_attrs["grid_point"]].to_dict()
    assert replay.evaluated == len({t.user_attrs["grid_point"] for t in study.trials})


def test_metric_subset(cache):
    replay = GridReplay(cache, metrics=["relevance_mass_accuracy"])
    got = replay(optuna.trial.FixedTrial({"canonize": False, "conv1.gamma": 1.0, "classifier.gamma": 1.0}))
    i = next(k for k, s in enumerate(cache.specs)
             if not s.canonize and all(r.value == 1.0 for r in s.groups.values()))
    assert got == (cache.values[i][1],)
    with pytest.raises(ConfigError, match="not in the cached grid.*valid: sparseness, relevance_mass_accuracy"):
        GridReplay(cache, metrics=["pointing_game"])


def _wider(cache: GridCache, gamma) -> SearchSpace:
    cfg = copy.deepcopy(CFG)
    cfg["space"]["gamma"] = gamma
    return SearchSpace(parse_config(cfg).space, cache.layers)


def test_off_grid_value_is_an_error_not_a_neighbour(cache):
    replay = GridReplay(cache, space=_wider(cache, [0, 0.5, 1]))
    study = optuna.create_study(directions=replay.directions)
    study.enqueue_trial({"canonize": True, "conv1.gamma": 0.5, "classifier.gamma": 0.0})
    with pytest.raises(StudyError, match=r"proposed canonize=yes first=zbox conv1=gamma\(0.5\) classifier=gamma\(0\)"
                                         r", which is not a point of the cached grid \(8 points\)"):
        study.optimize(replay, n_trials=1)


def test_continuous_proposal_is_an_error(cache):
    replay = GridReplay(cache, space=_wider(cache, {"low": 0.0, "high": 1.0}))
    study = optuna.create_study(directions=replay.directions, sampler=optuna.samplers.RandomSampler(seed=0))
    with pytest.raises(StudyError, match="not a point of the cached grid"):
        study.optimize(replay, n_trials=5)


def test_key_changes_with_the_grid_and_the_config(cache, tmp_path):
    cfg = parse_config(CFG)
    cache.check(grid_key(cfg, cache.layers))
    for change in ({"space": {**CFG["space"], "gamma": [0, 0.25, 1]}}, {"data": {"n_samples": 5}},
                   {"metrics": ["sparseness"]}, {"seed": 1}):
        other = parse_config({**CFG, **change})
        with pytest.raises(StudyError, match="evaluated for another config or grid"):
            cache.check(grid_key(other, cache.layers))
    # what the values do not depend on does not change the key
    cache.check(grid_key(parse_config({**CFG, "sampler": "tpe", "name": "other", "n_trials": 9}), cache.layers))
    # multi-fidelity prunes but never changes a completed vector; no plugin rule parameters is the
    # key of a cache made before the setting existed
    cache.check(grid_key(parse_config({**CFG, "fidelity": {"subset": 2}}), cache.layers))
    assert "params" not in cache.config["space"]


def test_save_load_round_trip(cache, tmp_path):
    cache.save(tmp_path / "g.json", tmp_path / "ps.json")
    back = GridCache.load(tmp_path / "g.json", tmp_path / "ps.json")
    assert back.key == cache.key and back.values == cache.values
    assert [s.to_dict() for s in back.specs] == [s.to_dict() for s in cache.specs]
    np.testing.assert_array_equal(np.asarray(back.per_sample, dtype=np.float32),
                                  np.asarray(cache.per_sample, dtype=np.float32))
    with pytest.raises(StudyError, match="no cached grid at"):
        GridCache.load(tmp_path / "missing.json")


def test_hypervolume_fraction_by_hand():
    grid = [[0.0, 1.0], [1.0, 0.0], [0.5, 0.5], [0.9, 0.9]]
    # normalized range is [0, 1] already; reference 1.1: the grid's staircase 0.05 + 0.30 + 0.11
    assert hypervolume_fraction([[0.0, 1.0]], grid, directions=["minimize", "minimize"]) == pytest.approx(0.11 / 0.46)
    assert hypervolume_fraction([[0.0, 1.0], [1.0, 0.0], [0.5, 0.5]], grid,
                                directions=["minimize", "minimize"]) == pytest.approx(1.0)
    assert hypervolume_fraction(np.empty((0, 2)), grid, directions=["minimize", "minimize"]) == 0.0
    # maximizing the second objective: (0, 1) is then the ideal point, alone the whole front
    assert hypervolume_fraction([[0.0, 1.0]], grid, directions=["minimize", "maximize"]) == pytest.approx(1.0)


def test_hypervolume_fraction_matches_optuna():
    rng = np.random.default_rng(3)
    grid = rng.normal(size=(60, 4)) * [1.0, 10.0, 0.1, 3.0]
    directions = ["maximize", "minimize", "maximize", "minimize"]
    part = grid[rng.choice(60, size=15, replace=False)]
    sign = np.array([-1.0, 1.0, -1.0, 1.0])
    low, high = (grid * sign).min(0), (grid * sign).max(0)
    norm = lambda a: (a * sign - low) / (high - low)
    ref = np.full(4, 1.1)
    expected = compute_hypervolume(norm(part), ref) / compute_hypervolume(norm(grid), ref)
    assert hypervolume_fraction(part, grid, directions=directions) == pytest.approx(expected, rel=1e-12)
