"""Malformed configs and command lines, generated: each is one line on stderr, exit 2, nothing written.

Every generated config carries at least one certain mistake (a key the schema does not have, a
value of the wrong type, a top level that is not a mapping, or bytes that are not a YAML text),
so no case can slip through to a real study; the storage file must not appear. Cases are
derandomized, so a CI failure reproduces.
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
from pathlib import Path

import yaml
from fuzz_counts import count
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xaiopt.cli import main

SETTINGS = settings(max_examples=1500, deadline=None, derandomize=True, database=None,
                    suppress_health_check=list(HealthCheck))

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


@st.composite
def malformed_configs(draw) -> bytes:
    kind = draw(st.sampled_from(["unknown_top", "unknown_field", "wrong_section", "not_a_mapping", "binary",
                                 "truncated"]))
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


def _run(argv: list[str]) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(argv)
    return code, err.getvalue()


@SETTINGS
@given(malformed_configs())
def test_a_malformed_config_is_one_line_and_creates_nothing(content):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "study.yaml"
        path.write_bytes(content)
        db = Path(tmp) / "s.db"
        code, err = _run(["study", "create", str(path), "--storage", f"sqlite:///{db}"])
        assert code == 2, (content, err)
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("xaiopt: error: "), (content, err)
        assert not db.exists() and sorted(os.listdir(tmp)) == ["study.yaml"]
    count("malformed study configs (study create)")


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
            code, err = _run([*command, *rest, "--storage", f"sqlite:///{Path(tmp) / 'none' / 'x.db'}"])
        finally:
            os.chdir(here)
        assert code == 2, (command, rest, err)
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("xaiopt: error: "), (command, rest, err)
        assert os.listdir(tmp) == []
    count("malformed command lines")
