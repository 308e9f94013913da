"""Package attributes that import their module on first use.

A package's ``__init__`` that imports all its modules makes every import of any one of them pay for
all (torch, zennit, the metric implementations). Read commands (``study pareto``, ``recommend``,
``list``) need none of that, so the packages whose modules are on their path export lazily::

    __getattr__, __dir__ = lazy_exports(__name__, {"load_study": "xaiopt.study.manage"})

Type checkers see the same names through an ``if TYPE_CHECKING:`` import block beside it.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any, Callable, Mapping


class _LazyPackage(types.ModuleType):
    """A package whose exported names win over its submodules of the same name.

    ``xaiopt.analysis.recommend`` is a module and ``from xaiopt.analysis import recommend`` the
    function: importing the submodule sets the package attribute to the module, which an eager
    ``__init__`` overwrote right after. Here that attribute is simply not set.
    """

    def __setattr__(self, name: str, value: Any) -> None:
        if isinstance(value, types.ModuleType) and name in self.__dict__.get("_lazy_exports", ()):
            return
        super().__setattr__(name, value)


def lazy_exports(package: str, exports: Mapping[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for ``package``: each name in ``exports`` comes from its module."""

    def __getattr__(name: str) -> Any:
        where = exports.get(name)
        if where is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(where), name)
        setattr(sys.modules[package], name, value)  # later look-ups skip this function
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(exports))

    module = sys.modules[package]
    module._lazy_exports = dict(exports)  # type: ignore[attr-defined]
    module.__class__ = _LazyPackage
    return __getattr__, __dir__
