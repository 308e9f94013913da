"""Stateless workers: load a study by name, run its trials until the shared budget is spent.

Any number of workers (processes, machines) may share one study in PostgreSQL. Everything a
worker needs is in the study: the config (``xaiopt:config``), the artifact directory, the
budget. Three rules keep the study exact:

* **The budget is a total.** A trial counts against it unless it is a stale original that was
  re-queued (its number is in some trial's ``retry_history``) or was itself refused as over
  budget. Before asking for a trial a worker checks the count, including RUNNING and WAITING
  trials, so normally nothing is wasted. Several workers can pass that check at once, so each
  trial also checks its *rank*: it runs only if fewer than ``n_trials`` counting trials have a
  smaller trial id (ids are allocated by the database, so every worker agrees on the order). The
  rank is checked again when the trial ends, which closes the window in which a smaller id was
  allocated but not yet committed. A trial that loses is pruned with user attr
  ``xaiopt:over_budget`` and does not count.
* **Nothing is lost.** With PostgreSQL, trials send heartbeats; a trial whose worker died is
  failed as stale and re-queued as a WAITING trial (Optuna's retry callback) that the next
  worker picks up. A worker interrupted by Ctrl-C or SIGTERM re-queues its trial the same way.
  With SQLite (one worker, see :func:`xaiopt.study.storage.sqlite_worker_lock`), RUNNING trials
  found at start are orphans of a dead worker and are re-queued.
* **Workers differ.** Each ``xaiopt worker`` salts its sampler seed with its host and pid, so
  workers started together do not propose the same points.
* **Workers are known.** A worker holds its study while it runs (:mod:`xaiopt.study.presence`), so
  ``study delete`` refuses, naming the workers; a study deleted anyway (by a tool that takes no
  lock) stops each worker with one line, exit 2, as a worker started after the deletion would.

Example::

    run_worker("quickstart", storage="postgresql+psycopg://xaiopt@db/xaiopt", until_done=True)
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import time
import warnings
import zlib
from contextlib import ExitStack, contextmanager, nullcontext, suppress
from dataclasses import dataclass
from typing import Iterator, Sequence

import optuna
from optuna.artifacts import FileSystemArtifactStore
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial, TrialState

from xaiopt import interrupt
from xaiopt.errors import ConfigError, TrialFailed, XaioptError
from xaiopt.objective import Objective, resolve_device
from xaiopt.objective.progress import ProgressHandler, TrialProgress, progress_to, step
from xaiopt.study.holdout import check_split
from xaiopt.study.manage import LoadedStudy, load_study
from xaiopt.study.presence import WorkerPresence, worker_presence
from xaiopt.study.resilient import outage_behind, raise_if_gave_up
from xaiopt.study.samplers import Decision, make_sampler
from xaiopt.study.storage import _redact, is_sqlite

log = logging.getLogger(__name__)

OVER_BUDGET_ATTR = "xaiopt:over_budget"
WORKER_ATTR = "worker"
MAX_RETRY = 3


@dataclass(frozen=True)
class BudgetStatus:
    """How a study stands against its budget (stale originals and over-budget trials left out)."""

    complete: int
    failed: int
    pruned: int
    running: int
    waiting: int

    @property
    def finished(self) -> int:
        return self.complete + self.failed + self.pruned

    @property
    def used(self) -> int:
        return self.finished + self.running + self.waiting


def _superseded(trials: Sequence[FrozenTrial]) -> set[int]:
    """Numbers of stale trials that were re-queued: their retry carries their budget slot."""
    out: set[int] = set()
    for t in trials:
        out.update(t.system_attrs.get("retry_history", ()))
    return out


def _counts(t: FrozenTrial, superseded: set[int]) -> bool:
    if t.state == TrialState.FAIL and t.number in superseded:
        return False
    if t.state == TrialState.PRUNED and t.user_attrs.get(OVER_BUDGET_ATTR):
        return False
    return True


def budget_status(study: optuna.Study) -> BudgetStatus:
    trials = study.get_trials(deepcopy=False)
    sup = _superseded(trials)
    n = {s: 0 for s in TrialState}
    for t in trials:
        if _counts(t, sup):
            n[t.state] += 1
    return BudgetStatus(complete=n[TrialState.COMPLETE], failed=n[TrialState.FAIL], pruned=n[TrialState.PRUNED],
                        running=n[TrialState.RUNNING], waiting=n[TrialState.WAITING])


def _rank(study: optuna.Study, trial_id: int) -> int:
    """How many counting trials were created before this one."""
    trials = study.get_trials(deepcopy=False)
    sup = _superseded(trials)
    return sum(1 for t in trials if t._trial_id < trial_id and _counts(t, sup))


class BudgetedObjective:
    """Wraps an :class:`Objective`: a trial beyond the study's budget is pruned, not run or kept."""

    def __init__(self, objective: Objective, study: optuna.Study, budget: int | None, worker_id: str):
        self.objective = objective
        self.study = study
        self.budget = budget
        self.worker_id = worker_id
        self.current: int | None = None
        self.last: int | None = None  # the trial id of the last trial started (for the progress line)
        self.over_budget = False

    def _check(self, trial: optuna.Trial, when: str) -> None:
        if self.budget is None:
            return
        rank = _rank(self.study, trial._trial_id)
        if rank >= self.budget:
            self.over_budget = True
            trial.set_user_attr(OVER_BUDGET_ATTR, True)
            log.info("trial %d is over the budget of %d trials (%s); not kept", trial.number, self.budget, when)
            raise optuna.TrialPruned(f"over the study's budget of {self.budget} trials")

    def __call__(self, trial: optuna.Trial) -> tuple[float, ...]:
        self.current = self.last = trial._trial_id
        self.over_budget = False
        self._check(trial, "at start")
        trial.set_user_attr(WORKER_ATTR, self.worker_id)
        values = self.objective(trial)
        self._check(trial, "at end")
        return values


