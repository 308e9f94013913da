"""Pydantic models of the study YAML.

Every model forbids unknown keys, so a typo is an error that names the field instead of a
setting silently ignored. Names that are fixed by the product (rules, first-layer rules,
samplers, devices) are checked here; names that live in a registry elsewhere (metrics, models,
datasets) are checked when the study is created, against that registry.
"""

from __future__ import annotations

import math
import re
import typing
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Discriminator, Tag, ValidationInfo, field_validator, model_validator

from xaiopt.config.rule_names import BUILTIN_PARAMS, first_layer_rules, group_rules, plugin_params, rule_param

ATTENTION_RULES = ("attnlrp", "cp")
# the base composite: what the layers no group or first-layer rule names get. lrp: activations and
# batch norms pass relevance on unchanged, epsilon(1e-6) on conv/linear; excitation_backprop:
# activations and batch norms keep their gradient, z+ on conv/linear (zennit's ExcitationBackprop).
# Both: Norm on sums and average pools.
BASES = ("lrp", "excitation_backprop")
SAMPLERS = ("tpe", "tpe-decision", "nsga2", "nsga3", "gp", "random", "grid", "qmc")

_DEVICE = re.compile(r"^(auto|cpu|cuda(:\d+)?|mps)$")
_GROUP_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]*$")


def _admits(annotation: Any, kind: type) -> bool:
    """Whether a field's type takes values of ``kind`` anywhere in it (a union member, a list's item)."""
    if annotation is kind or annotation is Any:
        return True
    if typing.get_origin(annotation) is Literal:
        return any(isinstance(a, kind) for a in typing.get_args(annotation))
    return any(_admits(a, kind) for a in typing.get_args(annotation))


def _bool_for_number(value: Any, annotation: Any) -> bool:
    """True where YAML's true/false stands for a number: Python's bool is an int, so pydantic would
    take ``n_trials: true`` as 1 trial and ``gamma: [false]`` as 0.0."""
    if isinstance(value, list):
        return any(_bool_for_number(v, annotation) for v in value)
    return (isinstance(value, bool) and not _admits(annotation, bool)
            and (_admits(annotation, int) or _admits(annotation, float)))


def _first_bool(value: Any) -> Any:
    if isinstance(value, list):
        return next((b for b in map(_first_bool, value) if isinstance(b, bool)), value)
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_for_number(cls, v: Any, info: ValidationInfo) -> Any:
        annotation = cls.model_fields[info.field_name].annotation if info.field_name else None
        if _bool_for_number(v, annotation):
            what = "an integer" if not _admits(annotation, float) else "a number"
            if _admits(annotation, str):
                what += " or a name"
            where = f" in {v!r}" if isinstance(v, list) else ""
            raise ValueError(f"expected {what}, got {_first_bool(v)!r}{where} (true/false is not a number)")
        return v


def held_out_of(holdout: int | float | None, n: int) -> int:
    """How many of ``n`` samples a validated ``data.holdout`` holds out: a count as given, a fraction
    of ``n`` rounded half up (0.25 of 10 is 3, as a person rounds), 0 for None."""
    if holdout is None:
        return 0
    return math.floor(holdout * n + 0.5) if isinstance(holdout, float) else int(holdout)


def _one_of(value: str, valid: tuple[str, ...], what: str) -> str:
    if value not in valid:
        raise ValueError(f"unknown {what} {value!r} (valid: {', '.join(valid)})")
    return value


def _names_of(values: list[str], valid: tuple[str, ...], what: str) -> list[str]:
    """A non-empty list of distinct names, each one of ``valid``."""
    if not values:
        raise ValueError(f"empty list; give at least one of {', '.join(valid)}")
    for r in values:
        _one_of(r, valid, what)
    if len(set(values)) != len(values):
        raise ValueError(f"duplicate rules in {values}")
    return values


