"""Every sentence of the recommendation follows from its comparison table, on constructed cases: each
combination of the runner-up distinguishable or not, the runner-up a baseline or not, and every other
baseline better / not distinguishable / worse. Words are checked against the numbers they describe:
no sentence says "better than every one" of a set that holds one it is not better than, and a
recommendation not distinguishable from its runner-up says so in its first sentence and in the report's
answer box."""

from __future__ import annotations

import itertools
import re

import pytest

from xaiopt.analysis.bootstrap import Interval, PairedDifference
from xaiopt.analysis.recommend import Comparison, Recommendation, Setting
from xaiopt.analysis.render import caution
from xaiopt.report.page import _recommendation

INTERVALS = {"better": (0.20, 0.05, 0.35), "indistinguishable": (0.02, -0.04, 0.08), "worse": (-0.2, -0.3, -0.1)}


def _diff(verdict: str) -> PairedDifference:
    d, lo, hi = INTERVALS[verdict]
    return PairedDifference(score=Interval(d, lo, hi), categories={"complexity": Interval(d, lo, hi)}, samples=32,
                            resamples=1000, confidence=0.95, seed=0)


def _setting(number: int, score: float, rank: int, baseline: str | None = None) -> Setting:
    return Setting(number=number, label=f"setting {number}", baseline=baseline, values={"sparseness": score},
                   normalized={"sparseness": score}, categories={"complexity": score},
                   category_ranks={"complexity": rank}, score=score, rank=rank, pareto=rank == 1,
                   ideal_distance=1 - score, per_sample=True)


def _recommendation_of(runner: str, runner_is_baseline: bool, others: tuple[str, ...]) -> Recommendation:
    best = _setting(7, 0.9, 1)
    second = _setting(3, 0.8, 2, "epsilon_plus" if runner_is_baseline else None)
    comparisons = [Comparison("runner-up", "", 3, _diff(runner))]
    if runner_is_baseline:
        comparisons.append(Comparison("baseline", "epsilon_plus", 3, _diff(runner)))
    for i, verdict in enumerate(others):
        comparisons.append(Comparison("baseline", f"base{i}", 10 + i, _diff(verdict)))
    return Recommendation(
        study="s", metrics=["sparseness"], directions={"sparseness": "maximize"},
        metric_categories={"sparseness": "complexity"}, weights={"complexity": 1.0}, complete_trials=12,
        settings=12, top=[best, second], compromise=None, comparisons=comparisons, missing_baselines={},
        constant_metrics=[], rule="weighted mean of category means", samples=32, resamples=1000, confidence=0.95,
        seed=0)


VERDICTS = tuple(INTERVALS)
CASES = [(runner, is_base, others) for runner in VERDICTS[:2] for is_base in (False, True)
         for n in range(0, 3) for others in itertools.product(VERDICTS, repeat=n)]


def _baseline_clauses(text: str) -> dict[str, str]:
    """Baseline name -> the verdict its clause in the baselines sentence gives it."""
    sentence = re.search(r"Against the baselines? \(.*?\), it is (.*?)\.(?: [A-Z]|$)", text, re.S)
    if sentence is None:
        return {}
    found = {}
    for clause in sentence.group(1).split("; it is "):
        verdict = ("better" if clause.startswith("distinguishably better") else
                   "worse" if clause.startswith("distinguishably worse") else
                   "indistinguishable" if clause.startswith("NOT distinguishable") else "?")
        for name in re.findall(r"(\w+) \((?:the runner-up; )?trial \d+", clause):
            found[name] = verdict
        if "every one" in clause:
            found["__every__"] = verdict
    return found


@pytest.mark.parametrize("runner,is_base,others", CASES)
def test_every_sentence_matches_the_table(runner, is_base, others):
    rec = _recommendation_of(runner, is_base, others)
    text = " ".join(rec.text().split())
    first = text.split(". It ranks")[0]
    # the first sentence carries the caution exactly when the runner-up is not distinguishable
    assert ("not distinguishable from the runner-up" in first) == (runner == "indistinguishable"), first
    assert (caution(rec) is not None) == (runner == "indistinguishable")
    runner_sentence = re.search(r"It is (NOT distinguishable from|distinguishably (better|worse) than) the "
                                r"runner-up, trial 3", text)
    assert runner_sentence is not None, text
    said = "indistinguishable" if runner_sentence.group(1).startswith("NOT") else runner_sentence.group(2)
    assert said == runner
    # the baselines sentence: every baseline, the runner-up one included, with the table's verdict
    expected = {f"base{i}": v for i, v in enumerate(others)}
    if is_base:
        expected["epsilon_plus"] = runner
    clauses = _baseline_clauses(text)
    every = clauses.pop("__every__", None)
    assert clauses == expected, (text, expected)
    if every is not None:  # "better than every one": true of every baseline
        assert set(expected.values()) == {every} and len(expected) > 1
    if not expected:
        assert "Against the baseline" not in text
    # the report's answer box says the same as the first sentence
    box = _recommendation(rec).split("</div>")[0]
    assert ("Caution: not distinguishable from the runner-up" in box) == (runner == "indistinguishable")


def test_indistinguishable_from_a_baseline_runner_up_is_never_called_better_than_every_baseline():
    # the case a user met: the runner-up is a baseline, as good; the other baselines are beaten
    rec = _recommendation_of("indistinguishable", True, ("better", "better"))
    text = " ".join(rec.text().split())
    assert "better than every one" not in text
    assert "NOT distinguishable from epsilon_plus (the runner-up; trial 3" in text
    assert "distinguishably better than base0" in text and "base1" in text
