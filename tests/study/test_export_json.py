"""The JSON export and xaiopt.load_composite: the trial's attributions from the document alone, in float32
and in float64, the document's fields against the study, and one-line errors for malformed documents."""

from __future__ import annotations

import copy
import dataclasses
import json

import pytest
import torch
from export_cases import SETTINGS, SPACE
from zennit.attribution import Gradient

import xaiopt
from xaiopt.canonize import canonize
from xaiopt.config import parse_config
from xaiopt.errors import ConfigError
from xaiopt.objective import Objective
from xaiopt.objective.attrs import spec_dict
from xaiopt.space import ExplainerSpec, LayerGroups
from xaiopt.space.exported import FORMAT, VERSION, name_rules
from xaiopt.study import create_study, load_study, optimize
from xaiopt.study.export import export_composite
from xaiopt.study.manage import (
    BOUNDS_ATTR,
    FIRST_ATTR,
    GROUPS_ATTR,
    TWIN_FIRST_ATTR,
    TWIN_GROUPS_ATTR,
)

CFG = {
    "name": "expjson",
    "device": "cpu",
    "data": {"n_samples": 4},
    "space": SPACE,
    "metrics": ["sparseness", {"name": "region_perturbation", "params": {"patch_size": 16, "regions": 2}}],
    "sampler": {"name": "random"},
    "runtime": {"heatmaps": 0},
}


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("export-json")
    storage = f"sqlite:///{tmp / 'e.db'}"
    cfg = parse_config(CFG)
    created = create_study(cfg, storage=storage)
    for params in SETTINGS:
        created.study.enqueue_trial(params)
    optimize(CFG["name"], storage=storage, n_trials=len(SETTINGS), device="cpu")
    loaded = load_study(CFG["name"], storage=storage)
    trials = sorted(loaded.study.trials, key=lambda t: t.number)
    assert [t.params for t in trials] == SETTINGS  # the enqueued settings ran as written
    docs = {}
    for t in trials:
        path = export_composite(loaded, trial=t.number, out=tmp / f"trial{t.number}.json")
        docs[t.number] = json.loads(path.read_text())
    return cfg, loaded, trials, docs, tmp


def _relevance(model, composite, x, y):
    """The worker's explanation (one-hot times the target logit at the output, channels summed), with zennit."""
    with Gradient(model=model, composite=composite) as attributor:
        _, rel = attributor(x, lambda out: torch.zeros_like(out).scatter(1, y[:, None], out.gather(1, y[:, None])))
    return rel.sum(1, keepdim=True)


def test_json_composite_gives_the_trials_attributions(study):
    cfg, _, trials, docs, tmp = study
    objective = Objective(cfg, device=torch.device("cpu"))
    bench = objective.bench
    for t in trials:
        _, _, ours = objective.evaluate(ExplainerSpec.from_dict(spec_dict(t)))
        # the three spellings of the document give one composite
        for source in (tmp / f"trial{t.number}.json", str(tmp / f"trial{t.number}.json"), docs[t.number],
                       json.dumps(docs[t.number])):
            composite = xaiopt.load_composite(source, bench.model)
            rel = _relevance(bench.model, composite, bench.x, bench.y)
            assert ours.abs().max() > 0
            torch.testing.assert_close(rel, ours, rtol=1e-4, atol=1e-5)
            with torch.no_grad():  # removed, the composite leaves the model's own function
                torch.testing.assert_close(bench.model(bench.x), bench.logits, rtol=0, atol=0)


def _double(bench):
    """The worker's benchmark recomputed in float64: the model, its twin canonized in float64 (as the
    worker builds it, merged weights in float64), the batch, the bounds, the logits."""
    model = copy.deepcopy(bench.model).double()
    twin, _ = canonize(model, bench.x[:1].double())
    twin.eval().requires_grad_(False)
    with torch.no_grad():
        logits = model(bench.x.double())
    return dataclasses.replace(bench, model=model, twin=twin, x=bench.x.double(), low=bench.low.double(),
                               high=bench.high.double(), logits=logits, cache={})


