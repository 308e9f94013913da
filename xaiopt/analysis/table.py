"""The paper's canonization table from one or more studies (``xaiopt study table``).

Pahde et al. (2023) report the canonization comparison as one table: a row per model and method,
a column per metric and canonization (no / yes), each metric's direction in its header and the best
value of each column in bold. :func:`paper_table` builds that table from studies (one per model, as
the ``paper_canonization_*`` studies are): a row is a pair of distinct complete settings whose
explainer specs differ only in ``canonize`` (the enqueued ``NAME:canonized`` / ``NAME:plain``
baselines are such pairs), named by the baseline (``epsilon_plus``) or, for a pair the search found,
by its settings without ``canonize``. The best of a column is the best value in the metric's
direction among the table's rows; ties (float32 resolution) are all marked.

Example::

    table = paper_table([load_study("paper-canonization-resnet18"), load_study("paper-canonization-vgg16bn")])
    print(table.render("markdown"))
"""

from __future__ import annotations

import csv
import html
import io
import json
import math
from dataclasses import dataclass, field

from optuna.trial import FrozenTrial, TrialState

from xaiopt.errors import ConfigError, StudyError
from xaiopt.objective.attrs import baseline, distinct_settings, explainer_text, spec_dict
from xaiopt.study.manage import LoadedStudy

FORMATS = ("text", "markdown", "csv", "latex")
VARIANTS = ("no", "yes")  # canonized: the two columns of a metric
ARROW = {"maximize": "↑", "minimize": "↓"}
_LATEX = {"\\": r"\textbackslash{}", "_": r"\_", "&": r"\&", "%": r"\%", "#": r"\#", "$": r"\$", "{": r"\{",
          "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def _latex_escape(text: str) -> str:
    return "".join(_LATEX.get(c, c) for c in text)


@dataclass(frozen=True)
class Row:
    """One model x method: ``values[metric]`` is (plain, canonized), None where a study lacks the metric."""

    study: str
    model: str
    method: str
    trials: tuple[int, int]  # (plain, canonized) trial numbers
    values: dict[str, tuple[float | None, float | None]]


@dataclass(frozen=True)
class PaperTable:
    metrics: list[str]
    directions: dict[str, str]
    rows: list[Row]
    # (metric, "no" / "yes") -> indices of the rows holding the column's best value
    best: dict[tuple[str, str], set[int]] = field(default_factory=dict)

    def cell(self, i: int, metric: str, variant: str) -> float | None:
        return self.rows[i].values.get(metric, (None, None))[VARIANTS.index(variant)]

    def render(self, fmt: str = "text") -> str:
        if fmt not in FORMATS:
            raise ConfigError(f"--format: {fmt!r} is not a table format (valid: {', '.join(FORMATS)})")
        return {"text": self._text, "markdown": self._markdown, "csv": self._csv, "latex": self._latex}[fmt]()

    def _columns(self) -> list[tuple[str, str]]:
        return [(m, v) for m in self.metrics for v in VARIANTS]

    def _fmt(self, i: int, metric: str, variant: str, mark: str = "{}") -> str:
        value = self.cell(i, metric, variant)
        if value is None:
            return "-"
        text = f"{value:.4g}" if math.isfinite(value) else "n/a"
        return mark.format(text) if i in self.best.get((metric, variant), set()) else text

    def _head(self, metric: str) -> str:
        return f"{metric} {ARROW[self.directions[metric]]}"

    def _text(self) -> str:
        cols = self._columns()
        body = [[r.model, r.method] + [self._fmt(i, m, v, "{}*") for m, v in cols] for i, r in enumerate(self.rows)]
        top = ["", ""] + [self._head(m) if v == "no" else "" for m, v in cols]
        sub = ["model", "method"] + [f"canonized: {v}" for _, v in cols]
        widths = [max(len(x[k]) for x in [sub, *body]) for k in range(len(sub))]
        # a metric's header spans its two columns
        for k in range(2, len(cols) + 2, 2):
            need = len(top[k]) - (widths[k] + 2 + widths[k + 1])
            if need > 0:
                widths[k + 1] += need
        lines = []
        line = "  ".join(top[k].ljust(widths[k]) if k < 2 else "" for k in range(2))
        for k in range(2, len(cols) + 2, 2):
            line += "  " + top[k].ljust(widths[k] + 2 + widths[k + 1])
        lines.append(line.rstrip())
        for row in [sub, *body]:
            lines.append("  ".join(x.ljust(w) if k < 2 else x.rjust(w) for k, (x, w) in enumerate(zip(row, widths)))
                         .rstrip())
        lines.append("* the best of its column (each metric in its direction: ↑ larger is better, ↓ smaller)")
        return "\n".join(lines)

    def _markdown(self) -> str:
        cols = self._columns()
        head = "| model | method | " + " | ".join(f"{self._head(m)} canonized: {v}" for m, v in cols) + " |"
        lines = [head, "|---|---|" + "---:|" * len(cols)]
        for i, r in enumerate(self.rows):
            lines.append(f"| {r.model} | {r.method} | "
                         + " | ".join(self._fmt(i, m, v, "**{}**") for m, v in cols) + " |")
        return "\n".join(lines)

    def _csv(self) -> str:
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["study", "model", "method", "trial_plain", "trial_canonized"]
                        + [f"{m} ({self.directions[m]}) canonized={v}" for m, v in self._columns()])
        for i, r in enumerate(self.rows):
            cells = [self.cell(i, m, v) for m, v in self._columns()]
            writer.writerow([r.study, r.model, r.method, *r.trials] + ["" if c is None else repr(c) for c in cells])
        return out.getvalue()

    def _latex(self) -> str:
        arrows = {"maximize": r"$\uparrow$", "minimize": r"$\downarrow$"}
        lines = [r"\begin{tabular}{ll" + "rr" * len(self.metrics) + "}", r"\toprule",
                 " & & " + " & ".join(rf"\multicolumn{{2}}{{c}}{{{_latex_escape(m)} {arrows[self.directions[m]]}}}"
                                      for m in self.metrics) + r" \\",
                 "model & method & " + " & ".join("no & yes" for _ in self.metrics) + r" \\", r"\midrule"]
        for i, r in enumerate(self.rows):
            cells = [self._fmt(i, m, v, r"\textbf{{{}}}") for m, v in self._columns()]
            lines.append(f"{_latex_escape(r.model)} & {_latex_escape(r.method)} & " + " & ".join(cells) + r" \\")
        lines += [r"\bottomrule", r"\end{tabular}"]
        return "\n".join(lines)

    def html(self) -> str:
        cols = self._columns()
        head = ("<tr><th rowspan='2'>model</th><th rowspan='2'>method</th>"
                + "".join(f"<th colspan='2'>{html.escape(self._head(m))}</th>" for m in self.metrics)
                + "</tr><tr>" + "".join(f"<th>canonized: {v}</th>" for _, v in cols) + "</tr>")
        body = "".join(
            f"<tr><td>{html.escape(r.model)}</td><td>{html.escape(r.method)}</td>"
            + "".join(f"<td class='num'>{self._fmt(i, m, v, '<b>{}</b>')}</td>" for m, v in cols) + "</tr>"
            for i, r in enumerate(self.rows))
        return f"<table>{head}{body}</table>"

    def to_json(self) -> str:
        return json.dumps({"metrics": self.metrics, "directions": self.directions,
                           "rows": [{"study": r.study, "model": r.model, "method": r.method,
                                     "trials": {"plain": r.trials[0], "canonized": r.trials[1]},
                                     "values": {m: {"no": p, "yes": c} for m, (p, c) in r.values.items()}}
                                    for r in self.rows],
                           "best": {f"{m} canonized={v}": sorted(ix) for (m, v), ix in self.best.items()}}, indent=2)


