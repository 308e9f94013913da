"""A tiny seeded CNN, inputs, masks and a gradient x input explainer shared by the metric tests."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from xaiopt.metrics import MetricContext

N, C, H, W, CLASSES = 8, 3, 16, 16, 5


def tiny_cnn(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Conv2d(C, 4, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(4, 6, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(2),
        nn.Flatten(),
        nn.Linear(24, CLASSES),
    )
    return model.eval()


def grad_x_input(model: nn.Module, x: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """(N, 1, H, W) gradient x input of the target logit, channels summed."""
    x = x.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        out = model(x)
        (grad,) = torch.autograd.grad(out.gather(1, targets.view(-1, 1)).sum(), x)
    return (grad * x).sum(1, keepdim=True).detach()


def quantus_explain(model, inputs, targets, **kwargs) -> np.ndarray:
    """The same explainer with Quantus's numpy signature."""
    x = torch.as_tensor(np.asarray(inputs), dtype=torch.float32)
    t = torch.as_tensor(np.asarray(targets)).long().reshape(-1)
    return grad_x_input(model, x, t).numpy()


def make_ctx(h: int = H, w: int = W, budget: int = 1000, seed: int = 0, n: int = N) -> MetricContext:
    model = tiny_cnn()
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, C, h, w, generator=g)
    y = torch.randint(0, CLASSES, (n,), generator=g)
    masks = torch.zeros(n, 1, h, w, dtype=torch.bool)
    for i in range(n):  # a different square per sample
        top, left = i % (h // 2), (2 * i) % (w // 2)
        masks[i, :, top : top + h // 3, left : left + w // 3] = True
    with torch.no_grad():
        logits = model(x)
    a = grad_x_input(model, x, y)
    return MetricContext(
        model=model,
        x=x,
        y=y,
        masks=masks,
        logits=logits,
        attributions=a,
        explain=lambda xx, tt: grad_x_input(model, xx, tt),
        seed=seed,
        cache={},
        batch_budget=budget,
        explain_with=grad_x_input,
    )


@pytest.fixture
def ctx() -> MetricContext:
    return make_ctx()


def numpy_batch(ctx: MetricContext) -> dict:
    return dict(
        model=ctx.model,
        x_batch=ctx.x.numpy(),
        y_batch=ctx.y.numpy(),
        a_batch=ctx.attributions.numpy(),
        channel_first=True,
        explain_func=quantus_explain,
        device="cpu",
    )


# Quantus normalises the whole batch by one maximum; these kwargs make it per sample, as we do.
PER_SAMPLE = dict(normalise_func_kwargs={"normalise_axes": (1, 2, 3)}, disable_warnings=True)


def assert_close(ours, theirs, rtol: float = 1e-4, atol: float = 1e-6) -> None:
    ours = np.asarray(torch.as_tensor(ours).double().cpu(), dtype=np.float64)
    theirs = np.asarray(theirs, dtype=np.float64)
    assert ours.shape == theirs.shape, (ours.shape, theirs.shape)
    np.testing.assert_allclose(ours, theirs, rtol=rtol, atol=atol)
