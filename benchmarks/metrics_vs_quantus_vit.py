"""Seconds per trial for the metric vector on a vision transformer: xaiopt vs Quantus 0.6 with LXT 2.1 as its
``explain_func``, and the difference of the values.

    .venv/bin/python benchmarks/metrics_vs_quantus_vit.py --model vit_t16 --n 4 --threads 1 --clock cpu  # ~5 min
    .venv/bin/python benchmarks/metrics_vs_quantus_vit.py                 # ViT-S/16-like, 224, 4 images (much longer)
    .venv/bin/python benchmarks/metrics_vs_quantus_vit.py --model vit_b_16 --image-size 112

One trial = the attributions of the evaluation batch + the metric vector of benchmarks/metrics_vs_quantus.py
(region perturbation, avg sensitivity with 10 draws, random logit, sparseness, relevance rank / mass accuracy),
on a torchvision VisionTransformer with random weights, for one CP-LRP explainer (gamma 0.25 / 0.1 / 0.05 on the
Linear and Conv2d layers of the block groups ``blocks1..3`` from ``resolve_groups``, the patch embedding in
``blocks1``, epsilon 1e-6 on the head), timed side by side in one process:

* xaiopt, as the worker runs it: ``explainer_for`` with the spec's ``attention="cp"`` (xaiopt's LRP engine, the
  study's ``--lrp-cache-mb`` of kept forwards; the default holds every forward of a trial, ``N x (1 + 10 draws)``
  images of 80 MB (ViT-Ti/16) or 166 MB (ViT-S/16) each at 224, where the study default of 1024 MB would keep
  only a few), ``MetricContext`` with the cached clean logits and the per-worker cache, both warmed by one trial
  (as every trial after a worker's first), the model in the worker's layout;
* Quantus, as a user runs it with LXT: LXT's torchvision patches (``monkey_patch(vision_transformer, cp_LRP)`` and
  ``monkey_patch_zennit()``, through tests/lrp/lxt_reference.py's harness, which undoes them afterwards) on for the
  whole trial, as LXT's example applies them at import; an ``explain_func`` that registers a zennit composite with
  zennit's stock rules on the same modules (``NameMapComposite``) and returns gradient x input summed over
  channels; each Quantus metric class with its own batch loop (``batch_size`` 64).

Both sides' attributions are equal (tests/lrp/test_transformer_vs_lxt.py); the values are compared per metric:

* xaiopt runs with Quantus's definitions where its defaults deliberately differ (docs/metrics.md): random logit
  with ``similarity: ssim_flat``, relevance mass accuracy with ``positive: false`` (same cost); region
  perturbation's AOPC is compared with Quantus's curve summed / (S + 1);
* random draws are aligned, not left to chance: Quantus's random-logit class draw (numpy seed 42) is put into
  xaiopt's per-worker cache, and xaiopt's sensitivity noise is replayed into Quantus through ``perturb_func``
  (an addition either way; ``--own-noise`` lets Quantus draw its own, and the sensitivity values then differ).

What is left is float32 rounding (the two explainers sum in different orders; xaiopt scores in float32). In
float64 the values agree to the float32 rounding of xaiopt's scores: tests/metrics/test_transformer_vs_quantus.py.

Timing: ``--clock wall`` (default) or ``cpu``, this process's CPU seconds, which other processes on a shared
machine disturb far less than the elapsed ones (with ``--threads 1``, as idle torch threads spin).

Region perturbation: patch 14 / 50 regions at 224 x 224 (the paper's), the same grid at other sizes (patch
``round(14 * size / 224)``, the regions scaled with the number of patches). Images: the embedded benchmark's,
upsampled with their masks.
"""

from __future__ import annotations

import argparse
import copy
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.metrics_vs_quantus import vector  # noqa: E402
from tests.lrp.lxt_reference import lxt_efficient_patches  # noqa: E402
from xaiopt.lrp import shared_cache  # noqa: E402
from xaiopt.metrics import MetricContext, get_metric  # noqa: E402
from xaiopt.metrics.robustness import sensitivity_noise  # noqa: E402
from xaiopt.objective import explainer_for  # noqa: E402
from xaiopt.objective.layout import as_layout, choose_layout  # noqa: E402
from xaiopt.space import ExplainerSpec, GroupRule, LayerGroups, resolve_groups  # noqa: E402
from xaiopt.space.exported import name_rules  # noqa: E402
from xaiopt.zoo import load_dataset  # noqa: E402

