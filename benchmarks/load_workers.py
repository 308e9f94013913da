"""Trials per second of one study on PostgreSQL with 1 and with N workers, side by side in one run.

    .venv/bin/python benchmarks/load_workers.py                 # 1 vs 6 workers, 150 trials each
    .venv/bin/python benchmarks/load_workers.py --workers 1 3 6 --trials 90

Each run gets a fresh database (created and dropped here, on the server at 127.0.0.1:5432 with
trust authentication), the cheapest real trial (2 images, sparseness, no heatmaps; the same
study as tests/study/test_load.py) and workers with one torch thread each. Reported: wall
seconds from the first worker's start to the last one's exit, trials per second, the ratio to
one worker, and what the study holds afterwards (complete, lost, failed, over-budget races).
On a machine with fewer cores than workers the ratio measures the storage and the scheduling,
not the model.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path

import optuna
import psycopg
import yaml
from optuna.trial import TrialState

from xaiopt.study.worker import OVER_BUDGET_ATTR

ROOT = Path(__file__).resolve().parents[1]
CFG = {
    "name": "load", "seed": 0, "device": "cpu", "model": {"name": "benchmark:vgg"},
    "data": {"name": "benchmark", "n_samples": 2}, "metrics": ["sparseness"], "sampler": {"name": "random"},
    "space": {"canonize": [True, False], "first_layer": ["same"], "layer_groups": 1, "rules": ["epsilon"],
              "epsilon": {"low": 1e-6, "high": 1.0, "log": True}},
    "runtime": {"heartbeat_interval": 2, "heatmaps": 0},
}


def xaiopt(*argv: str, **kw) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "xaiopt.cli", *argv], cwd=ROOT, env=env, **kw)


def one_run(workers: int, trials: int, tmp: Path) -> dict:
    admin = psycopg.connect(host="127.0.0.1", user="postgres", dbname="test", autocommit=True)
    db = f"xaiopt_load_{uuid.uuid4().hex[:8]}"
    admin.execute(f'CREATE DATABASE "{db}"')
    url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{db}"
    try:
        cfg = tmp / f"load{workers}.yaml"
        cfg.write_text(yaml.safe_dump(CFG))
        assert xaiopt("study", "create", str(cfg), "--storage", url, "--n-trials", str(trials),
                      stdout=subprocess.DEVNULL).wait() == 0
        t0 = time.perf_counter()
        procs = [xaiopt("worker", "--storage", url, "--study", "load", "--until-done", "--threads", "1",
                        "--no-progress", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for _ in range(workers)]
        codes = [p.wait() for p in procs]
        seconds = time.perf_counter() - t0
        all_trials = optuna.load_study(study_name="load", storage=url).get_trials(deepcopy=False)
        raced = [t for t in all_trials if t.user_attrs.get(OVER_BUDGET_ATTR)]
        kept = [t for t in all_trials if t not in raced]
        states = Counter(t.state for t in kept)
        return {"workers": workers, "seconds": seconds, "trials_per_s": trials / seconds, "exit": codes,
                "complete": states.get(TrialState.COMPLETE, 0), "failed": states.get(TrialState.FAIL, 0),
                "lost": trials - states.get(TrialState.COMPLETE, 0), "races": len(raced)}
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        admin.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 6])
    parser.add_argument("--trials", type=int, default=150)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rows = [one_run(w, args.trials, Path(tmp)) for w in args.workers]
    base = rows[0]["trials_per_s"]
    print(f"| workers | seconds | trials/s | vs {rows[0]['workers']} worker(s) | complete | lost | failed | "
          f"over-budget races |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['workers']} | {r['seconds']:.1f} | {r['trials_per_s']:.2f} | {r['trials_per_s'] / base:.2f}x | "
              f"{r['complete']} | {r['lost']} | {r['failed']} | {r['races']} |")


if __name__ == "__main__":
    main()
