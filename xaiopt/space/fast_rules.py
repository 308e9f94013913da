"""LRP rules that skip the work zennit's generic rules spend on negative inputs that are not there.

zennit's :class:`~zennit.rules.Gamma` evaluates five modified forwards per layer (positive and
negative input parts times two weight variants, plus the plain forward for the output's sign)
and back-propagates four of them; ``AlphaBeta`` four, ``ZPlus`` two. Behind a ReLU the layer
input is non-negative, so the negative-input terms are exactly zero. These rules check the
actual input at backward time and, when it has no negative entry, compute the same relevance
from only the non-zero terms with a single backward (Gamma takes the output's sign from the
model's own forward). Inputs with a negative entry (the first layer, a layer after a BatchNorm
without ReLU, ...) take zennit's full computation. Results equal zennit's up to summation order
(tests/space/test_fast_rules.py).

Example::

    from zennit.composites import LayerMapComposite
    from zennit.types import Convolution
    composite = LayerMapComposite([(Convolution, FastGamma(gamma=0.25))])
"""

from __future__ import annotations

from typing import Optional

import torch
from zennit.core import ParamMod, Stabilizer
from zennit.rules import AlphaBeta, ClampMod, Gamma, GammaMod, ZPlus


class _NonNegativeShortcut:
    """Mixin for a zennit ``BasicHook``: on inputs >= 0, relevance from ``self._terms`` only.

    ``_terms``: ``(param_mod, gate, scale)``; the relevance for a non-negative input ``x`` is
    ``x * d/dx sum_k <out_k(x), scale_k * gate_k * g / stabilize(out_k(x))>``, ``out_k`` the module
    under ``param_mod``, ``gate_k`` the mask where the unmodified output is ``"positive"`` /
    ``"negative"`` (kept from the forward) or ``None`` (no mask).
    """

    _terms: list[tuple[ParamMod, Optional[str], float]]
    _stabilizer_fn = None

    def _uses_gates(self) -> bool:
        return any(gate is not None for _, gate, _ in self._terms)

    def forward(self, module, input, output):
        super().forward(module, input, output)
        if self._uses_gates() and torch.is_grad_enabled() and input[0].requires_grad:
            # taken now: a following in-place op (ReLU(inplace=True)) may overwrite `output`
            self.stored_tensors["positive"] = output > 0.0
            self.stored_tensors["negative"] = output < 0.0

    def backward(self, module, grad_input, grad_output):
        original_input = self.stored_tensors["input"][0]
        gated = self._uses_gates()
        if (gated and "positive" not in self.stored_tensors) or bool(original_input.amin() < 0):
            return super().backward(module, grad_input, grad_output)
        out_grad = grad_output[0]
        inp = original_input.detach().clone().requires_grad_()
        outputs, grads = [], []
        with torch.autograd.enable_grad():
            for param_mod, gate, scale in self._terms:
                with ParamMod.ensure(param_mod)(module) as modified:
                    output = modified.forward(inp)
                grad = out_grad / self._stabilizer_fn(output)
                if gate is not None:
                    grad = self.stored_tensors[gate] * grad
                if scale != 1.0:
                    grad = scale * grad
                outputs.append(output)
                grads.append(grad)
        (gradient,) = torch.autograd.grad(outputs, inp, grad_outputs=grads, create_graph=out_grad.requires_grad)
        relevance = inp * gradient
        return tuple(relevance if original.shape == relevance.shape else None for original in grad_input)

    def copy(self):
        # zennit copies the template hook per module; BasicHook.copy would drop our attributes
        return type(self)(**self._kwargs)


class FastGamma(_NonNegativeShortcut, Gamma):
    """zennit's ``Gamma``: 2 instead of 5 modified forwards and 1 instead of 4 backwards on
    non-negative layer inputs, the same relevance."""

    def __init__(self, gamma=0.25, stabilizer=1e-6, zero_params=None):
        super().__init__(gamma=gamma, stabilizer=stabilizer, zero_params=zero_params)
        self._kwargs = dict(gamma=gamma, stabilizer=stabilizer, zero_params=zero_params)
        self._stabilizer_fn = Stabilizer.ensure(stabilizer)
        # x >= 0: x+ = x, x- = 0, so zennit's terms 1 and 3 vanish and the partners in the
        # denominators are 0; left: W + gamma W+ where out > 0, W + gamma W- where out < 0
        self._terms = [
            (GammaMod(gamma, min=0.0, zero_params=zero_params), "positive", 1.0),
            (GammaMod(gamma, max=0.0, zero_params=zero_params), "negative", 1.0),
        ]


class FastZPlus(_NonNegativeShortcut, ZPlus):
    """zennit's ``ZPlus``: 1 instead of 2 modified forwards on non-negative layer inputs."""

    def __init__(self, stabilizer=1e-6, zero_params=None):
        super().__init__(stabilizer=stabilizer, zero_params=zero_params)
        self._kwargs = dict(stabilizer=stabilizer, zero_params=zero_params)
        self._stabilizer_fn = Stabilizer.ensure(stabilizer)
        self._terms = [(ClampMod(min=0.0, zero_params=zero_params), None, 1.0)]


class FastAlphaBeta(_NonNegativeShortcut, AlphaBeta):
    """zennit's ``AlphaBeta``: 2 (beta = 0: 1) instead of 4 modified forwards on non-negative inputs."""

    def __init__(self, alpha=2.0, beta=1.0, stabilizer=1e-6, zero_params=None):
        super().__init__(alpha=alpha, beta=beta, stabilizer=stabilizer, zero_params=zero_params)
        self._kwargs = dict(alpha=alpha, beta=beta, stabilizer=stabilizer, zero_params=zero_params)
        self._stabilizer_fn = Stabilizer.ensure(stabilizer)
        # x >= 0: x W+ is the whole positive part, x W- the whole negative part
        self._terms = [(ClampMod(min=0.0, zero_params=zero_params), None, float(alpha))]
        if beta != 0:
            self._terms.append((ClampMod(max=0.0, zero_params=zero_params), None, -float(beta)))
