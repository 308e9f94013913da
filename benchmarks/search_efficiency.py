"""Search efficiency: how many trials each sampler needs to reach the exhaustive grid's Pareto front.

The quickstart study (studies/quickstart.yaml: benchmark:vgg, its data and six metrics) over a grid
small enough to evaluate exhaustively: canonize on/off x gamma {0, 0.25, 1, 10} on each of the four
layer groups (conv1..conv3, classifier), first layer zbox: 2 x 4^4 = 512 settings. The grid is
evaluated ONCE (about 1.7 s a setting on one core) and cached in benchmarks/data/ with a key of the
config and the layer groups (xaiopt.analysis.replay); a changed grid or config is evaluated again.
Every sampler then runs on the replayed grid (xaiopt.analysis.replay.GridReplay: the real
define-by-run space, cached values, no model pass) for budgets of 5 / 10 / 20 / 40 % of the grid
over several seeds; the score is the hypervolume of what it found as a share of the exhaustive
grid's (xaiopt.analysis.hypervolume.hypervolume_fraction), for the six metrics, a two-metric and a
three-metric study. Writes docs/search_efficiency.json, docs/search_efficiency.md (the table) and
docs/search_efficiency.html / .png (the figure).

Not a test.

    .venv/bin/python benchmarks/search_efficiency.py --evaluate-only   # the grid (once, ~15 min)
    .venv/bin/python benchmarks/search_efficiency.py                   # replay every sampler
    .venv/bin/python benchmarks/search_efficiency.py --samplers tpe --sampler-params '{"n_startup_trials": 16}'
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import optuna  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402

from xaiopt.analysis.replay import GridCache, grid_key  # noqa: E402
from xaiopt.analysis.replay import evaluate_grid as replay_evaluate  # noqa: E402
from xaiopt.config import parse_config  # noqa: E402

DATA = ROOT / "benchmarks" / "data"
CACHE = DATA / "search_grid.json"
PER_SAMPLE = DATA / "search_grid_per_sample.json"
GAMMAS = [0, 0.25, 1, 10]


def grid_study_config():
    """The quickstart config with the grid's space (first layer zbox, gamma on every group)."""
    d = yaml.safe_load((ROOT / "studies" / "quickstart.yaml").read_text())
    d["space"] = {"canonize": [True, False], "first_layer": ["zbox"], "layer_groups": 3, "rules": ["gamma"],
                  "gamma": GAMMAS}
    d["device"] = "cpu"
    d["runtime"]["heatmaps"] = 0
    d["baselines"] = []
    return parse_config(d)


def evaluate_grid(cfg, *, log=print) -> GridCache:
    """Every grid point through the real trial evaluation; saves progress and resumes a partial cache."""
    partial, partial_ps = DATA / "search_grid.partial.json", DATA / "search_grid_per_sample.partial.json"
    done = GridCache.load(partial, partial_ps) if partial.exists() else None
    t0 = time.perf_counter()

    def progress(cache: GridCache, total: int) -> None:
        k = len(cache.specs)
        if k % 16 == 0 or k == total:
            cache.save(partial, partial_ps)
            log(f"{k}/{total} points, {time.perf_counter() - t0:.0f} s")

    cache = replay_evaluate(cfg, device="cpu", done=done, on_point=progress)
    cache.save(CACHE, PER_SAMPLE)
    partial.unlink(missing_ok=True)
    partial_ps.unlink(missing_ok=True)
    return cache


def load_or_evaluate(cfg, *, log=print) -> GridCache:
    """The cached grid when its key matches this config and grid; evaluated (again) otherwise."""
    from xaiopt.objective.benchmark import get_benchmark

    layers = get_benchmark(cfg, torch.device("cpu"), "search").layers
    key = grid_key(cfg, layers)
    if CACHE.exists():
        cache = GridCache.load(CACHE, PER_SAMPLE)
        if cache.key == key:
            return cache
        log(f"{CACHE.name} was evaluated for another grid or config: evaluating again")
    return evaluate_grid(cfg, log=log)


STUDIES = {
    "six metrics": None,
    "two metrics": ["region_perturbation", "relevance_rank_accuracy"],
    "three metrics": ["region_perturbation", "relevance_rank_accuracy", "avg_sensitivity"],
}
SAMPLERS = ["tpe", "nsga2", "nsga3", "gp", "random", "qmc"]
SHARES = [0.05, 0.10, 0.20, 0.40]


