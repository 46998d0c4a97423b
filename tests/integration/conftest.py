"""Integration fixtures: root, real loop devices, real tools, a running udevd."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

UDEVD_PATHS = ("/lib/systemd/systemd-udevd", "/usr/lib/systemd/systemd-udevd")


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "integration" not in item.keywords and "/integration/" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


def _udevd_running() -> bool:
    return subprocess.run(["udevadm", "control", "--ping"], capture_output=True).returncode == 0


@pytest.fixture(scope="session", autouse=True)
def udevd():
    """Real udev: start systemd-udevd when none runs (build hosts and CI have no init system)."""
    if os.geteuid() != 0:
        pytest.skip("integration tests need root (loop devices, mounts)")
    if not _udevd_running():
        daemon = next((p for p in UDEVD_PATHS if os.path.exists(p)), None)
        assert daemon, "systemd-udevd is not installed (Debian package udev)"
        subprocess.run([daemon, "--daemon"], check=True, capture_output=True)
        for _ in range(50):
            if _udevd_running():
                break
            time.sleep(0.1)
    assert _udevd_running(), "udevd did not start"
    subprocess.run(["udevadm", "trigger", "--subsystem-match=block", "--action=add"], capture_output=True)
    subprocess.run(["udevadm", "settle", "--timeout=20"], capture_output=True)
    yield


@pytest.fixture
def workdir(tmp_path_factory) -> Path:
    # Sparse disk images and repositories live on the real disk (/var/tmp), not in a tmpfs.
    base = Path("/var/tmp/lifeboat-tests")
    base.mkdir(parents=True, exist_ok=True)
    d = Path(tmp_path_factory.mktemp("w", numbered=True))
    real = base / f"{os.getpid()}-{d.name}"
    real.mkdir()
    yield real
    shutil.rmtree(real, ignore_errors=True)


@pytest.fixture
def lifeboat_env(monkeypatch, tmp_path):
    """Locks in a private directory so tests never collide with a real Lifeboat."""
    monkeypatch.setenv("LIFEBOAT_LOCK_DIR", str(tmp_path / "locks"))
    import lifeboat.locks as locks

    monkeypatch.setattr(locks, "LOCK_DIR", str(tmp_path / "locks"))
    yield
