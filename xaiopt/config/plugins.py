"""Plugins: modules a study config lists, imported by every process that runs or reads the study.

A plugin registers what the study names (a metric with ``xaiopt.metrics.register_metric``, a rule
with ``xaiopt.space.register_rule``) as a side effect of its import. The config carries the
module names (``plugins: [my_pkg.metrics]``), and reading a config (from a YAML file, or from a
study in the storage) imports them, so ``create``, ``optimize``, ``worker``, ``report`` and the
read commands see the same registry on one machine and on many. A plugin must therefore be
importable on every machine: installed, or on ``PYTHONPATH``.

Example::

    plugins: [my_lab.xai_metrics]        # in the study YAML
    metrics: [sparseness, my_metric]     # my_metric is registered by my_lab.xai_metrics
"""

from __future__ import annotations

import importlib
import re
import sys

from xaiopt.errors import ConfigError

# a dotted module path: what `import` accepts
MODULE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


def import_plugins(names: list[str], *, source: str = "config") -> None:
    """Import each plugin module once (Python's module cache makes a second import free)."""
    for name in names:
        if name in sys.modules:
            continue
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as err:
            missing = err.name or name
            raise ConfigError(f"{source}: plugins: module {name!r} cannot be imported (no module named {missing!r}); "
                              f"install it or put it on PYTHONPATH on every machine that runs or reads the study"
                              ) from None
        except Exception as err:  # the plugin's own failure: one line, its type and first line
            first = str(err).splitlines()[0] if str(err) else ""
            raise ConfigError(f"{source}: plugins: importing {name!r} failed: {type(err).__name__}: {first}") from None
