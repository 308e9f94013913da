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

from collections.abc import Callable

import torch
from torch import Tensor
from zennit.core import expand
from zennit.layer import Sum

from xaiopt.lrp.affine import (
    direct_conv,
    forward_with,
    linear_part,
    linear_part_t,
    linear_part_t_pair,
    offset,
)
from xaiopt.lrp.site import Site

STABILIZER = 1e-6
_PLAIN_AFFINE = (torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d, torch.nn.Linear)


def stabilize(z: Tensor, epsilon: float) -> Tensor:
    """zennit's stabilizer ``z + eps * sign(z)`` with sign(0) = +1, in fewer passes (same values)."""
    return torch.where(z >= 0, z + epsilon, z - epsilon)


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
        if site.derived is None:
            denominator = stabilize(site.output(), self.epsilon)
        else:  # y + eps * sign(y): the sign kept, one pass per trial
            sign = site.memo("sign_y", lambda: torch.where(site.output() >= 0, 1.0, -1.0).to(x.dtype))
            denominator = torch.add(site.output(), sign, alpha=self.epsilon)
        return x * linear_part_t(module, grad / denominator, module.weight, x.shape)


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
        w, g = site.module.weight, self.gamma
        wa, wb = w + g * w.clamp(min=0), w + g * w.clamp(max=0)
        if g >= 0 and site.nonnegative():
            return self._nonnegative(site, grad, wa, wb)
        return self._mixed(site, grad, wa, wb)

    def _mixed(self, site, grad, wa, wb):
        # zennit's generalized gamma, with its gamma-independent parts kept: writing
        # Q = lin(x, W) and U = lin(x+, W+) + lin(x-, W-),
        #   z+ = fw(x+, A) + fw(x-, B, b=0) = Q + g U + L_A(0) + L_B,0(0)
        #   z- = fw(x+, B) + fw(x-, A, b=0) = Q + g (Q - U) + L_B(0) + L_A,0(0)
        x, module, g = site.input(), site.module, self.gamma
        b = _bias(module)
        y = site.output()
        q = _linear_output(site)
        u = site.memo("gamma_u", lambda: _split_linear(module, x))
        ba = None if b is None else b + g * b.clamp(min=0)
        bb = None if b is None else b + g * b.clamp(max=0)
        zp = torch.add(q, u, alpha=g) + (offset(module, x, wa, ba) + offset(module, x, wb, _zeros(b)))
        zn = torch.add(q, q - u, alpha=g) + (offset(module, x, wb, bb) + offset(module, x, wa, _zeros(b)))
        sp = torch.where(y > 0, grad / stabilize(zp, STABILIZER), 0.0)
        sn = torch.where(y < 0, grad / stabilize(zn, STABILIZER), 0.0)
        shape = x.shape
        a_sp, b_sp = linear_part_t_pair(module, sp, wa, wb, shape)
        b_sn, a_sn = linear_part_t_pair(module, sn, wb, wa, shape)
        return x.clamp(min=0) * (a_sp + b_sn) + x.clamp(max=0) * (b_sp + a_sn)

    def _nonnegative(self, site, grad, wa, wb):
        # x >= 0: fw(x, A) = y + g (lin(x, W+) + b+) >= y where y > 0 and fw(x, B) = y + g (lin(x, W-) + b-)
        # <= y where y < 0, so each output needs the denominator of its own sign only, and the
        # stabilizer's sign is known. With t = g lin(x, W+) + (eps + g b+) and b - b- = b+:
        #   z = y + t where y > 0,   z = (1 + g) y - t where y < 0.
        # A kept forward keeps the gamma-independent brackets instead: z = (y +- eps) + g * (lin(x, W+-) + b+-),
        # one pass per trial.
        x, module, g = site.input(), site.module, self.gamma
        y = site.output()
        if site.derived is None and type(module) in _PLAIN_AFFINE:  # no border term: L(0) is the bias
            positive, negative = y > 0, y < 0
            b = _bias(module)
            shift = STABILIZER if b is None else _bias_like_output(module, STABILIZER + g * b.clamp(min=0), y)
            t = torch.add(shift, _positive_part(site), alpha=g)
            z = torch.where(positive, y + t, torch.add(-t, y, alpha=1.0 + g))
        else:
            positive = site.memo("positive", lambda: y > 0)
            negative = site.memo("negative", lambda: y < 0)

            def base():
                return torch.where(positive, y + STABILIZER, y - STABILIZER)

            def chosen():
                lin_p = _positive_part(site)
                lin_n = _linear_output(site) - lin_p
                b = _bias(module)
                if b is not None:
                    lin_p = lin_p + _bias_like_output(module, b.clamp(min=0), lin_p)
                    lin_n = lin_n + _bias_like_output(module, b.clamp(max=0), lin_n)
                return torch.where(positive, lin_p, lin_n)

            z = torch.add(site.memo("gamma_base", base), site.memo("gamma_chosen", chosen), alpha=g)
        s = grad / z
        sp = torch.where(positive, s, 0.0)
        sn = torch.where(negative, s, 0.0)
        return x * (linear_part_t(module, sp, wa, x.shape) + linear_part_t(module, sn, wb, x.shape))


def _split_linear(module, x: Tensor) -> Tensor:
    """``lin(x+, W+) + lin(x-, W-)`` (one kernel call for an ungrouped convolution: both halves stacked)."""
    w = module.weight
    if direct_conv(module) and module.groups == 1:
        return linear_part(module, torch.cat([x.clamp(min=0), x.clamp(max=0)], dim=1),
                           torch.cat([w.clamp(min=0), w.clamp(max=0)], dim=1))
    return linear_part(module, x.clamp(min=0), w.clamp(min=0)) + linear_part(module, x.clamp(max=0), w.clamp(max=0))


def _bias_like_output(module, bias: Tensor, like: Tensor) -> Tensor:
    """A bias vector broadcastable against the layer output ``like``."""
    if isinstance(module, torch.nn.Linear):
        return bias
    return bias.view(1, -1, *([1] * (like.dim() - 2)))


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

    def _key(self) -> str:
        """The bounds' values: a kept denominator is reused only for the same bounds."""
        def text(b):
            return repr(b.detach().cpu().flatten().tolist()) if isinstance(b, Tensor) else repr(float(b))
        return text(self.low) + text(self.high)

    def relevance(self, site, grad):
        x, module = site.input(), site.module
        w, b = module.weight, _bias(module)
        wp, wn = w.clamp(min=0), w.clamp(max=0)
        # bounds without a batch dimension are the same image for every sample: forward one
        like = x[:1] if _per_image(self.low, x) and _per_image(self.high, x) else x
        low = expand(self.low, like.shape, cut_batch_dim=True).to(x)
        high = expand(self.high, like.shape, cut_batch_dim=True).to(x)

        def denominator():
            z = site.output() - (forward_with(module, low, wp, _clamped(b, min=0))
                                 + forward_with(module, high, wn, _clamped(b, max=0)))
            return stabilize(z, STABILIZER)

        s = grad / site.memo("zbox_" + self._key(), denominator)
        g_w, g_p = linear_part_t_pair(module, s, w, wp, x.shape)
        # W- = W - W+, so lin_{W-}^T s = lin_W^T s - lin_{W+}^T s
        return x * g_w - (low * g_p + high * (g_w - g_p))


def _per_image(bound, x: Tensor) -> bool:
    return not isinstance(bound, Tensor) or bound.dim() < x.dim() or bound.shape[0] == 1


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
