"""`xaiopt study table`: the paper's canonization table from constructed studies whose cells are known."""

from __future__ import annotations

import csv
import io
import json

import pytest

from xaiopt.analysis.table import paper_table
from xaiopt.cli import main
from xaiopt.errors import StudyError
from xaiopt.study import load_study

from .conftest import build_study, trial

METRICS = ["sparseness", "avg_sensitivity"]  # maximized, minimized


def spec(canonize: bool, rule: str) -> dict:
    return {"canonize": canonize, "first_layer": "zbox", "groups": {"conv1": {"rule": rule, "value": None}}}


def pair(method: str, rule: str, plain: tuple[float, float], canon: tuple[float, float]) -> list[dict]:
    """The plain and the canonized trial of one baseline, with (sparseness, avg_sensitivity) each."""
    return [trial(values=dict(zip(METRICS, v)), store=False, baseline=f"{method}:{variant}",
                  explainer=spec(variant == "canonized", rule), explainer_text=f"canonize={c} conv1={rule}")
            for variant, c, v in (("canonized", "yes", canon), ("plain", "no", plain))]


@pytest.fixture
def studies(url):
    build_study(url, METRICS, pair("epsilon_plus", "zplus", (0.50, 0.30), (0.60, 0.20))
                + pair("alpha2beta1", "alpha2beta1", (0.70, 0.40), (0.55, 0.25)),
                name="r18", config={"model": {"name": "torchvision:resnet18"}})
    build_study(url, METRICS, pair("epsilon_plus", "zplus", (0.65, 0.10), (0.62, 0.10))
                # a pair the search found: no baseline, named by its settings without canonize
                + [trial(values={"sparseness": 0.3, "avg_sensitivity": 0.5}, store=False, explainer=spec(True, "flat"),
                         explainer_text="canonize=yes first=zbox conv1=flat"),
                   trial(values={"sparseness": 0.2, "avg_sensitivity": 0.6}, store=False, explainer=spec(False, "flat"),
                         explainer_text="canonize=no first=zbox conv1=flat")],
                name="vgg", config={"model": {"name": "torchvision:vgg16_bn"}})
    return url


def test_rows_columns_and_the_best_of_each_column(studies):
    table = paper_table([load_study("r18", storage=studies), load_study("vgg", storage=studies)])
    assert [(r.model, r.method) for r in table.rows] == [
        ("torchvision:resnet18", "epsilon_plus"), ("torchvision:resnet18", "alpha2beta1"),
        ("torchvision:vgg16_bn", "epsilon_plus"), ("torchvision:vgg16_bn", "first=zbox conv1=flat")]
    assert table.rows[0].values == {"sparseness": (0.50, 0.60), "avg_sensitivity": (0.30, 0.20)}
    assert table.rows[0].trials == (1, 0)  # (plain, canonized)
    # sparseness is maximized: plain column best 0.70 (row 1), canonized 0.62 (row 2);
    # avg_sensitivity is minimized: plain 0.10 (row 2), canonized 0.10 (row 2)
    assert table.best == {("sparseness", "no"): {1}, ("sparseness", "yes"): {2},
                          ("avg_sensitivity", "no"): {2}, ("avg_sensitivity", "yes"): {2}}


def test_the_four_formats(studies, capsys):
    assert main(["study", "table", "r18", "vgg", "--storage", studies, "--format", "markdown"]) == 0
    md = capsys.readouterr().out.splitlines()
    assert md[0] == ("| model | method | sparseness ↑ canonized: no | sparseness ↑ canonized: yes | "
                     "avg_sensitivity ↓ canonized: no | avg_sensitivity ↓ canonized: yes |")
    assert md[3] == "| torchvision:resnet18 | alpha2beta1 | **0.7** | 0.55 | 0.4 | 0.25 |"
    assert md[4] == "| torchvision:vgg16_bn | epsilon_plus | 0.65 | **0.62** | **0.1** | **0.1** |"

    assert main(["study", "table", "r18", "vgg", "--storage", studies]) == 0
    text = capsys.readouterr().out.splitlines()
    assert text[0].split() == ["sparseness", "↑", "avg_sensitivity", "↓"]
    assert text[2].split() == ["torchvision:resnet18", "epsilon_plus", "0.5", "0.6", "0.3", "0.2"]
    assert text[4].split() == ["torchvision:vgg16_bn", "epsilon_plus", "0.65", "0.62*", "0.1*", "0.1*"]
    assert text[-1].startswith("* the best of its column")

    assert main(["study", "table", "r18", "vgg", "--storage", studies, "--format", "csv"]) == 0
    rows = list(csv.reader(io.StringIO(capsys.readouterr().out)))
    assert rows[0][5:] == ["sparseness (maximize) canonized=no", "sparseness (maximize) canonized=yes",
                           "avg_sensitivity (minimize) canonized=no", "avg_sensitivity (minimize) canonized=yes"]
    assert rows[2] == ["r18", "torchvision:resnet18", "alpha2beta1", "3", "2", "0.7", "0.55", "0.4", "0.25"]

    assert main(["study", "table", "r18", "vgg", "--storage", studies, "--format", "latex"]) == 0
    tex = capsys.readouterr().out
    assert r"\multicolumn{2}{c}{avg\_sensitivity $\downarrow$}" in tex
    assert r"torchvision:vgg16\_bn & epsilon\_plus & 0.65 & \textbf{0.62} & \textbf{0.1} & \textbf{0.1} \\" in tex

    assert main(["study", "table", "r18", "--storage", studies, "--format", "json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["rows"][1]["values"]["sparseness"] == {"no": 0.7, "yes": 0.55}
    assert d["best"]["sparseness canonized=no"] == [1]


def test_a_study_without_a_canonize_pair_is_one_line_exit_2(url, capsys):
    build_study(url, METRICS, [trial(values={"sparseness": 0.5, "avg_sensitivity": 0.2}, store=False,
                                     explainer=spec(True, "zplus"))], name="only")
    assert main(["study", "table", "only", "--storage", url]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "study 'only' has no setting evaluated both canonized and plain" in err
    with pytest.raises(StudyError):
        paper_table([load_study("only", storage=url)])
