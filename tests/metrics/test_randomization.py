import numpy as np
import pytest
import quantus
import skimage.metrics
import torch

from xaiopt.errors import ConfigError
from xaiopt.metrics import get_metric, mprt_layer_scores
from xaiopt.metrics import randomization
from xaiopt.metrics.similarity import average_ranks, spearman, ssim

from .conftest import CLASSES, PER_SAMPLE, assert_close, make_ctx, numpy_batch


def test_random_logit_targets_differ_from_y_and_are_fixed(ctx):
    t = randomization.random_logit_targets(ctx, CLASSES)
    assert (t != ctx.y).all() and ((t >= 0) & (t < CLASSES)).all()
    again = randomization.random_logit_targets(make_ctx(), CLASSES)  # a fresh cache, same seed
    assert torch.equal(t, again)


def test_random_logit_hand(ctx):
    ctx.explain = lambda x, t: ctx.attributions[: len(x)]  # class-blind explainer (budget >= N): SSIM 1
    assert_close(get_metric("random_logit")(ctx), np.ones(ctx.n))


def test_random_logit_agrees_with_quantus(ctx, monkeypatch):
    def quantus_targets(ctx, num_classes):  # Quantus's own draw
        np.random.seed(42)
        off = np.random.randint(0, num_classes - 1, ctx.n)
        others = [[c for c in range(num_classes) if c != y] for y in ctx.y.tolist()]
        return torch.tensor([others[i][o] for i, o in enumerate(off)])

    monkeypatch.setattr(randomization, "random_logit_targets", quantus_targets)
    theirs = quantus.RandomLogit(num_classes=CLASSES, seed=42, **PER_SAMPLE)(**numpy_batch(ctx))
    ours = get_metric("random_logit")(ctx, similarity="ssim_flat")
    assert_close(ours, theirs, atol=1e-5)


def test_ssim_2d_equals_skimage():
    g = torch.Generator().manual_seed(1)
    u, v = torch.rand(3, 16, 20, generator=g), torch.rand(3, 16, 20, generator=g) - 0.3
    ours = ssim(u, v, win_size=7)
    for i in range(3):
        a, b = u[i].double().numpy(), v[i].double().numpy()
        rng = max(a.max(), b.max()) - min(a.min(), b.min())
        assert ours[i].item() == pytest.approx(skimage.metrics.structural_similarity(a, b, win_size=7, data_range=rng), rel=1e-9)


def test_spearman_average_ranks():
    u = torch.tensor([[3.0, 1.0, 1.0, 2.0], [0.0, 0.0, 0.0, 5.0]])
    assert average_ranks(u).tolist() == [[4.0, 1.5, 1.5, 3.0], [2.0, 2.0, 2.0, 4.0]]
    v = torch.tensor([[30.0, 10.0, 10.0, 20.0], [5.0, 4.0, 3.0, 9.0]])
    s = spearman(u, v)
    assert s[0].item() == pytest.approx(1.0)


def test_mprt_hand(ctx):
    ctx.explain_with = lambda model, x, t: ctx.attributions[: len(x)]  # model-blind explainer
    assert_close(get_metric("mprt")(ctx), np.ones(ctx.n))


def test_mprt_needs_explain_with(ctx):
    ctx.explain_with = None
    with pytest.raises(ConfigError, match="explain_with"):
        get_metric("mprt")(ctx)


@pytest.mark.parametrize("order", ["top_down", "bottom_up", "independent"])
def test_mprt_agrees_with_quantus(ctx, order):
    rng_state = torch.get_rng_state()
    theirs = quantus.MPRT(seed=42, layer_order=order, **PER_SAMPLE)(**numpy_batch(ctx))
    torch.set_rng_state(rng_state)
    names, ours = mprt_layer_scores(ctx, seed=42, layer_order=order)
    assert names == [k for k in theirs if k != "original"]
    assert_close(ours, np.array([theirs[k] for k in names]))
    assert torch.equal(torch.get_rng_state(), rng_state)  # our reset leaves the global RNG alone


@pytest.mark.parametrize("name", ["random_logit", "mprt"])
def test_chunking_does_not_change_scores(name):
    big = get_metric(name)(make_ctx(budget=10_000))
    small = get_metric(name)(make_ctx(budget=3))
    torch.testing.assert_close(small, big, rtol=1e-5, atol=1e-6)
