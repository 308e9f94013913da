"""Progress on stderr: set-up steps, then one line per finished trial (piped) or a status line (terminal)."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from pathlib import Path

import optuna
import yaml

from xaiopt.cli import main
from xaiopt.objective.progress import ProgressHandler, TrialProgress, duration

SMALL = {
    "name": "prog",
    "seed": 0,
    "device": "cpu",
    "data": {"n_samples": 4},
    "space": {"layer_groups": 2, "canonize": [True, False]},
    "metrics": ["sparseness"],
    "sampler": {"name": "random"},
    "runtime": {"heatmaps": 0},
}
LINE = re.compile(r"^xaiopt: \[\s*(\d+\.\d)s\] (.*)$")


def _xaiopt(*argv: str) -> subprocess.CompletedProcess:
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "xaiopt.cli", *argv], cwd=root, env=env, capture_output=True,
                          text=True, timeout=600, stdin=subprocess.DEVNULL)


def test_run_shows_each_setup_step_and_each_trial_when_piped(tmp_path):
    config = tmp_path / "prog.yaml"
    config.write_text(yaml.safe_dump({**SMALL, "n_trials": 3}))
    done = _xaiopt("run", str(config), "--storage", f"sqlite:///{tmp_path / 'p.db'}")
    assert done.returncode == 0, done.stderr
    lines = [LINE.match(line) for line in done.stderr.splitlines()]
    progress = [m.group(2) for m in lines if m]
    steps = ["loading model benchmark:vgg", "loading the evaluation batch: benchmark, 4 samples",
             "canonizing the twin of benchmark:vgg", "clean logits of the evaluation batch on cpu",
             "benchmark ready on cpu in", "preflight passed:", "running trials of study 'prog' on cpu: 3 of the budget"]
    at = [next(i for i, text in enumerate(progress) if text.startswith(s)) for s in steps]
    assert at == sorted(at), progress  # in the order they happen
    trials = [text for text in progress if text.startswith("trial ")]
    assert len(trials) == 3, progress
    for k, text in enumerate(trials):
        assert re.match(rf"trial {k} complete in \d+\.\d s: {k + 1} of 3 \({k + 1} complete\)", text), text
    assert "ETA" in trials[0] and "ETA" not in trials[-1]  # nothing left after the last
    seconds = [float(m.group(1)) for m in lines if m]
    assert seconds == sorted(seconds)
    assert "\r" not in done.stderr  # no terminal status line in a pipe
    assert done.stdout.startswith("Pareto front of study 'prog' on all 1 metrics")
    # the run ends with the recommendation in the study's optuna-dashboard note
    from optuna_dashboard import get_note

    from xaiopt.analysis import recommend
    from xaiopt.study import load_study

    assert "recommendation written to the study's note in optuna-dashboard" in done.stderr
    loaded = load_study("prog", storage=f"sqlite:///{tmp_path / 'p.db'}")
    note = get_note(loaded.study)
    assert f"trial {recommend(loaded).best.number}" in note

    quiet = _xaiopt("run", str(config), "--storage", f"sqlite:///{tmp_path / 'q.db'}", "--no-progress")
    assert quiet.returncode == 0, quiet.stderr
    assert not [line for line in quiet.stderr.splitlines() if LINE.match(line)], quiet.stderr
    assert "created study 'prog'" in quiet.stderr


def test_optimize_reports_a_repeated_setting(tmp_path, capsys):
    config = tmp_path / "prog.yaml"
    config.write_text(yaml.safe_dump(SMALL))
    storage = f"sqlite:///{tmp_path / 'r.db'}"
    assert main(["study", "create", str(config), "--storage", storage]) == 0
    assert main(["study", "optimize", "prog", "--n-trials", "1", "--storage", storage]) == 0
    err = capsys.readouterr().err
    assert re.search(r"^xaiopt: \[\s*\d+\.\ds\] trial 0 complete in \d+\.\d s: 1 of 1 \(1 complete\)$", err, re.M), err
    study = optuna.load_study(study_name="prog", storage=storage)
    study.enqueue_trial(study.trials[0].params)
    assert main(["study", "optimize", "prog", "--n-trials", "1", "--storage", storage]) == 0
    err = capsys.readouterr().err
    assert re.search(r"trial 1 complete in \d+\.\d s \(same settings as trial 0, values copied\): 1 of 1 "
                     r"\(1 complete\)$", err, re.M), err
    assert main(["study", "optimize", "prog", "--n-trials", "1", "--storage", storage, "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert "trial 2" not in err and "xaiopt: [" not in err


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_terminal_gets_one_rewritten_status_line(monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    tty = _Terminal()
    line = TrialProgress("q", total=3, done=0, handler=ProgressHandler(tty))
    line.running(remaining=3)
    line.finished(0, "complete", 1.0, done=1, remaining=2)
    line.running(remaining=2)
    line.finished(1, "failed", 3.0, done=2, remaining=1)
    line.running(remaining=1)
    assert "\n" not in tty.getvalue()  # one line, rewritten
    line.finished(2, "complete", 2.0, done=3, remaining=0)
    line.close()
    shown = tty.getvalue().split("\r\x1b[K")[1:]
    assert shown == [
        "q: trial 1 of 3 running · none finished",
        "q: trial 2 of 3 running · 1 complete · last 1.0 s · ETA 2 s",   # mean 1 s x 2 left
        "q: trial 3 of 3 running · 1 complete, 1 failed · last 3.0 s · ETA 2 s",  # mean 2 s x 1 left
        "q: 3 of 3 finished · 2 complete, 1 failed · 6 s in trials\n",
    ]
    monkeypatch.setenv("COLUMNS", "30")
    narrow = _Terminal()
    TrialProgress("quickstart", total=20, done=4, handler=ProgressHandler(narrow)).running(remaining=16)
    assert narrow.getvalue() == "\r\x1b[K" + "quickstart: trial 5 of 20 ru…"  # cut to the terminal's width - 1


def test_durations():
    assert [duration(s) for s in (0.4, 42, 185, 3725)] == ["0 s", "42 s", "3 min 05 s", "1 h 02 min"]
