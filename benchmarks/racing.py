"""Racing on the decision: how much evaluation time staged pruning saves, and what it costs in decision regret.

The grid is the search benchmark's ``rules`` grid (benchmarks/search_efficiency.py: the rule per layer
group, first layer and canonize, 1024 settings of the quickstart). Every grid point is first
evaluated ONCE through the stages a racing trial runs, in one process and in a trial's order
(``Objective.evaluate_per_sample(spec, start=a, first=b, draws=1)`` for each stage slice, then the
full evaluation a surviving trial pays), and cached in benchmarks/data/search_grid_rules_stages.json.gz:
per slice ``a:b`` the per-sample scores and the measured seconds of the attribution and of each
metric, and the full evaluation's values, per-sample scores and seconds. A study of fewer metrics
is priced by its own metrics' seconds.

Then a sampler runs on the replayed grid, once without a fidelity section and once per racing variant
(stages, z), with the trial's own rule (:func:`xaiopt.objective.fidelity.race`): each new setting's
stage scores are compared with the incumbent's per-sample scores, and a setting that loses is
pruned, paying only for the stages it ran. Per study (six, three and two metrics), sampler, budget
and variant, over seeds: the evaluation seconds (and their share of the run without racing), the
decision regret of the recommendation (benchmarks/search_efficiency.py's :func:`decision_regret`
on the full grid), and the settings pruned at each stage.

Not a test.

    .venv/bin/python benchmarks/racing.py --evaluate-only                       # the stage cache (about 20 min)
    .venv/bin/python benchmarks/racing.py --seeds 5 --shares 0.1 0.2 --out docs/search_racing.json
"""
from __future__ import annotations

import argparse
import gzip
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
import numpy as np  # noqa: E402
import optuna  # noqa: E402
import search_efficiency as se  # noqa: E402
import torch  # noqa: E402

from xaiopt.analysis.replay import GridCache  # noqa: E402

STAGES_PATH = se.DATA / "search_grid_rules_stages.json.gz"
# the sample slices each grid point is evaluated on (draws 1), enough for the variants below
SLICES = [(0, 4), (4, 16), (0, 8), (8, 16), (0, 16)]
DRAWS = 1


def _exact(scores, metrics) -> list[list[float]]:
    return [[float(f"{x:.9g}") for x in scores[m].tolist()] for m in metrics]


def load_or_evaluate_stages(cache: GridCache, cfg, *, path: Path = STAGES_PATH, log=print) -> dict:
    """Every grid point through the stage slices and the full evaluation, in one process and in a
    trial's order; resumes a partial file, refuses (re-evaluates) one made for another grid."""
    from xaiopt.objective.trial import Objective, means

    slices = [f"{a}:{b}" for a, b in SLICES]
    d: dict = {}
    if path.exists():
        d = json.loads(gzip.decompress(path.read_bytes()))
        if (d.get("key"), d.get("slices"), d.get("draws")) != (cache.key, slices, DRAWS):
            log(f"{path.name} belongs to another grid or slices: evaluating again")
            d = {}
        elif len(d["full_values"]) == len(cache.specs):
            return d
    if not d:
        d = {"key": cache.key, "slices": slices, "draws": DRAWS, "metrics": cache.metrics,
             "stages": {s: {"per_sample": [], "seconds": []} for s in slices},
             "full_values": [], "full_per_sample": [], "full_seconds": [], "max_abs_diff": 0.0}
    obj = Objective(cfg, device=torch.device("cpu"))
    t0 = time.perf_counter()
    for n in range(len(d["full_values"]), len(cache.specs)):
        spec = cache.specs[n]
        for (a, b), s in zip(SLICES, slices):
            scores, seconds, _ = obj.evaluate_per_sample(spec, start=a, first=b, draws=DRAWS)
            d["stages"][s]["per_sample"].append(_exact(scores, cache.metrics))
            d["stages"][s]["seconds"].append({k: round(v, 5) for k, v in seconds.items()})
        scores, seconds, _ = obj.evaluate_per_sample(spec)
        vec = means(scores)
        d["full_values"].append([vec[m] for m in cache.metrics])
        d["full_per_sample"].append(_exact(scores, cache.metrics))
        d["full_seconds"].append({k: round(v, 5) for k, v in seconds.items()})
        d["max_abs_diff"] = max(d["max_abs_diff"], *(abs(vec[m] - v) for m, v in zip(cache.metrics, cache.values[n])))
        if (n + 1) % 32 == 0 or n + 1 == len(cache.specs):
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(gzip.compress(json.dumps(d, separators=(",", ":")).encode(), mtime=0))
            tmp.replace(path)
            log(f"stages: {n + 1}/{len(cache.specs)} points, {time.perf_counter() - t0:.0f} s", flush=True)
    return d


