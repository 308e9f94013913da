from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
import torch

from xaiopt.zoo import CacheCorruptedWarning, load_model, resolve_cache_dir
from xaiopt.zoo import cache, training
from xaiopt.zoo.cache import entry_paths, read_sidecar
from xaiopt.zoo.training import TrainingRecipe

# A few steps are enough to exercise the cache; the real recipe is covered in test_models.py.
_TINY = TrainingRecipe(steps=4, eval_samples=16)


@pytest.fixture
def tiny_recipe(monkeypatch: pytest.MonkeyPatch) -> TrainingRecipe:
    monkeypatch.setitem(training.RECIPES, "vgg", _TINY)
    return _TINY


def _check_valid_entry(cache_dir: Path) -> None:
    weights, sidecar_path = entry_paths("vgg", cache_dir)
    sidecar = json.loads(sidecar_path.read_text())
    assert hashlib.sha256(weights.read_bytes()).hexdigest() == sidecar["sha256"]
    assert sidecar["recipe_key"] == _TINY.key("vgg")
    assert not [p for p in cache_dir.iterdir() if p.name.endswith(".tmp")]


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_cache_dir_argument_then_environment_then_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XAIOPT_CACHE_DIR", str(tmp_path / "env"))
    assert resolve_cache_dir(tmp_path / "arg") == tmp_path / "arg"
    assert resolve_cache_dir() == tmp_path / "env"
    monkeypatch.delenv("XAIOPT_CACHE_DIR")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert resolve_cache_dir() == tmp_path / "home" / ".cache" / "xaiopt"


def test_first_load_trains_and_writes_a_checksummed_entry(tiny_recipe, tmp_path: Path, recwarn) -> None:
    model = load_model("benchmark:vgg", cache_dir=tmp_path)
    _check_valid_entry(tmp_path)
    sidecar = read_sidecar("vgg", cache_dir=tmp_path)
    assert sidecar["recipe"]["steps"] == 4 and 0.0 <= sidecar["test_accuracy"] <= 1.0
    again = load_model("benchmark:vgg", cache_dir=tmp_path)
    assert _same_weights(model, again)
    assert not [w for w in recwarn if issubclass(w.category, CacheCorruptedWarning)]


def test_environment_variable_selects_the_cache(tiny_recipe, monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XAIOPT_CACHE_DIR", str(tmp_path / "from-env"))
    load_model("benchmark:vgg")
    assert entry_paths("vgg", tmp_path / "from-env")[0].is_file()


@pytest.mark.parametrize(
    "damage", ["garbage", "truncated", "truncated_with_matching_checksum", "no_sidecar", "bad_sidecar"]
)
def test_corrupt_cache_is_detected_warned_about_and_rebuilt(tiny_recipe, tmp_path: Path, damage: str) -> None:
    original = load_model("benchmark:vgg", cache_dir=tmp_path)
    weights, sidecar_path = entry_paths("vgg", tmp_path)
    payload = weights.read_bytes()
    if damage == "garbage":
        weights.write_bytes(b"this is not a state dict" * 100)
    elif damage == "truncated":
        weights.write_bytes(payload[: len(payload) // 2])
    elif damage == "truncated_with_matching_checksum":
        weights.write_bytes(payload[: len(payload) // 2])
        sidecar = json.loads(sidecar_path.read_text())
        sidecar["sha256"] = hashlib.sha256(payload[: len(payload) // 2]).hexdigest()
        sidecar_path.write_text(json.dumps(sidecar))
    elif damage == "no_sidecar":
        sidecar_path.unlink()
    else:
        sidecar_path.write_text("{not json")

    with pytest.warns(CacheCorruptedWarning, match="corrupt or incomplete"):
        rebuilt = load_model("benchmark:vgg", cache_dir=tmp_path)
    assert not rebuilt.training
    assert _same_weights(original, rebuilt)  # deterministic training rebuilds the same weights
    _check_valid_entry(tmp_path)


def test_recipe_change_trains_a_new_entry_without_warning(tiny_recipe, monkeypatch, tmp_path: Path, recwarn) -> None:
    load_model("benchmark:vgg", cache_dir=tmp_path)
    monkeypatch.setitem(training.RECIPES, "vgg", TrainingRecipe(steps=5, eval_samples=16))
    load_model("benchmark:vgg", cache_dir=tmp_path)
    assert len(list(tmp_path.glob("benchmark-vgg-*.pt"))) == 2
    assert not [w for w in recwarn if issubclass(w.category, CacheCorruptedWarning)]


class _Crash(BaseException):
    """Stands in for the process dying half-way through a write."""


def test_a_crash_while_writing_leaves_no_file_that_looks_valid(tiny_recipe, monkeypatch, tmp_path: Path) -> None:
    def crash(src, dst):  # noqa: ANN001 - stands in for os.replace
        raise _Crash

    real_replace = os.replace
    monkeypatch.setattr(cache.os, "replace", crash)
    with pytest.raises(_Crash):
        load_model("benchmark:vgg", cache_dir=tmp_path)
    monkeypatch.setattr(cache.os, "replace", real_replace)
    assert list(tmp_path.iterdir()) == []  # no final file, temporary file removed
    load_model("benchmark:vgg", cache_dir=tmp_path)
    _check_valid_entry(tmp_path)


def test_unwritable_cache_still_returns_a_model(tiny_recipe, tmp_path: Path) -> None:
    blocker = tmp_path / "file-not-dir"
    blocker.write_text("")
    with pytest.warns(UserWarning, match="cannot write"):
        model = load_model("benchmark:vgg", cache_dir=blocker / "cache")
    assert model(torch.zeros(1, 3, 64, 64)).shape == (1, 4)
