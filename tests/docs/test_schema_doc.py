"""docs/schema.md is what xaiopt/config/docs.py generates from the pydantic models: it fails when a field
is added, removed, retyped or given another default without the file following."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import BaseModel

from xaiopt.config import StudyConfig, docs

DOC = Path(__file__).resolve().parents[2] / "docs" / "schema.md"


def _all_paths(model: type[BaseModel], prefix: str = "") -> list[str]:
    """Every field path, found independently of the generator: by instantiating the defaults and walking
    the sub-models the annotations name."""
    import typing

    out = []
    for name, field in model.model_fields.items():
        path = prefix + name
        out.append(path)
        stack = [field.annotation]
        while stack:
            ann = stack.pop()
            if isinstance(ann, type) and issubclass(ann, BaseModel):
                if ann.__name__ not in ("Choices", "Range", "ExplicitGroup"):
                    out.extend(_all_paths(ann, path + "."))
            else:
                stack.extend(typing.get_args(ann))
    return out


def test_the_file_is_the_generated_text():
    assert DOC.read_text() == docs.render(), "docs/schema.md is stale: run python -m xaiopt.config.docs docs/schema.md"


def test_every_field_has_a_meaning_and_every_meaning_a_field():
    assert docs.check() == []


def test_every_field_of_the_models_has_a_row_with_its_default():
    rows = {m.group(1): m.group(0) for m in re.finditer(r"^\| `([^`]+)` \|.*$", DOC.read_text(), re.MULTILINE)}
    assert sorted(rows) == sorted(_all_paths(StudyConfig))
    defaults = StudyConfig()
    assert '`"tpe"`' in rows["sampler.name"] and defaults.sampler.name == "tpe"
    assert f"`{defaults.data.n_samples}`" in rows["data.n_samples"]
    assert f"`{defaults.runtime.batch_budget}`" in rows["runtime.batch_budget"]
    assert "| required |" in rows["metrics.name"]


def test_a_new_field_without_a_meaning_is_named(monkeypatch):
    monkeypatch.delitem(docs.MEANINGS, "data.seed")
    assert docs.check() == [("data.seed: no meaning (add it to MEANINGS in xaiopt/config/docs.py or a Field "
                             "description)")]
    with pytest.raises(ValueError, match="data.seed: no meaning"):
        docs.write(DOC.parent / "never-written.md")
    assert not (DOC.parent / "never-written.md").exists()
    monkeypatch.setitem(docs.MEANINGS, "data.gone", "a field that no longer exists")
    assert "data.gone: described in MEANINGS but no such field in xaiopt/config/schema.py" in docs.check()
