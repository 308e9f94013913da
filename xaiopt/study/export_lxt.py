"""The Python export of a transformer trial: a module that reproduces its attributions with LXT.

LXT (LRP-eXplains-Transformers, ``lxt.efficient``) explains torchvision's ``VisionTransformer`` in the
gradient x input frame by patching classes: GELU takes the identity rule, LayerNorm's statistics are held
constant, the attention is CP-LRP (query and key held constant) or, written here with LXT's
``divide_gradient``, AttnLRP (q and k a quarter of the gradient, v a half); zennit's rules run on the
Linear and Conv2d layers through LXT's zennit bridge. That is the rule set of xaiopt's engine on such a
model (docs/transformers.md), so a trial is exported when its model, its rules and its canonization are
all in it; :func:`lxt_refusal` says why not otherwise.

A canonized trial is exported too: the module canonizes the model with :func:`xaiopt.canonize.canonize`
as the study did (the CNN export does the same with ``GraphCanonizer``) and patches the unfused attention
of the twin with the same attention rule.

Example::

    why = lxt_refusal(loaded.config.model, spec)          # None: exportable
    source = lxt_source(spec, layers, low=low, high=high, header=header, activations=("GELU",))
"""

from __future__ import annotations

from typing import Any

from torch import nn

from xaiopt.config.schema import ModelConfig
from xaiopt.space import ExplainerSpec, LayerGroups, get_rule
from xaiopt.space.exported import name_rules
from xaiopt.space.spec import UNGROUPED_EPSILON
from xaiopt.study.export import _in_comment

# zennit's rules that are BasicHooks, the rules LXT's zennit bridge converts to gradient x input
# (``pass`` is a plain Hook: the bridge leaves it in zennit's own frame, where it means something else)
LXT_RULES = ("epsilon", "gamma", "alpha2beta1", "alpha1beta0", "zplus", "flat", "wsquare", "zbox")

# elementwise activations a torchvision ViT runs (MLP, representation head) and LXT's identity rule covers
_ACTIVATIONS = ("GELU", "Tanh")


def lxt_refusal(model: ModelConfig, spec: ExplainerSpec) -> tuple[str | None, tuple[str, ...]]:
    """``(why, activations)``: why trial ``spec`` on ``model`` has no LXT export (None when it has one),
    and the activation classes the model runs (their LXT patch). A ``module:`` or ``python:`` model is
    built (seeded, as in the study) to see what it is; a ``torchvision:`` one is known by its builder."""
    scheme, _, name = model.name.partition(":")
    if scheme == "benchmark":
        return (f"{model.name} is xaiopt's embedded ViT, not torchvision's VisionTransformer (LXT's patches cover "
                f"torchvision's vision_transformer module)"), ()
    if scheme == "timm":
        return (f"{model.name} is a timm model; LXT's patches cover torchvision's VisionTransformer only "
                f"(timm's fused attention has no LXT map)"), ()
    if scheme == "torchvision":
        import torchvision
        from torchvision.models import vision_transformer

        if torchvision.models.get_model_builder(name).__module__ != vision_transformer.__name__:
            return f"{model.name} is not a torchvision VisionTransformer (LXT's patches cover vision_transformer)", ()
        activations: tuple[str, ...] = ("GELU",)
    else:
        from xaiopt.zoo import load_model

        built = load_model(model.name, cache_dir=model.cache_dir, num_classes=model.num_classes,
                           weights=model.weights)
        why = _not_torchvision_vit(built)
        if why is not None:
            return f"{model.name} {why}", ()
        activations = tuple(a for a in _ACTIVATIONS if any(type(m).__name__ == a for m in built.modules()))
    rules = [*(g.rule for g in spec.groups.values()), *([spec.first_layer] if spec.first_layer != "same" else [])]
    for rule in dict.fromkeys(rules):
        if rule not in LXT_RULES:
            kind = "zennit's Pass, which LXT's zennit bridge leaves in zennit's own frame" if rule == "pass" else \
                "not one of zennit's rules that LXT's zennit bridge converts"
            return f"rule {rule!r} is {kind} (valid: {', '.join(LXT_RULES)})", ()
    if spec.attention not in ("cp", "attnlrp"):
        return f"attention rule {spec.attention!r} has no LXT form (valid: cp, attnlrp)", ()
    return None, activations


def _not_torchvision_vit(model: nn.Module) -> str | None:
    """Why ``model`` is not a torchvision VisionTransformer made only of the classes LXT's patches cover."""
    from torchvision.models import vision_transformer as tv

    if not isinstance(model, tv.VisionTransformer):
        return f"is a {type(model).__name__}, not torchvision's VisionTransformer (LXT's patches cover that class)"
    kind, base = type(model), tv.VisionTransformer
    if kind.forward is not base.forward or kind._process_input is not base._process_input:
        return f"is a {kind.__name__} with a forward of its own, which LXT's torchvision patches do not know"
    covered = (tv.Encoder, tv.EncoderBlock, tv.MLPBlock, nn.Sequential, nn.Dropout, nn.LayerNorm, nn.MultiheadAttention,
               nn.modules.linear.NonDynamicallyQuantizableLinear, nn.Linear, nn.Conv2d, nn.GELU, nn.Tanh)
    for name, module in model.named_modules():
        if name and type(module) not in covered:
            return f"runs a {type(module).__name__} at {name!r}, which LXT's torchvision patches do not cover"
    if not isinstance(model.conv_proj, nn.Conv2d):
        return "has a convolutional stem, which LXT's torchvision patches do not cover"
    return None


