import math

import pytest
import quantus
import torch

from xaiopt.metrics import get_metric

from .conftest import PER_SAMPLE, assert_close, make_ctx, numpy_batch


def _with_attributions(ctx, a):
    ctx.attributions = a
    return ctx


def test_sparseness_hand_cases():
    ctx = make_ctx(n=2)
    a = torch.zeros(2, 1, 16, 16)
    a[0, 0, 3, 5] = 2.0  # one-hot: Gini = 1 - 1/n, shifted by Quantus's +1e-7 per pixel
    a[1] = 1.0  # flat: Gini = 0
    scores = get_metric("sparseness")(_with_attributions(ctx, a))
    n, eps = 256, 1e-7
    assert scores[0].item() == pytest.approx((n - 1) / (n * (1 + n * eps)), abs=1e-6)
    assert scores[0].item() == pytest.approx(1 - 1 / n, abs=1e-4)
    assert scores[1].item() == pytest.approx(0.0, abs=1e-6)


def test_complexity_hand_cases():
    ctx = make_ctx(n=2)
    a = torch.zeros(2, 1, 16, 16)
    a[0, 0, 3, 5] = -3.0  # abs=True: all mass on one pixel, entropy 0
    a[1] = 0.5  # flat: entropy log(n)
    scores = get_metric("complexity")(_with_attributions(ctx, a))
    assert scores[0].item() == pytest.approx(0.0, abs=1e-6)
    assert scores[1].item() == pytest.approx(math.log(256), rel=1e-6)


@pytest.mark.parametrize("name, cls", [("sparseness", quantus.Sparseness), ("complexity", quantus.Complexity)])
def test_agrees_with_quantus(ctx, name, cls):
    theirs = cls(**PER_SAMPLE)(**numpy_batch(ctx))
    assert_close(get_metric(name)(ctx), theirs)


def test_sparseness_agrees_with_quantus_batch_normalisation(ctx):
    # Quantus's default batch-wide maximum only moves the +1e-7 offset: still within tolerance.
    theirs = quantus.Sparseness(disable_warnings=True)(**numpy_batch(ctx))
    assert_close(get_metric("sparseness")(ctx), theirs)
