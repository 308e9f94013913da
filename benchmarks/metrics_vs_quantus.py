"""Seconds per trial for the paper's metric vector: xaiopt vs Quantus 0.6, and xaiopt vs its floor.

    .venv/bin/python benchmarks/metrics_vs_quantus.py                  # both models, the table
    .venv/bin/python benchmarks/metrics_vs_quantus.py --models vgg --profile
    .venv/bin/python benchmarks/metrics_vs_quantus.py --rules         # fast LRP rules vs zennit's

One trial = the LRP attributions of the evaluation batch + the metric vector (region perturbation,
avg sensitivity with 10 draws, random logit, sparseness, relevance rank / mass accuracy), for the
same explainer (a composite from xaiopt.space: zbox first layer, gamma on the conv groups,
epsilon on the classifier) and the same inputs, timed side by side in one process:

* xaiopt, as the worker runs it, one side per ``--engine`` (default both): ``explainer_for`` with
  ``xaiopt`` (xaiopt's LRP engine with ``--lrp-cache-mb`` of kept forwards) or ``zennit`` (the
  composite registered once), ``MetricContext`` with the cached clean logits and the per-worker cache
  (warmed by one trial, as every trial after a worker's first), the model and batch in the worker's
  layout (``--memory-format``, default ``auto``: channels-last on a CPU). The occlusion score memo
  (``runtime.score_cache_mb``) stays off: the benchmark repeats one trial, whose images would all be
  kept, while a study's trials share only some (docs/metrics.md);
* Quantus, as a user runs it: an ``explain_func`` that builds the same composite from zennit's
  stock rules (``Gamma``, not xaiopt's ``FastGamma``) and, for a canonized explainer, zennit's own
  canonizer (``VGGCanonizer`` / ``ResNetCanonizer``), on every call, as the paper's code does;
  each metric with its own batch loop (``batch_size`` 64). xaiopt explains through the twin that
  ``xaiopt.canonize`` built once, outside the timing, as the worker does at start-up. The two
  produce the same attributions (tests/canonize/test_zennit_equivalence.py,
  tests/space/test_fast_rules.py);
* the floor: the bare model passes the metric vector needs, no hooks: one forward per perturbed
  image, one forward+backward gradient pass per attribution (the trial's own, the sensitivity
  draws', the random-logit ones).

Region perturbation: patch 14 / 50 regions on 224x224 (the paper), patch 8 / 16 regions on the
64x64 benchmark (the same share of the image per region: 64 patches of 8x8, a quarter of them).
Models: the embedded benchmark VGG (trained, cached) and torchvision ResNet-18 with random
weights on the benchmark images upsampled to 224x224 (masks too).
"""

from __future__ import annotations

import argparse
import copy
import cProfile
import io
import os
import pstats
import time
from contextlib import contextmanager

import numpy as np
import torch
import torch.nn.functional as F

from xaiopt.metrics import MetricContext, get_metric
from xaiopt.metrics.batching import chunk_size
from xaiopt.objective import explainer_for
from xaiopt.objective.layout import as_layout, choose_layout
from xaiopt.space import ExplainerSpec, resolve_groups
from xaiopt.space.spec import GroupRule
from xaiopt.zoo import load_dataset, load_model


def stock_composite(spec, layers, low, high, canonizers):
    """The spec's composite with zennit's own rules and canonizers: what a Quantus user has."""
    from zennit.rules import Gamma

    from xaiopt.space.fast_rules import FastAlphaBeta, FastGamma, FastZPlus
    from xaiopt.space.spec import _SpecComposite

    hooks = spec.layer_hooks(layers, low=low, high=high)
    for key, hook in hooks.items():
        if isinstance(hook, (FastGamma, FastAlphaBeta, FastZPlus)):
            stock = {FastGamma: Gamma}.get(type(hook))
            assert stock is not None, f"no stock rule for {type(hook).__name__}"
            hooks[key] = stock(**hook._kwargs)
    composite = _SpecComposite(hooks)
    composite.canonizers = canonizers()
    return composite


