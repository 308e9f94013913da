"""`xaiopt dashboard` over HTTP: the study, its metric names, a heatmap artifact as PNG; a settings file
whose values are wrong is one line naming the key, exit 2."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import urllib.request

import pytest

from xaiopt.cli import main

from .conftest import small_config, spawn, xaiopt


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str) -> tuple[str, bytes]:
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.headers.get("Content-Type", ""), r.read()


def test_dashboard_serves_study_and_heatmap(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'dash.db'}"
    cfg = small_config(tmp_path, name="dash", n_trials=2)
    assert main(["study", "create", str(cfg), "--storage", url, "--baseline", "epsilon_plus:plain"]) == 0
    assert main(["worker", "--study", "dash", "--storage", url, "--no-progress"]) == 0
    capsys.readouterr()

    port = _free_port()
    log = tmp_path / "dashboard.log"
    proc = spawn("dashboard", "--storage", url, "--port", str(port), log=log)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                _, body = _get(f"{base}/api/studies")
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
                time.sleep(0.3)
        studies = json.loads(body)["study_summaries"]
        study = next(s for s in studies if s["study_name"] == "dash")
        _, body = _get(f"{base}/api/studies/{study['study_id']}")
        detail = json.loads(body)
        assert detail["objective_names"] == ["sparseness", "region_perturbation"]
        trial = detail["trials"][0]
        assert {"key": "baseline", "value": "epsilon_plus:plain"} in trial["user_attrs"]
        art = trial["artifacts"][0]
        kind, png = _get(f"{base}/artifacts/{study['study_id']}/{trial['trial_id']}/{art['artifact_id']}")
        assert kind == "image/png"
        assert png.startswith(b"\x89PNG\r\n\x1a\n")
        assert "127.0.0.1" in log.read_text()
    finally:
        proc.terminate()
        proc.wait(timeout=10)


# TOML that parses but says something the dashboard cannot use: (file bytes, the key the line names,
# what it shows as given, what it says is valid)
PORT_RANGE = "give an integer from 0 to 65535 (0 picks a free port)"
MALFORMED_TOML = {
    "section_not_a_table": (b"optuna_dashboard = 3\n", "optuna_dashboard", "= 3 (an integer)",
                            "give a [optuna_dashboard] table (keys: host, port, quiet, artifact_dir, storage)"),
    "port_string": (b'[optuna_dashboard]\nport = "abc"\n', "port", '= "abc" (a string)', PORT_RANGE),
    "port_negative": (b"[optuna_dashboard]\nport = -1\n", "port", "= -1 (an integer)", PORT_RANGE),
    "port_too_big": (b"[optuna_dashboard]\nport = 99999\n", "port", "= 99999 (an integer)", PORT_RANGE),
    "port_float": (b"[optuna_dashboard]\nport = 8080.0\n", "port", "= 8080.0 (a float)", PORT_RANGE),
    "port_boolean": (b"[optuna_dashboard]\nport = true\n", "port", "= true (a boolean)", PORT_RANGE),
    "port_date": (b"[optuna_dashboard]\nport = 2024-01-01\n", "port", "= 2024-01-01 (a date or time)", PORT_RANGE),
    "host_integer": (b"[optuna_dashboard]\nhost = 5\n", "host", "= 5 (an integer)",
                     "give a host name or address (a non-empty string)"),
    "host_boolean": (b"[optuna_dashboard]\nhost = false\n", "host", "= false (a boolean)",
                     "give a host name or address (a non-empty string)"),
    "host_empty": (b'[optuna_dashboard]\nhost = ""\n', "host", '= "" (a string)',
                   "give a host name or address (a non-empty string)"),
    "host_nul": (b'[optuna_dashboard]\nhost = "a\\u0000b"\n', "host", '= "a\\u0000b" (a string)',
                 "give a host name or address (a non-empty string)"),
    "quiet_string": (b'[optuna_dashboard]\nquiet = "yes"\n', "quiet", '= "yes" (a string)', "give true or false"),
    "quiet_integer": (b"[optuna_dashboard]\nquiet = 1\n", "quiet", "= 1 (an integer)", "give true or false"),
    "artifact_dir_boolean": (b"[optuna_dashboard]\nartifact_dir = true\n", "artifact_dir", "= true (a boolean)",
                             "give a directory path (a non-empty string)"),
    "artifact_dir_array": (b'[optuna_dashboard]\nartifact_dir = ["a", 2]\n', "artifact_dir",
                           '= ["a", 2] (an array)', "give a directory path (a non-empty string)"),
    "storage_integer": (b"[optuna_dashboard]\nstorage = 3\n", "storage", "= 3 (an integer)",
                        "give a database URL (a non-empty string)"),
    "storage_table": (b"[optuna_dashboard.storage]\nurl = \"sqlite://\"\n", "storage",
                      '= {url = "sqlite://"} (a table)', "give a database URL (a non-empty string)"),
    "unknown_key": (b"[optuna_dashboard]\nprot = 8080\n", "'prot'", "unknown key",
                    "(valid: host, port, quiet, artifact_dir, storage)"),
}


def _dashboard_error(tmp_path, capsys, *argv: str) -> str:
    db = tmp_path / "never.db"
    assert main(["dashboard", *argv, "--storage", f"sqlite:///{db}"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("xaiopt: error: "), err
    assert not db.exists()  # refused before any storage is opened
    return lines[0]


@pytest.mark.parametrize("case", sorted(MALFORMED_TOML))
def test_dashboard_config_with_a_wrong_value_is_one_line_naming_the_key(tmp_path, capsys, case):
    content, key, given, valid = MALFORMED_TOML[case]
    path = tmp_path / "dash.toml"
    path.write_bytes(content)
    line = _dashboard_error(tmp_path, capsys, "--config", str(path))
    assert line.startswith(f"xaiopt: error: --config: {path}: "), line
    assert f" {key} " in line and given in line and line.endswith(valid), line


def test_dashboard_config_that_is_no_text_file_is_one_line(tmp_path, capsys):
    binary = tmp_path / "binary.toml"
    binary.write_bytes(b"\xff\xfe\x00")
    assert _dashboard_error(tmp_path, capsys, "--config", str(binary)) == (
        f"xaiopt: error: --config: {binary}: not a UTF-8 text file (byte 0xff at offset 0; "
        "give an optuna-dashboard TOML file)")
    folder = tmp_path / "folder.toml"
    folder.mkdir()
    assert _dashboard_error(tmp_path, capsys, "--config", str(folder)) == (
        f"xaiopt: error: --config: {folder}: is a directory (give an optuna-dashboard TOML file)")
    assert _dashboard_error(tmp_path, capsys, "--config", "/dev/null") == (
        "xaiopt: error: --config: /dev/null: not a regular file (give an optuna-dashboard TOML file)")
    missing = tmp_path / "missing.toml"
    assert _dashboard_error(tmp_path, capsys, "--config", str(missing)) == (
        f"xaiopt: error: --config: {missing}: no such file (give an optuna-dashboard TOML file)")


def test_dashboard_port_option_out_of_range_is_one_line(tmp_path, capsys):
    for port in ("-1", "65536"):
        assert _dashboard_error(tmp_path, capsys, "--port", port) == f"xaiopt: error: --port: {port}: {PORT_RANGE}"


def test_dashboard_config_with_every_key_is_read_as_written(tmp_path):
    from xaiopt.report.dashboard import DEFAULT_CONFIG, load_settings

    path = tmp_path / "dash.toml"
    path.write_text('[optuna_dashboard]\nhost = "0.0.0.0"\nport = 0\nquiet = true\nartifact_dir = "arts"\n'
                    'storage = "sqlite:///d.db"\nallow_unsafe = 7\n')
    assert load_settings(path) == {"host": "0.0.0.0", "port": 0, "quiet": True, "artifact_dir": "arts",
                                   "storage": "sqlite:///d.db"}
    # no section at all: the defaults; the packaged file: localhost, 8080, no access log
    path.write_text("# nothing here\n")
    assert load_settings(path) == {"host": "127.0.0.1", "port": 8080, "quiet": False, "artifact_dir": None}
    assert load_settings(None) == {"host": "127.0.0.1", "port": 8080, "quiet": True, "artifact_dir": None}
    assert DEFAULT_CONFIG.is_file()


def test_dashboard_malformed_config_through_the_real_entry_point(tmp_path):
    path = tmp_path / "dash.toml"
    path.write_bytes(b"[optuna_dashboard]\nport = -1\n")
    db = tmp_path / "never.db"
    done = subprocess.run(xaiopt("dashboard", "--config", str(path), "--storage", f"sqlite:///{db}"),
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.splitlines() == [
        f"xaiopt: error: --config: {path}: [optuna_dashboard] port = -1 (an integer): {PORT_RANGE}"]
    assert os.listdir(tmp_path) == ["dash.toml"]
