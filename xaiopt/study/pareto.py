"""The Pareto front of a study: rows, and their table / JSON / CSV renderings."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from optuna.trial import FrozenTrial, TrialState

from xaiopt.errors import ConfigError
from xaiopt.study.manage import LoadedStudy

FORMATS = ("table", "json", "csv")


def trial_row(t: FrozenTrial, metric_names: list[str]) -> dict[str, Any]:
    return {
        "number": t.number,
        "values": dict(zip(metric_names, t.values or [])),
        "explainer": t.user_attrs.get("explainer"),
        "explainer_text": t.user_attrs.get("explainer_text", ""),
        "params": t.params,
        "seconds": t.user_attrs.get("seconds", {}).get("total"),
        "baseline": t.user_attrs.get("baseline"),
    }


def pareto_rows(loaded: LoadedStudy) -> list[dict[str, Any]]:
    """The Pareto-optimal complete trials, by trial number (a repeat of an earlier trial's
    configuration, marked ``duplicate_of``, is listed once, under the earlier trial)."""
    names = loaded.metric_names
    best = loaded.study.best_trials if loaded.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) else []
    best = [t for t in best if "duplicate_of" not in t.user_attrs]
    return [trial_row(t, names) for t in sorted(best, key=lambda t: t.number)]


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
