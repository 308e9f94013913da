"""docs/schema.md, generated from the pydantic models of :mod:`xaiopt.config.schema`.

Every field of the study YAML gets one row: its path (``data.n_samples``), its type, its default and
its meaning. Types and defaults are read off the models; a meaning is the field's pydantic
``description`` when it has one, else the entry of :data:`MEANINGS` below. A field without either
is an error, and so is a meaning of a field that no longer exists: tests/docs/test_schema_doc.py
fails when the file, the models and this table drift apart.

Regenerate the file with::

    python -m xaiopt.config.docs docs/schema.md
"""

from __future__ import annotations

import json
import os
import sys
import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from xaiopt.config.rule_names import FIRST_LAYER_RULES, GROUP_RULES
from xaiopt.config.schema import (
    SAMPLERS,
    Choices,
    ExplicitGroup,
    Range,
    StudyConfig,
)
from xaiopt.files import write_atomic

# models whose fields are described inside their parent's row instead of rows of their own
_INLINE = (Choices, Range)

MEANINGS: dict[str, str] = {
    "name": "The study's name in the storage; workers and read commands find the study by it.",
    "n_trials": "The study's total trial budget, shared by all its workers (baselines included); unset: "
                "give `--n-trials` to each run.",
    "seed": "Seed of the sampler (a worker salts it with its host and process id) and of the metrics' noise.",
    "device": "Where trials run: `auto` (CUDA when available), `cpu`, `cuda`, `cuda:N` or `mps`; "
              "`--device` overrides it per worker.",
    "storage": "Optuna storage URL (`sqlite:///file.db`, `postgresql+psycopg://user@host/db`); unset: "
               "`--storage`, `$XAIOPT_STORAGE` or `sqlite:///xaiopt.db`.",
    "model": "The model to explain.",
    "model.name": "`benchmark:vgg|resnet|densenet|vit`, `torchvision:NAME`, `timm:NAME[.TAG]` or "
                  "`module:PKG.MOD:CALLABLE` (a function returning an `nn.Module`); from Python also a "
                  "registered in-process model (`xaiopt.register_model`, docs/api.md).",
    "model.weights": "Weights to load: `trained` or `random` for the benchmark, torchvision weights "
                     "(`DEFAULT`, `IMAGENET1K_V1`) from the torch hub cache, `pretrained` or a file for timm; "
                     "passed as `weights=` to a `module:` callable.",
    "model.num_classes": "The model's number of outputs when it is not the default (passed to the model's builder).",
    "model.cache_dir": "Where trained benchmark models are cached (default `$XAIOPT_CACHE_DIR`, else "
                       "`~/.cache/xaiopt`).",
    "data": "The evaluation batch every trial is scored on.",
    "data.name": "`benchmark`, `imagefolder:PATH`, `imagenet:PATH`, `voc:PATH` or `coco:PATH`; from Python also a "
                 "registered batch of tensors (`python:NAME`).",
    "data.n_samples": "How many samples every trial is scored on (search and held-out together), balanced "
                      "over the classes.",
    "data.seed": "Seed of the sample selection and of the held-out split.",
    "data.image_size": "Side of the square input images (resize shorter side, centre crop); default 64 for "
                       "`benchmark`, 224 otherwise.",
    "data.target": "The class each sample is explained for: its `label`, or the model's `predicted` class "
                   "on the clean batch.",
    "data.classes": "The model's class names in index order (a list, or a file with one per line) that the "
                    "dataset's class names are looked up in.",
    "data.n_classes": "A seeded subset of this many classes; the samples are balanced over them.",
    "data.split": "`train`/`test` for `benchmark` (default `test`), `train`/`val`/`trainval` for `voc`, "
                  "`val`/`train` for `coco` (default `val`).",
    "data.mean": "Per-channel input normalisation mean (R, G, B) of the model; default ImageNet's.",
    "data.std": "Per-channel input normalisation standard deviation; given together with `mean`.",
    "data.holdout": "Samples kept out of the search for `xaiopt study validate`: a fraction `0 < f < 1` or a "
                    "count, stratified by class.",
    "data.only_class": "Explain only the samples of this class (name or index); `study create --per-class` "
                       "sets it.",
    "space": "The search space of explainers.",
    "space.rules": f"Rules every layer group may take ({', '.join(GROUP_RULES)}, and the rules the study's "
                   f"plugins register with `xaiopt.space.register_rule`).",
    "space.params": "Values of the parameters of plugin rules, by parameter name (`{alpha: [1, 2, 3]}` or "
                    "`{alpha: {low: 1, high: 3}}`): the forms gamma takes; a searched plugin rule with a "
                    "parameter needs its values here.",
    "space.gamma": "Values of gamma for the `gamma` rule: a list (`[0, 0.25, 1]`) or a range "
                   "`{low, high, log}`.",
    "space.epsilon": "Values of epsilon for the `epsilon` rule: a list or a range `{low, high, log}`.",
    "space.canonize": "Whether trials explain the canonized twin (batch norms merged): `[true, false]` "
                      "searches both.",
    "space.first_layer": f"Rules of the first layer ({', '.join(FIRST_LAYER_RULES)}, or a parameter-free plugin "
                         f"rule; `same`: its group's rule).",
    "space.layer_groups": "An integer K (automatic groups `conv1..convK` of consecutive convolutions, plus "
                          "`classifier`; for a transformer `blocks1..blocksK` by depth, plus `head`), a list of "
                          "named groups `{name, modules}` (module names or globs), or, for a transformer, "
                          "`{blocks: K, sublayers: true}`: each block group split by the part its Linear layers "
                          "play, measured on a forward pass (`qkv`, `proj`, `fc1`, `fc2`, `other`; named "
                          "`blocks1_qkv` .. for K > 1), plus `head`.",
    "space.layer_groups.blocks": "Transformers, `{blocks: K, sublayers: ...}` form: the number of block groups by "
                                 "depth (the patch embedding joins the first).",
    "space.layer_groups.sublayers": "Split each block group by the part its Linear layers play (`qkv`, `proj`, `fc1`, "
                                    "`fc2`, `other`), measured on a forward pass; `false`: by depth only.",
    "space.attention": "Transformers only: the attention rules searched, `attnlrp` (AttnLRP's softmax and uniform "
                       "rules) and/or `cp` (CP-LRP, attention held constant); unset: `attnlrp` on a model that runs "
                       "attention. Refused on a model that runs none (docs/transformers.md).",
    "space.base": "CNNs: the base composites searched, `lrp` (activations and batch norms pass relevance on "
                  "unchanged, epsilon 1e-6 on conv/linear layers no group names) and/or `excitation_backprop` "
                  "(activations and batch norms keep their gradient, z+ on those layers: zennit's "
                  "ExcitationBackprop); both put Norm on sums and average pools. Unset: `lrp`.",
    "space.overrides": "Per layer group (by name): its own `rules`, `gamma`, `epsilon` and `params`, replacing "
                       "the space-wide ones.",
    "space.overrides.rules": "The rules this group may take; unset: `space.rules`.",
    "space.overrides.gamma": "This group's gamma values; unset: `space.gamma`.",
    "space.overrides.epsilon": "This group's epsilon values; unset: `space.epsilon`.",
    "space.overrides.params": "This group's values of plugin rule parameters, by name; unset: `space.params`.",
    "metrics": "The metric vector: registered metric names (docs/metrics.md), `quantus:ClassName`, or "
               "`{name, params}`; each metric's direction is fixed by the registry.",
    "metrics.name": "The metric's name (a plugin or `xaiopt.register_objective` can add names).",
    "metrics.params": "The metric's parameters (each metric's own; unknown ones are refused).",
    "sampler": "The Optuna sampler: a name or `{name, params}`.",
    "sampler.name": f"One of {', '.join(SAMPLERS)}. `tpe-decision` is a single-objective TPE on the "
                    "study's decision score (`decision.prefer`, as `study recommend` ranks); every metric is "
                    "still stored per trial (docs/search.md).",
    "sampler.params": "Keyword arguments of the Optuna sampler (e.g. `population_size` for nsga2; "
                      "TPESampler's, such as `constant_liar`, for tpe and tpe-decision).",
    "runtime": "How a worker evaluates trials.",
    "runtime.batch_budget": "Most images in one forward pass (attribution and metric passes are chunked by it).",
    "runtime.heatmaps": "Heatmaps of the first K samples uploaded per trial as a PNG artifact (0: none).",
    "runtime.heartbeat_interval": "Seconds between a running trial's heartbeats (PostgreSQL); a trial silent "
                                  "for longer is failed as stale and re-queued.",
    "runtime.engine": "`xaiopt` (xaiopt's LRP engine, docs/lrp.md) or `zennit` (the zennit composite); both "
                      "give the same attributions.",
    "runtime.lrp_cache_mb": "Memory (MB) the xaiopt engine may keep recorded forwards in, so later trials on "
                            "the same inputs run only the backward (0: keep none).",
    "runtime.score_cache_mb": "Memory (MB) for the scores of occluded images (region perturbation, pixel "
                              "flipping), so an image an earlier trial occluded the same way is not forwarded "
                              "again (0: forward every image; scores agree to float32 rounding either way).",
    "runtime.memory_format": "Layout of the model's weights and the images: `channels_last` (a CPU runs CNN "
                             "forwards 1.2-2.3x faster in it), `contiguous`, or `auto`: channels_last on a CPU when "
                             "the model gives the same outputs in it, checked on the evaluation batch at start.",
    "runtime.storage_retry_seconds": "How long this study's workers (`xaiopt worker`, `study optimize`, `run`) "
                                     "wait out an unreachable database server before they give up with exit 75: "
                                     "a study's setting governs its workers. `$XAIOPT_STORAGE_RETRY_SECONDS` "
                                     "bounds the wait of any command (every other command, and a worker until it "
                                     "has read this setting); unset, a command waits 180 s once connected and not "
                                     "at all for a database it cannot reach at start.",
    "runtime.references": "Score four reference explanations once per study (a random attribution, a Sobel edge "
                          "map, the gradient, input x gradient), on the search samples with the study's metrics, "
                          "when the budget is done (the cost of about four trials). `study recommend` "
                          "and the report then flag each metric that cannot tell the random reference from the "
                          "recommended setting (docs/recommendation.md).",
    "decision": "The study's decision: the category weights its recommendation ranks the settings by "
                "(`study recommend`, `study validate`, the report; an explicit `--prefer` replaces them). Racing "
                "trials (`fidelity`) and the `tpe-decision` sampler optimize the same weighted score.",
    "decision.prefer": "Weight per metric category, e.g. `{faithfulness: 2, localization: 1}` (categories not "
                       "named weigh 1; 0 leaves one out; a category the study has no metric of is an error at "
                       "`study create`). Empty: equal weights, as in Pahde et al. 2023.",
    "fidelity": "Multi-fidelity trials, racing (off when unset: every trial exact): a new setting is scored stage "
                "by stage on the first search samples and pruned (state PRUNED, user attr `pruned` says why) at "
                "the first stage it loses by `rule`; a setting that survives every stage is evaluated in full, "
                "its values exactly those without this section (docs/search.md).",
    "fidelity.stages": "The search samples scored after each stage: counts (`[4, 16]`) or shares of the search "
                       "samples (`[0.25, 0.5]`, the default: 8 and 16 of 32), increasing, each fewer than the "
                       "search samples. A stage scores only the samples the stage before did not.",
    "fidelity.rule": "`decision`: the setting loses when the study's incumbent (its best complete setting by the "
                     "`decision` score, normalized over the complete settings as `study recommend` does; from "
                     "two settings on) beats it on that score by more than `z` standard errors of the paired "
                     "per-sample difference. `dominance`: when one completed trial beats it on every metric by "
                     "more than `z` standard errors.",
    "fidelity.z": "Standard errors of the paired per-sample difference by which the incumbent (or a dominating "
                  "trial) must be better to prune the candidate (> 0; larger prunes less).",
    "fidelity.draws": "Noise draws per sample in the stages for metrics with `nr_samples` (null: their "
                      "own `nr_samples`; fewer are cheaper).",
    "baselines": "Named baseline explainers (the paper's composites: `epsilon_plus`, `epsilon_plus_flat`, "
                 "`alpha2beta1`, `epsilon_gamma_box`, `excitation_backprop`, which needs `excitation_backprop` in "
                 "`space.base`; `NAME:canonized` / `NAME:plain` pick one variant) enqueued "
                 "once, as the study's first trials, when it is created.",
    "plugins": "Modules imported by every process that runs or reads the study (a custom metric, rule, "
               "objective or model registers itself on import); installed or on `PYTHONPATH` on every machine.",
}


