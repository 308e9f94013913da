"""Attributions of chosen settings of a study, recomputed now on the same evaluation images.

The worker's benchmark (model, canonized twin, evaluation batch) is built from the study's own
config, so the images, masks and explained classes are the ones the trials were scored on; each
spec's attributions are one batched pass over the first K images.

Example::

    from xaiopt.objective.attrs import spec_dict
    got = attribute_settings(loaded, [spec_dict(t) for t in trials], images=4, device="cpu")
    got.attributions[0].shape     # (4, 1, H, W), the first spec's relevance maps
    got.target_names              # ('circle', 'square', ...): the explained class of each image
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from torch import Tensor

from xaiopt.errors import ConfigError
from xaiopt.metrics.context import call_explain
from xaiopt.objective.benchmark import get_benchmark
from xaiopt.objective.device import resolve_device
from xaiopt.objective.explain import explainer_for
from xaiopt.space import ExplainerSpec
from xaiopt.study.manage import LoadedStudy


@dataclass(frozen=True)
class SettingAttributions:
    """K evaluation images, their masks and targets, and each spec's (K, 1, H, W) attributions (CPU).

    ``images`` are in the model's input space; ``low``/``high`` its per-channel bounds
    ((1, C, 1, 1)), for drawing. ``masks`` is None for a dataset without object masks.
    ``target_names`` holds the class name of each target where the config's dataset names its
    classes, else the class index as text.
    """

    images: Tensor
    masks: Tensor | None
    targets: Tensor
    target_names: tuple[str, ...]
    low: Tensor
    high: Tensor
    attributions: list[Tensor]


def attribute_settings(loaded: LoadedStudy, specs: Sequence[dict[str, Any]], images: int, *,
                       device: str | None = None) -> SettingAttributions:
    """Recompute each spec's attributions on the study's first ``images`` evaluation images.

    ``specs``: ``ExplainerSpec`` dicts (``xaiopt.objective.attrs.spec_dict`` of a trial);
    ``device``: ``auto``/``cpu``/``cuda[:N]``, the config's device when None.
    """
    if images < 1:
        raise ConfigError(f"--images must be >= 1 to compute attributions, got {images}")
    cfg = loaded.config
    dev = resolve_device(device or cfg.device)
    bench = get_benchmark(cfg, dev)
    k = min(int(images), len(bench.x))
    x, y = bench.x[:k], bench.y[:k]
    fixed = tuple(f[:k] for f in bench.fixed)  # a VQA model's questions: each image with its own
    out: list[Tensor] = []
    for d in specs:
        try:
            spec = ExplainerSpec.from_dict(d)
        except (KeyError, TypeError) as err:
            raise ConfigError(f"attribution: not an explainer spec dict ({err}): {d!r}") from None
        model, layers = bench.model_for(spec.canonize)
        with explainer_for(spec, model, layers, low=bench.low, high=bench.high,
                           batch_budget=cfg.runtime.batch_budget) as explain:
            out.append(call_explain(explain, x, y, fixed=fixed).detach().cpu())
    names = bench.class_names
    labels = tuple(names[int(c)] if int(c) < len(names) else str(int(c)) for c in y.cpu())
    return SettingAttributions(
        images=x.detach().cpu(), masks=None if bench.masks is None else bench.masks[:k].detach().cpu(),
        targets=y.detach().cpu(), target_names=labels, low=bench.low.detach().cpu(),
        high=bench.high.detach().cpu(), attributions=out,
    )
