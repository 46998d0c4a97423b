"""Proof 3 of issue 9: a Debian on LUKS2 + LVM (the Debian installer's guided encrypted LVM), with no bootloader
at all, repaired by `lifeboat bootfix --luks-passphrase-file` in the live ISO, then booted alone under OVMF with
empty NVRAM: its initramfs asks for the passphrase on the serial console, the test types it, and it reaches its
login prompt.

This host has no device-mapper, so the container and the volume group are made inside the live ISO (which
carries cryptsetup and lvm2): the guest partitions a blank NVMe disk as the installer does (ESP, ext4 /boot,
LUKS2), writes the prepared /boot (luksdisk.py: lvm2 and cryptsetup-initramfs in its initramfs), formats the
container with a fixed UUID and a cheap KDF (pbkdf2, 1000 iterations: the restored system's initramfs unlocks it
under TCG), makes `debian-vg` with `root` and `swap_1` inside, writes the root filesystem into `root`, and closes
everything. In the same live boot, bootfix runs three times: without a passphrase (a needs-passphrase outcome,
exit 0, nothing written), with a wrong one (a failed step naming the partition, exit 1, the ESP, /boot and the
LUKS header unchanged) and with the right one (every step done, the container opened under its crypttab name,
everything deactivated and closed afterwards). TCG only; QEMU killed by PID.

Issue 11's proof rides in the same live boot: before bootfix, the assembled disk is captured with the
passphrase into a repository disk (root by its used blocks, swap recorded, the LUKS header kept) and restored
onto a disk twice its size with the bootloader step given the same passphrase: the container re-created with
its UUID, the group inside it with its UUIDs, root grown, and the bootloader step opening the container under
its crypttab name. That restored disk is then broken (its ESP's loaders and the NVRAM entries removed) and is
the one bootfix repairs and the one that boots."""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import pytest

import bootvm
import luksdisk as L
import qemu
from iso_helpers import BOOT_TIMEOUT, LIVE_APPEND, ext4_whole_disk, ready_pattern, shell, wait_for_all
from test_boot_live import GRUB_STEPS

pytestmark = [*qemu.vm_marks("needs root (the fixture's chroot)"), pytest.mark.timeout(2400)]

APPEND = f"{LIVE_APPEND} console=ttyS0,115200 console=tty0"
PASSPHRASE = "lifeboat luks test"  # typed into the guest: a test secret, not a real one
T = "/dev/nvme0n1"  # the assembled source; the restored disk is the second NVMe disk (found by its serial)
ESP_MIB = 64
SOURCE_MIB = ESP_MIB + L.BOOT_MIB + L.ROOT_MIB + 80
REPO = "/mnt/repo/images"
KEYS = f"umask 077; printf %s '{PASSPHRASE}' >/tmp/luks.key; printf %s 'not the passphrase' >/tmp/wrong.key"
ASSEMBLE = (
    f"sgdisk -n 1:2048:+{ESP_MIB}M -t 1:EF00 -n 2:0:+{L.BOOT_MIB}M -t 2:8300 -n 3:0:0 -t 3:8309 {T} >/dev/null"
    f" && partx -u {T}; udevadm settle"
    f" && mkfs.vfat -F 16 -i {L.ESP_SERIAL} -n ESP {T}p1 >/dev/null"
    f" && dd if=/dev/disk/by-id/virtio-LBFS of={T}p2 bs=4M count={L.BOOT_MIB // 4} conv=fsync status=none"
    f" && cryptsetup luksFormat -q --type luks2 --uuid {L.LUKS_UUID} --pbkdf pbkdf2 --pbkdf-force-iterations 1000"
    f" --key-file=/tmp/luks.key {T}p3"
    f" && cryptsetup open --key-file=/tmp/luks.key {T}p3 {L.CRYPT_NAME}"
    f" && pvcreate -q /dev/mapper/{L.CRYPT_NAME} && vgcreate -q {L.VG} /dev/mapper/{L.CRYPT_NAME}"
    f" && lvcreate -q -y -n {L.LV} -L {L.ROOT_MIB + 8}M {L.VG}"
    f" && lvcreate -q -y -n swap_1 -L 32M {L.VG} && mkswap /dev/{L.VG}/swap_1 >/dev/null"
    f" && dd if=/dev/disk/by-id/virtio-LBFS of=/dev/{L.VG}/{L.LV} bs=4M skip={L.BOOT_MIB // 4} conv=fsync status=none"
    f" && vgchange -q -an {L.VG} && cryptsetup close {L.CRYPT_NAME} && dmsetup ls"
)


def unchanged_hashes(disk: str) -> str:
    """A guest command printing the hashes of what a refused bootfix must not write: ESP, /boot, LUKS header."""
    return (f"sha256sum {disk}p1 {disk}p2; head -c 16M {disk}p3 | sha256sum;"
            f" dd if={disk} bs=512 count=34 status=none | sha256sum")


