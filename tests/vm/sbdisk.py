"""The "Secure Boot Debian" fixture: Debian booting through Debian's signed chain, laid out as the Debian
installer's guided LVM lays out a UEFI machine: a separate /boot and the root on LVM.

  GPT: p1 ESP (64 MiB FAT16, /boot/efi), p2 /boot (ext4), p3 LVM PV of volume group `debian-vg` with the
       LVs `root` (ext4, /dev/mapper/debian--vg-root) and `swap_1`
  ESP: \\EFI\\debian\\{shimx64,grubx64,mmx64}.efi and grub.cfg (search /boot by UUID, configfile /grub/grub.cfg),
       \\EFI\\BOOT\\BOOTX64.EFI = shim with grubx64.efi and mmx64.efi beside it (what Debian's grub-install
       --uefi-secure-boot --force-extra-removable writes): it boots under OVMF with Secure Boot enforced and
       an empty NVRAM.

The rootfs comes from images/debian-sb-rootfs.sh (debootstrap with shim-signed, grub-efi-amd64-signed and
the signed linux-image-amd64); lvm2 is added in a chroot (lvmdisk._add_lvm2: its initramfs then activates the
root's volume group) and fstab names / as /dev/mapper/debian--vg-root and swap_1, as the installer writes it.
Kernel modules the guest never loads are then removed (UNUSED_MODULES: a third of the root's data).

This host has no device-mapper, so the cached image is the disk one step short of finished: everything is in
place except the LVM metadata. The root filesystem already sits where lvm2 will put the first extent of
`root` (1 MiB into p3, lvm2's default data alignment) and a swap signature right after it, where `swap_1`
will start; assemble(), run inside the live ISO on the disk, makes p3 a PV, creates `debian-vg`, `root` and
`swap_1` over them (inactive, neither zeroed nor wiped): a few KiB of metadata, no copy. It checks lvm2's
data alignment; that the LVs hold the filesystem and the swap, the capture after it shows. The system's own
update-grub runs on the host in a chroot on a loop device (the host mounts ext4; p3 spans just the root
filesystem meanwhile), its kernel lines then given the root as the installed system names it; the ESP is
filled with mtools (the host kernel has no vfat) from the system's own signed files. Once assembled it boots
to `lifeboat-fixture login:` on the serial console.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import bootdisk
import fixture_cache
import lvmdisk
from bootdisk import CACHE, sh

SCRIPT = bootdisk.HERE / "images" / "debian-sb-rootfs.sh"
SIZE_MIB, ESP_MIB, BOOT_MIB = 1280, 64, 256
ROOT_MIB, SWAP_MIB, PE_START_MIB = 896, 32, 1  # p3 (~959 MiB): the PV's 1 MiB header, root, swap_1, free
ROOT_UUID = "6c1f0b3e-1a2b-4c3d-8e4f-000000005b01"
SWAP_UUID = "6c1f0b3e-1a2b-4c3d-8e4f-000000005b03"
BOOT_UUID = "6c1f0b3e-1a2b-4c3d-8e4f-000000005b02"
ESP_SERIAL = "5B0E0001"
DISK_GUID = "4c1f0b3e-0000-4000-8000-0000000005b0"
PART_GUIDS = [f"4c1f0b3e-0000-4000-8000-0000000005b{i}" for i in (1, 2, 3)]
VG = "debian-vg"
ROOT_NODE, SWAP_NODE = "/dev/mapper/debian--vg-root", "/dev/mapper/debian--vg-swap_1"
# kernel modules this guest never loads (no network, SCSI, USB or HID, no other filesystems: it boots from NVMe
# under OVMF to a serial login). Gone after its initramfs is made, they leave less to capture and restore.
UNUSED_MODULES = ("drivers/scsi", "drivers/usb", "drivers/net", "drivers/hid", "drivers/platform", "drivers/comedi",
                  "drivers/mtd", "drivers/target", "drivers/media", "drivers/infiniband", "net", "lib/test_bpf.ko",
                  *(f"fs/{fs}" for fs in ("xfs", "btrfs", "nfs", "nfsd", "ocfs2", "smb", "f2fs", "ceph", "gfs2", "afs",
                                          "ubifs", "dlm", "nilfs2", "reiserfs", "jfs", "jffs2", "orangefs", "lockd")))
SIGNED = {"shimx64.efi": "usr/lib/shim/shimx64.efi.signed", "mmx64.efi": "usr/lib/shim/mmx64.efi.signed",
          "grubx64.efi": "usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed"}


def assemble(disk: str) -> str:
    """The guest's shell command that makes the cached image's p3 the PV of `debian-vg` (disk: a node whose
    partitions are `<disk>-partN`, e.g. /dev/disk/by-id/virtio-X). Metadata only: the LVs are created inactive
    (nothing for udev and device-mapper to do) over what the image already holds, every command limited to p3."""
    pv = f"{disk}-part3"
    lvm = f"--devices {pv} -q"
    return (
        f"pvcreate {lvm} --dataalignment {PE_START_MIB}m {pv} && vgcreate {lvm} {VG} {pv}"
        f" && test $(pvs {lvm} --noheadings --units b --nosuffix -o pe_start {pv}) -eq {PE_START_MIB << 20}"
        f" && lvcreate {lvm} -y -an -Zn -Wn -n root -L {ROOT_MIB}M {VG}"
        f" && lvcreate {lvm} -y -an -Zn -Wn -n swap_1 -L {SWAP_MIB}M {VG}"
    )


def rootfs() -> Path:
    """The debootstrapped rootfs tarball (a few minutes cold, cached by the script's hash)."""
    key = hashlib.sha256(SCRIPT.read_bytes()).hexdigest()[:16]
    out = CACHE / "rootfs" / f"debian-sb-{key}.tar"
    if out.exists():
        return out
    with bootdisk._locked("rootfs"):
        if not out.exists():
            out.parent.mkdir(parents=True, exist_ok=True)
            proc = subprocess.run(["bash", str(SCRIPT), str(out)], stdin=subprocess.DEVNULL,
                                  capture_output=True, text=True)
            if proc.returncode != 0:
                raise RuntimeError(f"{SCRIPT} failed:\n{(proc.stdout + proc.stderr)[-3000:]}")
            bootdisk._prune(out)
    return out


def secure_boot_debian_disk() -> Path:
    """Path of the cached image, its LVM still to be assembled (assemble()). Copy it or attach it with
    snapshot before writing to it."""
    tar = rootfs()
    return fixture_cache.cached(f"debian-sb-lvm-{SIZE_MIB}M", fixture_cache.key(__file__, tar.name),
                                lambda img, tmp: _build(tar, tmp, img))


def _split_boot(root: Path, tmp: Path) -> Path:
    """Move the rootfs's /boot into its own tree (the /boot partition), leaving the mount point."""
    boot = tmp / "boot"
    shutil.move(root / "boot", boot)
    (root / "boot").mkdir()
    (boot / "efi").mkdir(exist_ok=True)
    (boot / "grub").mkdir(exist_ok=True)
    (root / "etc/fstab").write_text(
        f"{ROOT_NODE} / ext4 errors=remount-ro 0 1\n"
        f"UUID={BOOT_UUID} /boot ext4 defaults 0 2\n"
        f"UUID={ESP_SERIAL[:4]}-{ESP_SERIAL[4:]} /boot/efi vfat umask=0077 0 1\n"
        f"{SWAP_NODE} none swap sw 0 0\n")
    return boot


def _build(tar: Path, tmp: Path, img: Path) -> None:
    sh("truncate", "-s", f"{SIZE_MIB}M", img)
    sh("sgdisk", "-U", DISK_GUID,
       "-n", f"1:2048:+{ESP_MIB}M", "-t", "1:EF00", "-c", "1:EFI system partition", "-u", f"1:{PART_GUIDS[0]}",
       "-n", f"2:0:+{BOOT_MIB}M", "-t", "2:8300", "-c", "2:boot", "-u", f"2:{PART_GUIDS[1]}", img)
    parts = bootdisk._partitions(img)
    pv_start = parts[2][0] + parts[2][1]
    # p3 first spans the root filesystem alone (where lvm2 will put `root`), so that the system's update-grub
    # can run on a partition node (10_linux skips a root on a plain /dev/loopN); then p3 becomes the PV
    root_start = pv_start + (PE_START_MIB << 20) // 512
    sh("sgdisk", "-n", f"3:{root_start}:+{ROOT_MIB}M", img)
    boot_at, boot_size = parts[2][0] * 512, parts[2][1] * 512
    with bootdisk._unpacked(tar) as root:
        lvmdisk._add_lvm2(root)
        _drop_unused_modules(root)
        boot = _split_boot(root, tmp)
        for at, size, uuid, label, tree in ((boot_at, boot_size, BOOT_UUID, "debboot", boot),
                                            (root_start * 512, ROOT_MIB << 20, ROOT_UUID, "debroot", root)):
            sh("mke2fs", "-q", "-F", "-t", "ext4", "-U", uuid, "-L", label, "-E", f"offset={at}",
               "-d", tree, img, f"{size // 1024}k")
        _update_grub(img)
        esp = tmp / "esp.img"
        sh("truncate", "-s", str(parts[1][1] * 512), esp)
        _fill_esp(esp, root)
    swap = tmp / "swap.img"  # the swap signature where lvm2 will put `swap_1`, right after `root`
    sh("truncate", "-s", f"{SWAP_MIB}M", swap)
    sh("mkswap", "-U", SWAP_UUID, swap)
    sh("dd", f"if={swap}", f"of={img}", "bs=1M", f"seek={(root_start * 512) + (ROOT_MIB << 20)}", "oflag=seek_bytes",
       "conv=notrunc,sparse")
    sh("sgdisk", "-d", "3", "-n", f"3:{pv_start}:0", "-t", "3:8E00", "-c", "3:lvm", "-u", f"3:{PART_GUIDS[2]}", img)
    sh("dd", f"if={esp}", f"of={img}", "bs=1M", f"seek={parts[1][0] * 512}", "oflag=seek_bytes", "conv=notrunc,sparse")


def _drop_unused_modules(root: Path) -> None:
    (kernel_dir,) = (root / "usr/lib/modules").glob("*/kernel")
    for rel in UNUSED_MODULES:
        target = kernel_dir / rel
        shutil.rmtree(target) if target.is_dir() else target.unlink(missing_ok=True)
    sh("chroot", root, "depmod", kernel_dir.parent.name)


def _update_grub(img: Path) -> None:
    """The system's own update-grub in a chroot, root and /boot mounted from the image on a loop device; its
    kernel lines then name the root as the assembled disk has it (update-grub here sees a loop partition)."""
    with bootdisk.loop_device(img) as dev, tempfile.TemporaryDirectory(dir=CACHE) as mnt:
        mounted = []
        try:
            for part, where in ((f"{dev}p3", mnt), (f"{dev}p2", f"{mnt}/boot")):
                if sh("mount", "-t", "ext4", part, where, check=False).returncode != 0:
                    # seen once: the node gone after the first mount (a udev re-read); put it back, once
                    sh("partx", "-u", dev, check=False)
                    sh("mount", "-t", "ext4", part, where)
                mounted.append(where)
            for d in ("dev", "proc", "sys"):
                sh("mount", "--bind", f"/{d}", f"{mnt}/{d}")
                mounted.append(f"{mnt}/{d}")
            sh("chroot", mnt, "update-grub")
            cfg = Path(mnt, "boot/grub/grub.cfg")
            text, count = re.subn(r"(\n\s*linux\s+\S+\s+)root=\S+", rf"\1root={ROOT_NODE}", cfg.read_text())
            if count == 0 or BOOT_UUID not in text:
                raise RuntimeError(f"update-grub wrote an unexpected grub.cfg:\n{text[-2000:]}")
            cfg.write_text(text)
        finally:
            for where in reversed(mounted):
                sh("umount", "-l", where, check=False)


def _fill_esp(esp: Path, root: Path) -> None:
    env = dict(os.environ, MTOOLS_SKIP_CHECK="1")
    sh("mkfs.fat", "-F", "16", "-i", ESP_SERIAL, "-n", "ESP", esp)
    cfg = esp.parent / "grub.cfg"
    cfg.write_text(f"search.fs_uuid {BOOT_UUID} root\nset prefix=($root)'/grub'\nconfigfile $prefix/grub.cfg\n")
    for d in ("::/EFI", "::/EFI/BOOT", "::/EFI/debian"):
        sh("mmd", "-i", esp, d, env=env)
    for name, rel in SIGNED.items():
        sh("mcopy", "-i", esp, root / rel, f"::/EFI/debian/{name}", env=env)
        sh("mcopy", "-i", esp, root / rel, "::/EFI/BOOT/" + ("BOOTX64.EFI" if name == "shimx64.efi" else name), env=env)
    sh("mcopy", "-i", esp, cfg, "::/EFI/debian/grub.cfg", env=env)


if __name__ == "__main__":
    print(secure_boot_debian_disk())
