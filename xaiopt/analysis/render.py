"""The recommendation as text a person reads: one paragraph, then the top settings and the intervals."""

from __future__ import annotations

import textwrap
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from xaiopt.analysis.recommend import Comparison, Recommendation, Setting

_ARROW = {"maximize": "↑", "minimize": "↓"}
_WIDTH = 100


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _interval(c: "Comparison", confidence: float) -> str:
    s = c.difference.score
    return f"difference {s.difference:+.3f}, {confidence:.0%} interval [{s.low:+.3f}, {s.high:+.3f}]"


def _role(c: "Comparison") -> str:
    return {"runner-up": "the runner-up", "baseline": f"the baseline {c.name}",
            "compromise": "the compromise"}[c.kind]


def _groups(rec: "Recommendation") -> list[list["Comparison"]]:
    """The comparisons grouped by the other trial (the runner-up may also be a baseline), in order."""
    groups: dict[int, list["Comparison"]] = {}
    for c in rec.comparisons:
        groups.setdefault(c.other, []).append(c)
    return list(groups.values())


def _against(group: list["Comparison"], rec: "Recommendation") -> str:
    """One sentence: how the recommended setting stands against another, said plainly."""
    c = group[0]
    who = f"{_role(c)}, trial {c.other}"
    also = [_role(o) for o in group[1:]]
    if also:
        who += f" (also {' and '.join(also)})"
    elif c.note:
        who += f" ({c.note})"
    verdict = c.verdict
    if verdict == "unknown":
        return f"It cannot be compared with {who} on the samples (no per-sample scores stored)."
    text = _interval(c, rec.confidence)
    if verdict == "indistinguishable":
        return f"It is NOT distinguishable from {who}: {text} contains 0."
    return f"It is distinguishably {verdict} than {who}: {text}."


def caution(rec: "Recommendation") -> str | None:
    """The warning the headline carries when the runner-up is as good on these samples (None otherwise):
    the text's first sentence and the report's answer box both say it, from the same comparison."""
    runner = next((c for c in rec.comparisons if c.kind == "runner-up"), None)
    if runner is None or runner.verdict != "indistinguishable":
        return None
    base = next((c.name for c in rec.comparisons if c.kind == "baseline" and c.other == runner.other), None)
    who = f"trial {runner.other}" + (f", the baseline {base}" if base else "")
    return (f"not distinguishable from the runner-up ({who}) on these {rec.samples} samples: either may be the "
            f"better setting")


def _baselines(groups: list[list["Comparison"]], rec: "Recommendation") -> str:
    """One sentence for all baselines, grouped by verdict: '... better than A (trial 0: +0.27 [...]), B (...)'.
    A baseline that is also the runner-up is among them, with the runner-up's very verdict."""
    by: dict[str, list[str]] = {}
    for group in groups:
        c = next(o for o in group if o.kind == "baseline")
        role = "the runner-up; " if any(o.kind == "runner-up" for o in group) else ""
        note = f"; {c.note}" if c.note else ""
        if c.verdict == "unknown":
            item = f"{c.name} ({role}trial {c.other}{note}: no per-sample scores stored)"
        else:
            d = c.difference.score
            item = f"{c.name} ({role}trial {c.other}{note}: {d.difference:+.3f} [{d.low:+.3f}, {d.high:+.3f}])"
        by.setdefault(c.verdict, []).append(item)
    said = {"better": ("distinguishably better than", ""), "worse": ("distinguishably worse than", ""),
            "indistinguishable": ("NOT distinguishable from", ", intervals that contain 0"),
            "unknown": ("not comparable on the samples with", "")}
    every = "every one: " if len(by) == 1 and len(groups) > 1 else ""
    clauses = [f"{said[v][0]} {every}{', '.join(by[v])}{said[v][1]}" for v in said if v in by]
    return (f"Against the baseline{'s' if len(groups) > 1 else ''} (score difference, {rec.confidence:.0%} "
            f"interval), it is {'; it is '.join(clauses)}.")


def _who(s: "Setting") -> str:
    base = f", the baseline {s.baseline}" if s.baseline else ""
    return f"trial {s.number}{base} ({s.label})"


def _ranks(s: "Setting", rec: "Recommendation") -> str:
    ranked = sorted(s.category_ranks.items(), key=lambda kv: (kv[1], kv[0]))
    return ", ".join(f"{_ordinal(r)} in {c}" for c, r in ranked)


def _score_name(rec: "Recommendation") -> str:
    return "median-rank score" if rec.method == "rank" else "weighted score"


