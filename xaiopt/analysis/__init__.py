"""Reading finished studies: normalization by direction, category scores, paired bootstrap, recommendation.

Example::

    from xaiopt.analysis import recommend
    rec = recommend("quickstart", storage="sqlite:///xaiopt.db", prefer={"faithfulness": 2})
    print(rec.text())

The names below load their module on first use (:mod:`xaiopt.lazy`).
"""

from typing import TYPE_CHECKING

from xaiopt.lazy import lazy_exports

if TYPE_CHECKING:
    from xaiopt.analysis.bootstrap import Interval, PairedDifference, paired_bootstrap, resample_indices
    from xaiopt.analysis.front import compromise, ideal_distance, pareto_mask
    from xaiopt.analysis.recommend import Comparison, Recommendation, Setting, recommend
    from xaiopt.metrics.preferences import category_weights
    from xaiopt.metrics.scoring import Scorer, competition_ranks

_MODULES = {
    "xaiopt.analysis.bootstrap": ("Interval", "PairedDifference", "paired_bootstrap", "resample_indices"),
    "xaiopt.analysis.front": ("compromise", "ideal_distance", "pareto_mask"),
    "xaiopt.metrics.preferences": ("category_weights",),
    "xaiopt.analysis.recommend": ("Comparison", "Recommendation", "Setting", "recommend"),
    "xaiopt.metrics.scoring": ("Scorer", "competition_ranks"),
}
__getattr__, __dir__ = lazy_exports(__name__, {n: m for m, names in _MODULES.items() for n in names})

__all__ = [
    "Comparison", "Interval", "PairedDifference", "Recommendation", "Scorer", "Setting", "category_weights",
    "competition_ranks", "compromise", "ideal_distance", "paired_bootstrap", "pareto_mask", "recommend",
    "resample_indices",
]
