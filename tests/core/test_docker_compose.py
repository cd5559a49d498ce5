"""docker-compose.yml is valid Compose and holds the cluster the README describes.

No Docker engine runs on CI machines, so the file is checked with Debian's `docker-compose config -q`, which
parses, interpolates and validates it without a daemon. The test installs the package when it is missing and
skips, saying why, only where apt cannot install it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
EXPECTED_SERVICES = {
    "postgres",
    "redis",
    "minio",
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-triggerer",
    "airflow-worker-1",
    "airflow-worker-2",
    "prefect-server",
    "prefect-worker",
}


def docker_compose() -> str:
    """The docker-compose executable, installed with apt when missing (CI runs as root)."""
    found = shutil.which("docker-compose")
    if found:
        return found
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        pytest.skip("docker-compose is not installed and apt-get (as root) is unavailable to install it")
    install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", "docker-compose"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    if subprocess.run(install, env=env, capture_output=True, timeout=600).returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True, timeout=600, check=True)
        subprocess.run(install, env=env, capture_output=True, timeout=600, check=True)
    found = shutil.which("docker-compose")
    assert found, "apt-get installed docker-compose but it is not on PATH"
    return found


def compose(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [docker_compose(), "-f", str(REPO / "docker-compose.yml"), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_docker_compose_config_is_valid() -> None:
    checked = compose("config", "-q")
    assert checked.returncode == 0, checked.stderr


def test_docker_compose_has_the_cluster_services() -> None:
    listed = compose("config", "--services")
    assert listed.returncode == 0, listed.stderr
    missing = EXPECTED_SERVICES - set(listed.stdout.split())
    assert not missing, f"docker-compose.yml lacks {sorted(missing)}"