def _paragraph(rec: "Recommendation") -> str:
    best = rec.best
    warning = caution(rec)
    parts = [f"Recommended for study {rec.study!r}: {_who(best)}, the best {_score_name(rec)} ({best.score:.3f} of 1) "
             f"among {rec.settings} distinct settings ({rec.complete_trials} complete trials)"
             + (f", but {warning}. " if warning else ". ")
             + f"It ranks {_ranks(best, rec)} (of {rec.settings})."]
    tied = [s.number for s in rec.top[1:] if s.score == best.score]
    if tied:
        parts.append(f"Its score ties with trial{'s' if len(tied) > 1 else ''} {', '.join(map(str, tied))}; "
                     f"the tie goes to the earlier trial.")
    groups = _groups(rec)
    parts += [_against(g, rec) for g in groups if g[0].kind == "runner-up"]
    baselines = [g for g in groups if any(c.kind == "baseline" for c in g)]
    if baselines:
        parts.append(_baselines(baselines, rec))
    comp = rec.compromise
    if comp is not None:
        on = f"{rec.pareto_size} setting{'s' if rec.pareto_size != 1 else ''} on it"
        head = (f"Second answer, the compromise of the Pareto front ({on}; the front's "
                f"setting nearest the ideal point where every metric is at its study best)")
        if comp.number == best.number:
            parts.append(f"{head}: the same setting (distance {comp.ideal_distance:.3f}).")
        else:
            parts.append(f"{head}: {_who(comp)}, distance {comp.ideal_distance:.3f}, score {comp.score:.3f}, "
                         f"rank {comp.rank}.")
            group = next(g for g in _groups(rec) if g[0].other == comp.number)
            if group[0].kind == "compromise":
                parts.append(_against(group, rec))
    if any(c.verdict == "indistinguishable" for c in rec.comparisons):
        parts.append(f"Not distinguishable means that on these {rec.samples} samples the difference is within "
                     f"the noise of the sample: either may be the better setting (more samples, data.n_samples, "
                     f"narrow the interval).")
    for label, state in rec.missing_baselines.items():
        parts.append(f"The baseline {label} has no complete trial ({state}).")
    v = rec.validation
    if v is not None:
        parts.append(f"Held-out check ({v['holdout_samples']} samples the search never saw, `xaiopt study "
                     f"validate`): {v['verdict']}")
    return " ".join(parts)


def _rule(rec: "Recommendation") -> str:
    weights = ", ".join(f"{c} {w:g}" for c, w in rec.weights.items())
    equal = " (equal, as in Pahde et al. 2023)" if len(set(rec.weights.values())) == 1 else ""
    if rec.weights_from == "decision.prefer":
        equal += " (the study's decision.prefer)"
    minimized = [m for m, d in rec.directions.items() if d == "minimize"]
    lines = [f"How it was chosen: {rec.rule}; weights {weights}{equal}."]
    if minimized:
        before = "ranking" if rec.method == "rank" else "averaging"
        lines.append(f"Minimized (lower is better, flipped before {before}): {', '.join(minimized)}.")
    if rec.constant_metrics:
        lines.append(f"Equal on every setting, so ranking nothing (0.5 everywhere): {', '.join(rec.constant_metrics)}.")
    if rec.samples:
        lines.append(f"Confidence: paired bootstrap over the {rec.samples} evaluation samples, {rec.resamples} "
                     f"resamples (seed {rec.seed}), {rec.confidence:.0%} percentile intervals of the score difference "
                     f"(recommended minus other) with the study's normalization held fixed; an interval containing 0 "
                     f"is 'not distinguishable'.")
    held = sorted({m for c in rec.comparisons if c.difference for m in c.difference.held_fixed})
    if held:
        lines.append(f"Held at their means in every resample (no score per sample): {', '.join(held)}.")
    lines += rec.notes
    return " ".join(lines)


def _setting_block(s: "Setting", rec: "Recommendation") -> list[str]:
    ranks = ", ".join(f"{c} {r}" for c, r in s.category_ranks.items())
    values = "  ".join(f"{m} {_ARROW.get(rec.directions[m], '')} {v:.4g}" for m, v in s.values.items())
    flags = "".join([" [Pareto]" if s.pareto else "", f" [baseline {s.baseline}]" if s.baseline else ""])
    head = f"{s.rank:>2}. trial {s.number}  score {s.score:.3f}  rank per category (of {rec.settings}): {ranks}{flags}"
    return [*textwrap.wrap(head, _WIDTH, subsequent_indent="    "),
            *textwrap.wrap(values, _WIDTH, initial_indent="    ", subsequent_indent="    "),
            *textwrap.wrap(s.label, _WIDTH, initial_indent="    ", subsequent_indent="    ")]


def render_text(rec: "Recommendation") -> str:
    # no breaks at hyphens: "per-sample" and "runner-up" stay whole
    out = [textwrap.fill(_paragraph(rec), _WIDTH, break_on_hyphens=False), "",
           textwrap.fill(_rule(rec), _WIDTH, break_on_hyphens=False), ""]
    if rec.sanity is not None and rec.sanity["lines"]:
        for line in rec.sanity["lines"]:
            indent = "  " if line.startswith("  ") else ""
            out += textwrap.wrap(line.strip(), _WIDTH, initial_indent=indent, subsequent_indent=indent + "    ",
                                 break_on_hyphens=False)
        out.append("")
    out.append(f"Top {len(rec.top)}:")
    for s in rec.top:
        out += _setting_block(s, rec)
    if rec.compromise is not None and all(s.number != rec.compromise.number for s in rec.top):
        out.append("Compromise:")
        out += _setting_block(rec.compromise, rec)
    compared = [c for c in rec.comparisons if c.difference is not None]
    if compared:
        out += ["", f"Differences by category, trial {rec.best.number} minus other ({rec.confidence:.0%} interval; "
                    f"* = distinguishable):"]
        for group in _groups(rec):
            c = group[0]
            if c.difference is None:
                continue
            name = " = ".join(_role(o).removeprefix("the ") for o in group)
            cats = "  ".join(f"{k} {v.difference:+.3f} [{v.low:+.3f}, {v.high:+.3f}]{'*' if v.distinguishable else ''}"
                             for k, v in c.difference.categories.items())
            out += textwrap.wrap(f"vs {name} (trial {c.other}): {cats}", _WIDTH, initial_indent="  ",
                                 subsequent_indent="      ")
    return "\n".join(out)
