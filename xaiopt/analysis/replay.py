"""Replaying an exhaustively evaluated grid as a study's objective: samplers compared at no model cost.

A :class:`GridCache` holds the metric vector (and each metric's per-sample scores) of every
point of a finite search space, evaluated once. :class:`GridReplay` is an Optuna objective that
suggests through the very :class:`~xaiopt.space.SearchSpace` a real study uses (define-by-run,
conditional parameters) and returns the cached values of the proposed point, so a sampler run of
hundreds of trials costs no model pass. A proposal that is not a grid point (a value off the
grid's lists, a continuous parameter) is an error, never a nearest neighbour: the benchmark
would otherwise measure a different search space than the one the sampler explored.

The cache is keyed (:func:`grid_key`) by everything the values depend on: the config's model,
data, metrics, seed, space and batch budget, and the resolved layer groups. A cache whose key
differs from the wanted one is refused (:meth:`GridCache.check`), so a changed grid or config is
recomputed, never silently reused.

Example::

    cache = GridCache.load("benchmarks/data/search_grid.json")
    replay = GridReplay(cache)
    study = optuna.create_study(directions=replay.directions, sampler=optuna.samplers.TPESampler(seed=0))
    study.optimize(replay, n_trials=50)
"""

from __future__ import annotations

import hashlib
import itertools
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import optuna

from xaiopt.config import StudyConfig, config_to_dict, parse_config
from xaiopt.errors import ConfigError, StudyError
from xaiopt.files import write_atomic
from xaiopt.space import ExplainerSpec, LayerGroups, SearchSpace

FORMAT = 1

# config sections the metric vector of a point does not depend on
# what does not change a completed trial's values: multi-fidelity prunes and the decision weighs, neither alters
# a completed vector
_IRRELEVANT = ("name", "n_trials", "device", "storage", "sampler", "baselines", "fidelity", "decision")


def spec_key(spec: ExplainerSpec) -> str:
    """A canonical text of a spec: equal for equal settings whatever the group order or int/float value."""
    d = spec.to_dict()
    d["groups"] = {g: {"rule": r["rule"], "value": None if r["value"] is None else float(r["value"])}
                   for g, r in d["groups"].items()}
    return json.dumps(d, sort_keys=True)


def grid_config(cfg: StudyConfig) -> dict[str, Any]:
    """The parts of a config the grid's values depend on (JSON-compatible)."""
    d = config_to_dict(cfg)
    for k in _IRRELEVANT:
        d.pop(k, None)
    d["runtime"] = {"batch_budget": d["runtime"]["batch_budget"]}
    # a plugin rule's parameters: absent when there are none, so that caches made before the
    # setting existed keep their key
    if not d["space"].get("params"):
        d["space"].pop("params", None)
    # the transformer attention rules (space.attention, added later): absent while unset, for the same reason
    if d["space"].get("attention") is None:
        d["space"].pop("attention", None)
    # the CNN base composites (space.base, added later): absent while unset, for the same reason
    if d["space"].get("base") is None:
        d["space"].pop("base", None)
    return d


def grid_key(cfg: StudyConfig, layers: LayerGroups) -> str:
    """SHA-256 of the grid's config and layer groups: the identity of a cache."""
    payload = {"config": grid_config(cfg), "groups": layers.groups, "first_layer": layers.first_layer}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def grid_specs(space: SearchSpace) -> list[ExplainerSpec]:
    """Every point of a finite space, in the grid sampler's flattening (``<group>.setting``)."""
    if space.size() is None:
        raise ConfigError("replay: the space has a continuous parameter (a range); a grid needs lists of values")
    flat = SearchSpace(space.cfg, space.layers, grid=True)
    dims = flat.grid_space()
    names = list(dims)
    specs = []
    for combo in itertools.product(*(dims[n] for n in names)):
        specs.append(flat.suggest(optuna.trial.FixedTrial(dict(zip(names, combo)))))
    return specs


def _write_json(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps(obj, separators=(",", ":")), mode=0o644)  # a plain data file