_HEADER = '''"""LXT explainer exported by xaiopt: study {study}, trial {number}.

Explainer: {text}
Metric values: {values}

The trial's attributions on torchvision's VisionTransformer ({model}, in eval mode),
computed by LXT's efficient {rule_name} in the gradient x input frame, with zennit's rules on the
Linear and Conv2d layers through LXT's zennit bridge.{canon_doc}

Importing this module patches these classes for the whole process, as LXT's own examples do (other
zennit composites in the same process then run in LXT's frame): {patched}, zennit's BasicHook.

Usage::

    from {module} import explain
    relevance = explain(model, x, targets)    # (N, 1, H, W): the trial's attributions of the targets' logits

    from {module} import prepare, relevance   # many batches: prepare the model once
    explained = prepare(model, x[:1])
    relevance(explained, x, targets)
"""

{std_imports}import torch
from lxt.efficient import monkey_patch, monkey_patch_zennit
from lxt.efficient.models.vit_torch import cp_LRP
{patch_imports}{rule_import}from torch import nn
from torchvision.models import vision_transformer
from zennit.composites import LayerMapComposite, MixedComposite, NameMapComposite
from zennit.core import BasicHook
from zennit.rules import AlphaBeta, Epsilon, Flat, Gamma, WSquare, ZBox, ZPlus
from zennit.types import Convolution, Linear
{canon_import}
LOW = torch.tensor({low}, dtype=torch.float64).view(1, -1, 1, 1)
HIGH = torch.tensor({high}, dtype=torch.float64).view(1, -1, 1, 1)

NAME_MAP = [
{name_map}
]
'''

_ATTNLRP = '''

def attnlrp_attention_forward(self, query, key, value, *args, **kwargs):
    """AttnLRP on an attention, as LXT's wrap_attention_forward does for transformers models: the uniform
    rule on its two products around the softmax (whose AttnLRP rule is its gradient) gives q and k a
    quarter of the gradient and v a half. The projections between these inputs and q, k, v pass the
    gradient on linearly (LRP-0, or a zennit rule through LXT's bridge), so the division can come first."""
    return self.original_forward(divide_gradient(query, 4), divide_gradient(key, 4), divide_gradient(value, 2),
                                 *args, **kwargs)
'''

_PATCHES = '''

# LXT's map for torchvision's ViT: identity rule on GELU, LayerNorm's statistics held constant, CP-LRP
# attention{map_note}
PATCH_MAP = {{
    **cp_LRP,
{patch_entries}}}
# each class's own forward, before LXT's patch
OWN_FORWARDS = {{cls: cls.forward for cls in PATCH_MAP}}
_patched = [cls.__name__ for cls, forward in OWN_FORWARDS.items() if forward.__module__ != cls.__module__]
_patched += ["BasicHook"] if BasicHook.forward.__module__ != BasicHook.__module__ else []
if _patched:
    raise RuntimeError(f"{{', '.join(_patched)}} already patched (by LXT or an earlier import of this module): "
                       f"import this module once, in a process where no other LXT patch ran")
monkey_patch(vision_transformer, patch_map=PATCH_MAP)
monkey_patch_zennit()


def make_composite():
    """The trial's zennit rules: by module name (the first layer's rule on conv_proj), epsilon on the
    Linear/Conv2d layers no name reaches. Registered on the model that :func:`prepare` returns."""
    return MixedComposite([
        NameMapComposite([(list(names), rule) for names, rule in NAME_MAP]),
        LayerMapComposite([((Convolution, Linear), Epsilon(epsilon={ungrouped}))]),
    ])

{prepare}

def relevance(explained, x, targets):
    """The relevance of the ``targets`` logits at the input pixels, summed over channels: (N, 1, H, W).
    ``explained``: what :func:`prepare` returned; the gradient seed 1 at each target is its logit's
    relevance in LXT's frame, and the input relevance is ``x * grad``."""
    targets = torch.as_tensor(targets, device=x.device).reshape(-1)
    with make_composite().context(explained) as modified, torch.enable_grad():
        leaf = x.detach().clone().requires_grad_(True)
        out = modified(leaf)
        seed = torch.zeros_like(out).scatter_(1, targets[:, None], 1.0)
        (grad,) = torch.autograd.grad(out, leaf, seed)
    return (leaf * grad).sum(1, keepdim=True).detach()


def explain(model, x, targets):
    """The trial's attributions of ``targets`` on ``x`` (see :func:`relevance`); ``model``: the study's model."""
    return relevance(prepare(model, x[:1]), x, targets)


def _check(model):
    if model.training:
        raise ValueError("model: is in training mode; call model.eval() first (as in the study)")
    if not isinstance(model, vision_transformer.VisionTransformer):
        raise TypeError(f"model: expected torchvision's VisionTransformer, got {{type(model).__name__}}")


def _check_names(model, which):
    modules = dict(model.named_modules())
    for names, _ in NAME_MAP:
        for name in names:
            if not isinstance(modules.get(name), (Convolution, Linear)):
                raise ValueError(f"module {{name!r}} is not a Linear/Conv2d layer of {{which}} "
                                 f"(is it the study's model?)")
'''

