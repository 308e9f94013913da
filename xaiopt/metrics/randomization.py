"""Randomization: the explanation must change when the model or the explained class does."""

from __future__ import annotations

import copy
from typing import Optional

import torch
from torch import Tensor, nn

from xaiopt.errors import ConfigError

from .batching import chunk_size, map_chunks
from .context import MetricContext, call_explain
from .noise import generator
from .normalise import prepare
from .registry import Param, register_metric
from .similarity import pearson, spearman, ssim


def random_logit_targets(ctx: MetricContext, num_classes: int) -> Tensor:
    """(N,) one class per sample, uniform over the classes other than y, drawn once from the seed.

    Trial independent (seed, y and num_classes only), so cached per worker.
    """
    key = ("random_logit_targets", ctx.seed, num_classes, str(ctx.device))
    y = ctx.y.to(ctx.device)
    cached = ctx.cache.get(key)
    if cached is None or cached[0].shape != y.shape or not torch.equal(cached[0], y):
        g = generator(ctx.seed, f"random_logit:{num_classes}")
        off = torch.randint(0, num_classes - 1, (ctx.n,), generator=g).to(ctx.device)
        # The off-th entry of the sorted classes without y (as Quantus picks it).
        ctx.cache[key] = (y.clone(), off + (off >= y).long())
    return ctx.cache[key][1]


@register_metric(
    "random_logit",
    category="randomization",
    direction="minimize",
    passes="N explanations",
    num_classes=Param(None, type=int, check=lambda v: v >= 2, valid=">= 2",
                      doc="classes to draw from; None: the width of the model's logits (Quantus default 1000)"),
    similarity=Param("ssim", choices=("ssim", "ssim_flat"),
                     doc="'ssim': 2-D SSIM of the maps; 'ssim_flat': SSIM of the flattened maps, as Quantus 0.6"),
    win_size=Param(7, check=lambda v: v >= 3 and v % 2 == 1, valid="odd and >= 3",
                   doc="SSIM window (skimage default 7)"),
    abs=Param(False, doc="compare |a| (Quantus default False)"),
    normalise=Param(True, doc="normalise each map by its max |a| (Quantus default True)"),
)
def random_logit(
    ctx: MetricContext, *, num_classes: Optional[int], similarity: str, win_size: int, abs: bool, normalise: bool
) -> Tensor:
    """SSIM between the explanation of y and that of a random other class (Sixt et al. 2020)."""
    num_classes = num_classes or int(ctx.logits.shape[-1])
    targets = random_logit_targets(ctx, num_classes)
    x = ctx.x
    a = prepare(ctx.attributions, abs=abs, normalise=normalise).sum(1)
    a_off = map_chunks(ctx.n, chunk_size(ctx, ctx.n),
                       lambda s, e: ctx.explain_rows(x[s:e], targets[s:e], slice(s, e)).detach())
    a_off = prepare(a_off, abs=abs, normalise=normalise).sum(1)
    if similarity == "ssim_flat":
        return ssim(a.reshape(ctx.n, -1), a_off.reshape(ctx.n, -1), win_size=win_size, spatial_dims=1)
    return ssim(a, a_off, win_size=win_size, spatial_dims=2)


_HOOK_DICTS = ("_forward_pre_hooks", "_forward_pre_hooks_with_kwargs", "_forward_hooks", "_forward_hooks_with_kwargs",
               "_forward_hooks_always_called", "_backward_pre_hooks", "_backward_hooks", "_state_dict_hooks",
               "_state_dict_pre_hooks", "_load_state_dict_pre_hooks", "_load_state_dict_post_hooks")


