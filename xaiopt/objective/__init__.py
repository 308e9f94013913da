"""The worker's per-trial evaluation: benchmark cache, attribution, metric vector, artifacts."""

from xaiopt.objective.benchmark import Benchmark, build_benchmark, get_benchmark
from xaiopt.objective.device import resolve_device
from xaiopt.objective.explain import Explainer, explainer_for
from xaiopt.objective.trial import Objective, metric_directions, metric_plan

__all__ = [
    "Benchmark", "Explainer", "Objective", "build_benchmark", "explainer_for", "get_benchmark",
    "metric_directions", "metric_plan", "resolve_device",
]
