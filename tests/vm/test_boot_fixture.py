"""The bootable fixture disks boot by themselves under SeaBIOS and OVMF (empty NVRAM).

This is the yardstick every restore/bootfix scenario is measured with, so it must itself be proven: the
guest's init reports which fixture it is and which firmware booted it (/sys/firmware/efi), so a disk that
booted the wrong way, or not at all, fails.
"""

from __future__ import annotations

import os
import re

import pytest

import bootdisk
import qemu

pytestmark = qemu.vm_marks("building fixtures needs root (loop devices, mount)", needs_ovmf=False)

MARKER_RE = re.compile(bootdisk.MARKER + r" name=(\S+) firmware=(\S+)\r?\n")


def boot_marker(image, interface: str, firmware: str, workdir, name: str, timeout: float = 180):
    """Boot `image` alone; return (fixture name, firmware seen by the guest, seconds to marker)."""
    with qemu.Machine([qemu.Drive(image, interface, serial="LB-FIXTURE", snapshot=True)],
                      firmware=firmware, workdir=workdir, name=name) as vm:
        vm.wait_for(MARKER_RE, timeout)
        seconds = vm.elapsed()
        m = MARKER_RE.search(vm.output)
        vm.wait_exit(60)
        return m.group(1), m.group(2), seconds


# Both layouts under both firmwares are booted again after a restore (test_boot_restore); here each
# fixture once, on the interfaces the restore tests do not use.
@pytest.mark.timeout(600)
@pytest.mark.parametrize("layout,interface,firmware", [("gpt", "sata", "uefi"), ("mbr", "usb", "bios")])
def test_fixture_boots(layout, interface, firmware, tmp_path):
    image = bootdisk.fixture_disk(layout)
    name, seen, seconds = boot_marker(image, interface, firmware, tmp_path, f"{layout}-{firmware}")
    print(f"fixture {layout} on {interface} under {firmware}: marker after {seconds:.1f}s")
    assert (name, seen) == (layout, firmware)


@pytest.mark.timeout(300)
def test_blank_disk_does_not_boot(tmp_path):
    """The harness can tell a disk that does not boot: the marker never appears."""
    blank = tmp_path / "blank.img"
    blank.write_bytes(b"")
    os.truncate(blank, 100 * 1024 * 1024)
    with qemu.Machine([qemu.Drive(blank, "virtio")], firmware="bios", workdir=tmp_path) as vm:
        with pytest.raises(qemu.BootTimeout):
            vm.wait_for(MARKER_RE, 20)