@pytest.mark.parametrize("index", range(len(SETTINGS)))
def test_json_composite_in_float64(study, index):
    cfg, _, trials, docs, _ = study
    objective = Objective(cfg, device=torch.device("cpu"))
    objective.bench = _double(objective.bench)
    bench = objective.bench
    t = trials[index]
    _, _, ours = objective.evaluate(ExplainerSpec.from_dict(spec_dict(t)))
    assert ours.dtype == torch.float64
    model = copy.deepcopy(bench.model)
    rel = _relevance(model, xaiopt.load_composite(docs[t.number], model), bench.x, bench.y)
    assert rel.dtype == torch.float64
    scale = ours.abs().max()
    assert scale > 0
    assert float((rel - ours).abs().max() / scale) < 1e-10
    with torch.no_grad():
        torch.testing.assert_close(model(bench.x), bench.logits, rtol=0, atol=0)


def test_document_fields_come_from_the_study(study):
    cfg, loaded, trials, docs, _ = study
    attrs = loaded.study.user_attrs
    for t in trials:
        doc = docs[t.number]
        assert doc["format"] == FORMAT == "xaiopt.composite" and doc["version"] == VERSION == 1
        assert doc["xaiopt_version"] == xaiopt.__version__
        assert (doc["study"], doc["trial"], doc["model"]) == ("expjson", t.number, "benchmark:vgg")
        assert doc["spec"] == spec_dict(t)
        assert doc["explainer"] == t.user_attrs["explainer"]
        want = (TWIN_GROUPS_ATTR, TWIN_FIRST_ATTR) if spec_dict(t)["canonize"] else (GROUPS_ATTR, FIRST_ATTR)
        assert doc["layers"] == {"groups": attrs[want[0]], "first_layer": attrs[want[1]]}
        assert doc["input_bounds"] == attrs[BOUNDS_ATTR]
        assert doc["ungrouped_epsilon"] == 1e-6
        assert doc["metrics"] == [
            {"name": "sparseness", "value": t.values[0], "direction": "maximize"},
            {"name": "region_perturbation", "value": t.values[1], "direction": "maximize"},
        ]
    # the document's bounds are the worker's, exactly
    bench = Objective(cfg, device=torch.device("cpu")).bench
    assert docs[0]["input_bounds"]["low"] == bench.low.flatten().tolist()
    assert docs[0]["input_bounds"]["high"] == bench.high.flatten().tolist()
    # the study stores the canonized twin's names too (equal here: merges keep the conv names)
    assert attrs[TWIN_GROUPS_ATTR] == bench.twin_layers.groups == attrs[GROUPS_ATTR]
    assert attrs[TWIN_FIRST_ATTR] == bench.twin_layers.first_layer


def test_a_canonized_trial_exports_the_twins_module_names(study, tmp_path):
    # a twin whose canonization renamed a layer: canonized trials must name the twin's modules, plain
    # trials the model's (the stored twin names are edited here to differ)
    cfg, loaded, trials, docs, _ = study
    attrs = loaded.study.user_attrs
    renamed = {g: [f"twin.{m}" for m in mods] for g, mods in attrs[GROUPS_ATTR].items()}
    original = (attrs[TWIN_GROUPS_ATTR], attrs[TWIN_FIRST_ATTR])
    loaded.study.set_user_attr(TWIN_GROUPS_ATTR, renamed)
    loaded.study.set_user_attr(TWIN_FIRST_ATTR, f"twin.{attrs[FIRST_ATTR]}")
    try:
        fresh = load_study(CFG["name"], storage=loaded.storage_url)
        for t in trials:
            doc = json.loads(export_composite(fresh, trial=t.number, out=tmp_path / f"t{t.number}.json").read_text())
            canonized = spec_dict(t)["canonize"]
            want = renamed if canonized else attrs[GROUPS_ATTR]
            assert doc["layers"]["groups"] == want
            assert doc["layers"]["first_layer"] == (f"twin.{attrs[FIRST_ATTR]}" if canonized else attrs[FIRST_ATTR])
    finally:
        loaded.study.set_user_attr(TWIN_GROUPS_ATTR, original[0])
        loaded.study.set_user_attr(TWIN_FIRST_ATTR, original[1])


