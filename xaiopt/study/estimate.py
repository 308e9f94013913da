"""What a study will cost, measured on its first trial.

``xaiopt study create`` runs the study's first trial right after creating it (a real trial, kept and
counted in the budget, so the measurement costs nothing) and ``xaiopt run`` does the same before the
rest of its trials; both print the seconds per part and the projected time of the budget::

    xaiopt: one trial measured on cpu: 12.3 s (region_perturbation 8.1 s, avg_sensitivity 2.0 s,
            attribution 1.2 s, ...); the budget of 20 trials: about 4 min on one such worker

``--dry-run`` writes nothing: it evaluates one seeded draw of the search space instead
(:func:`probe_cost`). Later trials reuse kept forwards and are usually faster; a GPU worker is faster
still. The record is kept in the study (:data:`COST_ATTR`). ``XAIOPT_NO_ESTIMATE=1`` skips the
measurement (the test suite sets it; the tests of the measurement unset it).
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


def enabled() -> bool:
    return os.environ.get(SKIP_ENV, "").strip() in ("", "0")


def measure_first_trial(name: str, *, storage: str, device: str | None = None) -> dict[str, Any] | None:
    """Run the study's first trial here and record its cost in the study (:data:`COST_ATTR`); None
    when ``XAIOPT_NO_ESTIMATE`` is set or no trial finished."""
    if not enabled():
        return None
    from xaiopt.objective.attrs import SECONDS_ATTR
    from xaiopt.study.run import optimize

    loaded = optimize(name, storage=storage, n_trials=1, device=device)
    finished = [t for t in loaded.study.get_trials(deepcopy=False)
                if t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.FAIL)]
    if not finished:
        return None
    first = finished[0]
    device_name = str(first.user_attrs.get("device", "this worker"))
    if first.state == optuna.trial.TrialState.FAIL:
        cost: dict[str, Any] = {"device": device_name, "setting": f"trial {first.number}",
                                "failed": str(first.user_attrs.get("fail_reason", "no reason recorded"))}
    else:
        seconds = dict(first.system_attrs.get(SECONDS_ATTR) or {})
        total = float(seconds.pop("total", sum(seconds.values())))
        cost = {"device": device_name, "setting": f"trial {first.number}", "total": round(total, 3),
                "seconds": {k.removeprefix("metric:"): round(float(v), 3) for k, v in seconds.items()}}
    from xaiopt.study.manage import REFERENCES_ATTR

    refs = loaded.study.user_attrs.get(REFERENCES_ATTR) or {}
    spent = [float(r["seconds"]) for r in refs.values() if isinstance(r, dict) and "seconds" in r]
    if spent:  # paid once, by the worker that found the budget done (here: a budget of one trial)
        cost["references"] = round(sum(spent), 3)
    elif loaded.config.runtime.references and "seconds" in cost:
        # four explainers scored by every metric: about four times the metrics' share of a trial
        cost["references_estimate"] = round(4 * sum(v for k, v in cost["seconds"].items() if k != "attribution"), 3)
    loaded.study.set_user_attr(COST_ATTR, cost)
    return cost


def probe_cost(cfg: StudyConfig) -> dict[str, Any] | None:
    """Seconds of one trial per part (attribution, each metric) on the CPU, with the setting
    measured; None when ``XAIOPT_NO_ESTIMATE`` is set. A setting whose scores are NaN is recorded as
    failed (the study's trials fail the same way, each with its reason; the study goes on)."""
    if not enabled():
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
    line = f"one trial ({cost['setting']}) measured on {cost['device']}: {total:.1f} s ({shown})"
    if n_trials:
        line += f"; the budget of {n_trials} trials: about {_duration(total * n_trials)} on one such worker"
    if cost.get("references"):
        line += f" (and, once, the reference explanations: {cost['references']:.1f} s)"
    elif cost.get("references_estimate"):
        line += (f" (and, once the budget is done, the reference explanations: about "
                 f"{_duration(cost['references_estimate'])})")
    return line
