"""``--prefer faithfulness=2,localization=1``: category weights, equal by default.

Example::

    category_weights("faithfulness=2", present=["complexity", "faithfulness"])
    # {'complexity': 1.0, 'faithfulness': 2.0}
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence, Union

from xaiopt.errors import ConfigError
from xaiopt.metrics.categories import CATEGORIES

Prefer = Union[None, str, Mapping[str, float], Sequence[str]]


def _pairs(prefer: Prefer) -> list[tuple[str, object]]:
    if prefer is None:
        return []
    if isinstance(prefer, Mapping):
        return list(prefer.items())
    items = [prefer] if isinstance(prefer, str) else list(prefer)
    out: list[tuple[str, object]] = []
    for item in items:
        for part in str(item).split(","):
            part = part.strip()
            if not part:
                continue
            name, eq, weight = part.partition("=")
            if not eq:
                raise ConfigError(f"--prefer: {part!r} must be CATEGORY=WEIGHT (e.g. faithfulness=2)")
            out.append((name.strip(), weight.strip()))
    return out


def category_weights(prefer: Prefer, *, present: Sequence[str], what: str = "--prefer") -> dict[str, float]:
    """Weight per category of the study: 1 unless ``prefer`` says otherwise (0 leaves one out).

    Raises :class:`ConfigError` for an unknown category, one the study has no metric of, a weight
    that is not a number >= 0, or weights that are all 0; the message starts with ``what`` (the
    option or config key the weights came from).
    """
    weights = {c: 1.0 for c in present}
    for name, raw in _pairs(prefer):
        key = str(name).lower()
        if key not in CATEGORIES:
            raise ConfigError(f"{what}: unknown category {name!r} (valid: {', '.join(CATEGORIES)})")
        if key not in weights:
            raise ConfigError(f"{what}: the study has no {key} metric (its categories: {', '.join(present)})")
        try:
            weight = float(raw)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            weight = math.nan
        if not math.isfinite(weight) or weight < 0:
            raise ConfigError(f"{what}: weight of {key} = {raw!r} must be a number >= 0")
        weights[key] = weight
    if not any(weights.values()):
        raise ConfigError(f"{what}: all category weights are 0; at least one must be positive")
    return weights
