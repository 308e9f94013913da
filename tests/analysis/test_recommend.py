"""The recommendation on constructed studies: directions, weights, bootstrap verdicts, compromise,
duplicates and failed trials, determinism, the command line."""

from __future__ import annotations

import json

import numpy as np
import pytest
from optuna.trial import TrialState

from xaiopt.analysis import Scorer, paired_bootstrap, recommend
from xaiopt.cli import main
from xaiopt.errors import ConfigError

from .conftest import build_study, trial

N = 32
RNG = np.random.default_rng(7)
NOISE = RNG.normal(0.0, 0.05, size=N)


def words(text: str) -> str:
    """The text with its line wrapping undone."""
    return " ".join(text.split())


def flat(value: float) -> np.ndarray:
    return np.full(N, value) + NOISE * 0.1


def test_a_minimized_metric_is_never_ranked_as_if_larger_were_better(url):
    # complexity and avg_sensitivity are minimized; sparseness is equal (to the noise) everywhere, so the
    # minimized metrics decide: trial 1 has the lowest of both, trial 2 the highest
    metrics = ["sparseness", "complexity", "avg_sensitivity"]
    loaded = build_study(url, metrics, [
        trial({"sparseness": flat(0.5), "complexity": flat(3.0), "avg_sensitivity": flat(0.4)}),
        trial({"sparseness": flat(0.5), "complexity": flat(2.0), "avg_sensitivity": flat(0.1)}),
        trial({"sparseness": flat(0.5), "complexity": flat(4.0), "avg_sensitivity": flat(0.9)}),
    ])
    rec = recommend(loaded)
    assert rec.directions == {"sparseness": "maximize", "complexity": "minimize", "avg_sensitivity": "minimize"}
    assert [s.number for s in rec.top] == [1, 0, 2]
    best = rec.best
    assert best.normalized["complexity"] == 1.0 and best.normalized["avg_sensitivity"] == 1.0
    assert rec.top[-1].normalized["avg_sensitivity"] == 0.0
    assert best.category_ranks == {"complexity": 1, "robustness": 1}
    assert rec.top[-1].category_ranks == {"complexity": 3, "robustness": 3}
    assert rec.constant_metrics == ["sparseness"]
    assert best.normalized["sparseness"] == 0.5
    # the compromise is the same setting here: trial 1 is at the ideal point
    assert rec.compromise.number == 1 and rec.compromise.ideal_distance == pytest.approx(0.0)
    assert "Minimized (lower is better, flipped before averaging): complexity, avg_sensitivity" in words(rec.text())


def test_the_scorer_flips_minimized_metrics():
    values = np.array([[1.0, 10.0], [3.0, 30.0], [2.0, 20.0]])
    scorer = Scorer.fit(values, metrics=["a", "b"], directions=["maximize", "minimize"],
                        categories=["faithfulness", "robustness"], weights={"faithfulness": 1, "robustness": 1})
    np.testing.assert_allclose(scorer.normalize(values), [[0.0, 1.0], [1.0, 0.0], [0.5, 0.5]])
    np.testing.assert_allclose(scorer.score(values), [0.5, 0.5, 0.5])


def test_identical_per_sample_scores_are_indistinguishable(url):
    same = {"sparseness": 0.5 + NOISE, "relevance_rank_accuracy": 0.6 + NOISE}
    worse = {"sparseness": 0.2 + NOISE, "relevance_rank_accuracy": 0.1 + NOISE}
    loaded = build_study(url, ["sparseness", "relevance_rank_accuracy"],
                         [trial(worse), trial(same), trial(same, label="same-again")])
    rec = recommend(loaded)
    assert rec.best.number == 1
    runner = next(c for c in rec.comparisons if c.kind == "runner-up")
    assert runner.other == 2
    assert runner.verdict == "indistinguishable"
    assert runner.difference.score.low == runner.difference.score.high == 0.0
    assert "It is NOT distinguishable from the runner-up, trial 2" in words(rec.text())


