"""Models and datasets registered in this process under a name: the ``python:NAME`` scheme.

An ``nn.Module`` or a batch of tensors built in a script cannot travel to another machine. It is
registered here under a name; a study config names it ``python:NAME`` (``model.name`` and
``data.name``), so this process can create and optimize the study. A worker elsewhere has the
name only: it gets one line saying to register the object through a plugin. A plugin (a module the
config lists under ``plugins:``) can call the same functions with a factory, so every process that
imports it builds the same object::

    # my_lab/models.py, listed as `plugins: [my_lab.models]`
    import xaiopt
    xaiopt.register_model("lab_net", lambda: build_lab_net(weights="/shared/lab_net.pt"))

A model is copied when the study first asks for it, so a study never writes into the caller's module
(the benchmark puts it in eval mode and freezes its parameters).

Until ``model.name`` accepts the ``python:`` form, a model's config name is
``module:xaiopt.zoo.registered:NAME``, which the ``module:`` scheme resolves through this module;
:func:`model_ref` gives the form this installation accepts.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from xaiopt.errors import ConfigError
from xaiopt.zoo.evaldata import EvalData

SCHEME = "python"
NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

ModelSource = nn.Module | Callable[[], nn.Module]
DataSource = EvalData | Callable[[], EvalData]


@dataclass(frozen=True)
class _Entry:
    source: Any
    factory: bool


_MODELS: dict[str, _Entry] = {}
_DATASETS: dict[str, _Entry] = {}


def _check_name(name: str, what: str) -> str:
    if not isinstance(name, str) or not NAME.match(name):
        raise ConfigError(f"register_{what}: name {name!r} is invalid (valid: letters, digits and _, "
                          f"not starting with a digit)")
    return name


def register_model(name: str, model: ModelSource) -> str:
    """Register ``model`` (an ``nn.Module``, or a callable without arguments returning one) as ``name``.

    Returns the name a study config uses for it (see :func:`model_ref`). Registering the same object
    again is a no-op; another object under a taken name is refused, since a worker keeps what it built
    from the first one (the benchmark cache) and would explain the wrong model.

    Example::

        ref = register_model("tiny", torch.nn.Sequential(...))
        cfg = xaiopt.parse_config({"model": {"name": ref}, ...})
    """
    _check_name(name, "model")
    if isinstance(model, nn.Module):
        entry = _Entry(model, factory=False)
    elif callable(model):
        entry = _Entry(model, factory=True)
    else:
        raise ConfigError(f"register_model({name!r}): expected a torch.nn.Module or a callable returning one, "
                          f"got {type(model).__name__}")
    _put(_MODELS, name, entry, "model")
    return model_ref(name)


def register_dataset(name: str, data: DataSource) -> str:
    """Register ``data`` (an :class:`EvalData`, or a callable without arguments returning one) as ``name``.

    Returns ``python:NAME``, the config's ``data.name``. Use :func:`eval_data` to make an
    :class:`EvalData` of plain tensors.
    """
    _check_name(name, "dataset")
    if isinstance(data, EvalData):
        _put(_DATASETS, name, _Entry(data, factory=False), "dataset")
    elif callable(data):
        _put(_DATASETS, name, _Entry(data, factory=True), "dataset")
    else:
        raise ConfigError(f"register_dataset({name!r}): expected an EvalData or a callable returning one, got "
                          f"{type(data).__name__} (xaiopt.eval_data(x, y, masks) makes one of tensors)")
    return f"{SCHEME}:{name}"


def _put(table: dict[str, _Entry], name: str, entry: _Entry, kind: str) -> None:
    old = table.get(name)
    if old is not None and old.source is not entry.source:
        raise ConfigError(f"register_{kind}: name {name!r} is already registered for another object in this process "
                          f"(valid: a new name)")
    table[name] = entry


def registered_names() -> dict[str, list[str]]:
    """The names registered in this process: ``{"models": [...], "datasets": [...]}``."""
    return {"models": sorted(_MODELS), "datasets": sorted(_DATASETS)}


def model_ref(name: str) -> str:
    """The config name of registered model ``name``: ``python:NAME`` where the schema accepts it,
    else ``module:xaiopt.zoo.registered:NAME`` (the same object, through the ``module:`` scheme)."""
    from pydantic import ValidationError

    from xaiopt.config import ModelConfig

    try:
        ModelConfig(name=f"{SCHEME}:{name}")
    except ValidationError:
        return f"module:{__name__}:{name}"
    return f"{SCHEME}:{name}"


def _missing(kind: str, name: str, known: dict[str, _Entry]) -> ConfigError:
    here = ", ".join(sorted(known)) or "none"
    return ConfigError(
        f"{kind} 'python:{name}' is not registered in this process (registered here: {here}); an object built "
        f"in a script exists only there: register it in a plugin module listed under plugins: "
        f"(xaiopt.register_{kind}({name!r}, factory)) so that every process that runs or reads the study has it")


def get_model(name: str, *, num_classes: int | None = None, weights: str | None = None) -> nn.Module:
    """A copy of the registered model ``name``; ConfigError in a process where it is not registered."""
    entry = _MODELS.get(name)
    if entry is None:
        raise _missing("model", name, _MODELS)
    if num_classes is not None or weights is not None:
        raise ConfigError(f"model 'python:{name}': model.num_classes and model.weights do not apply to a "
                          f"registered model (valid: unset; build the model with them before registering it)")
    model = entry.source() if entry.factory else entry.source
    if not isinstance(model, nn.Module):
        raise ConfigError(f"model 'python:{name}': its factory returned {type(model).__name__}, not a "
                          f"torch.nn.Module")
    return copy.deepcopy(model)


def get_dataset(name: str, *, n: int) -> EvalData:
    """The first ``n`` samples of the registered dataset ``name``."""
    entry = _DATASETS.get(name)
    if entry is None:
        raise _missing("dataset", name, _DATASETS)
    data = entry.source() if entry.factory else entry.source
    if not isinstance(data, EvalData):
        raise ConfigError(f"dataset 'python:{name}': its factory returned {type(data).__name__}, not an EvalData")
    if n > len(data):
        raise ConfigError(f"data.n_samples={n} exceeds the {len(data)} samples of dataset 'python:{name}' "
                          f"(valid: 1 to {len(data)})")
    if n == len(data):
        return data
    return EvalData(x=data.x[:n], y=data.y[:n], masks=None if data.masks is None else data.masks[:n],
                    low=data.low, high=data.high, num_classes=data.num_classes, class_names=data.class_names)


def eval_data(x: torch.Tensor, y: torch.Tensor, masks: torch.Tensor | None = None, *,
              low: torch.Tensor | float | None = None, high: torch.Tensor | float | None = None,
              num_classes: int | None = None, class_names: tuple[str, ...] | list[str] | None = None) -> EvalData:
    """An :class:`EvalData` of plain tensors: ``x`` (N, C, H, W) in the model's input space, ``y`` (N,)
    class indices, ``masks`` (N, H, W) or (N, 1, H, W), any dtype (nonzero = object) or None.

    ``low``/``high`` (the input bounds of the z-box rule) default to the per-channel minimum and
    maximum of ``x``; ``num_classes`` to ``y.max() + 1``; ``class_names`` to ``"0"``, ``"1"``, ...

    Example::

        data = eval_data(torch.randn(8, 3, 32, 32), torch.arange(8) % 2)
        len(data), data.num_classes          # (8, 2)
    """
    if not isinstance(x, torch.Tensor) or x.dim() != 4:
        raise ConfigError(f"x: expected an (N, C, H, W) tensor, got {_shape(x)}")
    if not isinstance(y, torch.Tensor) or y.shape != (x.shape[0],):
        raise ConfigError(f"y: expected a ({x.shape[0]},) tensor of class indices, got {_shape(y)}")
    if y.is_floating_point():
        raise ConfigError("y: expected integer class indices, got a floating-point tensor")
    x = x.detach().float().cpu()
    y = y.detach().long().cpu()
    if masks is not None:
        if not isinstance(masks, torch.Tensor):
            raise ConfigError(f"masks: expected a tensor, got {type(masks).__name__}")
        if masks.dim() == 3:
            masks = masks.unsqueeze(1)
        if masks.shape != (x.shape[0], 1, *x.shape[2:]):
            raise ConfigError(f"masks: expected shape ({x.shape[0]}, {x.shape[2]}, {x.shape[3]}) or "
                              f"({x.shape[0]}, 1, {x.shape[2]}, {x.shape[3]}), got {tuple(masks.shape)}")
        masks = masks.detach().cpu() != 0
    channels = x.shape[1]
    lo = x.amin(dim=(0, 2, 3)) if low is None else torch.as_tensor(low, dtype=torch.float32).expand(channels)
    hi = x.amax(dim=(0, 2, 3)) if high is None else torch.as_tensor(high, dtype=torch.float32).expand(channels)
    k = int(y.max()) + 1 if num_classes is None else int(num_classes)
    if int(y.min()) < 0 or int(y.max()) >= k:
        raise ConfigError(f"y: class indices must be 0 to {k - 1} (num_classes={k}), got {int(y.min())} to "
                          f"{int(y.max())}")
    names = tuple(str(c) for c in range(k)) if class_names is None else tuple(class_names)
    try:
        return EvalData(x=x, y=y, masks=masks, low=lo.float().clone(), high=hi.float().clone(), num_classes=k,
                        class_names=names)
    except ValueError as err:
        raise ConfigError(f"eval_data: {err}") from None


def _shape(value: Any) -> str:
    return f"shape {tuple(value.shape)}" if isinstance(value, torch.Tensor) else type(value).__name__


def __getattr__(name: str) -> Callable[..., nn.Module]:
    # the `module:xaiopt.zoo.registered:NAME` form: the module scheme looks NAME up as a callable here
    if name.startswith("__") or not NAME.match(name):
        raise AttributeError(name)

    def factory(**kwargs: Any) -> nn.Module:
        return get_model(name, **kwargs)

    return factory
