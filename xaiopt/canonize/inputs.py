"""A model's example input: one tensor, or a tuple whose first tensor is the input explained and the
others the model's *fixed* inputs (a VQA model's question, a conditioning vector): held as given,
never perturbed and never explained.

``canonize``, ``census`` and ``verify_equivalence`` take either form; the random batches of the
equivalence check vary the first tensor only, and a fixed floating-point input is cast with the model
(float64 for the check) while an integer one (word indices) keeps its dtype.

Example::

    twin, report = canonize(vqa_model, (images[:2], questions[:2]))
"""

from __future__ import annotations

from typing import Union

import torch
from torch import Tensor, nn

Example = Union[Tensor, tuple[Tensor, ...]]


def split(example: Example) -> tuple[Tensor, tuple[Tensor, ...]]:
    """(the explained input, the fixed inputs) of ``example``; TypeError for anything else."""
    if isinstance(example, Tensor):
        return example, ()
    if isinstance(example, (tuple, list)) and example and all(isinstance(t, Tensor) for t in example):
        return example[0], tuple(example[1:])
    raise TypeError(f"example_input: expected a tensor or a tuple of tensors (the explained input first, then the "
                    f"model's fixed inputs), got {type(example).__name__}")


def fixed_like(fixed: tuple[Tensor, ...], *, dtype: torch.dtype, device: torch.device) -> tuple[Tensor, ...]:
    """The fixed inputs on ``device``; floating-point ones in ``dtype``, the others (indices) as they are."""
    return tuple(t.to(device=device, dtype=dtype) if t.is_floating_point() else t.to(device) for t in fixed)


def run(model: nn.Module, example: Example):
    """``model`` called on ``example`` (its fixed inputs after the explained one)."""
    x, fixed = split(example)
    return model(x, *fixed)


def first_rows(example: Example, n: int) -> Example:
    """The first ``n`` samples of every tensor of ``example``."""
    x, fixed = split(example)
    return x[:n] if not fixed else (x[:n], *(t[:n] for t in fixed))