@dataclass
class GridCache:
    """Metric vectors (and per-sample scores) of the points of one grid.

    ``values[i]`` is the metric vector of ``specs[i]`` in ``metrics`` order (float64, as the
    trial returned it); ``per_sample[i][j]`` the float32 scores of metric j on each evaluation
    sample (empty when not stored); ``seconds[i]`` what the point cost to evaluate.
    """

    key: str
    config: dict[str, Any]
    groups: dict[str, list[str]]
    first_layer: str | None
    metrics: list[str]
    directions: list[str]
    specs: list[ExplainerSpec] = field(default_factory=list)
    values: list[list[float]] = field(default_factory=list)
    per_sample: list[list[list[float]]] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)

    @property
    def layers(self) -> LayerGroups:
        return LayerGroups(groups={g: list(m) for g, m in self.groups.items()}, first_layer=self.first_layer)

    def study_config(self) -> StudyConfig:
        return parse_config(dict(self.config))

    def space(self) -> SearchSpace:
        """The define-by-run search space a real study over this grid suggests from."""
        return SearchSpace(self.study_config().space, self.layers)

    def array(self) -> np.ndarray:
        return np.asarray(self.values, dtype=np.float64).reshape(len(self.values), len(self.metrics))

    def check(self, key: str) -> None:
        """Refuse a cache made for another grid or config."""
        if key != self.key:
            raise StudyError(f"replay: the cached grid was evaluated for another config or grid (key "
                             f"{self.key[:12]}, wanted {key[:12]}); evaluate the grid again")

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "key": self.key, "config": self.config, "groups": self.groups,
                "first_layer": self.first_layer, "metrics": self.metrics, "directions": self.directions,
                "points": [{"spec": s.to_dict(), "values": v, "seconds": round(t, 4)}
                           for s, v, t in zip(self.specs, self.values, self.seconds)]}

    def save(self, path: str | Path, per_sample_path: str | Path | None = None) -> None:
        """Write atomically; per-sample scores (9 significant digits: exact float32) to their own file."""
        _write_json(Path(path), self.to_dict())
        if per_sample_path is not None:
            rounded = [[[float(f"{x:.9g}") for x in m] for m in p] for p in self.per_sample]
            _write_json(Path(per_sample_path), {"format": FORMAT, "key": self.key, "per_sample": rounded})

    @classmethod
    def load(cls, path: str | Path, per_sample_path: str | Path | None = None) -> GridCache:
        try:
            d = json.loads(Path(path).read_text())
        except FileNotFoundError:
            raise StudyError(f"replay: no cached grid at {path}") from None
        if d.get("format") != FORMAT:
            raise StudyError(f"replay: {path} has format {d.get('format')!r}, this xaiopt reads {FORMAT}")
        points = d["points"]
        cache = cls(key=d["key"], config=d["config"], groups=d["groups"], first_layer=d["first_layer"],
                    metrics=d["metrics"], directions=d["directions"],
                    specs=[ExplainerSpec.from_dict(p["spec"]) for p in points],
                    values=[list(map(float, p["values"])) for p in points],
                    seconds=[float(p.get("seconds", 0.0)) for p in points])
        if per_sample_path is not None and Path(per_sample_path).exists():
            ps = json.loads(Path(per_sample_path).read_text())
            if ps.get("key") != cache.key:
                raise StudyError(f"replay: {per_sample_path} belongs to another grid than {path}")
            cache.per_sample = ps["per_sample"]
        return cache


def evaluate_grid(cfg: StudyConfig, *, device: str = "cpu", done: GridCache | None = None,
                  on_point: Callable[[GridCache, int], None] | None = None) -> GridCache:
    """Every point of ``cfg``'s (finite) space through the real trial evaluation, in grid order.

    ``done``: an earlier, partial cache; its points are reused when its key is this grid's.
    ``on_point(cache, total)`` is called after each point (e.g. to save progress).

    Example::

        cache = evaluate_grid(cfg)
        cache.save("grid.json")
    """
    import torch

    from xaiopt.objective.trial import Objective, means, metric_directions

    obj = Objective(cfg, device=torch.device(device))
    layers = obj.bench.layers
    key = grid_key(cfg, layers)
    specs = grid_specs(obj.space)
    cache = GridCache(key=key, config=grid_config(cfg), groups=layers.groups, first_layer=layers.first_layer,
                      metrics=[m.name for m in cfg.metrics], directions=metric_directions(cfg))
    reuse: dict[str, tuple] = {}
    if done is not None and done.key == key:
        per_sample = done.per_sample or [[] for _ in done.specs]
        reuse = {spec_key(s): r for s, *r in zip(done.specs, done.values, per_sample, done.seconds)}
    for spec in specs:
        hit = reuse.get(spec_key(spec))
        if hit is None:
            t = time.perf_counter()
            scores, _, _ = obj.evaluate_per_sample(spec)
            vec = means(scores)
            hit = ([vec[m] for m in cache.metrics], [scores[m].tolist() for m in cache.metrics],
                   time.perf_counter() - t)
        cache.specs.append(spec)
        cache.values.append(hit[0])
        cache.per_sample.append(hit[1])
        cache.seconds.append(hit[2])
        if on_point is not None:
            on_point(cache, len(specs))
    return cache


class GridReplay:
    """An Optuna objective returning the cached metric vector of the point the sampler proposes.

    ``metrics``: a subset of the cache's metrics to optimize (all by default), in that order.
    ``evaluated`` counts the distinct points asked for (the model passes a real study would pay:
    a real study answers a repeated setting from the earlier trial).

    Example::

        replay = GridReplay(cache, metrics=["region_perturbation", "relevance_rank_accuracy"])
        study = optuna.create_study(directions=replay.directions)
        study.optimize(replay, n_trials=20)
    """

    def __init__(self, cache: GridCache, *, metrics: Sequence[str] | None = None,
                 space: SearchSpace | None = None):
        self.cache = cache
        wanted = list(metrics) if metrics is not None else list(cache.metrics)
        unknown = [m for m in wanted if m not in cache.metrics]
        if unknown or not wanted:
            raise ConfigError(f"replay: metrics {unknown or wanted} are not in the cached grid "
                              f"(valid: {', '.join(cache.metrics)})")
        self.metrics = wanted
        self.columns = [cache.metrics.index(m) for m in wanted]
        self.directions = [cache.directions[j] for j in self.columns]
        self.space = space or cache.space()
        self.index = {spec_key(s): i for i, s in enumerate(cache.specs)}
        self.values = cache.array()[:, self.columns]
        self.asked: list[int] = []

    @property
    def evaluated(self) -> int:
        return len(set(self.asked))

    def point_of(self, spec: ExplainerSpec) -> int:
        """The grid index of ``spec``; an error naming the spec when it is no grid point."""
        i = self.index.get(spec_key(spec))
        if i is None:
            raise StudyError(f"replay: the sampler proposed {spec.describe()}, which is not a point of the cached "
                             f"grid ({len(self.index)} points); a replay never substitutes a nearest point")
        return i

    def __call__(self, trial: optuna.Trial) -> tuple[float, ...]:
        i = self.point_of(self.space.suggest(trial))
        self.asked.append(i)
        trial.set_user_attr("grid_point", i)
        return tuple(float(v) for v in self.values[i])
