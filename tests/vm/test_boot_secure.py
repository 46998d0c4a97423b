"""Secure Boot kept through a restore and a bootfix: the "Secure Boot Debian" fixture (sbdisk.py: GPT, ESP,
separate /boot, root on LVM as the Debian installer's guided LVM makes it: `debian-vg` with `root` and
`swap_1`) is captured and restored inside the live ISO, itself booted under OVMF with Secure Boot enforced.
This host has no device-mapper, so the guest assembles the fixture's volume group (sbdisk.assemble: metadata
only, the root filesystem is already in place) and captures it into an ext4 repository disk, which grows by
no more than the used blocks of its filesystems (issue 11) and a little metadata. The source's PV
label is then wiped (as if that disk had gone: a group of the same name may not be restored beside it) and the
image goes onto a disk twice the size with the bootloader step, which must install shim + signed GRUB (the plan says
so first); the plan grows the root LV, and the restored PV, VG and LV UUIDs are the captured ones. The restored
disk is copied in the guest (the copy is what "restored" boots from later); then the original's bootloader is
broken (boot code zeroed, every loader on its ESP and the NVRAM entries removed) and `lifeboat bootfix`
repairs it. After power off each disk boots alone under OVMF with Secure Boot enforced and an empty NVRAM to
its login prompt, with its root on /dev/mapper/debian--vg-root, and its kernel says
"secureboot: Secure boot enabled".

One live boot and two target boots.
"""

from __future__ import annotations

import json
import os
import shlex
import re
import time

import pytest

import bootvm
import qemu
import sbdisk
from bootdisk import sh
from iso_helpers import BOOT_TIMEOUT, ready_pattern, secure_boot_available, secure_boot_machine, shell, wait_for_all

pytestmark = [*qemu.vm_marks("needs root"),
              pytest.mark.skipif(not secure_boot_available(), reason="OVMF with Microsoft's keys (package ovmf)")]

SB_STEPS = ("shim + signed GRUB for UEFI (Secure Boot)", "update-grub",
            "removable fallback \\EFI\\BOOT\\BOOTX64.EFI", "NVRAM entry")
SB_LINE = "secureboot: Secure boot enabled"
S, T = "/dev/disk/by-id/virtio-LBSOURCE", "/dev/nvme0n1"
IDS = ("pvs --devices {pv} --noheadings -o pv_uuid,vg_uuid;"
       " lvs --devices {pv} --noheadings --units b --nosuffix -o lv_name,lv_uuid,lv_size")

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


def _lvm_ids(vm, pv: str) -> tuple[str, str, dict[str, tuple[str, int]]]:
    """(PV UUID, VG UUID, {LV name: (LV UUID, size)}) of the group on `pv`, from its metadata."""
    rc, out = shell(vm, IDS.format(pv=pv))
    rows = [line.split() for line in out.splitlines() if line.strip()]
    assert rc == 0 and len(rows) == 3 and len(rows[0]) == 2, out
    return rows[0][0], rows[0][1], {name: (uuid, int(size)) for name, uuid, size in rows[1:]}


def _assemble_and_capture(vm) -> tuple[str, str, dict[str, tuple[str, int]]]:
    """The fixture's volume group made on the source disk, the disk captured; its LVM ids returned."""
    started = time.monotonic()
    rc, out = shell(vm, sbdisk.assemble(S), timeout=300)
    assert rc == 0, f"assembling the fixture's volume group failed:\n{out}"
    print(f"volume group assembled: {time.monotonic() - started:.0f}s")
    ids = _lvm_ids(vm, f"{S}-part3")
    assert set(ids[2]) == {"root", "swap_1"}, ids
    started = time.monotonic()
    rc, out = shell(vm, f"lifeboat capture {S} debian-sb --repo /mnt/repo/images --level 1 >/tmp/capture.log 2>&1;"
                        " rc=$?; tail -5 /tmp/capture.log; (exit $rc)", timeout=1200)
    print(f"capture in the guest: {time.monotonic() - started:.0f}s\n{out}")
    assert rc == 0, out
    # the LVs hold what the fixture put there: the root filesystem and the swap
    assert f"{sbdisk.VG}/root: ext4 {sbdisk.ROOT_MIB}.0 MiB, used-blocks" in out, out
    assert f"{sbdisk.VG}/swap_1: swap {sbdisk.SWAP_MIB}.0 MiB, swap" in out, out
    _stores_about_its_used_data(vm)
    rc, out = shell(vm, f"wipefs -q -a {S}-part3")  # the source's group goes, as if the disk had been taken out
    assert rc == 0, out
    return ids


USED_BYTES = ('import json; m = json.load(open("/mnt/repo/images/images/debian-sb/manifest.json"));'
              ' c = [p["content"] for p in m["partitions"]] + [v["content"] for g in m["volume_groups"] for v in g["lvs"]];'
              ' print(sum(x.get("stream", {}).get("used_bytes", 0) for x in c))')  # one line: it is typed over serial