def assemble(vm: qemu.Machine) -> None:
    rc, out = shell(vm, f"{KEYS}; {ASSEMBLE}", timeout=900)
    assert rc == 0 and "No devices found" in out, f"building the encrypted LVM disk failed:\n{out}"


def bootfix(vm: qemu.Machine, disk: str, key_file: str | None) -> tuple[int, dict, float]:
    option = f" --luks-passphrase-file {key_file}" if key_file else ""
    started = time.monotonic()
    rc, out = shell(vm, f"lifeboat bootfix {disk} --yes --json{option} 2>/tmp/bootfix.err", timeout=900)
    took = time.monotonic() - started
    assert "{" in out, out + shell(vm, "tail -40 /tmp/bootfix.err")[1]
    return rc, json.loads(out[out.index("{"):]), took


def bootfix_checks(vm: qemu.Machine, disk: str) -> None:
    """Without the passphrase, with a wrong one, with the right one (the last one repairs the disk)."""
    _, before = shell(vm, unchanged_hashes(disk), timeout=300)
    rc, result, took = bootfix(vm, disk, None)
    print(f"bootfix without a passphrase: {took:.0f}s")
    steps = {s["step"]: s for s in result["steps"]}
    assert rc == 0 and result["outcome"] == "needs-passphrase", result
    assert result["needs_passphrase"] == [f"{disk}p3"], result
    assert steps[f"unlock {disk}p3"]["outcome"] == "needs-passphrase", steps
    assert "--luks-passphrase-file" in steps[f"unlock {disk}p3"]["detail"], steps
    assert steps["detect"]["outcome"] == "needs-passphrase", steps

    rc, result, took = bootfix(vm, disk, "/tmp/wrong.key")
    print(f"bootfix with a wrong passphrase: {took:.0f}s")
    assert rc == 1 and result["outcome"] == "failed", result
    (step,) = result["steps"]
    assert step["step"] == f"unlock {disk}p3" and step["outcome"] == "failed", result
    assert "wrong passphrase" in step["detail"] and f"{disk}p3" in step["detail"], step
    _, after = shell(vm, f"{unchanged_hashes(disk)}; dmsetup ls", timeout=300)
    assert after.startswith(before) and "No devices found" in after, f"before:\n{before}\nafter:\n{after}"

    rc, result, took = bootfix(vm, disk, "/tmp/luks.key")
    print(f"bootfix with the passphrase: {took:.0f}s\n{json.dumps(result['steps'], indent=1)}")
    steps = {s["step"]: s for s in result["steps"]}
    assert rc == 0 and result["outcome"] == "done", result
    assert f"opened as /dev/mapper/{L.CRYPT_NAME} (the name its system's /etc/crypttab gives)" in \
        steps[f"unlock {disk}p3"]["detail"], steps
    assert re.search(rf"Debian GNU/Linux 12 \(bookworm\) on {re.escape(L.ROOT_NODE)}\b", steps["detect"]["detail"])
    assert all(steps[s]["outcome"] in ("done", "not-needed") for s in GRUB_STEPS), steps
    assert all(steps[s]["outcome"] == "done" for s in GRUB_STEPS[1:]), steps  # GPT without BIOS boot: UEFI only
    assert "installed system's grub-install (chroot)" in steps["GRUB for UEFI (x86_64-efi)"]["detail"], steps
    assert steps[f"deactivate volume group {L.VG}"]["outcome"] == "done", steps
    assert steps[f"close LUKS container {disk}p3"]["outcome"] == "done", steps
    rc, out = shell(vm, "dmsetup ls; sync")
    assert "No devices found" in out, f"volumes or containers left open after bootfix:\n{out}"
    rc, cfg = shell(vm, f"mount -o ro {disk}p2 /mnt && grep -c 'root={L.ROOT_NODE}' /mnt/grub/grub.cfg; umount /mnt")
    assert rc == 0 and int(cfg.split()[0]) > 0, cfg  # update-grub ran in the chroot and wrote /boot/grub/grub.cfg