def test_python_and_json_exports_attach_the_same_rules(study):
    """Module by module on the (canonized) model, the Python module's composite and load_composite's pick
    the same kind of zennit rule (FastGamma is zennit's Gamma computed in fewer passes); their parameters
    are checked by the attributions above."""
    import importlib.util

    cfg, loaded, trials, docs, tmp = study
    bench = Objective(cfg, device=torch.device("cpu")).bench
    for t in trials:
        path = export_composite(loaded, trial=t.number, out=tmp / f"module{t.number}.py")
        spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        python = module.make_composite()
        loaded_composite = xaiopt.load_composite(docs[t.number], bench.model)
        model = copy.deepcopy(bench.model)
        handles = [h for c in python.canonizers for h in c.apply(model)]
        try:
            rules = [(name, _describe(python.module_map({}, name, m)),
                      _describe(loaded_composite.module_map({}, name, m))) for name, m in model.named_modules()]
        finally:
            for h in handles:
                h.remove()
        assert all(a == b for _, a, b in rules), [r for r in rules if r[1] != r[2]]
        named = {n for e in name_rules(ExplainerSpec.from_dict(docs[t.number]["spec"]),
                                       LayerGroups(**docs[t.number]["layers"])) for n in e.names}
        assert named and all(a is not None for n, a, _ in rules if n in named)


def _describe(hook):
    if hook is None:
        return None
    from zennit.rules import AlphaBeta, Epsilon, Flat, Gamma, Norm, Pass, ZBox, ZPlus

    kinds = (ZBox, Gamma, AlphaBeta, ZPlus, Epsilon, Flat, Norm, Pass)
    return next(k.__name__ for k in kinds if isinstance(hook, k))


def _edit(doc, path, value=None, *, delete=False):
    doc = copy.deepcopy(doc)
    *parents, last = path
    target = doc
    for key in parents:
        target = target[key]
    if delete:
        del target[last]
    else:
        target[last] = value
    return doc


# trial 0 of SETTINGS: canonized, z-box first layer, conv1 gamma, conv2 alpha2beta1, classifier epsilon
MALFORMED = [
    (("format",), "zennit", r"^format: 'zennit' is not an exported composite \(valid: 'xaiopt.composite'\)$"),
    (("version",), 2, r"^version: 2 is not supported by xaiopt here \(valid: 1\)$"),
    (("version",), "1", r"^version: expected an integer, 1, got \"1\"$"),
    (("layers",), None, r"^layers: field is missing \(expected an object with groups and first_layer\)$"),
    (("spec", "groups"), None, r"^spec.groups: field is missing"),
    (("input_bounds", "high"), None, r"^input_bounds.high: field is missing"),
    (("ungrouped_epsilon",), None, r"^ungrouped_epsilon: field is missing \(expected a positive number\)$"),
    (("ungrouped_epsilon",), 0, r"^ungrouped_epsilon: must be > 0, got 0$"),
    (("spec", "canonize"), "yes", r"^spec.canonize: expected true or false, got \"yes\"$"),
    (("spec", "groups", "conv1", "rule"), "gama",
     r"^spec.groups.conv1.rule: unknown rule 'gama' \(valid: epsilon, gamma, alpha2beta1, .*zbox, pass, "
     r"excitation_backprop\)$"),
    (("spec", "base"), "eb", r"^spec.base: \"eb\" is not a base composite \(valid: lrp, excitation_backprop, or no "
     r"key for lrp\)$"),
    (("spec", "first_layer"), "gamma", r"^spec.first_layer: 'gamma' is not a first-layer rule \(valid: same, .*flat"),
    (("spec", "groups", "conv1", "value"), None,
     r"^spec.groups.conv1.value: rule 'gamma' needs its gamma \(a number\)$"),
    (("spec", "groups", "conv1", "value"), "big", r"^spec.groups.conv1.value: expected a finite number, got \"big\"$"),
    (("spec", "groups", "conv2", "value"), 1.0, r"^spec.groups.conv2.value: rule 'alpha2beta1' takes no parameter"),
    (("spec", "groups", "conv2"), None,
     r"^spec.groups: layer group 'conv2' has modules but no rule \(groups with a rule: conv1, classifier\)$"),
    (("spec", "groups", "conv9"), {"rule": "zplus"}, r"^spec.groups: 'conv9' not in layers.groups \(valid: conv1, "),
    (("input_bounds", "low"), [0.0],
     r"^input_bounds: low and high need one number per input channel each \(got 1 and 3\)$"),
    (("layers", "groups", "conv1"), "features.0", r"^layers.groups.conv1: expected a list of module names"),
    (("layers", "groups", "conv2", 0), "features.99",
     (r"^layers.groups.conv2: module 'features.99' is not in the canonized model \(its conv/linear modules: "
      r"features.0, features.4, features.8, features.12, classifier.0, classifier.2\)$")),
    (("layers", "groups", "conv2", 0), "features.1",
     r"^layers.groups.conv2: module 'features.1' of the canonized model is a \w+, not a conv/linear layer"),
    (("layers", "first_layer"), "stem", r"^layers.first_layer: module 'stem' is not in the canonized model"),
]


