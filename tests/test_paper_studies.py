"""The paper's study files (studies/paper_*.yaml) stay valid: each creates and runs one trial.

Each file is loaded as shipped, then only what cannot run here is swapped: the ImageNet path for a
tiny ILSVRC-style copy (JPEG + bbox XML) that the tests write, the pretrained weights for seeded
random ones, 224 pixels and 100 samples for 32 and 2, the metrics' sample counts for small ones.
Everything the file decides (model, layer groups, space, sampler, metric names, baselines) is what
runs.

Random weights need one fix to be explainable: torchvision initialises every batch norm to the
identity (running mean 0, variance 1), which in eval mode does not normalise, and in
EfficientNet-B0 the signal then decays to logits of about 1e-15, the relevance underflows to
exactly 0 and avg_sensitivity is 0/0. The random models here get their batch-norm statistics
measured on one seeded batch of noise, so that each batch norm normalises as in a trained network:
every model then gives non-zero explanations, and canonization folds batch norms that do something.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import optuna
import pytest
import torch
import torchvision
from PIL import Image

import xaiopt
from xaiopt.config import config_to_dict, parse_config
from xaiopt.objective import get_benchmark
from xaiopt.objective.benchmark import _CACHE as benchmark_cache
from xaiopt.space import SearchSpace
from xaiopt.objective.attrs import BASELINE as BASELINE_ATTR
from xaiopt.study.manage import GROUPS_ATTR
from xaiopt.zoo.classes import imagenet_wnids

ROOT = Path(__file__).resolve().parents[1]
STUDIES = ROOT / "studies"
METRICS = ["sparseness", "region_perturbation", "relevance_rank_accuracy", "relevance_mass_accuracy",
           "avg_sensitivity", "random_logit"]
SMALL_PARAMS = {"region_perturbation": {"patch_size": 8, "regions": 4}, "avg_sensitivity": {"nr_samples": 1}}
BASELINES = [f"{b}:{v}" for b in ("excitation_backprop", "alpha2beta1", "epsilon_plus", "epsilon_gamma_box")
             for v in ("canonized", "plain")]

VGG_GROUPS = {
    "low": ["features.0", "features.3", "features.7", "features.10"],
    "mid": ["features.14", "features.17", "features.20"],
    "high": ["features.24", "features.27", "features.30", "features.34", "features.37", "features.40"],
    "dense": ["classifier.0", "classifier.3", "classifier.6"],
}
# the Linear layers of each model: the canonization studies' dense group
DENSE = {"vgg16_bn": ["classifier.0", "classifier.3", "classifier.6"], "resnet18": ["fc"],
         "efficientnet_b0": ["classifier.1"], "densenet121": ["classifier"]}


@pytest.fixture(scope="module", autouse=True)
def one_thread_and_own_benchmarks():
    # many small ops: on a busy 2-core box a second OpenMP thread made these tests several times
    # slower (DenseNet-121: 82 s against 7 s)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    before = set(benchmark_cache)
    yield
    torch.set_num_threads(threads)
    for key in set(benchmark_cache) - before:  # two VGG-16s and their twins: GBs the later tests need not carry
        del benchmark_cache[key]


@pytest.fixture(autouse=True)
def calibrated_random_models(monkeypatch):
    """torchvision models built without weights get batch-norm statistics of one seeded noise batch."""
    build = torchvision.models.get_model

    def get_model(name, **kwargs):
        model = build(name, **kwargs)
        if kwargs.get("weights") is None:
            calibrate_batch_norms(model)
        return model

    monkeypatch.setattr(torchvision.models, "get_model", get_model)


def calibrate_batch_norms(model: torch.nn.Module, size: int = 32) -> None:
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a plain average over the batch
    with torch.random.fork_rng(), torch.no_grad():
        torch.manual_seed(0)  # stochastic depth and dropout draw from the global generator in train mode
        model.train()(torch.randn(16, 3, size, size, generator=torch.Generator().manual_seed(0)))
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
    model.eval()


@pytest.fixture(scope="module")
def tiny_imagenet(tmp_path_factory) -> Path:
    """Shared by the tests of this file, so studies with the same model and groups share one benchmark."""
    wnids = imagenet_wnids()
    return write_tiny_imagenet(tmp_path_factory.mktemp("imagenet"), [wnids[1], wnids[250], wnids[999]])


def write_tiny_imagenet(root: Path, wnids: list[str], per_class: int = 1, size: tuple[int, int] = (40, 36)) -> Path:
    """ILSVRC-2012 val style: ``root/val/<stem>.JPEG`` beside ``<stem>.xml``, a centred box; returns ``root/val``."""
    val = root / "val"
    val.mkdir(parents=True)
    number = 1
    for wnid in wnids:
        for _ in range(per_class):
            stem = f"ILSVRC2012_val_{number:08d}"
            pixels = np.random.default_rng(number).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
            Image.fromarray(pixels).save(val / f"{stem}.JPEG", quality=90)
            (val / f"{stem}.xml").write_text(
                f"<annotation><folder>val</folder><filename>{stem}</filename><size><width>{size[0]}</width>"
                f"<height>{size[1]}</height><depth>3</depth></size><object><name>{wnid}</name><bndbox>"
                f"<xmin>{size[0] // 4}</xmin><ymin>{size[1] // 4}</ymin><xmax>{3 * size[0] // 4}</xmax>"
                f"<ymax>{3 * size[1] // 4}</ymax></bndbox></object></annotation>")
            number += 1
    return val


def shrunk(cfg: xaiopt.StudyConfig, data_dir: Path) -> xaiopt.StudyConfig:
    """The same study on tiny data, random weights and cheap metric parameters."""
    raw = config_to_dict(cfg)
    raw["model"]["weights"] = None
    raw["data"].update(name=f"imagenet:{data_dir}", n_samples=2, n_classes=2, image_size=32)
    raw["metrics"] = [{"name": m["name"], "params": {**m["params"], **SMALL_PARAMS.get(m["name"], {})}}
                      for m in raw["metrics"]]
    raw["runtime"]["heatmaps"] = 1
    return parse_config(raw, source="shrunk")


def paper_files() -> list[str]:
    return sorted(p.name for p in STUDIES.glob("paper_*.yaml"))


def test_the_paper_studies_are_all_here():
    assert paper_files() == [
        "paper_canonization_densenet121.yaml", "paper_canonization_efficientnet_b0.yaml",
        "paper_canonization_resnet18.yaml", "paper_canonization_vgg16bn.yaml",
        "paper_gamma_vgg16bn_grid.yaml", "paper_gamma_vgg16bn_tpe.yaml", "paper_vqa_clevr_xai.yaml",
    ]


def _as_shipped(cfg: xaiopt.StudyConfig) -> None:
    # what the user runs: pretrained weights, 50 seeded ImageNet classes at 224, the paper's vector
    assert cfg.model.weights == "DEFAULT"
    assert cfg.data.name.startswith("imagenet:") and cfg.data.n_classes == 50 and cfg.data.image_size == 224
    assert cfg.data.n_samples >= cfg.data.n_classes
    assert [m.name for m in cfg.metrics] == METRICS


def _run_one(cfg: xaiopt.StudyConfig, data: Path,
             tmp_path: Path) -> tuple[xaiopt.StudyConfig, optuna.Study, optuna.trial.FrozenTrial]:
    small = shrunk(cfg, data)
    storage = f"sqlite:///{tmp_path / 'paper.db'}"
    created = xaiopt.create_study(small, storage=storage, artifact_dir=tmp_path / "art")
    assert created.study.metric_names == METRICS
    loaded = xaiopt.optimize(small.name, storage=storage, n_trials=1, device="cpu")
    done = loaded.study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert len(done) == 1
    trial = done[0]
    assert len(trial.values) == len(METRICS) and all(math.isfinite(v) for v in trial.values), trial.values
    return small, loaded.study, trial


@pytest.mark.parametrize("sampler", ["grid", "tpe"])
def test_gamma_search_on_vgg16_bn_runs_one_trial(tmp_path, tiny_imagenet, sampler):
    cfg = xaiopt.load_config(STUDIES / f"paper_gamma_vgg16bn_{sampler}.yaml")
    _as_shipped(cfg)
    assert cfg.model.name == "torchvision:vgg16_bn" and cfg.sampler.name == sampler
    assert cfg.n_trials == (4802 if sampler == "grid" else 200) and cfg.baselines == []
    small, study, trial = _run_one(cfg, tiny_imagenet, tmp_path)

    bench = get_benchmark(small, torch.device("cpu"))
    assert study.user_attrs[GROUPS_ATTR] == VGG_GROUPS          # the plain model
    assert bench.twin_layers.groups == VGG_GROUPS               # and its canonized twin
    assert bench.layers.first_layer == bench.twin_layers.first_layer == "features.0"
    assert bench.canonization.canonized and bench.canonization.batch_norms_before == 13
    space = SearchSpace(small.space, bench.layers, grid=sampler == "grid")
    assert space.size() == 7 ** 4 * 2
    gammas = [0.0, 0.1, 0.25, 0.5, 1.0, 10.0, 50.0]
    if sampler == "grid":
        assert space.grid_space() == {"canonize": [True, False],
                                      **{f"{g}.setting": [f"gamma={v:g}" for v in gammas] for g in VGG_GROUPS}}
        assert set(trial.params) == {"canonize", *(f"{g}.setting" for g in VGG_GROUPS)}
    else:
        assert set(trial.params) == {"canonize", *(f"{g}.gamma" for g in VGG_GROUPS)}
        assert all(trial.params[f"{g}.gamma"] in gammas for g in VGG_GROUPS)
    text = trial.user_attrs["explainer"]
    assert " first=zbox " in text and all(f" {g}=gamma(" in text for g in VGG_GROUPS), text


@pytest.mark.parametrize("model", ["vgg16bn", "resnet18", "efficientnet_b0", "densenet121"])
def test_canonization_comparison_runs_its_first_baseline(tmp_path, tiny_imagenet, model):
    cfg = xaiopt.load_config(STUDIES / f"paper_canonization_{model}.yaml")
    _as_shipped(cfg)
    torchvision_name = {"vgg16bn": "vgg16_bn"}.get(model, model)
    assert cfg.model.name == f"torchvision:{torchvision_name}"
    assert cfg.n_trials == 8 and cfg.baselines == BASELINES
    small, study, trial = _run_one(cfg, tiny_imagenet, tmp_path)

    # exactly the eight baselines were enqueued, and the first of them ran: Excitation Backprop, z+ on
    # every layer (the dense one included) with the gradient through activations and batch norms
    trials = study.get_trials()
    assert sorted(t.user_attrs[BASELINE_ATTR] for t in trials) == sorted(BASELINES)
    assert trial.user_attrs[BASELINE_ATTR] == "excitation_backprop:canonized"
    assert trial.user_attrs["explainer"] == (
        "canonize=yes first=same base=excitation_backprop conv1=zplus conv2=zplus conv3=zplus classifier=zplus")
    waiting = {t.user_attrs[BASELINE_ATTR]: t for t in study.get_trials(states=(optuna.trial.TrialState.WAITING,))}
    assert waiting["epsilon_plus:plain"].system_attrs["fixed_params"] == {
        "canonize": False, "first_layer": "same", "base": "lrp", "conv1.rule": "zplus", "conv2.rule": "zplus",
        "conv3.rule": "zplus", "classifier.rule": "epsilon"}
    assert waiting["excitation_backprop:plain"].system_attrs["fixed_params"] == {
        "canonize": False, "first_layer": "same", "base": "excitation_backprop", "conv1.rule": "zplus",
        "conv2.rule": "zplus", "conv3.rule": "zplus", "classifier.rule": "zplus"}
    assert waiting["epsilon_gamma_box:plain"].system_attrs["fixed_params"] == {
        "canonize": False, "first_layer": "zbox", "base": "lrp", "conv1.rule": "gamma", "conv2.rule": "gamma",
        "conv3.rule": "gamma", "classifier.rule": "epsilon"}

    bench = get_benchmark(small, torch.device("cpu"))
    groups = study.user_attrs[GROUPS_ATTR]
    assert list(groups) == ["conv1", "conv2", "conv3", "classifier"]
    assert groups["classifier"] == DENSE[torchvision_name]
    assert bench.twin_layers.groups == groups
    # the twin is canonized, measured by running it: no batch norm computed, every layer hookable
    report = bench.canonization
    assert report.canonized and report.batch_norms_before > 0, str(report)
    assert report.remaining_batch_norms == [] and report.unhooked_layers == []