# torchvision VisionTransformer(patch_size=16, ...) arguments: ViT-Ti/16 and ViT-S/16 as timm sizes them
SIZES = {
    "vit_t16": dict(num_layers=12, num_heads=3, hidden_dim=192, mlp_dim=768),
    "vit_s16": dict(num_layers=12, num_heads=6, hidden_dim=384, mlp_dim=1536),
}
GAMMAS = (0.25, 0.1, 0.05)  # blocks1, blocks2, blocks3 (more groups repeat the last)


def build_vit(name: str, image_size: int, *, seed: int = 0, num_classes: int = 1000) -> nn.Module:
    """A torchvision ViT in eval mode with seeded random weights; torchvision zeroes the head and the class token,
    which would make every logit 0, so those are drawn too."""
    from torchvision.models import vit_b_16
    from torchvision.models.vision_transformer import VisionTransformer

    torch.manual_seed(seed)
    if name == "vit_b_16":
        model = vit_b_16(image_size=image_size, num_classes=num_classes)
    else:
        model = VisionTransformer(image_size=image_size, patch_size=16, num_classes=num_classes, **SIZES[name])
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        model.heads.head.weight.copy_(torch.randn(model.heads.head.weight.shape, generator=generator) * 0.02)
        model.class_token.copy_(torch.randn(model.class_token.shape, generator=generator) * 0.5)
    model = model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def region_settings(image_size: int) -> dict:
    """Patch 14 / 50 regions at 224; the same grid (and share of it) at another size."""
    patch = max(1, round(14 * image_size / 224))
    patches = math.ceil(image_size / patch) ** 2
    return {"patch_size": patch, "regions": min(patches, max(1, round(50 * patches / 256)))}


def vit_spec(layers: LayerGroups) -> ExplainerSpec:
    """CP-LRP, gamma on the block groups (decreasing with depth), epsilon on the head, no canonization."""
    blocks = [g for g in layers.groups if g != "head"]
    groups = {g: GroupRule("gamma", GAMMAS[min(i, len(GAMMAS) - 1)]) for i, g in enumerate(blocks)}
    groups["head"] = GroupRule("epsilon", 1e-6)
    return ExplainerSpec(canonize=False, first_layer="same", groups=groups, attention="cp")


def vit_vector(rp: dict) -> list[tuple[str, dict, str, dict]]:
    """benchmarks/metrics_vs_quantus.py's vector, xaiopt with Quantus's definitions where its defaults differ."""
    quantus_defs = {"random_logit": {"similarity": "ssim_flat"}, "relevance_mass_accuracy": {"positive": False}}
    return [(name, {**params, **quantus_defs.get(name, {})}, cls, kwargs) for name, params, cls, kwargs in vector(rp)]


def setup(name: str, n: int, image_size: int, groups: int = 3):
    data = load_dataset("benchmark", n=n)
    x = F.interpolate(data.x, size=image_size, mode="bilinear", align_corners=False)
    masks = F.interpolate(data.masks.float(), size=image_size, mode="nearest").bool()
    model = build_vit(name, image_size)
    layers = resolve_groups(model, x[:1], groups)
    return model, layers, vit_spec(layers), x, data.y, masks


# --------------------------------------------------------------------------- the Quantus + LXT side


def stock_rule(rule: str, value: float | None):
    """zennit's own rule for an xaiopt rule name (LXT's zennit bridge patches zennit's BasicHook)."""
    from zennit import rules

    stock = {
        "gamma": lambda: rules.Gamma(gamma=value),
        "epsilon": lambda: rules.Epsilon(epsilon=value),
        "zplus": rules.ZPlus,
        "alpha1beta0": lambda: rules.AlphaBeta(alpha=1.0, beta=0.0),
        "alpha2beta1": lambda: rules.AlphaBeta(alpha=2.0, beta=1.0),
        "flat": rules.Flat,
        "wsquare": rules.WSquare,
    }
    if rule not in stock:
        raise ValueError(f"rule {rule!r}: no stock zennit rule here (valid: {', '.join(stock)})")
    return stock[rule]()