def setup(name: str, n: int, canonized: bool = True):
    data = load_dataset("benchmark", n=n)
    x, y, masks = data.x, data.y, data.masks
    from zennit.torchvision import ResNetCanonizer, VGGCanonizer

    if name == "vgg":
        model = load_model("benchmark:vgg")
        rp = {"patch_size": 8, "regions": 16}
        zennit_canonizer = VGGCanonizer
    else:
        import torchvision

        torch.manual_seed(0)
        model = torchvision.models.resnet18(num_classes=1000)
        x = F.interpolate(x, size=224, mode="bilinear", align_corners=False)
        masks = F.interpolate(masks.float(), size=224, mode="nearest").bool()
        rp = {"patch_size": 14, "regions": 50}
        zennit_canonizer = ResNetCanonizer
    model = model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    layers = resolve_groups(model, x[:1], 3)
    spec = ExplainerSpec(
        canonize=canonized,
        first_layer="zbox",
        groups={"conv1": GroupRule("gamma", 0.25), "conv2": GroupRule("gamma", 0.1),
                "conv3": GroupRule("gamma", 0.05), "classifier": GroupRule("epsilon", 1e-6)},
    )
    low, high = data.low.view(1, -1, 1, 1), data.high.view(1, -1, 1, 1)
    canonizers = (lambda: [zennit_canonizer()]) if canonized else (lambda: [])
    return model, layers, spec, x, y, masks, low, high, rp, canonizers


def vector(rp: dict) -> list[tuple[str, dict, str, dict]]:
    """(xaiopt name, params, Quantus class, kwargs): the same settings on both sides."""
    per_sample = {"normalise_func_kwargs": {"normalise_axes": (1, 2, 3)}}
    return [
        ("region_perturbation", dict(rp), "RegionPerturbation",
         {"patch_size": rp["patch_size"], "regions_evaluation": rp["regions"], **per_sample}),
        ("avg_sensitivity", {"nr_samples": 10}, "AvgSensitivity", {"nr_samples": 10, "lower_bound": 0.2}),
        ("random_logit", {}, "RandomLogit", {"seed": 42, **per_sample}),
        ("sparseness", {}, "Sparseness", per_sample),
        ("relevance_rank_accuracy", {}, "RelevanceRankAccuracy", per_sample),
        ("relevance_mass_accuracy", {}, "RelevanceMassAccuracy", per_sample),
    ]


def xaiopt_trial(model, layers, spec, x, y, masks, low, high, logits, cache, budget, plan, seconds,
                 engine="xaiopt", lrp_cache_mb=0.0):
    """What ``Objective.evaluate`` does for one trial (minus the study bookkeeping)."""
    with explainer_for(spec, model, layers, low=low, high=high, batch_budget=budget, engine=engine,
                       lrp_cache_mb=lrp_cache_mb) as explain:
        t = time.perf_counter()
        attributions = explain(x, y)
        seconds["attribution"] = seconds.get("attribution", 0.0) + time.perf_counter() - t
        ctx = MetricContext(model=model, x=x, y=y, masks=masks, logits=logits, attributions=attributions,
                            explain=explain, seed=0, cache=cache, batch_budget=budget)
        out = {}
        for name, params, _, _ in plan:
            t = time.perf_counter()
            out[name] = get_metric(name)(ctx, **params)
            seconds[name] = seconds.get(name, 0.0) + time.perf_counter() - t
    return out


