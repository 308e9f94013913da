"""What each torch function does to relevance, by kind: the table the transformer census and the
LRP engine's transformer rules share.

In the gradient x input frame (relevance of a tensor ``t`` is ``t * dL/dt``, the frame of AttnLRP's
efficient implementation), every function that is linear in its input-dependent arguments, or
picks entries of them (reshapes, concatenation, sums and means, residual additions, convolutions,
linear layers, products with constants, max pooling, ReLU), conserves relevance with its plain
gradient: that is LRP-0 with the bias absorbing its share. The other kinds need a rule:

- ``norm``: ``layer_norm`` / ``rms_norm``, the normalization as identity (statistics held constant);
- ``softmax``: AttnLRP's softmax rule (its plain gradient x input), or CP-LRP (held constant);
- ``bilinear``: a product of two input-dependent tensors (``matmul``, ``bmm``, ``einsum``, ``*``):
  the uniform rule, each operand half;
- ``sdpa``: ``scaled_dot_product_attention``: the uniform rule on its two products (q and k a
  quarter, v a half) with the softmax rule inside, or CP-LRP;
- ``activation``: an elementwise non-linearity (GELU, SiLU, tanh, ...): the identity rule;
- ``mha``: ``multi_head_attention_forward`` (``nn.MultiheadAttention``), explained as its unfused
  computation.

A function on the input's path that is none of these is ``unknown``: no rule covers it.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

NORM, SOFTMAX, BILINEAR, SDPA, ACTIVATION, MHA, LINEAR, NEUTRAL, UNKNOWN = (
    "norm", "softmax", "bilinear", "sdpa", "activation", "mha", "linear", "neutral", "unknown")

_NORMS = ("layer_norm", "rms_norm")
_SOFTMAX = ("softmax", "_softmax")
_PRODUCTS = ("matmul", "bmm", "einsum", "mul", "multiply", "__matmul__", "__rmatmul__", "__mul__", "__rmul__",
             "mul_", "__imul__")
_ACTIVATIONS = ("gelu", "silu", "mish", "elu", "selu", "celu", "softplus", "hardswish", "hardsigmoid", "sigmoid",
                "tanh", "leaky_relu", "relu6", "hardtanh", "gelu_", "silu_", "sigmoid_", "tanh_", "elu_",
                "leaky_relu_", "hardswish_", "hardsigmoid_", "hardtanh_", "erf")
# linear in the input-dependent arguments, or a selection of their entries
_LINEAR = (
    "add", "sub", "neg", "__add__", "__radd__", "__iadd__", "__sub__", "__rsub__", "__isub__", "__neg__", "add_",
    "sub_", "rsub", "div", "__truediv__", "__itruediv__", "div_", "true_divide", "reshape", "view", "view_as",
    "reshape_as", "permute", "transpose", "transpose_", "t", "flatten", "unflatten", "squeeze", "unsqueeze",
    "expand", "expand_as", "contiguous", "clone", "to", "type", "float", "double", "half", "bfloat16", "cat",
    "concat", "concatenate", "stack", "split", "split_with_sizes", "chunk", "unbind", "__getitem__", "narrow",
    "select", "index_select", "gather", "roll", "pad", "flip", "repeat", "tile", "mean", "sum", "linear",
    "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d", "convolution",
    "dropout", "dropout1d", "dropout2d", "dropout3d", "alpha_dropout", "feature_alpha_dropout", "interpolate",
    "upsample", "avg_pool1d", "avg_pool2d", "avg_pool3d", "adaptive_avg_pool1d", "adaptive_avg_pool2d",
    "adaptive_avg_pool3d", "max_pool1d", "max_pool2d", "max_pool3d", "adaptive_max_pool1d", "adaptive_max_pool2d",
    "max_pool1d_with_indices", "max_pool2d_with_indices", "adaptive_max_pool2d_with_indices", "batch_norm",
    "relu", "relu_", "threshold", "max", "amax", "min", "amin", "where", "masked_fill", "movedim", "moveaxis",
    "swapaxes", "swapdims", "matrix_H", "mT", "T", "H", "mH", "detach", "detach_", "__setitem__", "copy_",
    "pixel_shuffle", "pixel_unshuffle", "unfold", "fold", "addmm", "zero_", "fill_", "new_zeros",
    "new_ones", "new_empty", "new_full", "new_tensor", "zeros_like", "ones_like", "empty_like", "full_like",
    "requires_grad_", "unsafe_split", "tensor_split", "as_strided", "index", "take_along_dim",
    "diagonal", "tril", "triu", "cumsum", "identity", "squeeze_", "unsqueeze_", "broadcast_tensors", "broadcast_to",
)
# queries about a tensor, no new values
_NEUTRAL = ("dim", "size", "numel", "__len__", "__get__", "__format__", "__repr__", "__bool__", "__index__",
            "__int__", "__float__", "is_floating_point", "is_contiguous", "data_ptr", "element_size",
            "stride", "storage_offset", "__eq__", "__ne__", "__lt__", "__le__", "__gt__", "__ge__", "eq", "ne", "lt",
            "le", "gt", "ge", "isfinite", "isnan", "any", "all", "argmax", "argmin", "argsort", "nonzero",
            "sign", "item", "tolist", "numpy", "cpu", "cuda", "get_device", "has_names",
            "_has_compatible_shallow_copy_type",
            "__hash__", "__contains__", "__iter__", "__reduce_ex__", "__deepcopy__", "untyped_storage",
            "is_complex", "apply", "backward", "register_hook", "retain_grad", "__array__", "_is_view", "equal",
            "allclose", "isclose", "device", "layout", "ndimension", "nelement", "__dlpack__")

_KINDS: dict[str, str] = {}
for _names, _kind in ((_NORMS, NORM), (_SOFTMAX, SOFTMAX), (_PRODUCTS, BILINEAR), (_ACTIVATIONS, ACTIVATION),
                      (_LINEAR, LINEAR), (_NEUTRAL, NEUTRAL)):
    _KINDS.update(dict.fromkeys(_names, _kind))
_KINDS["scaled_dot_product_attention"] = SDPA
_KINDS["multi_head_attention_forward"] = MHA


def function_name(func) -> str:
    """A torch function's name as a user reads it (``softmax``, ``__matmul__``, ``layer_norm``)."""
    return getattr(func, "__name__", None) or type(func).__name__


