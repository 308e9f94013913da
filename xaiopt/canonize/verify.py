"""Measuring that a canonized twin computes the same function as its model."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .copying import copy_model
from .inputs import Example, fixed_like, split


@dataclass(frozen=True)
class Equivalence:
    """Largest logit differences between a model and its twin over the checked inputs.

    ``max_rel`` is ``max_abs`` divided by the largest absolute logit of the model, so it does not
    blow up on logits near zero.
    """

    max_abs: float
    max_rel: float
    n_inputs: int
    dtype: str
    tol: float

    @property
    def ok(self) -> bool:
        return self.max_rel <= self.tol

    def __str__(self) -> str:
        verdict = "ok" if self.ok else "FAILED"
        return (f"max |logit diff| {self.max_abs:.3e}, relative {self.max_rel:.3e} over {self.n_inputs} "
                f"inputs in {self.dtype} (tol {self.tol:g}): {verdict}")


def _first_tensor(output) -> torch.Tensor:
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, (tuple, list)) and output:
        return _first_tensor(output[0])
    if isinstance(output, dict) and output:
        return _first_tensor(next(iter(output.values())))
    raise TypeError(f"model output of type {type(output).__name__} holds no tensor")


def _param_device(model: nn.Module) -> torch.device:
    for tensor in list(model.parameters()) + list(model.buffers()):
        return tensor.device
    return torch.device("cpu")


def verify_equivalence(
    model: nn.Module,
    twin: nn.Module,
    inputs: Example | None = None,
    *,
    n_random: int = 2,
    input_shape: tuple[int, ...] | None = None,
    dtype: torch.dtype = torch.float64,
    tol: float = 1e-5,
    seed: int = 0,
) -> Equivalence:
    """Compare ``model`` and ``twin`` (both in eval mode, on copies cast to ``dtype``).

    Checks ``inputs`` (if given) plus ``n_random`` random batches shaped like ``inputs`` (or
    ``input_shape``, default ``(2, 3, 64, 64)``), drawn with ``seed``. Neither module is changed.
    ``inputs`` may be a tuple ``(x, *fixed)``: the random batches replace ``x`` and keep the fixed
    inputs (xaiopt.canonize.inputs).

    Example::

        result = verify_equivalence(model, twin, x)
        assert result.ok, str(result)
    """
    x, fixed = split(inputs) if inputs is not None else (None, ())
    device = x.device if x is not None else _param_device(model)
    reference = copy_model(model).eval().to(dtype)
    candidate = copy_model(twin).eval().to(dtype)
    # the fixed inputs (a question, a condition) are held as given in every batch; only x is drawn
    held = fixed_like(fixed, dtype=dtype, device=device)
    batches = [] if x is None else [x.to(device=device, dtype=dtype)]
    shape = tuple(x.shape) if x is not None else (input_shape or (2, 3, 64, 64))
    generator = torch.Generator(device="cpu").manual_seed(seed)
    scale = float(x.double().std()) if x is not None and x.numel() > 1 else 1.0
    for _ in range(n_random):
        batches.append((torch.randn(shape, generator=generator, dtype=torch.float64) * scale).to(device, dtype))
    max_abs, max_ref = 0.0, 0.0
    with torch.no_grad():
        for batch in batches:
            expected = _first_tensor(reference(batch, *held))
            got = _first_tensor(candidate(batch, *held))
            max_abs = max(max_abs, float((expected - got).abs().max()))
            max_ref = max(max_ref, float(expected.abs().max()))
    max_rel = max_abs / max(max_ref, torch.finfo(dtype).tiny)
    return Equivalence(max_abs, max_rel, len(batches), str(dtype).replace("torch.", ""), tol)
