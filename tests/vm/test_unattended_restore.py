"""Unattended restore in the live ISO brings a disk back that boots, from an image of a disk that did not.

The MBR fixture disk is broken on the host first (MBR boot code zeroed, GRUB's loaders deleted from the
ESP) and captured in that state, so the image alone cannot boot anything: only the restore's bootloader
step can make the restored disk boot. The live kernel then runs the job from kernel parameters alone —

    lifeboat.job=restore lifeboat.image=… lifeboat.repo=LABEL=… lifeboat.target=SERIAL=… lifeboat.after=poweroff

— onto a blank SATA disk twice the fixture's size, and powers off. The restored disk must then boot alone
under SeaBIOS and under OVMF with empty NVRAM, print the fixture's marker, and have its root partition
grown. TCG only; every QEMU bounded by timeouts and killed by PID.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import pytest

import bootdisk
import bootvm
import qemu
from iso_helpers import BOOT_TIMEOUT, LIVE_APPEND, blank_disk, ext4_whole_disk, ready_pattern

pytestmark = qemu.vm_marks("needs root (loop devices to capture, loop mount for the repo)")

IMAGE = "broken-mbr"
REPO_LABEL = "LBUNATTREPO"
TARGET_SERIAL = "LBUNATTTARGET"
ESP, ROOT = 1, 2  # the MBR fixture: p1 ESP, p2 ext4 root
LOADERS = ["::/EFI/BOOT/BOOTX64.EFI", "::/EFI/debian/grubx64.efi"]
RESULT_RE = re.compile(r"LIFEBOAT-RESULT: \S+ [^\r\n]*\r?\n")  # the whole line: serial output comes in pieces


@pytest.mark.timeout(1800)  # a cold ISO build comes first; the test itself takes about 4 minutes
def test_unattended_restore_of_a_broken_image_boots_under_both_firmwares(live_iso, live_kernel,
                                                                         lifeboat_version, tmp_path):
    broken = bootdisk.copy_image(bootdisk.fixture_disk("mbr"), tmp_path / "broken.img")
    bootvm.break_bootloader(broken, esp_number=ESP, efi_files=LOADERS)
    bootvm.does_not_boot(broken, "sata", "bios", tmp_path, "broken-bios", window=40)

    repo = ext4_whole_disk(tmp_path / "repo.img", 192, label=REPO_LABEL)
    with tempfile.TemporaryDirectory() as mnt:
        bootdisk.sh("mount", "-o", "loop", repo, mnt)
        try:
            bootvm.capture(broken, IMAGE, Path(mnt))
        finally:
            bootdisk.sh("umount", mnt)
    fixture_bytes = broken.stat().st_size
    target = blank_disk(tmp_path / "target.img", 2 * fixture_bytes >> 20)

    kernel, initrd = live_kernel
    append = (
        f"{LIVE_APPEND} console=ttyS0,115200 "
        f"lifeboat.job=restore lifeboat.image={IMAGE} lifeboat.repo=LABEL={REPO_LABEL} "
        f"lifeboat.target=SERIAL={TARGET_SERIAL} lifeboat.after=poweroff lifeboat.onfail=poweroff"
    )
    drives = [
        qemu.Drive(live_iso, "sata", media="cdrom"),
        qemu.Drive(repo, "virtio", serial="LBUNATTREPO"),
        qemu.Drive(target, "sata", serial=TARGET_SERIAL),
    ]
    with qemu.Machine(drives, firmware="bios", workdir=tmp_path, memory=1536, kernel=kernel, initrd=initrd,
                      append=append, name="unattended-restore") as vm:
        vm.wait_for(ready_pattern(lifeboat_version, "ttyS0", "unattended"), BOOT_TIMEOUT)
        result = vm.wait_for(RESULT_RE, 900)
        print(f"\nunattended restore: {result.strip()} after {vm.elapsed():.0f}s")
        assert result.startswith(f"LIFEBOAT-RESULT: OK job=restore image={IMAGE} "), vm.tail(80)
        assert vm.wait_exit(180) == 0  # lifeboat.after=poweroff
        log = vm.output
    # the bootloader step said what it did (the fixture has no grub-install: the live system's GRUB)
    for step in ("GRUB for BIOS (i386-pc)", "GRUB for UEFI (x86_64-efi)"):
        assert re.search(re.escape(step) + r"[^\r\n]*done", log), f"no '{step}: done' in the job's log"

    parts = bootvm.partitions(target)
    assert parts[ROOT][1] > 1.5 * bootvm.partitions(broken)[ROOT][1], f"the root did not grow: {parts}"
    for firmware in ("bios", "uefi"):
        booted = bootvm.boot(target, "sata", firmware, bootvm.FIXTURE_RE, tmp_path, f"restored-{firmware}")
        m = bootvm.FIXTURE_RE.search(booted.output)
        print(f"restored by the unattended job, {firmware}: marker after {booted.seconds:.1f}s")
        assert (m.group(1), m.group(2)) == ("mbr", firmware)
