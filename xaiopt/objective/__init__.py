"""The worker's per-trial evaluation: benchmark cache, attribution, metric vector, artifacts.

The names below load their module on first use (:mod:`xaiopt.lazy`).
"""

from typing import TYPE_CHECKING

from xaiopt.lazy import lazy_exports

if TYPE_CHECKING:
    from xaiopt.objective.benchmark import Benchmark, build_benchmark, get_benchmark
    from xaiopt.objective.device import resolve_device
    from xaiopt.objective.explain import Explainer, explainer_for
    from xaiopt.objective.trial import Objective, metric_directions, metric_plan

_MODULES = {
    "xaiopt.objective.benchmark": ("Benchmark", "build_benchmark", "get_benchmark"),
    "xaiopt.objective.device": ("resolve_device",),
    "xaiopt.objective.explain": ("Explainer", "explainer_for"),
    "xaiopt.objective.trial": ("Objective", "metric_directions", "metric_plan"),
}
__getattr__, __dir__ = lazy_exports(__name__, {n: m for m, names in _MODULES.items() for n in names})

__all__ = [
    "Benchmark", "Explainer", "Objective", "build_benchmark", "explainer_for", "get_benchmark",
    "metric_directions", "metric_plan", "resolve_device",
]