def quantus_trial(model, layers, spec, x, y, masks, low, high, plan, seconds, canonizers):
    """A Quantus user's trial: zennit through an explain_func (composite built per call)."""
    import quantus
    from zennit.attribution import Gradient

    def explain_func(model, inputs, targets, **kwargs):
        xx = torch.as_tensor(np.asarray(inputs), dtype=torch.float32)
        tt = torch.as_tensor(np.asarray(targets)).long().reshape(-1)
        composite = stock_composite(spec, layers, low, high, canonizers)
        with Gradient(model=model, composite=composite) as attributor:
            def one_hot_logit(out):
                return torch.zeros_like(out).scatter_(1, tt.view(-1, 1), out.gather(1, tt.view(-1, 1)))
            _, rel = attributor(xx, one_hot_logit)
        return rel.sum(1, keepdim=True).detach().numpy()

    t = time.perf_counter()
    a = explain_func(model, x.numpy(), y.numpy())
    seconds["attribution"] = seconds.get("attribution", 0.0) + time.perf_counter() - t
    common = dict(model=model, x_batch=x.numpy(), y_batch=y.numpy(), a_batch=a, s_batch=masks.numpy().astype(np.float32),
                  channel_first=True, explain_func=explain_func, device="cpu", batch_size=64)
    out = {}
    for name, _, cls, kwargs in plan:
        t = time.perf_counter()
        if name == "random_logit":
            kwargs = {**kwargs, "num_classes": int(model(x[:1]).shape[1])}
        out[name] = getattr(quantus, cls)(disable_warnings=True, **kwargs)(**common)
        seconds[name] = seconds.get(name, 0.0) + time.perf_counter() - t
    return out


