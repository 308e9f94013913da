"""Storage faults end in one line, the right exit code, and nothing lost or half-written:

a damaged SQLite file (left exactly as it was), two `xaiopt run` racing on one new SQLite file (one
runs every trial once, the file survives), `study delete` under live workers (refused; a study
deleted anyway stops its workers in one line; "deleted" only when it is gone), and bad storage
inputs (study names no storage holds, URLs whose driver is not installed).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import random
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from xaiopt.cli import main
from xaiopt.study.storage import sqlite_worker_lock
from xaiopt.zoo import load_model

from .conftest import PASSWORD, small_config

ROOT = Path(__file__).resolve().parents[2]


def _error_line(err: str) -> str:
    """The one line of a failed command (progress lines `xaiopt: [...` aside)."""
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith("xaiopt: [")]
    assert len(lines) == 1, err
    assert lines[0].startswith("xaiopt: error: "), err
    return lines[0]


def _fails(capsys, *argv: str, code: int = 2) -> str:
    got = main(list(argv))
    out, err = capsys.readouterr()
    assert got == code, (out, err)
    assert PASSWORD not in out + err
    return _error_line(err)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- a damaged SQLite file ---------------------------------------------------------------------

def _optuna_file(path: Path) -> None:
    """A SQLite storage with a study and a few trials (Optuna's own, no model needed)."""
    study = optuna.create_study(study_name="svc", storage=f"sqlite:///{path}", directions=["maximize"])
    for i in range(5):
        study.enqueue_trial({"x": float(i)}, user_attrs={"note": "n" * 200})
    study.optimize(lambda t: t.suggest_float("x", 0, 10), n_trials=5)


def _overwrite_trial_pages(path: Path) -> None:
    """Garbage over every page of the trial tables, the schema and Optuna's version tables left whole
    (a disk fault under the data, not under the header)."""
    con = sqlite3.connect(path)
    size = con.execute("PRAGMA page_size").fetchone()[0]
    roots = [r for (r,) in con.execute("SELECT rootpage FROM sqlite_master WHERE name LIKE '%trial%' AND rootpage > 0")]
    con.close()
    data = bytearray(path.read_bytes())
    rng = random.Random(0)
    for page in roots:
        data[(page - 1) * size:page * size] = bytes(rng.getrandbits(8) for _ in range(size))
    path.write_bytes(bytes(data))


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2 + 100])


def _not_a_database(path: Path) -> None:
    path.write_bytes(b"these are the notes of a study, not a database\n" * 200)


@pytest.mark.parametrize("damage", [_overwrite_trial_pages, _truncate, _not_a_database],
                         ids=["data-pages", "truncated", "not-a-database"])
def test_a_damaged_sqlite_file_is_one_line_and_left_as_it_was(tmp_path, capsys, damage):
    (tmp_path / "data").mkdir()
    db = tmp_path / "data" / "x.db"
    _optuna_file(db)
    damage(db)
    before = _digest(db)
    url = f"sqlite:///{db}"
    cfg = small_config(tmp_path, name="other")
    commands = [
        ["study", "list"], ["study", "pareto", "svc"], ["study", "optimize", "svc", "--n-trials", "1"],
        ["worker", "--study", "svc"], ["study", "delete", "svc"], ["study", "create", str(cfg)],
    ]
    for argv in commands:
        line = _fails(capsys, *argv, "--storage", url)
        assert line.startswith(f"xaiopt: error: storage: {url} is damaged ("), (argv, line)
        assert line.endswith("restore it from a copy or start a new file"), (argv, line)
        # nothing further written to it: the same bytes, no journal, no lock file beside it
        assert _digest(db) == before, argv
        assert os.listdir(db.parent) == ["x.db"], (argv, os.listdir(db.parent))


# --- two `xaiopt run` on one new SQLite file --------------------------------------------------

