"""What a trial records, and how every reader gets at it: one definition of the layout.

User attrs are what optuna-dashboard puts in its trial table, one column each, so they are flat
and short: ``explainer`` (the settings as one line of text), ``seconds`` (total, a float),
``baseline`` (the enqueued baseline's name), ``duplicate_of`` (the earlier trial with the same
settings), ``device`` and ``fail_reason``. The full record lives in trial system attrs, which the
same database rows hold for every process but no dashboard column shows: ``xaiopt:explainer`` (the
``ExplainerSpec`` dict), ``xaiopt:seconds`` (attribution and each metric), ``xaiopt:heatmap`` (the
artifact id) and ``xaiopt:per_sample`` (the per-sample scores).

Studies written before this layout kept the spec dict in the ``explainer`` user attr, the text in
``explainer_text``, a timing dict in ``seconds`` and the artifact id in ``heatmap_artifact``; the
readers below accept both.

Duplicates are handled in one place, :func:`distinct_settings`: a trial marked ``duplicate_of``,
or a second trial of an explainer that two workers computed at once, is an alias of the earlier
trial. Counts, fronts, figures, tables, exports and recommendations all go through it.

Example::

    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    settings, alias = distinct_settings(complete)
    spec = spec_dict(settings[0])           # {'canonize': True, 'first_layer': 'zbox', 'groups': {...}}
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
from optuna.trial import FrozenTrial, TrialState

from xaiopt.metrics.packing import unpack_scores

SPEC_ATTR = "xaiopt:explainer"
SECONDS_ATTR = "xaiopt:seconds"
HEATMAP_ATTR = "xaiopt:heatmap"
PER_SAMPLE_KEY = "xaiopt:per_sample"
EXPLAINER = "explainer"
SECONDS = "seconds"
BASELINE = "baseline"
DUPLICATE_OF = "duplicate_of"
FAIL_REASON = "fail_reason"
# user attr of a trial that multi-fidelity pruned: why, in one line (xaiopt/objective/fidelity.py)
PRUNED = "pruned"
# user attr of a repeat of a pruned setting, pruned again without a model pass: the first such trial
PRUNED_AS = "pruned_as"
# system attr of such a trial: the dominating trial, the subset and each metric's margin
FIDELITY_ATTR = "xaiopt:fidelity"


def spec_dict(t: FrozenTrial) -> dict[str, Any] | None:
    """The trial's ``ExplainerSpec.to_dict()``, or None for a trial that recorded none (not yet suggested)."""
    spec = t.system_attrs.get(SPEC_ATTR)
    if spec is None:
        legacy = t.user_attrs.get(EXPLAINER)
        spec = legacy if isinstance(legacy, dict) else None
    return spec


def explainer_text(t: FrozenTrial) -> str:
    """The settings as one line (``canonize=yes first=zbox conv1=gamma(0.25) ...``); params if none was recorded."""
    text = t.user_attrs.get(EXPLAINER)
    if not isinstance(text, str):
        text = t.user_attrs.get("explainer_text")
    return text or ", ".join(f"{k}={v}" for k, v in t.params.items())


def timings(t: FrozenTrial) -> dict[str, float]:
    """Seconds spent: ``total``, ``attribution`` and ``metric:NAME`` (only ``total`` for a duplicate)."""
    full = t.system_attrs.get(SECONDS_ATTR)
    if isinstance(full, dict):
        return dict(full)
    legacy = t.user_attrs.get(SECONDS)
    if isinstance(legacy, dict):
        return dict(legacy)
    if isinstance(legacy, (int, float)):
        return {"total": float(legacy)}
    return {}


def per_sample(t: FrozenTrial) -> dict[str, np.ndarray] | None:
    """``{metric: (N,) float32 scores}`` the trial stored (``xaiopt:per_sample``), or None where it
    stored none; ValueError if the stored value is malformed."""
    packed = t.system_attrs.get(PER_SAMPLE_KEY)
    return None if packed is None else unpack_scores(packed)


def heatmap_artifact(t: FrozenTrial) -> str | None:
    """The id of the trial's heatmap PNG in the study's artifact store, or None."""
    return t.system_attrs.get(HEATMAP_ATTR) or t.user_attrs.get("heatmap_artifact")


def baseline(t: FrozenTrial) -> str | None:
    """The name of the baseline this trial was enqueued as (``epsilon_plus:canonized`` ...), or None."""
    return t.user_attrs.get(BASELINE)


def explored_means(trials: list[FrozenTrial], metrics: list[str]) -> list[list[float]]:
    """The stage means (in ``metrics`` order) of the settings multi-fidelity pruned, one row per pruned
    setting (a repeat pruned again, user attr ``pruned_as``, is not another one). With the complete
    settings they span the range the decision normalizes over: a racing study's complete settings are
    its survivors, a narrow band near the top, and min-max over them alone would weigh the metrics
    by differences the study never saw among the settings it explored."""
    rows = []
    for t in trials:
        record = t.system_attrs.get(FIDELITY_ATTR)
        if (t.state == TrialState.PRUNED and PRUNED_AS not in t.user_attrs and isinstance(record, dict)
                and isinstance(record.get("means"), dict) and all(m in record["means"] for m in metrics)):
            rows.append([float(record["means"][m]) for m in metrics])
    return rows


def duplicate_of(t: FrozenTrial) -> int | None:
    """The earlier trial whose values this one copied (the sampler proposed a finished setting again)."""
    d = t.user_attrs.get(DUPLICATE_OF)
    return None if d is None else int(d)


def spec_key(t: FrozenTrial) -> str | None:
    """A canonical string of the trial's spec: equal for two trials of the same explainer."""
    spec = spec_dict(t)
    return None if spec is None else json.dumps(spec, sort_keys=True)


def distinct_settings(trials: list[FrozenTrial]) -> tuple[list[FrozenTrial], dict[int, int]]:
    """The distinct settings among ``trials`` (each explainer's first trial, by number) and a map
    trial number -> the number of the trial that stands for its setting.

    A ``duplicate_of`` trial maps to its original; two trials of one explainer that both computed
    (two workers proposing it at once) count once, under the earlier.
    """
    keep: list[FrozenTrial] = []
    alias: dict[int, int] = {}
    seen: dict[str, int] = {}
    for t in sorted(trials, key=lambda t: t.number):
        dup = duplicate_of(t)
        key = spec_key(t)
        if dup is not None:
            alias[t.number] = alias.get(dup, dup)
        elif key is not None and key in seen:
            alias[t.number] = seen[key]
        else:
            keep.append(t)
            alias[t.number] = t.number
            if key is not None:
                seen[key] = t.number
    return keep, alias
