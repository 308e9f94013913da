"""What every figure reads: the study's distinct complete settings, their values, front and score.

One :class:`StudyView` per figure call, built from the same definitions as ``xaiopt study
pareto`` and ``xaiopt study recommend``: distinct settings from ``distinct_settings`` (a repeat
of a finished setting is neither counted nor drawn), the front from ``front_trials``, the score
from the recommendation's :class:`~xaiopt.analysis.Scorer` (metrics min-max normalized by
direction, 1 = best, category means, the recommendation's weights).

Example::

    view = study_view(loaded)
    view.values[view.front]      # the Pareto-optimal settings' metric vectors
"""

from __future__ import annotations

import html
from dataclasses import dataclass

import numpy as np
from optuna.trial import FrozenTrial, TrialState

from xaiopt.analysis import Recommendation, Scorer, category_weights
from xaiopt.objective.attrs import baseline, distinct_settings, explainer_text, explored_means
from xaiopt.study.manage import LoadedStudy
from xaiopt.study.pareto import front_trials

ARROW = {"maximize": "↑", "minimize": "↓"}

# metric names as they fit under a small panel; the legend of the figure spells them out
_SHORT = {
    "region_perturbation": "region pert.", "faithfulness_correlation": "faith. corr.",
    "pixel_flipping": "pixel flip.", "relevance_rank_accuracy": "rank acc.",
    "relevance_mass_accuracy": "mass acc.", "pointing_game": "pointing", "avg_sensitivity": "avg sens.",
    "max_sensitivity": "max sens.", "random_logit": "random logit",
}


def short_name(metric: str) -> str:
    """A metric's name short enough for an axis of a small panel (``rank acc.``)."""
    if metric in _SHORT:
        return _SHORT[metric]
    text = metric.replace("_", " ")
    return text if len(text) <= 14 else text[:13] + "."


def metric_label(metric: str, direction: str, *, short: bool = False) -> str:
    """``sparseness ↑`` (larger is better) or ``avg_sensitivity ↓`` (smaller is better)."""
    return f"{short_name(metric) if short else metric} {ARROW.get(direction, '')}".strip()


@dataclass
class StudyView:
    loaded: LoadedStudy
    metrics: list[str]
    directions: list[str]
    complete: int
    settings: list[FrozenTrial]
    values: np.ndarray
    front: np.ndarray
    scorer: Scorer
    norm: np.ndarray
    score: np.ndarray
    rec: Recommendation | None

    @property
    def numbers(self) -> list[int]:
        return [t.number for t in self.settings]

    @property
    def baselines(self) -> list[str | None]:
        return [baseline(t) for t in self.settings]

    def index(self, number: int) -> int:
        return self.numbers.index(number)

    def hover(self, i: int) -> str:
        """Hover text of setting ``i``: trial, baseline, settings, every metric value with its direction."""
        t = self.settings[i]
        base = baseline(t)
        head = f"<b>trial {t.number}</b>" + (f" · baseline {html.escape(base)}" if base else "")
        status = "Pareto-optimal" if self.front[i] else "dominated"
        lines = [head, f"{status} · score {self.score[i]:.3f}", html.escape(explainer_text(t))]
        lines += [f"{html.escape(metric_label(m, d))} {v:.4g}" for m, d, v in zip(self.metrics, self.directions,
                                                                              self.values[i])]
        return "<br>".join(lines)

    def name(self, i: int) -> str:
        """``trial 3 (baseline epsilon_plus_flat:plain)`` or ``trial 9``."""
        t = self.settings[i]
        base = baseline(t)
        return f"trial {t.number}" + (f" (baseline {base})" if base else "")


def study_view(loaded: LoadedStudy, rec: Recommendation | None = None,
               metrics: list[str] | None = None) -> StudyView:
    """The study's distinct complete settings, with their front on ``metrics`` (default all) and score.

    The score uses ``rec``'s weights (equal weights when None), over all the study's metrics.
    """
    names = loaded.metric_names
    directions = [d.name.lower() for d in loaded.study.directions]
    complete = [t for t in loaded.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                if t.values is not None]
    settings = distinct_settings(complete)[0]
    values = np.array([t.values for t in settings], dtype=np.float64).reshape(len(settings), len(names))
    on_front = {t.number for t in front_trials(loaded, metrics)}
    front = np.array([t.number in on_front for t in settings], dtype=bool)
    categories = loaded.metric_categories
    weights = dict(rec.weights) if rec is not None else category_weights(None, present=list(dict.fromkeys(categories)))
    if len(settings):
        # the range the recommendation normalizes over: a racing study's pruned settings at their stage means too
        explored = explored_means(loaded.study.get_trials(deepcopy=False, states=(TrialState.PRUNED,)), names)
        scorer = Scorer.fit(values, metrics=names, directions=directions, categories=categories, weights=weights,
                            also=explored)
        norm = scorer.normalize(values)
        score = scorer.score(values)
    else:
        scorer = Scorer(metrics=tuple(names), directions=tuple(directions), metric_categories=tuple(categories),
                        low=np.zeros(len(names)), high=np.ones(len(names)), weights=weights)
        norm = np.zeros((0, len(names)))
        score = np.zeros(0)
    return StudyView(loaded=loaded, metrics=names, directions=directions, complete=len(complete),
                     settings=settings, values=values, front=front, scorer=scorer, norm=norm, score=score, rec=rec)


def empty_figure(reason: str, *, title: str):
    """A figure with no data that says why (``layout.meta.empty`` holds the reason)."""
    import plotly.graph_objects as go

    fig = go.Figure()
    fig.add_annotation(text=html.escape(reason), x=0.5, y=0.5, xref="paper", yref="paper", showarrow=False,
                       font=dict(size=14))
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    fig.update_layout(title=title, template="plotly_white", height=260, meta={"empty": reason})
    return fig
