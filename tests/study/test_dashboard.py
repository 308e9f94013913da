"""`xaiopt dashboard` over HTTP: the study, its metric names, a heatmap artifact as PNG."""

from __future__ import annotations

import json
import socket
import time
import urllib.request

from xaiopt.cli import main

from .conftest import small_config, spawn


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
