"""The budget arithmetic: what counts, and who wins a race for the last slot."""

from __future__ import annotations

import optuna
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from xaiopt.study.worker import OVER_BUDGET_ATTR, _rank, budget_status

D = {"x": FloatDistribution(0, 1)}


def _add(study, state, **kw):
    values = [0.5] if state == TrialState.COMPLETE else None
    study.add_trial(create_trial(state=state, params={"x": 0.1}, distributions=D, values=values, **kw))


def test_stale_originals_and_over_budget_trials_do_not_count():
    study = optuna.create_study(storage=optuna.storages.RDBStorage("sqlite:///:memory:"))
    _add(study, TrialState.COMPLETE)                                    # 0
    _add(study, TrialState.FAIL)                                        # 1: died, re-queued as 3
    _add(study, TrialState.FAIL)                                        # 2: a real failure, counts
    _add(study, TrialState.WAITING, system_attrs={"failed_trial": 1, "retry_history": [1]})   # 3
    _add(study, TrialState.PRUNED, user_attrs={OVER_BUDGET_ATTR: True})                       # 4
    _add(study, TrialState.PRUNED)                                      # 5: pruned for a reason, counts
    s = budget_status(study)
    assert (s.complete, s.failed, s.pruned, s.running, s.waiting) == (1, 1, 1, 0, 1)
    assert s.finished == 3 and s.used == 4


def test_the_smaller_trial_id_wins_the_last_slot():
    study = optuna.create_study(storage=optuna.storages.RDBStorage("sqlite:///:memory:"))
    _add(study, TrialState.COMPLETE)
    a, b = study.ask(), study.ask()        # two workers asked at once for the one slot left of 2
    ids = [a._trial_id, b._trial_id]
    assert _rank(study, ids[0]) == 1 < 2   # a runs
    assert _rank(study, ids[1]) == 2       # b is over budget, whatever it saw before asking
