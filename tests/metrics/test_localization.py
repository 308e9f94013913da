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


def test_relevance_mass_accuracy_counts_positive_relevance_only(hand_ctx):
    a = torch.zeros(3, 1, 16, 16)
    a[0, 0, :4, :4] = 2.0 / 16          # inside: +2 in all
    a[0, 0, 8:12, 8:12] = -1.5 / 16     # outside: -1.5 in all
    a[1, 0, 8:12, 8:12] = -1.0          # no positive relevance at all
    a[2] = 1.0
    hand_ctx.attributions = a
    s = get_metric("relevance_mass_accuracy")(hand_ctx)
    assert s[0].item() == pytest.approx(1.0)
    assert s[1].item() == 0.0
    assert math.isnan(s[2].item())      # empty mask
    signed = get_metric("relevance_mass_accuracy")(hand_ctx, positive=False)
    assert signed[0].item() == pytest.approx(2.0 / 0.5)   # Quantus's signed ratio leaves [0, 1]


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
        ("relevance_mass_accuracy_positive", quantus.RelevanceMassAccuracy, {"abs": True}),
        ("pointing_game", quantus.PointingGame, {}),
    ],
)
def test_agrees_with_quantus(ctx, name, cls, kwargs):
    theirs = cls(**kwargs, **PER_SAMPLE)(**numpy_batch(ctx), s_batch=ctx.masks.numpy())
    ours = dict(kwargs)
    if name == "relevance_mass_accuracy":
        ours["positive"] = False  # Quantus sums signed relevance
    elif name == "relevance_mass_accuracy_positive":
        # with abs the maps are non-negative: counting positive relevance only changes nothing
        name = "relevance_mass_accuracy"
    assert_close(get_metric(name)(ctx, **ours), np.asarray(theirs, dtype=float))
