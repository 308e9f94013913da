"""Every command in a database outage: the line that says it waits, one error line, exit 75, in the time
that XAIOPT_STORAGE_RETRY_SECONDS gives, no traceback, no password, nothing half-written; a command
whose outage ends in time simply succeeds; and an outage that starts while `study report` or `study
export` computes its output leaves no output and a previous one unchanged."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from sqlalchemy.engine import make_url

from xaiopt.cli import main

from .conftest import PASSWORD, _admin, small_config, xaiopt

pytestmark = pytest.mark.postgres

RETRY = 3
START = "xaiopt: the database is unreachable ("
GAVE_UP = re.compile(r"^xaiopt: error: storage: the database stayed unreachable for (\d+) s "
                     rf"\(XAIOPT_STORAGE_RETRY_SECONDS = {RETRY}\): .*not currently accepting connections")


def _block(db: str) -> None:
    admin = _admin()
    try:
        admin.execute(f'ALTER DATABASE "{db}" ALLOW_CONNECTIONS false')
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s "
                      "AND pid <> pg_backend_pid()", (db,))
    finally:
        admin.close()


def _unblock(db: str) -> None:
    admin = _admin()
    try:
        admin.execute(f'ALTER DATABASE "{db}" ALLOW_CONNECTIONS true')
    finally:
        admin.close()


# Fourteen interpreters importing torch at once on a small machine take minutes; one process imports
# what every command imports, then forks one child per command, which runs the CLI's main() with its
# own directory, stdout and stderr, exactly as `python -m xaiopt.cli ARGV` would (a traceback included).
LAUNCHER = r"""
import json, os, sys, time, traceback
import optuna_dashboard, xaiopt.config, xaiopt.report.dashboard, xaiopt.study
from xaiopt.cli import main
started = {}
for job in json.loads(sys.argv[1]):
    pid = os.fork()
    if pid == 0:
        os.chdir(job["cwd"])
        for fd, path in ((1, job["out"]), (2, job["err"])):
            f = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.dup2(f, fd)
            os.close(f)
        try:
            code = main(job["argv"])
        except BaseException:
            traceback.print_exc()
            code = 1
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    started[pid] = (job["label"], time.monotonic())
done = {}
while started:
    pid, status = os.wait()
    label, t0 = started.pop(pid)
    done[label] = [os.waitstatus_to_exitcode(status), time.monotonic() - t0]