def _requeue(study: optuna.Study, trial_id: int) -> None:
    """Put a trial that this worker could not finish back in the queue (as a heartbeat retry would)."""
    storage = study._storage
    trial = storage.get_trial(trial_id)
    if trial.state == TrialState.RUNNING:
        try:
            storage.set_trial_state_values(trial_id, state=TrialState.FAIL)
        except optuna.exceptions.UpdateFinishedTrialError:
            return
        trial = storage.get_trial(trial_id)
    if trial.state == TrialState.FAIL and not trial.user_attrs.get(OVER_BUDGET_ATTR):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY)(study, trial)
        log.warning("trial %d interrupted; re-queued", trial.number)


def _requeue_orphans(study: optuna.Study) -> int:
    """SQLite has no heartbeats: with the worker lock held, every RUNNING trial is an orphan."""
    orphans = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    for t in orphans:
        _requeue(study, t._trial_id)
    return len(orphans)


def _fail_stale(study: optuna.Study) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    # `docker stop` sends SIGTERM: turn it into KeyboardInterrupt so the running trial is re-queued; a
    # stop swallowed by a finalizer is caught between trials (xaiopt/interrupt.py)
    replaced = interrupt.install()
    try:
        yield
    finally:
        interrupt.restore(replaced)
        interrupt.clear()


def score_references(study: optuna.Study, objective: Objective) -> None:
    """Score the study's reference explanations once (:mod:`xaiopt.objective.references`), unless they are
    stored already or the config says ``runtime.references: false``. The worker that finds the budget
    done calls it (any worker of a study without a budget, when it stops): they cost about four trials,
    which nobody should wait for before the first one. Deterministic: two workers that both score them
    write the same values. A reference that fails is stored with its reason."""
    from xaiopt.metrics.packing import pack_scores
    from xaiopt.objective.references import REFERENCES
    from xaiopt.objective.trial import means
    from xaiopt.study.manage import REFERENCES_ATTR

    if not objective.cfg.runtime.references or study.user_attrs.get(REFERENCES_ATTR) is not None:
        return
    step("scoring the reference explanations once (%s) for the metrics' sanity check", ", ".join(REFERENCES))
    out: dict[str, dict] = {}
    for name in REFERENCES:
        try:
            scores, seconds = objective.evaluate_reference(name)
        except TrialFailed as err:
            out[name] = {"failed": str(err)}
            log.warning("reference explanation %s not scored: %s", name, err)
            continue
        out[name] = {"values": means(scores), "scores": pack_scores(scores), "seconds": round(seconds, 3)}
    study.set_user_attr(REFERENCES_ATTR, out)


@dataclass
class WorkerResult:
    loaded: LoadedStudy
    ran: int
    status: BudgetStatus


def _plan(budget: int | None, n_trials: int | None, status: BudgetStatus) -> str:
    if budget is None:
        return f"{n_trials} trial(s)"
    left = max(0, budget - status.finished)
    here = f", at most {n_trials} here" if n_trials is not None and n_trials < left else ""
    return f"{left} of the budget of {budget} trials left{here}"


