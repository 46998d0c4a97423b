"""Restore → boot: fixture disks captured with `lifeboat capture`, restored with `lifeboat restore
--no-bootloader` onto a blank disk of the same size and of twice the size (on the host, on loop devices),
then booted alone under SeaBIOS and under OVMF with empty NVRAM; the marker or login prompt must appear.

The restore's own bootloader step needs a FAT mount and so a guest; here the boot regions and ESP come
back exactly as captured, which is what must make the disk boot (test_boot_repair covers bootfix, and the
debootstrapped Debian's restore → login prompt → break → bootfix → login prompt).
"""

from __future__ import annotations

from pathlib import Path

import pytest

import bootdisk
import bootvm
import qemu

pytestmark = qemu.vm_marks("capture/restore on loop devices needs root")


class Captures:
    """One repository per module; each source disk captured once (from the cached image, read-only)."""

    def __init__(self, repo: Path):
        self.repo = repo
        self.done: set[str] = set()

    def image(self, name: str, source: Path) -> str:
        if name not in self.done:
            bootvm.capture(source, name, self.repo)
            self.done.add(name)
        return name


@pytest.fixture(scope="module")
def captures(tmp_path_factory) -> Captures:
    return Captures(tmp_path_factory.mktemp("repo") / "images")


def _boot_all(target: Path, interface: str, expect, firmwares, workdir: Path, label: str, timeout: float):
    for firmware in firmwares:
        result = bootvm.boot(target, interface, firmware, expect, workdir, f"{label}-{firmware}", timeout=timeout)
        print(f"{label} on {interface} under {firmware}: {result.seconds:.1f}s to {expect.pattern[:30]!r}")
        if expect is bootvm.FIXTURE_RE:
            m = expect.search(result.output)
            assert m.group(2) == firmware


@pytest.mark.timeout(900)
@pytest.mark.parametrize("layout,scale,interface", [
    ("gpt", 1, "nvme"), ("gpt", 2, "virtio"), ("mbr", 2, "nvme"),
])
def test_restored_fixture_boots(layout, scale, interface, captures, tmp_path):
    source = bootdisk.fixture_disk(layout)
    name = captures.image(f"fixture-{layout}", source)
    target = bootvm.restore(name, captures.repo, tmp_path / f"target-x{scale}.img", source.stat().st_size * scale)
    _boot_all(target, interface, bootvm.FIXTURE_RE, ("bios", "uefi"), tmp_path, f"{layout}-x{scale}", 300)


@pytest.mark.timeout(2400)  # a cold cache runs debootstrap first
def test_restored_debian_boots_to_login(captures, tmp_path):
    """The real system, restored with --no-bootloader onto a disk twice its size, boots to its login prompt
    (OVMF, empty NVRAM, NVMe). Restore inside the live ISO with the bootloader step: test_boot_live.py."""
    source = bootdisk.debian_disk()
    name = captures.image("debian", source)
    target = bootvm.restore(name, captures.repo, tmp_path / "target-x2.img", source.stat().st_size * 2)
    _boot_all(target, "nvme", bootvm.LOGIN_RE, ("uefi",), tmp_path, "debian-x2", 600)
