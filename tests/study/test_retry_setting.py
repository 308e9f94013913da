"""How long a command waits for an unreachable database: $XAIOPT_STORAGE_RETRY_SECONDS, a study's
runtime.storage_retry_seconds before it, the line that names which; no server needed (port 1 refuses)."""

from __future__ import annotations

import re
import time

import pytest
from sqlalchemy import exc as sa_exc

import xaiopt.study
from xaiopt.cli import main
from xaiopt.study.resilient import StorageUnavailable, outage_behind
from xaiopt.study.storage import open_storage

from .conftest import PASSWORD

NOWHERE = f"postgresql+psycopg://postgres:{PASSWORD}@127.0.0.1:1/nothing"
START = "xaiopt: the database is unreachable ("


def _lines(capsys) -> tuple[str, list[str]]:
    out, err = capsys.readouterr()
    assert PASSWORD not in out + err and "Traceback" not in err
    return out, [line for line in err.splitlines() if line.strip()]


@pytest.mark.parametrize("value", ["abc", "-1", "nan", "inf", "10s"])
def test_a_bad_value_is_one_line_naming_the_variable(monkeypatch, capsys, value):
    monkeypatch.setenv("XAIOPT_STORAGE_RETRY_SECONDS", value)
    assert main(["study", "list", "--storage", NOWHERE]) == 2
    _, lines = _lines(capsys)
    assert lines == [f"xaiopt: error: XAIOPT_STORAGE_RETRY_SECONDS: {value!r} is not a number of seconds "
                     "(valid: a number >= 0, e.g. 30)"]


def test_with_the_variable_opening_waits_that_long_then_exit_75(monkeypatch, capsys):
    pytest.importorskip("psycopg")
    monkeypatch.setenv("XAIOPT_STORAGE_RETRY_SECONDS", "1.5")
    started = time.monotonic()
    assert main(["study", "pareto", "x", "--storage", NOWHERE]) == 75
    took = time.monotonic() - started
    out, lines = _lines(capsys)
    assert out == "" and len(lines) == 2, lines
    assert lines[0].startswith(START) and "Connection refused" in lines[0]
    assert lines[0].endswith("retrying for up to 1.5 s (XAIOPT_STORAGE_RETRY_SECONDS)")
    assert re.match(r"xaiopt: error: storage: the database stayed unreachable for \d s "
                    r"\(XAIOPT_STORAGE_RETRY_SECONDS = 1\.5\): .*Connection refused", lines[1]), lines
    assert 1.5 <= took < 6, took


def test_without_it_an_unreachable_database_at_open_is_one_line_at_once_with_the_hint(monkeypatch, capsys):
    pytest.importorskip("psycopg")
    monkeypatch.delenv("XAIOPT_STORAGE_RETRY_SECONDS", raising=False)
    started = time.monotonic()
    assert main(["study", "list", "--storage", NOWHERE]) == 2
    assert time.monotonic() - started < 3
    _, lines = _lines(capsys)
    assert len(lines) == 1 and "cannot open postgresql+psycopg://postgres:***@127.0.0.1:1/nothing" in lines[0]
    assert lines[0].endswith("(to wait for a database that is restarting, set XAIOPT_STORAGE_RETRY_SECONDS=SECONDS)")


def test_a_studys_own_setting_comes_before_the_variable(monkeypatch):
    pytest.importorskip("psycopg")
    monkeypatch.setenv("XAIOPT_STORAGE_RETRY_SECONDS", "60")
    said: list[str] = []
    monkeypatch.setattr("xaiopt.study.resilient._say", said.append)
    started = time.monotonic()
    with pytest.raises(StorageUnavailable) as err:
        open_storage(NOWHERE, heartbeat_interval=1, retry_seconds=0.5)  # a worker's reopen with the config's value
    assert time.monotonic() - started < 5
    assert "(runtime.storage_retry_seconds = 0.5)" in str(err.value) and PASSWORD not in str(err.value)
    assert len(said) == 1 and said[0].endswith("retrying for up to 0.5 s (runtime.storage_retry_seconds)")


def _refused() -> sa_exc.OperationalError:
    return sa_exc.OperationalError("SELECT 1", {}, Exception("server closed the connection unexpectedly"))


def test_an_outage_behind_another_error_is_found_and_nothing_else_is():
    gone = StorageUnavailable("storage: the database stayed unreachable for 3 s")
    try:
        try:
            raise gone
        except StorageUnavailable:
            raise RuntimeError("Optuna's cleanup failed too")  # noqa: B904 (an implicit chain, as in a library)
    except RuntimeError as wrapped:
        assert outage_behind(wrapped) is gone
    plain = outage_behind(_refused())
    assert isinstance(plain, StorageUnavailable) and plain.exit_code == 75
    assert str(plain) == "storage: the database connection failed: server closed the connection unexpectedly"
    assert outage_behind(ValueError("a bug")) is None
    assert outage_behind(sa_exc.IntegrityError("INSERT", {}, Exception("duplicate key"))) is None


def test_the_cli_turns_an_outage_inside_a_library_error_into_one_line_and_keeps_bugs_loud(monkeypatch, capsys):
    def outage(**_):
        raise RuntimeError("wrapped") from _refused()

    monkeypatch.setattr(xaiopt.study, "list_studies", outage)
    assert main(["study", "list", "--storage", "sqlite:///x.db"]) == 75
    _, lines = _lines(capsys)
    assert lines == ["xaiopt: error: storage: the database connection failed: server closed the connection "
                     "unexpectedly"]

    def bug(**_):
        raise KeyError("a bug keeps its traceback")

    monkeypatch.setattr(xaiopt.study, "list_studies", bug)
    with pytest.raises(KeyError):
        main(["study", "list", "--storage", "sqlite:///x.db"])