def test_a_clear_shift_is_distinguishable_and_noise_is_not(url):
    base = 0.5 + RNG.normal(0.0, 0.1, size=N)
    other = RNG.normal(0.0, 0.1, size=N)
    loaded = build_study(url, ["sparseness", "pixel_flipping"], [
        trial({"sparseness": base, "pixel_flipping": 0.3 + other}),
        # the same map quality shifted down by 0.2 on every sample, pixel flipping 0.1 worse (higher)
        trial({"sparseness": base - 0.2, "pixel_flipping": 0.4 + other}, baseline="epsilon_plus:plain"),
        # the top setting plus independent noise of the same size as the spread: no real difference
        trial({"sparseness": base + RNG.normal(0.0, 0.1, size=N), "pixel_flipping": 0.3 + other}),
    ])
    rec = recommend(loaded)
    by_other = {c.other: c for c in rec.comparisons}
    shifted = paired_bootstrap(
        _scores(loaded, 0), _scores(loaded, 1), Scorer.fit(
            np.array([t.values for t in loaded.study.trials]), metrics=["sparseness", "pixel_flipping"],
            directions=["maximize", "minimize"], categories=["complexity", "faithfulness"],
            weights={"complexity": 1, "faithfulness": 1}),
        observed_a=loaded.study.trials[0].values, observed_b=loaded.study.trials[1].values)
    assert shifted.score.distinguishable and shifted.score.low > 0
    assert shifted.categories["complexity"].distinguishable and shifted.categories["faithfulness"].distinguishable
    noisy = by_other.get(2) or by_other.get(0)
    assert noisy.verdict == "indistinguishable"
    assert noisy.difference.score.low < 0 < noisy.difference.score.high
    assert {rec.best.number, rec.top[1].number} == {0, 2}
    assert by_other[1].verdict == "better"
    assert ("Against the baseline (score difference, 95% interval), it is distinguishably better than "
            "epsilon_plus:plain (trial 1: +") in words(rec.text())


def _scores(loaded, number):
    from xaiopt.study import per_sample_scores

    return per_sample_scores(loaded.study.trials[number])


def test_baselines_duplicates_and_failures(url):
    m = ["sparseness", "region_perturbation"]
    good = {"sparseness": 0.8 + NOISE, "region_perturbation": 0.5 + NOISE}
    ok = {"sparseness": 0.6 + NOISE, "region_perturbation": 0.45 + NOISE}
    bad = {"sparseness": 0.3 + NOISE, "region_perturbation": 0.2 + NOISE}
    loaded = build_study(url, m, [
        trial(bad, label="eps-plus", baseline="epsilon_plus:plain"),
        trial(ok, label="alpha", baseline="alpha2beta1:plain"),
        trial(good, label="tuned"),
        trial(good, label="tuned", duplicate_of=2),             # a repeat: not a second candidate
        trial(bad, label="eps-plus", duplicate_of=0),           # a repeat of a baseline
        trial(label="broken", state=TrialState.FAIL, fail_reason="NaN"),
        trial(label="flat-first", state=TrialState.FAIL, baseline="epsilon_plus_flat:plain"),
    ])
    rec = recommend(loaded)
    assert rec.complete_trials == 5 and rec.settings == 3
    assert [s.number for s in rec.top] == [2, 1, 0]
    kinds = [(c.kind, c.name, c.other, c.verdict) for c in rec.comparisons]
    assert kinds == [("runner-up", "runner-up", 1, "better"), ("baseline", "epsilon_plus:plain", 0, "better"),
                     ("baseline", "alpha2beta1:plain", 1, "better")]
    assert rec.missing_baselines == {"epsilon_plus_flat:plain": "fail"}
    text = words(rec.text())
    assert "the runner-up, trial 1 (also the baseline alpha2beta1:plain)" in text
    assert "The baseline epsilon_plus_flat:plain has no complete trial (fail)." in text


def test_weights_change_the_choice_and_the_compromise_stays(url):
    # normalized: A = (1, 0), B = (0, 1), C = (0.6, 0.6); C is nearest the ideal point (1, 1)
    m = ["region_perturbation", "relevance_mass_accuracy"]
    loaded = build_study(url, m, [
        trial({"region_perturbation": flat(1.0), "relevance_mass_accuracy": flat(0.0)}, label="A"),
        trial({"region_perturbation": flat(0.0), "relevance_mass_accuracy": flat(1.0)}, label="B"),
        trial({"region_perturbation": flat(0.6), "relevance_mass_accuracy": flat(0.6)}, label="C"),
    ])
    equal = recommend(loaded)
    assert equal.weights == {"faithfulness": 1.0, "localization": 1.0}
    assert equal.best.label == "C" and equal.compromise.label == "C"
    faith = recommend(loaded, prefer="faithfulness=3")
    assert faith.weights == {"faithfulness": 3.0, "localization": 1.0}
    assert faith.best.label == "A" and faith.best.score == pytest.approx(0.75)
    assert faith.compromise.label == "C" and faith.compromise.ideal_distance == pytest.approx(np.sqrt(0.32))
    assert any(c.kind == "compromise" and c.other == 2 for c in faith.comparisons)
    loc = recommend(loaded, prefer=["localization=3", "faithfulness=1"])
    assert loc.best.label == "B"
    assert recommend(loaded, prefer={"localization": 0}).best.label == "A"


