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
    """zennit's stabilizer ``z + eps * sign(z)`` with sign(0) = +1, bit for bit.

    Written with float arithmetic only: the shift is exactly ``+-eps`` (``2 eps - eps = eps``), then
    added to ``z``. On CPUs a select between floats by a bool mask (``torch.where``, ``masked_fill``,
    a float times a bool) runs 5-8x slower than a float add on the same tensor, so the rules below
    build their masks from ``sign(y)`` with float arithmetic and multiply.
    """
    shift = (z >= 0).to(z.dtype).mul_(2.0 * epsilon).sub_(epsilon)
    return shift.add_(z)


def _stabilize_(z: Tensor, epsilon: float) -> Tensor:
    """:func:`stabilize` in place on ``z`` (a tensor the caller owns)."""
    shift = (z >= 0).to(z.dtype).mul_(2.0 * epsilon).sub_(epsilon)
    return z.add_(shift)


def _masked_quotient_(grad: Tensor, denominator: Tensor, mask: Tensor, outside: Tensor) -> Tensor:
    """``grad / denominator`` where ``mask`` is 1 and 0 where it is 0 (``outside = 1 - mask``), also
    where the masked-out denominator is 0 (zennit divides everywhere and selects; a product with 0
    would give NaN there). ``denominator`` is overwritten."""
    safe = denominator.mul_(mask).add_(outside)
    return torch.div(grad, safe, out=safe).mul_(mask)


def _input_parts(site: Site) -> tuple[Tensor, Tensor]:
    """``(x+, x-)`` of the site's input (kept with the forward)."""
    x = site.input()
    return site.memo("x_plus", lambda: x.clamp(min=0)), site.memo("x_minus", lambda: x.clamp(max=0))


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


def _kept_or(site: Site, key: str, compute: Callable[[], Tensor], keep: bool) -> Tensor:
    """The kept ``key`` of the site; else ``compute()``, kept only if ``keep``."""
    if keep:
        return site.memo(key, compute)
    if site.derived is not None and key in site.derived:
        return site.derived[key]
    return compute()


def _positive_part(site: Site, *, keep: bool = True) -> Tensor:
    """``lin(x, W+)``, shared by gamma and the alpha-beta rules (kept with the forward if ``keep``)."""
    module = site.module
    return _kept_or(site, "lin_wplus", lambda: linear_part(module, site.input(), module.weight.clamp(min=0)), keep)