# racing variants: name -> (stages as samples scored after each stage, rule)
VARIANTS = {
    "decision [4, 16]": ([4, 16], "decision"),
    "decision [4]": ([4], "decision"),
    "decision [8]": ([8], "decision"),
    "decision [8, 16]": ([8, 16], "decision"),
    "decision [16]": ([16], "decision"),
    "dominance [4]": ([4], "dominance"),
}


def _slices(stages: list[int]) -> list[str]:
    """The cached slices a stage plan evaluates, one per stage."""
    out, start = [], 0
    for stop in stages:
        out.append(f"{start}:{stop}")
        start = stop
    return out


def racing_run(cache: GridCache, stages: dict, sampler: str, seed: int, metrics, budget: int, *,
               plan: list[int] | None, rule: str = "decision", z: float = 1.0, weighting: str = "equal",
               warmup: int = 2, range_from_pruned: bool = True) -> dict:
    """A replay of a study with ``fidelity: {stages: plan, rule, z}`` (``plan`` None: without the section).

    The replayed grid is the full evaluation of ``stages`` (today's xaiopt). Each new setting runs the
    stages of ``plan`` against the study so far by the trial's own rules
    (:func:`xaiopt.objective.fidelity.incumbent` and :func:`~xaiopt.objective.fidelity.racing_loss`,
    or :func:`~xaiopt.objective.fidelity.dominating`), paying the measured seconds of each stage it
    ran; a survivor pays the full evaluation too. Racing starts once ``warmup`` distinct settings are
    complete (the trial's: two, the fewest a range needs). A pruned setting proposed again is pruned
    again at no cost, as in the trial. The decision regret is :func:`search_efficiency.decision_regret`
    of the complete settings, for the weighting the study races on."""
    import dataclasses

    from xaiopt.analysis.replay import GridReplay
    from xaiopt.config import SamplerConfig
    from xaiopt.objective.fidelity import first_loss, incumbent
    from xaiopt.study.samplers import make_sampler

    now = dataclasses.replace(cache, values=stages["full_values"], per_sample=stages["full_per_sample"])
    replay = GridReplay(now, metrics=metrics)
    names, cols = replay.metrics, replay.columns
    kw = se.regret_inputs(now, metrics, weightings=[weighting])[weighting]
    directions = dict(zip(names, replay.directions))

    def priced(seconds: dict) -> float:  # the attribution and this study's metrics
        return seconds["attribution"] + sum(seconds[f"metric:{m}"] for m in names)

    full = [{m: np.asarray(now.per_sample[i][c], dtype=np.float64) for m, c in zip(names, cols)}
            for i in range(len(now.specs))]
    slices = _slices(plan or [])
    done: list[int] = []
    pruned: dict[int, int] = {}
    pruned_means: dict[int, list[float]] = {}
    cost = {"seconds": 0.0, "full_seconds": 0.0}
    per_stage = [0] * len(slices)

    def objective(trial):
        i = replay.point_of(replay.space.suggest(trial))
        if i in pruned:
            raise optuna.TrialPruned()
        if i not in done:
            if plan and len(done) >= warmup:
                inc = None
                if rule == "decision":
                    inc = incumbent([(j, replay.values[j], full[j]) for j in done], metrics=names,
                                    directions=replay.directions, categories=kw["categories"], weights=kw["weights"],
                                    explored=list(pruned_means.values()) if range_from_pruned else ())

                def parts():  # each stage's cached scores, paid for when the rule asks for them
                    for part in slices:
                        cost["seconds"] += priced(stages["stages"][part]["seconds"][i])
                        scores = stages["stages"][part]["per_sample"][i]
                        yield {m: scores[c] for m, c in zip(names, cols)}

                found, so_far = first_loss(parts(), metrics=names, z=z, inc=inc,
                                           completed=[(j, full[j]) for j in done], directions=directions)
                if found is not None:
                    pruned_means[i] = [float(so_far[m].mean()) for m in names]
                    pruned[i] = found.stage - 1
                    per_stage[found.stage - 1] += 1
                    raise optuna.TrialPruned()
            seconds = priced(stages["full_seconds"][i])
            cost["seconds"] += seconds
            cost["full_seconds"] += seconds
            done.append(i)
        return tuple(float(v) for v in replay.values[i])

    study = optuna.create_study(directions=replay.directions,
                                sampler=make_sampler(SamplerConfig(name=sampler), replay.space, seed=seed))
    study.optimize(objective, n_trials=budget)
    rows = np.array(list(pruned_means.values())) if pruned_means and range_from_pruned else None
    r = se.decision_regret(replay.values, done, range_rows=rows, **kw)
    return {"seconds": cost["seconds"], "complete": len(done), "pruned": sum(per_stage), "per_stage": per_stage,
            "regret": r["regret"], "indistinguishable": r["indistinguishable"], "chosen": r["chosen"],
            "best": r["best"], "pruned_points": sorted(pruned), "complete_points": list(done)}