def test_two_runs_on_one_new_sqlite_file_one_runs_every_trial_once_and_the_file_stays(tmp_path):
    cfg = small_config(tmp_path, name="race", n_trials=3, metrics=["sparseness"],
                       runtime={"heartbeat_interval": 1, "heatmaps": 0})
    db = tmp_path / "race.db"
    load_model("benchmark:vgg")  # trained once here, not twice at once in the racing processes
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    procs, errs = [], []
    for i in range(2):
        err = tmp_path / f"run{i}.err"
        procs.append(subprocess.Popen([sys.executable, "-m", "xaiopt.cli", "run", str(cfg), "--storage",
                                       f"sqlite:///{db}", "--no-progress"], stdout=subprocess.DEVNULL,
                                      stderr=err.open("w"), env=env, cwd=tmp_path))
        errs.append(err)
    codes = [p.wait(timeout=300) for p in procs]
    texts = [e.read_text() for e in errs]
    assert sorted(codes) == [0, 2], texts
    winner = procs[codes.index(0)]
    loser = texts[codes.index(2)]
    line = _error_line(loser)
    assert ("study 'race' already exists" in line or "is already used by a worker" in line
            or "is in use by" in line), line
    assert db.exists()
    assert optuna.get_all_study_names(f"sqlite:///{db}") == ["race"]
    trials = optuna.load_study(study_name="race", storage=f"sqlite:///{db}").get_trials()
    # the winner ran the budget, each trial once; the loser ran none
    assert [(t.number, t.state) for t in trials] == [(n, TrialState.COMPLETE) for n in range(3)]
    assert {t.user_attrs["worker"] for t in trials} == {f"{socket.gethostname()}:{winner.pid}"}


@pytest.mark.parametrize("existed", [False, True], ids=["new-file", "file-with-another-study"])
def test_a_create_stopped_midway_removes_only_what_it_made(tmp_path, capsys, monkeypatch, existed):
    db = tmp_path / "x.db"
    url = f"sqlite:///{db}"
    if existed:
        optuna.create_study(study_name="other", storage=url)
    cfg = small_config(tmp_path, name="half", runtime={"heartbeat_interval": 1, "heatmaps": 0})

    def interrupted(*_args, **_kwargs):  # Ctrl-C after the study's first writes
        raise KeyboardInterrupt

    monkeypatch.setattr("xaiopt.study.manage.default_artifact_dir", interrupted)
    assert main(["study", "create", str(cfg), "--storage", url]) == 130
    assert capsys.readouterr().err.strip().splitlines()[-1] == "xaiopt: interrupted"
    if existed:  # not this process's file: only its own study went
        assert optuna.get_all_study_names(url) == ["other"]
    else:  # this process made the file: nothing of it is left
        assert not db.exists() and not (tmp_path / "x.db.worker-lock").exists()


# --- `study delete` and live workers --------------------------------------------------------

def test_sqlite_delete_is_refused_while_a_worker_holds_the_file(tmp_path, capsys):
    db = tmp_path / "x.db"
    _optuna_file(db)
    url = f"sqlite:///{db}"
    with sqlite_worker_lock(url):  # a live worker holds the file
        line = _fails(capsys, "study", "delete", "svc", "--storage", url)
    assert "study 'svc' is not deleted" in line and f"a worker (pid {os.getpid()} on" in line, line
    assert optuna.get_all_study_names(url) == ["svc"]
    assert main(["study", "delete", "svc", "--storage", url]) == 0
    assert capsys.readouterr().out == "deleted study 'svc'\n"
    assert optuna.get_all_study_names(url) == []


def _spawn_worker(tmp_path: Path, pg_url: str, study: str) -> tuple[subprocess.Popen, Path]:
    err = tmp_path / f"worker-{study}.err"
    proc = subprocess.Popen([sys.executable, "-m", "xaiopt.cli", "worker", "--storage", pg_url, "--study", study,
                             "--until-done", "--threads", "1", "--no-progress"],
                            stdout=subprocess.DEVNULL, stderr=err.open("w"),
                            env={**os.environ, "PYTHONUNBUFFERED": "1"}, cwd=ROOT)
    return proc, err


def _wait_for_complete_trial(study: str, pg_url: str, proc: subprocess.Popen, err: Path) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert proc.poll() is None, err.read_text()
        trials = optuna.load_study(study_name=study, storage=pg_url).get_trials(deepcopy=False)
        if any(t.state == TrialState.COMPLETE for t in trials):
            return
        time.sleep(0.2)
    pytest.fail("no trial completed: " + err.read_text())


@pytest.mark.postgres
def test_delete_is_refused_while_a_postgres_worker_runs_the_study_then_deletes_for_real(tmp_path, pg_url, capsys):
    cfg = small_config(tmp_path, name="busy", metrics=["sparseness"], runtime={"heartbeat_interval": 1, "heatmaps": 0})
    assert main(["study", "create", str(cfg), "--storage", pg_url, "--n-trials", "500"]) == 0
    capsys.readouterr()
    proc, err = _spawn_worker(tmp_path, pg_url, "busy")
    try:
        _wait_for_complete_trial("busy", pg_url, proc, err)
        line = _fails(capsys, "study", "delete", "busy", "--storage", pg_url)
        assert "study 'busy' is not deleted: 1 live worker(s)" in line, line
        assert f"worker {socket.gethostname()}:{proc.pid}" in line, line
        # kept whole, and the worker still runs it
        assert optuna.get_all_study_names(pg_url) == ["busy"]
        assert proc.poll() is None, err.read_text()
    finally:
        proc.send_signal(signal.SIGTERM)  # the way to stop a worker: it puts its running trial back
        code = proc.wait(timeout=60)
    assert code in (130, 143), err.read_text()  # 128 + SIGINT or SIGTERM: interrupted, its trial re-queued
    assert main(["study", "delete", "busy", "--storage", pg_url]) == 0
    assert capsys.readouterr().out == "deleted study 'busy'\n"
    assert optuna.get_all_study_names(pg_url) == []


