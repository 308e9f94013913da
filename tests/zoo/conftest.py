"""Shared fixtures: one temporary cache per test session, so the benchmark VGG trains only once."""

from __future__ import annotations

from pathlib import Path

import pytest
from torch import nn

from xaiopt.zoo import load_model


@pytest.fixture(scope="session")
def zoo_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("xaiopt-cache")


@pytest.fixture(scope="session")
def trained_vgg(zoo_cache_dir: Path) -> nn.Module:
    return load_model("benchmark:vgg", cache_dir=zoo_cache_dir)
