"""Two `study create` of one name racing on PostgreSQL: exactly one wins, the other is one line and exit 2."""

from __future__ import annotations

import optuna
import pytest

from .conftest import PASSWORD, small_config, spawn

pytestmark = pytest.mark.postgres


def test_racing_creates_one_wins_and_the_other_says_so(tmp_path, pg_url):
    cfg = small_config(tmp_path, name="race", runtime={"heatmaps": 0, "heartbeat_interval": 1})
    logs = [tmp_path / f"create{i}.log" for i in range(2)]
    procs = [spawn("study", "create", str(cfg), "--storage", pg_url, "--baseline", "epsilon_plus", log=log)
             for log in logs]
    codes = sorted(p.wait(timeout=120) for p in procs)
    texts = [log.read_text() for log in logs]
    assert codes == [0, 2], texts
    loser = next(t for p, t in zip(procs, texts) if p.returncode == 2)
    lines = [line for line in loser.splitlines() if line.strip() and not line.startswith("[I ")]
    assert len(lines) == 1 and lines[0].startswith("xaiopt: error: study 'race' already exists"), loser
    assert PASSWORD not in "".join(texts)
    # one study, whole: the winner's config and its baselines, enqueued once
    assert optuna.get_all_study_names(pg_url) == ["race"]
    study = optuna.load_study(study_name="race", storage=pg_url)
    assert "xaiopt:config" in study.user_attrs
    assert sorted(t.user_attrs["baseline"] for t in study.trials) == ["epsilon_plus:canonized", "epsilon_plus:plain"]