@pytest.mark.postgres
def test_a_worker_whose_study_is_deleted_by_a_tool_without_lock_stops_in_one_line(tmp_path, pg_url, capsys):
    cfg = small_config(tmp_path, name="gone", metrics=["sparseness"], runtime={"heartbeat_interval": 1, "heatmaps": 0})
    assert main(["study", "create", str(cfg), "--storage", pg_url, "--n-trials", "500"]) == 0
    capsys.readouterr()
    proc, err = _spawn_worker(tmp_path, pg_url, "gone")
    try:
        _wait_for_complete_trial("gone", pg_url, proc, err)
        # Optuna's own delete takes no worker lock (and ignores a trial written at the same moment)
        deadline = time.monotonic() + 60
        while "gone" in optuna.get_all_study_names(pg_url) and time.monotonic() < deadline:
            optuna.delete_study(study_name="gone", storage=pg_url)
        code = proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    text = err.read_text()
    assert code == 2, text
    assert "Traceback" not in text and PASSWORD not in text
    assert _error_line(text) == ("xaiopt: error: study 'gone' was deleted while this worker ran (its trials went "
                                 "with it); stopping")
    assert optuna.get_all_study_names(pg_url) == []


@pytest.mark.postgres
def test_delete_never_says_deleted_while_the_study_is_still_there(tmp_path, pg_url, capsys, monkeypatch):
    optuna.create_study(study_name="kept", storage=pg_url).optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    # what Optuna's delete does when a trial is written at the same moment: an integrity error,
    # rolled back and ignored, the study left in place
    monkeypatch.setattr(optuna.storages.RDBStorage, "delete_study", lambda self, study_id: None)
    line = _fails(capsys, "study", "delete", "kept", "--storage", pg_url)
    assert line.startswith("xaiopt: error: study 'kept' is not deleted: "), line
    assert optuna.get_all_study_names(pg_url) == ["kept"]
    assert len(optuna.load_study(study_name="kept", storage=pg_url).trials) == 2


# --- bad storage inputs -------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["", "   ", "n" * 513, "two\x00parts"], ids=["empty", "blank", "513", "nul"])
def test_a_study_name_no_storage_holds_is_one_line_and_writes_nothing(tmp_path, capsys, name):
    cfg = small_config(tmp_path, name="fine")
    db = tmp_path / "names.db"
    for argv in (["study", "create", str(cfg), "--name", name], ["run", str(cfg), "--name", name, "--no-progress"]):
        line = _fails(capsys, *argv, "--storage", f"sqlite:///{db}")
        assert "name" in line, line
        assert not db.exists() and not (tmp_path / "names.db.worker-lock").exists()


@pytest.mark.postgres
def test_a_study_name_longer_than_postgres_holds_is_one_line_and_512_fits(tmp_path, pg_url, capsys):
    cfg = small_config(tmp_path, name="fine", runtime={"heartbeat_interval": 1, "heatmaps": 0})
    line = _fails(capsys, "study", "create", str(cfg), "--name", "n" * 513, "--storage", pg_url)
    assert "513 characters long" in line and "at most 512" in line, line
    assert optuna.get_all_study_names(pg_url) == []
    assert main(["study", "create", str(cfg), "--name", "m" * 512, "--storage", pg_url]) == 0
    assert optuna.get_all_study_names(pg_url) == ["m" * 512]


@pytest.mark.parametrize("url, package", [("mysql://u@db.example/x", "mysqlclient"),
                                          ("mysql+pymysql://u:pw@db.example/x", "PyMySQL")])
def test_a_storage_url_whose_driver_is_missing_names_the_package(capsys, url, package):
    module = {"mysqlclient": "MySQLdb", "PyMySQL": "pymysql"}[package]
    if importlib.util.find_spec(module) is not None:
        pytest.skip(f"{module} is installed here")
    for argv in (["study", "list"], ["worker", "--study", "x"], ["study", "delete", "x"]):
        line = _fails(capsys, *argv, "--storage", url)
        assert f"pip install {package}" in line and "postgresql+psycopg://" in line and "sqlite:///" in line, line
        assert "pw" not in line.split("@")[0], line
