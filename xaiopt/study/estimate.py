"""What a study will cost, measured before its first trial.

``study create`` and ``run`` evaluate one setting of the search space on the evaluation batch (one
probe evaluation: the attributions and every metric, as a trial computes them, on the CPU the
preflight ran on) and print the seconds per part and the projected time of the budget::

    xaiopt: one trial measured on cpu: 12.3 s (region_perturbation 8.1 s, avg_sensitivity 2.0 s,
            attribution 1.2 s, ...); the budget of 20 trials: about 4 min on one such worker

The probe is a seeded draw of the search space, so two creates of one config measure the same
setting. Later trials reuse kept forwards and are usually faster; a GPU worker is faster still. The
record is kept in the study (:data:`COST_ATTR`). ``--dry-run`` stops after this line and writes
nothing. ``XAIOPT_NO_ESTIMATE=1`` skips the probe (the test suite sets it; its own tests unset it).
"""

from __future__ import annotations

import os
import time
from typing import Any

import optuna
import torch

from xaiopt.config import StudyConfig
from xaiopt.errors import TrialFailed
from xaiopt.objective import Objective

COST_ATTR = "xaiopt:cost"
SKIP_ENV = "XAIOPT_NO_ESTIMATE"


def probe_cost(cfg: StudyConfig) -> dict[str, Any] | None:
    """Seconds of one trial per part (attribution, each metric) on the CPU, with the setting
    measured; None when ``XAIOPT_NO_ESTIMATE`` is set. A setting whose scores are NaN is recorded as
    failed (the study's trials fail the same way, each with its reason; the study goes on)."""
    if os.environ.get(SKIP_ENV, "").strip() not in ("", "0"):
        return None
    objective = Objective(cfg, device=torch.device("cpu"))
    probe = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=cfg.seed),
                                directions=["maximize"] * len(cfg.metrics))
    spec = objective.space.suggest(probe.ask())
    start = time.perf_counter()
    try:
        _, seconds, _ = objective.evaluate(spec)
    except TrialFailed as failure:
        return {"device": "cpu", "setting": spec.describe(), "failed": str(failure)}
    total = time.perf_counter() - start
    return {"device": "cpu", "setting": spec.describe(), "total": round(total, 3),
            "seconds": {k.removeprefix("metric:"): round(v, 3) for k, v in seconds.items()}}


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def describe_cost(cost: dict[str, Any] | None, n_trials: int | None) -> str | None:
    """The one line ``study create`` prints of :func:`probe_cost`'s record (None without one)."""
    if cost is None:
        return None
    if "failed" in cost:
        return (f"the cost probe ({cost['setting']}) failed: {cost['failed']}; no estimate (such trials fail with "
                f"their reason and the study goes on)")
    total = float(cost["total"])
    parts = sorted(cost["seconds"].items(), key=lambda kv: -kv[1])
    shown = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in parts)
    line = f"one trial measured on {cost['device']}: {total:.1f} s ({shown})"
    if n_trials:
        line += f"; the budget of {n_trials} trials: about {_duration(total * n_trials)} on one such worker"
    return line