def lxt_explain_func(spec: ExplainerSpec, layers: LayerGroups):
    """Quantus's ``explain_func(model, inputs, targets)`` for ``spec``, to be called under LXT's patches
    (:func:`tests.lrp.lxt_reference.lxt_efficient_patches`): the spec's rules as a zennit composite on the named
    Linear / Conv2d modules only (LXT's patches handle GELU, LayerNorm and the attention), registered per call,
    relevance = input x gradient of the target logit, summed over channels, in the model's dtype."""
    from zennit.composites import NameMapComposite

    entries = [(entry.names, entry.rule, entry.value) for entry in name_rules(spec, layers)]

    def explain_func(model, inputs, targets, **kwargs) -> np.ndarray:
        dtype = next(model.parameters()).dtype
        x = torch.as_tensor(np.asarray(inputs), dtype=dtype).clone().requires_grad_(True)
        t = torch.as_tensor(np.asarray(targets)).long().reshape(-1)
        composite = NameMapComposite([(list(names), stock_rule(rule, value)) for names, rule, value in entries])
        with composite.context(model) as modified:
            out = modified(x)
            (grad,) = torch.autograd.grad(out, x, grad_outputs=F.one_hot(t, out.shape[1]).to(out))
        return (x * grad).sum(1, keepdim=True).detach().numpy()

    return explain_func


def quantus_random_logit_targets(y: torch.Tensor, num_classes: int, *, seed: int = 42, batch_size: int = 64):
    """The off-class targets Quantus 0.6's ``RandomLogit`` explains: per batch, numpy's legacy generator seeded
    with ``seed`` draws an index into the sorted classes without y."""
    out = []
    for yb in y.split(batch_size):
        off = np.random.RandomState(seed).randint(0, num_classes - 1, len(yb))
        out.append(torch.as_tensor(off) + (torch.as_tensor(off) >= yb).long())
    return torch.cat(out)


def replayed(noise: torch.Tensor):
    """A Quantus ``perturb_func`` that adds ``noise[s]`` (S, N, C, H, W) at its s-th call."""
    draws = iter(range(noise.shape[0]))

    def perturb_func(arr, indices=None, **kwargs):
        return arr + noise[next(draws)].reshape(arr.shape[0], -1).numpy()

    return perturb_func


def quantus_trial(model, spec, layers, x, y, masks, plan, seconds, *, noise=None, batch_size=64,
                  clock=time.perf_counter) -> dict:
    """A Quantus user's trial with LXT: the patches on, the attributions, each metric class; the seconds of each
    part added to ``seconds`` as ``clock`` counts them.

    ``noise``: (S, N, C, H, W) sensitivity noise replayed into ``AvgSensitivity`` (None: Quantus draws its own).
    Returns Quantus's values as float64 arrays, region perturbation as its (N, S) curve.
    """
    import quantus

    explain_func = lxt_explain_func(spec, layers)
    out = {}
    with lxt_efficient_patches():
        t = clock()
        a = explain_func(model, x.numpy(), y.numpy())
        seconds["attribution"] = seconds.get("attribution", 0.0) + clock() - t
        common = dict(model=model, x_batch=x.numpy(), y_batch=y.numpy(), a_batch=a,
                      s_batch=masks.numpy().astype(np.float32), channel_first=True, explain_func=explain_func,
                      device="cpu", batch_size=batch_size)
        for name, _, cls, kwargs in plan:
            t = clock()
            if name == "random_logit":
                kwargs = {**kwargs, "num_classes": _num_classes(model, x)}
            if name == "avg_sensitivity" and noise is not None:
                kwargs = {**kwargs, "perturb_func": replayed(noise)}
            out[name] = np.asarray(getattr(quantus, cls)(disable_warnings=True, **kwargs)(**common), dtype=np.float64)
            seconds[name] = seconds.get(name, 0.0) + clock() - t
    out["attribution"] = a
    return out


def _num_classes(model: nn.Module, x: torch.Tensor) -> int:
    with torch.no_grad():
        return int(model(x[:1].to(next(model.parameters()).dtype)).shape[1])


# --------------------------------------------------------------------------- the xaiopt side


