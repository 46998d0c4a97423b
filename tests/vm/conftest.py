"""Fixtures and run plumbing of the `vm` layer.

Fixtures: one ISO build shared by the session (live-build/build-iso rebuilds only when live-build/, src/ or
pyproject.toml changed, and reuses an ISO built from the same inputs by another checkout, kept under
/var/cache/lifeboat/iso/); the USB image and the live kernel made from it.

The layer runs on two pytest-xdist workers (`make test-vm`: `-n 2 --dist load --maxschedchunk 1`), each
booting one QEMU at a time, so two guests run side by side on the two cores. Everything a test builds
once for the run is built under a file lock, so two workers never build the same thing twice:
  - the ISO: build-iso under $LIFEBOAT_CACHE/.build-iso.lock (build-iso checks its inputs before its own
    lock, so two workers starting at once could otherwise both build; `make test` holds the same lock
    while it builds in the background);
  - the live kernel and USB image: in the run's directory shared by the workers, under a lock;
  - fixture disks and the debootstrapped rootfs: bootdisk.py's own locks in the cache.
The longest tests are handed out first (durations of earlier runs, kept in the cache), and a failed vm
test carries the tail of every QEMU serial log in its tmp_path in its report, so it shows in the
controller's output whichever worker ran it.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
import tomllib
from contextlib import contextmanager
from pathlib import Path

import pytest

import bootdisk

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
BUILD_TIMEOUT = 40 * 60  # a cold build downloads every package; a cached one takes minutes
DURATIONS = bootdisk.CACHE / "vm-test-durations.json"
ISO_LOCK = bootdisk.CACHE / ".build-iso.lock"  # `make test` holds it while it builds the ISO
ISO_FIXTURES = ("live_iso", "live_kernel", "live_usb_image")
SERIAL_TAIL_LINES = 60


def _version() -> str:
    with open(ROOT / "pyproject.toml", "rb") as f:
        return tomllib.load(f)["project"]["version"]


def _need_root_and_tools() -> None:
    if os.geteuid() != 0:
        pytest.skip("building and booting the live ISO needs root")
    for tool in ("lb", "xorriso", "qemu-system-x86_64", "sfdisk", "mkfs.ext4"):
        if shutil.which(tool, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin") is None:
            pytest.fail(f"{tool} is missing: run scripts/ensure-deps")


@contextmanager
def _flock(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _run_dir(tmp_path_factory) -> Path:
    """A directory of this run that every xdist worker sees (the workers' base temps are its children)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


@pytest.fixture(scope="session")
def lifeboat_version() -> str:
    return _version()


@pytest.fixture(scope="session")
def live_iso() -> Path:
    """out/lifeboat-<version>-amd64.hybrid.iso, built (or found up to date) once per session.

    LIFEBOAT_ISO=path uses that ISO as it is (for working on the tests without rebuilding).
    `make test` builds the ISO in the background under the same lock and may start this layer before it
    is done; LIFEBOAT_ISO_STATUS names the JSON file where that build's exit status lands (its log
    beside it): a failed build fails these tests at once, naming the log, instead of building again.
    """
    _need_root_and_tools()
    if os.environ.get("LIFEBOAT_ISO"):
        return Path(os.environ["LIFEBOAT_ISO"]).resolve()
    iso = ROOT / "out" / f"lifeboat-{_version()}-amd64.hybrid.iso"
    with _flock(ISO_LOCK):
        _fail_if_the_runs_iso_build_failed()
        proc = subprocess.run(
            [str(ROOT / "live-build" / "build-iso")],
            cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, timeout=BUILD_TIMEOUT,
        )
    sys.stderr.write(proc.stdout[-4000:])
    assert proc.returncode == 0, f"live-build/build-iso failed:\n{proc.stdout[-4000:]}"
    assert iso.is_file(), f"build-iso succeeded but {iso} is missing"
    return iso


def _fail_if_the_runs_iso_build_failed() -> None:
    status = os.environ.get("LIFEBOAT_ISO_STATUS")
    if not status or not Path(status).is_file():
        return
    try:
        code = json.loads(Path(status).read_text())["exit"]
    except (OSError, ValueError, KeyError):
        return
    if code != 0:
        pytest.fail(f"this run's live ISO build failed (exit {code}): see {Path(status).with_suffix('.log')}")


@pytest.fixture(scope="session")
def live_usb_image(live_iso: Path, tmp_path_factory) -> Path:
    """The ISO plus a LIFEBOAT-DATA partition (live-build/build-usb-image), once per run."""
    img = _run_dir(tmp_path_factory) / "usb" / "lifeboat-usb.img"
    with _flock(img.parent / ".lock"):
        if img.exists():
            return img
        env = dict(os.environ, LIFEBOAT_DATA_SIZE="256M")
        part = img.with_name(img.name + ".part")
        proc = subprocess.run(
            [str(ROOT / "live-build" / "build-usb-image"), str(part)],
            cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, timeout=300, env=env,
        )
        assert proc.returncode == 0, f"live-build/build-usb-image failed:\n{proc.stdout[-3000:]}"
        os.replace(part, img)
    return img


@pytest.fixture(scope="session")
def live_kernel(live_iso: Path, tmp_path_factory) -> tuple[Path, Path]:
    """The live kernel and initrd, extracted from the ISO with xorriso (for direct kernel boots), once per
    run. Guests only read them."""
    where = _run_dir(tmp_path_factory) / "live-kernel"
    kernel, initrd = where / "vmlinuz", where / "initrd.img"
    with _flock(where.parent / ".live-kernel.lock"):
        if not where.is_dir():
            part = where.with_name("live-kernel.part")
            shutil.rmtree(part, ignore_errors=True)
            part.mkdir()
            subprocess.run(
                ["xorriso", "-osirrox", "on", "-indev", str(live_iso),
                 "-extract", "/live/vmlinuz", str(part / kernel.name),
                 "-extract", "/live/initrd.img", str(part / initrd.name)],
                check=True, stdin=subprocess.DEVNULL, capture_output=True, timeout=120,
            )
            os.replace(part, where)
    return kernel, initrd


# ---- scheduling: longest first -----------------------------------------------------------------------
def _is_vm(nodeid: str) -> bool:
    return nodeid.startswith("tests/vm/")


def _known_durations() -> dict[str, float]:
    try:
        data = json.loads(DURATIONS.read_text())
    except (OSError, ValueError):
        return {}
    return {k: float(v) for k, v in data.items() if isinstance(v, (int, float))}


# Seconds per test on a loaded 2-core machine (the baseline `make test` of 2026-11-27, serial, caches warm),
# for a machine that has no durations of its own yet. Only the order they give matters.
FIRST_GUESS = {
    "test_boot_live.py::test_live_restore_with_bootloader_step_then_bootfix_boots_debian": 620,
    "test_tui_serial.py::test_restore_through_the_tui_on_the_serial_console_then_boots": 640,
    "test_unattended_restore.py::test_unattended_restore_of_a_broken_image_boots_under_both_firmwares": 400,
    "test_iso.py::test_unattended_capture_then_host_verifies": 330,
    "test_iso_network.py::test_smb_and_nfs_round_trips_and_an_unattended_ssh_capture_in_the_live_system": 260,
    "test_iso.py::test_usb_stick_boots_and_uses_its_data_partition": 320,
    "test_iso.py::test_bios_cd_lists_attached_disks_but_not_the_boot_medium": 300,
    "test_iso.py::test_uefi_cd_boots_to_lifeboat": 280,
    "test_boot_repair.py::test_bootfix_repairs_fixture_with_live_grub": 150,
    "test_boot_restore.py::test_debian_restored_onto_a_smaller_disk_boots_to_login": 90,
    "test_boot_restore.py::test_restored_debian_boots_to_login": 50,
    "test_boot_restore.py::test_restored_fixture_boots[mbr-2-nvme]": 45,
    "test_boot_restore.py::test_restored_fixture_boots[gpt-2-virtio]": 37,
    "test_boot_restore.py::test_restored_fixture_boots[gpt-1-nvme]": 31,
    "test_boot_fixture.py::test_fixture_boots[gpt-sata-uefi]": 30,
    "test_boot_fixture.py::test_fixture_boots[mbr-usb-bios]": 25,
    "test_boot_windows.py::test_bootfix_recreates_windows_boot_manager_entry": 25,
    "test_boot_fixture.py::test_blank_disk_does_not_boot": 20,
    "test_boot_secure.py::test_secure_boot_debian_restored_and_bootfixed_boots_with_secure_boot": 760,
    "test_boot_lvm_root.py::test_lvm_root_without_boot_is_found_repaired_and_boots": 390,
    "test_boot_luks_lvm.py::test_luks_lvm_root_captured_restored_larger_needs_its_passphrase_is_repaired_and_boots": 560,
    "test_lvm.py::test_lvm_capture_then_restore_onto_a_larger_and_a_smaller_disk": 500,
    "test_luks.py::test_luks_capture_with_passphrase_then_restore_onto_a_larger_disk": 420,
    "test_failing_disks.py::test_failing_source_pulled_stick_and_power_cut_in_the_live_iso": 280,
    "test_boot_btrfs.py::test_btrfs_subvolume_root_restored_broken_and_repaired_boots": 300,
}


def _estimate(item, known: dict[str, float]) -> float:
    """Seconds this test took last time here; else the first guess above; else (a new test) 300 s if it
    boots the live ISO, 120 s if not."""
    if item.nodeid in known:
        return known[item.nodeid]
    guess = FIRST_GUESS.get(item.nodeid.removeprefix("tests/vm/"))
    if guess is not None:
        return float(guess)
    return 300.0 if _needs_iso(item) else 120.0


def _interleave(ordered: list, workers: int) -> list:
    """xdist's load scheduler (with --maxschedchunk 1) hands each of W workers two tests at the start:
    worker k gets positions 2k and 2k+1. Pair the longest with the shortest of the first 2W so the
    first hand-outs are even; the rest go out in order to whichever worker frees up."""
    head, rest = ordered[: 2 * workers], ordered[2 * workers:]
    if len(head) < 2 * workers:
        return ordered
    paired = []
    for k in range(workers):
        paired += [head[k], head[2 * workers - 1 - k]]
    return paired + rest


def _needs_iso(item) -> bool:
    return any(f in item.fixturenames for f in ISO_FIXTURES)


def pytest_collection_modifyitems(config, items):
    """Longest first. While `make test`'s ISO build still runs (LIFEBOAT_ISO_PENDING=1, the same for every
    worker, so their collections match), the tests that need no ISO go first."""
    workers = int(getattr(config, "workerinput", {}).get("workercount", 1))
    if workers < 2:
        return  # one process: keep pytest's order (module fixtures set up once)
    known = _known_durations()
    iso_last = os.environ.get("LIFEBOAT_ISO_PENDING") == "1"
    vm = [i for i in items if _is_vm(i.nodeid)]
    others = [i for i in items if not _is_vm(i.nodeid)]
    vm.sort(key=lambda i: (iso_last and _needs_iso(i), -_estimate(i, known), i.nodeid))
    items[:] = others + _interleave(vm, workers)


# ---- durations of this run, kept for the next one's order (the controller or the only process) ----------
_seen: dict[str, float] = {}


def pytest_runtest_logreport(report):
    if _is_vm(report.nodeid):
        _seen[report.nodeid] = _seen.get(report.nodeid, 0.0) + report.duration


def pytest_sessionfinish(session, exitstatus):
    if hasattr(session.config, "workerinput") or not _seen:
        return
    known = _known_durations()
    known.update({k: round(v, 1) for k, v in _seen.items()})
    try:
        tmp = DURATIONS.with_suffix(".tmp")
        tmp.write_text(json.dumps(known, indent=1, sort_keys=True) + "\n")
        os.replace(tmp, DURATIONS)
    except OSError:
        pass  # the order is only an optimisation


# ---- a failed test shows its guests' serial consoles, whichever worker ran it ----------------------------
@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    tmp_path = getattr(item, "funcargs", {}).get("tmp_path")
    if report.failed and tmp_path is not None:
        for log in sorted(Path(tmp_path).glob("*serial.log")):
            lines = log.read_bytes().decode(errors="replace").splitlines()
            tail = "\n".join(lines[-SERIAL_TAIL_LINES:])
            report.sections.append((f"serial tail: {log} (last {SERIAL_TAIL_LINES} lines)", tail))
    return report
