"""Scoring settings on a study's held-out samples (``data.holdout``), with the worker's own code.

The held-out samples are the part of the evaluation samples that the seeded, stratified split
(:mod:`xaiopt.zoo.split`) keeps out of the search. Trials never see them; this module is what
``xaiopt study validate`` scores them with: the same benchmark construction, explainer and metric
code as a trial, on the other subset. Every process recomputes the split from the config and
checks it against the record the study was created with (``xaiopt:split``).

Example::

    evaluate = holdout_evaluator(loaded, device="cpu")
    scores = evaluate(spec_dict(trial))      # {metric: (N_holdout,) float64}
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from xaiopt.errors import StudyError
from xaiopt.objective import Objective
from xaiopt.objective.benchmark import Benchmark
from xaiopt.objective.device import resolve_device
from xaiopt.space import ExplainerSpec
from xaiopt.study.manage import SPLIT_ATTR, LoadedStudy


def check_split(loaded: LoadedStudy, bench: Benchmark) -> None:
    """Refuse a benchmark whose split differs from the one the study was created with (changed data)."""
    stored = loaded.study.user_attrs.get(SPLIT_ATTR)
    if bench.split is None and stored is None:
        return
    ours = None if bench.split is None else bench.split.to_dict()
    theirs = None if stored is None else {k: stored[k] for k in ("search", "holdout", "seed")}
    if ours != theirs:
        raise StudyError(f"study {loaded.study.study_name!r}: the evaluation samples here split into {_sizes(ours)}, "
                         f"but the study was created with {_sizes(theirs)} (a different dataset, labels or "
                         f"data.holdout on this machine?)")


def _sizes(split: dict[str, Any] | None) -> str:
    if split is None:
        return "no held-out set"
    return f"{len(split['search'])} search / {len(split['holdout'])} held-out samples"


def holdout_evaluator(loaded: LoadedStudy, *, device: str | None = None
                      ) -> Callable[[Mapping[str, Any]], dict[str, np.ndarray]]:
    """A function: spec dict -> each metric's per-sample scores on the held-out samples."""
    cfg = loaded.config
    name = loaded.study.study_name
    if cfg.data.holdout is None:
        raise StudyError(f"study {name!r} has no held-out samples: validation needs data.holdout (a fraction or a "
                         f"count) in the study file, and a study created from it")
    objective = Objective(cfg, device=resolve_device(device or cfg.device), subset="holdout")
    check_split(loaded, objective.bench)

    def evaluate(spec: Mapping[str, Any]) -> dict[str, np.ndarray]:
        scores, _, _ = objective.evaluate_per_sample(ExplainerSpec.from_dict(dict(spec)))
        return {m: s.detach().double().cpu().numpy() for m, s in scores.items()}

    return evaluate
