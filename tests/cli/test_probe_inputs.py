"""Bad inputs and stop signals: one line on stderr, the exit status that says which, nothing written.

Each case here was found by a probe of bad inputs: a user's mistake ends in one line and exit 2
with no database, file or directory left behind; a signal ends a command in one line with 130
(SIGINT) or 143 (SIGTERM), the running trial re-queued.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from xaiopt.cli import main

SMALL = {
    "name": "probe",
    "seed": 1,
    "device": "cpu",
    "model": {"name": "benchmark:vgg"},
    "data": {"name": "benchmark", "n_samples": 8},
    "space": {"layer_groups": 2, "rules": ["gamma", "epsilon", "zplus"], "gamma": [0.1, 0.25],
              "epsilon": [1e-6, 1e-2]},
    "metrics": ["sparseness", "relevance_rank_accuracy"],
    "sampler": {"name": "random"},
    "runtime": {"heatmaps": 0},
}


def said(err: str) -> list[str]:
    """The lines a user reads on stderr, progress lines left out."""
    return [line for line in err.splitlines() if line.strip() and not line.startswith("xaiopt: [")]


def write_config(tmp_path: Path, **update) -> Path:
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump({**SMALL, **update}))
    return path


def one_error(capsys, *argv: str) -> str:
    code = main(list(argv))
    out, err = capsys.readouterr()
    lines = said(err)
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("xaiopt: error: "), err
    return lines[0]


def listing(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def unwritable_dir(tmp_path: Path) -> Path:
    """A directory that refuses a new file to this process: read-only bits for a user, and for root
    (whom permission bits do not stop) sysfs, where no file can be created."""
    ro = tmp_path / "read-only"
    ro.mkdir()
    ro.chmod(0o555)
    for candidate in (ro, Path("/sys")):
        try:
            fd, probe = tempfile.mkstemp(dir=candidate)
        except OSError:
            return candidate
        os.close(fd)
        os.unlink(probe)
    pytest.skip("no directory refuses a new file to this process (root without a sysfs)")


# --- 1. true/false where a number goes -------------------------------------------------------------

@pytest.mark.parametrize(("update", "field"), [
    ({"n_trials": True}, "n_trials"),
    ({"seed": False}, "seed"),
    ({"data": {"name": "benchmark", "n_samples": True}}, "data.n_samples"),
    ({"runtime": {"batch_budget": True}}, "runtime.batch_budget"),
    ({"runtime": {"lrp_cache_mb": False}}, "runtime.lrp_cache_mb"),
    ({"space": {**SMALL["space"], "gamma": [True, 0.25]}}, "space.gamma.choices"),
    ({"fidelity": {"stages": [4, True]}}, "fidelity.stages"),
])
def test_a_boolean_for_a_number_is_refused_and_nothing_is_written(tmp_path, capsys, monkeypatch, update, field):
    monkeypatch.chdir(tmp_path)
    cfg = write_config(tmp_path, **update)
    line = one_error(capsys, "run", str(cfg), "--storage", f"sqlite:///{tmp_path / 'p.db'}", "--no-progress")
    assert line.startswith(f"xaiopt: error: {cfg}: {field}: expected "), line
    assert "(true/false is not a number)" in line, line
    assert listing(tmp_path) == {"study.yaml"}


# --- 2. an empty or blank study name ---------------------------------------------------------------

@pytest.mark.parametrize("name", ["", "  "])
def test_an_empty_or_blank_study_name_is_refused(tmp_path, capsys, monkeypatch, name):
    monkeypatch.chdir(tmp_path)
    url = f"sqlite:///{tmp_path / 'p.db'}"
    cfg = write_config(tmp_path, name=name)
    line = one_error(capsys, "study", "create", str(cfg), "--storage", url)
    assert f"name: a study name must not be empty or blank, got {name!r}" in line, line
    good = write_config(tmp_path)
    for command in (["study", "create", str(good)], ["run", str(good), "--no-progress"]):
        line = one_error(capsys, *command, "--name", name, "--storage", url)
        assert line.startswith(f"xaiopt: error: --name: a study name must not be empty or blank, got {name!r}"), line
    assert listing(tmp_path) == {"study.yaml"}


# --- 3. --out into a place that takes no file ------------------------------------------------------

@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> str:
    """A study with two complete trials (SQLite), for the read commands that write files."""
    root = tmp_path_factory.mktemp("finished")
    url = f"sqlite:///{root / 'f.db'}"
    cfg = root / "study.yaml"
    cfg.write_text(yaml.safe_dump(SMALL))
    assert main(["run", str(cfg), "--storage", url, "--n-trials", "2", "--no-progress"]) == 0
    return url


OUTS = {
    "plot": (["study", "plot", "probe"], "out.html"),
    "export": (["study", "export", "probe"], "out.py"),
    "report": (["study", "report", "probe", "--images", "0"], "report"),
}


@pytest.mark.parametrize("command", sorted(OUTS))
def test_out_under_a_regular_file_is_one_line(finished, tmp_path, capsys, command):
    argv, leaf = OUTS[command]
    (tmp_path / "file.txt").write_text("kept")
    out = tmp_path / "file.txt" / leaf
    line = one_error(capsys, *argv, "--out", str(out), "--storage", finished)
    assert line == f"xaiopt: error: --out: cannot write {out}: {tmp_path / 'file.txt'} is a file, not a directory"
    assert listing(tmp_path) == {"file.txt"} and (tmp_path / "file.txt").read_text() == "kept"


@pytest.mark.parametrize("command", sorted(OUTS))
def test_out_into_an_unwritable_directory_is_one_line(finished, tmp_path, capsys, command):
    argv, leaf = OUTS[command]
    locked = unwritable_dir(tmp_path)
    before = set(os.listdir(locked))
    out = locked / leaf
    line = one_error(capsys, *argv, "--out", str(out), "--storage", finished)
    assert line.startswith(f"xaiopt: error: --out: cannot write {out}: "), line
    assert line.endswith(f" (directory {locked})"), line
    assert set(os.listdir(locked)) == before


def test_a_sqlite_storage_under_a_regular_file_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = write_config(tmp_path)
    (tmp_path / "file.txt").write_text("kept")
    line = one_error(capsys, "study", "create", str(cfg), "--storage", "sqlite:///file.txt/s.db")
    assert line.startswith("xaiopt: error: storage: cannot write file.txt/s.db.worker-lock: Not a directory"), line
    assert listing(tmp_path) == {"study.yaml", "file.txt"}


def test_a_failed_write_is_a_one_line_error_that_is_still_the_oserror(tmp_path):
    from xaiopt.errors import XaioptError
    from xaiopt.files import write_atomic

    (tmp_path / "file.txt").write_text("kept")
    with pytest.raises(NotADirectoryError) as caught:
        write_atomic(tmp_path / "file.txt" / "x.json", "{}")
    assert isinstance(caught.value, XaioptError)
    assert str(caught.value) == f"cannot write {tmp_path / 'file.txt' / 'x.json'}: {tmp_path / 'file.txt'} is a " \
                                f"file, not a directory"


# --- 4. run --plot is checked before anything is written -------------------------------------------

@pytest.mark.parametrize(("plot", "message"), [
    ("missing/dir/f.html", "--plot: directory missing/dir does not exist"),
    ("front.png", "--plot: 'front.png' does not end in .html or .htm (give FILE.html)"),
    ("study.yaml/f.html", "--plot: cannot write study.yaml/f.html: study.yaml is a file, not a directory"),
])
def test_run_checks_its_plot_path_before_it_creates_the_study(tmp_path, capsys, monkeypatch, plot, message):
    monkeypatch.chdir(tmp_path)
    cfg = write_config(tmp_path)
    line = one_error(capsys, "run", "study.yaml", "--plot", plot, "--storage", "sqlite:///p.db", "--no-progress")
    assert line == f"xaiopt: error: {message}"
    assert listing(tmp_path) == {"study.yaml"} and cfg.exists()


# --- 5. a worker whose artifact directory takes no file --------------------------------------------

def cli(*argv: str) -> list[str]:
    return [sys.executable, "-m", "xaiopt", *argv]


def test_a_worker_without_a_writable_artifact_directory_warns_once(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'w.db'}"
    (tmp_path / "file.txt").write_text("kept")
    cfg = write_config(tmp_path, runtime={"heatmaps": 2}, n_trials=3)
    code = main(["study", "create", str(cfg), "--storage", url, "--artifacts", str(tmp_path / "file.txt" / "art")])
    assert code == 0, capsys.readouterr().err
    done = subprocess.run(cli("worker", "--study", "probe", "--storage", url), capture_output=True, text=True,
                          timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    lines = said(done.stderr)
    warnings = [line for line in lines if not line.startswith("worker done: ")]
    assert len(warnings) == 1 and "heatmap artifacts cannot be written" in warnings[0], done.stderr
    assert lines[-1].startswith("worker done: 3 trial(s) here"), done.stderr
    with sqlite3.connect(tmp_path / "w.db") as db:
        states = [s for (s,) in db.execute("SELECT state FROM trials")]
        errors = db.execute("SELECT COUNT(*) FROM trial_user_attributes WHERE key = 'heatmap_error'").fetchone()[0]
    assert states == ["COMPLETE"] * 3 and errors == 3


# --- 6. a config path that is a directory ----------------------------------------------------------

def test_a_config_path_that_is_a_directory_says_so(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "studies").mkdir()
    line = one_error(capsys, "run", "studies", "--storage", "sqlite:///p.db")
    assert line == ("xaiopt: error: studies: is a directory (give the path of a study YAML file, "
                    "e.g. studies/quickstart.yaml)")
    assert listing(tmp_path) == {"studies"}


# --- 7. SIGINT and SIGTERM -------------------------------------------------------------------------

SLOW_METRIC = '''
import pathlib
import time

from xaiopt.metrics import register_metric


@register_metric("probe_slow", category="complexity", direction="maximize", needs_masks=False, passes="none")
def probe_slow(ctx, **_):
    """A metric that takes a while, so that a signal finds a trial running; it says when it sleeps."""
    pathlib.Path("sleeping").write_text("1")
    time.sleep(1.5)
    pathlib.Path("sleeping").unlink(missing_ok=True)
    return ctx.attributions.flatten(1).abs().sum(1).double()
'''


def _running(db: Path) -> bool:
    try:
        with sqlite3.connect(db, timeout=0.2) as con:
            return con.execute("SELECT COUNT(*) FROM trials WHERE state = 'RUNNING'").fetchone()[0] > 0
    except sqlite3.Error:
        return False


def _states(db: Path) -> list[str]:
    with sqlite3.connect(db) as con:
        return [s for (s,) in con.execute("SELECT state FROM trials ORDER BY number")]


def _slow_study(tmp_path: Path) -> Path:
    (tmp_path / "probe_slow_metric.py").write_text(SLOW_METRIC)
    return write_config(tmp_path, plugins=["probe_slow_metric"], metrics=["probe_slow"], n_trials=50)


@pytest.mark.parametrize(("command", "signum"), [
    ("worker", signal.SIGTERM),
    ("optimize", signal.SIGINT),
    ("run", signal.SIGTERM),
])
def test_a_signal_stops_a_command_in_one_line_and_requeues_the_trial(tmp_path, capsys, command, signum):
    db = tmp_path / "s.db"
    url = f"sqlite:///{db}"
    cfg = _slow_study(tmp_path)
    if command == "run":
        argv = cli("run", str(cfg), "--storage", url)
    else:
        assert main(["study", "create", str(cfg), "--storage", url]) == 0, capsys.readouterr().err
        argv = cli("worker", "--study", "probe", "--storage", url) if command == "worker" else \
            cli("study", "optimize", "probe", "--storage", url)
    err_file = tmp_path / "err.txt"
    with err_file.open("w") as err:
        # a suite started in the background by a non-interactive shell inherits SIGINT ignored, and so
        # would the command (as Python leaves an ignored SIGINT ignored): give it the default back
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=err, cwd=tmp_path,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        try:
            deadline = time.monotonic() + 240
            # the signal lands inside the metric's sleep, whatever the machine's load
            while not (_running(db) and (tmp_path / "sleeping").exists()):
                assert proc.poll() is None, err_file.read_text()
                assert time.monotonic() < deadline, err_file.read_text()
                time.sleep(0.05)
            before = said(err_file.read_text())
            proc.send_signal(signum)
            code = proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
    text = err_file.read_text()
    assert code == 128 + signum, text
    assert "Traceback" not in text, text
    after = said(text)[len(before):]
    assert len(after) == 1, text
    assert after[0].startswith(f"xaiopt: interrupted by {signal.Signals(signum).name} (trial "), text
    assert after[0].endswith(" interrupted; re-queued)"), text
    states = _states(db)
    assert "RUNNING" not in states and "WAITING" in states, states


SWALLOWED_STOP_METRIC = '''
import os
import pathlib
import signal
import time

from xaiopt.metrics import register_metric


class _Finalizer:
    def __del__(self):
        # the stop arrives while Python runs a finalizer: its KeyboardInterrupt is printed as
        # "Exception ignored" and swallowed, as when it lands in SQLAlchemy's InstanceState._cleanup
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.5)


@register_metric("probe_swallow", category="complexity", direction="maximize", needs_masks=False, passes="none")
def probe_swallow(ctx, **_):
    """On the first trial after a `stop-now` file appears, a SIGTERM that a finalizer swallows."""
    flag = pathlib.Path("stop-now")
    if flag.exists():
        flag.unlink()
        _Finalizer()  # dropped at once
        pathlib.Path("swallowed").write_text("1")
    return ctx.attributions.flatten(1).abs().sum(1).double()
'''


def test_a_stop_signal_swallowed_by_a_finalizer_still_stops_the_worker_after_its_trial(tmp_path, capsys):
    db = tmp_path / "f.db"
    url = f"sqlite:///{db}"
    (tmp_path / "probe_swallow_metric.py").write_text(SWALLOWED_STOP_METRIC)
    cfg = write_config(tmp_path, plugins=["probe_swallow_metric"], metrics=["probe_swallow"], n_trials=500)
    assert main(["study", "create", str(cfg), "--storage", url]) == 0, capsys.readouterr().err
    err_file = tmp_path / "err.txt"
    with err_file.open("w") as err:
        proc = subprocess.Popen(cli("worker", "--study", "probe", "--storage", url), stdout=subprocess.DEVNULL,
                                stderr=err, cwd=tmp_path)
        try:
            deadline = time.monotonic() + 240
            while "COMPLETE" not in _states(db)[1:]:  # the worker runs trials (the first is create's)
                assert proc.poll() is None and time.monotonic() < deadline, err_file.read_text()
                time.sleep(0.1)
            (tmp_path / "stop-now").write_text("1")
            code = proc.wait(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
    text = err_file.read_text()
    assert (tmp_path / "swallowed").exists()
    assert "Exception ignored" in text  # Python's own report of the swallowed interrupt
    assert code == 128 + signal.SIGTERM, text
    assert said(text)[-1] == "xaiopt: interrupted by SIGTERM", text
    states = _states(db)
    assert "RUNNING" not in states and "WAITING" not in states and states[-1] == "COMPLETE", states
