"""A study built entirely in Python: your own ``nn.Module`` and your own tensors, no YAML, no zoo.

The script makes a toy task (a bright square on noise; the class is the half of the image it lies in;
its pixel mask is known), trains a small CNN on it for a few seconds, and hands the model and the
tensors ``x, y, masks`` to :func:`xaiopt.study_config`. The objects are registered in this process
(``python:`` names), so this process creates and optimizes the study. Then it

- reads the Pareto front and recomputes one metric by hand from the front's zennit composite,
- shows what a worker in another process gets: one line saying to register the model in a plugin.

Run: ``python examples/own_model.py`` (about 20 s on a laptop CPU).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import nn
from zennit.attribution import Gradient

import xaiopt
from xaiopt.study import per_sample_scores

SIZE = 24


def toy_batch(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``x`` (n, 3, SIZE, SIZE): a bright 6x6 square on noise; ``y``: 0 if it is in the left half, else 1."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=g)
    col = torch.randint(0, SIZE // 2 - 6, (n,), generator=g) + y * (SIZE // 2)
    row = torch.randint(0, SIZE - 6, (n,), generator=g)
    rr = torch.arange(SIZE).view(1, SIZE, 1)
    cc = torch.arange(SIZE).view(1, 1, SIZE)
    masks = ((rr >= row.view(-1, 1, 1)) & (rr < row.view(-1, 1, 1) + 6)
             & (cc >= col.view(-1, 1, 1)) & (cc < col.view(-1, 1, 1) + 6))
    x = 0.3 * torch.randn(n, 3, SIZE, SIZE, generator=g) + 2.0 * masks.unsqueeze(1).float()
    return x, y, masks


class TinyNet(nn.Module):
    """The user's own model: two conv blocks with batch norm, a linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
                                  nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2))
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(16 * (SIZE // 4) ** 2, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def train() -> TinyNet:
    torch.manual_seed(0)
    net = TinyNet()
    x, y, _ = toy_batch(512, seed=1)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    for _ in range(4):
        for xb, yb in zip(x.split(64), y.split(64)):
            opt.zero_grad()
            nn.functional.cross_entropy(net(xb), yb).backward()
            opt.step()
    return net.eval()


def mass_accuracy(attributions: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """relevance_mass_accuracy by hand: positive relevance inside the mask over all positive relevance."""
    pos = np.clip(attributions.reshape(len(attributions), -1).astype(np.float64), 0, None)
    return (pos * masks.reshape(len(masks), -1)).sum(1) / np.maximum(pos.sum(1), 1e-12)


def main() -> dict:
    net = train()
    x, y, masks = toy_batch(24, seed=2)                  # the evaluation batch: never trained on
    cfg = xaiopt.study_config(name="own-model", model=net, data=(x, y, masks), n_trials=6, sampler="random",
                              metrics=["sparseness", "relevance_mass_accuracy", "pointing_game"],
                              space={"layer_groups": 2, "first_layer": ["zbox", "flat", "same"]},
                              runtime={"heatmaps": 0})
    with tempfile.TemporaryDirectory() as tmp:
        storage = f"sqlite:///{Path(tmp) / 'own.db'}"
        loaded = xaiopt.run_study(cfg, storage=storage, device="cpu")
        accuracy = loaded.study.user_attrs["xaiopt:evaluation_batch"]["accuracy"]
        front = xaiopt.pareto_front(loaded)
        best = max(front, key=lambda t: t.values["relevance_mass_accuracy"])

        # the front's setting in plain zennit on the user's model, the metric by hand
        with Gradient(net, best.composite(net)) as attributor:
            _, relevance = attributor(x, lambda out: torch.zeros_like(out).scatter_(
                1, y.view(-1, 1), out.gather(1, y.view(-1, 1))))
        by_hand = mass_accuracy(relevance.sum(1).numpy(), masks.numpy())
        trial = loaded.study.trials[best.number]
        stored = per_sample_scores(trial)["relevance_mass_accuracy"]

        # another process knows the study's name and storage, not the objects: one clear line
        worker = subprocess.run([sys.executable, "-m", "xaiopt", "worker", "--storage", storage, "--study", cfg.name,
                                 "--n-trials", "1", "--device", "cpu", "--no-progress"],
                                capture_output=True, text=True, timeout=300, check=False)
    np.testing.assert_allclose(stored, by_hand, rtol=1e-4, atol=1e-6)
    assert accuracy >= 0.9, accuracy
    assert worker.returncode == 2 and len(worker.stderr.strip().splitlines()) == 1, worker.stderr
    assert "register it in a plugin" in worker.stderr, worker.stderr
    result = {"model": cfg.model.name, "data": cfg.data.name, "accuracy": accuracy, "best": best.number,
              "explainer": best.explainer, "values": best.values,
              "relevance_mass_accuracy_by_hand": float(by_hand.mean()), "worker_elsewhere": worker.stderr.strip()}
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