def aligned_cache(x: torch.Tensor, y: torch.Tensor, num_classes: int, plan, *, seed: int = 0):
    """``(cache, noise)``: a per-worker metric cache that holds Quantus's random-logit class draw (under the key
    ``xaiopt.metrics.randomization.random_logit_targets`` looks up), and the (S, N, C, H, W) sensitivity noise
    xaiopt draws for ``x``, to replay into Quantus. ``seed``: the study seed of the MetricContext."""
    targets = quantus_random_logit_targets(y, num_classes, seed=plan_kwargs(plan, "random_logit")["seed"])
    cache: dict = {("random_logit_targets", seed, num_classes, str(x.device)): (y.clone(), targets.to(x.device))}
    sens = plan_kwargs(plan, "avg_sensitivity")
    probe = MetricContext(model=None, x=x, y=y, masks=None, logits=None, attributions=None, explain=None, seed=seed,
                          cache={})
    noise = sensitivity_noise(probe, sens["nr_samples"], sens["lower_bound"], sens.get("upper_bound"))
    return cache, noise.cpu()


def plan_kwargs(plan, name: str) -> dict:
    return next(kwargs for n, _, _, kwargs in plan if n == name)


def xaiopt_values(model, layers, spec, x, y, masks, logits, cache, budget, plan, seconds, lrp_cache_mb, *,
                  clock=time.perf_counter) -> dict:
    """One worker trial, as benchmarks/metrics_vs_quantus.py's ``xaiopt_trial`` (what ``Objective.evaluate`` does,
    minus the study's bookkeeping), the seconds per part as ``clock`` counts them; the values as float64 arrays."""
    with explainer_for(spec, model, layers, low=None, high=None, batch_budget=budget, engine="xaiopt",
                       lrp_cache_mb=lrp_cache_mb) as explain:
        t = clock()
        attributions = explain(x, y)
        seconds["attribution"] = seconds.get("attribution", 0.0) + clock() - t
        ctx = MetricContext(model=model, x=x, y=y, masks=masks, logits=logits, attributions=attributions,
                            explain=explain, seed=0, cache=cache, batch_budget=budget)
        out = {}
        for name, params, _, _ in plan:
            t = clock()
            out[name] = get_metric(name)(ctx, **params).double().cpu().numpy()
            seconds[name] = seconds.get(name, 0.0) + clock() - t
    return out


def comparable(theirs: dict, plan) -> dict:
    """Quantus's values in xaiopt's terms: region perturbation's curve as its AOPC, curve.sum() / (S + 1)."""
    out = {}
    for name, *_ in plan:
        v = np.asarray(theirs[name], dtype=np.float64)
        out[name] = v.sum(1) / (v.shape[1] + 1) if name == "region_perturbation" else v
    return out


def differences(ours: dict, theirs: dict, plan) -> dict[str, tuple[float, float]]:
    """Per metric: max |ours - theirs| and that divided by max |theirs|."""
    theirs = comparable(theirs, plan)
    out = {}
    for name, *_ in plan:
        d = float(np.max(np.abs(ours[name] - theirs[name])))
        out[name] = (d, d / max(float(np.max(np.abs(theirs[name]))), 1e-300))
    return out


