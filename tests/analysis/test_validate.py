"""Held-out validation on constructed studies: pure noise does not hold, a real shared effect holds."""

from __future__ import annotations

import numpy as np
import optuna
import pytest
from scipy.stats import kendalltau

from xaiopt.analysis.validate import VALIDATION_ATTR, kendall_tau_b, validate

from .conftest import build_study, trial

METRICS = ["sparseness", "relevance_mass_accuracy"]  # complexity and localization, both maximized
N_SEARCH, N_HELD = 48, 32


def _study(url, quality, rng, *, n=N_SEARCH, noise=0.1, baselines=(0, 1)):
    """Settings whose per-sample scores are quality + a per-sample effect shared by all settings + noise."""
    shared = {m: rng.normal(0.0, 0.1, size=n) for m in METRICS}
    trials = []
    for k, q in enumerate(quality):
        per = {m: 0.5 + q + shared[m] + rng.normal(0.0, noise, size=n) for m in METRICS}
        extra = {"baseline": f"base{k}"} if k in baselines else {}
        trials.append(trial(per, label=f"setting-{k}", **extra))
    return build_study(url, METRICS, trials)


def _evaluator(quality, rng, *, noise=0.1):
    shared = {m: rng.normal(0.0, 0.1, size=N_HELD) for m in METRICS}
    draws = {}

    def evaluate(spec):
        k = int(spec["label"].split("-")[1])
        if k not in draws:  # each setting is scored once, on the same held-out samples
            draws[k] = {m: 0.5 + quality[k] + shared[m] + rng.normal(0.0, noise, size=N_HELD) for m in METRICS}
        return draws[k]
    return evaluate


def test_pure_noise_shows_optimism_and_does_not_hold(url):
    rng = np.random.default_rng(0)
    quality = [0.0] * 24  # no setting is better than another: the search winner is the luckiest
    loaded = _study(url, quality, rng)
    before = len(loaded.study.trials)
    v = validate(loaded, top=3, evaluate=_evaluator(quality, rng), resamples=500)
    assert v.score_optimism > 0
    assert sum(v.optimism.values()) > 0
    # the winner's curse: the search winner loses more than the other settings on new samples
    assert sum(v.optimism.values()) > sum(v.shift.values())
    assert v.holds is False and v.verdict.startswith("The recommendation does not hold")
    # stored in the study, no trial added for the sampler to learn from
    assert len(optuna.load_study(study_name="made", storage=url).trials) == before
    stored = optuna.load_study(study_name="made", storage=url).user_attrs[VALIDATION_ATTR]
    assert stored["holds"] is False and stored["recommended"] == v.recommended


def test_a_real_shared_effect_holds(url):
    rng = np.random.default_rng(1)
    quality = [0.0, 0.02, 0.1, 0.15, 0.3, 0.12]  # the baselines are clearly worse than setting 4
    loaded = _study(url, quality, rng, baselines=(0, 1, 2, 5))
    v = validate(loaded, top=3, evaluate=_evaluator(quality, rng), resamples=500)
    assert v.recommended == 4
    assert v.holds is True and v.verdict.startswith("The recommendation holds")
    assert {c.name for c in v.comparisons} == {"base0", "base1", "base2", "base5"}
    assert all(c.search_verdict == "better" and c.holdout_verdict == "better" for c in v.comparisons)
    # optimism is small next to the effect: the held-out score stays far above the baselines'
    rec = v.setting(4)
    assert abs(v.score_optimism) < 0.2
    assert all(rec.holdout_score > v.setting(c.other).holdout_score + 0.3 for c in v.comparisons)
    # the held-out ranking agrees with the search ranking
    assert all(t is not None and t >= 0.6 for t in v.rank_agreement.values()), v.rank_agreement
    # a set-level shift hits every setting alike: the recommended setting's excess optimism is small
    assert all(abs(v.optimism[m] - v.shift[m]) < 0.05 for m in METRICS), (v.optimism, v.shift)
    assert "held-out" in v.text() and "optimism" in v.text()
    # the recommendation shows the held-out check once it exists for the same setting
    from xaiopt.analysis import recommend

    text = " ".join(recommend(loaded).text().split())
    assert "Held-out check (32 samples the search never saw" in text and "The recommendation holds" in text


