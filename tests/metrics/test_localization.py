import math

import numpy as np
import pytest
import quantus
import torch

from xaiopt.metrics import get_metric

from .conftest import PER_SAMPLE, assert_close, make_ctx, numpy_batch


@pytest.fixture
def hand_ctx():
    ctx = make_ctx(n=3)
    masks = torch.zeros(3, 1, 16, 16, dtype=torch.bool)
    masks[0, 0, :4, :4] = True
    masks[1, 0, :4, :4] = True
    ctx.masks = masks  # sample 2: empty mask
    a = torch.zeros(3, 1, 16, 16)
    a[0, 0, :4, :4] = torch.arange(1.0, 17.0).view(4, 4)  # all relevance inside the mask
    a[1, 0, :4, :4] = 1.0
    a[1, 0, 8:12, 8:12] = 1.0  # half inside
    a[1, 0, 15, 15] = 5.0  # peak outside the mask
    a[2] = 1.0
    ctx.attributions = a
    return ctx


def test_relevance_mass_accuracy_hand(hand_ctx):
    s = get_metric("relevance_mass_accuracy")(hand_ctx)
    assert s[0].item() == pytest.approx(1.0)
    assert s[1].item() == pytest.approx(16 / 37)
    assert math.isnan(s[2].item())


def test_relevance_rank_accuracy_hand(hand_ctx):
    s = get_metric("relevance_rank_accuracy")(hand_ctx)
    assert s[0].item() == pytest.approx(1.0)
    # top 16: the peak (outside) then 15 of the 32 ones, ties in row-major order -> 15 inside
    assert s[1].item() == pytest.approx(15 / 16)
    assert math.isnan(s[2].item())


def test_pointing_game_hand(hand_ctx):
    s = get_metric("pointing_game")(hand_ctx)
    assert s[0].item() == 1.0 and s[1].item() == 0.0 and math.isnan(s[2].item())
    w = get_metric("pointing_game")(hand_ctx, weighted=True)
    assert w[0].item() == pytest.approx(1 - 16 / 256)


@pytest.mark.parametrize(
    "name, cls, kwargs",
    [
        ("relevance_rank_accuracy", quantus.RelevanceRankAccuracy, {}),
        ("relevance_mass_accuracy", quantus.RelevanceMassAccuracy, {}),
        ("relevance_mass_accuracy", quantus.RelevanceMassAccuracy, {"abs": True}),
        ("pointing_game", quantus.PointingGame, {}),
    ],
)
def test_agrees_with_quantus(ctx, name, cls, kwargs):
    theirs = cls(**kwargs, **PER_SAMPLE)(**numpy_batch(ctx), s_batch=ctx.masks.numpy())
    assert_close(get_metric(name)(ctx, **kwargs), np.asarray(theirs, dtype=float))
