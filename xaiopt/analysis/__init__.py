"""Reading finished studies: normalization by direction, category scores, paired bootstrap, recommendation.

Example::

    from xaiopt.analysis import recommend
    rec = recommend("quickstart", storage="sqlite:///xaiopt.db", prefer={"faithfulness": 2})
    print(rec.text())
"""

from xaiopt.analysis.bootstrap import (
    Interval,
    PairedDifference,
    paired_bootstrap,
    resample_indices,
)
from xaiopt.analysis.front import compromise, ideal_distance, pareto_mask
from xaiopt.analysis.preferences import category_weights
from xaiopt.analysis.recommend import Comparison, Recommendation, Setting, recommend
from xaiopt.analysis.scoring import Scorer, competition_ranks

__all__ = [
    "Comparison", "Interval", "PairedDifference", "Recommendation", "Scorer", "Setting", "category_weights",
    "competition_ranks", "compromise", "ideal_distance", "paired_bootstrap", "pareto_mask", "recommend",
    "resample_indices",
]
