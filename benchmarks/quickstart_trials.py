"""Trials per minute of the quickstart study, one worker, for each way of computing a trial, in one run.

    .venv/bin/python benchmarks/quickstart_trials.py                 # 3 variants x 2 rounds, 1 thread
    .venv/bin/python benchmarks/quickstart_trials.py --rounds 1 --trials 40

Variants (each a fresh ``xaiopt run`` of studies/quickstart.yaml in its own process and SQLite file,
``--threads 1``, run in turn, round after round, so that the machine's load falls on all alike):

* ``before``: what a trial cost before the LRP engine, the score memo and the channels-last layout:
  ``runtime.engine: zennit``, ``score_cache_mb: 0``, ``memory_format: contiguous``;
* ``zennit``: the zennit composite with the other defaults (the score memo, ``memory_format: auto``);
* ``xaiopt``: the defaults: xaiopt's LRP engine with its forward cache, the score memo, the layout.

Trials per minute count the study's trials (the baselines included) over the sum of their own
durations (start to complete as Optuna records them), so process start-up and the benchmark
model's loading are left out; the phase table gives the mean seconds per trial of each part. The
variants must agree on the values: the script prints the largest relative difference of any
trial's metric vector between a variant and ``before`` for the trials both took with the same
settings.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import optuna
import yaml

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = {
    "before": {"engine": "zennit", "lrp_cache_mb": 0, "score_cache_mb": 0, "memory_format": "contiguous"},
    "zennit": {"engine": "zennit"},
    "xaiopt": {},
}


def run_variant(name: str, overrides: dict, trials: int, workdir: Path, tag: str) -> optuna.Study:
    cfg = yaml.safe_load((ROOT / "studies" / "quickstart.yaml").read_text())
    cfg["name"] = f"quickstart_{tag}"
    cfg["n_trials"] = trials
    cfg.setdefault("runtime", {}).update(overrides)
    path = workdir / f"{tag}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    storage = f"sqlite:///{workdir / (tag + '.db')}"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, "-m", "xaiopt", "run", str(path), "--storage", storage, "--threads", "1",
                    "--no-progress"], check=True, env=env, cwd=workdir, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    return optuna.load_study(study_name=cfg["name"], storage=storage)


def summary(study: optuna.Study) -> tuple[float, dict[str, float], dict[str, tuple]]:
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    seconds = sum((t.datetime_complete - t.datetime_start).total_seconds() for t in done)
    phases: dict[str, list[float]] = {}
    for t in done:
        for k, v in (t.system_attrs.get("xaiopt:seconds") or {}).items():
            phases.setdefault(k, []).append(v)
    values = {t.user_attrs.get("explainer", str(t.params)): dict(zip(study.metric_names, t.values)) for t in done
              if "duplicate_of" not in t.user_attrs}
    return len(done) / seconds * 60.0, {k: statistics.mean(v) for k, v in phases.items()}, values


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    rates: dict[str, list[float]] = {v: [] for v in args.variants}
    phases: dict[str, dict[str, float]] = {}
    values: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for v in args.variants:
                study = run_variant(v, VARIANTS[v], args.trials, Path(tmp), f"{v.replace('+', '_')}_{r}")
                rate, ph, vals = summary(study)
                rates[v].append(rate)
                phases.setdefault(v, ph)
                values.setdefault(v, vals)
                print(f"round {r + 1}: {v:12s} {rate:6.1f} trials/min", flush=True)
    base = "before" if "before" in rates else args.variants[0]
    best = {v: max(r) for v, r in rates.items()}
    print(f"\nquickstart, {args.trials} trials, one worker, one thread; best of {args.rounds} rounds\n")
    print("| variant | trials/min | x " + base + " | values vs " + base + ": median rel. diff | largest (metric) |")
    print("|---|---|---|---|---|")
    for v in args.variants:
        common = set(values[v]) & set(values[base])
        diffs = sorted((abs(values[v][k][m] - b) / max(abs(b), 1e-12), m) for k in common
                       for m, b in values[base][k].items())
        median = diffs[len(diffs) // 2][0] if diffs else float("nan")
        worst = f"{diffs[-1][0]:.1e} ({diffs[-1][1]})" if diffs else "-"
        print(f"| {v} | {best[v]:.1f} | {best[v] / best[base]:.2f}x | {median:.1e} | {worst} |")
    print(f"\n(values of the {len(common)} settings every variant took; the layout changes float32 rounding, which "
          "an ill-conditioned setting (epsilon 1e-6 beside large gammas) amplifies)")
    names = sorted({k for ph in phases.values() for k in ph}, key=lambda k: (k != "attribution", k))
    print("\nmean seconds per trial, by part\n")
    print("| part | " + " | ".join(args.variants) + " |")
    print("|---|" + "---|" * len(args.variants))
    for k in names:
        print(f"| {k} | " + " | ".join(f"{phases[v].get(k, float('nan')):.3f}" for v in args.variants) + " |")


if __name__ == "__main__":
    main()
