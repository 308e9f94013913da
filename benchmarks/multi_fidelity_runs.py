"""Multi-fidelity in real studies: the quickstart with `fidelity: {}` (racing on the decision) and without.

For each seed, the same study (studies/quickstart.yaml: its six metrics, or with --two-metrics only
region_perturbation and relevance_rank_accuracy; its baselines, --n-trials trials, CPU, one torch
thread) runs with `xaiopt run` twice: without a fidelity section and with the defaults. It prints
the sum of the trials' durations (start to finish, as stored), the complete / pruned counts and
the recommendation of each (`study recommend`). The replay in benchmarks/racing.py measures the
regret side; this one measures the time in the real worker, overheads included. Not a test.

    .venv/bin/python benchmarks/multi_fidelity_runs.py --seeds 3 --n-trials 60     # about 10 minutes
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import optuna
import yaml

ROOT = Path(__file__).resolve().parents[1]
METRICS = [{"name": "region_perturbation", "params": {"patch_size": 8, "regions": 16}}, "relevance_rank_accuracy"]


def run(workdir: Path, seed: int, n_trials: int, fidelity: bool, two: bool) -> tuple[float, int, int, str]:
    d = yaml.safe_load((ROOT / "studies" / "quickstart.yaml").read_text())
    name = f"{'on' if fidelity else 'off'}{seed}"
    d.update(name=name, seed=seed, n_trials=n_trials, device="cpu")
    d["runtime"] = {**d.get("runtime", {}), "references": False, "heatmaps": 0}
    if two:
        d["metrics"] = METRICS
    if fidelity:
        d["fidelity"] = {}
    config, storage = workdir / f"{name}.yaml", f"sqlite:///{workdir / f'{name}.db'}"
    config.write_text(yaml.safe_dump(d))
    subprocess.run([sys.executable, "-m", "xaiopt", "run", str(config), "--storage", storage, "--no-progress"],
                   check=True, capture_output=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, cwd=workdir)
    trials = optuna.load_study(study_name=name, storage=storage).trials
    seconds = sum((t.datetime_complete - t.datetime_start).total_seconds() for t in trials)
    states = [t.state for t in trials]
    rec = subprocess.run([sys.executable, "-m", "xaiopt", "study", "recommend", name, "--storage", storage,
                          "--format", "json"], check=True, capture_output=True, text=True, cwd=workdir)
    best = json.loads(rec.stdout)["top"][0]
    return (seconds, states.count(optuna.trial.TrialState.COMPLETE), states.count(optuna.trial.TrialState.PRUNED),
            f"trial {best['number']} ({best['label']})")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--n-trials", type=int, default=40)
    parser.add_argument("--two-metrics", action="store_true")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    print("| seed | off: trial seconds (recommended) | fidelity {}: trial seconds (complete, pruned; recommended) "
          "| ratio |")
    print("|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(args.seeds):
            off, _, _, rec_off = run(Path(tmp), seed, args.n_trials, fidelity=False, two=args.two_metrics)
            on, complete, pruned, rec_on = run(Path(tmp), seed, args.n_trials, fidelity=True, two=args.two_metrics)
            print(f"| {seed} | {off:.2f} ({rec_off}) | {on:.2f} ({complete}, {pruned}; {rec_on}) | {on / off:.2f} |",
                  flush=True)


if __name__ == "__main__":
    main()