def replay_run(cache: GridCache, sampler: str, params: dict, seed: int, metrics, budgets: list[int]) -> dict:
    """One sampler run of max(budgets) trials on the replayed grid; the share of the grid's hypervolume
    and the distinct settings (model passes) after each budget."""
    from xaiopt.analysis.hypervolume import hypervolume_fraction
    from xaiopt.analysis.replay import GridReplay
    from xaiopt.config import SamplerConfig
    from xaiopt.study.samplers import make_sampler

    replay = GridReplay(cache, metrics=metrics)
    study = optuna.create_study(directions=replay.directions,
                                sampler=make_sampler(SamplerConfig(name=sampler, params=params), replay.space,
                                                     seed=seed))
    t = time.perf_counter()
    study.optimize(replay, n_trials=max(budgets))
    seconds = time.perf_counter() - t
    grid = replay.values
    out = {"hv": [], "distinct": [], "sampler_seconds": round(seconds, 2)}
    for b in budgets:
        seen = sorted(set(replay.asked[:b]))
        out["hv"].append(hypervolume_fraction(grid[seen], grid, directions=replay.directions))
        out["distinct"].append(len(seen))
    return out


def oracle(cache: GridCache, metrics, budgets: list[int]) -> list[float]:
    """The share a search that knew the grid would reach with k distinct settings: greedy hypervolume
    subset selection over the grid's front (Optuna's HSSP, within 1 - 1/e of the best subset, in
    practice close to it). An upper reference for every sampler, not a sampler."""
    import numpy as np
    from optuna._hypervolume.hssp import _solve_hssp

    from xaiopt.analysis.hypervolume import MARGIN, hypervolume_fraction
    from xaiopt.study.pareto import nondominated

    j = [cache.metrics.index(m) for m in (metrics or cache.metrics)]
    grid = cache.array()[:, j]
    directions = [cache.directions[k] for k in j]
    sign = np.array([-1.0 if d == "maximize" else 1.0 for d in directions])
    low, high = (grid * sign).min(0), (grid * sign).max(0)
    front = np.flatnonzero(nondominated(grid, directions))
    norm = (grid[front] * sign - low) / (high - low)
    out = []
    for b in budgets:
        if b >= len(front):
            out.append(1.0)
            continue
        pick = _solve_hssp(norm, front, b, np.full(len(j), 1.0 + MARGIN))
        out.append(hypervolume_fraction(grid[pick], grid, directions=directions))
    return out


def replay_all(cache: GridCache, *, samplers, params: dict, seeds: int, studies, shares=SHARES,
               with_oracle: bool = False, log=print) -> dict:
    n = len(cache.specs)
    budgets = [max(1, round(s * n)) for s in shares]
    results = {"grid_points": n, "budgets": budgets, "shares": list(shares), "seeds": seeds, "params": params,
               "runs": {}}
    for study in studies:
        for sampler in samplers:
            runs = []
            for seed in range(seeds):
                runs.append(replay_run(cache, sampler, params, seed, STUDIES[study], budgets))
                log(f"{study:14s} {sampler:7s} seed {seed}: hv {[round(h, 3) for h in runs[-1]['hv']]} "
                    f"distinct {runs[-1]['distinct']} ({runs[-1]['sampler_seconds']} s)")
            results["runs"].setdefault(study, {})[sampler] = runs
        if not with_oracle:
            continue
        results.setdefault("oracle", {})[study] = oracle(cache, STUDIES[study], budgets)
        log(f"{study:14s} oracle: {[round(h, 3) for h in results['oracle'][study]]}")
    return results


def _stats(values) -> tuple[float, float, float]:
    import numpy as np

    a = np.asarray(values, dtype=np.float64)
    return float(np.median(a)), float(a.min()), float(a.max())