print(json.dumps(done))
"""


def _env(retry: float) -> dict[str, str]:
    return {**os.environ, "PYTHONUNBUFFERED": "1", "XAIOPT_STORAGE_RETRY_SECONDS": str(retry),
            "PYTHONPATH": str(Path(__file__).resolve().parents[2])}


def _run_all(commands: dict[str, list[str]], tmp: Path, retry: float) -> dict[str, tuple[int, float, Path, Path, Path]]:
    """Each command's exit code, seconds, working directory, stdout and stderr file."""
    jobs = []
    for label, argv in commands.items():
        cwd = tmp / "cwd" / label
        cwd.mkdir(parents=True)
        jobs.append({"label": label, "argv": argv, "cwd": str(cwd), "out": str(tmp / f"{label}.out"),
                     "err": str(tmp / f"{label}.err")})
    done = subprocess.run([sys.executable, "-c", LAUNCHER, json.dumps(jobs)], env=_env(retry), capture_output=True,
                          text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    codes = json.loads(done.stdout)
    return {j["label"]: (codes[j["label"]][0], codes[j["label"]][1], Path(j["cwd"]), Path(j["out"]), Path(j["err"]))
            for j in jobs}


def _lines(path: Path) -> list[str]:
    return [line for line in path.read_text().splitlines() if line.strip()]


def test_every_command_in_an_outage_is_one_line_and_exit_75_and_writes_nothing(tmp_path, pg_url, capsys):
    cfg = small_config(tmp_path, name="cmd", runtime={"heartbeat_interval": 1, "heatmaps": 0,
                                                      "storage_retry_seconds": 120})
    assert main(["study", "create", str(cfg), "--storage", pg_url, "--n-trials", "3"]) == 0
    assert main(["study", "optimize", "cmd", "--storage", pg_url, "--no-progress"]) == 0
    capsys.readouterr()
    before = [(t.number, t.state) for t in optuna.load_study(study_name="cmd", storage=pg_url).get_trials()]
    assert [s for _, s in before] == [TrialState.COMPLETE] * 3
    second = small_config(tmp_path, name="cmd2")
    out = tmp_path / "out"
    out.mkdir()
    s = ["--storage", pg_url]
    commands = {
        "create": ["study", "create", str(second), *s],
        "run": ["run", str(second), *s, "--n-trials", "1", "--no-progress"],
        "optimize": ["study", "optimize", "cmd", "--n-trials", "1", *s, "--no-progress"],
        "worker": ["worker", "--study", "cmd", "--n-trials", "1", *s, "--no-progress"],
        "pareto": ["study", "pareto", "cmd", "--format", "json", *s],
        "recommend": ["study", "recommend", "cmd", *s],
        "validate": ["study", "validate", "cmd", *s],
        "compare": ["study", "compare", "cmd", *s],
        "report": ["study", "report", "cmd", "--out", str(out / "report"), *s],
        "plot": ["study", "plot", "cmd", "--out", str(out / "front.html"), *s],
        "export": ["study", "export", "cmd", "--out", str(out / "composite.py"), *s],
        "list": ["study", "list", *s],
        "delete": ["study", "delete", "cmd", *s],
        "dashboard": ["dashboard", *s, "--port", "1"],
    }
    db = make_url(pg_url).database
    _block(db)
    try:
        ran = _run_all(commands, tmp_path, RETRY)
    finally:
        _unblock(db)
    for label, (code, _, cwd, stdout, stderr) in ran.items():
        text = stdout.read_text() + stderr.read_text()
        assert code == 75, (label, text)  # EX_TEMPFAIL: try again later
        assert "Traceback" not in text and PASSWORD not in text, (label, text)
        lines = _lines(stderr)
        # the line that says it waits (and what bounds the wait), then the one error line
        assert len(lines) == 2, (label, lines)
        assert lines[0].startswith(START) and lines[0].endswith(
            f"retrying for up to {RETRY} s (XAIOPT_STORAGE_RETRY_SECONDS)"), (label, lines)
        gave_up = GAVE_UP.match(lines[1])
        assert gave_up and RETRY <= int(gave_up[1]) <= RETRY + 2, (label, lines)
        assert stdout.read_text() == "" and os.listdir(cwd) == [], label
    # nothing half-written: no report, figure or export, no second study, no trial, nothing deleted
    assert os.listdir(out) == []
    study = optuna.load_study(study_name="cmd", storage=pg_url)
    assert optuna.get_all_study_names(pg_url) == ["cmd"]
    assert [(t.number, t.state) for t in study.get_trials()] == before
    took = {label: round(r[1], 1) for label, r in ran.items()}
    # the guarantee: $XAIOPT_STORAGE_RETRY_SECONDS bounds the wait, not the study's 120 s; the rest is 14
    # interpreters starting at once (those that load torch took 25 s on a loaded 2-core machine)
    assert max(took.values()) < RETRY + 60, took
    print(f"outage commands: {len(ran)} commands, exit 75 each, seconds {took}")


def test_a_command_whose_outage_ends_in_time_succeeds_with_the_two_lines(tmp_path, pg_url, capsys):
    cfg = small_config(tmp_path, name="back", runtime={"heartbeat_interval": 1, "heatmaps": 0})
    assert main(["study", "create", str(cfg), "--storage", pg_url, "--n-trials", "3"]) == 0
    assert main(["study", "optimize", "back", "--storage", pg_url, "--no-progress"]) == 0
    capsys.readouterr()
    db = make_url(pg_url).database
    _block(db)
    try:
        out, err = tmp_path / "pareto.out", tmp_path / "pareto.err"
        # the real entry point, `python -m xaiopt.cli`, this time
        proc = subprocess.Popen(xaiopt("study", "pareto", "back", "--format", "json", "--storage", pg_url),
                                stdout=out.open("w"), stderr=err.open("w"), env=_env(20), cwd=tmp_path)
        deadline = time.monotonic() + 60
        while not err.read_text() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.1)
        assert err.read_text().startswith(START), err.read_text()
        time.sleep(2)
    finally:
        _unblock(db)
    assert proc.wait(timeout=60) == 0, err.read_text()
    lines = _lines(err)
    assert len(lines) == 2 and lines[0].startswith(START), lines
    assert lines[0].endswith("retrying for up to 20 s (XAIOPT_STORAGE_RETRY_SECONDS)"), lines
    waited = re.fullmatch(r"xaiopt: the database is reachable again after (\d+\.\d) s", lines[1])
    assert waited and 2.0 <= float(waited[1]) < 20, lines
    # the front it printed is the study's own, as Optuna computes it from the database
    study = optuna.load_study(study_name="back", storage=pg_url)
    doc = json.loads(out.read_text())
    assert sorted(r["number"] for r in doc["trials"]) == sorted(t.number for t in study.best_trials)
    assert PASSWORD not in out.read_text() + err.read_text()


