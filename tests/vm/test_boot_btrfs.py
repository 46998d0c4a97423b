"""A Debian whose root is the btrfs subvolume `@` (beside `@home`), UEFI (issue 9): restored in the live ISO
with the bootloader step onto a larger NVMe disk, its bootloader broken (ESP loaders deleted, NVRAM entries
removed, boot code zeroed), `lifeboat bootfix` finds the root in its subvolume and repairs it, and the disk
boots alone to its login prompt under OVMF with empty NVRAM. The image is captured on the host (btrfs by
its used blocks) into an ext4 repository disk. TCG only; QEMU killed by PID."""

from __future__ import annotations

import json
import os
import re
import time

import pytest

import bootvm
import btrfsdisk
import qemu
from iso_helpers import BOOT_TIMEOUT, LIVE_APPEND, ready_pattern, shell, wait_for_all
from test_boot_live import BREAK, GRUB_STEPS, repo_disk_with

pytestmark = [*qemu.vm_marks("needs root (loop devices, loop mounts)"), pytest.mark.timeout(2400)]

APPEND = f"{LIVE_APPEND} console=ttyS0,115200 console=tty0"


def test_btrfs_subvolume_root_restored_broken_and_repaired_boots(live_iso, live_kernel, lifeboat_version, tmp_path):
    source = btrfsdisk.debian_btrfs_disk()
    repo = tmp_path / "repo.img"
    repo_disk_with("debian-btrfs", source, repo)
    target = tmp_path / "target.img"
    target.write_bytes(b"")
    os.truncate(target, source.stat().st_size * 3 // 2)
    kernel, initrd = live_kernel
    disks = [
        qemu.Drive(live_iso, "sata", media="cdrom"),
        qemu.Drive(repo, "virtio", serial="LBREPO"),
        qemu.Drive(target, "nvme", serial="LBTARGET"),
    ]
    with qemu.Machine(disks, firmware="uefi", workdir=tmp_path, memory=1536, kernel=kernel, initrd=initrd,
                      append=APPEND, name="live-btrfs") as vm:
        wait_for_all(vm, [ready_pattern(lifeboat_version, "ttyS0", "shell")], BOOT_TIMEOUT)
        time.sleep(2)
        rc, out = shell(vm, "mkdir -p /mnt/repo && mount LABEL=LBREPO /mnt/repo")
        assert rc == 0, out
        rc, out = shell(vm, "lifeboat restore debian-btrfs /dev/nvme0n1 --repo /mnt/repo/images --yes "
                            ">/tmp/restore.log 2>&1; rc=$?; grep -v '%' /tmp/restore.log | tail -40; (exit $rc)",
                        timeout=1200)
        print(f"restore with the bootloader step:\n{out}")
        assert rc == 0, out
        assert "/dev/nvme0n1p3 (btrfs subvolume @)" in out, out  # found in its subvolume, said so
        for step in GRUB_STEPS:
            assert re.search(re.escape(step) + r": done", out), f"restore: {step} not done:\n{out}"

        rc, out = shell(vm, BREAK, timeout=120)
        assert rc == 0, f"breaking the bootloader failed:\n{out}"
        rc, out = shell(vm, "lifeboat bootfix /dev/nvme0n1 --yes --json 2>/tmp/bootfix.err", timeout=900)
        print(f"lifeboat bootfix:\n{out}")
        assert rc == 0, out + shell(vm, "cat /tmp/bootfix.err")[1]
        report = json.loads(out[out.index("{"):])
        steps = {s["step"]: s["outcome"] for s in report["steps"]}
        assert all(steps[s] == "done" for s in GRUB_STEPS), steps
        rc, cfg = shell(vm, "mount -o ro,subvol=@ /dev/nvme0n1p3 /mnt && grep -c 'rootflags=subvol=@' "
                            "/mnt/boot/grub/grub.cfg; umount /mnt")
        assert rc == 0 and int(cfg.split()[0]) > 0, cfg  # update-grub ran in the subvolume's chroot
        shell(vm, "umount /mnt/repo; sync")
    result = bootvm.boot(target, "nvme", "uefi", bootvm.LOGIN_RE, tmp_path, "btrfs-repaired", timeout=600)
    print(f"btrfs subvolume root restored+repaired, OVMF with empty NVRAM: login after {result.seconds:.0f}s")
