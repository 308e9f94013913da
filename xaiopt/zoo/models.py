"""``load_model``: model names from a study config resolved to an eval-mode CPU ``nn.Module``.

Names are ``<scheme>:<rest>``; each scheme is a small loader in a registry:

- ``benchmark:vgg|resnet|densenet|vit``: the embedded benchmark CNNs and ViT, trained on first use and cached
  (``weights=None`` or ``"trained"``), or freshly initialised with a fixed seed (``"random"``).
- ``torchvision:<name>``: :func:`torchvision.models.get_model`; random weights unless ``weights``
  names torchvision weights (e.g. ``"DEFAULT"``), read from the torch hub cache only (a missing
  file is one line naming the URL and the path; nothing is downloaded).
- ``timm:<name>[.<tag>]``: :func:`timm.create_model` (optional dependency); random weights unless
  ``weights`` is ``"pretrained"`` (from the local Hugging Face cache only, never downloaded) or a
  state dict file; see :mod:`xaiopt.zoo.timm_models`.
- ``module:<pkg.mod>:<callable>``: imports ``pkg.mod`` and calls the callable, passing
  ``num_classes`` and ``weights`` as keyword arguments when they are given.
- ``python:<name>``: a model registered in this process (:mod:`xaiopt.zoo.registered`).
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from xaiopt.config.plugins import import_user_module
from xaiopt.errors import ConfigError, UnknownNameError
from xaiopt.zoo import synthetic
from xaiopt.zoo.benchmark_models import architecture_names, build_benchmark_model
from xaiopt.zoo.cache import load_trained
from xaiopt.zoo.timm_models import load_timm_model

_Loader = Callable[[str, str | os.PathLike[str] | None, int | None, str | None], nn.Module]
_SCHEMES: dict[str, _Loader] = {}
_SCHEME_HELP = (
    "benchmark:<vgg|resnet|densenet|vit>, relation_network:clevr, torchvision:<name>, timm:<name>[.<tag>], "
    "module:<pkg.mod>:<callable>, "
    "python:<registered name>"
)


def _scheme(name: str) -> Callable[[_Loader], _Loader]:
    def decorate(loader: _Loader) -> _Loader:
        _SCHEMES[name] = loader
        return loader

    return decorate


def load_model(
    name: str,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    num_classes: int | None = None,
    weights: str | None = None,
) -> nn.Module:
    """Resolve a model name to an ``nn.Module`` in eval mode on the CPU.

    Raises :class:`~xaiopt.errors.UnknownNameError` for an unknown scheme or model and
    :class:`~xaiopt.errors.ConfigError` for options the model cannot take.

    Example:
        >>> from xaiopt.zoo import load_model
        >>> model = load_model("benchmark:vgg")  # trains once (< 1 min), then loads from the cache
        >>> model(torch.zeros(1, 3, 64, 64)).shape
        torch.Size([1, 4])
    """
    scheme, _, rest = name.partition(":")
    loader = _SCHEMES.get(scheme)
    if loader is None or not rest:
        raise UnknownNameError(f"model {name!r} is unknown; valid: {_SCHEME_HELP}")
    # random initialisations are seeded: every worker process of a study must explain the same
    # model, and the caller's own RNG stream is left as it was
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = loader(rest, cache_dir, num_classes, weights)
    return model.eval().cpu()


@_scheme("benchmark")
def _benchmark(
    architecture: str, cache_dir: str | os.PathLike[str] | None, num_classes: int | None, weights: str | None
) -> nn.Module:
    if architecture not in architecture_names():
        raise UnknownNameError(
            f"model 'benchmark:{architecture}' is unknown; valid: "
            + ", ".join(f"benchmark:{a}" for a in architecture_names())
        )
    if num_classes not in (None, synthetic.NUM_CLASSES):
        raise ConfigError(
            f"num_classes={num_classes} is invalid for 'benchmark:{architecture}'; "
            f"valid: {synthetic.NUM_CLASSES} (or unset)"
        )
    if weights in (None, "trained"):
        return load_trained(architecture, cache_dir=cache_dir)
    if weights == "random":
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            return build_benchmark_model(architecture, synthetic.NUM_CLASSES)
    raise ConfigError(
        f"weights={weights!r} is invalid for 'benchmark:{architecture}'; valid: 'trained' (default), 'random'"
    )


@_scheme("relation_network")
def _relation_network(
    config: str, cache_dir: str | os.PathLike[str] | None, num_classes: int | None, weights: str | None
) -> nn.Module:
    """``relation_network:clevr`` (128 x 128 images) or ``relation_network:clevr<size>`` (e.g. ``clevr64``):
    the Relation Network of CLEVR-XAI (:mod:`xaiopt.zoo.relation_network`), which takes the question as a
    second input; ``num_classes`` answers (28), ``weights`` a local state dict file or random."""
    from xaiopt.zoo.relation_network import build_relation_network

    found = re.fullmatch(r"clevr(\d+)?", config)
    if found is None:
        raise UnknownNameError(f"model 'relation_network:{config}' is unknown; valid: relation_network:clevr "
                               f"(128 px) or relation_network:clevr<size> (a multiple of 16)")
    sizes: dict[str, int] = {}
    if found[1] is not None:
        sizes["image_size"] = int(found[1])
    if num_classes is not None:
        sizes["n_answers"] = num_classes
    try:
        return build_relation_network(None if weights in (None, "random") else weights, seed=0, **sizes)
    except ValueError as error:
        raise ConfigError(f"model 'relation_network:{config}': {error}") from None


@_scheme("torchvision")
def _torchvision(
    model_name: str, cache_dir: str | os.PathLike[str] | None, num_classes: int | None, weights: str | None
) -> nn.Module:
    import torchvision

    available = torchvision.models.list_models()
    if model_name not in available:
        close = difflib.get_close_matches(model_name, available, n=5)
        hint = f"close: {', '.join(close)}" if close else "see torchvision.models.list_models()"
        raise UnknownNameError(
            f"model 'torchvision:{model_name}' is unknown; valid: one of {len(available)} torchvision models ({hint})"
        )
    if weights is not None:
        _torchvision_weights_on_disk(model_name, weights)
    kwargs: dict[str, object] = {"weights": weights}
    if num_classes is not None:
        kwargs["num_classes"] = num_classes
    try:
        return torchvision.models.get_model(model_name, **kwargs)
    except RuntimeError as error:  # a weights file in the cache whose hash or keys do not fit
        if weights is None:
            raise
        first = (str(error).strip().splitlines() or [""])[0][:200]
        raise ConfigError(f"model 'torchvision:{model_name}': the weights file for weights={weights!r} in "
                          f"{torch.hub.get_dir()}/checkpoints cannot be loaded ({first}); download it again") from None
    except (ValueError, KeyError) as error:
        raise ConfigError(
            f"model 'torchvision:{model_name}' with weights={weights!r}, num_classes={num_classes}: {error}"
        ) from None


def _torchvision_weights_on_disk(model_name: str, weights: str) -> None:
    """Refuse weights that are not in the torch hub cache: a study never downloads at run time."""
    from urllib.parse import urlparse

    import torchvision

    label = f"model 'torchvision:{model_name}'"
    try:
        enum = torchvision.models.get_model_weights(model_name)
    except (ValueError, KeyError):
        raise ConfigError(f"{label} has no pretrained weights; valid: weights unset (random)") from None
    valid = ["DEFAULT", *enum.__members__]
    name = weights.rpartition(".")[2] if weights.startswith(enum.__name__ + ".") else weights
    if name not in valid:
        raise ConfigError(f"{label}: weights={weights!r} is unknown; valid: {', '.join(valid)}")
    entry = enum.DEFAULT if name == "DEFAULT" else enum[name]
    file = Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(entry.url).path).name
    if not file.is_file():
        raise ConfigError(f"{label}: weights {enum.__name__}.{entry.name} are not on disk; download {entry.url} "
                          f"to {file} (the torch hub cache; TORCH_HOME moves it), nothing is downloaded at run time")


@_scheme("timm")
def _timm(
    model_name: str, cache_dir: str | os.PathLike[str] | None, num_classes: int | None, weights: str | None
) -> nn.Module:
    return load_timm_model(model_name, num_classes=num_classes, weights=weights)


@_scheme("python")
def _python(
    name: str, cache_dir: str | os.PathLike[str] | None, num_classes: int | None, weights: str | None
) -> nn.Module:
    from xaiopt.zoo.registered import get_model

    return get_model(name, num_classes=num_classes, weights=weights)


@_scheme("module")
def _module(
    target: str, cache_dir: str | os.PathLike[str] | None, num_classes: int | None, weights: str | None
) -> nn.Module:
    module_name, _, attribute = target.partition(":")
    label = f"module:{target}"
    if not module_name or not attribute:
        raise UnknownNameError(f"model {label!r} is malformed; valid: module:<pkg.mod>:<callable>")
    try:
        module = import_user_module(module_name)
    except ImportError as error:
        raise ConfigError(f"model {label!r}: cannot import {module_name!r} ({error}; looked in {os.getcwd()!r}, the "
                          f"study file's folder and sys.path; run in the folder that holds it, install it, or put "
                          f"it on PYTHONPATH)") from None
    factory = getattr(module, attribute, None)
    if not callable(factory):
        raise ConfigError(f"model {label!r}: {module_name!r} has no callable {attribute!r}")
    kwargs: dict[str, object] = {}
    if num_classes is not None:
        kwargs["num_classes"] = num_classes
    if weights is not None:
        kwargs["weights"] = weights
    try:
        model = factory(**kwargs)
    except TypeError as error:  # the callable does not take the arguments a config can give it
        raise ConfigError(f"model {label!r}: calling {attribute}(**{kwargs}) failed ({error})") from None
    if not isinstance(model, nn.Module):
        raise ConfigError(f"model {label!r}: the callable returned {type(model).__name__}, not a torch.nn.Module")
    return model