def _models(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    out: list[type[BaseModel]] = []
    for arg in typing.get_args(annotation):
        out.extend(_models(arg))
    return out


def _type(annotation: Any) -> str:
    """The annotation as a YAML reader thinks of it."""
    if annotation is type(None):
        return "null"
    if isinstance(annotation, type):
        if issubclass(annotation, BaseModel):
            return {"Choices": "list of numbers", "Range": "{low, high, log}", "ExplicitGroup": "{name, modules}",
                    "MetricConfig": "name or {name, params}",
                    "SamplerConfig": "name or {name, params}"}.get(annotation.__name__, "mapping")
        return {"str": "string", "int": "integer", "float": "number", "bool": "boolean"}.get(annotation.__name__,
                                                                                               annotation.__name__)
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        return _type(args[0])
    if origin is typing.Literal:
        return " \\| ".join(json.dumps(a) for a in args)
    if origin in (list, tuple):
        return f"list of {_type(args[0])}" if args else "list"
    if origin is dict:
        return f"mapping of {_type(args[1])}" if args else "mapping"
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        parts = list(dict.fromkeys(_type(a) for a in args))
        return " \\| ".join(parts)
    return str(annotation)


def _default(field: Any) -> str:
    value = field.default
    if value is PydanticUndefined:
        return "required"
    if isinstance(value, BaseModel):
        return "see below" if not isinstance(value, _INLINE) else _yaml(value.model_dump(mode="json"))
    if isinstance(value, list) and value and isinstance(value[0], BaseModel):
        return _yaml([v.model_dump(mode="json").get("name", v) for v in value])
    return _yaml(value)


def _yaml(value: Any) -> str:
    if isinstance(value, dict) and set(value) == {"choices"}:
        value = value["choices"]
    return f"`{json.dumps(value)}`"


def fields() -> list[dict[str, str]]:
    """One entry per YAML field, depth first: ``path``, ``type``, ``default``, ``meaning`` (may be empty)."""
    rows: list[dict[str, str]] = []

    def walk(model: type[BaseModel], prefix: str) -> None:
        for name, field in model.model_fields.items():
            path = f"{prefix}{name}"
            meaning = field.description or MEANINGS.get(path, "")
            rows.append({"path": path, "type": _type(field.annotation), "default": _default(field),
                         "meaning": meaning})
            for sub in _models(field.annotation):
                if sub not in _INLINE and sub is not ExplicitGroup:
                    walk(sub, f"{path}.")

    walk(StudyConfig, "")
    return rows


def check() -> list[str]:
    """Problems: fields without a meaning, meanings of fields that do not exist."""
    rows = fields()
    paths = {r["path"] for r in rows}
    problems = [f"{r['path']}: no meaning (add it to MEANINGS in xaiopt/config/docs.py or a Field description)"
                for r in rows if not r["meaning"]]
    problems += [f"{p}: described in MEANINGS but no such field in xaiopt/config/schema.py"
                 for p in sorted(set(MEANINGS) - paths)]
    return problems


def render() -> str:
    """The text of docs/schema.md."""
    lines = [
        "# Study YAML: every field",
        "",
        ("<!-- generated by `python -m xaiopt.config.docs docs/schema.md` from xaiopt/config/schema.py; "
         "do not edit by hand -->"),
        "",
        ("A study file is one YAML mapping; every field is optional and unknown keys are refused (a typo is "
         "an error naming the field). The same fields are the keyword arguments of `xaiopt.study_config` "
         "(docs/api.md). Sections (`model`, `data`, ...) are listed with their fields below them."),
        "",
        ("Layer groups given as a list are `{name, modules}`: `name` an identifier, `modules` module names or "
         "shell-style globs (`features.1*`). A parameter range is `{low, high, log}` (`log: true` samples on a "
         "log scale, `low > 0`); a list is a categorical choice."),
        "",
        "| field | type | default | meaning |",
        "|---|---|---|---|",
    ]
    for r in fields():
        meaning = r["meaning"].replace("|", "\\|")
        lines.append(f"| `{r['path']}` | {r['type']} | {r['default']} | {meaning} |")
    lines += ["", "Example, a small study:", "", "```yaml",
              "name: demo", "n_trials: 20", "model: {name: \"benchmark:vgg\"}",
              "data: {name: benchmark, n_samples: 32}",
              "space: {canonize: [true, false], first_layer: [zbox, flat], layer_groups: 3}",
              "metrics: [sparseness, {name: region_perturbation, params: {patch_size: 8}}]",
              "sampler: {name: nsga2}", "```", ""]
    return "\n".join(lines)


def write(out: str | os.PathLike[str]) -> Path:
    """Write :func:`render` to ``out`` atomically; ValueError listing the fields without a meaning."""
    problems = check()
    if problems:
        raise ValueError("; ".join(problems))
    out = Path(out)
    write_atomic(out, render(), mode=0o644)
    return out


if __name__ == "__main__":
    print(write(sys.argv[1] if len(sys.argv) > 1 else "docs/schema.md"))
