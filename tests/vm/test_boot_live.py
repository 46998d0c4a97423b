"""In the live ISO, the way a technician works: the debootstrapped Debian is restored with the bootloader step
on (lifeboat.boot.after_restore: the restored system's own grub-install for BIOS and UEFI and update-grub
in a chroot, the fallback loader, the NVRAM entry), then its bootloader is broken in the guest (MBR boot
code zeroed, ESP loader files deleted, NVRAM entry removed) and `lifeboat bootfix` repairs it. After power
off the disk boots alone to its login prompt under SeaBIOS and under OVMF with empty NVRAM.

The image is captured on the host (`lifeboat capture` on a loop device) into an ext4 repository disk.

The same live boot also restores a Clonezilla image of the GPT fixture with the bootloader step, and that
disk then boots alone too (issue #12; clonezilla_live.py says what it proves).
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import time
from pathlib import Path

import pytest

import bootdisk
import bootvm
import clonezilla_live
import qemu
from iso_helpers import BOOT_TIMEOUT, ready_pattern, shell, wait_for_all

pytestmark = qemu.vm_marks("needs root")

GRUB_STEPS = ("GRUB for BIOS (i386-pc)", "GRUB for UEFI (x86_64-efi)", "update-grub",
              "removable fallback \\EFI\\BOOT\\BOOTX64.EFI", "NVRAM entry")

BREAK = (
    "dd if=/dev/zero of=/dev/nvme0n1 bs=440 count=1 conv=notrunc,fsync status=none"
    " && mkdir -p /mnt/esp && mount -t vfat /dev/nvme0n1p2 /mnt/esp"
    " && rm /mnt/esp/EFI/BOOT/BOOTX64.EFI /mnt/esp/EFI/debian/grubx64.efi && umount /mnt/esp"
    " && for n in $(efibootmgr | sed -n 's/^Boot\\([0-9A-F]\\{4\\}\\).*debian.*/\\1/p'); do efibootmgr -q -b $n -B; done"
    " && ! efibootmgr | grep -q debian"
)


def repo_disk_with(image_name: str, source, path, extra=None) -> None:
    """An ext4 disk labelled LBREPO holding a repository (images/) with `source` captured as `image_name`;
    `extra(mountpoint)` may put more on it."""
    path.write_bytes(b"")
    os.truncate(path, 1 << 30)
    bootdisk.sh("mkfs.ext4", "-q", "-F", "-L", "LBREPO", path)
    with tempfile.TemporaryDirectory() as mnt:
        bootdisk.sh("mount", "-o", "loop", path, mnt)
        try:
            bootvm.capture(source, image_name, os.path.join(mnt, "images"))
            if extra is not None:
                extra(Path(mnt))
        finally:
            bootdisk.sh("umount", mnt)


@pytest.mark.timeout(3000)  # a cold cache runs debootstrap first
def test_live_restore_with_bootloader_step_then_bootfix_boots_debian(live_iso, lifeboat_version, tmp_path):
    source = bootdisk.debian_disk()
    repo = tmp_path / "repo.img"
    repo_disk_with("debian", source, repo, extra=clonezilla_live.put_image)
    target = tmp_path / "target.img"
    target.write_bytes(b"")
    os.truncate(target, source.stat().st_size * 2)
    disks = [
        qemu.Drive(live_iso, "sata", media="cdrom", bootindex=0),
        qemu.Drive(repo, "virtio", serial="LBREPO"),
        qemu.Drive(target, "nvme", serial="LBTARGET"),
        cz_target := clonezilla_live.target_drive(tmp_path),
    ]
    with qemu.Machine(disks, firmware="uefi", workdir=tmp_path, memory=1536, name="live") as vm:
        wait_for_all(vm, [ready_pattern(lifeboat_version, "ttyS0", "shell")], BOOT_TIMEOUT)
        print(f"live ISO (OVMF, CD): root shell after {vm.elapsed():.0f}s")
        time.sleep(2)
        rc, out = shell(vm, "mkdir -p /mnt/repo && mount LABEL=LBREPO /mnt/repo")
        assert rc == 0, out
        started = time.monotonic()
        rc, out = shell(vm, "lifeboat restore debian /dev/nvme0n1 --repo /mnt/repo/images --yes "
                            ">/tmp/restore.log 2>&1; rc=$?; grep -v '%' /tmp/restore.log | tail -40; (exit $rc)",
                        timeout=1200)
        print(f"restore with the bootloader step: {time.monotonic() - started:.0f}s\n{out}")
        assert rc == 0, out
        for step in GRUB_STEPS:
            assert re.search(re.escape(step) + r": done", out), f"restore: {step} not done:\n{out}"
        assert "installed system's grub-install (chroot)" in out, out

        rc, out = shell(vm, BREAK, timeout=120)
        assert rc == 0, f"breaking the bootloader failed:\n{out}"
        started = time.monotonic()
        rc, out = shell(vm, "lifeboat bootfix /dev/nvme0n1 --yes --json 2>/tmp/bootfix.err", timeout=900)
        print(f"lifeboat bootfix: {time.monotonic() - started:.0f}s\n{out}")
        assert rc == 0, out + shell(vm, "cat /tmp/bootfix.err")[1]
        steps = {s["step"]: s["outcome"] for s in json.loads(out[out.index("{"):])["steps"]}
        assert all(steps[s] == "done" for s in GRUB_STEPS), steps
        rc, entries = shell(vm, "efibootmgr -v")
        assert "\\EFI\\debian\\grubx64.efi" in entries, entries
        clonezilla_live.restore_in_live(vm, shell, "/mnt/repo")
        shell(vm, "umount /mnt/repo; sync")
    for firmware, interface in (("bios", "virtio"), ("uefi", "nvme")):
        result = bootvm.boot(target, interface, firmware, bootvm.LOGIN_RE, tmp_path, f"live-repaired-{firmware}",
                             timeout=600)
        print(f"restored+repaired in the live ISO, {interface} under {firmware}: login after {result.seconds:.0f}s")
    clonezilla_live.boots_alone(cz_target, tmp_path)
