"""One transformer LRP explanation as a multiple of one plain gradient pass.

Not a test: a measurement. For a ViT (timm ``vit_small_patch16_224`` at 224 by default, random
weights) it times, side by side in one process and interleaved round by round, with one torch
thread:

* ``gradient``: forward + input gradient of the target logits (the unit);
* ``engine``: xaiopt's engine without a cache (one recorded forward under the transformer rules +
  one backward), AttnLRP, ``--rule`` (gamma or epsilon) in the block groups, epsilon in the head;
* ``engine+cache``: the engine on a kept forward (each round another gamma and the other attention
  rule: what a study's next trial on the same inputs costs);
* ``lxt`` (torchvision models, when LXT is installed): LXT 2.1's efficient CP-LRP with zennit's gamma
  through its zennit bridge, the reference the engine equals (tests/lrp/test_transformer_vs_lxt.py).

    .venv/bin/python benchmarks/lrp_transformer.py                        # ViT-S/16, 8 images, 5 rounds
    .venv/bin/python benchmarks/lrp_transformer.py --model torchvision:vit_b_16 --images 4
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import torch

from xaiopt.lrp import ForwardCache, LrpExplainer
from xaiopt.space import ExplainerSpec, GroupRule, resolve_groups


def _build(name: str) -> torch.nn.Module:
    library, _, model = name.partition(":")
    if library == "timm":
        import timm

        return timm.create_model(model, pretrained=False)
    import torchvision

    return torchvision.models.get_model(model)


def _spec(layers, rule: str, value: float, attention: str) -> ExplainerSpec:
    groups = {g: GroupRule("epsilon", 1e-6) if g == "head" else GroupRule(rule, value) for g in layers.groups}
    return ExplainerSpec(canonize=False, first_layer="same", groups=groups, attention=attention)


def _gradient(model, x, targets):
    inp = x.detach().clone().requires_grad_(True)
    out = model(inp)
    (g,) = torch.autograd.grad(out, inp, grad_outputs=torch.zeros_like(out).scatter_(1, targets.view(-1, 1), 1.0))
    return g


def _lxt(model, x, targets, gamma):
    import lxt.efficient as efficient
    import zennit.rules
    from lxt.efficient.models.vit_torch import cp_LRP
    from torchvision.models import vision_transformer
    from zennit.composites import LayerMapComposite

    classes = (torch.nn.GELU, torch.nn.LayerNorm, torch.nn.MultiheadAttention)
    saved = {c: dict(vars(c)) for c in classes}
    from zennit.core import BasicHook
    hook_saved = dict(vars(BasicHook))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        efficient.monkey_patch(vision_transformer, patch_map=cp_LRP)
        efficient.monkey_patch_zennit()
    try:
        composite = LayerMapComposite([(torch.nn.Linear, zennit.rules.Gamma(gamma))])
        with composite.context(model):
            inp = x.detach().clone().requires_grad_(True)
            out = model(inp)
            (g,) = torch.autograd.grad(out, inp,
                                       grad_outputs=torch.zeros_like(out).scatter_(1, targets.view(-1, 1), 1.0))
        return (inp * g).sum(1)
    finally:
        for c, attrs in [*saved.items(), (BasicHook, hook_saved)]:
            for key in set(vars(c)) - set(attrs):
                delattr(c, key)
            for key, value in attrs.items():
                if key not in ("__dict__", "__weakref__") and vars(c).get(key) is not value:
                    setattr(c, key, value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="timm:vit_small_patch16_224")
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rule", choices=("gamma", "epsilon"), default="gamma",
                        help="the rule of the block groups (the head takes epsilon)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = _build(args.model).eval()
    x = torch.randn(args.images, 3, 224, 224)
    layers = resolve_groups(model, x[:1], 3)
    with torch.no_grad():
        targets = model(x).argmax(1)
    cache = ForwardCache(budget_mb=8192)
    n = len(x)

    values = (0.1, 0.25, 0.5) if args.rule == "gamma" else (1e-6, 0.01, 0.1)

    def engine(value, attention, with_cache):
        return LrpExplainer(_spec(layers, args.rule, value, attention), model, layers, low=None, high=None,
                            batch_budget=n, cache=cache if with_cache else None)(x, targets)

    sides = {
        "gradient": lambda r: _gradient(model, x, targets),
        "engine": lambda r: engine(values[1], "attnlrp", False),
        "engine+cache": lambda r: engine(values[r % 3], ("attnlrp", "cp")[r % 2], True),
    }
    if args.model.startswith("torchvision:"):
        try:
            import lxt  # noqa: F401

            if args.rule == "gamma":
                sides["lxt"] = lambda r: _lxt(model, x, targets, 0.25)
        except ImportError:
            pass
    for fn in sides.values():  # warm-up, and the cache's one recording
        fn(0)
    times: dict[str, list[float]] = {k: [] for k in sides}
    for r in range(args.rounds):
        for key, fn in sides.items():
            t = time.perf_counter()
            fn(r + 1)
            times[key].append(time.perf_counter() - t)
    unit = statistics.median(times["gradient"])
    print(f"{args.model}, {n} images at 224 px, {args.rule} in the blocks, {args.threads} thread(s), "
          f"median of {args.rounds} rounds")
    print(f"{'side':14s} {'seconds':>8s} {'x gradient':>11s}")
    for key, values in times.items():
        med = statistics.median(values)
        print(f"{key:14s} {med:8.3f} {med / unit:11.2f}")


if __name__ == "__main__":
    main()
