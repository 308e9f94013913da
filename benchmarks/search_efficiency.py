"""Search efficiency: how close each sampler's recommendation gets to the exhaustive grid's best, and how
much of the grid's Pareto front it reaches.

Two grids of the quickstart study (studies/quickstart.yaml: benchmark:vgg, its data and six
metrics), small enough to evaluate exhaustively:

- ``gamma`` (512 settings): canonize on/off x gamma {0, 0.25, 1, 10} on each of the four layer
  groups (conv1..conv3, classifier), first layer zbox: 2 x 4^4. Cached in
  benchmarks/data/search_grid.json and search_grid_per_sample.json.
- ``rules`` (1024 settings, where the decision is hard): the rule chosen per layer group from gamma
  (0.25), epsilon (0.01), zplus and flat, first layer zbox or flat, canonize on/off: 4^4 x 2 x 2.
  Cached in benchmarks/data/search_grid_rules.json and search_grid_rules_per_sample.json.

Each grid is evaluated ONCE through the real trial evaluation (resumable from a partial cache) and
cached with a key of the config and the layer groups (xaiopt.analysis.replay); a changed grid or
config is evaluated again. Every sampler then runs on the replayed grid
(xaiopt.analysis.replay.GridReplay: the real define-by-run space, cached values, no model pass)
for budgets given as shares of the grid over several seeds. Two scores per budget:

- the headline, the **decision regret** (:func:`decision_regret`; six-metric study): the grid's
  best weighted score minus the grid score of the setting the study would recommend from what it
  found (``study recommend``'s Scorer fitted on the settings found), for equal weights and two
  ``--prefer`` weightings (WEIGHTINGS), and whether that recommendation is the grid's best or
  indistinguishable from it (paired bootstrap over the per-sample scores, 1000 resamples);
- the share of the grid's hypervolume the settings found dominate
  (xaiopt.analysis.hypervolume.hypervolume_fraction), for the six metrics, a two-metric and a
  three-metric study.

``--samplers`` takes the registered samplers and the named variants of VARIANTS (a sampler with
fixed options: ``tpe-independent``, ``tpe-no-group``, ``tpe-constant-liar``, ``qmc-scrambled``).
``tpe-decision`` optimizes the decision score itself, so it runs once per weighting with that
weighting's category weights, and each weighting's regret comes from its own run (replay_run).

Writes docs/search_efficiency.json, docs/search_efficiency.md (the tables) and
docs/search_efficiency.html / .png (the figure); ``--markdown`` the tables only.

Not a test.

    .venv/bin/python benchmarks/search_efficiency.py --grid gamma rules --evaluate-only   # the grids (once)
    .venv/bin/python benchmarks/search_efficiency.py --grid gamma rules --samplers tpe nsga2 nsga3 random qmc \\
        --studies "six metrics" --shares 0.05 0.1 0.2 --render                            # regret and hypervolume
    .venv/bin/python benchmarks/search_efficiency.py --samplers tpe --sampler-params '{"n_startup_trials": 16}'
    .venv/bin/python benchmarks/search_efficiency.py --grid rules gamma --samplers tpe tpe-decision tpe-independent \
        tpe-no-group tpe-constant-liar nsga2 nsga3 qmc qmc-scrambled random --studies "six metrics" \
        --shares 0.05 0.1 0.2 --out docs/search_samplers.json --markdown        # samplers by decision regret
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


HARD_RULES = ["gamma", "epsilon", "zplus", "flat"]


def hard_grid_study_config():
    """The second grid, where the decision is hard: the quickstart config with the rule chosen per
    layer group (conv1..conv3, classifier) from gamma (0.25), epsilon (0.01), zplus and flat, first
    layer zbox or flat, canonize on/off: 4^4 x 2 x 2 = 1024 settings."""
    d = yaml.safe_load((ROOT / "studies" / "quickstart.yaml").read_text())
    d["space"] = {"canonize": [True, False], "first_layer": ["zbox", "flat"], "layer_groups": 3,
                  "rules": HARD_RULES, "gamma": [0.25], "epsilon": [0.01]}
    d["device"] = "cpu"
    d["runtime"]["heatmaps"] = 0
    d["baselines"] = []
    return parse_config(d)


# name -> (config, cache file, per-sample file)
GRIDS = {
    "gamma": (grid_study_config, CACHE, PER_SAMPLE),
    "rules": (hard_grid_study_config, DATA / "search_grid_rules.json", DATA / "search_grid_rules_per_sample.json"),
}


def _paths(cache_path: Path | None, per_sample_path: Path | None) -> tuple[Path, Path]:
    return (cache_path or CACHE), (per_sample_path or PER_SAMPLE)


def evaluate_grid(cfg, *, log=print, cache_path: Path | None = None, per_sample_path: Path | None = None) -> GridCache:
    """Every grid point through the real trial evaluation; saves progress and resumes a partial cache."""
    cache_path, per_sample_path = _paths(cache_path, per_sample_path)
    partial, partial_ps = cache_path.with_suffix(".partial.json"), per_sample_path.with_suffix(".partial.json")
    done = GridCache.load(partial, partial_ps) if partial.exists() else None
    t0 = time.perf_counter()

    def progress(cache: GridCache, total: int) -> None:
        k = len(cache.specs)
        if k % 16 == 0 or k == total:
            cache.save(partial, partial_ps)
            log(f"{k}/{total} points, {time.perf_counter() - t0:.0f} s")

    cache = replay_evaluate(cfg, device="cpu", done=done, on_point=progress)
    cache.save(cache_path, per_sample_path)
    partial.unlink(missing_ok=True)
    partial_ps.unlink(missing_ok=True)
    return cache


def load_or_evaluate(cfg, *, log=print, cache_path: Path | None = None,
                     per_sample_path: Path | None = None) -> GridCache:
    """The cached grid when its key matches this config and grid; evaluated (again) otherwise."""
    from xaiopt.objective.benchmark import get_benchmark

    cache_path, per_sample_path = _paths(cache_path, per_sample_path)
    layers = get_benchmark(cfg, torch.device("cpu"), "search").layers
    key = grid_key(cfg, layers)
    if cache_path.exists():
        cache = GridCache.load(cache_path, per_sample_path)
        if cache.key == key:
            return cache
        log(f"{cache_path.name} was evaluated for another grid or config: evaluating again")
    return evaluate_grid(cfg, log=log, cache_path=cache_path, per_sample_path=per_sample_path)


STUDIES = {
    "six metrics": None,
    "two metrics": ["region_perturbation", "relevance_rank_accuracy"],
    "three metrics": ["region_perturbation", "relevance_rank_accuracy", "avg_sensitivity"],
}
SAMPLERS = ["tpe", "nsga2", "nsga3", "gp", "random", "qmc"]
SHARES = [0.05, 0.10, 0.20, 0.40]
REGRET_SHARES = [0.05, 0.10, 0.20]
# the recommendation's category weights (`xaiopt study recommend --prefer ...`); None: equal
WEIGHTINGS = {"equal": None, "faithfulness=3": "faithfulness=3",
              "localization=2,complexity=0.5": "localization=2,complexity=0.5"}
# named variants of the registered samplers (--samplers takes these names too): name -> (sampler, params)
VARIANTS = {
    "tpe-independent": ("tpe", {"multivariate": False, "group": False}),  # univariate TPE per parameter
    "tpe-no-group": ("tpe", {"group": False}),  # multivariate over the intersection space only
    "tpe-constant-liar": ("tpe", {"constant_liar": True}),  # running trials as bad (parallel workers)
    "qmc-scrambled": ("qmc", {"scramble": True}),  # a scrambled Sobol sequence per seed
}


def sampler_of(name: str, params: dict) -> tuple[str, dict]:
    """The registered sampler and its keyword arguments of ``name`` (a sampler or one of VARIANTS)."""
    base, extra = VARIANTS.get(name, (name, {}))
    return base, {**extra, **params}


def decision_regret(values, found, *, directions, categories, weights, per_sample=None, metrics=None,
                    resamples: int = 1000, seed: int = 0, range_rows=None) -> dict:
    """How much worse the setting a study would recommend from what it found is than the grid's best.

    ``values``: (N, M) metric vectors of every grid setting; ``found``: grid indices of the settings
    the search evaluated, in the order it first evaluated them (repeats ignored); ``directions``,
    ``categories`` and ``weights`` as :class:`xaiopt.metrics.scoring.Scorer` takes them;
    ``per_sample``: (N, M, S) per-sample scores or None.

    The grid's score is a Scorer fitted on all N settings. The study's recommendation is the argmax
    of a Scorer fitted on the found settings only (as ``study recommend`` normalizes over the study's
    distinct settings; ties: the earliest found). ``regret`` = the grid's best score - the grid score
    of that recommendation (0: the grid's best, or one scoring as well). ``indistinguishable``: the
    recommendation is the grid's best setting, or the paired bootstrap of the two (the grid's
    Scorer, ``resamples``, ``seed``) says 'indistinguishable'; None without per-sample scores.
    """
    import numpy as np

    from xaiopt.analysis.bootstrap import paired_bootstrap, verdict
    from xaiopt.metrics.scoring import Scorer

    values = np.asarray(values, dtype=np.float64)
    metrics = list(metrics) if metrics is not None else [f"m{j}" for j in range(values.shape[1])]
    seen = list(dict.fromkeys(int(i) for i in found))
    if not seen:
        raise ValueError("decision_regret: no setting found")
    kw = {"metrics": metrics, "directions": list(directions), "categories": list(categories),
          "weights": dict(weights)}
    grid_scorer = Scorer.fit(values, **kw)
    grid_scores = grid_scorer.score(values)
    best = int(np.argmax(grid_scores))  # the first of equal maxima
    # the study's normalization: its complete settings, and (racing) the stage means of the pruned ones
    fit_on = values[seen] if range_rows is None or not len(range_rows) else np.vstack([values[seen], range_rows])
    own = Scorer.fit(fit_on, **kw).score(values[seen])
    chosen = seen[int(np.argmax(own))]  # np.argmax: the earliest found of equal scores
    regret = float(grid_scores[best] - grid_scores[chosen])
    indist: bool | None
    if chosen == best:
        indist = True
    elif per_sample is None:
        indist = None
    else:
        ps = np.asarray(per_sample, dtype=np.float64)
        a = {m: ps[best, j] for j, m in enumerate(metrics)}
        b = {m: ps[chosen, j] for j, m in enumerate(metrics)}
        diff = paired_bootstrap(a, b, grid_scorer, observed_a=values[best], observed_b=values[chosen],
                                resamples=resamples, seed=seed)
        indist = None if diff is None else verdict(diff) == "indistinguishable"
    return {"regret": regret, "best": best, "chosen": chosen, "best_score": float(grid_scores[best]),
            "chosen_score": float(grid_scores[chosen]), "indistinguishable": indist}


def regret_inputs(cache: GridCache, metrics=None, weightings=None) -> dict:
    """decision_regret's keyword arguments for ``cache`` (a metric subset: its columns), per weighting."""
    import numpy as np

    from xaiopt.metrics import get_metric
    from xaiopt.metrics.preferences import category_weights

    names = list(metrics or cache.metrics)
    cols = [cache.metrics.index(m) for m in names]
    categories = [get_metric(m).category for m in names]
    present = list(dict.fromkeys(categories))
    per_sample = (np.asarray(cache.per_sample, dtype=np.float64)[:, cols] if cache.per_sample else None)
    base = {"directions": [cache.directions[j] for j in cols], "categories": categories, "metrics": names,
            "per_sample": per_sample}
    return {w: dict(base, weights=category_weights(prefer, present=present)) for w, prefer in WEIGHTINGS.items()
            if weightings is None or w in weightings}


