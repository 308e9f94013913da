"""The Pareto front of a study: rows, and their table / JSON / CSV renderings.

The three renderings say which metrics the front is on and which way each metric is better:

* **table**: fits the terminal (``shutil.get_terminal_size()``, which honours ``$COLUMNS``). A title
  line names the metrics the front is on; each metric column has its direction arrow (``↑`` higher
  is better, ``↓`` lower), its numbers right-aligned in one format per column (four significant
  digits of the column's largest magnitude, so the decimal points line up; scientific notation
  when the column spans more than three decades). The explainer text gets what width is left and
  ends in ``…`` when cut. Metric columns that do not fit are left out and named in one footer line.
* **json**: ``{"study", "front_on", "metrics": [{"name", "direction", "category"}], "trials": [rows]}``.
* **csv**: one row per trial, the header names carry the direction (``sparseness (max)``).

Example::

    print(render(load_study("quickstart"), "table", metrics=["sparseness", "random_logit"], width=100))
"""

from __future__ import annotations

import csv
import io
import json
import math
import shutil
from typing import Any, Sequence

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


def metric_columns(loaded: LoadedStudy) -> list[dict[str, Any]]:
    """Each metric of the study with its direction (as the study optimizes it) and category."""
    directions = [d.name.lower() for d in loaded.study.directions]
    return [{"name": n, "direction": d, "category": c}
            for n, d, c in zip(loaded.metric_names, directions, loaded.metric_categories)]


def front_document(loaded: LoadedStudy, metrics: list[str] | None = None) -> dict[str, Any]:
    """The front on ``metrics`` (default all) as the JSON object of ``study pareto --format json``."""
    rows = pareto_rows(loaded, metrics)
    return {
        "study": loaded.study.study_name,
        "front_on": list(loaded.metric_names) if metrics is None else list(metrics),
        "metrics": metric_columns(loaded),
        "trials": rows,
    }


def render(loaded: LoadedStudy, fmt: str = "table", *, metrics: list[str] | None = None,
           columns: list[str] | None = None, width: int | None = None) -> str:
    """The front of ``loaded`` on ``metrics`` (default all) as a table, JSON or CSV.

    ``columns`` chooses the table's metric columns (default: the front's metrics first, then the
    others while they fit); ``width`` the table's width (default: the terminal's). JSON and CSV
    always carry every metric.
    """
    if fmt not in FORMATS:
        raise ConfigError(f"--format: unknown format {fmt!r} (valid: {', '.join(FORMATS)})")
    if columns is not None:
        columns = _check_names(loaded, columns, "--columns")
    doc = front_document(loaded, metrics)
    if fmt == "json":
        return json.dumps(doc, indent=2)
    if fmt == "csv":
        return _csv(doc)
    if width is None:
        width = shutil.get_terminal_size().columns
    return _table(doc, columns=columns, width=width, settings=len(distinct_complete(loaded)))


def _check_names(loaded: LoadedStudy, names: Sequence[str], flag: str) -> list[str]:
    valid = loaded.metric_names
    chosen = list(dict.fromkeys(names))
    unknown = [m for m in chosen if m not in valid]
    if unknown or not chosen:
        raise ConfigError(f"{flag}: {', '.join(unknown) or '(none)'} is not a metric of study "
                          f"{loaded.study.study_name!r} (valid: {', '.join(valid)})")
    return chosen


DIRECTION_WORD = {"maximize": "max", "minimize": "min"}
ARROW = {"maximize": "↑", "minimize": "↓"}


def _csv(doc: dict[str, Any]) -> str:
    metrics = doc["metrics"]
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["trial", *[f"{m['name']} ({DIRECTION_WORD.get(m['direction'], m['direction'])})" for m in metrics],
                "explainer"])
    for r in doc["trials"]:
        w.writerow([r["number"], *[repr(r["values"][m["name"]]) for m in metrics], _label(r)])
    return buf.getvalue()


def _label(row: dict[str, Any]) -> str:
    """The explainer settings, prefixed by the baseline's name for enqueued baselines."""
    return f"[baseline {row['baseline']}] {row['explainer_text']}" if row.get("baseline") else row["explainer_text"]


SIGNIFICANT = 4
GAP = "  "
MIN_EXPLAINER = 40  # a metric column is left out before the explainer is cut below this (a baseline's name fits)
MIN_CHOSEN_EXPLAINER = 12  # ... unless the column was asked for (--columns, --metrics)


def format_column(values: Sequence[float], significant: int = SIGNIFICANT) -> list[str]:
    """One number format for a whole column: ``significant`` digits of its largest magnitude, the
    same decimals for every value (points line up); scientific when the column's nonzero values
    span more than three decades or lie outside [1e-3, 1e6)."""
    finite = [abs(v) for v in values if math.isfinite(v)]
    big = max(finite, default=0.0)
    small = min((v for v in finite if v > 0), default=big)
    if big == 0.0:
        return [f"{v:.{significant - 1}f}" if math.isfinite(v) else str(v) for v in values]
    if big >= 1e6 or big < 1e-3 or small < big * 1e-3:
        return [f"{v:.{significant - 1}e}" for v in values]
    decimals = max(0, significant - 1 - math.floor(math.log10(big)))
    return [f"{v:.{decimals}f}" for v in values]