# --------------------------------------------------------------------------- the benchmark


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="vit_s16", choices=[*SIZES, "vit_b_16"])
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--n", type=int, default=4, help="evaluation images")
    parser.add_argument("--groups", type=int, default=3, help="block groups (resolve_groups' K)")
    parser.add_argument("--budget", type=int, default=64, help="runtime.batch_budget")
    parser.add_argument("--repeat", type=int, default=3,
                        help="trials per side, interleaved; per part and per trial the fastest is kept")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    parser.add_argument("--lrp-cache-mb", type=float, default=10240.0,
                        help="runtime.lrp_cache_mb of the xaiopt side (0: no kept forwards)")
    parser.add_argument("--memory-format", choices=["auto", "channels_last", "contiguous"], default="auto",
                        help="runtime.memory_format of the xaiopt side (Quantus runs the model as given)")
    parser.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                        help="wall: elapsed seconds; cpu: this process's CPU seconds (time.process_time), steadier on "
                             "a machine others load too (use it with --threads 1: idle threads spin)")
    parser.add_argument("--own-noise", action="store_true",
                        help="Quantus draws its own sensitivity noise (its values then differ by chance)")
    args = parser.parse_args()
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    model, layers, spec, x, y, masks = setup(args.model, args.n, args.image_size, args.groups)
    rp = region_settings(args.image_size)
    plan = vit_vector(rp)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, cpus {os.cpu_count()}, "
          f"load {os.getloadavg()[0]:.1f}; {args.model} {args.image_size}x{args.image_size}, N={args.n}, "
          f"{spec.describe()}; region perturbation patch {rp['patch_size']} / {rp['regions']} regions; "
          f"batch_budget {args.budget}, lrp_cache_mb {args.lrp_cache_mb:g}")
    with torch.no_grad():
        logits = model(x)  # the worker's cached clean logits
    worker_model = copy.deepcopy(model)
    fmt = choose_layout(args.memory_format, [worker_model], x)
    wx = as_layout(x, fmt)
    cache, noise = aligned_cache(wx, y, int(logits.shape[1]), plan)
    import quantus  # noqa: F401  (imports out of the timing: Quantus's and lxt.efficient's take seconds)

    with lxt_efficient_patches():
        pass
    values = {"xaiopt": xaiopt_values(worker_model, layers, spec, wx, y, masks, logits, cache, args.budget, plan, {},
                                      args.lrp_cache_mb)}  # warm-up: the worker's first trial
    best = {side: ({}, float("inf")) for side in ("xaiopt", "quantus")}
    for _ in range(args.repeat):
        for side in best:
            seconds: dict = {}
            t = clock()
            if side == "xaiopt":
                values[side] = xaiopt_values(worker_model, layers, spec, wx, y, masks, logits, cache, args.budget,
                                             plan, seconds, args.lrp_cache_mb, clock=clock)
            else:
                values[side] = quantus_trial(model, spec, layers, x, y, masks, plan, seconds,
                                             noise=None if args.own_noise else noise, clock=clock)
            total = clock() - t
            print(f"  {side} trial: {total:.1f} s", file=sys.stderr, flush=True)
            # the fastest of each part: a shared machine's load comes in bursts that hit one part of one trial
            parts = {k: min(v, best[side][0].get(k, float("inf"))) for k, v in seconds.items()}
            best[side] = (parts, min(total, best[side][1]))
    diff = differences(values["xaiopt"], values["quantus"], plan)
    with explainer_for(spec, worker_model, layers, low=None, high=None, batch_budget=args.budget, engine="xaiopt",
                       lrp_cache_mb=args.lrp_cache_mb) as explain:
        ours_a = explain(wx, y).double()
    theirs_a = torch.as_tensor(values["quantus"]["attribution"]).double()
    d = float((ours_a - theirs_a).abs().max())
    diff["attribution"] = (d, d / float(theirs_a.abs().max()))
    layout = "channels_last" if fmt is torch.channels_last else "contiguous"
    print(f"\n{args.clock} seconds, the fastest of {args.repeat} trials per part and per trial (xaiopt side {layout}); "
          f"values: xaiopt vs Quantus+LXT\n")
    print("| part | xaiopt s | Quantus+LXT s | Quantus / xaiopt | max abs diff | max rel diff |")
    print("|---|---|---|---|---|---|")
    for key in ["attribution"] + [p[0] for p in plan]:
        ours, theirs = best["xaiopt"][0].get(key, 0.0), best["quantus"][0].get(key, 0.0)
        d = diff.get(key)
        cells = f"{d[0]:.1e} | {d[1]:.1e}" if d else " | "
        print(f"| {key} | {ours:.3f} | {theirs:.3f} | {theirs / max(ours, 1e-9):.1f}x | {cells} |")
    ours, theirs = best["xaiopt"][1], best["quantus"][1]
    print(f"| **trial** | **{ours:.2f}** | **{theirs:.2f}** | **{theirs / ours:.1f}x** | | |")
    kept = shared_cache()
    print(f"\nxaiopt's LRP forward cache: {len(kept)} recorded forwards kept, {kept.used_bytes() / 2**20:.0f} MB "
          f"(lrp_cache_mb {args.lrp_cache_mb:g}); {kept.stats}")


if __name__ == "__main__":
    main()