_PREPARE_PLAIN = '''
def prepare(model, example):
    """``model`` itself, checked: a torchvision VisionTransformer in eval mode with the study's layer names."""
    _check(model)
    _check_names(model, "the model")
    return model
'''

_PREPARE_CANONIZED = '''
@contextmanager
def _own_forwards():
    """The patched classes run their own forward inside the block: canonize() finds the LayerNorms whose
    affine part it folds by watching F.layer_norm, which LXT's LayerNorm forward does not call."""
    patched = {cls: cls.forward for cls in OWN_FORWARDS}
    for cls, forward in OWN_FORWARDS.items():
        cls.forward = forward
    try:
        yield
    finally:
        for cls, forward in patched.items():
            cls.forward = forward


def prepare(model, example):
    """A canonized copy of ``model`` as in the study (xaiopt.canonize: each attention's projections as
    Linear modules q_proj, k_proj, v_proj, out_proj; LayerNorm affines folded into the Linear layers that
    read them), checked on ``example``. ``model`` itself is not changed."""
    _check(model)
    with _own_forwards(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        twin, report = canonize(model, example[:1])
    if not report.ok:
        raise RuntimeError(f"the model could not be canonized as in the study ({report.reason})")
    _check_names(twin, "the canonized model")
    return twin
'''


def lxt_source(spec: ExplainerSpec, layers: LayerGroups, *, low: list[float], high: list[float],
               header: dict[str, Any], activations: tuple[str, ...]) -> str:
    """The module's source. ``header``: the docstring's fields (study, number, text, values, module,
    model), escaped for a docstring; ``activations``: the activation classes the model runs."""
    canon = spec.canonize
    attnlrp = spec.attention == "attnlrp"
    lines = []
    for entry in name_rules(spec, layers):
        code = get_rule(entry.rule).code.format(param=entry.value, low="LOW", high="HIGH")
        lines.append(f"    ({entry.names!r}, {code}),  # {_in_comment(entry.label)}")
    attention_forward = "attnlrp_attention_forward" if attnlrp else "cp_multi_head_attention_forward"
    classes = ["nn.MultiheadAttention"] if attnlrp else []
    classes += ["UnfusedMultiheadAttention"] if canon else []
    entries = [f"    {c}: partial(patch_method, {attention_forward}, keep_original=True),\n" for c in classes]
    entries += [f"    nn.{a}: partial(patch_method, non_linear_forward, keep_original=True),\n"
                for a in activations if a != "GELU"]
    patch_names = sorted({"patch_method", *(["cp_multi_head_attention_forward"] if classes and not attnlrp else []),
                          *(["non_linear_forward"] if len(entries) > len(classes) else [])} if entries else set())
    notes = []
    if attnlrp:
        notes.append("here AttnLRP in place of the CP-LRP attention")
    if canon:
        notes.append("the canonized twin's unfused attention taking the same rule")
    if any(a != "GELU" for a in activations):
        notes.append("the identity rule on the head's Tanh as well")
    patched = ["nn.GELU", "nn.LayerNorm", "nn.MultiheadAttention", *classes,
               *(f"nn.{a}" for a in activations if a != "GELU")]
    text = _HEADER.format(
        **header, rule_name="AttnLRP" if attnlrp else "CP-LRP",
        canon_doc=("\nThe model is canonized first, as in the study (xaiopt.canonize)." if canon else ""),
        patched=", ".join(dict.fromkeys(patched)),
        std_imports=_import_block((["import warnings", "from contextlib import contextmanager"] if canon else []) +
                                  (["from functools import partial"] if entries else [])),
        patch_imports=f"from lxt.efficient.patches import {', '.join(patch_names)}\n" if patch_names else "",
        rule_import="from lxt.efficient.rules import divide_gradient\n" if attnlrp else "",
        canon_import=("from xaiopt.canonize import canonize\n"
                      "from xaiopt.canonize.attention import UnfusedMultiheadAttention\n") if canon else "",
        low=[float(v) for v in low], high=[float(v) for v in high], name_map="\n".join(lines),
    )
    if attnlrp:
        text += _ATTNLRP
    text += _PATCHES.format(
        map_note="".join(f";\n# {n}" for n in notes), patch_entries="".join(entries),
        ungrouped=UNGROUPED_EPSILON, prepare=_PREPARE_CANONIZED if canon else _PREPARE_PLAIN,
    )
    return text


def _import_block(lines: list[str]) -> str:
    return "".join(f"{line}\n" for line in lines) + ("\n" if lines else "")
