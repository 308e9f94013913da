"""``timm:<name>[.<tag>]``: models from timm (an optional dependency: ``pip install 'xaiopt[timm]'``).

The name is timm's own, a tag picks one set of pretrained weights as in ``timm.create_model``
(``timm:resnet50.a1_in1k``; without a tag timm's default tag). ``weights`` says where the
parameters come from:

- unset or ``"random"``: timm's initialisation (seeded by :func:`~xaiopt.zoo.load_model`); a tag
  alone loads nothing, as in timm.
- ``"pretrained"``: the tag's weights, read from the local Hugging Face hub cache (``$HF_HUB_CACHE``,
  else ``$HF_HOME/hub``, else ``~/.cache/huggingface/hub``) and never downloaded: when they are not
  on disk, the error says which hub repository to fetch and where to put it.
- a path (``.pth``, ``.pt``, ``.bin``, ``.safetensors``, or any existing file): a state dict that must
  fit the model exactly, head included; ``{"state_dict": ...}`` and ``{"model": ...}`` wrappers and a
  ``module.`` prefix (DistributedDataParallel) are unwrapped.

``num_classes`` goes to ``timm.create_model``; with ``"pretrained"`` a head of another size is
freshly initialised (timm's fine-tuning behaviour), with a file it is an error.
"""

from __future__ import annotations

import difflib
import os
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import urlparse

import torch
from torch import nn

from xaiopt.errors import ConfigError, UnknownNameError
from xaiopt.zoo.weights import check_fit, one_line, read_state_dict

CHECKPOINT_SUFFIXES = (".pth", ".pt", ".bin", ".safetensors")
# the files timm reads from a hub repository without an hf_hub_filename, in its order of preference
_HUB_FILES = ("model.safetensors", "pytorch_model.bin")
_WEIGHTS_HELP = "unset or 'random', 'pretrained', or a state dict file (.pth, .pt, .bin, .safetensors)"


def load_timm_model(name: str, *, num_classes: int | None = None, weights: str | None = None) -> nn.Module:
    """Build timm model ``name`` (``arch`` or ``arch.tag``) with the parameters ``weights`` names.

    Raises :class:`~xaiopt.errors.UnknownNameError` for a name or tag timm does not know and
    :class:`~xaiopt.errors.ConfigError` for weights that are not on disk or do not fit.

    Example:
        >>> model = load_timm_model("resnet10t", num_classes=4)                      # random init
        >>> model = load_timm_model("resnet18.a1_in1k", weights="pretrained")        # from the HF cache
        >>> model = load_timm_model("resnet18", num_classes=4, weights="ft.safetensors")
    """
    label = f"timm:{name}"
    timm = _import_timm(label)
    _check_name(timm, name, label)
    kwargs: dict[str, Any] = {} if num_classes is None else {"num_classes": num_classes}
    if weights in (None, "random"):
        return _create(timm, name, label, **kwargs)
    if weights == "pretrained":
        return _pretrained(timm, name, label, kwargs)
    if _is_path(weights):
        path = Path(weights).expanduser()
        state = read_state_dict(path, label, valid=_WEIGHTS_HELP)
        model = _create(timm, name, label, **kwargs)
        check_fit(model, state, path, label if num_classes is None else f"{label} (num_classes={num_classes})")
        model.load_state_dict(state, strict=True)
        return model
    raise ConfigError(f"model {label!r}: weights={weights!r} is invalid; valid: {_WEIGHTS_HELP}")


def hf_hub_cache_dir() -> Path:
    """The Hugging Face hub cache, resolved from the environment now as huggingface_hub does at import."""
    hub = os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE")
    if not hub:
        home = os.environ.get("HF_HOME") or os.path.join(
            os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "huggingface"
        )
        hub = os.path.join(home, "hub")
    return Path(os.path.expandvars(os.path.expanduser(hub)))


def _import_timm(label: str) -> ModuleType:
    try:
        import timm
    except ImportError:
        raise ConfigError(f"model {label!r} needs timm: pip install 'xaiopt[timm]'") from None
    return timm