def replay_run(cache: GridCache, sampler: str, params: dict, seed: int, metrics, budgets: list[int],
               regret: dict | None = None) -> dict:
    """One sampler run of max(budgets) trials on the replayed grid; the share of the grid's hypervolume
    and the distinct settings (model passes) after each budget; with ``regret`` (regret_inputs) also
    the decision regret and whether the recommendation is indistinguishable from the grid's best,
    per weighting and budget.

    ``sampler`` is a registered sampler or one of VARIANTS. A sampler that optimizes the decision
    score (``tpe-decision``) runs once per weighting, with that weighting's category weights, and
    each weighting's regret comes from its own run; the hypervolume and distinct settings are those
    of the first weighting's run (equal weights; without ``regret``, equal weights on ``metrics``)."""
    from xaiopt.analysis.hypervolume import hypervolume_fraction
    from xaiopt.analysis.replay import GridReplay
    from xaiopt.config import SamplerConfig
    from xaiopt.study.samplers import Decision, make_sampler, needs_decision

    base, params = sampler_of(sampler, params)

    def run(decision: Decision | None) -> tuple[GridReplay, float]:
        replay = GridReplay(cache, metrics=metrics)
        study = optuna.create_study(directions=replay.directions,
                                    sampler=make_sampler(SamplerConfig(name=base, params=params), replay.space,
                                                         seed=seed, decision=decision))
        t = time.perf_counter()
        study.optimize(replay, n_trials=max(budgets))
        return replay, time.perf_counter() - t

    if needs_decision(base):
        inputs = regret or {"equal": regret_inputs(cache, metrics)["equal"]}
        runs = {w: run(Decision(kw["metrics"], kw["directions"], kw["categories"], kw["weights"]))
                for w, kw in inputs.items()}
    else:
        one = run(None)
        runs = {w: one for w in regret or {"equal": None}}
    replay = next(iter(runs.values()))[0]
    seconds = sum(s for _, s in {id(r): (r, s) for r, s in runs.values()}.values())
    grid = replay.values
    out = {"hv": [], "distinct": [], "sampler_seconds": round(seconds, 2)}
    for b in budgets:
        seen = sorted(set(replay.asked[:b]))
        out["hv"].append(hypervolume_fraction(grid[seen], grid, directions=replay.directions))
        out["distinct"].append(len(seen))
    for w, kw in (regret or {}).items():
        asked = runs[w][0].asked
        rs = [decision_regret(grid, asked[:b], **kw) for b in budgets]
        out.setdefault("regret", {})[w] = [r["regret"] for r in rs]
        out.setdefault("indistinguishable", {})[w] = [r["indistinguishable"] for r in rs]
        out.setdefault("chosen", {})[w] = [r["chosen"] for r in rs]
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
               with_oracle: bool = False, with_regret: bool = True, log=print) -> dict:
    n = len(cache.specs)
    budgets = [max(1, round(s * n)) for s in shares]
    results = {"grid_points": n, "budgets": budgets, "shares": list(shares), "seeds": seeds, "params": params,
               "runs": {}}
    for study in studies:
        # the decision regret: the six-metric study only (the recommendation's own metrics)
        regret = regret_inputs(cache, STUDIES[study]) if with_regret and study == "six metrics" else None
        if regret:
            results["regret_grid"] = {}
            for w, kw in regret.items():
                r = decision_regret(cache.array(), range(n), **{k: v for k, v in kw.items() if k != "per_sample"})
                results["regret_grid"][w] = {"best": r["best"], "best_label": cache.specs[r["best"]].describe(),
                                             "weights": kw["weights"]}
        for sampler in samplers:
            runs = []
            for seed in range(seeds):
                runs.append(replay_run(cache, sampler, params, seed, STUDIES[study], budgets, regret=regret))
                log(f"{study:14s} {sampler:7s} seed {seed}: hv {[round(h, 3) for h in runs[-1]['hv']]} "
                    f"distinct {runs[-1]['distinct']} ({runs[-1]['sampler_seconds']} s)"
                    + (f" regret {[round(x, 4) for x in runs[-1]['regret']['equal']]}" if regret else ""))
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