def floor_passes(model, x, y, rp, budget, seconds, cache):
    """The bare passes of one trial: forwards of the perturbed images, gradient passes of the explanations."""
    n = len(x)
    patches = (x.shape[-1] // rp["patch_size"]) ** 2
    n_forward = n * min(rp["regions"], patches)
    n_gradient = n * (1 + 10 + 1)  # trial attribution, sensitivity draws, random logit
    t = time.perf_counter()
    fwd = chunk_size(MetricContext(model=model, x=x, y=y, masks=None, logits=None, attributions=None,
                                   explain=None, cache=cache, batch_budget=budget), n_forward)
    with torch.no_grad():
        for start in range(0, n_forward, fwd):
            model(x[torch.arange(start, min(start + fwd, n_forward)) % n])
    seconds["forward"] = seconds.get("forward", 0.0) + time.perf_counter() - t
    t = time.perf_counter()
    for start in range(0, n_gradient, fwd):
        idx = torch.arange(start, min(start + fwd, n_gradient)) % n
        inp = x[idx].clone().requires_grad_(True)
        out = model(inp)
        torch.autograd.grad(out.gather(1, y[idx].view(-1, 1)).sum(), inp)
    seconds["gradient"] = seconds.get("gradient", 0.0) + time.perf_counter() - t


@contextmanager
def profiled(enabled: bool, title: str):
    if not enabled:
        yield
        return
    prof = cProfile.Profile()
    prof.enable()
    yield
    prof.disable()
    s = io.StringIO()
    pstats.Stats(prof, stream=s).sort_stats("tottime").print_stats(18)
    print(f"--- profile: {title}\n" + "\n".join(s.getvalue().splitlines()[4:30]))


def rule_speedups(names: list[str], repeat: int) -> None:
    """Attribution seconds of zennit's Gamma / AlphaBeta / ZPlus vs xaiopt.space.fast_rules, interleaved."""
    from zennit.composites import LayerMapComposite
    from zennit.rules import AlphaBeta, Epsilon, Gamma, Pass, ZPlus
    from zennit.types import Activation, BatchNorm, Convolution, Linear

    from xaiopt.space.fast_rules import FastAlphaBeta, FastGamma, FastZPlus

    pairs = [("gamma 0.25", lambda: Gamma(0.25), lambda: FastGamma(0.25)),
             ("alpha2beta1", lambda: AlphaBeta(2.0, 1.0), lambda: FastAlphaBeta(2.0, 1.0)),
             ("zplus", ZPlus, FastZPlus)]
    print("\n| model | rule (all convs) | zennit s | fast s | speed-up | max rel. diff |")
    print("|---|---|---|---|---|---|")
    for name in names:
        model, _, _, x, y, *_ = setup(name, 32 if name == "vgg" else 8, canonized=False)

        def attribute(rule):
            composite = LayerMapComposite([(Convolution, rule), (Linear, Epsilon()), (Activation, Pass()),
                                           (BatchNorm, Pass())])
            with composite.context(model) as modified:
                t = time.perf_counter()
                inp = x.clone().requires_grad_(True)
                out = modified(inp)
                (rel,) = torch.autograd.grad(out, inp, grad_outputs=torch.zeros_like(out).scatter(1, y.view(-1, 1), 1.0))
                return time.perf_counter() - t, rel

        for label, slow, fast in pairs:
            attribute(slow())
            ts = tf = float("inf")
            for _ in range(repeat):
                t, rs = attribute(slow())
                ts = min(ts, t)
                t, rf = attribute(fast())
                tf = min(tf, t)
            diff = float((rs - rf).abs().max() / rs.abs().max())
            print(f"| {name} | {label} | {ts:.3f} | {tf:.3f} | {ts / tf:.2f}x | {diff:.1e} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["vgg", "resnet18"], choices=["vgg", "resnet18"])
    parser.add_argument("--n", type=int, default=None, help="evaluation images (default: 32 vgg, 8 resnet18)")
    parser.add_argument("--budget", type=int, default=256, help="runtime.batch_budget (the worker's default)")
    parser.add_argument("--repeat", type=int, default=2, help="trials per side, interleaved; the best is kept")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    parser.add_argument("--profile", action="store_true", help="cProfile one xaiopt trial")
    parser.add_argument("--rules", action="store_true", help="only time the fast LRP rules against zennit's")
    parser.add_argument("--plain", action="store_true", help="an uncanonized explainer (default: canonized)")
    parser.add_argument("--engine", choices=["xaiopt", "zennit"], nargs="+", default=["xaiopt", "zennit"],
                        help="runtime.engine of the xaiopt sides, one side each (docs/lrp.md)")
    parser.add_argument("--lrp-cache-mb", type=float, default=1024.0,
                        help="runtime.lrp_cache_mb of the xaiopt side (0: no kept forwards)")
    parser.add_argument("--memory-format", choices=["auto", "channels_last", "contiguous"], default="auto",
                        help="runtime.memory_format of the xaiopt sides (Quantus and the floor run the model as given)")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.rules:
        rule_speedups(args.models, max(args.repeat, 3))
        return
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, cpus {os.cpu_count()}, "
          f"load {os.getloadavg()[0]:.1f}, batch_budget {args.budget}, engines {' '.join(args.engine)}, "
          f"lrp_cache_mb {args.lrp_cache_mb:g}, memory_format {args.memory_format}")
    sides = [f"xaiopt:{e}" for e in args.engine] + ["quantus", "floor"]
    rows = []
    for name in args.models:
        n = args.n or (32 if name == "vgg" else 8)
        model, layers, spec, x, y, masks, low, high, rp, canonizers = setup(name, n, canonized=not args.plain)
        plan = vector(rp)
        # the worker's explainer model: the twin canonized once at start-up (same function)
        if spec.canonize:
            from xaiopt.canonize import canonize

            twin, _ = canonize(model, x[:1])
            twin = twin.eval()
            for p in twin.parameters():
                p.requires_grad_(False)
            twin_layers = resolve_groups(twin, x[:1], 3)
        else:
            twin, twin_layers = model, layers
        with torch.no_grad():
            logits = model(x)  # the worker's cached clean logits
        # the worker's layout (xaiopt/objective/layout.py), on copies: Quantus and the floor get the model as given
        worker_model = copy.deepcopy(twin)
        fmt = choose_layout(args.memory_format, [worker_model], x)
        wx, wmasks = as_layout(x, fmt), masks
        floor_cache: dict = {}
        floor_passes(model, x, y, rp, args.budget, {}, floor_cache)  # tunes its chunk size
        caches: dict = {side: {} for side in sides}
        values: dict = {}
        for side in sides:
            if side.startswith("xaiopt:"):
                # warm-up (and, with the engine's cache, the one recording of each input)
                values[side] = xaiopt_trial(worker_model, twin_layers, spec, wx, y, wmasks, low, high, logits,
                                            caches[side], args.budget, plan, {}, engine=side.split(":")[1],
                                            lrp_cache_mb=args.lrp_cache_mb)
        best = {side: ({}, float("inf")) for side in sides}
        for rep in range(args.repeat):
            for side in sides:
                seconds: dict = {}
                t = time.perf_counter()
                if side.startswith("xaiopt:"):
                    with profiled(args.profile and rep == 0 and side == sides[0], f"{side} trial, {name}"):
                        xaiopt_trial(worker_model, twin_layers, spec, wx, y, wmasks, low, high, logits, caches[side],
                                     args.budget, plan, seconds, engine=side.split(":")[1],
                                     lrp_cache_mb=args.lrp_cache_mb)
                elif side == "quantus":
                    values[side] = quantus_trial(model, layers, spec, x, y, masks, low, high, plan, seconds,
                                                 canonizers)
                else:
                    floor_passes(model, x, y, rp, args.budget, seconds, floor_cache)
                total = time.perf_counter() - t
                if total < best[side][1]:
                    best[side] = (seconds, total)
        kind = "canonized" if spec.canonize else "plain"
        layout = "channels_last" if fmt is torch.channels_last else "contiguous"
        print(f"\n{name}: N={n}, {tuple(x.shape[1:])}, {kind} explainer, region perturbation patch {rp['patch_size']} / "
              f"{rp['regions']} regions, xaiopt sides {layout}; seconds per trial (best of {args.repeat})")
        explainers = [s for s in sides if s.startswith("xaiopt:")]
        # the same metric definitions on both xaiopt sides: the engine must give the zennit path's values
        # (Quantus's differ by the deliberate differences of docs/metrics.md and its own draws; tests/metrics
        # compare with Quantus on replayed draws)
        other = explainers[1] if len(explainers) > 1 else None
        print(f"  {'part':26s} " + " ".join(f"{s:>14s}" for s in explainers + ["quantus"])
              + (f"   rel. diff of the mean, {explainers[0]} vs {other}" if other else ""))
        for key in ["attribution"] + [p[0] for p in plan]:
            diff = ""
            if other and key in values.get(other, {}) and key in values.get(explainers[0], {}):
                ours = float(values[explainers[0]][key].double().mean())
                theirs = float(values[other][key].double().mean())
                diff = f"{abs(ours - theirs) / max(abs(theirs), 1e-12):.1e}"
            print(f"  {key:26s} " + " ".join(f"{best[s][0].get(key, 0):14.3f}" for s in explainers + ["quantus"])
                  + f"   {diff}")
        fs, ft = best["floor"]
        print(f"  floor: {fs['forward']:.3f}s forwards + {fs['gradient']:.3f}s gradient passes = {ft:.3f}s")
        rows.append((name, n, {s: best[s][1] for s in sides}))
    explainers = [s for s in sides if s.startswith("xaiopt:")]
    print("\n| model | N | " + " | ".join(f"{s} s/trial" for s in explainers) + " | Quantus s/trial | "
          + " | ".join(f"Quantus / {s}" for s in explainers) + " | floor s | " + explainers[0] + " / floor |")
    print("|---|---|" + "---|" * (2 * len(explainers) + 3))
    for name, n, t in rows:
        print(f"| {name} | {n} | " + " | ".join(f"{t[s]:.2f}" for s in explainers) + f" | {t['quantus']:.2f} | "
              + " | ".join(f"{t['quantus'] / t[s]:.1f}x" for s in explainers)
              + f" | {t['floor']:.2f} | {t[explainers[0]] / t['floor']:.2f} |")


if __name__ == "__main__":
    main()
