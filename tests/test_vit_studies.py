"""The ViT study files stay valid: studies/vit_b16_gamma.yaml (LXT's gamma grid on torchvision's
vit_b_16) and studies/vit_quickstart.yaml (the embedded ViT) each create and run trials.

vit_b16_gamma runs as shipped except for what cannot run here (tests/test_paper_studies.py's
shrinking: a tiny ILSVRC-style folder the test writes, seeded random weights, 2 samples and cheap
metric parameters); vit_b_16 takes exactly 224 pixels, so the images stay at 224.
"""

from __future__ import annotations

import math

import optuna
import pytest
import torch
from test_paper_studies import STUDIES, shrunk, write_tiny_imagenet

import xaiopt
from xaiopt.config import config_to_dict, parse_config
from xaiopt.objective import get_benchmark
from xaiopt.objective.benchmark import _CACHE as benchmark_cache


@pytest.fixture
def random_vit_head(monkeypatch):
    """torchvision zero-initialises a ViT's head: built without weights, every logit would be 0 and
    the randomization metric 0/0. Here the head gets seeded random weights."""
    import torchvision

    build = torchvision.models.get_model

    def get_model(name, **kwargs):
        model = build(name, **kwargs)
        if kwargs.get("weights") is None and hasattr(model, "heads"):
            with torch.no_grad():
                model.heads.head.weight.normal_(0, 0.02, generator=torch.Generator().manual_seed(0))
        return model

    monkeypatch.setattr(torchvision.models, "get_model", get_model)


@pytest.fixture
def own_benchmarks():
    before = set(benchmark_cache)
    yield
    for key in set(benchmark_cache) - before:  # a ViT-B/16 and its twin: memory later tests need not carry
        del benchmark_cache[key]


def test_lxt_gamma_grid_on_vit_b_16_runs(tmp_path, own_benchmarks, random_vit_head):
    cfg = xaiopt.load_config(STUDIES / "vit_b16_gamma.yaml")
    assert cfg.model.name == "torchvision:vit_b_16" and cfg.model.weights == "DEFAULT"
    assert cfg.sampler.name == "grid" and cfg.n_trials == 30 and cfg.space.attention == ["cp", "attnlrp"]
    from xaiopt.zoo.classes import imagenet_wnids

    wnids = imagenet_wnids()
    data = write_tiny_imagenet(tmp_path / "imagenet", [wnids[1], wnids[250]], size=(240, 230))
    raw = config_to_dict(shrunk(cfg, data))
    raw["data"]["image_size"] = 224
    small = parse_config(raw, source="shrunk")
    storage = f"sqlite:///{tmp_path / 'vit.db'}"
    xaiopt.create_study(small, storage=storage, artifact_dir=tmp_path / "art")
    loaded = xaiopt.optimize(small.name, storage=storage, n_trials=2, device="cpu")
    done = loaded.study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert len(done) == 2
    for trial in done:
        assert all(math.isfinite(v) for v in trial.values), trial.values
        assert set(trial.params) == {"attention", "conv.setting", "linear.setting"}
        assert trial.params["conv.setting"] in ("gamma=0.1", "gamma=0.25", "gamma=100")
        assert trial.params["linear.setting"] in ("gamma=0", "gamma=0.01", "gamma=0.05", "gamma=0.1", "gamma=1")
    bench = get_benchmark(small, torch.device("cpu"))
    groups = bench.twin_layers.groups
    assert groups["conv"] == ["conv_proj"]
    # the canonized twin runs every projection of the 12 attentions as a Linear module
    assert len(groups["linear"]) == 12 * 6 + 1 and groups["linear"][-1] == "heads.head"
    assert "encoder.layers.encoder_layer_0.self_attention.q_proj" in groups["linear"]
    assert bench.canonization.canonized and bench.canonization.counts()["attention_unfused"] == 12


def test_vit_quickstart_runs(tmp_path, own_benchmarks):
    cfg = xaiopt.load_config(STUDIES / "vit_quickstart.yaml")
    assert cfg.model.name == "benchmark:vit" and cfg.space.attention == ["attnlrp", "cp"]
    assert cfg.space.layer_groups == 3 and set(cfg.space.overrides) == {"head"}
    raw = config_to_dict(cfg)
    raw["model"]["weights"] = "random"  # the trained weights take a minute: the test suite trains them nowhere
    raw["data"]["n_samples"] = 4
    for m in raw["metrics"]:
        if m["name"] == "avg_sensitivity":
            m["params"] = {**m["params"], "nr_samples": 1}
    small = parse_config(raw, source="shrunk")
    storage = f"sqlite:///{tmp_path / 'vq.db'}"
    xaiopt.create_study(small, storage=storage, artifact_dir=tmp_path / "art")
    loaded = xaiopt.optimize(small.name, storage=storage, n_trials=3, device="cpu")
    done = loaded.study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert len(done) == 3 and all(math.isfinite(v) for t in done for v in t.values)
    assert all({"attention", "blocks1.rule", "blocks2.rule", "blocks3.rule", "head.rule"} <= set(t.params)
               for t in done)
