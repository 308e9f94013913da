"""Seconds per full metric vector: xaiopt's torch metrics vs Quantus 0.6 on the same inputs.

    python benchmarks/metrics_vs_quantus.py [--n 16] [--size 64] [--device cpu] [--repeat 1]

A seeded random CNN on 3 x size x size inputs, gradient x input attributions, square masks.
Both sides run with the same parameters (reduced where Quantus's defaults are prohibitive).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from torch import nn

from xaiopt.metrics import MetricContext, get_metric


def model_for(classes: int) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
        nn.Flatten(), nn.Linear(32, classes),
    ).eval()


def grad_x_input(model: nn.Module, x: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    x = x.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        (grad,) = torch.autograd.grad(model(x).gather(1, targets.view(-1, 1)).sum(), x)
    return (grad * x).sum(1, keepdim=True).detach()


# (xaiopt name, xaiopt params, Quantus class name, Quantus kwargs)
CASES = [
    ("sparseness", {}, "Sparseness", {}),
    ("complexity", {}, "Complexity", {}),
    ("relevance_rank_accuracy", {}, "RelevanceRankAccuracy", {}),
    ("relevance_mass_accuracy", {}, "RelevanceMassAccuracy", {}),
    ("pointing_game", {}, "PointingGame", {}),
    ("region_perturbation", {"patch_size": 8}, "RegionPerturbation", {"patch_size": 8}),
    ("faithfulness_correlation", {"nr_runs": 20}, "FaithfulnessCorrelation", {"nr_runs": 20, "return_aggregate": False}),
    ("avg_sensitivity", {"nr_samples": 10}, "AvgSensitivity", {"nr_samples": 10}),
    ("max_sensitivity", {"nr_samples": 10}, "MaxSensitivity", {"nr_samples": 10}),
    ("random_logit", {"similarity": "ssim_flat"}, "RandomLogit", {"num_classes": 10}),
    ("mprt", {}, "MPRT", {}),
    ("pixel_flipping", {"features_in_step": 64}, None, {}),  # Quantus rejects pixel-aligned steps at 3x64x64
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=16)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--budget", type=int, default=64, help="images per forward (CPU: small is faster)")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (numpy runs on one)")
    args = parser.parse_args()
    # On a busy machine torch's spinning worker threads can slow small CPU ops a thousandfold.
    torch.set_num_threads(args.threads)

    device = torch.device(args.device)
    model = model_for(10).to(device)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(args.n, 3, args.size, args.size, generator=g).to(device)
    y = torch.randint(0, 10, (args.n,), generator=g).to(device)
    masks = torch.zeros(args.n, 1, args.size, args.size, dtype=torch.bool, device=device)
    masks[..., args.size // 4 : args.size // 2, args.size // 4 : args.size // 2] = True
    with torch.no_grad():
        logits = model(x)
    ctx = MetricContext(
        model=model, x=x, y=y, masks=masks, logits=logits, attributions=grad_x_input(model, x, y),
        explain=lambda xx, tt: grad_x_input(model, xx, tt), seed=0, cache={}, batch_budget=args.budget,
        explain_with=grad_x_input,
    )

    def q_explain(model, inputs, targets, **_):
        xx = torch.as_tensor(np.asarray(inputs), device=device, dtype=torch.float32)
        tt = torch.as_tensor(np.asarray(targets), device=device).long().reshape(-1)
        return grad_x_input(model, xx, tt).cpu().numpy()

    def timed(fn) -> float:
        best = float("inf")
        for _ in range(args.repeat):
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            fn()
            if device.type == "cuda":
                torch.cuda.synchronize()
            best = min(best, time.perf_counter() - start)
        return best

    import quantus

    print(f"N={args.n}, 3x{args.size}x{args.size}, device={device}, batch_budget={args.budget}, threads={args.threads}")
    print(f"{'metric':28s} {'xaiopt s':>10s} {'quantus s':>10s} {'ratio':>8s}")
    for name, params, q_name, q_kwargs in CASES:
        info = get_metric(name)
        ctx.cache.clear()  # count the per-worker work once, as a worker's first trial does
        ours = timed(lambda: info(ctx, **params))
        theirs = float("nan")
        if q_name is not None:
            metric = getattr(quantus, q_name)(disable_warnings=True, **q_kwargs)
            theirs = timed(
                lambda: metric(
                    model=model, x_batch=x.cpu().numpy(), y_batch=y.cpu().numpy(),
                    a_batch=ctx.attributions.cpu().numpy(), s_batch=masks.cpu().numpy().astype(np.float32),
                    channel_first=True, explain_func=q_explain, device=str(device), batch_size=args.budget,
                )
            )
        print(f"{name:28s} {ours:10.3f} {theirs:10.3f} {theirs / ours:8.1f}x")


if __name__ == "__main__":
    main()
