"""Function-preserving canonization of models for LRP.

Public API::

    twin, report = canonize(model, example_input)     # canonized deep copy + report
    print(check(model, example_input))                # report only (merged pairs, rewrites, diffs)
    verify_equivalence(model, twin, x)                 # largest abs/rel logit differences
    GraphCanonizer()                                   # the zennit Canonizer, reversible with remove()
    get_canonizer("resnet")                            # named presets

See docs/canonization.md.
"""

import sys as _sys
import types as _types

from .api import canonize, check
from .canonizer import GraphCanonizer
from .changes import Merge, Rewrite, Skip
from .layers import BiasMapConv1d, BiasMapConv2d, BiasMapConv3d, Concat, GateMul, Sum, ThreshReLU
from .presets import canonizer_names, get_canonizer
from .report import CanonizationReport
from .verify import Equivalence, verify_equivalence

__all__ = [
    "BiasMapConv1d",
    "BiasMapConv2d",
    "BiasMapConv3d",
    "CanonizationReport",
    "Concat",
    "Equivalence",
    "GateMul",
    "GraphCanonizer",
    "Merge",
    "Rewrite",
    "Skip",
    "Sum",
    "ThreshReLU",
    "canonize",
    "canonizer_names",
    "check",
    "get_canonizer",
    "verify_equivalence",
]


class _CallablePackage(_types.ModuleType):
    """``xaiopt.canonize(model, x)`` is the public spelling, but ``xaiopt.canonize`` is also this
    package (Python binds a subpackage onto its parent once imported); calling the package calls
    :func:`canonize`."""

    def __call__(self, model, example_input=None, **kwargs):
        return canonize(model, example_input, **kwargs)


_sys.modules[__name__].__class__ = _CallablePackage