def _outage_from(monkeypatch, module, name: str, db: str) -> None:
    """``module.name`` first blocks the database, then runs: an outage that starts after the command
    has read the study and while it is computing what it will write."""
    real = getattr(module, name)

    def blocked(*args, **kwargs):
        _block(db)
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, blocked)


def test_an_outage_mid_report_or_export_leaves_no_output_and_a_previous_one_unchanged(tmp_path, pg_url, capsys,
                                                                                        monkeypatch):
    import xaiopt.report.page
    import xaiopt.study.export

    cfg = small_config(tmp_path, name="mid", runtime={"heartbeat_interval": 1, "heatmaps": 0})
    assert main(["study", "create", str(cfg), "--storage", pg_url, "--n-trials", "3"]) == 0
    assert main(["study", "optimize", "mid", "--storage", pg_url, "--no-progress"]) == 0
    capsys.readouterr()
    monkeypatch.setenv("XAIOPT_STORAGE_RETRY_SECONDS", str(RETRY))
    db = make_url(pg_url).database
    out = tmp_path / "out"
    out.mkdir()
    previous_report = out / "previous"
    previous_report.mkdir()
    (previous_report / "index.html").write_text("<p>last week's report</p>")
    (out / "previous.py").write_text("# last week's composite\n")
    # report: the recommendation is computed after the study was loaded and --out checked;
    # export: the layer names are read after the trial was chosen, just before the file is written
    cases = [("report", out / "report", xaiopt.report.page, "recommend"),
             ("report", previous_report, xaiopt.report.page, "recommend"),
             ("export", out / "composite.py", xaiopt.study.export, "study_layers"),
             ("export", out / "previous.py", xaiopt.study.export, "study_layers")]
    for command, target, module, name in cases:
        with monkeypatch.context() as patch:
            _outage_from(patch, module, name, db)
            try:
                t0 = time.monotonic()
                code = main(["study", command, "mid", "--out", str(target), "--storage", pg_url,
                             *(["--images", "0"] if command == "report" else [])])
                took = time.monotonic() - t0
            finally:
                _unblock(db)
        stdout, stderr = capsys.readouterr()
        assert code == 75, (command, target, stderr)
        assert stdout == "" and "Traceback" not in stderr and PASSWORD not in stderr, (command, stderr)
        # the report's progress lines ("xaiopt: [  0.1s] ...") say what it was doing; the rest is the outage
        lines = [line for line in stderr.splitlines() if line.strip() and not line.startswith("xaiopt: [")]
        assert len(lines) == 2 and lines[0].startswith(START), (command, lines)
        assert lines[0].endswith(f"retrying for up to {RETRY} s (XAIOPT_STORAGE_RETRY_SECONDS)"), lines
        gave_up = GAVE_UP.match(lines[1])
        assert gave_up and RETRY <= int(gave_up[1]) <= RETRY + 2 and took < RETRY + 15, (lines, took)
    # nothing half-written: no new report directory or export, no temporary file beside them, and the
    # previous report and composite exactly as they were
    assert sorted(os.listdir(out)) == ["previous", "previous.py"]
    assert os.listdir(previous_report) == ["index.html"]
    assert (previous_report / "index.html").read_text() == "<p>last week's report</p>"
    assert (out / "previous.py").read_text() == "# last week's composite\n"
    # the same commands with the database up write both (the outage, not the patching, stopped them)
    assert main(["study", "export", "mid", "--out", str(out / "previous.py"), "--storage", pg_url]) == 0
    assert "def make_composite():" in (out / "previous.py").read_text()