def copy_without_hooks(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` without the hooks registered on it.

    During a trial the explainer's composite is registered on ``ctx.model``; a plain deepcopy would
    copy its hooks (and the tensors they keep from the last pass) into the copy, which then carries
    two sets of rules once ``explain_with`` registers its own.
    """
    saved = []
    for module in model.modules():
        hooks = {name: getattr(module, name) for name in _HOOK_DICTS if hasattr(module, name)}
        saved.append((module, hooks))
        for name, value in hooks.items():
            setattr(module, name, type(value)())
    try:
        return copy.deepcopy(model)
    finally:
        for module, hooks in saved:
            for name, value in hooks.items():
                setattr(module, name, value)


def _randomised_states(ctx: MetricContext, seed: int) -> list[tuple[str, dict[str, Tensor]]]:
    """Per module with ``reset_parameters`` (in ``named_modules`` order): its freshly reset state.

    As Quantus: the global torch seed is set to ``seed + 1`` before every reset; done on a CPU copy
    inside ``fork_rng`` so the numbers do not depend on the device and the worker's RNG is untouched.
    Trial independent, cached per worker.
    """
    key = ("mprt_states", id(ctx.model), seed, str(ctx.device))
    if key not in ctx.cache:
        scratch = copy_without_hooks(ctx.model).cpu()
        states = []
        for name, module in scratch.named_modules():
            if not hasattr(module, "reset_parameters"):
                continue
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed + 1)
                module.reset_parameters()
            states.append((name, {k: v.detach().to(ctx.device) for k, v in module.state_dict().items()}))
        ctx.cache[key] = states
    return ctx.cache[key]


def mprt_layer_scores(
    ctx: MetricContext,
    *,
    layer_order: str = "top_down",
    seed: Optional[int] = None,
    similarity: str = "spearman",
    abs: bool = True,
    normalise: bool = True,
) -> tuple[list[str], Tensor]:
    """Layer names and (L, N) similarities of the original explanation to the explanation of the
    model with layers randomised cumulatively from the top (``top_down``), from the bottom
    (``bottom_up``) or one at a time (``independent``), as Quantus ``MPRT``.
    """
    if ctx.explain_with is None:
        raise ConfigError(
            "metric 'mprt' needs MetricContext.explain_with(model, x, targets) to explain randomised "
            "model copies; this worker does not provide it, so drop 'mprt' from the metrics"
        )
    explain_with = ctx.explain_with
    seed = ctx.seed if seed is None else seed
    states = _randomised_states(ctx, seed)
    if layer_order == "top_down":
        states = states[::-1]
    work_key = ("mprt_model", id(ctx.model), str(ctx.device))
    if work_key not in ctx.cache:
        ctx.cache[work_key] = copy_without_hooks(ctx.model)
    work: nn.Module = ctx.cache[work_key]
    original = ctx.model.state_dict()
    work.load_state_dict(original)
    work.eval()
    sim = spearman if similarity == "spearman" else pearson
    x, y = ctx.x, ctx.y.to(ctx.device)
    a = prepare(ctx.attributions, abs=abs, normalise=normalise).reshape(ctx.n, -1)
    rows = []
    try:
        for name, state in states:
            if layer_order == "independent":
                work.load_state_dict(original)
            work.get_submodule(name).load_state_dict(state)
            a_r = map_chunks(ctx.n, chunk_size(ctx, ctx.n),
                             lambda s, e: call_explain(explain_with, work, x[s:e], y[s:e],
                                                       fixed=ctx.rows(slice(s, e))).detach())
            a_r = prepare(a_r, abs=abs, normalise=normalise).reshape(ctx.n, -1)
            rows.append(sim(a, a_r))
    finally:
        work.load_state_dict(original)
    return [name for name, _ in states], torch.stack(rows)


@register_metric(
    "mprt",
    category="randomization",
    direction="minimize",
    passes="N explanations per randomised layer (needs ctx.explain_with)",
    layer_order=Param("top_down", choices=("top_down", "bottom_up", "independent"),
                      doc="cascading from the output (Quantus default), from the input, or one layer at a time"),
    seed=Param(None, type=int, doc="seed of the re-initialisation; None: the study seed (Quantus default 42)"),
    similarity=Param("spearman", choices=("spearman", "pearson"), doc="Quantus default: Spearman"),
    aggregate=Param("average", choices=("average", "last"),
                    doc="mean over randomised layers, or the fully randomised model only"),
    abs=Param(True, doc="compare |a| (Quantus default True)"),
    normalise=Param(True, doc="normalise each map by its max |a| (Quantus default True)"),
)
def mprt(ctx: MetricContext, *, aggregate: str, **params) -> Tensor:
    """Similarity of the explanation to those of randomised models (Adebayo et al. 2018); lower is better."""
    _, scores = mprt_layer_scores(ctx, **params)
    return scores.mean(0) if aggregate == "average" else scores[-1]

