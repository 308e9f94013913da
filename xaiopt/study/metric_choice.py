"""The study's metrics against what its data offers, decided before the model is loaded.

Localization metrics need object masks. On data that has none (an image folder of one's own photos):

- metrics the config names that need masks are refused, all of them in one line, with where masks
  go for that dataset;
- the default metrics (the config names none) drop their localization metrics, and the study says
  so in one line (kept in the study as :data:`METRIC_CHOICE_ATTR`, printed by ``study create`` and
  ``run``).

Whether data has masks comes from :func:`xaiopt.zoo.masks.masks_available` (the scheme and the
folders on disk); a dataset that only loading tells about (a registered one) is checked after it
is loaded, by :func:`check_masks`, with the same line.
"""

from __future__ import annotations

from xaiopt.config import StudyConfig
from xaiopt.errors import ConfigError
from xaiopt.metrics import get_metric
from xaiopt.zoo.masks import masks_available, masks_hint

METRIC_CHOICE_ATTR = "xaiopt:metric_choice"


def _needing_masks(cfg: StudyConfig) -> list[str]:
    return [m.name for m in cfg.metrics if get_metric(m.name).needs_masks]


def _refusal(cfg: StudyConfig, needing: list[str]) -> ConfigError:
    others = [m.name for m in cfg.metrics if m.name not in needing]
    verb = "needs" if len(needing) == 1 else "need"
    keep = f"drop {'it' if len(needing) == 1 else 'them'}" + (f" (keeping {', '.join(others)})" if others else "")
    return ConfigError(f"metrics: {', '.join(needing)} {verb} object masks, but dataset {cfg.data.name!r} has "
                       f"none; {keep}, or {masks_hint(cfg.data.name)}")


def settle_metrics(cfg: StudyConfig) -> tuple[StudyConfig, str | None]:
    """``cfg`` with metrics its data can score, and the line that says what was chosen (None when
    nothing was). Raises one :class:`ConfigError` naming every configured metric the data cannot
    score. Unknown metric names are left to the metric plan's own check."""
    for m in cfg.metrics:
        get_metric(m.name)  # an unknown name: its own one-line error, before anything else
    needing = _needing_masks(cfg)
    if not needing or masks_available(cfg.data.name) is not False:
        return cfg, None
    if "metrics" in cfg.model_fields_set:
        raise _refusal(cfg, needing)
    kept = [m for m in cfg.metrics if m.name not in needing]
    note = (f"dataset {cfg.data.name!r} has no object masks: the default metrics without localization "
            f"({', '.join(needing)}), scored on {', '.join(m.name for m in kept)}; to measure localization, "
            f"{masks_hint(cfg.data.name)}")
    return cfg.model_copy(update={"metrics": kept}), note


def check_masks(cfg: StudyConfig, has_masks: bool) -> None:
    """After loading: the same refusal for data whose masks only loading could tell."""
    needing = _needing_masks(cfg)
    if needing and not has_masks:
        raise _refusal(cfg, needing)
