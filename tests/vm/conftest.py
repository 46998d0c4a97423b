"""Fixtures of the live-ISO boot tests (tests/vm/test_iso*.py): one ISO build shared by the session.

The ISO comes from live-build/build-iso, which rebuilds only when live-build/, src/ or pyproject.toml
changed (and reuses an ISO built from the same inputs by another checkout, kept under
/var/cache/lifeboat/iso/).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BUILD_TIMEOUT = 40 * 60  # a cold build downloads every package; a cached one takes minutes


def _version() -> str:
    with open(ROOT / "pyproject.toml", "rb") as f:
        return tomllib.load(f)["project"]["version"]


def _need_root_and_tools() -> None:
    if os.geteuid() != 0:
        pytest.skip("building and booting the live ISO needs root")
    for tool in ("lb", "xorriso", "qemu-system-x86_64", "sfdisk", "mkfs.ext4"):
        if shutil.which(tool, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin") is None:
            pytest.fail(f"{tool} is missing: run scripts/ensure-deps")


@pytest.fixture(scope="session")
def lifeboat_version() -> str:
    return _version()


@pytest.fixture(scope="session")
def live_iso() -> Path:
    """out/lifeboat-<version>-amd64.hybrid.iso, built (or found up to date) once per session.

    LIFEBOAT_ISO=path uses that ISO as it is (for working on the tests without rebuilding).
    """
    _need_root_and_tools()
    if os.environ.get("LIFEBOAT_ISO"):
        return Path(os.environ["LIFEBOAT_ISO"]).resolve()
    iso = ROOT / "out" / f"lifeboat-{_version()}-amd64.hybrid.iso"
    proc = subprocess.run(
        [str(ROOT / "live-build" / "build-iso")],
        cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, timeout=BUILD_TIMEOUT,
    )
    sys.stderr.write(proc.stdout[-4000:])
    assert proc.returncode == 0, f"live-build/build-iso failed:\n{proc.stdout[-4000:]}"
    assert iso.is_file(), f"build-iso succeeded but {iso} is missing"
    return iso


@pytest.fixture(scope="session")
def live_usb_image(live_iso: Path, tmp_path_factory) -> Path:
    """The ISO plus a LIFEBOAT-DATA partition (live-build/build-usb-image), in a temporary directory."""
    img = tmp_path_factory.mktemp("usb") / "lifeboat-usb.img"
    env = dict(os.environ, LIFEBOAT_DATA_SIZE="256M")
    proc = subprocess.run(
        [str(ROOT / "live-build" / "build-usb-image"), str(img)],
        cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, timeout=300, env=env,
    )
    assert proc.returncode == 0, f"live-build/build-usb-image failed:\n{proc.stdout[-3000:]}"
    return img


@pytest.fixture(scope="session")
def live_kernel(live_iso: Path, tmp_path_factory) -> tuple[Path, Path]:
    """The live kernel and initrd, extracted from the ISO with xorriso (for direct kernel boots)."""
    where = tmp_path_factory.mktemp("kernel")
    kernel, initrd = where / "vmlinuz", where / "initrd.img"
    subprocess.run(
        ["xorriso", "-osirrox", "on", "-indev", str(live_iso),
         "-extract", "/live/vmlinuz", str(kernel), "-extract", "/live/initrd.img", str(initrd)],
        check=True, stdin=subprocess.DEVNULL, capture_output=True, timeout=120,
    )
    return kernel, initrd