def racing_table(d: dict) -> str:
    """Markdown: per study, weighting and budget, over seeds, the median evaluation seconds without racing and
    each variant's median share of them, its median decision regret (without: the same) and how often
    its recommendation is indistinguishable from the grid's best, and the settings pruned per stage."""
    lines = ["| study, weighting, trials | variant | seconds (share of off) | regret | indistinguishable | "
             "complete | pruned per stage |", "|---|---|---|---|---|---|---|"]
    for key, runs in d["runs"].items():
        off = runs["off"]
        base = np.array([r["seconds"] for r in off])
        lines.append(f"| {key} | off | {np.median(base):.0f} s | {np.median([r['regret'] for r in off]):.4f} | "
                     f"{sum(bool(r['indistinguishable']) for r in off)}/{len(off)} | "
                     f"{np.median([r['complete'] for r in off]):g} | |")
        for name, on in runs.items():
            if name == "off":
                continue
            share = np.array([r["seconds"] for r in on]) / base
            stages = np.median(np.array([r["per_stage"] for r in on]), axis=0)
            lines.append(f"| | {name} | {100 * np.median(share):.0f} % [{100 * share.min():.0f}-"
                         f"{100 * share.max():.0f}] | {np.median([r['regret'] for r in on]):.4f} | "
                         f"{sum(bool(r['indistinguishable']) for r in on)}/{len(on)} | "
                         f"{np.median([r['complete'] for r in on]):g} | {' / '.join(f'{x:g}' for x in stages)} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--evaluate-only", action="store_true")
    parser.add_argument("--variants", nargs="*", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--studies", nargs="*", default=list(se.STUDIES), choices=list(se.STUDIES))
    parser.add_argument("--weightings", nargs="*", default=["equal"], choices=list(se.WEIGHTINGS))
    parser.add_argument("--sampler", default="tpe")
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--first-seed", type=int, default=10,
                        help="seeds first-seed .. first-seed + seeds - 1 (0-9 chose the defaults; report others)")
    parser.add_argument("--shares", type=float, nargs="*", default=[0.1, 0.2], help="trial budgets, shares of the grid")
    parser.add_argument("--z", type=float, default=1.0)
    parser.add_argument("--warmup", type=int, default=2, help="distinct complete settings before racing starts")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "search_racing.json")
    parser.add_argument("--render-only", action="store_true", help="the table from an existing --out")
    args = parser.parse_args()
    if args.render_only:
        print(racing_table(json.loads(args.out.read_text())))
        return
    torch.set_num_threads(1)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    make_cfg, cache_path, per_sample_path = se.GRIDS["rules"]
    cfg = make_cfg()
    cache = se.load_or_evaluate(cfg, cache_path=cache_path, per_sample_path=per_sample_path)
    stages = load_or_evaluate_stages(cache, cfg)
    print(f"stage cache: {len(stages['full_values'])} points; full vectors within {stages['max_abs_diff']:.3g} "
          f"of the cached grid's")
    if args.evaluate_only:
        return
    import warnings
    warnings.simplefilter("ignore")
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    out: dict = {"command": " ".join(sys.argv[1:]), "seeds": list(seeds), "sampler": args.sampler, "z": args.z,
                 "warmup": args.warmup, "runs": {}}
    for study in args.studies:
        for weighting in args.weightings:
            for share in args.shares:
                budget = round(share * len(cache.specs))
                key = f"{study}, {weighting}, {budget}"
                runs = {"off": [racing_run(cache, stages, args.sampler, seed, se.STUDIES[study], budget, plan=None,
                                           weighting=weighting) for seed in seeds]}
                for name in args.variants:
                    plan, rule = VARIANTS[name]
                    runs[name] = [racing_run(cache, stages, args.sampler, seed, se.STUDIES[study], budget, plan=plan,
                                             rule=rule, z=args.z, weighting=weighting, warmup=args.warmup)
                                  for seed in seeds]
                    share_off = [r["seconds"] / o["seconds"] for r, o in zip(runs[name], runs["off"])]
                    print(f"{key:36s} {name:18s} time {np.median(share_off):.2f} regret "
                          f"{np.median([r['regret'] for r in runs[name]]):.4f} (off "
                          f"{np.median([r['regret'] for r in runs['off']]):.4f})", flush=True)
                out["runs"][key] = runs
                tmp = args.out.with_suffix(".tmp")
                tmp.write_text(json.dumps(out, indent=1))
                tmp.replace(args.out)
    print(racing_table(out))



if __name__ == "__main__":
    main()
