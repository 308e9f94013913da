"""Fast batched torch metrics that agree with Quantus 0.6, behind a name registry.

Example::

    from xaiopt.metrics import get_metric, MetricContext

    info = get_metric("region_perturbation")
    params = info.validate_params({"patch_size": 8})
    scores = info(ctx, **params)          # (N,) tensor, higher is better: info.direction_for(params)
"""

from typing import TYPE_CHECKING

from xaiopt.lazy import lazy_exports

if TYPE_CHECKING:
    from xaiopt.metrics.context import MetricContext
    from xaiopt.metrics.faithfulness import pixel_flipping_curve, region_perturbation_curve
    from xaiopt.metrics.randomization import mprt_layer_scores
    from xaiopt.metrics.registry import MetricInfo, Param, get_metric, metric_names, register_metric

# the names load their module on first use (:mod:`xaiopt.lazy`); the built-in metrics register on
# the registry's first look-up, so `xaiopt.metrics.categories` and `.packing` come without torch
_MODULES = {
    "xaiopt.metrics.context": ("MetricContext",),
    "xaiopt.metrics.faithfulness": ("pixel_flipping_curve", "region_perturbation_curve"),
    "xaiopt.metrics.randomization": ("mprt_layer_scores",),
    "xaiopt.metrics.registry": ("MetricInfo", "Param", "get_metric", "metric_names", "register_metric"),
}
__getattr__, __dir__ = lazy_exports(__name__, {n: m for m, names in _MODULES.items() for n in names})

__all__ = [
    "MetricContext",
    "MetricInfo",
    "Param",
    "get_metric",
    "metric_names",
    "register_metric",
    "region_perturbation_curve",
    "pixel_flipping_curve",
    "mprt_layer_scores",
]