def test_validated_settings_are_the_recommended_compromise_front_and_baselines(url):
    rng = np.random.default_rng(2)
    # a trade-off: settings 0, 1, 2 and 3 form the front on the two metrics; 4 and 5 are dominated baselines
    pairs = [(0.1, 0.9), (0.5, 0.55), (0.9, 0.1), (0.6, 0.45), (0.2, 0.2), (0.3, 0.1)]
    trials = [trial({"sparseness": a + rng.normal(0, 0.01, 20), "relevance_mass_accuracy": b + rng.normal(0, 0.01, 20)},
                    label=f"setting-{k}", **({"baseline": f"base{k}"} if k >= 4 else {}))
              for k, (a, b) in enumerate(pairs)]
    loaded = build_study(url, METRICS, trials)
    held = {k: {"sparseness": np.full(10, a), "relevance_mass_accuracy": np.full(10, b)} for k, (a, b) in enumerate(pairs)}
    v = validate(loaded, top=2, evaluate=lambda spec: held[int(spec["label"].split("-")[1])], resamples=200,
                 store=False)
    roles = {s.number: s.roles for s in v.settings}
    assert v.settings[0].number == v.recommended and roles[v.recommended][0] == "recommended"
    assert roles[4] == ["baseline base4"] and roles[5] == ["baseline base5"]
    fronts = sorted(r for rs in roles.values() for r in rs if r.startswith("front #"))
    assert fronts == ["front #1", "front #2"]
    assert all(n in (0, 1, 2, 3) for n, rs in roles.items() if any(r.startswith("front") for r in rs))
    assert len(v.settings) == len(roles) and set(roles) <= {0, 1, 2, 3, 4, 5}
    assert VALIDATION_ATTR not in optuna.load_study(study_name="made", storage=url).user_attrs


def test_a_minimized_metric_counts_optimism_the_right_way(url):
    # avg_sensitivity is minimized: a held-out value above the search value means the search was optimistic
    rng = np.random.default_rng(3)
    metrics = ["sparseness", "avg_sensitivity"]
    loaded = build_study(url, metrics, [
        trial({"sparseness": rng.normal(0.6, 0.01, 40), "avg_sensitivity": rng.normal(0.1, 0.01, 40)}, label="s-0"),
        trial({"sparseness": rng.normal(0.4, 0.01, 40), "avg_sensitivity": rng.normal(0.3, 0.01, 40)}, label="s-1",
              baseline="b"),
    ])
    held = {0: {"sparseness": np.full(20, 0.55), "avg_sensitivity": np.full(20, 0.15) + rng.normal(0, 0.01, 20)},
            1: {"sparseness": np.full(20, 0.40), "avg_sensitivity": np.full(20, 0.30) + rng.normal(0, 0.01, 20)}}
    v = validate(loaded, evaluate=lambda spec: held[int(spec["label"][-1])], resamples=200, store=False)
    assert v.recommended == 0
    assert v.optimism["sparseness"] == pytest.approx(v.setting(0).search["sparseness"] - 0.55)
    assert v.optimism["sparseness"] > 0 and v.optimism["avg_sensitivity"] > 0


@pytest.mark.parametrize("seed", range(5))
def test_kendall_tau_b_equals_scipys(seed):
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 4, size=9).astype(float)  # ties on purpose
    b = a + rng.integers(-2, 3, size=9)
    assert kendall_tau_b(a, b) == pytest.approx(kendalltau(a, b).statistic)
    assert kendall_tau_b(a[:2], b[:2]) is None
    assert kendall_tau_b(np.ones(5), b[:5]) is None


def test_a_gain_that_vanishes_while_another_persists_holds_only_in_part(url):
    rng = np.random.default_rng(4)
    # on the search set the recommended setting 2 beats both baselines; on new samples baseline 1 is as good
    search_q, held_q = [0.0, 0.22, 0.3], [0.0, 0.3, 0.3]
    loaded = _study(url, search_q, rng, noise=0.02, baselines=(0, 1))
    v = validate(loaded, evaluate=_evaluator(held_q, rng, noise=0.02), resamples=500, store=False)
    verdicts = {c.name: (c.search_verdict, c.holdout_verdict) for c in v.comparisons}
    assert verdicts == {"base0": ("better", "better"), "base1": ("better", "indistinguishable")}
    assert v.holds is False
    assert v.verdict.startswith("The recommendation holds only in part") and "base0 (trial 0)" in v.verdict \
        and "gain over base1 (trial 1)" in v.verdict