def _linear_output(site: Site, *, keep: bool = True) -> Tensor:
    """``lin(x, W) = y - L(0)`` (kept with the forward if ``keep``)."""
    module = site.module
    return _kept_or(site, "lin_w",
                    lambda: site.output() - offset(module, site.input(), module.weight, _bias(module)), keep)


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
        if self.gamma >= 0 and site.nonnegative():
            return self._nonnegative(site, grad)
        return self._mixed(site, grad)

    def _mixed(self, site, grad):
        # zennit's generalized gamma. L(0) is linear in the parameters, so with Q = lin(x, W),
        # U = lin(x+, W+) + lin(x-, W-) and L_V,c = L(0) under weight V and bias c:
        #   z+ = fw(x+, A) + fw(x-, B, b=0) = C + g D+,   z- = fw(x+, B) + fw(x-, A, b=0) = C + g D-,
        #   C  = Q + L_W,b + L_W,0,
        #   D+ = U + L_W+,b+ + L_W-,0,   D- = (Q - U) + L_W-,b- + L_W+,0.
        # C, D+, D-, the masks and x+-, x- do not depend on gamma: a kept forward keeps them.
        x, module, g = site.input(), site.module, self.gamma
        w, b = module.weight, _bias(module)
        wp, wn = w.clamp(min=0), w.clamp(max=0)

        def constant():
            return _linear_output(site, keep=False) + (offset(module, x, w, b) + offset(module, x, w, _zeros(b)))

        once: dict[str, Tensor] = {}  # U for both slopes, computed at most once here (not kept)

        def split():
            if "u" not in once:
                once["u"] = _split_linear(module, x)
            return once["u"]

        def slope_positive():
            return split() + (offset(module, x, wp, _clamped(b, min=0)) + offset(module, x, wn, _zeros(b)))

        def slope_negative():
            return (_linear_output(site, keep=False) - split()) + (
                offset(module, x, wn, _clamped(b, max=0)) + offset(module, x, wp, _zeros(b)))

        c = site.memo("gamma_c", constant)
        zp = torch.add(c, site.memo("gamma_dp", slope_positive), alpha=g)
        zn = torch.add(c, site.memo("gamma_dn", slope_negative), alpha=g)
        # the masks [y > 0], [y < 0] from sign(y) in float arithmetic, per call (not kept: c, D+ and D-
        # are already three tensors of the layer's output size)
        sign = torch.sign(site.output())
        positive, negative = sign.clamp(min=0), sign.clamp(max=0).neg_()
        sp = _masked_quotient_(grad, _stabilize_(zp, STABILIZER), positive, 1.0 - positive)
        sn = _masked_quotient_(grad, _stabilize_(zn, STABILIZER), negative, 1.0 - negative)
        xp, xn = _input_parts(site)
        # with A = W + g W+ and B = (1 + g) W - g W+ (W- = W - W+), three transposed products, not four:
        #   A^T s+ + B^T s- = W^T (s+ + (1 + g) s-) + g W+^T (s+ - s-)
        #   B^T s+ + A^T s- = W^T ((1 + g) s+ + s-) - g W+^T (s+ - s-)
        shape = x.shape
        w_pos = linear_part_t(module, torch.add(sp, sn, alpha=1.0 + g), w, shape)
        w_neg = linear_part_t(module, torch.add(sn, sp, alpha=1.0 + g), w, shape)
        shared = linear_part_t(module, sp - sn, wp, shape).mul_(g)
        return xp * w_pos.add_(shared) + xn * w_neg.sub_(shared)

    def _nonnegative(self, site, grad):
        # x >= 0: fw(x, A) = y + g (lin(x, W+) + b+) >= y where y > 0 and fw(x, B) = y + g (lin(x, W-) + b-)
        # <= y where y < 0, so each output needs the denominator of its own sign only, and the
        # stabilizer's sign is known: z = (y +- eps) + g * (lin(x, W+-) + b+-), the sign that of y.
        # base = y +- eps and chosen = lin(x, W+-) + b+- do not depend on gamma (a kept forward keeps
        # them); where y = 0 neither term counts: base is +inf there, so the quotient s is 0.
        # With D = sign(y) (0 where s is 0 anyway) and [y<0] = (1 - D) / 2 there,
        #   A^T [y>0] s + B^T [y<0] s = W^T (s + g [y<0] s) + g W+^T (D s),
        # two transposed products of gamma-independent weights and no masks kept.
        module = site.module
        x, y = site.input(), site.output()

        sign = torch.sign(y)  # float arithmetic throughout: no bool selects (see stabilize)

        def base():
            # (y + eps sign(y) + [y = 0]) / |sign(y)|: exactly y +- eps, and 1 / 0 = +inf where y = 0
            nonzero = sign.abs()
            return torch.add(y, sign, alpha=STABILIZER).add_(1.0 - nonzero).div_(nonzero)

        def chosen():
            lin_p = _positive_part(site, keep=False)
            lin_n = _linear_output(site, keep=False) - lin_p
            b = _bias(module)
            if b is not None:
                lin_p = lin_p + _bias_like_output(module, b.clamp(min=0), lin_p)
                lin_n = lin_n + _bias_like_output(module, b.clamp(max=0), lin_n)
            # lin_p where y > 0, lin_n where y < 0, 0 where y = 0
            return lin_p.mul_(sign.clamp(min=0)).sub_(lin_n.mul_(sign.clamp(max=0)))

        g = self.gamma
        if site.derived is None and type(module) in _PLAIN_AFFINE:
            # nothing is kept: with L(0) = b, lin(x, W-) + b- = y - lin(x, W+) - b+, so with
            # t = eps + g (lin(x, W+) + b+) >= eps:  z = y + sign(y) t + g min(y, 0), and 1 where y = 0
            b = _bias(module)
            shift = STABILIZER if b is None else _bias_like_output(module, STABILIZER + g * b.clamp(min=0), y)
            nonzero = sign.abs()
            z = torch.add(shift, _positive_part(site, keep=False), alpha=g).mul_(sign)
            z = torch.add(z, y.clamp(max=0), alpha=g).add_(y).add_(1.0 - nonzero)
            s = torch.div(grad, z, out=z).mul_(nonzero)
        else:
            z = torch.add(site.memo("gamma_base", base), site.memo("gamma_chosen", chosen), alpha=g)
            s = torch.div(grad, z, out=z)
        signed = sign.mul_(s)
        plain = torch.sub(s, signed).mul_(0.5 * g).add_(s)  # s + g [y<0] s
        w = module.weight
        relevance = linear_part_t(module, plain, w, x.shape)
        relevance.add_(linear_part_t(module, signed, w.clamp(min=0), x.shape), alpha=g)
        return relevance.mul_(x)


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
            # x- = 0: fw(x-, ., 0) is L(0) without bias, and the x- terms vanish; the stabilized
            # denominators depend on neither alpha nor beta, so a kept forward keeps them
            once: dict[str, Tensor] = {}  # lin(x, W+) for both denominators, computed at most once here

            def lin_p() -> Tensor:
                if "p" not in once:
                    once["p"] = _positive_part(site, keep=False)
                return once["p"]

            def base():
                return offset(module, x, w, _zeros(b))

            def positive_denominator():
                return stabilize(lin_p() + offset(module, x, wp, bp) + base(), STABILIZER)

            def negative_denominator():
                lin_n = _linear_output(site, keep=False) - lin_p()
                return stabilize(lin_n + offset(module, x, wn, bn) + base(), STABILIZER)

            sp = grad / site.memo("alphabeta_zp", positive_denominator)
            result = self.alpha * (x * linear_part_t(module, sp, wp, shape))
            if self.beta is None:
                return result
            sn = grad / site.memo("alphabeta_zn", negative_denominator)
            return result - self.beta * (x * linear_part_t(module, sn, wn, shape))
        # signed inputs: the denominators depend on neither alpha nor beta either
        xp, xn = _input_parts(site)

        def positive_denominator():
            return stabilize(forward_with(module, xp, wp, bp) + forward_with(module, xn, wn, _zeros(b)), STABILIZER)

        def negative_denominator():
            return stabilize(forward_with(module, xp, wn, bn) + forward_with(module, xn, wp, _zeros(b)), STABILIZER)

        sp = grad / site.memo("alphabeta_zp", positive_denominator)
        p_sp, n_sp = linear_part_t_pair(module, sp, wp, wn, shape)
        result = self.alpha * (xp * p_sp + xn * n_sp)
        if self.beta is None:
            return result
        sn = grad / site.memo("alphabeta_zn", negative_denominator)
        n_sn, p_sn = linear_part_t_pair(module, sn, wn, wp, shape)
        return result - self.beta * (xp * n_sn + xn * p_sn)


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
    "excitation_backprop": lambda v, low, high: AlphaBeta(1.0, None),
}
