"""A Debian whose root is on LVM without a separate /boot (issue 9), repaired by `lifeboat bootfix` in the live
ISO and booted alone. This host has no device-mapper, so the volume group is made inside the live ISO (which
carries lvm2): the guest partitions a blank NVMe disk as the Debian installer's guided LVM does (BIOS boot,
ESP, one PV), creates `debian-vg` (a dash in its name: /dev/mapper/debian--vg-root) with `root` and `swap_1`,
writes the prepared root filesystem (lvmdisk.py: lvm2 in its initramfs, fstab naming /dev/mapper/debian--vg-root)
into `root` and deactivates the group. The disk then has no bootloader at all. bootfix must find the root in
the volume group it activates itself, run the installed system's grub-install (whose core image needs GRUB's
lvm module) and update-grub in the chroot, write the fallback loader and the NVRAM entry, and deactivate the
group afterwards. After power off the disk boots alone under OVMF with empty NVRAM to its login prompt.
TCG only; QEMU killed by PID."""

from __future__ import annotations

import json
import os
import re
import time

import pytest

import bootvm
import lvmdisk
import qemu
from iso_helpers import BOOT_TIMEOUT, LIVE_APPEND, ready_pattern, shell, wait_for_all
from test_boot_live import GRUB_STEPS

pytestmark = [*qemu.vm_marks("needs root (the fixture's chroot)"), pytest.mark.timeout(2400)]

APPEND = f"{LIVE_APPEND} console=ttyS0,115200 console=tty0"
T = "/dev/nvme0n1"
BUILD = (
    f"sgdisk -n 1:2048:+1M -t 1:EF02 -n 2:0:+64M -t 2:EF00 -n 3:0:0 -t 3:8E00 {T} >/dev/null"
    f" && partx -u {T}; udevadm settle"
    f" && mkfs.vfat -F 16 -i {lvmdisk.ESP_SERIAL} -n ESP {T}p2 >/dev/null"
    f" && pvcreate -q {T}p3 && vgcreate -q {lvmdisk.VG} {T}p3"
    f" && lvcreate -q -y -n {lvmdisk.LV} -L {lvmdisk.SIZE_MIB + 16}M {lvmdisk.VG}"
    f" && lvcreate -q -y -n swap_1 -L 32M {lvmdisk.VG} && mkswap /dev/{lvmdisk.VG}/swap_1 >/dev/null"
    f" && dd if=/dev/disk/by-id/virtio-LBROOTFS of=/dev/{lvmdisk.VG}/{lvmdisk.LV} bs=4M conv=fsync status=none"
    f" && vgchange -q -an {lvmdisk.VG} && dmsetup ls"
)


def test_lvm_root_without_boot_is_found_repaired_and_boots(live_iso, live_kernel, lifeboat_version, tmp_path):
    rootfs = lvmdisk.lvm_root_fs()
    target = tmp_path / "target.img"
    target.write_bytes(b"")
    os.truncate(target, (lvmdisk.SIZE_MIB + 200) << 20)
    kernel, initrd = live_kernel
    disks = [
        qemu.Drive(live_iso, "sata", media="cdrom"),
        qemu.Drive(rootfs, "virtio", serial="LBROOTFS", snapshot=True),
        qemu.Drive(target, "nvme", serial="LBTARGET"),
    ]
    with qemu.Machine(disks, firmware="uefi", workdir=tmp_path, memory=1536, kernel=kernel, initrd=initrd,
                      append=APPEND, name="live-lvm") as vm:
        wait_for_all(vm, [ready_pattern(lifeboat_version, "ttyS0", "shell")], BOOT_TIMEOUT)
        time.sleep(2)
        rc, out = shell(vm, BUILD, timeout=900)
        assert rc == 0 and "No devices found" in out, f"building the LVM disk failed:\n{out}"
        started = time.monotonic()
        rc, out = shell(vm, "lifeboat bootfix /dev/nvme0n1 --yes --json 2>/tmp/bootfix.err", timeout=900)
        print(f"lifeboat bootfix: {time.monotonic() - started:.0f}s\n{out}")
        assert rc == 0, out + shell(vm, "tail -40 /tmp/bootfix.err")[1]
        steps = {s["step"]: s for s in json.loads(out[out.index("{"):])["steps"]}
        assert re.search(r"Debian GNU/Linux 12 \(bookworm\) on /dev/mapper/debian--vg-root\b",
                         steps["detect"]["detail"]), steps["detect"]
        assert all(steps[s]["outcome"] == "done" for s in GRUB_STEPS), steps
        assert "installed system's grub-install (chroot)" in steps["GRUB for UEFI (x86_64-efi)"]["detail"], steps
        assert steps[f"deactivate volume group {lvmdisk.VG}"]["outcome"] == "done", steps
        rc, out = shell(vm, "dmsetup ls")
        assert "No devices found" in out, f"volumes left active after bootfix:\n{out}"
        rc, cfg = shell(vm, f"vgchange -q -ay {lvmdisk.VG} >/dev/null && mount -o ro {lvmdisk.ROOT_NODE} /mnt"
                            " && grep -c 'root=/dev/mapper/debian--vg-root' /mnt/boot/grub/grub.cfg;"
                            f" grep -c 'insmod lvm' /mnt/boot/grub/grub.cfg; umount /mnt; vgchange -q -an {lvmdisk.VG}")
        counts = [int(n) for n in re.findall(r"^(\d+)\s*$", cfg, re.M)]
        assert rc == 0 and len(counts) == 2 and all(counts), cfg  # update-grub ran in the LV's chroot
        shell(vm, "sync")
    result = bootvm.boot(target, "nvme", "uefi", bootvm.LOGIN_RE, tmp_path, "lvm-repaired", timeout=600)
    print(f"LVM root repaired by bootfix, OVMF with empty NVRAM: login after {result.seconds:.0f}s")