def regret_table(results: dict, *, shares=REGRET_SHARES) -> str:
    """Markdown: per weighting, the decision regret (median [min-max] over seeds) per sampler and budget,
    and in how many seeds the recommendation is indistinguishable from the grid's best."""
    ks = [k for k, s in enumerate(results["shares"]) if any(abs(s - t) < 1e-9 for t in shares)]
    budgets, seeds = results["budgets"], results["seeds"]
    study = next((st for st, by in results["runs"].items() if any("regret" in r for rs in by.values() for r in rs)),
                 None)
    if study is None:
        return ""
    lines = []
    for w, grid in results.get("regret_grid", {}).items():
        lines += [f"**{w}** (`--prefer {w}`)" if w != "equal" else "**equal weights**", "",
                  f"grid's best: {grid['best_label']}", "",
                  "| sampler | " + " | ".join(f"{budgets[k]} trials ({results['shares'][k]:.0%})" for k in ks) + " |",
                  "|---|" + "---|" * len(ks)]
        for sampler, runs in results["runs"][study].items():
            cells = []
            for k in ks:
                med, lo, hi = _stats([r["regret"][w][k] for r in runs])
                same = sum(bool(r["indistinguishable"][w][k]) for r in runs)
                cells.append(f"{med:.3f} [{lo:.3f}-{hi:.3f}] {same}/{seeds}")
            lines.append(f"| {sampler} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def _grids(doc: dict) -> dict:
    """{grid name: results}; a single-grid result (no ``grids``) as the gamma grid."""
    return doc["grids"] if "grids" in doc else {"gamma": doc}


GRID_TITLES = {"gamma": "gamma grid (512 settings)", "rules": "rule-choice grid (1024 settings)"}


def markdown(doc: dict) -> str:
    """Per grid: the decision-regret tables (the headline), then the hypervolume table."""
    lines = []
    for name, results in _grids(doc).items():
        lines += [f"### {GRID_TITLES.get(name, name)}", ""]
        reg = regret_table(results)
        if reg:
            lines += [f"Decision regret (six metrics; grid's best weighted score - the grid score of the setting "
                      f"the study would recommend from what it found; median [min-max] over {results['seeds']} "
                      f"seeds; then the seeds whose recommendation is the grid's best or indistinguishable from "
                      f"it by the paired bootstrap, 1000 resamples)", "", reg]
        lines += ["Hypervolume", "", table(results)]
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


def regret_figure(doc: dict):
    """Plotly: a row per grid; the median decision regret against trials per weighting (min-max band),
    then the six-metric hypervolume share (the second figure)."""
    import plotly.graph_objects as go
    from plotly.colors import qualitative
    from plotly.subplots import make_subplots

    grids = _grids(doc)
    weightings = list(WEIGHTINGS)
    titles = []
    for g in grids:
        titles += [f"{g}: regret, {w}" for w in weightings] + [f"{g}: % hypervolume"]
    fig = make_subplots(rows=len(grids), cols=len(weightings) + 1, subplot_titles=titles)
    for row, results in enumerate(grids.values(), start=1):
        budgets = results["budgets"]
        study = "six metrics" if "six metrics" in results["runs"] else next(iter(results["runs"]))
        for k, (sampler, runs) in enumerate(results["runs"][study].items()):
            color = qualitative.Plotly[k % len(qualitative.Plotly)]
            panels = [(c, [[r["regret"][w][j] for r in runs] for j in range(len(budgets))])
                      for c, w in enumerate(weightings, start=1) if "regret" in runs[0]]
            panels.append((len(weightings) + 1, [[100 * r["hv"][j] for r in runs] for j in range(len(budgets))]))
            for c, per_budget in panels:
                st = [_stats(v) for v in per_budget]
                fig.add_trace(go.Scatter(x=budgets + budgets[::-1], y=[x[2] for x in st] + [x[1] for x in st][::-1],
                                         fill="toself", line={"width": 0}, fillcolor=color, opacity=0.12,
                                         hoverinfo="skip", showlegend=False, legendgroup=sampler), row=row, col=c)
                fig.add_trace(go.Scatter(x=budgets, y=[x[0] for x in st], mode="lines+markers", name=sampler,
                                         line={"color": color}, legendgroup=sampler,
                                         showlegend=row == 1 and c == 1), row=row, col=c)
        for c in range(1, len(weightings) + 2):
            fig.update_xaxes(title_text="trials", type="log", tickvals=budgets, row=row, col=c)
        fig.update_yaxes(title_text="decision regret", row=row, col=1)
    fig.update_layout(width=1400, height=380 * len(grids) + 80, template="plotly_white",
                      title="Samplers on the replayed quickstart grids: decision regret of the recommendation "
                            "(lower is better) and % of the grid's hypervolume (median, min-max band)")
    return fig


def render(doc: dict, stem: Path) -> None:
    """``stem``.md (the tables), ``stem``.html (the figure, plotly.js from its CDN) and ``stem``.png."""
    import tempfile

    from playwright.sync_api import sync_playwright

    fig = regret_figure(doc)
    stem.with_suffix(".md").write_text(markdown(doc) + "\n")
    fig.write_html(stem.with_suffix(".html"), include_plotlyjs="cdn")
    with tempfile.TemporaryDirectory() as tmp:
        page_path = Path(tmp) / "fig.html"
        fig.write_html(page_path, include_plotlyjs=True)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True,
                                        args=["--no-sandbox", "--disable-gpu"])
            try:
                page = browser.new_page(viewport={"width": fig.layout.width, "height": fig.layout.height})
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
    parser.add_argument("--grid", nargs="+", choices=list(GRIDS), default=["gamma"],
                        help="the cached grid(s): gamma (512 settings), rules (the per-group rule choice, 1024); "
                             "--evaluate-only, --multi-fidelity and --scalarization-ceiling use the first")
    parser.add_argument("--no-regret", action="store_true", help="hypervolume only (no decision regret)")
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
    parser.add_argument("--markdown", action="store_true", help="also write the tables (no figure) beside --out")
    parser.add_argument("--render-only", action="store_true", help="table and figure from an existing --out")
    args = parser.parse_args()
    if args.render_only:
        d = json.loads(args.out.read_text())
        if "subset" in d:  # a --multi-fidelity result
            print(multi_fidelity_table(d))
        elif args.markdown:
            args.out.with_suffix(".md").write_text(markdown(d) + "\n")
        else:
            render(d, args.out.with_suffix(""))
        return
    torch.set_num_threads(1)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    caches = {}
    for name in args.grid:
        make_cfg, cache_path, per_sample_path = GRIDS[name]
        cfg = make_cfg()
        caches[name] = load_or_evaluate(cfg, cache_path=cache_path, per_sample_path=per_sample_path)
        print(f"{name} grid: {len(caches[name].specs)} points, {sum(caches[name].seconds):.0f} s of evaluation")
    if args.evaluate_only:
        return
    cfg = GRIDS[args.grid[0]][0]()
    cache = caches[args.grid[0]]
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
    grids = {name: replay_all(c, samplers=args.samplers, params=args.sampler_params, seeds=args.seeds,
                              studies=args.studies, shares=args.shares, with_oracle=args.oracle,
                              with_regret=not args.no_regret)
             for name, c in caches.items()}
    results = grids[args.grid[0]] if len(grids) == 1 and args.no_regret else {"grids": grids}
    results["command"] = " ".join(sys.argv[1:])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".tmp")
    tmp.write_text(json.dumps(results, indent=1))
    tmp.replace(args.out)
    print(f"wrote {args.out}")
    if args.render:
        render(results, args.out.with_suffix(""))
    elif args.markdown:
        args.out.with_suffix(".md").write_text(markdown(results) + "\n")
    print(markdown(results))


if __name__ == "__main__":
    main()
