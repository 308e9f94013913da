"""One LRP explanation as a multiple of one plain gradient pass: zennit vs xaiopt's engine.

Not a test: a measurement. For each model it times, side by side in one process and interleaved
round by round (so drifting machine load hits all of them alike), with one torch thread:

* ``gradient``: forward + input gradient of the target logits (the unit);
* ``zennit``: the spec's zennit composite (``explainer_for(..., engine="zennit")``);
* ``engine``: xaiopt's engine without a cache (one forward + one backward);
* ``engine+cache``: xaiopt's engine on a kept forward (the input seen before, only the rules
  change: each round another gamma), fingerprints of model and input included.

The spec is zennit's EpsilonGammaBox shape: z-box first layer, gamma in the conv groups, epsilon
in the classifier. Reported: the median seconds of each and its ratio to ``gradient``, for each
``--memory-format`` (model and images contiguous, and channels-last, the layout a worker picks on
a CPU; every side in the same layout), on ``--device`` (default cpu; ``cuda`` where there is one).

    .venv/bin/python benchmarks/lrp_engine.py                 # both models, 5 rounds
    .venv/bin/python benchmarks/lrp_engine.py --rounds 9 --models vgg
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torchvision

from xaiopt.lrp import ForwardCache, LrpExplainer
from xaiopt.objective.explain import explainer_for
from xaiopt.space import ExplainerSpec, GroupRule, resolve_groups
from xaiopt.zoo import load_model


def _spec(layers, gamma: float) -> ExplainerSpec:
    groups = {g: GroupRule("epsilon", 1e-6) if g == "classifier" else GroupRule("gamma", gamma)
              for g in layers.groups}
    return ExplainerSpec(canonize=False, first_layer="zbox", groups=groups)


def _gradient(model, x, targets):
    with torch.enable_grad():
        inp = x.detach().clone().requires_grad_(True)
        out = model(inp)
        seed = torch.zeros_like(out).scatter_(1, targets.view(-1, 1), out.gather(1, targets.view(-1, 1)).detach())
        (g,) = torch.autograd.grad(out, inp, grad_outputs=seed)
    return g


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _timed(fn) -> float:
    _sync()
    t = time.perf_counter()
    fn()
    _sync()
    return time.perf_counter() - t


def measure(name: str, model, x: torch.Tensor, rounds: int) -> dict[str, float]:
    model.eval()
    layers = resolve_groups(model, x[:1], 3)
    low, high = x.amin(dim=(0, 2, 3), keepdim=True), x.amax(dim=(0, 2, 3), keepdim=True)
    targets = model(x).argmax(1)
    cache = ForwardCache(budget_mb=4096)
    n = len(x)

    def zennit(spec):
        with explainer_for(spec, model, layers, low=low, high=high, batch_budget=n, engine="zennit") as explain:
            return explain(x, targets)

    def engine(spec, with_cache):
        return LrpExplainer(spec, model, layers, low=low, high=high, batch_budget=n,
                            cache=cache if with_cache else None)(x, targets)

    # warm-up (allocator, first-call costs) and the cache's one recording
    _gradient(model, x, targets)
    zennit(_spec(layers, 0.25))
    engine(_spec(layers, 0.25), False)
    engine(_spec(layers, 0.25), True)
    times: dict[str, list[float]] = {"gradient": [], "zennit": [], "engine": [], "engine+cache": []}
    for r in range(rounds):
        spec = _spec(layers, 0.1 + 0.1 * r)
        times["gradient"].append(_timed(lambda: _gradient(model, x, targets)))
        times["zennit"].append(_timed(lambda s=spec: zennit(s)))
        times["engine"].append(_timed(lambda s=spec: engine(s, False)))
        times["engine+cache"].append(_timed(lambda s=spec: engine(s, True)))
    medians = {k: statistics.median(v) for k, v in times.items()}
    unit = medians["gradient"]
    print(f"\n{name}: {tuple(x.shape)}, {rounds} rounds, hit rate {100 * cache.stats.hit_rate:.0f}%, "
          f"kept {cache.used_bytes() / 2**20:.0f} MB")
    print(f"{'':14s} {'median s':>9s} {'x gradient':>10s}")
    for k, v in medians.items():
        print(f"{k:14s} {v:9.3f} {v / unit:10.2f}")
    return {k: v / unit for k, v in medians.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--models", nargs="+", default=["vgg", "resnet18"], choices=["vgg", "resnet18"])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--memory-format", nargs="+", default=["contiguous", "channels_last"],
                        choices=["contiguous", "channels_last"])
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ... (the same table on that device)")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error(f"--device {args.device}: no CUDA device here")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    for name in args.models:
        if name == "vgg":
            model = load_model("benchmark:vgg")
            x = torch.randn(64, 3, 64, 64)
            label = "benchmark VGG (trained)"
        else:
            model = torchvision.models.resnet18(weights=None)
            x = torch.randn(8, 3, 224, 224)
            label = "torchvision ResNet-18 (random weights)"
        for fmt in args.memory_format:
            layout = torch.channels_last if fmt == "channels_last" else torch.contiguous_format
            measure(f"{label}, {fmt}, {device}", model.to(device).to(memory_format=layout),
                    x.to(device).contiguous(memory_format=layout), args.rounds)


if __name__ == "__main__":
    main()