_DIVISIONS = ("div", "__truediv__", "__itruediv__", "div_", "true_divide")


def kind_of(func, args=()) -> str:
    """The kind of a torch function call (see the module docstring); ``unknown`` when the table lacks
    it, or for a division by an input-dependent tensor."""
    name = function_name(func)
    if name in _DIVISIONS and len(args) > 1 and isinstance(args[1], Tensor) and args[1].requires_grad:
        return UNKNOWN
    return _KINDS.get(name, UNKNOWN)


def input_dependent(args, kwargs) -> list[Tensor]:
    """The tensors among a call's arguments (one list level deep, as ``cat`` takes them) that
    depend on the model input: those that require gradients while the parameters are frozen."""
    found: list[Tensor] = []
    for a in (*args, *kwargs.values()):
        if isinstance(a, Tensor):
            if a.requires_grad:
                found.append(a)
        elif isinstance(a, (list, tuple)):
            found.extend(t for t in a if isinstance(t, Tensor) and t.requires_grad)
    return found



class _AttentionProbe(TorchFunctionMode):
    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if kind_of(func) in (SOFTMAX, SDPA, MHA) and input_dependent(args, kwargs):
            self.calls += 1
        return func(*args, **kwargs)


def attention_calls(model: nn.Module, example_input: Tensor) -> int:
    """How many attentions (a softmax, ``scaled_dot_product_attention`` or ``multi_head_attention_forward``
    on the input's path) one forward of ``model`` runs: a transformer runs at least one. Measured by
    running, with the parameters frozen for the pass."""
    probe = _AttentionProbe()
    run_frozen(model, example_input, probe)
    return probe.calls


def run_frozen(model: nn.Module, example_input: Tensor, mode: TorchFunctionMode) -> None:
    """One forward of ``model`` on ``example_input[:1]`` under ``mode``, with gradients on and the
    parameters frozen for the pass (so what requires a gradient is what depends on the input)."""
    frozen = [p for p in model.parameters() if p.requires_grad]
    try:
        for p in frozen:
            p.requires_grad_(False)
        with torch.enable_grad(), mode:
            model(example_input[:1].detach().clone().requires_grad_(True))
    finally:
        for p in frozen:
            p.requires_grad_(True)
