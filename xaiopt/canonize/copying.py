"""A deep copy of a model that survives tensors a forward pass cached on its modules.

Third-party modules cache tensors computed from their parameters during a forward (timm's LeViT
keeps ``attention_biases[:, idxs]`` per device in ``attention_bias_cache``). After a forward with
autograd on, such a tensor is not a graph leaf and ``copy.deepcopy`` refuses it. The copy here
gives every such tensor a detached clone (the same values, no graph), and copies the rest as
``copy.deepcopy`` does.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

_MODULE_STATE = ("_parameters", "_buffers", "_modules")


def _seed(value: Any, memo: dict[int, Any], depth: int = 0) -> None:
    if isinstance(value, torch.Tensor):
        if value.grad_fn is not None and id(value) not in memo:
            memo[id(value)] = value.detach().clone()
    elif depth < 4 and isinstance(value, dict):
        for v in value.values():
            _seed(v, memo, depth + 1)
    elif depth < 4 and isinstance(value, (list, tuple)):
        for v in value:
            _seed(v, memo, depth + 1)


def copy_model(model: nn.Module) -> nn.Module:
    """``copy.deepcopy(model)``, with tensors cached in module attributes that carry a graph copied
    detached (see the module docstring)."""
    memo: dict[int, Any] = {}
    for module in model.modules():
        for key, value in vars(module).items():
            if key not in _MODULE_STATE:
                _seed(value, memo)
    return copy.deepcopy(model, memo)