def table(results: dict, *, label: str | None = None) -> str:
    """Markdown: per study, the hypervolume share (median, min-max over seeds) per sampler and budget."""
    budgets, shares = results["budgets"], results["shares"]
    if label is None:
        label = (f"make_sampler's options and {json.dumps(results['params'])}" if results.get("params")
                 else "samplers as make_sampler builds them")
    lines = []
    for study, by_sampler in results["runs"].items():
        lines += [(f"**{study}** ({label}; % of the grid's hypervolume, median [min-max] over "
                   f"{results['seeds']} seeds; distinct settings evaluated in brackets)"), "",
                  "| sampler | " + " | ".join(f"{b} trials ({s:.0%})" for b, s in zip(budgets, shares)) + " |",
                  "|---|" + "---|" * len(budgets)]
        for sampler, runs in by_sampler.items():
            cells = []
            for k in range(len(budgets)):
                med, lo, hi = _stats([100 * r["hv"][k] for r in runs])
                distinct, _, _ = _stats([r["distinct"][k] for r in runs])
                cells.append(f"{med:.1f} [{lo:.1f}-{hi:.1f}] ({distinct:.0f})")
            lines.append(f"| {sampler} | " + " | ".join(cells) + " |")
        if study in results.get("oracle", {}):
            lines.append("| *best subset (greedy, knows the grid)* | "
                         + " | ".join(f"*{100 * h:.1f}* ({b})" for h, b in zip(results["oracle"][study], budgets))
                         + " |")
        lines.append("")
    return "\n".join(lines)


def figure(results: dict):
    """Plotly: the median share of the grid's hypervolume against trials, min-max band, a panel per study."""
    import plotly.graph_objects as go
    from plotly.colors import qualitative
    from plotly.subplots import make_subplots

    studies = list(results["runs"])
    fig = make_subplots(rows=1, cols=len(studies), subplot_titles=studies, shared_yaxes=True)
    budgets = results["budgets"]
    for c, study in enumerate(studies, start=1):
        for k, (sampler, runs) in enumerate(results["runs"][study].items()):
            color = qualitative.Plotly[k % len(qualitative.Plotly)]
            st = [_stats([100 * r["hv"][j] for r in runs]) for j in range(len(budgets))]
            fig.add_trace(go.Scatter(x=budgets + budgets[::-1], y=[s[2] for s in st] + [s[1] for s in st][::-1],
                                     fill="toself", line={"width": 0}, fillcolor=color, opacity=0.15,
                                     hoverinfo="skip", showlegend=False, legendgroup=sampler), row=1, col=c)
            fig.add_trace(go.Scatter(x=budgets, y=[s[0] for s in st], mode="lines+markers", name=sampler,
                                     line={"color": color}, legendgroup=sampler, showlegend=c == 1), row=1, col=c)
        if study in results.get("oracle", {}):
            fig.add_trace(go.Scatter(x=budgets, y=[100 * h for h in results["oracle"][study]], mode="lines",
                                     name="best subset (knows the grid)", line={"color": "black", "dash": "dash"},
                                     showlegend=c == 1), row=1, col=c)
        fig.add_hline(y=95, line={"dash": "dot", "color": "grey"}, row=1, col=c)
        fig.update_xaxes(title_text="trials", type="log", tickvals=budgets, row=1, col=c)
    fig.update_yaxes(title_text="% of the exhaustive grid's hypervolume", row=1, col=1)
    fig.update_layout(width=1300, height=480, template="plotly_white",
                      title=f"Samplers on the replayed {results['grid_points']}-point quickstart grid "
                            f"(median and min-max over {results['seeds']} seeds)")
    return fig


def render(results: dict, stem: Path) -> None:
    """``stem``.md (the table), ``stem``.html (the figure, plotly.js from its CDN) and ``stem``.png."""
    import tempfile

    from playwright.sync_api import sync_playwright

    fig = figure(results)
    stem.with_suffix(".md").write_text(table(results) + "\n")
    fig.write_html(stem.with_suffix(".html"), include_plotlyjs="cdn")
    with tempfile.TemporaryDirectory() as tmp:
        page_path = Path(tmp) / "fig.html"
        fig.write_html(page_path, include_plotlyjs=True)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True,
                                        args=["--no-sandbox", "--disable-gpu"])
            try:
                page = browser.new_page(viewport={"width": 1300, "height": 480})
                page.goto(page_path.as_uri())
                page.wait_for_selector(".main-svg")
                page.screenshot(path=str(stem.with_suffix(".png")), full_page=True)
            finally:
                browser.close()


def subset_path(subset: int, draws: int | None) -> Path:
    return DATA / (f"search_grid_subset{subset}" + (f"_draws{draws}" if draws else "") + ".json")