def _stores_about_its_used_data(vm) -> None:
    """Issue 11: the repository (empty before) grew by at most the used blocks of the ESP, /boot and the root LV
    (from their filesystems' allocation maps, as the manifest records them) and a little metadata, and those
    used blocks are a fraction of the disk."""
    rc, out = shell(vm, "du -sb /mnt/repo/images | cut -f1; python3 -c " + shlex.quote(USED_BYTES))
    assert rc == 0, out
    grew, used = (int(n) for n in out.split()[-2:])
    print(f"repository growth {grew} bytes for {used} used bytes (disk {sbdisk.SIZE_MIB} MiB)")
    assert grew < used + (4 << 20) and used < (sbdisk.SIZE_MIB << 20) // 2, (grew, used)


def _restore_and_bootfix(vm) -> None:
    rc, out = shell(vm, "mkdir -p /mnt/repo && mount LABEL=LBREPO /mnt/repo")
    assert rc == 0, out
    pv_uuid, vg_uuid, lvs = _assemble_and_capture(vm)
    started = time.monotonic()
    rc, out = shell(vm, f"lifeboat restore debian-sb {T} --repo /mnt/repo/images --yes >/tmp/restore.log 2>&1;"
                        " rc=$?; grep -e 'Bootloader step' -e 'bootloader: ' -e 'LVM volume group' -e ' root  '"
                        " -e ' swap_1  ' /tmp/restore.log; (exit $rc)", timeout=1200)
    print(f"restore with the bootloader step: {time.monotonic() - started:.0f}s\n{out}")
    assert rc == 0, out + shell(vm, "tail -40 /tmp/restore.log")[1]
    assert "Bootloader step installs: shim + signed GRUB (Secure Boot)." in out, out
    _steps_done(out, SB_STEPS)
    assert "installed system's grub-install --uefi-secure-boot (chroot)" in out, out
    assert "\\EFI\\debian\\shimx64.efi" in out, out  # the NVRAM entry starts shim
    assert re.search(rf"LVM volume group {sbdisk.VG} \(.*, grows to .*\), UUID {vg_uuid}", out), out
    assert re.search(r"^\s+root\s.*ext4.*grows from", out, re.M), out
    restored = _lvm_ids(vm, f"{T}p3")
    assert restored[:2] == (pv_uuid, vg_uuid), (restored, pv_uuid, vg_uuid)
    assert {n: u for n, (u, _) in restored[2].items()} == {n: u for n, (u, _) in lvs.items()}, (restored, lvs)
    assert restored[2]["root"][1] > 2 * lvs["root"][1] and restored[2]["swap_1"][1] == lvs["swap_1"][1], (restored, lvs)
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
    assert steps.get(f"deactivate volume group {sbdisk.VG}") == "done", steps
    rc, entries = shell(vm, "efibootmgr -v")
    assert "\\EFI\\debian\\shimx64.efi" in entries, entries
    shell(vm, "umount /mnt/repo; sync")


def _boots_with_secure_boot(image, tmp_path, name: str) -> None:
    with qemu.Machine([qemu.Drive(image, "nvme", serial="LBBOOT", snapshot=True)], workdir=tmp_path, memory=1024,
                      name=name, **secure_boot_machine(tmp_path, name)) as vm:
        vm.wait_for(bootvm.LOGIN_RE, 600)
        print(f"{name}: login prompt under OVMF Secure Boot, empty NVRAM, after {vm.elapsed():.0f}s")
        assert SB_LINE in vm.output, f"{name}: the kernel does not say {SB_LINE!r}:\n{vm.tail(80)}"
        assert f"root={sbdisk.ROOT_NODE}" in vm.output, f"{name}: not booted from the root LV:\n{vm.tail(80)}"


@pytest.mark.timeout(3000)  # a cold cache runs debootstrap first
def test_secure_boot_debian_restored_and_bootfixed_boots_with_secure_boot(live_iso, lifeboat_version, tmp_path):
    source = sbdisk.secure_boot_debian_disk()
    repo, target, copy = tmp_path / "repo.img", tmp_path / "target.img", tmp_path / "restored.img"
    larger = source.stat().st_size * 2  # twice the source: its PV and root LV grow
    for disk, size in ((repo, 1 << 30), (target, larger), (copy, larger)):
        disk.write_bytes(b"")
        os.truncate(disk, size)
    sh("mkfs.ext4", "-q", "-F", "-L", "LBREPO", repo)
    disks = [
        qemu.Drive(live_iso, "sata", media="cdrom", bootindex=0),
        qemu.Drive(source, "virtio", serial="LBSOURCE", snapshot=True),
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
