"""Reading the per-sample metric scores a trial stored (``xaiopt:per_sample``, a trial system attr).

Example::

    loaded = load_study("quickstart", storage="sqlite:///xaiopt.db")
    t = loaded.study.best_trials[0]
    scores = per_sample_scores(t)          # {'sparseness': array([...], dtype=float32), ...} or None
    scores["sparseness"].astype("float64").mean() == t.values[0]   # the trial's value (float64 rounding)
"""

from __future__ import annotations

import numpy as np
from optuna.trial import FrozenTrial

from xaiopt.errors import StudyError
from xaiopt.objective.attrs import per_sample


def per_sample_scores(trial: FrozenTrial) -> dict[str, np.ndarray] | None:
    """``{metric: (N,) float32 scores}`` of a trial, or None for a trial that stored none
    (failed, still running, or run before xaiopt kept per-sample scores)."""
    try:
        return per_sample(trial)
    except ValueError as err:
        raise StudyError(f"trial {trial.number}: {err}") from None
