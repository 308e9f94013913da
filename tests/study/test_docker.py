"""What can be checked of docker/ without a docker engine: the compose file, the Dockerfile, the README."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def test_compose_has_every_role():
    compose = yaml.safe_load((ROOT / "docker" / "compose.yaml").read_text())
    services = compose["services"]
    assert set(services) == {"db", "create-study", "worker", "dashboard"}
    assert services["worker"]["command"][:1] == ["worker"] and "--until-done" in services["worker"]["command"]
    assert services["worker"]["depends_on"]["create-study"]["condition"] == "service_completed_successfully"
    assert services["create-study"]["depends_on"]["db"]["condition"] == "service_healthy"
    assert services["dashboard"]["ports"] == ["127.0.0.1:8080:8080"]
    # the storage URL takes its password from the environment, never from the file
    url = services["worker"]["environment"]["XAIOPT_STORAGE"]
    assert url.startswith("postgresql+psycopg://") and "${POSTGRES_PASSWORD" in url
    # the files the services name exist in the image's build context
    for rel in ("dashboards/optuna-dashboard.toml", "studies/quickstart.yaml", "docker/Dockerfile"):
        assert (ROOT / rel).is_file(), rel


def test_dockerfile_installs_what_the_readme_says():
    dockerfile = (ROOT / "docker" / "Dockerfile").read_text()
    readme = (ROOT / "docker" / "README.md").read_text()
    installs = re.findall(r"^RUN (pip install .+)$", dockerfile, flags=re.M)
    assert installs == ["pip install ."]
    assert installs[0] in readme
    # the PostgreSQL driver and the dashboard come with the package itself
    deps = " ".join(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"])
    assert "psycopg[binary]" in deps and "optuna-dashboard" in deps
    for src in re.findall(r"^COPY (\S+)", dockerfile, flags=re.M):
        assert (ROOT / src).exists(), src
    assert re.search(r"^ARG BASE=.*cuda", dockerfile, flags=re.M)


def test_dashboard_toml_is_local_only():
    cfg = tomllib.loads((ROOT / "dashboards" / "optuna-dashboard.toml").read_text())["optuna_dashboard"]
    assert cfg["host"] == "127.0.0.1"
    assert "storage" not in cfg   # a URL may hold a password