def load_or_evaluate_subset(cache: GridCache, cfg, *, subset: int, draws: int | None, log=print) -> dict:
    """Every grid point through a multi-fidelity trial's two stages, in the same process and order as
    a trial runs them: the subset stage (``Objective.evaluate_per_sample(spec, first=subset,
    draws=draws)``), then the full evaluation a surviving trial pays. Cached beside the grid:
    ``per_sample`` / ``seconds`` of the subset stage, ``full_values`` / ``full_per_sample`` /
    ``full_seconds`` of the full one ([point][metric][sample]; seconds per point as
    ``{"attribution": s, "metric:NAME": s}``, so a study of fewer metrics is priced by its own), and
    ``max_abs_diff``: how far the full metric vectors are from the cached grid's, which an earlier
    xaiopt may have evaluated."""
    path = subset_path(subset, draws)
    if path.exists():
        d = json.loads(path.read_text())
        if (d.get("key"), d.get("subset"), d.get("draws")) == (cache.key, subset, draws) and "full_values" in d:
            return d
        log(f"{path.name} belongs to another grid: evaluating the two stages again")
    from xaiopt.objective.trial import Objective, means

    def exact(scores) -> list[list[float]]:
        return [[float(f"{x:.9g}") for x in scores[m].tolist()] for m in cache.metrics]

    obj = Objective(cfg, device=torch.device("cpu"))
    out: dict = {"key": cache.key, "subset": subset, "draws": draws, "per_sample": [], "seconds": [],
                 "full_values": [], "full_per_sample": [], "full_seconds": [], "max_abs_diff": 0.0}
    t0 = time.perf_counter()
    for n, (spec, cached) in enumerate(zip(cache.specs, cache.values), 1):
        scores, seconds, _ = obj.evaluate_per_sample(spec, first=subset, draws=draws)
        out["seconds"].append({k: round(v, 5) for k, v in seconds.items()})
        out["per_sample"].append(exact(scores))
        scores, seconds, _ = obj.evaluate_per_sample(spec)
        out["full_seconds"].append({k: round(v, 5) for k, v in seconds.items()})
        vec = means(scores)
        out["full_values"].append([vec[m] for m in cache.metrics])
        out["full_per_sample"].append(exact(scores))
        out["max_abs_diff"] = max(out["max_abs_diff"], *(abs(vec[m] - v) for m, v in zip(cache.metrics, cached)))
        if n % 64 == 0:
            log(f"two stages: {n}/{len(cache.specs)} points, {time.perf_counter() - t0:.0f} s")
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(out))
    tmp.replace(path)
    return out


def multi_fidelity_run(cache: GridCache, sampler: str, seed: int, metrics, budget: int, *, stage: dict,
                       z: float, prune: bool = True) -> dict:
    """A replay of a study with ``fidelity: {subset, z}`` (``prune`` False: the same study without it).

    The replayed objective is the grid as the two stages of ``stage`` evaluated it (today's xaiopt,
    so the subset and the full scores come from one version). Each new setting's subset-stage scores
    are compared with the full per-sample scores of the settings completed so far by the trial's own
    rule (:func:`xaiopt.objective.fidelity.dominating`); a clearly dominated setting is pruned, the
    others are evaluated in full as well (a completed trial stores exactly its values without
    multi-fidelity). A pruned setting proposed again is pruned again at no cost, as in the trial.
    Cost in the measured evaluation seconds of the attribution and this study's metrics, and in model
    passes (a full evaluation is one, the subset stage subset/N)."""
    import dataclasses

    from xaiopt.analysis.hypervolume import hypervolume_fraction
    from xaiopt.analysis.replay import GridReplay
    from xaiopt.config import SamplerConfig
    from xaiopt.objective.fidelity import dominating
    from xaiopt.study.samplers import make_sampler

    now = dataclasses.replace(cache, values=stage["full_values"], per_sample=stage["full_per_sample"])
    replay = GridReplay(now, metrics=metrics)
    names, cols = replay.metrics, replay.columns

    def priced(seconds: dict) -> float:  # the attribution and this study's metrics
        return seconds["attribution"] + sum(seconds[f"metric:{m}"] for m in names)
    directions = dict(zip(names, replay.directions))
    full = [{m: now.per_sample[i][c] for m, c in zip(names, cols)} for i in range(len(now.specs))]
    share = stage["subset"] / len(now.per_sample[0][0])
    done: list[int] = []
    pruned: set[int] = set()
    cost = {"passes": 0.0, "seconds": 0.0, "pruned": 0}

    def objective(trial):
        i = replay.point_of(replay.space.suggest(trial))
        if i in pruned:
            raise optuna.TrialPruned()
        if i not in done:
            if done and prune:
                cost["passes"] += share
                cost["seconds"] += priced(stage["seconds"][i])
                cand = {m: stage["per_sample"][i][c] for m, c in zip(names, cols)}
                if dominating(cand, [(j, full[j]) for j in done], directions, z=z) is not None:
                    pruned.add(i)
                    cost["pruned"] += 1
                    raise optuna.TrialPruned()
            cost["passes"] += 1.0
            cost["seconds"] += priced(stage["full_seconds"][i])
            done.append(i)
        return tuple(float(v) for v in replay.values[i])

    study = optuna.create_study(directions=replay.directions,
                                sampler=make_sampler(SamplerConfig(name=sampler), replay.space, seed=seed))
    study.optimize(objective, n_trials=budget)
    grid = replay.values
    return {"hv": hypervolume_fraction(grid[sorted(done)], grid, directions=replay.directions),
            "passes": cost["passes"], "seconds": cost["seconds"], "pruned": cost["pruned"], "complete": len(done)}