def test_deterministic_for_a_study_and_a_preference(url):
    m = ["sparseness", "avg_sensitivity"]
    loaded = build_study(url, m, [
        trial({"sparseness": 0.5 + RNG.normal(0, 0.1, N), "avg_sensitivity": 0.3 + RNG.normal(0, 0.1, N)}),
        trial({"sparseness": 0.52 + RNG.normal(0, 0.1, N), "avg_sensitivity": 0.31 + RNG.normal(0, 0.1, N)}),
        trial({"sparseness": 0.4 + RNG.normal(0, 0.1, N), "avg_sensitivity": 0.5 + RNG.normal(0, 0.1, N)}),
    ])
    first = recommend(loaded, prefer="robustness=2")
    again = recommend("made", storage=url, prefer="robustness=2")
    assert first.to_dict() == again.to_dict()
    assert first.text() == again.text()
    other_seed = recommend(loaded, prefer="robustness=2", seed=1)
    assert other_seed.comparisons[0].difference.score.low != first.comparisons[0].difference.score.low


def test_missing_and_batch_level_per_sample_scores(url):
    m = ["sparseness", "relevance_mass_accuracy"]
    loaded = build_study(url, m, [
        trial({"sparseness": flat(0.9), "relevance_mass_accuracy": flat(0.9)}),
        # a batch-level metric stores one number: it is held at its mean in every resample
        trial({"sparseness": flat(0.5), "relevance_mass_accuracy": [0.5]}),
        trial({"sparseness": flat(0.1), "relevance_mass_accuracy": flat(0.1)}, store=False,
              baseline="alpha2beta1:plain"),
    ])
    rec = recommend(loaded)
    runner, last = rec.comparisons[0], rec.comparisons[1]
    assert runner.other == 1 and runner.difference.held_fixed == ["relevance_mass_accuracy"]
    assert runner.verdict == "better"
    assert last.other == 2 and last.verdict == "unknown" and last.difference is None
    text = words(rec.text())
    assert "no per-sample scores stored" in text and "1 of 3 settings stored no per-sample scores" in text


def test_preferences_are_checked():
    from xaiopt.analysis import category_weights

    present = ["complexity", "faithfulness"]
    assert category_weights(None, present=present) == {"complexity": 1.0, "faithfulness": 1.0}
    with pytest.raises(ConfigError, match=r"unknown category 'faith' \(valid: complexity, faithfulness"):
        category_weights("faith=2", present=present)
    with pytest.raises(ConfigError, match="the study has no robustness metric"):
        category_weights("robustness=2", present=present)
    with pytest.raises(ConfigError, match="must be CATEGORY=WEIGHT"):
        category_weights("faithfulness", present=present)
    with pytest.raises(ConfigError, match="must be a number >= 0"):
        category_weights("faithfulness=-1", present=present)
    with pytest.raises(ConfigError, match="all category weights are 0"):
        category_weights("faithfulness=0,complexity=0", present=present)


def test_command_line(url, capsys):
    m = ["sparseness", "region_perturbation"]
    build_study(url, m, [
        trial({"sparseness": flat(0.8), "region_perturbation": flat(0.2)}),
        trial({"sparseness": flat(0.2), "region_perturbation": flat(0.7)}),
        trial({"sparseness": flat(0.5), "region_perturbation": flat(0.5)}, baseline="epsilon_plus:plain"),
    ])
    assert main(["study", "recommend", "made", "--storage", url, "--prefer", "faithfulness=2"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Recommended for study 'made': trial 1 ")
    assert "weights complexity 1, faithfulness 2" in words(out) and "Top 3:" in out
    assert main(["study", "recommend", "made", "--storage", url, "--format", "json", "--top", "1"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [s["number"] for s in data["top"]] == [2]
    assert data["compromise"]["number"] == 2
    assert main(["study", "recommend", "made", "--storage", url, "--prefer", "faithfulnes=2"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("xaiopt: error: --prefer: unknown category 'faithfulnes'")
