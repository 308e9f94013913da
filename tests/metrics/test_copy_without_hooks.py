"""mprt copies the model while the trial's composite is registered on it: the copy must be clean."""

import torch
from torch import nn
from zennit.composites import EpsilonPlus

from xaiopt.metrics.randomization import copy_without_hooks


def _hook_count(model):
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def test_copy_of_a_model_with_a_registered_composite_has_no_hooks():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 2)).eval()
    composite = EpsilonPlus()
    composite.register(model)
    try:
        x = torch.randn(2, 3, 8, 8, requires_grad=True)
        model(x).sum().backward()  # the hooks now hold tensors of this pass (a plain deepcopy fails on them)
        before = _hook_count(model)
        assert before > 0
        clone = copy_without_hooks(model)
        assert _hook_count(clone) == 0
        assert _hook_count(model) == before  # the trial's hooks are back on the original
        # (zennit's hooks need autograd, so the original is run with grad enabled)
        torch.testing.assert_close(clone(x).detach(), model(x).detach())
        # the clone's gradient is the plain gradient, the original's is LRP
        xc = x.detach().clone().requires_grad_(True)
        (g_clone,) = torch.autograd.grad(clone(xc)[:, 0].sum(), xc)
        xo = x.detach().clone().requires_grad_(True)
        (g_lrp,) = torch.autograd.grad(model(xo)[:, 0].sum(), xo)
        assert not torch.allclose(g_clone, g_lrp)
    finally:
        composite.remove()
    xp = x.detach().clone().requires_grad_(True)
    (g_plain,) = torch.autograd.grad(model(xp)[:, 0].sum(), xp)
    torch.testing.assert_close(g_clone, g_plain)