def capture_and_restore(vm: qemu.Machine) -> str:
    """Capture the assembled disk with the passphrase, restore it onto the larger disk with the bootloader step
    (given the passphrase too); return the restored disk's node."""
    rc, restored = shell(vm, "readlink -f /dev/disk/by-id/nvme-QEMU_NVMe_Ctrl_LBTARGET")
    restored = restored.strip().splitlines()[-1]
    assert rc == 0 and restored.startswith("/dev/nvme") and restored != T, restored
    started = time.monotonic()
    rc, out = shell(vm, f"mkdir -p /mnt/repo && mount LABEL=LBREPO /mnt/repo && lifeboat capture {T} debian-luks"
                        f" --repo {REPO} --luks-passphrase-file /tmp/luks.key --allow-plaintext 2>&1 | grep -v '%'"
                        " | tail -25", timeout=900)
    print(f"capture with the passphrase: {time.monotonic() - started:.0f}s\n{out}")
    assert rc == 0 and f"LVM volume group {L.VG}" in out, out
    started = time.monotonic()
    rc, out = shell(vm, f"lifeboat restore debian-luks {restored} --repo {REPO} --luks-passphrase-file /tmp/luks.key"
                        " --yes >/tmp/restore.log 2>&1; rc=$?; grep -e 'bootloader' -e 'LVM' /tmp/restore.log; (exit $rc)",
                    timeout=1500)
    print(f"restore onto a disk twice the size, with the bootloader step: {time.monotonic() - started:.0f}s\n{out}")
    assert rc == 0, out + shell(vm, "tail -40 /tmp/restore.log")[1]
    for step in (f"unlock {restored}p3", "GRUB for UEFI (x86_64-efi)", f"close LUKS container {restored}p3"):
        assert re.search(re.escape(f"bootloader: {step}") + r": done", out), f"{step} not done:\n{out}"
    rc, out = shell(vm, f"cryptsetup luksUUID {restored}p3; cryptsetup open --key-file=/tmp/luks.key {restored}p3 lbcheck"
                        f" && vgchange -q -ay {L.VG} >/dev/null && lvs --noheadings --units m --nosuffix -o lv_size"
                        f" {L.VG}/{L.LV}; vgchange -q -an {L.VG} >/dev/null; cryptsetup close lbcheck; umount /mnt/repo")
    uuid, size = out.split()[-2:]
    assert uuid == L.LUKS_UUID and float(size) > 1.5 * L.ROOT_MIB, out  # root grew inside the re-created container
    rc, out = shell(vm, f"mkdir -p /mnt/esp && mount -t vfat {restored}p1 /mnt/esp && find /mnt/esp -iname '*.efi' -delete"
                        " && umount /mnt/esp && for n in $(efibootmgr | sed -n 's/^Boot\\([0-9A-F]\\{4\\}\\).*debian.*/\\1/p');"
                        " do efibootmgr -q -b $n -B; done; efibootmgr | grep -c debian", timeout=120)
    assert out.split()[-1] == "0", f"breaking the restored disk's bootloader failed:\n{out}"
    return restored


def boot_with_passphrase(target: Path, workdir: Path) -> float:
    """Boot `target` alone under OVMF with empty NVRAM, answer its initramfs' passphrase prompt, reach login."""
    drive = qemu.Drive(target, "nvme", serial="LBBOOT", snapshot=True)
    with qemu.Machine([drive], firmware="uefi", workdir=workdir, name="luks-lvm-repaired") as vm:
        vm.wait_for(f"Please unlock disk {L.CRYPT_NAME}", 600)
        asked = vm.elapsed()
        vm.sendline(PASSPHRASE)
        vm.wait_for(bootvm.LOGIN_RE, 600)
        assert not re.search(r"cryptsetup: ERROR|No key available", vm.output), vm.tail()
        print(f"repaired LUKS+LVM disk: passphrase asked after {asked:.0f}s, login after {vm.elapsed():.0f}s")
        return vm.elapsed()


def test_luks_lvm_root_captured_restored_larger_needs_its_passphrase_is_repaired_and_boots(
        live_iso, live_kernel, lifeboat_version, tmp_path):
    filesystems = L.luks_lvm_filesystems()
    source, restored = tmp_path / "source.img", tmp_path / "restored.img"
    for disk, size_mib in ((source, SOURCE_MIB), (restored, 2 * SOURCE_MIB)):
        disk.write_bytes(b"")
        os.truncate(disk, size_mib << 20)
    kernel, initrd = live_kernel
    disks = [
        qemu.Drive(live_iso, "sata", media="cdrom"),
        qemu.Drive(filesystems, "virtio", serial="LBFS", snapshot=True),
        qemu.Drive(source, "nvme", serial="LBSOURCE"),
        qemu.Drive(restored, "nvme", serial="LBTARGET"),
        qemu.Drive(ext4_whole_disk(tmp_path / "repo.img", 1024, label="LBREPO"), "virtio", serial="LBREPO"),
    ]
    with qemu.Machine(disks, firmware="uefi", workdir=tmp_path, memory=1536, kernel=kernel, initrd=initrd,
                      append=APPEND, name="live-luks-lvm") as vm:
        wait_for_all(vm, [ready_pattern(lifeboat_version, "ttyS0", "shell")], BOOT_TIMEOUT)
        time.sleep(2)
        started = time.monotonic()
        assemble(vm)
        print(f"assembling ESP, /boot, LUKS2, debian-vg in the guest: {time.monotonic() - started:.0f}s")
        bootfix_checks(vm, capture_and_restore(vm))
        print(f"live guest: {vm.elapsed():.0f}s")
    boot_with_passphrase(restored, tmp_path)
