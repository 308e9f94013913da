"""Multi-fidelity in real studies: the quickstart on two metrics, with `fidelity: {}` and without.

For each seed, the same study (studies/quickstart.yaml with metrics region_perturbation and
relevance_rank_accuracy, its baselines, --n-trials trials, CPU, one torch thread) runs with
`xaiopt run` twice: without a fidelity section and with the defaults. It prints the sum of the
trials' durations (start to finish, as stored) and the complete / pruned counts. The replay in
benchmarks/search_efficiency.py --multi-fidelity measures the hypervolume side; this one measures
the time in the real worker, overheads included. Not a test.

    .venv/bin/python benchmarks/multi_fidelity_runs.py --seeds 4 --n-trials 40     # about 2 minutes
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import optuna
import yaml

ROOT = Path(__file__).resolve().parents[1]
METRICS = [{"name": "region_perturbation", "params": {"patch_size": 8, "regions": 16}}, "relevance_rank_accuracy"]


def run(workdir: Path, seed: int, n_trials: int, fidelity: bool) -> tuple[float, int, int]:
    d = yaml.safe_load((ROOT / "studies" / "quickstart.yaml").read_text())
    name = f"{'on' if fidelity else 'off'}{seed}"
    d.update(name=name, seed=seed, n_trials=n_trials, device="cpu", metrics=METRICS)
    if fidelity:
        d["fidelity"] = {}
    config, storage = workdir / f"{name}.yaml", f"sqlite:///{workdir / f'{name}.db'}"
    config.write_text(yaml.safe_dump(d))
    subprocess.run([sys.executable, "-m", "xaiopt", "run", str(config), "--storage", storage, "--no-progress"],
                   check=True, capture_output=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, cwd=workdir)
    trials = optuna.load_study(study_name=name, storage=storage).trials
    seconds = sum((t.datetime_complete - t.datetime_start).total_seconds() for t in trials)
    states = [t.state for t in trials]
    return seconds, states.count(optuna.trial.TrialState.COMPLETE), states.count(optuna.trial.TrialState.PRUNED)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--n-trials", type=int, default=40)
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    print("| seed | off: trial seconds | fidelity {}: trial seconds (complete, pruned) | ratio |")
    print("|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(args.seeds):
            off, _, _ = run(Path(tmp), seed, args.n_trials, fidelity=False)
            on, complete, pruned = run(Path(tmp), seed, args.n_trials, fidelity=True)
            print(f"| {seed} | {off:.2f} | {on:.2f} ({complete}, {pruned}) | {on / off:.2f} |", flush=True)


if __name__ == "__main__":
    main()