class Choices(_Strict):
    """A categorical parameter: one of the listed values."""

    choices: list[float]

    @field_validator("choices")
    @classmethod
    def _non_empty(cls, v: list[float]) -> list[float]:
        if not v:
            raise ValueError("empty list; give at least one value")
        if any(not math.isfinite(x) for x in v):
            raise ValueError("values must be finite numbers")
        if len(set(v)) != len(v):
            raise ValueError(f"duplicate values in {v}")
        return v


class Range(_Strict):
    """A continuous parameter in [low, high], optionally sampled on a log scale."""

    low: float
    high: float
    log: bool = False

    @model_validator(mode="after")
    def _ordered(self) -> "Range":
        if not (math.isfinite(self.low) and math.isfinite(self.high)):
            raise ValueError("low and high must be finite")
        if self.low > self.high:
            raise ValueError(f"low ({self.low}) must not exceed high ({self.high})")
        if self.log and self.low <= 0:
            raise ValueError(f"a log range needs low > 0, got {self.low}")
        return self


def _coerce_param(v: Any) -> Any:
    # a bare list is the common case: `gamma: [0, 0.25, 1]`
    if isinstance(v, list):
        return {"choices": v}
    return v


def _param_kind(v: Any) -> str:
    if isinstance(v, (Choices, Range)):
        return "choices" if isinstance(v, Choices) else "range"
    if isinstance(v, dict) and "choices" not in v and ("low" in v or "high" in v):
        return "range"
    return "choices"


# `{choices: [...]}` (or a bare list) or `{low, high, log}`; the keys decide which, so an error
# speaks of the form the user meant instead of both.
ParamSpace = Annotated[
    Union[Annotated[Choices, Tag("choices")], Annotated[Range, Tag("range")]], Discriminator(_param_kind)
]



def _param_spaces(v: Any) -> Any:
    """A bare list per parameter, as for gamma/epsilon: ``params: {alpha: [1, 2]}``."""
    if isinstance(v, dict):
        return {k: _coerce_param(p) for k, p in v.items()}
    return v


class RuleChoice(_Strict):
    """Which rules a layer group may take, and the values of their parameters.

    ``params``: the values of the parameters of rules registered by a plugin
    (``xaiopt.space.register_rule(name, param="alpha")``), by parameter name, in the form gamma and
    epsilon take: ``params: {alpha: [1, 2, 3]}`` or ``params: {alpha: {low: 1, high: 3}}``.
    """

    rules: list[str] | None = None
    gamma: ParamSpace | None = None
    epsilon: ParamSpace | None = None
    params: dict[str, ParamSpace] = {}

    @field_validator("gamma", "epsilon", mode="before")
    @classmethod
    def _bare_list(cls, v: Any) -> Any:
        return _coerce_param(v)

    @field_validator("params", mode="before")
    @classmethod
    def _bare_lists(cls, v: Any) -> Any:
        return _param_spaces(v)

    @field_validator("params")
    @classmethod
    def _known_params(cls, v: dict[str, Any]) -> dict[str, Any]:
        known = plugin_params()
        for name in v:
            if name in BUILTIN_PARAMS:
                raise ValueError(f"{name!r} has a field of its own: give its values as {name}: [...] beside rules, "
                                 f"not under params")
            if name not in known:
                valid = ", ".join(f"{p} (of {', '.join(rules)})" for p, rules in known.items())
                raise ValueError(f"no registered rule takes a parameter {name!r} (valid: "
                                 f"{valid or 'none; a plugin rule registered with param=... adds one'})")
        return v

    @field_validator("rules")
    @classmethod
    def _known_rules(cls, v: list[str] | None) -> list[str] | None:
        return None if v is None else _names_of(v, group_rules(), "rule")

    @field_validator("gamma")
    @classmethod
    def _gamma_non_negative(cls, v: Any) -> Any:
        lows = v.choices if isinstance(v, Choices) else [v.low] if v is not None else []
        if any(x < 0 for x in lows):
            raise ValueError("gamma must be >= 0")
        return v

    @field_validator("epsilon")
    @classmethod
    def _epsilon_positive(cls, v: Any) -> Any:
        lows = v.choices if isinstance(v, Choices) else [v.low] if v is not None else []
        if any(x <= 0 for x in lows):
            raise ValueError("epsilon must be > 0")
        return v

    def param_space(self, param: str) -> Any:
        """This choice's values of ``param`` (gamma, epsilon or a plugin rule's), None if not given."""
        if param in BUILTIN_PARAMS:
            return getattr(self, param)
        return self.params.get(param)


