"""Fixtures of the study service tests: a small fast study config, a throw-away PostgreSQL database."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import yaml

PG_HOST = os.environ.get("XAIOPT_TEST_PGHOST", "127.0.0.1")
PG_PORT = int(os.environ.get("XAIOPT_TEST_PGPORT", "5432"))
PG_USER = os.environ.get("XAIOPT_TEST_PGUSER", "postgres")
# the server trusts local connections; the password is there to prove it is never printed
PASSWORD = "pw-Zq81-secret"

SMALL = {
    "name": "svc",
    "seed": 3,
    "device": "cpu",
    "model": {"name": "benchmark:vgg"},
    "data": {"name": "benchmark", "n_samples": 4},
    "space": {
        "canonize": [True, False],
        "first_layer": ["same", "flat"],
        "layer_groups": 2,
        "rules": ["zplus", "epsilon"],
        "epsilon": {"low": 1e-6, "high": 1.0, "log": True},
    },
    "metrics": ["sparseness", {"name": "region_perturbation", "params": {"patch_size": 16, "regions": 2}}],
    "sampler": {"name": "random"},
    "runtime": {"heartbeat_interval": 1, "heatmaps": 2},
}


def small_config(tmp_path: Path, **update) -> Path:
    cfg = {**SMALL, **update}
    path = tmp_path / f"{cfg['name']}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def xaiopt(*argv: str) -> list[str]:
    """The command line of an `xaiopt` subprocess (this interpreter, this checkout)."""
    return [sys.executable, "-m", "xaiopt.cli", *argv]


def spawn(*argv: str, log: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(xaiopt(*argv), stdout=log.open("w"), stderr=subprocess.STDOUT, env=env,
                            cwd=Path(__file__).resolve().parents[2])


def _admin():
    psycopg = pytest.importorskip("psycopg")
    try:
        return psycopg.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, dbname="test", autocommit=True,
                               connect_timeout=3)
    except psycopg.OperationalError as err:
        pytest.skip(f"PostgreSQL at {PG_HOST}:{PG_PORT} is unreachable: {str(err).splitlines()[0]}")


@pytest.fixture
def pg_url():
    """A fresh PostgreSQL database for one test, dropped afterwards (URL with a password in it)."""
    admin = _admin()
    db = f"xaiopt_test_{uuid.uuid4().hex[:10]}"
    admin.execute(f'CREATE DATABASE "{db}"')
    try:
        yield f"postgresql+psycopg://{PG_USER}:{PASSWORD}@{PG_HOST}:{PG_PORT}/{db}"
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        admin.close()
