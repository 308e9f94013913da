"""The worker's per-process cache: model, canonized twin, evaluation batch and clean logits.

Built once per (model, data, space groups, device) and kept on the device; every trial of every
study with the same settings in this process reuses it. Canonization happens here, once, never
per explain call.

The explained classes ``y`` are decided here, so that every metric and heatmap downstream uses the
same ones: the dataset's labels (``data.target: label``, checked against the model's number of
outputs) or the model's argmax on the clean batch (``data.target: predicted``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from xaiopt.canonize import canonize
from xaiopt.canonize.census import census
from xaiopt.canonize.inputs import first_rows
from xaiopt.config import StudyConfig
from xaiopt.errors import ConfigError
from xaiopt.lrp import operation_census
from xaiopt.objective.layout import as_layout, choose_layout
from xaiopt.objective.model_faults import check_logits, model_raises_as_config_error
from xaiopt.objective.progress import step
from xaiopt.space import LayerGroups, resolve_groups
from xaiopt.zoo import load_dataset, load_model
from xaiopt.zoo.cache import read_sidecar
from xaiopt.zoo.datasets import check_dataset_size
from xaiopt.zoo.evaldata import EvalData
from xaiopt.zoo.split import Split, holdout_split

log = logging.getLogger(__name__)


@dataclass
class Benchmark:
    """Everything a trial needs that does not depend on the trial.

    ``y`` are the explained classes (see the module docstring), ``labels`` the dataset's own;
    ``num_classes`` is the model's number of outputs.
    """

    model: nn.Module
    twin: nn.Module | None
    layers: LayerGroups
    twin_layers: LayerGroups | None
    x: Tensor
    y: Tensor
    masks: Tensor | None
    low: Tensor
    high: Tensor
    logits: Tensor
    device: torch.device
    num_classes: int
    canonization: Any = None
    build_seconds: dict[str, float] = field(default_factory=dict)
    cache: dict[Any, Any] = field(default_factory=dict)
    labels: Tensor | None = None
    target: str = "label"
    class_names: tuple[str, ...] = ()
    subset: str = "search"
    split: Split | None = None
    # the model's inputs after the image, one row per sample (a VQA model's questions); empty for most models
    fixed: tuple[Tensor, ...] = ()

    def model_for(self, canonized: bool) -> tuple[nn.Module, LayerGroups]:
        if canonized:
            if self.twin is None or self.twin_layers is None:
                raise RuntimeError("this benchmark was built without a canonized twin")
            return self.twin, self.twin_layers
        return self.model, self.layers

    def canonization_summary(self) -> dict[str, Any] | None:
        """What the twin is, measured: stored in the study so that create can say it in one line."""
        report = self.canonization
        if report is None:
            return None
        return {"canonized": bool(report.canonized), "reason": report.reason, "merges": len(report.merges),
                "batch_norms_before": report.batch_norms_before,
                "batch_norms_after": len(report.remaining_batch_norms),
                "unhooked": len(report.unhooked_layers)}

    @property
    def accuracy(self) -> float:
        """Share of the batch whose argmax is the explained class (1 with ``target: predicted``)."""
        return float((self.logits.argmax(1) == self.y).float().mean())

    def evaluation(self) -> dict[str, Any]:
        """The evaluation batch in numbers: size, classes present, accuracy, and whether that is chance.

        ``at_chance``: the accuracy against the labels is not above 1/K (K = classes among the
        targets, or the model's outputs for a single class) by 2 binomial standard errors, the
        mark of targets that are not the model's classes. Never set for ``target: predicted``.
        """
        n = int(self.y.shape[0])
        present = int(self.y.unique().numel())
        chance = 1.0 / (present if present >= 2 else self.num_classes)
        labels = self.labels if self.labels is not None else self.y
        agreement = float((self.logits.argmax(1) == labels).float().mean())
        bar = chance + 2.0 * math.sqrt(chance * (1.0 - chance) / n)
        return {
            "samples": n,
            "classes": present,
            "target": self.target,
            "accuracy": self.accuracy,
            "label_accuracy": agreement,
            "chance": chance,
            # with so few samples that even a perfect score is within 2 standard errors of chance,
            # nothing can be concluded: no warning rather than a wrong one
            "at_chance": self.target == "label" and bar < 1.0 and agreement < bar,
            "model_outputs": self.num_classes,
            "dataset_classes": len(self.class_names),
            "held_out": 0 if self.split is None else len(self.split.holdout),
        }


def _freeze(model: nn.Module, device: torch.device) -> nn.Module:
    model = model.eval().to(device)
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def _check_reachable(cfg: StudyConfig, plain: list[str], twin: list[str]) -> None:
    """Refuse a model or twin that runs conv/linear calls no rule can attach to (measured by running
    it): relevance through them would be a plain gradient under an LRP name."""
    for unreachable, what in ((twin, "its canonized twin"), (plain, "the model")):
        if not unreachable:
            continue
        names = ", ".join(dict.fromkeys(unreachable))
        hint = "give each layer a module (nn.Conv2d / nn.Linear or a subclass)"
        if unreachable is plain and True in cfg.space.canonize and not twin:
            hint = "the canonized twin runs them as modules: search space.canonize: [true] only"
        raise ConfigError(f"model {cfg.model.name!r}: {what} runs {len(unreachable)} conv/linear calls outside any "
                          f"Conv/Linear module, where no LRP rule can attach ({names}); {hint}")


SUBSETS = ("search", "holdout")


def _subset(cfg: StudyConfig, data: EvalData, subset: str) -> tuple[EvalData, Split | None]:
    """The evaluation samples of ``subset``: all of them without ``data.holdout``; else the search or
    the held-out part of the seeded, stratified split. Selected before the model sees any sample."""
    if subset not in SUBSETS:
        raise ValueError(f"subset must be one of {SUBSETS}, got {subset!r}")
    split = None
    keep = list(range(len(data)))
    if cfg.data.holdout is not None:
        # the split is of all the evaluation samples, so a per-class study (only_class) searches and
        # holds out exactly its class's part of the all-class study's sets
        split = holdout_split(data.y, cfg.data.holdout, seed=cfg.data.seed)
        keep = list(split.search if subset == "search" else split.holdout)
    elif subset == "holdout":
        raise ConfigError("study config has no data.holdout: there are no held-out samples (set data.holdout "
                          "to a fraction or a count and create the study again)")
    if cfg.data.only_class is not None:
        c = class_index(cfg.data.only_class, data.class_names, cfg.data.name)
        keep = [i for i in keep if int(data.y[i]) == c]
        if not keep:
            raise ConfigError(f"data.only_class: class {cfg.data.only_class!r} has no {subset} sample among the "
                              f"{cfg.data.n_samples} evaluation samples (raise data.n_samples)")
    if len(keep) == len(data):
        return data, split
    idx = torch.tensor(keep, dtype=torch.long)
    return EvalData(x=data.x[idx], y=data.y[idx], masks=None if data.masks is None else data.masks[idx],
                    low=data.low, high=data.high, num_classes=data.num_classes,
                    class_names=data.class_names, fixed=tuple(f[idx] for f in data.fixed)), split


def class_index(wanted: str | int, class_names: tuple[str, ...], dataset: str) -> int:
    """The index of a class given by name or index; one line naming the valid ones if there is none."""
    if isinstance(wanted, int) and 0 <= wanted < len(class_names):
        return wanted
    if isinstance(wanted, str) and wanted in class_names:
        return class_names.index(wanted)
    shown = ", ".join(class_names[:12]) + (", ..." if len(class_names) > 12 else "")
    raise ConfigError(f"data.only_class: {wanted!r} is not a class of dataset {dataset!r} (valid: a name or an "
                      f"index 0 to {len(class_names) - 1}: {shown})")


def build_benchmark(cfg: StudyConfig, device: torch.device, subset: str = "search") -> Benchmark:
    """Load model and data, canonize (when the space asks for it), move all to ``device``.

    ``subset``: the samples the benchmark holds, ``search`` (what trials are scored on) or
    ``holdout`` (for validation); with no ``data.holdout`` in the config, search is every sample.
    """
    t0 = time.perf_counter()
    # an image size or batch too large to load is refused before the model loads (or trains)
    check_dataset_size(cfg.data.name, n=cfg.data.n_samples, image_size=cfg.data.image_size)
    step("loading model %s%s", cfg.model.name, _first_use(cfg))
    model = load_model(cfg.model.name, cache_dir=cfg.model.cache_dir, num_classes=cfg.model.num_classes,
                       weights=cfg.model.weights)
    t_model = time.perf_counter()
    step("loading the evaluation batch: %s, %d samples", cfg.data.name, cfg.data.n_samples)
    data = load_dataset(cfg.data.name, n=cfg.data.n_samples, seed=cfg.data.seed, cache_dir=cfg.model.cache_dir,
                        image_size=cfg.data.image_size, split=cfg.data.split, classes=cfg.data.classes,
                        n_classes=cfg.data.n_classes, mean=cfg.data.mean, std=cfg.data.std)
    data, split = _subset(cfg, data, subset)
    t_data = time.perf_counter()
    model = _freeze(model, device)
    x = data.x.to(device)
    labels = data.y.to(device)
    masks = data.masks.to(device) if data.masks is not None else None
    low = data.low.view(1, -1, 1, 1).to(device)
    high = data.high.view(1, -1, 1, 1).to(device)
    fixed = tuple(f.to(device) for f in data.fixed)

    # the first sample as the model takes it: the image, or (image, *fixed inputs)
    first_sample = first_rows((x, *fixed) if fixed else x, 1)

    # the output contract first (one line for a tuple, a (N,) vector, a map...), before canonization
    # or any census runs the model under hooks that assume logits
    example = x[:2]
    with model_raises_as_config_error(model, cfg.model.name, "running on 2 evaluation images", always=True), \
            torch.no_grad():
        check_logits(model(example, *(f[:2] for f in fixed)), batch=len(example), model_name=cfg.model.name)
    plain = False in cfg.space.canonize
    twin = report = twin_layers = None
    # a model that raises later (flaky code, a batch it cannot take) is still one line naming it; an
    # error of xaiopt's own machinery keeps its traceback
    with model_raises_as_config_error(model, cfg.model.name, "being measured for canonization and layer groups"):
        if True in cfg.space.canonize:
            step("canonizing the twin of %s (for canonize: true trials)", cfg.model.name)
            twin, report = canonize(model, first_sample)  # its report holds both models' census
            twin = _freeze(twin, device)
        _check_reachable(cfg, (report.unhooked_before if report is not None else census(model, first_sample).unhooked)
                         if plain else [], report.unhooked_layers if report is not None else [])
        if twin is not None:
            with first_rows_bound(twin, fixed):
                twin_layers = resolve_groups(twin, x[:1], cfg.space.layer_groups)
        # the plain model's groups only matter when plain trials are searched: a model whose layers
        # become modules only in its twin (functional convolutions) can still be studied canonized
        with first_rows_bound(model, fixed):
            layers = resolve_groups(model, x[:1], cfg.space.layer_groups) if plain else twin_layers
        if layers.transformer:
            _check_transformer_rules(cfg, [(m, what) for m, what in ((model if plain else None, cfg.model.name),
                                                                    (twin, "its canonized twin")) if m is not None],
                                     x[:1])
        with first_rows_bound(model, fixed), first_rows_bound(twin, fixed):
            fmt = choose_layout(cfg.runtime.memory_format, [m for m in (model, twin) if m is not None], x)
    x = as_layout(x, fmt)
    t_canon = time.perf_counter()
    step("clean logits of the evaluation batch on %s", device)
    with model_raises_as_config_error(model, cfg.model.name, "computing the clean logits of the evaluation batch",
                                      always=True), torch.no_grad():
        budget = cfg.runtime.batch_budget
        logits = check_logits(torch.cat([check_logits(model(c[0], *c[1:]), batch=len(c[0]), model_name=cfg.model.name)
                                         for c in zip(x.split(budget), *(f.split(budget) for f in fixed))]),
                              batch=len(x), model_name=cfg.model.name)
    if cfg.data.target == "predicted":
        y = logits.argmax(1)
    else:
        _check_targets(cfg, data.class_names, labels, int(logits.shape[1]))
        y = labels
    bench = Benchmark(
        model=model, twin=twin, layers=layers, twin_layers=twin_layers, x=x, y=y, masks=masks, low=low, high=high,
        logits=logits, device=device, num_classes=int(logits.shape[1]), canonization=report,
        build_seconds={"model": t_model - t0, "data": t_data - t_model, "canonize": t_canon - t_data,
                       "total": time.perf_counter() - t0},
        labels=labels, target=cfg.data.target, class_names=data.class_names, subset=subset, split=split,
        fixed=fixed,
    )
    log.info("benchmark ready on %s in %.1fs (accuracy on the evaluation batch %.3f against its %s)", device,
             bench.build_seconds["total"], bench.accuracy, "labels" if cfg.data.target == "label" else "predictions")
    seconds = bench.build_seconds
    step("benchmark ready on %s in %.1f s (model %.1f s, data %.1f s, canonization %.1f s)", device,
         seconds["total"], seconds["model"], seconds["data"], seconds["canonize"])
    return bench


@contextlib.contextmanager
def first_rows_bound(model: nn.Module | None, fixed: tuple[Tensor, ...]):
    """While the block runs, ``model(x)`` is ``model(x, *fixed[:len(x)])``: for the one-off measurements
    on the first samples (layer groups, memory layout) that call a model with the image alone. Names
    and hooks of the model's modules stay as they are; nothing changes for a model without fixed inputs."""
    if model is None or not fixed:
        yield
        return
    original = type(model).forward

    def forward(x, *rest, **kwargs):
        return original(model, x, *(f[:x.shape[0]] for f in fixed), *rest, **kwargs)

    model.forward = forward  # type: ignore[method-assign]
    try:
        yield
    finally:
        del model.forward


def _check_transformer_rules(cfg: StudyConfig, models: list[tuple[nn.Module, str]], example: Tensor) -> None:
    """A transformer is studied only when a rule covers every operation on its input's path (measured
    on a recorded forward): otherwise one line naming the operations, before any trial."""
    for model, what in models:
        found = operation_census(model, example)
        step("transformer rules on %s: %s", what,
             ", ".join(f"{k} x{n}" for k, n in sorted(found.counts.items(), key=lambda kv: -kv[1])))
        if found.uncovered:
            names = list(dict.fromkeys(found.uncovered))
            raise ConfigError(
                f"model {cfg.model.name!r} ({what}): no LRP rule covers {len(found.uncovered)} operation(s) on the "
                f"input's path: {'; '.join(names[:4])}{'; ...' if len(names) > 4 else ''} (measured on a forward pass; "
                f"covered: linear layers and operations, layer/RMS norms, softmax, attention products, "
                f"scaled_dot_product_attention, nn.MultiheadAttention, elementwise activations)")


def _first_use(cfg: StudyConfig) -> str:
    """Why loading the model may take a while: an embedded benchmark model not in the cache is trained now."""
    scheme, _, arch = cfg.model.name.partition(":")
    if scheme != "benchmark" or cfg.model.weights not in (None, "trained"):
        return ""
    try:
        cached = read_sidecar(arch, cache_dir=cfg.model.cache_dir) is not None
    except KeyError:  # not a benchmark architecture: load_model says so
        return ""
    return "" if cached else " (first use: training it on the CPU, then cached; under a minute)"


def _check_targets(cfg: StudyConfig, class_names: tuple[str, ...], labels: Tensor, outputs: int) -> None:
    """A label the model has no logit for is the user's mapping mistake: one line, before any trial."""
    top = int(labels.max())
    if top >= outputs:
        name = f" ({class_names[top]!r})" if top < len(class_names) else ""
        raise ConfigError(
            f"data: dataset {cfg.data.name!r} has target class {top}{name}, but model {cfg.model.name!r} has "
            f"{outputs} outputs (valid: targets 0 to {outputs - 1}); set model.num_classes, map the classes with "
            f"data.classes, or explain data.target: predicted"
        )


_CACHE: dict[tuple[str, str, str], Benchmark] = {}


def get_benchmark(cfg: StudyConfig, device: torch.device, subset: str = "search") -> Benchmark:
    """The cached benchmark for this config's model/data/groups/subset on ``device`` (built on first use)."""
    key = (
        json.dumps(
            {
                "model": cfg.model.model_dump(mode="json"),
                "data": cfg.data.model_dump(mode="json"),
                "groups": cfg.space.model_dump(mode="json")["layer_groups"],
                "canonize": True in cfg.space.canonize,
            },
            sort_keys=True,
        ),
        str(device),
        subset,
    )
    if key not in _CACHE:
        _CACHE[key] = build_benchmark(cfg, device, subset)
    bench = _CACHE[key]
    if bench.layers.transformer and cfg.runtime.engine != "xaiopt":
        raise ConfigError(f"runtime.engine: {cfg.runtime.engine} cannot explain a transformer (no rules for "
                          f"softmax, attention products or layer norms); use runtime.engine: xaiopt")
    return bench
