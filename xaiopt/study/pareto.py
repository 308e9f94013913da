"""The Pareto front of a study: rows, and their table / JSON / CSV renderings."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import numpy as np
from optuna.trial import FrozenTrial, TrialState

from xaiopt.errors import ConfigError
from xaiopt.objective.attrs import baseline, distinct_settings, explainer_text, spec_dict, timings
from xaiopt.study.manage import LoadedStudy

FORMATS = ("table", "json", "csv")


def trial_row(t: FrozenTrial, metric_names: list[str]) -> dict[str, Any]:
    return {
        "number": t.number,
        "values": dict(zip(metric_names, t.values or [])),
        "explainer": spec_dict(t),
        "explainer_text": explainer_text(t),
        "params": t.params,
        "seconds": timings(t).get("total"),
        "baseline": baseline(t),
    }


def nondominated(values: np.ndarray, directions: list[str]) -> np.ndarray:
    """(T,) True for rows no other row dominates (at least as good on every metric, better on one),
    each column read in its own direction (``maximize`` / ``minimize``)."""
    v = np.asarray(values, dtype=np.float64).reshape(len(values), len(directions))
    v = v * np.array([1.0 if d == "maximize" else -1.0 for d in directions])
    ge = (v[:, None, :] >= v[None, :, :]).all(axis=-1)  # ge[j, i]: j at least as good as i everywhere
    gt = (v[:, None, :] > v[None, :, :]).any(axis=-1)
    return ~(ge & gt).any(axis=0)


def distinct_complete(loaded: LoadedStudy) -> list[FrozenTrial]:
    """The study's distinct complete settings (each explainer once, under its first trial)."""
    complete = [t for t in loaded.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                if t.values is not None]
    return distinct_settings(complete)[0]


def front_trials(loaded: LoadedStudy, metrics: list[str] | None = None) -> list[FrozenTrial]:
    """The Pareto-optimal distinct settings on ``metrics`` (default: all the study's), by trial number.

    A repeat of a finished setting (``duplicate_of``, or two workers computing it at once) counts
    once, under the earlier trial: the figures, the tables and the recommendation agree.
    """
    names = loaded.metric_names
    chosen = list(names) if metrics is None else list(metrics)
    unknown = [m for m in chosen if m not in names]
    if unknown or not chosen:
        raise ConfigError(f"--metrics: {', '.join(unknown) or '(none)'} is not a metric of study "
                          f"{loaded.study.study_name!r} (valid: {', '.join(names)})")
    idx = [names.index(m) for m in chosen]
    directions = [d.name.lower() for d in loaded.study.directions]
    settings = distinct_complete(loaded)
    if not settings:
        return []
    values = np.array([[t.values[i] for i in idx] for t in settings])
    mask = nondominated(values, [directions[i] for i in idx])
    return [t for t, keep in zip(settings, mask) if keep]


def pareto_rows(loaded: LoadedStudy, metrics: list[str] | None = None) -> list[dict[str, Any]]:
    """The Pareto-optimal distinct settings (on ``metrics``, default all) as rows, by trial number."""
    return [trial_row(t, loaded.metric_names) for t in front_trials(loaded, metrics)]


def render(rows: list[dict[str, Any]], metric_names: list[str], directions: list[str], fmt: str) -> str:
    if fmt == "json":
        return json.dumps(rows, indent=2)
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(["trial", *metric_names, "explainer"])
        for r in rows:
            w.writerow([r["number"], *[repr(r["values"][m]) for m in metric_names], _label(r)])
        return buf.getvalue()
    if fmt == "table":
        return _table(rows, metric_names, directions)
    raise ConfigError(f"--format: unknown format {fmt!r} (valid: {', '.join(FORMATS)})")


def _label(row: dict[str, Any]) -> str:
    """The explainer settings, prefixed by the baseline's name for enqueued baselines."""
    return f"[baseline {row['baseline']}] {row['explainer_text']}" if row.get("baseline") else row["explainer_text"]


def _table(rows: list[dict[str, Any]], names: list[str], directions: list[str]) -> str:
    arrows = {"maximize": "↑", "minimize": "↓"}
    head = ["trial", *[f"{n} {arrows.get(d, '')}".strip() for n, d in zip(names, directions)], "explainer"]
    body = [[str(r["number"]), *[f"{r['values'][n]:.4g}" for n in names], _label(r)] for r in rows]
    widths = [max(len(h), *(len(b[i]) for b in body)) if body else len(h) for i, h in enumerate(head)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(head, widths)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(b, widths)).rstrip() for b in body]
    if not body:
        lines.append("(no complete trials yet)")
    return "\n".join(lines)
