"""Repair: a disk whose MBR boot code is zeroed and whose ESP loader files are deleted does not boot; after
`bootfix` (run in the rescue guest, since only a guest can mount FAT here) it boots under SeaBIOS and under
OVMF with empty NVRAM, and OVMF with the NVRAM bootfix wrote boots it through the new entry.

The GPT fixture (busybox init, no GRUB of its own): bootfix must fall back to the rescue system's GRUB.
The rescue guest is the debootstrapped Debian booted from its own kernel with this checkout's code on a
job disk. (The chroot path — a restored Debian's own grub-install/update-grub — runs in the live ISO:
test_boot_live.py.)
"""

from __future__ import annotations

import re

import pytest

import bootdisk
import bootvm
import qemu

pytestmark = qemu.vm_marks("building fixtures needs root (loop devices, mount)")

NVRAM_BOOT_RE = re.compile(r'BdsDxe: loading Boot[0-9A-F]{4} "debian"')
LOADERS = ["::/EFI/BOOT/BOOTX64.EFI", "::/EFI/debian/grubx64.efi"]


def outcomes(job: bootvm.JobResult) -> dict[str, str]:
    return {s["step"]: s["outcome"] for s in job.result.get("steps", [])}


def detail(job: bootvm.JobResult, step: str) -> str:
    return next(s["detail"] for s in job.result["steps"] if s["step"] == step)


@pytest.mark.timeout(2400)  # a cold cache builds the rescue guest (debootstrap) first
def test_bootfix_repairs_fixture_with_live_grub(tmp_path):
    target = bootdisk.copy_image(bootdisk.fixture_disk("gpt"), tmp_path / "target.img")
    bootvm.break_bootloader(target, esp_number=2, efi_files=LOADERS)
    assert "BOOTX64.EFI" not in bootvm.esp_listing(target, 2)
    bootvm.does_not_boot(target, "nvme", "bios", tmp_path, "broken-bios", window=40)
    bootvm.does_not_boot(target, "nvme", "uefi", tmp_path, "broken-uefi")

    nvram = tmp_path / "nvram.fd"
    job = bootvm.run_bootfix_in_guest(target, "nvme", "uefi", tmp_path, vars_file=nvram)
    print(f"bootfix in the rescue guest (UEFI): {job.seconds:.0f}s")
    assert job.exit == 0, job.output[-4000:]
    steps = outcomes(job)
    assert steps == {
        "detect": "done", "mount /dev/nvme0n1p3": "done", "GRUB for BIOS (i386-pc)": "done",
        "GRUB for UEFI (x86_64-efi)": "done", "update-grub": "not-needed",
        "removable fallback \\EFI\\BOOT\\BOOTX64.EFI": "done", "NVRAM entry": "done",
    }, job.result
    assert "live system's grub-install" in detail(job, "GRUB for BIOS (i386-pc)")
    assert "\\EFI\\debian\\grubx64.efi" in job.efibootmgr

    for firmware, vars_file in (("bios", None), ("uefi", None), ("uefi", nvram)):
        name = f"repaired-{firmware}{'-nvram' if vars_file else ''}"
        result = bootvm.boot(target, "nvme", firmware, bootvm.FIXTURE_RE, tmp_path, name, vars_file=vars_file)
        m = bootvm.FIXTURE_RE.search(result.output)
        print(f"repaired fixture, {name}: marker after {result.seconds:.1f}s")
        assert (m.group(1), m.group(2)) == ("gpt", firmware)
        if vars_file:
            assert NVRAM_BOOT_RE.search(result.output), "OVMF did not boot through bootfix's NVRAM entry"
