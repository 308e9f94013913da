"""`xaiopt study export --out F.py` for a transformer trial: a module that computes the trial's attributions
with LXT (torchvision's VisionTransformer; CP-LRP and AttnLRP, canonized as the study is, zennit's rules
through LXT's bridge) equal to ``xaiopt.load_explainer`` of the JSON export in float64; what LXT cannot
express is one line, exit 2, nothing written.

The exported module patches torch, torchvision-adjacent and zennit classes globally on import (as LXT does):
every import here runs inside :func:`lxt_patches_undone`, which puts them back exactly.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import textwrap
from contextlib import contextmanager

import optuna
import pytest
import torch

pytest.importorskip("lxt")

import zennit.core  # noqa: E402
from torch import nn  # noqa: E402

import xaiopt  # noqa: E402
from tests.lrp.lxt_reference import relative_error, restored_class_attributes  # noqa: E402
from xaiopt.canonize.attention import UnfusedMultiheadAttention  # noqa: E402
from xaiopt.cli import main  # noqa: E402
from xaiopt.config import parse_config  # noqa: E402
from xaiopt.config.schema import ModelConfig  # noqa: E402
from xaiopt.objective.benchmark import build_benchmark  # noqa: E402
from xaiopt.space import ExplainerSpec, GroupRule, resolve_groups  # noqa: E402
from xaiopt.space.exported import composite_document  # noqa: E402
from xaiopt.study import create_study, load_study, optimize  # noqa: E402
from xaiopt.study.export_lxt import lxt_refusal, lxt_source  # noqa: E402
from xaiopt.zoo import load_model  # noqa: E402

TOLERANCE = 1e-10
MODULE = "xaiopt_test_lxt_tiny_vit"
MODEL = f"module:{MODULE}:tiny_vit"

# a torchvision VisionTransformer at the benchmark's 64 pixels, every parameter random (torchvision zeroes the head)
TINY_VIT = textwrap.dedent('''
    import math
    import torch
    from torchvision.models.vision_transformer import VisionTransformer

    def tiny_vit(num_classes=4, representation_size=None):
        model = VisionTransformer(image_size=64, patch_size=16, num_layers=2, num_heads=2, hidden_dim=16, mlp_dim=32,
                                  num_classes=num_classes, representation_size=representation_size)
        generator = torch.Generator().manual_seed(0)
        with torch.no_grad():
            for name, param in model.named_parameters():
                noise = torch.randn(param.shape, generator=generator)
                if name.endswith("bias"):
                    param.copy_(0.1 * noise)
                elif param.dim() == 1:
                    param.copy_(1.0 + 0.2 * noise)
                elif name in ("class_token", "encoder.pos_embedding"):
                    param.copy_(0.5 * noise)
                else:
                    param.copy_(noise / math.sqrt(param[0].numel()))
        return model
''')

SPACE = {"canonize": [True], "first_layer": ["zbox", "flat", "same"], "layer_groups": 2,
         "attention": ["attnlrp", "cp"], "rules": ["gamma", "epsilon", "zplus", "alpha2beta1"],
         "gamma": [0.1, 0.25], "epsilon": [1e-6, 0.1]}
CFG = {"name": "lxtvit", "seed": 0, "device": "cpu", "model": {"name": MODEL},
       "data": {"name": "benchmark", "n_samples": 4}, "space": SPACE, "metrics": ["sparseness"],
       "sampler": {"name": "random"}, "runtime": {"heatmaps": 0}, "baselines": []}
# both attention rules, every rule of the space, each first-layer rule
TRIALS = [
    {"attention": "cp", "first_layer": "zbox", "blocks1.rule": "gamma", "blocks1.gamma": 0.25,
     "blocks2.rule": "alpha2beta1", "head.rule": "epsilon", "head.epsilon": 0.1},
    {"attention": "attnlrp", "first_layer": "same", "blocks1.rule": "gamma", "blocks1.gamma": 0.1,
     "blocks2.rule": "zplus", "head.rule": "gamma", "head.gamma": 0.25},
    {"attention": "attnlrp", "first_layer": "flat", "blocks1.rule": "epsilon", "blocks1.epsilon": 1e-6,
     "blocks2.rule": "epsilon", "blocks2.epsilon": 0.1, "head.rule": "alpha2beta1"},
]


@contextmanager
def lxt_patches_undone():
    """Every class an exported module patches, put back exactly (tests/lrp/lxt_reference.py's harness)."""
    with restored_class_attributes(nn.GELU, nn.Tanh, nn.LayerNorm, nn.MultiheadAttention, UnfusedMultiheadAttention,
                                   zennit.core.BasicHook):
        yield


def import_file(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def tiny_vit_module(tmp_path_factory):
    folder = tmp_path_factory.mktemp("lxt-model")
    (folder / f"{MODULE}.py").write_text(TINY_VIT)
    sys.path.insert(0, str(folder))
    try:
        yield importlib.import_module(MODULE)
    finally:
        sys.path.remove(str(folder))
        sys.modules.pop(MODULE, None)


@pytest.fixture(scope="module")
def study(tiny_vit_module, tmp_path_factory):
    folder = tmp_path_factory.mktemp("lxt-study")
    storage = f"sqlite:///{folder / 'lxt.db'}"
    create_study(parse_config(CFG), storage=storage)
    for params in TRIALS:
        optuna.load_study(study_name="lxtvit", storage=storage).enqueue_trial(params)
    optimize("lxtvit", storage=storage, n_trials=len(TRIALS), device="cpu")
    return storage


def _clean_patches():
    return {cls: dict(vars(cls)) for cls in (nn.GELU, nn.LayerNorm, nn.MultiheadAttention, zennit.core.BasicHook)}


@pytest.mark.parametrize("number", range(len(TRIALS)))
def test_the_exported_lxt_module_gives_the_trials_attributions(study, tmp_path, capsys, number):
    loaded = load_study("lxtvit", storage=study)
    trial = loaded.study.trials[number]
    assert trial.state == optuna.trial.TrialState.COMPLETE and trial.params["attention"] == TRIALS[number]["attention"]
    code, _, err = run(capsys, "study", "export", "lxtvit", "--trial", str(number), "--out", str(tmp_path / "lxt.py"),
                       "--storage", study)
    assert code == 0 and err.strip() == f"wrote {tmp_path / 'lxt.py'}: trial {number}, as asked"
    assert run(capsys, "study", "export", "lxtvit", "--trial", str(number), "--out", str(tmp_path / "lxt.json"),
               "--storage", study)[0] == 0
    assert json.loads((tmp_path / "lxt.json").read_text())["spec"]["canonize"] is True

    bench = build_benchmark(loaded.config, torch.device("cpu"))  # the study's images and targets
    x, y = bench.x.double(), bench.y
    model = load_model(MODEL).double().eval()
    expected = xaiopt.load_explainer(str(tmp_path / "lxt.json"), model)(x, y)
    before = _clean_patches()
    with lxt_patches_undone():
        exported = import_file(tmp_path / "lxt.py", f"lxt_export_{number}")
        assert nn.LayerNorm.forward is not before[nn.LayerNorm]["forward"]  # the module patched as LXT does
        got = exported.explain(model, x, y)
        explained = exported.prepare(model, x[:1])
        assert type(explained.encoder.layers[0].self_attention) is UnfusedMultiheadAttention
        assert torch.equal(exported.relevance(explained, x, y), got)
    assert _clean_patches() == before
    assert expected.abs().max() > 0 and torch.isfinite(got).all()
    assert relative_error(got, expected) <= TOLERANCE, relative_error(got, expected)
    # in the study's float32 the two differ by rounding only (LXT's LayerNorm is written out, torch's is fused)
    model32 = load_model(MODEL).eval()
    expected32 = xaiopt.load_explainer(str(tmp_path / "lxt.json"), model32)(bench.x, y)
    with lxt_patches_undone():
        got32 = import_file(tmp_path / "lxt.py", f"lxt_export32_{number}").explain(model32, bench.x, y)
    assert relative_error(got32, expected32) <= 1e-5


@pytest.mark.parametrize("attention,representation_size", [("cp", None), ("attnlrp", None), ("cp", 12),
                                                          ("attnlrp", 12)])
def test_a_plain_trial_uses_lxts_torchvision_map(tiny_vit_module, tmp_path, attention, representation_size):
    """Studies canonize torchvision's ViT (its attention projections run without modules otherwise); a plain
    setting written by hand still exports with LXT's map as is, and a pre-logits head's Tanh gets LXT's
    identity rule like the GELUs."""
    model = tiny_vit_module.tiny_vit(representation_size=representation_size).double().eval()
    torch.manual_seed(1)
    x, y = torch.randn(3, 3, 64, 64, dtype=torch.float64), torch.tensor([0, 2, 3])
    layers = resolve_groups(model, x[:1], 2)
    spec = ExplainerSpec(canonize=False, first_layer="zbox", attention=attention,
                         groups={"blocks1": GroupRule("gamma", 0.25), "blocks2": GroupRule("zplus"),
                                 "head": GroupRule("epsilon", 0.1)})
    low, high = [-2.5, -2.0, -1.5], [2.5, 2.0, 3.0]
    header = dict(study="'hand'", number=0, text=spec.describe(), values="", module="plain", model="hand-made")
    activations = ("GELU", "Tanh") if representation_size else ("GELU",)
    (tmp_path / "plain.py").write_text(lxt_source(spec, layers, low=low, high=high, header=header,
                                                  activations=activations))
    doc = composite_document(spec=spec, layers=layers, low=low, high=high, study="hand", trial=0, model="hand-made",
                             metrics=[], xaiopt_version="test")
    expected = xaiopt.load_explainer(doc, model)(x, y)
    with lxt_patches_undone():
        exported = import_file(tmp_path / "plain.py", f"plain_{attention}_{representation_size}")
        assert exported.prepare(model, x[:1]) is model
        got = exported.explain(model, x, y)
    assert expected.abs().max() > 0
    assert relative_error(got, expected) <= TOLERANCE, relative_error(got, expected)


def test_a_second_import_in_one_process_is_refused(study, tmp_path, capsys):
    """Two exports would stack their patches (or skip them, LXT only warns): the second import says so."""
    assert run(capsys, "study", "export", "lxtvit", "--trial", "0", "--out", str(tmp_path / "a.py"),
               "--storage", study)[0] == 0
    with lxt_patches_undone():
        import_file(tmp_path / "a.py", "lxt_first")
        with pytest.raises(RuntimeError, match="already patched"):
            import_file(tmp_path / "a.py", "lxt_second")


def test_the_embedded_vit_is_refused_in_one_line(tmp_path, capsys):
    cfg = {"name": "bvit", "seed": 0, "device": "cpu", "model": {"name": "benchmark:vit", "weights": "random"},
           "data": {"name": "benchmark", "n_samples": 2},
           "space": {"canonize": [False], "first_layer": ["same"], "layer_groups": 2, "attention": ["cp"],
                     "rules": ["epsilon"], "epsilon": [1e-6]},
           "metrics": ["sparseness"], "sampler": {"name": "random"}, "runtime": {"heatmaps": 0}, "baselines": []}
    storage = f"sqlite:///{tmp_path / 'b.db'}"
    create_study(parse_config(cfg), storage=storage)
    optimize("bvit", storage=storage, n_trials=1, device="cpu")
    code, out, err = run(capsys, "study", "export", "bvit", "--out", str(tmp_path / "b.py"), "--storage", storage)
    assert code == 2 and out == "" and err.count("\n") == 1
    assert "benchmark:vit is xaiopt's embedded ViT, not torchvision's VisionTransformer" in err
    assert "export it as JSON (--out F.json) and load it with xaiopt.load_explainer(document, model)" in err
    assert not [p.name for p in tmp_path.iterdir() if "b.py" in p.name]  # nor a temporary file


def _spec(rule="epsilon", value=1e-6, first="same", attention="cp"):
    return ExplainerSpec(canonize=True, first_layer=first, attention=attention,
                         groups={"blocks1": GroupRule(rule, value)})


@pytest.mark.parametrize("model,spec,message", [
    (ModelConfig(name="timm:vit_tiny_patch16_224"), _spec(), "is a timm model"),
    (ModelConfig(name="torchvision:swin_t"), _spec(), "is not a torchvision VisionTransformer"),
    (ModelConfig(name="torchvision:vit_b_16"), _spec(rule="pass", value=None), "rule 'pass' is zennit's Pass"),
    (ModelConfig(name="torchvision:vit_b_16"), _spec(first="pass"), "rule 'pass' is zennit's Pass"),
    (ModelConfig(name="benchmark:vit"), _spec(), "embedded ViT"),
])
def test_what_lxt_cannot_express_is_named(model, spec, message):
    why, _ = lxt_refusal(model, spec)
    assert why is not None and message in why and "\n" not in why


def test_a_vit_with_a_convolutional_stem_is_refused(tiny_vit_module):
    from torchvision.models.vision_transformer import ConvStemConfig, VisionTransformer

    sys.modules[MODULE].stem_vit = lambda **kwargs: VisionTransformer(
        image_size=64, patch_size=16, num_layers=1, num_heads=2, hidden_dim=16, mlp_dim=32, num_classes=4,
        conv_stem_configs=[ConvStemConfig(out_channels=8, kernel_size=3, stride=16)])
    why, _ = lxt_refusal(ModelConfig(name=f"module:{MODULE}:stem_vit"), _spec())
    assert why is not None and "runs a Conv2dNormActivation at 'conv_proj.conv_bn_relu_0'" in why