def _fit(text: str, width: int) -> str:
    """``text`` cut to ``width`` characters, ending in an ellipsis when cut."""
    if len(text) <= width:
        return text
    return text[: max(0, width - 1)] + "…" if width > 0 else ""


def _header_lines(name: str, arrow: str, two: bool) -> list[str]:
    """The column's header: ``name arrow`` on one line, or split at the underscore that makes it
    narrowest over two lines (``relevance_rank`` / ``accuracy ↑``)."""
    one = f"{name} {arrow}".strip()
    if not two or "_" not in name:
        return [one]
    best = [one]
    for i, ch in enumerate(name):
        if ch == "_":
            cand = [name[:i], f"{name[i + 1:]} {arrow}".strip()]
            if max(map(len, cand)) < max(map(len, best)):
                best = cand
    return best


def _left_out_note(names: list[str], width: int) -> str:
    """One line: which metric columns did not fit, as many named as the width allows, and the way out."""
    head = f"not shown in {width} columns (choose: --columns a,b): "
    listed: list[str] = []
    for i, n in enumerate(names):
        rest = len(names) - i - 1
        if len(head + ", ".join([*listed, n]) + (f", +{rest} more" if rest else "")) > width:
            break
        listed.append(n)
    if not listed:
        return head + f"{len(names)} metric column{'s' if len(names) > 1 else ''}"
    rest = len(names) - len(listed)
    return head + ", ".join(listed) + (f", +{rest} more" if rest else "")


def _table(doc: dict[str, Any], *, columns: list[str] | None, width: int, settings: int) -> str:
    metrics = {m["name"]: m for m in doc["metrics"]}
    rows = doc["trials"]
    front_on = doc["front_on"]
    everything = front_on == [m["name"] for m in doc["metrics"]]
    if columns is not None:
        wanted, optional = columns, []
    elif everything:
        wanted, optional = [], list(metrics)
    else:
        wanted, optional = list(front_on), [n for n in metrics if n not in front_on]
    candidates = [*wanted, *optional]
    cells = {n: format_column([r["values"][n] for r in rows]) for n in candidates}
    numbers = [str(r["number"]) for r in rows]
    trial_w = max([len("trial"), *map(len, numbers)])
    labels = [_label(r) for r in rows]
    explainer_w = max([len("explainer"), *map(len, labels)])

    def layout(two: bool) -> tuple[list[str], dict[str, list[str]], dict[str, int]]:
        heads = {n: _header_lines(n, ARROW.get(metrics[n]["direction"], ""), two) for n in candidates}
        widths = {n: max([*map(len, heads[n]), *map(len, cells[n])]) for n in candidates}
        used = trial_w
        shown = []
        for n in candidates:  # in order: the columns shown are always the first ones asked for
            room = MIN_CHOSEN_EXPLAINER if n in wanted else MIN_EXPLAINER
            if used + len(GAP) + widths[n] + len(GAP) + min(room, explainer_w) > width:
                break
            shown.append(n)
            used += len(GAP) + widths[n]
        return shown, heads, widths

    shown, heads, widths = layout(two=False)
    if len(shown) < len(candidates):
        shown2, heads2, widths2 = layout(two=True)
        if len(shown2) > len(shown):
            shown, heads, widths = shown2, heads2, widths2
    used = trial_w + sum(len(GAP) + widths[n] for n in shown)
    label_w = max(1, min(explainer_w, width - used - len(GAP)))
    depth = max([1, *(len(heads[n]) for n in shown)])

    on = f"all {len(front_on)} metrics" if everything else ", ".join(
        f"{n} {ARROW.get(metrics[n]['direction'], '')}".strip() for n in front_on)
    lines = [f"Pareto front of study {doc['study']!r} on {on}: {len(rows)} of {settings} distinct settings"]
    for level in range(depth):
        cols = ["trial".rjust(trial_w) if level == depth - 1 else " " * trial_w]
        for n in shown:
            h = heads[n]
            text = h[level - (depth - len(h))] if level >= depth - len(h) else ""
            cols.append(text.rjust(widths[n]))
        cols.append("explainer" if level == depth - 1 else "")
        lines.append(GAP.join(cols).rstrip())
    lines.append(GAP.join(["-" * trial_w, *("-" * widths[n] for n in shown), "-" * min(label_w, explainer_w)]))
    for i in range(len(rows)):
        cols = [numbers[i].rjust(trial_w), *(cells[n][i].rjust(widths[n]) for n in shown), _fit(labels[i], label_w)]
        lines.append(GAP.join(cols).rstrip())
    if not rows:
        lines.append("(no complete trials yet)")
    notes = []
    left_out = [n for n in candidates if n not in shown]
    if left_out:
        notes.append(_left_out_note(left_out, width))
    if any(len(lab) > label_w for lab in labels):
        notes.append("explainer text cut to fit; --format json has it in full")
    lines += notes
    return "\n".join(_fit(line, width) for line in lines)
