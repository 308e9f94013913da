import numpy as np
import pytest
import quantus
import torch
from torch import nn

from xaiopt.metrics import get_metric, pixel_flipping_curve, region_perturbation_curve
from xaiopt.metrics.faithfulness import faithfulness_correlation_subsets
from xaiopt.metrics.noise import uniform_noise

from .conftest import PER_SAMPLE, assert_close, make_ctx, numpy_batch


class SumModel(nn.Module):
    """logit 0 = sum of all inputs, logit 1 = 0: occlusion effects are hand-computable."""

    def forward(self, x):
        s = x.flatten(1).sum(1)
        return torch.stack([s, torch.zeros_like(s)], 1)


def _sum_ctx():
    ctx = make_ctx(n=1, h=4, w=4)
    x = torch.arange(16.0).view(1, 1, 4, 4)  # min 0 -> black baseline = 0
    ctx.model, ctx.x, ctx.y = SumModel(), x, torch.zeros(1, dtype=torch.long)
    ctx.logits = ctx.model(x)
    ctx.attributions = x.clone()
    return ctx


def test_region_perturbation_hand():
    ctx = _sum_ctx()
    # 2x2 patches with sums 10, 18, 42, 50 (row-major); MoRF removes 50, 42, 18, 10.
    curve = region_perturbation_curve(ctx, patch_size=2, softmax=False)
    assert curve[0].tolist() == [50.0, 92.0, 110.0, 120.0]
    aopc = get_metric("region_perturbation")(ctx, patch_size=2, softmax=False)
    assert aopc.item() == pytest.approx((50 + 92 + 110 + 120) / 5)
    lerf = region_perturbation_curve(ctx, patch_size=2, softmax=False, order="lerf")
    assert lerf[0].tolist() == [10.0, 28.0, 70.0, 120.0]
    assert get_metric("region_perturbation").direction_for({"order": "lerf"}) == "minimize"


def test_pixel_flipping_hand():
    ctx = _sum_ctx()
    curve = pixel_flipping_curve(ctx, features_in_step=4, softmax=False)
    # remaining sum after removing the 4, 8, 12, 16 largest pixels
    assert curve[0].tolist() == [120.0 - 54, 120.0 - 92, 120.0 - 114, 0.0]
    auc = get_metric("pixel_flipping")(ctx, features_in_step=4, softmax=False)
    assert auc.item() == pytest.approx(np.trapezoid([66, 28, 6, 0], dx=1 / 3))


def test_faithfulness_correlation_hand():
    # A linear model on one channel, attribution w * x and a zero pixel (black baseline = 0):
    # every prediction drop equals the attribution sum of the removed subset -> correlation 1.
    ctx = make_ctx(n=2, h=4, w=4)
    weights = torch.randn(16)
    ctx.model = nn.Sequential(nn.Flatten(), nn.Linear(16, 2, bias=False))
    ctx.model[1].weight.data = torch.stack([weights, torch.zeros(16)])
    x = torch.rand(2, 1, 4, 4) + 1.0
    x[:, 0, 0, 0] = 0.0
    ctx.x, ctx.y = x, torch.zeros(2, dtype=torch.long)
    with torch.no_grad():
        ctx.logits = ctx.model(x)
    ctx.attributions = weights.view(1, 1, 4, 4) * x
    s = get_metric("faithfulness_correlation")(ctx, nr_runs=20, subset_size=5)
    assert_close(s, [1.0, 1.0])


@pytest.mark.parametrize("h, patch, order", [(16, 4, "morf"), (18, 4, "lerf"), (16, 8, "morf")])
def test_region_perturbation_agrees_with_quantus(h, patch, order):
    ctx = make_ctx(h=h, w=h)
    metric = quantus.RegionPerturbation(patch_size=patch, regions_evaluation=10, order=order, **PER_SAMPLE)
    theirs = np.asarray(metric(**numpy_batch(ctx)))
    ours = region_perturbation_curve(ctx, patch_size=patch, regions=10, order=order)
    assert_close(ours, theirs)
    aopc = get_metric("region_perturbation")(ctx, patch_size=patch, regions=10, order=order)
    assert_close(aopc, theirs.sum(1) / (theirs.shape[1] + 1))


def test_region_perturbation_uniform_baseline_replays_quantus(ctx, monkeypatch):
    n_steps = 10
    table = uniform_noise(ctx, "region_perturbation", (ctx.n, n_steps), 0.0, 1.0).numpy()
    calls = iter(range(n_steps))

    def replay(low=0.0, high=1.0, size=None):
        return table[:, next(calls)].astype(np.float64)

    monkeypatch.setattr(np.random, "uniform", replay)
    metric = quantus.RegionPerturbation(patch_size=4, regions_evaluation=n_steps, perturb_baseline="uniform", **PER_SAMPLE)
    theirs = np.asarray(metric(**numpy_batch(ctx)))
    assert_close(region_perturbation_curve(ctx, patch_size=4, regions=n_steps, baseline="uniform"), theirs)


def test_pixel_flipping_agrees_with_quantus():
    # Quantus asserts features_in_step divides H * W (though it flips channel values): 12 x 12.
    ctx, f = make_ctx(h=12, w=12), 16
    metric = quantus.PixelFlipping(features_in_step=3 * f, **PER_SAMPLE)
    theirs = np.asarray(metric(**numpy_batch(ctx)))
    assert_close(pixel_flipping_curve(ctx, features_in_step=f), theirs)
    # Quantus's return_auc_per_sample calls np.trapz, gone in numpy 2.4: integrate its curve here.
    auc = np.trapezoid(theirs, dx=1.0, axis=1)
    ours = get_metric("pixel_flipping")(ctx, features_in_step=f) * (theirs.shape[1] - 1)
    assert_close(ours, auc)


def test_faithfulness_correlation_replays_quantus(ctx, monkeypatch):
    runs, size = 12, 30
    subsets = faithfulness_correlation_subsets(ctx, runs, size).numpy()  # (R, N, S)
    order = iter([(r, i) for r in range(runs) for i in range(ctx.n)])

    def replay(n, k, replace=True):
        r, i = next(order)
        return subsets[r, i]

    monkeypatch.setattr(np.random, "choice", replay)
    theirs = quantus.FaithfulnessCorrelation(
        nr_runs=runs, subset_size=size, return_aggregate=False, **PER_SAMPLE
    )(**numpy_batch(ctx))
    assert_close(get_metric("faithfulness_correlation")(ctx, nr_runs=runs, subset_size=size), theirs)


@pytest.mark.parametrize(
    "name, params",
    [
        ("region_perturbation", dict(patch_size=4, regions=16)),
        ("region_perturbation", dict(patch_size=4, baseline="uniform")),
        ("region_perturbation", dict(patch_size=4, baseline="blur", blur_kernel_size=5)),
        ("region_perturbation", dict(patch_size=4, baseline="mean")),
        ("pixel_flipping", dict(features_in_step=32)),
        ("faithfulness_correlation", dict(nr_runs=10, subset_size=20)),
    ],
)
def test_chunking_does_not_change_scores(name, params):
    big = get_metric(name)(make_ctx(budget=10_000), **params)
    small = get_metric(name)(make_ctx(budget=3), **params)
    assert torch.isfinite(big).all()
    torch.testing.assert_close(small, big, rtol=1e-5, atol=1e-6)