def scalarization_ceiling(cache: GridCache, metrics, budgets: list[int], seeds: int) -> dict:
    """What a perfect scalarizing search could reach: for ``budget`` random weight vectors (uniform on
    the simplex), the grid's best setting under each weight's Chebyshev scalarization of the
    min-max normalized metrics (the optimum a ParEGO-like sampler aims at, found with no search
    error); the share of the grid's hypervolume those settings hold, per seed."""
    import numpy as np

    from xaiopt.analysis.hypervolume import hypervolume_fraction
    from xaiopt.analysis.replay import GridReplay

    replay = GridReplay(cache, metrics=metrics)
    grid = replay.values
    sign = np.array([1.0 if d == "maximize" else -1.0 for d in replay.directions])
    g = grid * sign
    regret = (g.max(0) - g) / np.maximum(g.max(0) - g.min(0), 1e-300)  # 0 = the grid's best, per metric
    out: dict = {}
    for budget in budgets:
        runs = []
        for seed in range(seeds):
            weights = np.random.default_rng(seed).dirichlet(np.ones(grid.shape[1]), size=budget)
            chosen = sorted({int(np.argmin((w * regret).max(axis=1))) for w in weights})
            runs.append({"hv": hypervolume_fraction(grid[chosen], grid, directions=replay.directions),
                         "settings": len(chosen)})
        out[budget] = runs
    return out


