"""Plugins: modules a study config lists, imported by every process that runs or reads the study.

A plugin registers what the study names (a metric with ``xaiopt.metrics.register_metric``, a rule
with ``xaiopt.space.register_rule``) as a side effect of its import. The config carries the
module names (``plugins: [my_pkg.metrics]``), and reading a config (from a YAML file, or from a
study in the storage) imports them, so ``create``, ``optimize``, ``worker``, ``report`` and the
read commands see the same registry on one machine and on many. A plugin must therefore be
importable on every machine.

User modules (plugins, ``module:`` models) resolve as ``python -m`` would: from the current
directory first, then from the directory of the study file a command reads (``study create``,
``run``), then from ``sys.path`` (installed packages, ``PYTHONPATH``). A worker that reads the study
from the database resolves from its own current directory: start it in the project folder, or
install the package or set ``PYTHONPATH`` on machines where the code lives elsewhere.

Example::

    plugins: [my_lab.xai_metrics]        # in the study YAML
    metrics: [sparseness, my_metric]     # my_metric is registered by my_lab.xai_metrics
"""

from __future__ import annotations

import importlib
import os
import re
import sys
from pathlib import Path
from types import ModuleType

from xaiopt.errors import ConfigError

# a dotted module path: what `import` accepts
MODULE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")

# the directories of the study files this process read, searched after the current directory
_STUDY_DIRS: list[str] = []


def add_study_dir(path: str | os.PathLike[str]) -> None:
    """Let user modules resolve from the directory of a study file this process read."""
    directory = str(Path(path).resolve().parent)
    if directory not in _STUDY_DIRS:
        _STUDY_DIRS.append(directory)


def import_user_module(name: str) -> ModuleType:
    """Import a user's module (a plugin, a ``module:`` model) as ``python -m`` would find it: the
    current directory first, then the directories of the study files read, then ``sys.path``."""
    search = [os.getcwd(), *_STUDY_DIRS]
    resolved = {os.path.abspath(p or os.curdir) for p in sys.path}
    missing = [d for d in search if d not in resolved]
    if missing:
        sys.path[0:0] = missing
        importlib.invalidate_caches()
    return importlib.import_module(name)


def import_plugins(names: list[str], *, source: str = "config") -> None:
    """Import each plugin module once (Python's module cache makes a second import free)."""
    for name in names:
        if name in sys.modules:
            continue
        try:
            import_user_module(name)
        except ModuleNotFoundError as err:
            missing = err.name or name
            raise ConfigError(f"{source}: plugins: module {name!r} cannot be imported (no module named {missing!r} "
                              f"in {os.getcwd()!r}, the study file's folder or sys.path); run in the folder that "
                              f"holds it, install it, or put it on PYTHONPATH") from None
        except Exception as err:  # the plugin's own failure: one line, its type and first line
            first = str(err).splitlines()[0] if str(err) else ""
            raise ConfigError(f"{source}: plugins: importing {name!r} failed: {type(err).__name__}: {first}") from None
