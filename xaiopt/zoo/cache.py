"""On-disk cache of trained benchmark weights, checksummed and written atomically.

An entry is two files in the cache directory:

- ``benchmark-<arch>-<key>.pt``: the ``state_dict`` (``torch.save``),
- ``benchmark-<arch>-<key>.json``: sidecar with the file's sha256, the recipe and its key,
  the held-out test accuracy and the training wall time.

``<key>`` is :meth:`TrainingRecipe.key`, so a changed recipe or generator never loads old weights.
Both files are written to a temporary name and moved into place with :func:`os.replace`, weights
first and sidecar last: an entry without a valid sidecar is incomplete and is retrained. A
checksum mismatch, a truncated or unreadable file is warned about (:class:`CacheCorruptedWarning`)
and the entry is rebuilt.

The directory is the ``cache_dir`` argument, else ``$XAIOPT_CACHE_DIR``, else ``~/.cache/xaiopt``.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch import nn

from xaiopt.files import write_atomic
from xaiopt.zoo.benchmark_models import build_benchmark_model
from xaiopt.zoo.training import RECIPES, TrainingRecipe, train_benchmark_model

CACHE_ENV_VAR = "XAIOPT_CACHE_DIR"
_SIDECAR_FORMAT = 1


class CacheCorruptedWarning(UserWarning):
    """A cached file failed its checksum or could not be read; it is rebuilt."""


def resolve_cache_dir(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The cache directory: the argument, else ``$XAIOPT_CACHE_DIR``, else ``~/.cache/xaiopt``."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    from_env = os.environ.get(CACHE_ENV_VAR)
    if from_env:
        return Path(from_env).expanduser()
    return Path.home() / ".cache" / "xaiopt"


def entry_paths(architecture: str, cache_dir: str | os.PathLike[str] | None = None) -> tuple[Path, Path]:
    """``(weights, sidecar)`` paths of the cache entry for ``architecture`` under its current recipe."""
    key = RECIPES[architecture].key(architecture)
    stem = resolve_cache_dir(cache_dir) / f"benchmark-{architecture}-{key}"
    return stem.with_suffix(".pt"), stem.with_suffix(".json")


def load_trained(architecture: str, *, cache_dir: str | os.PathLike[str] | None = None) -> nn.Module:
    """The trained benchmark model (eval mode, CPU): from the cache, or trained now and cached."""
    recipe = RECIPES[architecture]
    weights_path, sidecar_path = entry_paths(architecture, cache_dir)
    model = _load_entry(architecture, recipe, weights_path, sidecar_path)
    if model is not None:
        return model
    model, result = train_benchmark_model(architecture, recipe=recipe)
    payload = _serialize(model.state_dict())
    sidecar = {
        "format": _SIDECAR_FORMAT,
        "architecture": architecture,
        "recipe_key": recipe.key(architecture),
        "recipe": asdict(recipe),
        "sha256": hashlib.sha256(payload).hexdigest(),
        "test_accuracy": result.test_accuracy,
        "train_seconds": round(result.train_seconds, 3),
        "torch_version": torch.__version__,
    }
    try:
        weights_path.parent.mkdir(parents=True, exist_ok=True)
        # readable by every user: the cache may be shared
        write_atomic(weights_path, payload, mode=0o644, durable=True)
        write_atomic(sidecar_path, json.dumps(sidecar, indent=2, sort_keys=True) + "\n", mode=0o644, durable=True)
    except OSError as error:  # an unwritable cache costs a retrain next time, not this run
        warnings.warn(f"cannot write the benchmark model cache {weights_path} ({error})", stacklevel=2)
    return model


def read_sidecar(architecture: str, *, cache_dir: str | os.PathLike[str] | None = None) -> dict[str, Any] | None:
    """The sidecar of the current cache entry (accuracy, timing, checksum), or None if absent/unreadable."""
    _, sidecar_path = entry_paths(architecture, cache_dir)
    try:
        return json.loads(sidecar_path.read_text())
    except (OSError, ValueError):
        return None


def _load_entry(
    architecture: str, recipe: TrainingRecipe, weights_path: Path, sidecar_path: Path
) -> nn.Module | None:
    if not weights_path.exists() and not sidecar_path.exists():
        return None
    try:
        sidecar = json.loads(sidecar_path.read_text())
        if sidecar.get("recipe_key") != recipe.key(architecture) or not isinstance(sidecar.get("sha256"), str):
            raise ValueError("sidecar does not describe this recipe")
        payload = weights_path.read_bytes()
        digest = hashlib.sha256(payload).hexdigest()
        if digest != sidecar["sha256"]:
            raise ValueError(f"sha256 mismatch (expected {sidecar['sha256'][:12]}..., got {digest[:12]}...)")
        state = torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
        with torch.random.fork_rng(devices=[]):  # the throwaway init must not move the caller's RNG
            model = build_benchmark_model(architecture)
        model.load_state_dict(state, strict=True)
    except Exception as error:  # any unreadable entry is rebuilt, whatever broke it
        warnings.warn(
            f"benchmark model cache {weights_path} is corrupt or incomplete ({error}); retraining it",
            CacheCorruptedWarning,
            stacklevel=3,
        )
        return None
    return model.eval()


def _serialize(state: dict[str, torch.Tensor]) -> bytes:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()
