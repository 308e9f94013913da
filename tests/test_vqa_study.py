"""studies/paper_vqa_clevr_xai.yaml: the Relation Network answering CLEVR-XAI questions, the question
as the model's fixed second input. Run as shipped except for what cannot run here: a tiny CLEVR-XAI
folder the test writes (tests/zoo/test_clevr_xai.py), the network at 32 px with seeded random
weights, 4 samples and cheap metric parameters. All six baselines run end to end."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import optuna
import torch

import xaiopt
from xaiopt.cli import main
from xaiopt.config import config_to_dict, parse_config
from xaiopt.objective import get_benchmark
from xaiopt.objective.attrs import BASELINE as BASELINE_ATTR

sys.path.insert(0, str(Path(__file__).parent / "zoo"))
from test_clevr_xai import write_clevr_xai  # noqa: E402

STUDY = Path(__file__).resolve().parents[1] / "studies" / "paper_vqa_clevr_xai.yaml"
BASELINES = [f"{b}:{v}" for b in ("excitation_backprop", "alpha2beta1", "epsilon_plus") for v in ("canonized", "plain")]


def test_the_vqa_study_runs_its_six_baselines(tmp_path, capsys):
    cfg = xaiopt.load_config(STUDY)
    assert cfg.model.name == "relation_network:clevr" and cfg.data.name.startswith("clevr_xai:")
    assert cfg.data.split == "simple" and cfg.data.image_size == 128 and cfg.n_trials == 6
    assert cfg.baselines == BASELINES
    raw = config_to_dict(cfg)
    raw["model"].update(name="relation_network:clevr32", weights=None)
    raw["data"].update(name=f"clevr_xai:{write_clevr_xai(tmp_path / 'clevr')}", n_samples=4, image_size=32)
    small_params = {"region_perturbation": {"patch_size": 8, "regions": 4}, "avg_sensitivity": {"nr_samples": 2}}
    raw["metrics"] = [{"name": m["name"], "params": {**m["params"], **small_params.get(m["name"], {})}}
                      for m in raw["metrics"]]
    raw["runtime"]["heatmaps"] = 1
    small = parse_config(raw, source="shrunk")
    storage = f"sqlite:///{tmp_path / 'vqa.db'}"
    xaiopt.create_study(small, storage=storage, artifact_dir=tmp_path / "art")
    loaded = xaiopt.optimize(small.name, storage=storage, n_trials=6, device="cpu")
    done = loaded.study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert sorted(t.user_attrs[BASELINE_ATTR] for t in done) == sorted(BASELINES)
    assert all(len(t.values) == 6 and all(math.isfinite(v) for v in t.values) for t in done)

    bench = get_benchmark(small, torch.device("cpu"))
    # the questions travel with the images: one row per sample, word indices
    assert len(bench.fixed) == 1 and bench.fixed[0].shape[0] == 4 and bench.fixed[0].dtype == torch.int64
    report = bench.canonization  # the stem's 4 batch norms, measured by running with the questions
    assert report.canonized and report.batch_norms_before == 4 and report.remaining_batch_norms == []
    assert list(bench.layers.groups) == ["conv1", "conv2", "conv3", "classifier"]
    assert bench.layers.groups["classifier"] == [f"g.{i}" for i in (0, 2, 4, 6)] + [f"f.{i}" for i in (0, 2, 5)]

    main(["study", "table", small.name, "--storage", storage, "--format", "csv"])
    table = capsys.readouterr().out
    for method in ("excitation_backprop", "alpha2beta1", "epsilon_plus"):
        assert f"relation_network:clevr32,{method}," in table
    # the report explains the recommended settings again (heatmaps) and scores the reference explanations,
    # each image with its own question
    main(["study", "report", small.name, "--storage", storage, "--out", str(tmp_path / "report"), "--no-progress"])
    assert (tmp_path / "report" / "index.html").stat().st_size > 0