def _left(budget: int | None, n_trials: int | None, ran: int, status: BudgetStatus | None) -> int | None:
    """Trials this worker still has to run (the study's budget left, capped by its own n_trials)."""
    left = [n for n in ((budget - status.finished) if budget is not None else None,
                        (n_trials - ran) if n_trials is not None else None) if n is not None]
    return max(0, min(left)) if left else None


def _report(line: TrialProgress, study: optuna.Study, trial_id: int, seconds: float, budget: int | None,
            n_trials: int | None, ran: int) -> None:
    """One finished trial on the progress line: its state, and the study's counts under a budget."""
    trial = study._storage.get_trial(trial_id)
    note = None
    if "duplicate_of" in trial.user_attrs:
        note = f"same settings as trial {trial.user_attrs['duplicate_of']}, values copied"
    elif trial.state == TrialState.FAIL and trial.user_attrs.get("fail_reason"):
        note = str(trial.user_attrs["fail_reason"])[:160]
    elif trial.state == TrialState.PRUNED and trial.user_attrs.get("pruned"):  # multi-fidelity's reason
        # the dominating trial or the stage lost; the margins are in the user attr
        note = str(trial.user_attrs["pruned"]).split(" by more than ")[0].split(": its decision score")[0][:100]
    if budget is not None:
        status = budget_status(study)
        counts = {"complete": status.complete, "failed": status.failed, "pruned": status.pruned}
        line.finished(trial.number, _state_word(trial.state), seconds, done=status.finished,
                      remaining=_left(budget, n_trials, ran, status), counts=counts, note=note)
    else:
        line.finished(trial.number, _state_word(trial.state), seconds, done=ran,
                      remaining=_left(None, n_trials, ran, None), note=note)


def _state_word(state: TrialState) -> str:
    return {TrialState.FAIL: "failed"}.get(state, state.name.lower())


def _worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def run_worker(
    name: str,
    *,
    storage: str | None = None,
    n_trials: int | None = None,
    until_done: bool = False,
    device: str | None = None,
    progress: bool = False,
    timeout: float | None = None,
    salt_seed: bool = True,
    poll_seconds: float | None = None,
) -> WorkerResult:
    """Run trials of study ``name`` in this process until the study's budget is spent.

    ``n_trials`` caps how many trials this worker runs (without a study budget it is required).
    ``until_done`` (the default when there is a budget and no ``n_trials``): when all remaining
    budget is held by other workers' running trials, wait for them (they may die and come back
    as re-queued trials) instead of leaving.

    Example::

        run_worker("quickstart", storage="postgresql+psycopg://xaiopt@db/xaiopt", device="cuda:1")
    """
    with progress_to(sys.stderr) if progress else nullcontext() as handler:
        return _run_worker(name, storage=storage, n_trials=n_trials, until_done=until_done, device=device,
                           handler=handler, timeout=timeout, salt_seed=salt_seed, poll_seconds=poll_seconds)


