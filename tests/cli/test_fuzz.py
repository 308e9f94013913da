"""Malformed configs and command lines, generated: each is one line on stderr, exit 2, nothing written.

Every generated config carries at least one certain mistake (a key the schema does not have, a
value of the wrong type, a top level that is not a mapping, bytes that are not a YAML text, or a
complete study whose rule, metric, sampler or model name no registry knows), so no case can slip
through to a real study; the storage file must not appear. Both commands that read a study YAML
get them: `study create CONFIG` and `run CONFIG` (which would also optimize and plot). The dashboard's
TOML settings get the same treatment: one value of a wrong type or out of range among right ones,
a section that is no table, an unknown key, bytes that are not UTF-8; the line names the key. Cases
are derandomized, so a CI failure reproduces.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile
import tomllib
from pathlib import Path
from unittest import mock

import yaml
from fuzz_counts import count
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xaiopt.cli import main

SETTINGS = settings(max_examples=1500, deadline=None, derandomize=True, database=None,
                    suppress_health_check=list(HealthCheck))
# the file's run time stays about one minute: the two study-config tests share one generator, so they
# give 250 cases each to the dashboard settings (4500 cases in all, as before those were added)
STUDY_CONFIG_SETTINGS = settings(SETTINGS, max_examples=1250)
DASHBOARD_SETTINGS = settings(SETTINGS, max_examples=500)

SECTIONS = ["model", "data", "space", "sampler", "runtime"]
FIELDS = {
    "model": ["name", "weights", "num_classes", "cache_dir"],
    "data": ["name", "n_samples", "seed", "target", "classes", "n_classes", "holdout", "image_size", "mean"],
    "space": ["canonize", "first_layer", "layer_groups", "rules", "gamma", "epsilon", "overrides"],
    "sampler": ["name", "params"],
    "runtime": ["batch_budget", "heatmaps", "heartbeat_interval", "storage_retry_seconds"],
}
scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=True),
                    st.text(max_size=12))
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                         st.dictionaries(st.text(max_size=6), inner, max_size=3)),
                      max_leaves=6)
# a value no field of the schema takes where a section or a mapping is expected
wrong_for_a_section = st.one_of(st.integers(), st.floats(allow_nan=False), st.lists(st.integers(), min_size=1),
                                st.text(min_size=1).filter(lambda s: s.strip()))


# a complete study but for one name; every registry name is lower case without an "x_" prefix, and
# each of these mistakes is found before a model is loaded (so no case trains the benchmark CNN)
COMPLETE = {"name": "fuzz", "seed": 1, "device": "cpu", "model": {"name": "benchmark:vgg"},
            "data": {"name": "benchmark", "n_samples": 4},
            "space": {"canonize": [True, False], "first_layer": ["same", "flat"], "layer_groups": 2,
                      "rules": ["zplus", "epsilon"]},
            "metrics": ["sparseness"], "sampler": {"name": "random"}}
unknown = st.text(alphabet="abcdefgh_0123", min_size=1, max_size=8).map(lambda s: "x_" + s)


@st.composite
def unknown_names(draw) -> dict:
    cfg = {**COMPLETE, "space": dict(COMPLETE["space"])}
    name = draw(unknown)
    where = draw(st.sampled_from(["rule", "first_layer", "metric", "metric_entry", "sampler", "model", "model_form"]))
    if where == "rule":
        cfg["space"]["rules"] = draw(st.permutations(["zplus", "epsilon", name]))
    elif where == "first_layer":
        cfg["space"]["first_layer"] = ["same", name]
    elif where == "metric":
        cfg["metrics"] = draw(st.permutations(["sparseness", name]))
    elif where == "metric_entry":
        cfg["metrics"] = ["sparseness", {"name": name}]
    elif where == "sampler":
        cfg["sampler"] = draw(st.sampled_from([name, {"name": name}]))
    elif where == "model":
        cfg["model"] = {"name": f"benchmark:{name}"}
    else:
        cfg["model"] = {"name": name}
    return cfg


@st.composite
def malformed_configs(draw) -> bytes:
    kind = draw(st.sampled_from(["unknown_top", "unknown_field", "wrong_section", "not_a_mapping", "binary",
                                 "truncated", "unknown_name"]))
    if kind == "unknown_name":
        return yaml.safe_dump(draw(unknown_names())).encode()
    base = {"name": draw(st.text(min_size=1, max_size=20).filter(str.strip))}
    for section in draw(st.lists(st.sampled_from(SECTIONS), max_size=3, unique=True)):
        base[section] = {f: draw(values) for f in draw(st.lists(st.sampled_from(FIELDS[section]), max_size=3,
                                                                unique=True))}
    if kind == "unknown_top":
        base["x_" + draw(st.text(alphabet="abcdefgh_", min_size=1, max_size=8))] = draw(values)
    elif kind == "unknown_field":
        section = draw(st.sampled_from(SECTIONS))
        if not isinstance(base.get(section), dict):
            base[section] = {}
        base[section]["x_" + draw(st.text(alphabet="abcdefgh_", min_size=1, max_size=8))] = draw(values)
    elif kind == "wrong_section":
        base[draw(st.sampled_from(SECTIONS))] = draw(wrong_for_a_section)
    elif kind == "not_a_mapping":
        return yaml.safe_dump(draw(st.one_of(st.lists(values, min_size=1), st.integers(), st.floats(allow_nan=False),
                                              st.text(min_size=1).filter(lambda s: s.strip() and ":" not in s
                                                                         and not s.lstrip().startswith("#"))))
                              ).encode()
    elif kind == "binary":
        return b"\x00\xff" + draw(st.binary(min_size=1, max_size=64))
    text = yaml.safe_dump(base, allow_unicode=True).encode("utf-8")
    if kind == "truncated":
        # cut inside a multi-byte character or a flow collection: not UTF-8, or not YAML, or not a mapping
        text = "é".encode()[:1] + text[: draw(st.integers(0, len(text)))]
    return text


def _run(argv: list[str]) -> tuple[int, str, str]:
    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        code = main(argv)
    return code, err.getvalue(), out.getvalue()


@STUDY_CONFIG_SETTINGS
@given(malformed_configs())
def test_a_malformed_config_is_one_line_and_creates_nothing(content):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "study.yaml"
        path.write_bytes(content)
        db = Path(tmp) / "s.db"
        code, err, _ = _run(["study", "create", str(path), "--storage", f"sqlite:///{db}"])
        assert code == 2, (content, err)
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("xaiopt: error: "), (content, err)
        assert not db.exists() and sorted(os.listdir(tmp)) == ["study.yaml"]
    count("malformed study configs (study create)")


@STUDY_CONFIG_SETTINGS
@given(malformed_configs(), st.booleans())
def test_run_of_a_malformed_config_is_one_error_line_and_writes_nothing(content, progress):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "study.yaml"
        path.write_bytes(content)
        here = os.getcwd()
        os.chdir(tmp)  # whatever run would write by default (a storage, artifacts) would land here
        try:
            code, err, out = _run(["run", str(path), "--storage", f"sqlite:///{Path(tmp) / 's.db'}", "--n-trials", "1",
                              "--plot", str(Path(tmp) / "front.html"), *([] if progress else ["--no-progress"])])
        finally:
            os.chdir(here)
        assert code == 2, (content, err)
        lines = err.strip().splitlines()
        # set-up steps may come first as progress lines; the mistake is the one last line
        assert lines and lines[-1].startswith("xaiopt: error: "), (content, err)
        assert all(line.startswith("xaiopt: [") for line in lines[:-1]), (content, err)
        assert progress or len(lines) == 1, (content, err)
        assert out == "", (content, out)  # no front printed
        assert sorted(os.listdir(tmp)) == ["study.yaml"], (content, os.listdir(tmp))
    count("malformed study configs (run)")


COMMANDS = [["study", "create"], ["study", "pareto"], ["study", "recommend"], ["study", "validate"],
            ["study", "export"], ["study", "report"], ["study", "delete"], ["study", "optimize"],
            ["study", "compare"], ["study", "list"], ["run"], ["worker"], ["canonize", "check"]]
OPTIONS = ["--n-trials", "--top", "--prefer", "--format", "--metrics", "--columns", "--trial", "--out", "--images",
           "--device", "--threads", "--name", "--per-class", "--baseline", "--timeout", "--study", "--tol"]
tokens = st.one_of(st.sampled_from(OPTIONS), st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\x00"),
                                                     max_size=10).filter(lambda s: not s.startswith("-h")
                                                                          and s not in ("--help",)),
                   st.integers(-5, 5).map(str), st.sampled_from(["json", "table", "-1", "0", "nan", "=", ""]))


@SETTINGS
@given(st.sampled_from(COMMANDS), st.lists(tokens, max_size=6))
def test_a_malformed_command_line_is_one_line_and_writes_nothing(command, rest):
    with tempfile.TemporaryDirectory() as tmp:
        here = os.getcwd()
        os.chdir(tmp)  # the default storage (sqlite:///xaiopt.db) would be created here
        try:
            code, err, _ = _run([*command, *rest, "--storage", f"sqlite:///{Path(tmp) / 'none' / 'x.db'}"])
        finally:
            os.chdir(here)
        assert code == 2, (command, rest, err)
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("xaiopt: error: "), (command, rest, err)
        assert os.listdir(tmp) == []
    count("malformed command lines")


# TOML values of every type; a key whose value is none of what it takes gets one of these
toml_scalars = st.one_of(st.booleans(), st.integers(-10**9, 10**9), st.floats(), st.text(max_size=8), st.dates())
toml_values = st.recursive(toml_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(alphabet="abcxyz_", min_size=1, max_size=4), inner,
                                                 max_size=2)), max_leaves=4)


def toml_text(value) -> str:
    """``value`` as a TOML value (tomllib reads it back as ``value``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")
    if isinstance(value, list):
        return "[" + ", ".join(toml_text(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {toml_text(v)}" for k, v in value.items()) + "}"
    return value.isoformat() if hasattr(value, "isoformat") else repr(value)


def _not_a_name(value) -> bool:
    return not isinstance(value, str) or not value or "\0" in value


# per key: a right value, and a value certainly wrong for it
DASHBOARD_KEYS = {
    "host": (st.sampled_from(["127.0.0.1", "localhost", "::1", "0.0.0.0"]),
             st.one_of(toml_values.filter(_not_a_name), st.just(""), st.text(max_size=4).map(lambda s: s + "\0"))),
    "port": (st.integers(0, 65535),
             st.one_of(toml_values.filter(lambda v: not isinstance(v, int) or isinstance(v, bool)),
                       st.integers(max_value=-1), st.integers(min_value=65536, max_value=2**63 - 1))),
    "quiet": (st.booleans(), toml_values.filter(lambda v: not isinstance(v, bool))),
    "artifact_dir": (st.text(min_size=1, max_size=12).filter(lambda s: "\0" not in s),
                     st.one_of(toml_values.filter(_not_a_name), st.just(""))),
    "storage": (st.just("sqlite:///never.db"),
                toml_values.filter(lambda v: not isinstance(v, str) or not v.strip())),
}


@st.composite
def malformed_dashboard_settings(draw) -> tuple[bytes, str]:
    """A dashboard TOML file with one certain mistake, and what its error line must say."""
    kind = draw(st.sampled_from(["wrong_value", "not_a_table", "unknown_key", "binary"]))
    if kind == "binary":
        return b"\xff" + draw(st.binary(max_size=32)), "not a UTF-8 text file"
    if kind == "not_a_table":
        value = draw(toml_values.filter(lambda v: not isinstance(v, dict)))
        return f"optuna_dashboard = {toml_text(value)}\n".encode(), "optuna_dashboard = "
    section = {k: draw(DASHBOARD_KEYS[k][0]) for k in draw(st.lists(st.sampled_from(sorted(DASHBOARD_KEYS)),
                                                                      max_size=4, unique=True))}
    # optuna-dashboard's own keys, which xaiopt accepts and leaves alone, whatever their value
    section.update({k: draw(toml_values) for k in draw(st.lists(st.sampled_from(["server", "storage_class",
                                                                                 "allow_unsafe"]), unique=True))})
    if kind == "unknown_key":
        key = "x_" + draw(st.text(alphabet="abcdefgh_", min_size=1, max_size=8))
        section[key] = draw(toml_values)
        expect = f"unknown key {key!r} in [optuna_dashboard]"
    else:
        key = draw(st.sampled_from(sorted(DASHBOARD_KEYS)))
        section[key] = draw(DASHBOARD_KEYS[key][1])
        expect = f"[optuna_dashboard] {key} = "
    keys = draw(st.permutations(sorted(section)))
    text = "[optuna_dashboard]\n" + "".join(f"{k} = {toml_text(section[k])}\n" for k in keys)
    # the file says what was drawn (compared as TOML text: nan is not equal to itself)
    read = tomllib.loads(text)["optuna_dashboard"]
    assert {k: toml_text(v) for k, v in read.items()} == {k: toml_text(v) for k, v in section.items()}, text
    return text.encode(), expect


@DASHBOARD_SETTINGS
@given(malformed_dashboard_settings())
def test_a_malformed_dashboard_config_is_one_line_naming_the_key(case):
    content, expect = case
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "dashboard.toml"
        path.write_bytes(content)
        db = Path(tmp) / "s.db"
        # a mistake that slipped through would serve forever: fail at once instead
        with mock.patch("xaiopt.report.dashboard.build_app", side_effect=AssertionError("settings accepted")):
            code, err, out = _run(["dashboard", "--config", str(path), "--storage", f"sqlite:///{db}"])
        assert code == 2 and out == "", (content, err)
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"xaiopt: error: --config: {path}: "), (content, err)
        assert expect in lines[0], (content, expect, lines[0])
        assert sorted(os.listdir(tmp)) == ["dashboard.toml"]
    count("malformed dashboard settings (dashboard --config)")
