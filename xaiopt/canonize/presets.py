"""Named canonizers: the string a study config uses resolves here.

Every preset is the same graph mechanism with a different set of rewrites switched on; ``auto``
(everything) is right for any model, the others mirror the per-family canonizers of the paper.
"""

from __future__ import annotations

from xaiopt.errors import UnknownNameError

from .canonizer import GraphCanonizer

_PRESETS: dict[str, dict[str, bool]] = {}


def register_preset(name: str, **options: bool) -> None:
    _PRESETS[name] = options


register_preset("auto")
register_preset("vgg", residual_sum=False, concat=False, se_gate=False, thresh_relu=False, merge_before=False)
register_preset("resnet", concat=False, se_gate=False, thresh_relu=False, merge_before=False)
register_preset("densenet", residual_sum=False, se_gate=False)
register_preset("efficientnet", concat=False, thresh_relu=False, merge_before=False)
register_preset("mobilenet", concat=False, thresh_relu=False, merge_before=False)


def canonizer_names() -> list[str]:
    return sorted(_PRESETS)


def get_canonizer(name: str) -> GraphCanonizer:
    """A fresh canonizer for ``name`` (see :func:`canonizer_names`).

    Example::

        composite = EpsilonPlus(canonizers=[get_canonizer("resnet")])
    """
    if name not in _PRESETS:
        raise UnknownNameError(f"canonizer: unknown name {name!r}; valid: {', '.join(canonizer_names())}")
    return GraphCanonizer(**_PRESETS[name])


