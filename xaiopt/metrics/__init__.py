"""Fast batched torch metrics that agree with Quantus 0.6, behind a name registry.

Example::

    from xaiopt.metrics import get_metric, MetricContext

    info = get_metric("region_perturbation")
    params = info.validate_params({"patch_size": 8})
    scores = info(ctx, **params)          # (N,) tensor, higher is better: info.direction_for(params)
"""

from . import complexity, faithfulness, localization, randomization, robustness  # noqa: F401  (register)
from .context import MetricContext
from .faithfulness import pixel_flipping_curve, region_perturbation_curve
from .randomization import mprt_layer_scores
from .registry import MetricInfo, Param, get_metric, metric_names, register_metric

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
