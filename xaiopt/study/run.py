"""Running trials of a stored study in this process (one worker)."""

from __future__ import annotations

import logging
import warnings

import optuna
from optuna.artifacts import FileSystemArtifactStore
from optuna.study import MaxTrialsCallback
from optuna.trial import TrialState

from xaiopt.errors import ConfigError, TrialFailed
from xaiopt.objective import Objective, resolve_device
from xaiopt.study.manage import LoadedStudy, load_study
from xaiopt.study.samplers import make_sampler

log = logging.getLogger(__name__)

# what counts against a study's trial budget (stale trials re-queued by a heartbeat retry
# come back as WAITING trials and are counted once they finish)
BUDGET_STATES = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


def optimize(
    name: str,
    *,
    storage: str | None = None,
    n_trials: int | None = None,
    device: str | None = None,
    progress: bool = False,
    timeout: float | None = None,
) -> LoadedStudy:
    """Run ``n_trials`` trials of study ``name`` here (or until the config's budget is spent).

    Example::

        optimize("quickstart", storage="sqlite:///xaiopt.db", n_trials=5, device="cpu")
    """
    loaded = load_study(name, storage=storage, heartbeat=True)
    cfg = loaded.config
    budget = cfg.n_trials
    if n_trials is None and budget is None:
        raise ConfigError("n_trials: give --n-trials K (the study's config sets no n_trials budget)")
    if n_trials is not None and n_trials < 1:
        raise ConfigError(f"--n-trials must be >= 1, got {n_trials}")
    dev = resolve_device(device or cfg.device)
    art_dir = loaded.artifact_dir
    art_dir.mkdir(parents=True, exist_ok=True)
    objective = Objective(cfg, device=dev, artifact_store=FileSystemArtifactStore(str(art_dir)))
    study = loaded.study
    done = len(study.get_trials(deepcopy=False, states=BUDGET_STATES))
    # each worker (and each resumed run) gets its own stream, reproducible for a fresh single worker
    study.sampler = make_sampler(cfg.sampler, objective.space, seed=cfg.seed + done)
    callbacks = []
    if budget is not None:
        remaining = budget - done
        if remaining <= 0:
            log.info("study %s has used its budget of %d trials", name, budget)
            return loaded
        callbacks.append(MaxTrialsCallback(budget, states=BUDGET_STATES))
        n_trials = remaining if n_trials is None else min(n_trials, remaining)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.optimize(
            objective, n_trials=n_trials, timeout=timeout, catch=(TrialFailed,), callbacks=callbacks,
            show_progress_bar=progress, gc_after_trial=False,
        )
    return loaded
