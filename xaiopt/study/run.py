"""Running trials of a stored study in this process (one worker)."""

from __future__ import annotations

from xaiopt.study.manage import LoadedStudy
from xaiopt.study.worker import run_worker


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

    The single-worker path of :func:`xaiopt.study.worker.run_worker`: the sampler seed is not
    salted, so a fresh study run by one worker is reproducible. ``progress`` prints the set-up
    steps and the trials on stderr: a status line rewritten in place on a terminal, one line per
    finished trial otherwise (:mod:`xaiopt.objective.progress`).

    Example::

        optimize("quickstart", storage="sqlite:///xaiopt.db", n_trials=5, device="cpu")
    """
    return run_worker(name, storage=storage, n_trials=n_trials, device=device, progress=progress,
                      timeout=timeout, salt_seed=False).loaded