def multi_fidelity_table(d: dict) -> str:
    """Markdown: per study and budget, medians over seeds of the evaluation seconds, the hypervolume
    share and the pruned settings, without multi-fidelity and with it for each z."""
    import numpy as np

    zs = [f"{z:g}" for z in d["z"]]
    rows: dict[tuple[str, str], dict] = {}
    for key, r in d["runs"].items():
        study, sampler, budget, z = key.split("/")
        rows.setdefault((f"{study}, {sampler}", budget), {})[z.removeprefix("z=")] = r

    def med(runs, k):
        return float(np.median([x[k] for x in runs]))

    head = ("| study, trials | off: seconds / % hypervolume | "
            + " | ".join(f"z = {z}: seconds / % (pruned, complete)" for z in zs) + " |")
    lines = [head, "|---|---|" + "---|" * len(zs)]
    for (study, budget), by_z in rows.items():
        off = next(iter(by_z.values()))["off"]
        cells = [f"{med(off, 'seconds'):.1f} / {100 * med(off, 'hv'):.1f}"]
        for z in zs:
            on = by_z[z]["on"]
            cells.append(f"{med(on, 'seconds'):.1f} / {100 * med(on, 'hv'):.1f} "
                         f"({med(on, 'pruned'):g}, {med(on, 'complete'):g})")
        lines.append(f"| {study}, {budget} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--evaluate-only", action="store_true")
    parser.add_argument("--samplers", nargs="*", default=SAMPLERS)
    parser.add_argument("--sampler-params", type=json.loads, default={},
                        help="JSON keyword arguments for every sampler named (on top of make_sampler's)")
    parser.add_argument("--studies", nargs="*", default=list(STUDIES), choices=list(STUDIES))
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--shares", type=float, nargs="*", default=SHARES, help="trial budgets as shares of the grid")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "search_efficiency.json")
    parser.add_argument("--oracle", action="store_true", help="also the greedy best subset of the grid's front")
    parser.add_argument("--multi-fidelity", type=int, default=0, metavar="K",
                        help="estimate subset-first pruning on K of the samples instead of the sampler runs")
    parser.add_argument("--z", type=float, nargs="*", default=[2.0],
                        help="standard errors of clear dominance (--multi-fidelity; several: one run each)")
    parser.add_argument("--draws", type=int, default=None,
                        help="noise draws per sample in the subset stage (--multi-fidelity; default the metric's)")
    parser.add_argument("--scalarization-ceiling", action="store_true",
                        help="print what perfect Chebyshev scalarization with random weights reaches, per budget")
    parser.add_argument("--render", action="store_true", help="also write the table and the figure beside --out")
    parser.add_argument("--render-only", action="store_true", help="table and figure from an existing --out")
    args = parser.parse_args()
    if args.render_only:
        d = json.loads(args.out.read_text())
        if "subset" in d:  # a --multi-fidelity result
            print(multi_fidelity_table(d))
        else:
            render(d, args.out.with_suffix(""))
        return
    torch.set_num_threads(1)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    cfg = grid_study_config()
    cache = load_or_evaluate(cfg)
    print(f"grid: {len(cache.specs)} points, {sum(cache.seconds):.0f} s of evaluation")
    if args.evaluate_only:
        return
    import warnings
    warnings.simplefilter("ignore")
    if args.scalarization_ceiling:
        import numpy as np

        for study in args.studies:
            budgets = [round(share * len(cache.specs)) for share in args.shares]
            for budget, runs in scalarization_ceiling(cache, STUDIES[study], budgets, args.seeds).items():
                hv = [r["hv"] for r in runs]
                print(f"{study}, {budget} weights: {100 * np.median(hv):.1f} % of the grid's hypervolume "
                      f"[{100 * min(hv):.1f}-{100 * max(hv):.1f}], "
                      f"{np.median([r['settings'] for r in runs]):g} distinct settings", flush=True)
        return
    if args.multi_fidelity:
        stage = load_or_evaluate_subset(cache, cfg, subset=args.multi_fidelity, draws=args.draws)
        subset_s, full_s = (sum(sum(x.values()) for x in stage[k]) for k in ("seconds", "full_seconds"))
        print(f"subset stage: {subset_s:.0f} s for the grid against {full_s:.0f} s "
              f"of full evaluations; the cached grid's metric vectors reproduced to {stage['max_abs_diff']:.3g}",
              flush=True)
        out = {}
        for z in args.z:
            for study in args.studies:
                for sampler in args.samplers:
                    for share in args.shares:
                        budget = round(share * len(cache.specs))
                        plain = [multi_fidelity_run(cache, sampler, seed, STUDIES[study], budget, stage=stage,
                                                    z=z, prune=False) for seed in range(args.seeds)]
                        runs = [multi_fidelity_run(cache, sampler, seed, STUDIES[study], budget, stage=stage, z=z)
                                for seed in range(args.seeds)]
                        out[f"{study}/{sampler}/{budget}/z={z:g}"] = {"off": plain, "on": runs}
                        print(study, sampler, budget, f"z={z:g}",
                              [(round(r["hv"], 3), round(r["seconds"]), r["pruned"]) for r in runs], flush=True)
        args.out.write_text(json.dumps({"subset": args.multi_fidelity, "draws": args.draws, "z": args.z,
                                        "command": " ".join(sys.argv[1:]), "runs": out}, indent=1))
        print(multi_fidelity_table(json.loads(args.out.read_text())))
        return
    results = replay_all(cache, samplers=args.samplers, params=args.sampler_params, seeds=args.seeds,
                         studies=args.studies, shares=args.shares,
                         with_oracle=args.oracle)
    results["command"] = " ".join(sys.argv[1:])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".tmp")
    tmp.write_text(json.dumps(results, indent=1))
    tmp.replace(args.out)
    print(f"wrote {args.out}")
    if args.render:
        render(results, args.out.with_suffix(""))
    print(table(results))


if __name__ == "__main__":
    main()
