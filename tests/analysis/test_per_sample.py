"""Per-sample scores kept by every trial: packed compactly, their means are the trial's values,
copied by repeats, out of optuna-dashboard's trial table; the recommendation on a real small study."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import optuna
import pytest
import torch

from xaiopt.config import parse_config
from xaiopt.metrics.packing import pack_scores, unpack_scores
from xaiopt.objective.trial import PER_SAMPLE_ATTR
from xaiopt.study import create_study, load_study, optimize, per_sample_scores
from tests.study.conftest import SMALL, pg_url  # noqa: F401  (pg_url: a fixture)


def test_packing_round_trips_float32_exactly():
    scores = {"a": torch.tensor([0.5, 0.25, -1.0e-7, 3.0e38]), "b": np.arange(32, dtype=np.float32) / 7}
    packed = pack_scores(scores)
    assert packed["format"] == "f32le-b64"
    assert len(packed["scores"]["b"]) == 172  # 32 float32 values: 128 bytes of base64
    back = unpack_scores(json.loads(json.dumps(packed)))
    assert back["a"].dtype == np.float32 and back["a"].tobytes() == scores["a"].numpy().tobytes()
    assert np.array_equal(back["b"], scores["b"])
    with pytest.raises(ValueError, match="unknown format"):
        unpack_scores({"format": "f64", "scores": {}})
    with pytest.raises(ValueError, match="not a whole number of float32"):
        unpack_scores({"format": "f32le-b64", "scores": {"a": "AAA="}})


def test_small_study_keeps_per_sample_scores_and_recommends(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'ps.db'}"
    cfg = parse_config({**SMALL, "baselines": ["epsilon_plus"]})
    loaded = create_study(cfg, storage=url)
    # the first baseline's point once more: a repeat that must reuse (and copy) its scores
    loaded.study.enqueue_trial(loaded.study.trials[0].system_attrs["fixed_params"])
    optimize(cfg.name, storage=url, n_trials=4, device="cpu")
    trials = optuna.load_study(study_name=cfg.name, storage=url).trials
    assert [t.state for t in trials] == [optuna.trial.TrialState.COMPLETE] * 4
    names = [m.name for m in cfg.metrics]
    n = cfg.data.n_samples
    for t in trials:
        scores = per_sample_scores(t)
        assert list(scores) == names
        for name, value in zip(names, t.values):
            assert scores[name].shape == (n,)
            # the study's value is the float64 mean of exactly these float32 scores
            assert float(torch.from_numpy(scores[name]).double().mean()) == value
            assert np.mean(scores[name].astype(np.float64)) == pytest.approx(value, rel=1e-12, abs=1e-15)
        # a system attr: no column in optuna-dashboard's trial table, a short string per metric
        assert PER_SAMPLE_ATTR not in t.user_attrs
        packed = t.system_attrs[PER_SAMPLE_ATTR]
        b64 = 4 * -(-4 * n // 3)  # base64 of 4n bytes
        assert all(len(packed["scores"][m]) == b64 for m in names)
        assert len(json.dumps(packed)) <= 40 + sum(len(m) + 6 + b64 for m in names)
    dup = trials[2]
    assert dup.user_attrs["duplicate_of"] == 0
    assert dup.system_attrs[PER_SAMPLE_ATTR] == trials[0].system_attrs[PER_SAMPLE_ATTR]

    import xaiopt

    rec = xaiopt.recommend(cfg.name, storage=url)
    assert isinstance(rec, xaiopt.Recommendation)
    assert rec.complete_trials == 4 and rec.settings == 3
    assert 2 not in {s.number for s in rec.top} and rec.samples == n
    assert {c.name for c in rec.comparisons if c.kind == "baseline"} <= {"epsilon_plus:canonized", "epsilon_plus:plain"}
    assert all(c.difference is not None for c in rec.comparisons)
    assert rec.to_dict() == xaiopt.recommend(load_study(cfg.name, storage=url)).to_dict()

    from xaiopt.cli import main

    assert main(["study", "recommend", cfg.name, "--storage", url]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"Recommended for study {cfg.name!r}: trial {rec.best.number}")


def test_per_sample_scores_on_postgresql_are_read_by_another_process(pg_url, tmp_path):
    cfg = parse_config({**SMALL, "name": "pg-ps", "n_trials": 2})
    create_study(cfg, storage=pg_url, artifact_dir=tmp_path / "artifacts")
    optimize(cfg.name, storage=pg_url, n_trials=2, device="cpu")
    # a fresh reader holding nothing but the URL, as another machine would
    code = ("import sys, json; from xaiopt.study import load_study, per_sample_scores; "
            "l = load_study(sys.argv[1], storage=sys.argv[2]); "
            "print(json.dumps([[t.values, {k: v.tolist() for k, v in per_sample_scores(t).items()}] "
            "for t in l.study.trials]))")
    out = subprocess.run([sys.executable, "-c", code, cfg.name, pg_url], capture_output=True, text=True, check=True)
    rows = json.loads(out.stdout)
    assert len(rows) == 2
    for values, scores in rows:
        assert [len(scores[m.name]) for m in cfg.metrics] == [cfg.data.n_samples] * len(cfg.metrics)
        means = [float(torch.tensor(scores[m.name], dtype=torch.float32).double().mean()) for m in cfg.metrics]
        assert means == values
