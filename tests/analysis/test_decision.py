"""The study's stored decision (``decision: {prefer: ...}``): the weights its recommendation ranks by unless
``--prefer`` replaces them, and a category the study cannot weigh refused in one line."""

from __future__ import annotations

import json

import pytest

from xaiopt.analysis import recommend
from xaiopt.cli import main
from xaiopt.errors import ConfigError

from .conftest import build_study, trial

METRICS = ["sparseness", "relevance_rank_accuracy"]  # complexity, localization; both maximized
# min-max over the three settings: A (1, 0), B (0, 1), C (0.4, 0.7). By hand, the weighted means:
#   equal:          A 0.5,  B 0.5,  C 0.55  -> C
#   complexity=3:   A 0.75, B 0.25, C 0.475 -> A
#   localization=3: A 0.25, B 0.75, C 0.625 -> B
SETTINGS = [trial(values={"sparseness": 0.9, "relevance_rank_accuracy": 0.2}, label="A", store=False),
            trial(values={"sparseness": 0.4, "relevance_rank_accuracy": 0.6}, label="B", store=False),
            trial(values={"sparseness": 0.6, "relevance_rank_accuracy": 0.48}, label="C", store=False)]


def test_the_stored_decision_weighs_the_recommendation_and_prefer_replaces_it(url):
    equal = build_study(url, METRICS, SETTINGS, name="equal")
    rec = recommend(equal, resamples=200)
    assert rec.best.label == "C" and rec.weights_from == ""
    stored = build_study(url, METRICS, SETTINGS, name="stored", config={"decision": {"prefer": {"complexity": 3}}})
    rec = recommend(stored, resamples=200)
    assert rec.best.label == "A" and rec.weights == {"complexity": 3.0, "localization": 1.0}
    assert rec.best.score == pytest.approx(0.75)
    assert rec.weights_from == "decision.prefer" and "(the study's decision.prefer)" in " ".join(rec.text().split())
    # an explicit --prefer replaces the stored weights (the categories it does not name weigh 1)
    rec = recommend(stored, prefer="localization=3", resamples=200)
    assert rec.best.label == "B" and rec.weights == {"complexity": 1.0, "localization": 3.0}
    assert rec.weights_from == "--prefer" and rec.best.score == pytest.approx(0.75)


def test_the_cli_recommends_by_the_stored_decision(url, capsys):
    build_study(url, METRICS, SETTINGS, name="stored", config={"decision": {"prefer": {"localization": 3}}})
    assert main(["study", "recommend", "stored", "--storage", url, "--format", "json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["top"][0]["label"] == "B" and out["weights_from"] == "decision.prefer"


def test_a_stored_category_the_study_has_no_metric_of_is_one_line(url):
    loaded = build_study(url, METRICS, SETTINGS, name="odd", config={"decision": {"prefer": {"robustness": 2}}})
    with pytest.raises(ConfigError) as err:
        recommend(loaded, resamples=200)
    assert str(err.value) == ("decision.prefer: the study has no robustness metric (its categories: complexity, "
                              "localization)")


@pytest.mark.parametrize(("prefer", "message"), [
    ({"style": 1}, "decision.prefer: unknown category 'style' (valid: complexity, faithfulness"),
    ({"faithfulness": -1}, "decision.prefer: weight of faithfulness = -1.0 must be a number >= 0"),
])
def test_a_malformed_decision_is_refused_when_the_config_is_read(prefer, message):
    from xaiopt.config import parse_config

    with pytest.raises(ConfigError) as err:
        parse_config({"decision": {"prefer": prefer}})
    assert message in str(err.value) and "\n" not in str(err.value)


def test_study_create_refuses_a_category_the_metrics_lack_and_writes_nothing(tmp_path, capsys):
    import yaml

    cfg = tmp_path / "s.yaml"
    cfg.write_text(yaml.safe_dump({"name": "d", "device": "cpu", "data": {"n_samples": 8},
                                   "metrics": ["sparseness"], "decision": {"prefer": {"faithfulness": 2}}}))
    db = tmp_path / "d.db"
    assert main(["study", "create", str(cfg), "--storage", f"sqlite:///{db}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].endswith("decision.prefer: the study has no faithfulness metric (its categories: complexity)")
    assert not db.exists()
