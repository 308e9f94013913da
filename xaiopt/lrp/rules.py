"""LRP rules as relevance maps ``(site, R_out) -> R_in``, each written out with plain tensor ops.

Each rule computes exactly what the zennit hook of the same name computes for the composite of
``xaiopt.space.spec`` (zennit's ``Epsilon``, ``AlphaBeta``, ``ZPlus``, ``Flat``, ``WSquare``,
``ZBox``, ``Pass``, ``Norm`` and xaiopt's ``FastGamma``); docs/lrp.md gives every formula. Notation:
``x`` the layer input, ``y`` its output from the forward, ``x+ = max(x, 0)``, ``x- = min(x, 0)``,
``W+``/``W-`` the clamped weights, ``fw(x, W, b)`` the module's forward under other parameters,
``lin``/``lin^T`` its linear part and that part's transpose, ``stab`` zennit's stabilizer
(``z + eps * sign(z)``, sign(0) = +1, eps = 1e-6 unless the rule takes it).

The rule-independent quantities that repeat across trials (``lin(x, W+)``, the non-negativity of
``x``) are memoised on the site, so a kept forward computes them once.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor
from zennit.core import expand, stabilize
from zennit.layer import Sum

from xaiopt.lrp.affine import forward_with, linear_part, linear_part_t, offset
from xaiopt.lrp.site import Site

STABILIZER = 1e-6


class LrpRule:
    """A rule: ``relevance(site, R)`` is the relevance of the layer input."""

    uses_output = True

    def relevance(self, site: Site, grad: Tensor) -> Tensor:
        raise NotImplementedError


def _bias(module) -> Tensor | None:
    return getattr(module, "bias", None)


def _clamped(t: Tensor | None, *, min=None, max=None) -> Tensor | None:
    return None if t is None else t.clamp(min=min, max=max)


def _zeros(t: Tensor | None) -> Tensor | None:
    return None if t is None else torch.zeros_like(t)


def _positive_part(site: Site) -> Tensor:
    """``lin(x, W+)``, shared by gamma and the alpha-beta rules on non-negative inputs."""
    module = site.module
    return site.memo("lin_wplus", lambda: linear_part(module, site.input(), module.weight.clamp(min=0)))


def _linear_output(site: Site) -> Tensor:
    """``lin(x, W) = y - L(0)``."""
    module = site.module
    return site.memo("lin_w", lambda: site.output() - offset(module, site.input(), module.weight, _bias(module)))


class Epsilon(LrpRule):
    """``R_in = x * lin^T(R / stab_eps(y))``."""

    def __init__(self, epsilon: float) -> None:
        self.epsilon = float(epsilon)

    def relevance(self, site, grad):
        x, module = site.input(), site.module
        s = grad / stabilize(site.output(), self.epsilon)
        return x * linear_part_t(module, s, module.weight, x.shape)


class Gamma(LrpRule):
    """xaiopt's FastGamma: on ``x >= 0`` the two-term form, else zennit's generalized Gamma.

    ``A = W + g W+`` (bias ``b + g b+``), ``B = W + g W-`` (bias ``b + g b-``), masks from ``y``.
    ``x >= 0``: ``R_in = x * (A^T [y>0] R / stab(fw(x, A)) + B^T [y<0] R / stab(fw(x, B)))``.
    Otherwise ``z+ = fw(x+, A) + fw(x-, B, b=0)``, ``z- = fw(x+, B) + fw(x-, A, b=0)``,
    ``s+ = [y>0] R / stab(z+)``, ``s- = [y<0] R / stab(z-)``,
    ``R_in = x+ (A^T s+ + B^T s-) + x- (B^T s+ + A^T s-)``.
    """

    def __init__(self, gamma: float) -> None:
        self.gamma = float(gamma)

    def relevance(self, site, grad):
        x, module, g = site.input(), site.module, self.gamma
        w, b = module.weight, _bias(module)
        wa, wb = w + g * w.clamp(min=0), w + g * w.clamp(max=0)
        y = site.output()
        if site.nonnegative():
            lin_w, lin_p = _linear_output(site), _positive_part(site)
            ba = None if b is None else b + g * b.clamp(min=0)
            bb = None if b is None else b + g * b.clamp(max=0)
            # fw(x, A) = lin(x, W) + g lin(x, W+) + L_A(0); lin(x, W-) = lin(x, W) - lin(x, W+)
            za = lin_w + g * lin_p + offset(module, x, wa, ba)
            zb = lin_w + g * (lin_w - lin_p) + offset(module, x, wb, bb)
            sp = (y > 0) * grad / stabilize(za, STABILIZER)
            sn = (y < 0) * grad / stabilize(zb, STABILIZER)
            return x * (linear_part_t(module, sp, wa, x.shape) + linear_part_t(module, sn, wb, x.shape))
        xp, xn = x.clamp(min=0), x.clamp(max=0)
        ba = None if b is None else b + g * b.clamp(min=0)
        bb = None if b is None else b + g * b.clamp(max=0)
        zp = forward_with(module, xp, wa, ba) + forward_with(module, xn, wb, _zeros(b))
        zn = forward_with(module, xp, wb, bb) + forward_with(module, xn, wa, _zeros(b))
        sp = (y > 0) * grad / stabilize(zp, STABILIZER)
        sn = (y < 0) * grad / stabilize(zn, STABILIZER)
        shape = x.shape
        return (xp * linear_part_t(module, sp, wa, shape) + xn * linear_part_t(module, sp, wb, shape)
                + xp * linear_part_t(module, sn, wb, shape) + xn * linear_part_t(module, sn, wa, shape))


class AlphaBeta(LrpRule):
    """zennit's AlphaBeta (ZPlus is ``alpha=1`` without the beta term).

    ``z+ = fw(x+, W+, b+) + fw(x-, W-, 0)``, ``z- = fw(x+, W-, b-) + fw(x-, W+, 0)``,
    ``R_in = alpha (x+ W+^T + x- W-^T) R / stab(z+) - beta (x+ W-^T + x- W+^T) R / stab(z-)``.
    """

    def __init__(self, alpha: float, beta: float | None) -> None:
        self.alpha = float(alpha)
        self.beta = None if beta is None else float(beta)

    def relevance(self, site, grad):
        x, module = site.input(), site.module
        w, b = module.weight, _bias(module)
        wp, wn = w.clamp(min=0), w.clamp(max=0)
        bp, bn = _clamped(b, min=0), _clamped(b, max=0)
        shape = x.shape
        if site.nonnegative():
            # x- = 0: fw(x-, ., 0) is L(0) without bias, and the x- terms vanish
            lin_p = _positive_part(site)
            base = offset(module, x, w, _zeros(b))
            zp = lin_p + offset(module, x, wp, bp) + base
            sp = grad / stabilize(zp, STABILIZER)
            result = self.alpha * (x * linear_part_t(module, sp, wp, shape))
            if self.beta is None:
                return result
            zn = (_linear_output(site) - lin_p) + offset(module, x, wn, bn) + base
            sn = grad / stabilize(zn, STABILIZER)
            return result - self.beta * (x * linear_part_t(module, sn, wn, shape))
        xp, xn = x.clamp(min=0), x.clamp(max=0)
        zp = forward_with(module, xp, wp, bp) + forward_with(module, xn, wn, _zeros(b))
        sp = grad / stabilize(zp, STABILIZER)
        result = self.alpha * (xp * linear_part_t(module, sp, wp, shape) + xn * linear_part_t(module, sp, wn, shape))
        if self.beta is None:
            return result
        zn = forward_with(module, xp, wn, bn) + forward_with(module, xn, wp, _zeros(b))
        sn = grad / stabilize(zn, STABILIZER)
        return result - self.beta * (xp * linear_part_t(module, sn, wn, shape)
                                     + xn * linear_part_t(module, sn, wp, shape))


class _UniformInput(LrpRule):
    """Flat and WSquare: ``R_in = lin_V^T(R / stab(fw(1, V, c)))``, input-independent except for its shape."""

    uses_output = False

    def params(self, module) -> tuple[Tensor, Tensor | None]:
        raise NotImplementedError

    def relevance(self, site, grad):
        x, module = site.input(), site.module
        v, c = self.params(module)
        z = forward_with(module, torch.ones_like(x[:1]), v, c)  # the same for every sample
        return linear_part_t(module, grad / stabilize(z, STABILIZER), v, x.shape)


class Flat(_UniformInput):
    """``V = 1``, ``c = 0``."""

    def params(self, module):
        return torch.ones_like(module.weight), _zeros(_bias(module))


class WSquare(_UniformInput):
    """``V = W**2``, ``c = b**2``."""

    def params(self, module):
        b = _bias(module)
        return module.weight ** 2, None if b is None else b ** 2


class ZBox(LrpRule):
    """``z = y - (fw(l, W+, b+) + fw(h, W-, b-))``, ``s = R / stab(z)``,
    ``R_in = x W^T s - (l W+^T s + h W-^T s)`` (``l``/``h`` the bounds, broadcast to ``x``)."""

    def __init__(self, low: Tensor, high: Tensor) -> None:
        self.low, self.high = low, high

    def relevance(self, site, grad):
        x, module = site.input(), site.module
        w, b = module.weight, _bias(module)
        wp, wn = w.clamp(min=0), w.clamp(max=0)
        low = expand(self.low, x.shape, cut_batch_dim=True).to(x)
        high = expand(self.high, x.shape, cut_batch_dim=True).to(x)
        z = site.output() - (forward_with(module, low, wp, _clamped(b, min=0))
                             + forward_with(module, high, wn, _clamped(b, max=0)))
        s = grad / stabilize(z, STABILIZER)
        shape = x.shape
        return x * linear_part_t(module, s, w, shape) - (
            low * linear_part_t(module, s, wp, shape) + high * linear_part_t(module, s, wn, shape))


class Pass(LrpRule):
    """``R_in = R`` (activations, batch norms)."""

    uses_output = False

    def relevance(self, site, grad):
        return grad


class Norm(LrpRule):
    """zennit's Norm (sums, average pooling): ``R_in = x * d/dx <m(x), R / stab(y)>``."""

    def relevance(self, site, grad):
        x, module = site.input(), site.module
        s = grad / stabilize(site.output(), STABILIZER)
        if type(module) is Sum:
            return x * s.unsqueeze(module.dim).expand_as(x)
        with torch.enable_grad():
            probe = x.detach().requires_grad_(True)
            (g,) = torch.autograd.grad(module(probe), probe, grad_outputs=s)
        return x * g


# rule names of xaiopt.space.rules -> (value, low, high) -> LrpRule
RULES: dict[str, Callable[..., LrpRule]] = {
    "epsilon": lambda v, low, high: Epsilon(v),
    "gamma": lambda v, low, high: Gamma(v),
    "alpha2beta1": lambda v, low, high: AlphaBeta(2.0, 1.0),
    "alpha1beta0": lambda v, low, high: AlphaBeta(1.0, 0.0),
    "zplus": lambda v, low, high: AlphaBeta(1.0, None),
    "flat": lambda v, low, high: Flat(),
    "wsquare": lambda v, low, high: WSquare(),
    "zbox": lambda v, low, high: ZBox(low, high),
    "pass": lambda v, low, high: Pass(),
}