def _run_worker(name: str, *, storage: str | None, n_trials: int | None, until_done: bool, device: str | None,
                handler: ProgressHandler | None, timeout: float | None, salt_seed: bool,
                poll_seconds: float | None) -> WorkerResult:
    loaded = load_study(name, storage=storage, heartbeat=True)
    cfg = loaded.config
    url = loaded.storage_url
    budget = cfg.n_trials
    if n_trials is None and budget is None:
        raise ConfigError("n_trials: give --n-trials K (the study's config sets no n_trials budget)")
    if n_trials is not None and n_trials < 1:
        raise ConfigError(f"--n-trials must be >= 1, got {n_trials}")
    wait = budget is not None and (until_done or n_trials is None)
    study = loaded.study
    heartbeat = cfg.runtime.heartbeat_interval
    poll = poll_seconds if poll_seconds is not None else max(0.5, min(5.0, heartbeat / 2))
    worker_id = _worker_id()
    with ExitStack() as stack:
        # a live worker holds its study: `study delete` refuses while it runs; deleted anyway, it stops in one line
        presence = stack.enter_context(worker_presence(study, url))
        stack.enter_context(_stop_if_deleted(presence))
        if is_sqlite(url):
            n = _requeue_orphans(study)
            if n:
                log.warning("re-queued %d trial(s) left RUNNING by a worker that died", n)
        dev = resolve_device(device or cfg.device)
        art_dir = loaded.artifact_dir
        # unwritable, the trials go on without heatmaps: the objective warns once, each trial records why
        with suppress(OSError):
            art_dir.mkdir(parents=True, exist_ok=True)
        objective = Objective(cfg, device=dev, artifact_store=FileSystemArtifactStore(str(art_dir)))
        # the samples searched here must be the ones the study was created with (data.holdout)
        check_split(loaded, objective.bench)
        status = budget_status(study)
        seed = cfg.seed + status.finished
        if salt_seed:
            seed += zlib.crc32(worker_id.encode()) % 1_000_003
        study.sampler = make_sampler(cfg.sampler, objective.space, seed=seed, decision=Decision.from_config(cfg))
        budgeted = BudgetedObjective(objective, study, budget, worker_id)
        stack.enter_context(_sigterm_as_interrupt())
        line = None
        if handler is not None:
            line = TrialProgress(name, total=budget if budget is not None else n_trials,
                                 done=status.finished if budget is not None else 0, handler=handler)
            stack.callback(line.close)
            step("running trials of study %r on %s: %s", name, dev, _plan(budget, n_trials, status))
        log.info("worker %s joins study %s in %s on %s", worker_id, name, _redact(url), dev)
        t0 = time.monotonic()
        ran = 0
        while True:
            interrupt.raise_if_stopped()
            presence.check()
            if timeout is not None and time.monotonic() - t0 >= timeout:
                break
            if n_trials is not None and ran >= n_trials:
                break
            if budget is not None:
                if not is_sqlite(url):
                    _fail_stale(study)
                status = budget_status(study)
                if status.finished >= budget:
                    break
                if status.used >= budget and status.waiting == 0:
                    if not wait:
                        break
                    time.sleep(poll)
                    continue
            if line is not None:
                line.running(_left(budget, n_trials, ran, status))
            started = time.perf_counter()
            budgeted.last = None
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                    study.optimize(budgeted, n_trials=1, catch=(TrialFailed,), gc_after_trial=False)
            except KeyboardInterrupt:
                if budgeted.current is not None and not presence.gone():
                    _requeue(study, budgeted.current)
                raise
            except optuna.exceptions.UpdateFinishedTrialError:
                # another worker saw no heartbeat in time, failed this trial as stale and re-queued
                # it; the retry carries its budget slot, so this run's result is dropped
                log.warning("trial was taken over as stale by another worker (heartbeats too late); "
                            "its retry will run")
                continue
            except Exception as err:
                # an outage past runtime.storage_retry_seconds can surface as any error Optuna
                # raises while it cleans up: the worker exits with the outage's one line
                raise_if_gave_up(study._storage)
                if _interrupted(err):
                    # Ctrl-C or SIGTERM landed inside a storage call, which wrapped it in its own error
                    if budgeted.current is not None and not presence.gone():
                        _requeue(study, budgeted.current)
                    raise KeyboardInterrupt from None
                raise
            finally:
                budgeted.current = None
            if not budgeted.over_budget:
                ran += 1
                if line is not None and budgeted.last is not None:
                    _report(line, study, budgeted.last, time.perf_counter() - started, budget, n_trials, ran)
        presence.raise_if_deleted()
        status = budget_status(study)
        if budget is None or status.finished >= budget:
            # once the study's trials are done (not before the first: a user waits for that one)
            score_references(study, objective)
    return WorkerResult(loaded=loaded, ran=ran, status=status)


def _interrupted(err: BaseException) -> bool:
    """Whether a KeyboardInterrupt (Ctrl-C, SIGTERM) is behind ``err``: raised inside a database
    driver's call, it comes back as the driver's or Optuna's own error."""
    seen: set[int] = set()
    e: BaseException | None = err
    while e is not None and id(e) not in seen:
        if isinstance(e, KeyboardInterrupt):
            return True
        seen.add(id(e))
        e = e.__cause__ or e.__context__
    return False


@contextmanager
def _stop_if_deleted(presence: WorkerPresence) -> Iterator[None]:
    """Whatever a deleted study made fail (Optuna's "Record does not exist", a trial that cannot be
    written), the worker stops with the one line of :class:`StudyDeleted`."""
    try:
        yield
    except Exception as err:
        if isinstance(err, XaioptError) or outage_behind(err) is not None:
            raise
        if _interrupted(err):
            raise KeyboardInterrupt from None
        try:
            gone = presence.gone()
        except Exception:  # noqa: BLE001 - cannot tell: the original error is the one to show
            gone = False
        if gone:
            presence.raise_if_deleted()
        raise