def canonize_pairs(settings: list[FrozenTrial]) -> list[tuple[FrozenTrial, FrozenTrial]]:
    """(canonized, plain) among ``settings`` whose explainer specs differ only in ``canonize``, by trial number."""
    by_rest: dict[str, dict[bool, FrozenTrial]] = {}
    for t in settings:
        spec = spec_dict(t)
        if spec is None or "canonize" not in spec:
            continue
        rest = json.dumps({k: v for k, v in spec.items() if k != "canonize"}, sort_keys=True)
        by_rest.setdefault(rest, {}).setdefault(bool(spec["canonize"]), t)
    pairs = [(d[True], d[False]) for d in by_rest.values() if True in d and False in d]
    return sorted(pairs, key=lambda p: min(p[0].number, p[1].number))


def method_name(canon: FrozenTrial, plain: FrozenTrial) -> str:
    """The baseline's name without its variant (``epsilon_plus``), else the settings without ``canonize``."""
    names = {(baseline(t) or "").split(":")[0] for t in (canon, plain)}
    if len(names) == 1 and "" not in names:
        return names.pop()
    words = [w for w in explainer_text(canon).split() if not w.startswith("canonize=")]
    return " ".join(words) or f"trials {canon.number}/{plain.number}"


def paper_table(studies: list[LoadedStudy]) -> PaperTable:
    """The canonization table of ``studies`` (rows in study order, then by trial number); raises
    :class:`StudyError` naming a study that holds no canonized / plain pair."""
    if not studies:
        raise ConfigError("study table: name at least one study")
    metrics: list[str] = []
    directions: dict[str, str] = {}
    rows: list[Row] = []
    for loaded in studies:
        name = loaded.study.study_name
        names = loaded.metric_names
        dirs = [d.name.lower() for d in loaded.study.directions]
        for m, d in zip(names, dirs):
            if directions.setdefault(m, d) != d:
                raise StudyError(f"study table: metric {m} is maximized in one study and minimized in another "
                                 f"({name}); combine studies whose metrics agree")
            if m not in metrics:
                metrics.append(m)
        complete = [t for t in loaded.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                    if t.values is not None]
        pairs = canonize_pairs(distinct_settings(complete)[0])
        if not pairs:
            raise StudyError(f"study table: study {name!r} has no setting evaluated both canonized and plain (valid: "
                             f"a study whose space has canonize: [true, false], e.g. with the baselines "
                             f"NAME:canonized and NAME:plain, as the paper_canonization_* studies)")
        for canon, plain in pairs:
            values = {m: (float(plain.values[j]), float(canon.values[j])) for j, m in enumerate(names)}
            rows.append(Row(study=name, model=loaded.config.model.name, method=method_name(canon, plain),
                            trials=(plain.number, canon.number), values=values))
    best: dict[tuple[str, str], set[int]] = {}
    for m in metrics:
        sign = 1.0 if directions[m] == "maximize" else -1.0
        for k, v in enumerate(VARIANTS):
            cells = [(i, r.values[m][k]) for i, r in enumerate(rows) if m in r.values]
            finite = [(i, x) for i, x in cells if x is not None and math.isfinite(x)]
            if not finite:
                continue
            top = max(sign * x for _, x in finite)
            best[(m, v)] = {i for i, x in finite if math.isclose(sign * x, top, rel_tol=1e-6, abs_tol=1e-12)}
    return PaperTable(metrics=metrics, directions=directions, rows=rows, best=best)
