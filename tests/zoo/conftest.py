"""Shared fixtures: one cache per test session, so the benchmark VGG trains at most once.

The cache is ``$XAIOPT_CACHE_DIR`` when set (tests/conftest.py points it at one fresh directory per
session, shared with the other packages' tests), else a session temporary directory. Tests that
damage a cache use their own ``tmp_path``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from torch import nn

from xaiopt.zoo import load_model


@pytest.fixture(scope="session")
def zoo_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from_env = os.environ.get("XAIOPT_CACHE_DIR")
    return Path(from_env) if from_env else tmp_path_factory.mktemp("xaiopt-cache")


@pytest.fixture(scope="session")
def trained_vgg(zoo_cache_dir: Path) -> nn.Module:
    return load_model("benchmark:vgg", cache_dir=zoo_cache_dir)
