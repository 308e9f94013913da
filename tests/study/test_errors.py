"""User mistakes around storages and studies: one line on stderr, exit 2, the password masked."""

from __future__ import annotations

import json

import optuna
import pytest

from xaiopt.cli import main

from .conftest import PASSWORD, small_config


def _fails(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert code == 2, (out, err)
    assert PASSWORD not in out + err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("xaiopt: error: ")
    return lines[0]


def test_unreachable_database(capsys):
    pytest.importorskip("psycopg")
    line = _fails(capsys, "worker", "--study", "x", "--storage",
                  f"postgresql+psycopg://postgres:{PASSWORD}@127.0.0.1:1/nothing")
    assert "cannot open postgresql+psycopg://postgres:***@127.0.0.1:1/nothing" in line


@pytest.mark.postgres
def test_wrong_credentials(pg_url, capsys):
    # the test server trusts local connections, so a role that does not exist stands in for a bad login
    bad = pg_url.replace("postgres:", "nosuchrole:", 1)
    line = _fails(capsys, "study", "list", "--storage", bad)
    assert "nosuchrole:***@" in line and "nosuchrole" in line.split("***", 1)[1]


@pytest.mark.postgres
def test_unknown_study(pg_url, capsys):
    line = _fails(capsys, "worker", "--study", "nope", "--storage", pg_url)
    assert "study 'nope' does not exist" in line


@pytest.mark.postgres
def test_study_created_by_another_tool(pg_url, capsys):
    optuna.create_study(study_name="foreign", storage=pg_url)
    line = _fails(capsys, "worker", "--study", "foreign", "--storage", pg_url)
    assert "'foreign' was not created by xaiopt" in line


def test_bad_storage_url(capsys):
    line = _fails(capsys, "study", "list", "--storage", "not a url")
    assert "is not a database URL" in line


def test_baseline_outside_the_space(tmp_path, capsys):
    cfg = small_config(tmp_path, name="outside")
    line = _fails(capsys, "study", "create", str(cfg), "--storage", f"sqlite:///{tmp_path / 'o.db'}",
                  "--baseline", "alpha2beta1")
    assert "baseline alpha2beta1:canonized: needs conv1.rule='alpha2beta1'" in line
    assert not (tmp_path / "o.db").exists()


def test_unknown_baseline(tmp_path, capsys):
    cfg = small_config(tmp_path, name="unknown")
    line = _fails(capsys, "study", "create", str(cfg), "--storage", f"sqlite:///{tmp_path / 'u.db'}",
                  "--baseline", "lrp_magic")
    assert "unknown baseline 'lrp_magic'" in line and "epsilon_gamma_box" in line


@pytest.mark.postgres
def test_a_password_in_the_config_is_not_stored_in_the_study(tmp_path, pg_url, capsys):
    cfg = small_config(tmp_path, name="secret", storage=pg_url, runtime={"heatmaps": 0})
    assert main(["study", "create", str(cfg)]) == 0
    out, err = capsys.readouterr()
    assert PASSWORD not in out + err
    study = optuna.load_study(study_name="secret", storage=pg_url)
    assert PASSWORD not in json.dumps(study.user_attrs) and "***" in study.user_attrs["xaiopt:config"]["storage"]
    # the stored config still says which database, without the secret, and the study still loads
    assert main(["study", "recommend", "secret", "--storage", pg_url]) == 2  # no trials yet: one line
    assert PASSWORD not in capsys.readouterr().err
