"""Hypervolume: how much of the objective space a set of settings dominates, and how it grew.

:func:`hypervolume` is exact: the WFG algorithm (While, Bradstreet and Barone, "A Fast Way of
Calculating Exact Hypervolumes", IEEE TEVC 2012), written here for NumPy. The hypervolume of a
set is the sum over its points of each point's *exclusive* contribution, the volume of its own
box less the hypervolume of the other points "limited" to that box (each coordinate clipped to
the point's); the limited set is first reduced to its non-dominated points, which is what keeps
the recursion small. Two objectives are solved in closed form (sort, sum the staircase), one
objective is a maximum.

Cost: exact hypervolume is #P-hard in the number of objectives, so every exact algorithm is
exponential in M in the worst case; WFG's worst case is O(2^N) box evaluations, but on
realistic fronts it is among the fastest exact methods. Measured on one CPU core for N
mutually non-dominated points (on a sphere, the hard case): 5 objectives N = 20 / 50 / 100 in
0.03 / 0.3 / 1.3 s, 6 objectives in 0.07 / 2 / 9 s (Optuna's own WFG is about 3x faster).
Dominated points cost nearly nothing. :func:`hypervolume_history` adds one setting at a time
and pays only that setting's exclusive contribution per step: 200 random settings on 6 metrics
(108 of them on the front) take about 6 s in all.

Example::

    hypervolume([[1.0, 2.0], [2.0, 1.0]], [3.0, 3.0])                  # 3.0 (both minimized)
    hypervolume([[0.9, 0.2]], [0.0, 1.0], directions=["maximize", "minimize"])   # 0.72
    hist = hypervolume_history(loaded)   # the study's normalized hypervolume after each trial
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from optuna.trial import TrialState

from xaiopt.errors import ConfigError
from xaiopt.metrics.scoring import Scorer
from xaiopt.objective.attrs import distinct_settings
from xaiopt.study.manage import LoadedStudy

# the reference point of the study's hypervolume lies this share of each metric's range beyond
# its worst observed value: at the worst corner itself, a setting that is worst on any one
# metric would add nothing, however good it is on the others
MARGIN = 0.1


def _as_minimization(points, reference, directions) -> tuple[np.ndarray, np.ndarray]:
    pts = np.asarray(points, dtype=np.float64)
    ref = np.asarray(reference, dtype=np.float64).reshape(-1)
    if pts.size == 0:
        pts = pts.reshape(0, ref.shape[0])
    if pts.ndim != 2 or pts.shape[1] != ref.shape[0]:
        raise ConfigError(f"hypervolume: points must be (N, {ref.shape[0]}) to match the reference point, "
                          f"got shape {pts.shape}")
    if directions is None:
        sign = np.ones(ref.shape[0])
    else:
        if len(directions) != ref.shape[0] or any(d not in ("maximize", "minimize") for d in directions):
            raise ConfigError(f"hypervolume: directions must be {ref.shape[0]} of 'maximize'/'minimize', "
                              f"got {list(directions)}")
        sign = np.array([-1.0 if d == "maximize" else 1.0 for d in directions])
    if not (np.isfinite(pts).all() and np.isfinite(ref).all()):
        raise ConfigError("hypervolume: points and reference must be finite")
    return pts * sign, ref * sign


def _nondominated(p: np.ndarray) -> np.ndarray:
    """The rows of ``p`` (minimized) that no other row weakly dominates; of equal rows, one."""
    if len(p) <= 1:
        return p
    p = np.unique(p, axis=0)
    le = (p[:, None, :] <= p[None, :, :]).all(axis=-1)  # le[j, i]: j at least as good as i everywhere
    np.fill_diagonal(le, False)
    return p[~le.any(axis=0)]


def _hv2(p: np.ndarray, ref: np.ndarray) -> float:
    """Two minimized objectives, non-dominated rows: the staircase under the front."""
    p = p[np.argsort(p[:, 0])]  # first objective up, so the second goes down
    widths = np.append(p[1:, 0], ref[0]) - p[:, 0]
    return float(widths @ (ref[1] - p[:, 1]))


def _hv(p: np.ndarray, ref: np.ndarray) -> float:
    """WFG on non-dominated minimized rows strictly below ``ref``."""
    n, m = p.shape
    if n == 0:
        return 0.0
    if m == 1:
        return float(ref[0] - p[:, 0].min())
    if n == 1:
        return float(np.prod(ref - p[0]))
    if m == 2:
        return _hv2(p, ref)
    # points sorted by the last objective: the limited sets of early points are then small
    p = p[np.argsort(p[:, -1])]
    boxes = np.prod(ref - p, axis=1)
    total = 0.0
    for k in range(n):
        rest = p[k + 1:]
        if len(rest) == 0:
            total += boxes[k]
            continue
        limited = _nondominated(np.maximum(rest, p[k]))
        total += boxes[k] - _hv(limited, ref)
    return float(total)


def hypervolume(points, reference, *, directions: Sequence[str] | None = None) -> float:
    """Exact hypervolume of ``points`` ((N, M)) against ``reference`` ((M,)).

    ``directions``: ``'maximize'``/``'minimize'`` per objective; all minimized when None (as in
    Optuna's convention). The volume is that of the region dominated by at least one point and
    bounded by the reference point; a point not strictly better than the reference on every
    objective bounds nothing and adds 0.

    Example::

        hypervolume([[1.0, 2.0], [2.0, 1.0]], [3.0, 3.0])     # 2*1 + 1*2 - 1*1 = 3.0
    """
    pts, ref = _as_minimization(points, reference, directions)
    pts = pts[(pts < ref).all(axis=1)]
    return _hv(_nondominated(pts), ref)


def _exclusive(point: np.ndarray, front: np.ndarray, ref: np.ndarray) -> float:
    """What ``point`` adds to the hypervolume of ``front`` (both minimized, below ``ref``)."""
    box = float(np.prod(ref - point))
    if len(front) == 0:
        return box
    return box - _hv(_nondominated(np.maximum(front, point)), ref)


@dataclass(frozen=True)
class HypervolumeHistory:
    """The study's hypervolume after each trial, on metrics normalized by direction.

    ``trials``: the complete trials in number order (a repeat of a finished setting adds
    nothing and keeps the value); ``values``: the hypervolume after each, as a share of the
    box between the reference and the ideal point (1 = one setting at the study's best on every
    metric at once). ``reference``: the reference point in each metric's own units;
    ``metrics`` the metrics it is computed on (those not constant over the study).
    """

    trials: list[int]
    values: list[float]
    metrics: list[str]
    directions: list[str]
    reference: dict[str, float]
    margin: float
    settings: int
    left_out: list[str]

    def caption(self) -> str:
        ref = ", ".join(f"{m} {v:.4g}" for m, v in self.reference.items())
        text = (f"Each metric min-max normalized over the study's {self.settings} distinct complete settings "
                f"(1 = the study's best, 0 = its worst, minimized metrics flipped); reference point "
                f"{self.margin:g} of each metric's range beyond its worst observed value ({ref}); hypervolume "
                f"as a share of the box from there to the ideal point (1 = one setting best on every metric).")
        if self.left_out:
            text += f" Left out (equal on every setting): {', '.join(self.left_out)}."
        return text


def hypervolume_history(loaded: LoadedStudy, *, margin: float = MARGIN) -> HypervolumeHistory:
    """The hypervolume of the distinct settings finished so far, after each complete trial.

    Normalization: the study's :class:`~xaiopt.metrics.scoring.Scorer` min-max over the
    distinct complete settings, direction respected; reference point at ``-margin`` on the
    normalized scale, i.e. ``margin`` of each metric's range beyond its worst observed value.

    Example::

        hist = hypervolume_history(loaded)
        hist.values[-1]          # the final share of the box, in [0, 1]
    """
    if margin < 0:
        raise ConfigError(f"hypervolume: margin must be >= 0, got {margin}")
    metrics = loaded.metric_names
    directions = [d.name.lower() for d in loaded.study.directions]
    complete = [t for t in loaded.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                if t.values is not None]
    settings, alias = distinct_settings(complete)
    empty = HypervolumeHistory([], [], [], [], {}, margin, 0, [])
    if not settings:
        return empty
    values = np.array([t.values for t in settings], dtype=np.float64)
    scorer = Scorer.fit(values, metrics=metrics, directions=directions,
                        categories=loaded.metric_categories, weights={}, robust=False)
    keep = ~scorer.constant_mask
    used = [m for m, k in zip(metrics, keep) if k]
    left_out = [m for m, k in zip(metrics, keep) if not k]
    span = scorer.high - scorer.low
    reference = {m: float(scorer.high[i] + margin * span[i] if d == "minimize" else scorer.low[i] - margin * span[i])
                 for i, (m, d) in enumerate(zip(metrics, directions)) if keep[i]}
    if not used:
        return HypervolumeHistory([t.number for t in complete], [0.0] * len(complete), [], [], {}, margin,
                                  len(settings), left_out)
    # normalized and negated: every metric minimized, ideal at -1, reference at +margin
    norm = -scorer.normalize(values)[:, keep]
    ref = np.full(len(used), margin)
    box = float(np.prod(ref + 1.0))
    index = {t.number: i for i, t in enumerate(settings)}
    front = np.empty((0, len(used)))
    total = 0.0
    trials, out = [], []
    for t in sorted(complete, key=lambda t: t.number):
        if alias[t.number] == t.number:
            p = norm[index[t.number]]
            if (p < ref).all():
                total += _exclusive(p, front, ref)
                front = _nondominated(np.vstack([front, p]))
        trials.append(t.number)
        out.append(total / box)
    return HypervolumeHistory(trials, out, used, [d for d, k in zip(directions, keep) if k], reference, margin,
                              len(settings), left_out)


def hypervolume_fraction(points, universe, *, directions: Sequence[str], margin: float = MARGIN) -> float:
    """The hypervolume of ``points`` as a share of that of ``universe`` (e.g. an exhaustive grid).

    Both are normalized by ``universe``'s range per metric (direction respected: 0 = its best,
    1 = its worst), the reference point ``margin`` of the range beyond the worst (as in
    :func:`hypervolume_history`); metrics constant over ``universe`` are left out. ``points``
    should be a subset of ``universe`` (values beyond its range are clipped to it), so the
    share lies in [0, 1] and is 1 exactly when ``points`` holds the universe's whole front.

    Example::

        grid = [[0.0, 1.0], [1.0, 0.0], [0.5, 0.5]]
        hypervolume_fraction([[0.0, 1.0]], grid, directions=["minimize", "minimize"])
        # reference (1.1, 1.1): (1.1 * 0.1) / (0.5 * 0.1 + 0.5 * 0.6 + 0.1 * 1.1) = 0.2391...
    """
    if margin < 0:
        raise ConfigError(f"hypervolume: margin must be >= 0, got {margin}")
    u, _ = _as_minimization(universe, np.zeros(len(directions)), directions)
    p, _ = _as_minimization(points, np.zeros(len(directions)), directions)
    if len(u) == 0:
        raise ConfigError("hypervolume: the reference set (universe) is empty")
    low = u.min(axis=0)
    span = u.max(axis=0) - low
    keep = span > 0
    if not keep.any():
        return 1.0 if len(p) else 0.0
    def scale(a: np.ndarray) -> np.ndarray:
        return np.clip((a[:, keep] - low[keep]) / span[keep], 0.0, 1.0)
    ref = np.full(int(keep.sum()), 1.0 + margin)
    whole = _hv(_nondominated(scale(u)), ref)
    return _hv(_nondominated(scale(p)), ref) / whole if len(p) else 0.0