@pytest.mark.parametrize(("path", "value", "match"), MALFORMED, ids=lambda v: None)
def test_malformed_documents_are_one_line_errors(study, path, value, match):
    cfg, _, _, docs, _ = study
    bench = Objective(cfg, device=torch.device("cpu")).bench
    doc = _edit(docs[0], path, value, delete=value is None)
    with pytest.raises(ConfigError, match=match) as err:
        xaiopt.load_composite(doc, bench.model)
    assert "\n" not in str(err.value)
    with torch.no_grad():  # a refused document leaves the model as it was (the canonizer undone)
        torch.testing.assert_close(bench.model(bench.x), bench.logits, rtol=0, atol=0)


def test_unreadable_sources_and_models(study, tmp_path):
    cfg, _, _, docs, _ = study
    bench = Objective(cfg, device=torch.device("cpu")).bench
    with pytest.raises(ConfigError, match=r"^spec: not JSON \(Expecting property name enclosed in double quotes at "
                                          r"line 1 column 2\); expected an xaiopt.composite document"):
        xaiopt.load_composite("{nope", bench.model)
    with pytest.raises(ConfigError, match=r"^spec: '.*missing.json' is not a file"):
        xaiopt.load_composite(tmp_path / "missing.json", bench.model)
    (tmp_path / "bad.json").write_text("def make_composite(): ...")
    with pytest.raises(ConfigError, match=r"^spec file '.*bad.json': not JSON \(Expecting value at line 1 column 1\)"):
        xaiopt.load_composite(tmp_path / "bad.json", bench.model)
    with pytest.raises(ConfigError, match=r"^spec: expected a dict, JSON text or a path, got list$"):
        xaiopt.load_composite([1], bench.model)
    (tmp_path / "list.json").write_text("[1]")
    with pytest.raises(ConfigError, match=r"^spec: expected a JSON object \(xaiopt.composite document\), got \[1\]$"):
        xaiopt.load_composite(tmp_path / "list.json", bench.model)
    with pytest.raises(ConfigError, match=r"^model: expected a torch.nn.Module, got str$"):
        xaiopt.load_composite(docs[0], "benchmark:vgg")
    model = copy.deepcopy(bench.model).train()
    with pytest.raises(ConfigError, match=r"^model: is in training mode; call model.eval\(\)"):
        xaiopt.load_composite(docs[0], model)
    # the plain trial names "the model", not "the canonized model"
    plain = _edit(docs[1], ("layers", "groups", "conv1", 0), "features.99")
    with pytest.raises(ConfigError, match=r"^layers.groups.conv1: module 'features.99' is not in the model \("):
        xaiopt.load_composite(plain, bench.model)