def _check_name(timm: ModuleType, name: str, label: str) -> None:
    arch, _, tag = name.partition(".")
    if not timm.is_model(arch):
        available = timm.list_models()
        close = difflib.get_close_matches(arch, available, n=5)
        hint = f"close: {', '.join(f'timm:{c}' for c in close)}" if close else "see timm.list_models()"
        raise UnknownNameError(f"model {label!r} is unknown; valid: one of {len(available)} timm models ({hint})")
    if tag:
        try:
            timm.models.get_pretrained_cfg(name)
        except RuntimeError:  # timm's answer for a tag the architecture does not have
            tags = timm.list_pretrained(f"{arch}.*") or [f"{arch} (no pretrained tags)"]
            raise UnknownNameError(
                f"model {label!r}: timm has no tag {tag!r}; valid: {', '.join(f'timm:{t}' for t in tags)}"
            ) from None


def _create(timm: ModuleType, name: str, label: str, **kwargs: Any) -> nn.Module:
    try:
        return timm.create_model(name, **kwargs)
    except (RuntimeError, ValueError, TypeError) as error:  # arguments this model cannot take
        options = "".join(f", {k}={v}" for k, v in kwargs.items())
        raise ConfigError(f"model {label!r}{options}: {one_line(error)}") from None


def _pretrained(timm: ModuleType, name: str, label: str, kwargs: dict[str, Any]) -> nn.Module:
    registered = timm.models.get_pretrained_cfg(name)  # the default tag's when the name has none
    # a deprecated alias is resolved by timm only while it builds the model
    cfg = registered.to_dict() if registered is not None else _create(timm, name, label, **kwargs).pretrained_cfg
    resolved = f"{cfg['architecture']}.{cfg['tag']}" if cfg.get("tag") else cfg["architecture"]
    path, fetch = _cached_weights(cfg)
    if fetch is None:
        raise ConfigError(
            f"model {label!r}: timm has no pretrained weights for {resolved!r}; "
            f"valid weights: 'random' or a state dict file (.pth, .pt, .bin, .safetensors)"
        )
    if path is None:
        raise ConfigError(
            f"model {label!r}: weights='pretrained' are not on disk (xaiopt never downloads): {fetch}; "
            f"or set weights: /path/to/file.safetensors|.pth"
        )
    # the file outranks every remote source in timm's resolution; offline mode is belt and braces
    try:
        with _hub_offline():
            return timm.create_model(resolved, pretrained=True, pretrained_cfg_overlay={"file": str(path)}, **kwargs)
    except Exception as error:  # a damaged or foreign file in the cache; timm's loader raises many kinds
        raise ConfigError(
            f"model {label!r}: the cached weights {str(path)!r} do not load into {resolved!r} "
            f"({type(error).__name__}: {one_line(error)}); delete them and download again, or set weights: a file"
        ) from None


def _cached_weights(cfg: Mapping[str, Any]) -> tuple[Path | None, str | None]:
    """The weights file on disk (or None) and what to fetch where when it is not (None: no weights at all)."""
    hub_id = cfg.get("hf_hub_id")
    if hub_id:
        from huggingface_hub import try_to_load_from_cache

        repo_id, _, revision = hub_id.partition("@")
        cache = hf_hub_cache_dir()
        files = (cfg["hf_hub_filename"],) if cfg.get("hf_hub_filename") else _HUB_FILES
        for filename in files:
            found = try_to_load_from_cache(repo_id, filename, cache_dir=cache, revision=revision or None)
            if isinstance(found, str):
                return Path(found), ""
        at = f" at revision {revision}" if revision else ""
        return None, (
            f"download the Hugging Face hub repo {repo_id!r}{at} ({' or '.join(files)}) into the hub cache "
            f"{str(cache)!r} ($HF_HUB_CACHE, else $HF_HOME/hub), e.g. `hf download {repo_id} --cache-dir {cache}`"
        )
    url = cfg.get("url")
    if url:
        target = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(url).path)
        return (target if target.is_file() else None), f"download {url} to {str(target)!r}"
    return None, None


@contextmanager
def _hub_offline() -> Iterator[None]:
    # huggingface_hub reads HF_HUB_OFFLINE once, at import; its module constant is what calls consult
    constants = sys.modules.get("huggingface_hub.constants")
    old_env, old_constant = os.environ.get("HF_HUB_OFFLINE"), getattr(constants, "HF_HUB_OFFLINE", None)
    os.environ["HF_HUB_OFFLINE"] = "1"
    if constants is not None:
        constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        if old_env is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = old_env
        if constants is not None:
            constants.HF_HUB_OFFLINE = old_constant


def _is_path(weights: str) -> bool:
    return weights.endswith(CHECKPOINT_SUFFIXES) or "/" in weights or os.sep in weights or os.path.isfile(weights)
