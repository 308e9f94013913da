"""Session-wide fixtures: one model cache per test session, so the benchmark CNN trains once."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from xaiopt.zoo import CACHE_ENV_VAR


@pytest.fixture(scope="session", autouse=True)
def xaiopt_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every test (and every CLI subprocess) of this session uses one fresh cache directory."""
    path = tmp_path_factory.mktemp("xaiopt-cache")
    old = os.environ.get(CACHE_ENV_VAR)
    os.environ[CACHE_ENV_VAR] = str(path)
    yield path
    if old is None:
        os.environ.pop(CACHE_ENV_VAR, None)
    else:
        os.environ[CACHE_ENV_VAR] = old


@pytest.fixture(scope="session", autouse=True)
def no_cost_probe():
    """``study create`` measures one trial before it writes (xaiopt/study/estimate.py); the suite
    creates hundreds of studies, so it skips the probe except in the tests of the probe itself, which
    unset the variable."""
    from xaiopt.study.estimate import SKIP_ENV

    old = os.environ.get(SKIP_ENV)
    os.environ[SKIP_ENV] = "1"
    yield
    if old is None:
        os.environ.pop(SKIP_ENV, None)
    else:
        os.environ[SKIP_ENV] = old


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """The property-based tests' case counts, so a CI log shows how much was fuzzed."""
    from fuzz_counts import COUNTS

    for name, n in sorted(COUNTS.items()):
        terminalreporter.write_line(f"fuzzed: {n} cases of {name}")
