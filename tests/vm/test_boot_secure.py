"""Secure Boot kept through a restore and a bootfix: the "Secure Boot Debian" fixture (sbdisk.py: GPT, ESP,
separate /boot, plain ext4 root; root on LVM is still to come) is restored inside the live ISO, itself booted
under OVMF with Secure Boot enforced, onto a larger disk with the bootloader step, which must install
shim + signed GRUB (the plan says so first). The restored disk is copied in the guest (the copy is what
"restored" boots from later); then the original's bootloader is broken (boot code zeroed, every loader on its
ESP and the NVRAM entries removed) and `lifeboat bootfix` repairs it. After power off each disk boots alone
under OVMF with Secure Boot enforced and an empty NVRAM to its login prompt, and its kernel says
"secureboot: Secure boot enabled".

One live boot and two target boots; the capture runs on the host into an ext4 repository disk, as in
test_boot_live.py.
"""

from __future__ import annotations

import json
import os
import re
import time

import pytest

import bootvm
import qemu
import sbdisk
from iso_helpers import BOOT_TIMEOUT, ready_pattern, secure_boot_available, secure_boot_machine, shell, wait_for_all
from test_boot_live import repo_disk_with

pytestmark = [*qemu.vm_marks("needs root"),
              pytest.mark.skipif(not secure_boot_available(), reason="OVMF with Microsoft's keys (package ovmf)")]

SB_STEPS = ("shim + signed GRUB for UEFI (Secure Boot)", "update-grub",
            "removable fallback \\EFI\\BOOT\\BOOTX64.EFI", "NVRAM entry")
SB_LINE = "secureboot: Secure boot enabled"

BREAK = (
    "dd if=/dev/zero of=/dev/nvme0n1 bs=440 count=1 conv=notrunc,fsync status=none"
    " && mkdir -p /mnt/esp && mount -t vfat /dev/nvme0n1p1 /mnt/esp"
    " && rm -f /mnt/esp/EFI/BOOT/*.EFI /mnt/esp/EFI/BOOT/*.efi /mnt/esp/EFI/debian/*.efi"
    " && ! ls /mnt/esp/EFI/BOOT /mnt/esp/EFI/debian | grep -qi '[.]efi$' && umount /mnt/esp"
    " && for n in $(efibootmgr | sed -n 's/^Boot\\([0-9A-F]\\{4\\}\\).*debian.*/\\1/p'); do efibootmgr -q -b $n -B; done"
    " && ! efibootmgr | grep -q debian"
)


def _steps_done(out: str, steps) -> None:
    for step in steps:
        assert re.search(re.escape(step) + r": done", out), f"{step} not done:\n{out}"


def _restore_and_bootfix(vm) -> None:
    rc, out = shell(vm, "mkdir -p /mnt/repo && mount LABEL=LBREPO /mnt/repo")
    assert rc == 0, out
    started = time.monotonic()
    rc, out = shell(vm, "lifeboat restore debian-sb /dev/nvme0n1 --repo /mnt/repo/images --yes >/tmp/restore.log 2>&1;"
                        " rc=$?; grep -e 'Bootloader step' -e 'bootloader: ' /tmp/restore.log; (exit $rc)", timeout=1200)
    print(f"restore with the bootloader step: {time.monotonic() - started:.0f}s\n{out}")
    assert rc == 0, out + shell(vm, "tail -40 /tmp/restore.log")[1]
    assert "Bootloader step installs: shim + signed GRUB (Secure Boot)." in out, out
    _steps_done(out, SB_STEPS)
    assert "installed system's grub-install --uefi-secure-boot (chroot)" in out, out
    assert "\\EFI\\debian\\shimx64.efi" in out, out  # the NVRAM entry starts shim
    started = time.monotonic()
    rc, out = shell(vm, "dd if=/dev/nvme0n1 of=/dev/disk/by-id/virtio-LBCOPY bs=4M conv=sparse,fsync status=none", timeout=900)
    print(f"copy of the restored disk: {time.monotonic() - started:.0f}s")
    assert rc == 0, out
    rc, out = shell(vm, BREAK, timeout=120)
    assert rc == 0, f"breaking the bootloader failed:\n{out}"
    started = time.monotonic()
    rc, out = shell(vm, "lifeboat bootfix /dev/nvme0n1 --yes --json 2>/tmp/bootfix.err", timeout=900)
    print(f"lifeboat bootfix: {time.monotonic() - started:.0f}s\n{out}")
    assert rc == 0, out + shell(vm, "cat /tmp/bootfix.err")[1]
    steps = {s["step"]: s["outcome"] for s in json.loads(out[out.index("{"):])["steps"]}
    assert all(steps.get(s) == "done" for s in SB_STEPS), steps
    rc, entries = shell(vm, "efibootmgr -v")
    assert "\\EFI\\debian\\shimx64.efi" in entries, entries
    shell(vm, "umount /mnt/repo; sync")


def _boots_with_secure_boot(image, tmp_path, name: str) -> None:
    with qemu.Machine([qemu.Drive(image, "nvme", serial="LBBOOT", snapshot=True)], workdir=tmp_path, memory=1024,
                      name=name, **secure_boot_machine(tmp_path, name)) as vm:
        vm.wait_for(bootvm.LOGIN_RE, 600)
        print(f"{name}: login prompt under OVMF Secure Boot, empty NVRAM, after {vm.elapsed():.0f}s")
        assert SB_LINE in vm.output, f"{name}: the kernel does not say {SB_LINE!r}:\n{vm.tail(80)}"


@pytest.mark.timeout(3000)  # a cold cache runs debootstrap first
def test_secure_boot_debian_restored_and_bootfixed_boots_with_secure_boot(live_iso, lifeboat_version, tmp_path):
    source = sbdisk.secure_boot_debian_disk()
    repo = tmp_path / "repo.img"
    repo_disk_with("debian-sb", source, repo)
    target, copy = tmp_path / "target.img", tmp_path / "restored.img"
    for disk in (target, copy):
        disk.write_bytes(b"")
        os.truncate(disk, source.stat().st_size * 5 // 4)  # larger: the root grows
    disks = [
        qemu.Drive(live_iso, "sata", media="cdrom", bootindex=0),
        qemu.Drive(repo, "virtio", serial="LBREPO"),
        qemu.Drive(copy, "virtio", serial="LBCOPY"),
        qemu.Drive(target, "nvme", serial="LBTARGET"),
    ]
    with qemu.Machine(disks, workdir=tmp_path, memory=1536, name="live-sb",
                      **secure_boot_machine(tmp_path, "live-sb")) as vm:
        wait_for_all(vm, [ready_pattern(lifeboat_version, "ttyS0", "shell")], BOOT_TIMEOUT)
        print(f"live ISO (OVMF Secure Boot, CD): root shell after {vm.elapsed():.0f}s")
        rc, out = shell(vm, "dmesg | grep -i 'secure boot enabled'")
        assert rc == 0, f"the live system did not boot with Secure Boot on:\n{out}"
        time.sleep(2)
        _restore_and_bootfix(vm)
    _boots_with_secure_boot(copy, tmp_path, "restored-sb")
    _boots_with_secure_boot(target, tmp_path, "bootfixed-sb")