class ExplicitGroup(_Strict):
    """A named layer group: module names or shell-style globs (``features.1*``)."""

    name: str
    modules: list[str]

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _GROUP_NAME.match(v):
            raise ValueError(f"group name {v!r} must be an identifier (letters, digits, _ and -)")
        return v

    @field_validator("modules")
    @classmethod
    def _modules(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("empty list; name at least one module or glob")
        return v


# the parts a transformer block's Linear layers play (xaiopt/space/sublayers.py measures them)
SUBLAYER_KINDS = ("qkv", "proj", "fc1", "fc2", "other")


class BlockGroups(_Strict):
    """A transformer's groups by depth and by sublayer: ``{blocks: K, sublayers: true}`` splits the
    blocks into K by depth and each of those by the part its Linear layers play (``qkv``, ``proj``,
    ``fc1``, ``fc2``, ``other``; measured on a forward pass), plus ``head``."""

    blocks: int
    sublayers: bool = True

    @field_validator("blocks")
    @classmethod
    def _blocks(cls, v: int) -> int:
        if v < 1:
            raise ValueError(f"the number of block groups must be >= 1, got {v}")
        return v

    def names(self) -> list[str]:
        """The groups' names: ``qkv, proj, fc1, fc2, other, head`` for one block group, ``blocks1_qkv``
        .. ``blocksK_other`` and ``head`` for K; without sublayers ``blocks1..blocksK`` and ``head``."""
        if not self.sublayers:
            return [f"blocks{i + 1}" for i in range(self.blocks)] + ["head"]
        if self.blocks == 1:
            return [*SUBLAYER_KINDS, "head"]
        return [f"blocks{i + 1}_{kind}" for i in range(self.blocks) for kind in SUBLAYER_KINDS] + ["head"]


def _groups_kind(v: Any) -> str:
    if isinstance(v, (dict, BlockGroups)):
        return "blocks"
    return "auto" if isinstance(v, int) and not isinstance(v, bool) else "explicit"


GroupsSpace = Annotated[
    Union[Annotated[int, Tag("auto")], Annotated[list[ExplicitGroup], Tag("explicit")],
          Annotated[BlockGroups, Tag("blocks")]],
    Discriminator(_groups_kind),
]


class SpaceConfig(RuleChoice):
    """The search space: canonization, first-layer rule, layer groups and their rules."""

    canonize: list[bool] = [True, False]
    first_layer: list[str] = ["zbox", "flat", "wsquare", "same"]
    layer_groups: GroupsSpace = 3
    rules: list[str] | None = ["epsilon", "gamma", "alpha2beta1", "alpha1beta0", "zplus", "flat"]
    gamma: ParamSpace | None = Choices(choices=[0.0, 0.1, 0.25, 0.5, 1.0, 10.0])
    epsilon: ParamSpace | None = Choices(choices=[1e-6, 1e-3, 1e-2, 1e-1, 1.0])
    overrides: dict[str, RuleChoice] = {}
    # transformers only: the attention rules searched (attnlrp: AttnLRP's softmax and uniform rules,
    # cp: attention weights held constant, CP-LRP); unset: attnlrp for a model that runs attention
    attention: list[str] | None = None
    # CNNs: the base composites searched (BASES); unset: lrp only
    base: list[str] | None = None

    @field_validator("base")
    @classmethod
    def _base(cls, v: list[str] | None) -> list[str] | None:
        return None if v is None else _names_of(v, BASES, "base composite")

    @field_validator("attention")
    @classmethod
    def _attention(cls, v: list[str] | None) -> list[str] | None:
        return None if v is None else _names_of(v, ATTENTION_RULES, "attention rule")

    @field_validator("canonize")
    @classmethod
    def _canonize(cls, v: list[bool]) -> list[bool]:
        if not v:
            raise ValueError("empty list; give [true], [false] or [true, false]")
        if len(set(v)) != len(v):
            raise ValueError(f"duplicate values in {v}")
        return v

    @field_validator("first_layer")
    @classmethod
    def _first_layer(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError(f"empty list; give at least one of {', '.join(first_layer_rules())}")
        for r in v:
            _one_of(r, first_layer_rules(), "first-layer rule")
        if len(set(v)) != len(v):
            raise ValueError(f"duplicate rules in {v}")
        return v

    @field_validator("layer_groups")
    @classmethod
    def _groups(cls, v: int | list[ExplicitGroup] | BlockGroups) -> int | list[ExplicitGroup] | BlockGroups:
        if isinstance(v, BlockGroups):
            return v
        if isinstance(v, int):
            if v < 1:
                raise ValueError(f"the number of automatic conv groups must be >= 1, got {v}")
            return v
        if not v:
            raise ValueError("empty list; give an integer (automatic groups) or named groups")
        names = [g.name for g in v]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate group names in {names}")
        return v

    @model_validator(mode="after")
    def _parameters_present(self) -> "SpaceConfig":
        for where, choice in [("space", self)] + [(f"space.overrides.{k}", c) for k, c in self.overrides.items()]:
            rules = choice.rules if choice.rules is not None else self.rules
            for rule in rules or ():
                param = rule_param(rule)
                if param is None or choice.param_space(param) is not None or self.param_space(param) is not None:
                    continue
                field = param if param in BUILTIN_PARAMS else f"params.{param}"
                raise ValueError(f"{where}: rule {rule!r} is searched but no {param} values are given "
                                 f"(set space.{field}: a list of values or {{low, high, log}})")
        if self.rules is None:
            raise ValueError("space.rules: give at least one rule")
        return self

    def group_names(self) -> list[str]:
        """Names of the layer groups (automatic: conv1..convK and classifier)."""
        if isinstance(self.layer_groups, int):
            return [f"conv{i + 1}" for i in range(self.layer_groups)] + ["classifier"]
        if isinstance(self.layer_groups, BlockGroups):
            return self.layer_groups.names()
        return [g.name for g in self.layer_groups]

    def transformer_group_names(self) -> list[str]:
        """The automatic groups of a transformer (blocks1..blocksK and head); explicit groups as named."""
        if isinstance(self.layer_groups, int):
            return [f"blocks{i + 1}" for i in range(self.layer_groups)] + ["head"]
        return self.group_names()

    @model_validator(mode="after")
    def _overrides_name_groups(self) -> "SpaceConfig":
        # which automatic names apply is known once the model runs (attention on its input's path or not)
        names = list(dict.fromkeys(self.group_names() + self.transformer_group_names()))
        for k in self.overrides:
            if k not in names:
                raise ValueError(f"overrides names unknown layer group {k!r} (groups: {', '.join(names)})")
        return self


class ModelConfig(_Strict):
    """The model to explain: ``benchmark:vgg``, ``torchvision:resnet18``, ``timm:resnet18``, ``module:pkg.mod:fn``."""

    name: str = "benchmark:vgg"
    weights: str | None = None
    num_classes: int | None = None
    cache_dir: str | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not re.match(r"^(benchmark:\w+|relation_network:\w+|torchvision:\w+|timm:\w+(\.\w+)?|module:[\w.]+:\w+|"
                        r"python:\w+)$", v):
            raise ValueError(
                f"model {v!r} is not of the form benchmark:NAME, relation_network:clevr[SIZE], torchvision:NAME, "
                f"timm:NAME[.TAG], module:PKG.MOD:CALLABLE or python:NAME (a model registered in this process with "
                f"xaiopt.register_model)"
            )
        return v


class DataConfig(_Strict):
    """The evaluation batch: dataset name and how many samples every trial is scored on.

    ``name``: ``benchmark``, ``imagefolder:PATH``, ``imagenet:PATH``, ``voc:PATH``, ``coco:PATH`` or
    ``clevr_xai:PATH`` (visual questions; the questions are the model's second input) (checked
    against the dataset registry when the study is created). ``target``: the class each sample is
    explained for, its ``label`` or the model's ``predicted`` class on the clean batch.
    ``classes``: the model's class names in index order (a list, or a text file with one name per
    line) that dataset class names (folders, wnids, VOC names) are looked up in. ``n_classes``: a
    seeded subset of that many classes, ``n_samples`` balanced over them. ``split``: ``train``/
    ``test`` for ``benchmark``, ``train``/``val``/``trainval`` for ``voc``, ``val``/``train`` for ``coco``,
    the questions and ground truth for ``clevr_xai`` (``simple``, ``simple_all_objects``, ``complex``,
    ``complex_first_nonempty``, ``complex_union``, ``complex_all_objects``).
    ``mean``/``std``: the
    model's input normalisation (default ImageNet's). ``holdout``: a fraction (``0 < f < 1``) or a
    count of the ``n_samples`` kept out of the search, stratified by class and seeded by ``seed``;
    trials are scored on the rest, ``xaiopt study validate`` on these (xaiopt/zoo/split.py).
    ``only_class``: explain only the samples of this class (its name or index) among the search
    and held-out samples of the split above (``xaiopt study create --per-class`` sets it).

    Example::

        data: {name: "imagenet:/data/imagenet", n_samples: 100, n_classes: 50, target: label, holdout: 0.3}
    """

    name: str = "benchmark"
    n_samples: int = 32
    seed: int = 0
    image_size: int | None = None
    target: Literal["label", "predicted"] = "label"
    classes: list[str] | str | None = None
    n_classes: int | None = None
    split: str | None = None
    mean: list[float] | None = None
    std: list[float] | None = None
    holdout: int | float | None = None
    only_class: str | int | None = None

    @field_validator("holdout", mode="before")
    @classmethod
    def _holdout(cls, v: Any) -> Any:
        if v is None:
            return v
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ValueError(f"give a fraction 0 < f < 1 or a count >= 1 of held-out samples, got {v!r}")
        if isinstance(v, float) and not 0.0 < v < 1.0:
            raise ValueError(f"a fraction must be 0 < f < 1, got {v}")
        if isinstance(v, int) and v < 1:
            raise ValueError(f"a count must be >= 1, got {v}")
        return v

    @field_validator("n_samples")
    @classmethod
    def _n(cls, v: int) -> int:
        if v < 1:
            raise ValueError(f"n_samples must be >= 1, got {v}")
        return v

    @field_validator("image_size")
    @classmethod
    def _image_size(cls, v: int | None) -> int | None:
        if v is not None and v < 1:
            raise ValueError(f"image_size must be >= 1 pixel, got {v}")
        return v

    @field_validator("classes")
    @classmethod
    def _classes(cls, v: list[str] | str | None) -> list[str] | str | None:
        if isinstance(v, list) and not v:
            raise ValueError("empty list; give the model's class names in index order, or a file with one per line")
        if isinstance(v, str) and not v.strip():
            raise ValueError("empty path; give the model's class names as a list, or a file with one per line")
        return v

    @field_validator("mean", "std")
    @classmethod
    def _channels(cls, v: list[float] | None) -> list[float] | None:
        if v is not None and (len(v) != 3 or not all(math.isfinite(x) for x in v)):
            raise ValueError(f"give 3 finite numbers (R, G, B), got {v}")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> "DataConfig":
        if self.n_classes is not None:
            if self.n_classes < 1:
                raise ValueError(f"n_classes must be >= 1, got {self.n_classes}")
            if self.n_classes > self.n_samples:
                raise ValueError(f"n_classes={self.n_classes} exceeds n_samples={self.n_samples}; every selected "
                                 f"class needs a sample (valid: n_classes <= n_samples)")
        if isinstance(self.holdout, int) and self.holdout >= self.n_samples:
            raise ValueError(f"holdout={self.holdout} leaves no search sample of n_samples={self.n_samples} "
                             f"(valid: 1 to {self.n_samples - 1}, or a fraction)")
        if (self.mean is None) != (self.std is None):
            raise ValueError("mean and std go together; give both (3 numbers each) or neither")
        if self.std is not None and any(s <= 0 for s in self.std):
            raise ValueError(f"std must be > 0 per channel, got {self.std}")
        return self


class MetricConfig(_Strict):
    """One entry of the metric vector: a registered metric or ``quantus:ClassName``, and its parameters."""

    name: str
    params: dict[str, Any] = {}

    @model_validator(mode="before")
    @classmethod
    def _bare_name(cls, v: Any) -> Any:
        return {"name": v} if isinstance(v, str) else v

    @property
    def label(self) -> str:
        return self.name


class SamplerConfig(_Strict):
    """The Optuna sampler and its keyword arguments."""

    name: str = "tpe"
    params: dict[str, Any] = {}

    @model_validator(mode="before")
    @classmethod
    def _bare_name(cls, v: Any) -> Any:
        return {"name": v} if isinstance(v, str) else v

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return _one_of(v, SAMPLERS, "sampler")


class RuntimeConfig(_Strict):
    """How a worker evaluates: memory budget per forward pass, heatmap artifacts, LRP engine.

    ``engine``: ``xaiopt`` (xaiopt's LRP engine, one forward and one backward, docs/lrp.md) or
    ``zennit`` (the zennit composite); both give the same attributions. ``lrp_cache_mb``: memory the
    xaiopt engine may keep recorded forwards in, so that later trials on the same inputs run only the
    backward (0: keep none). ``score_cache_mb``: memory for the scores of occluded images, so that an
    image an earlier trial occluded the same way is not forwarded again (0: forward every image).
    """

    batch_budget: int = 256
    heatmaps: int = 4
    heartbeat_interval: int = 60
    engine: Literal["xaiopt", "zennit"] = "xaiopt"
    lrp_cache_mb: float = 1024.0
    # occlusion scores (region perturbation, pixel flipping) kept across trials (xaiopt/metrics/score_memo.py)
    score_cache_mb: float = 64.0
    # the layout of the model and the batch: channels_last runs CNNs faster on CPUs (xaiopt/objective/layout.py)
    memory_format: Literal["auto", "channels_last", "contiguous"] = "auto"
    # how long a worker waits out an unreachable database before it gives up (xaiopt/study/resilient.py)
    storage_retry_seconds: float = 180.0
    # score the reference explanations (random, Sobel, gradient, input x gradient) once per study, for
    # the per-metric sanity check of the recommendation (xaiopt/analysis/sanity.py)
    references: bool = True

    @field_validator("lrp_cache_mb", "score_cache_mb", "storage_retry_seconds")
    @classmethod
    def _finite_amount(cls, v: float, info) -> float:
        if not math.isfinite(v) or v < 0:
            unit = "seconds" if info.field_name == "storage_retry_seconds" else "megabytes"
            raise ValueError(f"{info.field_name} must be a finite number >= 0 ({unit}), got {v}")
        return v

    @field_validator("heartbeat_interval")
    @classmethod
    def _heartbeat(cls, v: int) -> int:
        if v < 1:
            raise ValueError(f"heartbeat_interval must be >= 1 second, got {v}")
        return v

    @field_validator("batch_budget")
    @classmethod
    def _budget(cls, v: int) -> int:
        if v < 1:
            raise ValueError(f"batch_budget must be >= 1, got {v}")
        return v

    @field_validator("heatmaps")
    @classmethod
    def _heatmaps(cls, v: int) -> int:
        if v < 0:
            raise ValueError(f"heatmaps must be >= 0, got {v}")
        return v


class FidelityConfig(_Strict):
    """Multi-fidelity trials (racing): each new setting is scored on the first ``stages[0]`` search
    samples, then on the next ones up to ``stages[1]``, and so on; after each stage it is pruned when
    it loses (``rule``), and a setting that survives every stage is evaluated in full, exactly as
    without this section (docs/search.md).

    ``rule``: ``decision`` (the default): it loses when the study's incumbent (its best setting by the
    decision's weighted score, ``decision.prefer``) beats it on that score by more than ``z``
    standard errors of the paired per-sample difference; ``dominance``: when one completed trial
    beats it on every metric by more than ``z`` standard errors. ``draws``: noise draws per sample of
    the metrics with an ``nr_samples`` parameter in the stages; None, the metric's own
    ``nr_samples``. ``subset: K`` (one stage of K samples) is read as ``stages: [K]``.

    Example::

        fidelity: {stages: [4, 16], z: 1.0, draws: 1}
    """

    # a count of samples, or a share of the search samples (0.25 of 32 is 8)
    stages: list[Union[int, float]] = [0.25, 0.5]
    rule: Literal["decision", "dominance"] = "decision"
    z: float = 1.0
    draws: int | None = 1

    @model_validator(mode="before")
    @classmethod
    def _subset_is_one_stage(cls, v: Any) -> Any:
        if isinstance(v, dict) and "subset" in v:
            if "stages" in v:
                raise ValueError("give stages or subset, not both (subset: K is stages: [K])")
            v = {**{k: x for k, x in v.items() if k != "subset"}, "stages": [v["subset"]]}
        return v

    @field_validator("stages")
    @classmethod
    def _stages(cls, v: list[int | float]) -> list[int | float]:
        if not v:
            raise ValueError("empty list; give the samples of each stage, e.g. [4, 16] or [0.125, 0.5]")
        for k in v:
            if isinstance(k, float) and not 0 < k < 1:
                raise ValueError(f"a stage is a count of samples (an integer) or a share of them between 0 and 1, "
                                 f"got {k}")
            if isinstance(k, int) and k < 2:
                raise ValueError(f"a stage needs >= 2 samples (a standard error needs two), got {k}")
        return v

    def stage_samples(self, n: int) -> list[int]:
        """The samples scored after each stage for ``n`` search samples (a share rounded half up, at least
        2); raises ValueError when they do not increase or reach ``n``."""
        out = [k if isinstance(k, int) else max(2, math.floor(k * n + 0.5)) for k in self.stages]
        if any(b <= a for a, b in zip(out, out[1:])):
            raise ValueError(f"fidelity.stages={self.stages} gives {out} of the {n} search samples: stages must "
                             f"increase")
        if out[-1] >= n:
            raise ValueError(f"fidelity.stages={self.stages}: a stage must score fewer than the {n} search samples "
                             f"(valid: 2 to {n - 1} samples, or a share below {(n - 1) / n:.3g})")
        return out

    @field_validator("z")
    @classmethod
    def _z(cls, v: float) -> float:
        if not math.isfinite(v) or v <= 0:
            raise ValueError(f"z must be a finite number > 0 (standard errors), got {v}")
        return v

    @field_validator("draws")
    @classmethod
    def _draws(cls, v: int | None) -> int | None:
        if v is not None and v < 1:
            raise ValueError(f"draws must be >= 1 (or unset: each metric's nr_samples), got {v}")
        return v


class DecisionConfig(_Strict):
    """The study's decision: the category weights its recommendation ranks by (``study recommend``,
    the report, ``study validate``; an explicit ``--prefer`` replaces them). Racing (``fidelity``) and
    the ``tpe-decision`` sampler optimize the same weighted score. Categories not named weigh 1; 0
    leaves one out.

    Example::

        decision: {prefer: {faithfulness: 2, localization: 1}}
    """

    prefer: dict[str, float] = {}

    @field_validator("prefer")
    @classmethod
    def _prefer(cls, v: dict[str, float]) -> dict[str, float]:
        from xaiopt.metrics.categories import CATEGORIES

        for name, weight in v.items():
            if name not in CATEGORIES:
                raise ValueError(f"unknown category {name!r} (valid: {', '.join(CATEGORIES)})")
            if not math.isfinite(weight) or weight < 0:
                raise ValueError(f"weight of {name} = {weight!r} must be a number >= 0")
        return v


class StudyConfig(_Strict):
    """A whole study: what to explain, what to search, how to score, where to store."""

    name: str = "xaiopt-study"
    n_trials: int | None = None
    seed: int = 0
    device: str = "auto"
    storage: str | None = None
    model: ModelConfig = ModelConfig()
    data: DataConfig = DataConfig()
    space: SpaceConfig = SpaceConfig()
    metrics: list[MetricConfig] = [
        MetricConfig(name=n)
        for n in (
            "sparseness",
            "region_perturbation",
            "relevance_rank_accuracy",
            "relevance_mass_accuracy",
            "avg_sensitivity",
            "random_logit",
        )
    ]
    sampler: SamplerConfig = SamplerConfig()
    runtime: RuntimeConfig = RuntimeConfig()
    # the recommendation's category weights, stored with the study (docs/recommendation.md)
    decision: DecisionConfig = DecisionConfig()
    # subset-first trials pruned when clearly dominated (xaiopt/objective/fidelity.py); None: exact, off
    fidelity: FidelityConfig | None = None
    # named baseline explainers enqueued once when the study is created (xaiopt/study/baselines.py)
    baselines: list[str] = []
    # modules imported by every process that runs or reads the study (xaiopt/config/plugins.py)
    plugins: list[str] = []

    @field_validator("plugins")
    @classmethod
    def _plugins(cls, v: list[str]) -> list[str]:
        from xaiopt.config.plugins import MODULE_NAME

        bad = [n for n in v if not MODULE_NAME.match(n)]
        if bad:
            raise ValueError(f"{bad[0]!r} is not a module name (valid: a dotted Python module path, e.g. "
                             f"my_pkg.metrics)")
        return list(dict.fromkeys(v))

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        if not _DEVICE.match(v):
            raise ValueError(f"unknown device {v!r} (valid: auto, cpu, cuda, cuda:N)")
        return v

    @field_validator("n_trials")
    @classmethod
    def _trials(cls, v: int | None) -> int | None:
        if v is not None and v < 1:
            raise ValueError(f"n_trials must be >= 1, got {v}")
        return v

    @field_validator("name")
    @classmethod
    def _study_name(cls, v: str) -> str:
        if not v.strip():
            raise ValueError(f"a study name must not be empty or blank, got {v!r} (give one, e.g. name: my-study)")
        return v

    @field_validator("metrics")
    @classmethod
    def _metrics(cls, v: list[MetricConfig]) -> list[MetricConfig]:
        if not v:
            raise ValueError("empty list; name at least one metric")
        names = [m.name for m in v]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"metric named twice: {', '.join(dup)}")
        return v

    @model_validator(mode="after")
    def _fidelity_subset(self) -> "StudyConfig":
        f, data = self.fidelity, self.data
        if f is not None:
            search = data.n_samples - held_out_of(data.holdout, data.n_samples)
            f.stage_samples(search)
        return self

    @model_validator(mode="after")
    def _grid_needs_choices(self) -> "StudyConfig":
        if self.sampler.name == "grid":
            for where, c in [("space", self.space)] + [
                (f"space.overrides.{k}", o) for k, o in self.space.overrides.items()
            ]:
                for p in ("gamma", "epsilon", *c.params):
                    if isinstance(c.param_space(p), Range):
                        field = p if p in ("gamma", "epsilon") else f"params.{p}"
                        raise ValueError(f"sampler 'grid' needs value lists: {where}.{field} is a range")
        return self
