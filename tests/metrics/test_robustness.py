import numpy as np
import pytest
import quantus
import torch

from xaiopt.metrics import get_metric
from xaiopt.metrics.robustness import sensitivity_noise

from .conftest import assert_close, make_ctx, numpy_batch


def test_sensitivity_hand():
    ctx = make_ctx(n=4)
    ctx.explain = lambda x, t: x.sum(1, keepdim=True)  # the explanation is the input itself
    ctx.attributions = ctx.x.sum(1, keepdim=True)
    noise = sensitivity_noise(ctx, 5, 0.2, None)  # (S, N, C, H, W)
    assert noise.abs().max() <= 0.2 and noise.std() > 0.05
    ratio = noise.sum(2).flatten(2).norm(dim=-1) / ctx.attributions.flatten(1).norm(dim=-1)  # (S, N)
    assert_close(get_metric("avg_sensitivity")(ctx, nr_samples=5), ratio.mean(0))
    assert_close(get_metric("max_sensitivity")(ctx, nr_samples=5), ratio.amax(0))
    fixed = ctx.attributions[:1]
    ctx.explain = lambda x, t: fixed.expand(len(x), -1, -1, -1)  # ignores x
    ctx.attributions = fixed.expand(4, -1, -1, -1)
    assert get_metric("avg_sensitivity")(ctx, nr_samples=3).abs().max() == 0


def _replay(noise):
    draws = iter(range(noise.shape[0]))

    def perturb(arr, indices, **kwargs):
        return arr + noise[next(draws)].reshape(arr.shape[0], -1).numpy()

    return perturb


@pytest.mark.parametrize("name, cls", [("avg_sensitivity", quantus.AvgSensitivity), ("max_sensitivity", quantus.MaxSensitivity)])
@pytest.mark.parametrize("upper", [None, 0.3])
def test_agrees_with_quantus(ctx, name, cls, upper):
    s, low = 4, 0.1
    noise = sensitivity_noise(ctx, s, low, upper)
    metric = cls(nr_samples=s, lower_bound=low, upper_bound=upper, perturb_func=_replay(noise), disable_warnings=True)
    theirs = metric(**numpy_batch(ctx))
    assert_close(get_metric(name)(ctx, nr_samples=s, lower_bound=low, upper_bound=upper), theirs)


def test_nan_when_prediction_changes(ctx):
    s = 3
    noise = sensitivity_noise(ctx, s, 2.0, None)  # large: some predictions flip
    metric = quantus.AvgSensitivity(
        nr_samples=s, lower_bound=2.0, perturb_func=_replay(noise), return_nan_when_prediction_changes=True,
        disable_warnings=True,
    )
    theirs = np.asarray(metric(**numpy_batch(ctx)))
    ours = get_metric("avg_sensitivity")(ctx, nr_samples=s, lower_bound=2.0, return_nan_when_prediction_changes=True)
    assert np.isnan(theirs).any()
    np.testing.assert_array_equal(np.isnan(ours.numpy()), np.isnan(theirs))
    assert_close(ours.numpy()[~np.isnan(theirs)], theirs[~np.isnan(theirs)])


@pytest.mark.parametrize("name", ["avg_sensitivity", "max_sensitivity"])
def test_chunking_does_not_change_scores(name):
    big = get_metric(name)(make_ctx(budget=10_000), nr_samples=3)
    small = get_metric(name)(make_ctx(budget=5), nr_samples=3)
    torch.testing.assert_close(small, big, rtol=1e-5, atol=1e-6)
