"""The debootstrapped Debian with its root in a btrfs subvolume, as Debian's and Ubuntu's installers lay it
out: GPT with p1 BIOS boot, p2 ESP (FAT16, /boot/efi), p3 btrfs holding the subvolumes `@` (/) and `@home`
(/home), fstab naming them with subvol=. GRUB for i386-pc is installed by the system's own grub-install in a
chroot of `@` and update-grub writes rootflags=subvol=@ itself; the UEFI loader is the core image
grub-install would make (the host cannot mount FAT), copied onto the ESP with mtools. Cached by this
file's hash and the rootfs tarball's name, like bootdisk's fixtures."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import fixture_cache
from bootdisk import CACHE, _fat_uuid, _partitions, debian_rootfs, loop_device, sh

SIZE_MIB = 1024
BTRFS_UUID = "6c1f0b3e-1a2b-4c3d-8e4f-000000000f01"
ESP_SERIAL = "1B0F0001"
SUBVOLUMES = ("@", "@home")


def debian_btrfs_disk() -> Path:
    tar = debian_rootfs()
    return fixture_cache.cached(f"debian-btrfs-{SIZE_MIB}M", fixture_cache.key(__file__, tar.name),
                                lambda img, tmp: _build(tar, tmp, img))


def _build(tar: Path, tmp: Path, img: Path) -> None:
    sh("truncate", "-s", f"{SIZE_MIB}M", img)
    sh("sgdisk", "-n", "1:2048:+1M", "-t", "1:EF02", "-c", "1:bios", "-n", "2:0:+64M", "-t", "2:EF00",
       "-c", "2:esp", "-n", "3:0:0", "-t", "3:8300", "-c", "3:root", img)
    parts = _partitions(img)
    efi = tmp / "grubx64.efi"
    with loop_device(img) as dev, tempfile.TemporaryDirectory(dir=CACHE) as mnt:
        sh("mkfs.btrfs", "-q", "-f", "-U", BTRFS_UUID, "-L", "debbtrfs", f"{dev}p3")
        sh("mount", "-t", "btrfs", f"{dev}p3", mnt)
        try:
            for name in SUBVOLUMES:
                sh("btrfs", "-q", "subvolume", "create", f"{mnt}/{name}")
            sh("tar", "-C", f"{mnt}/@", "--numeric-owner", "-xf", tar)
            Path(mnt, "@/boot/efi").mkdir(exist_ok=True)
            Path(mnt, "@/etc/fstab").write_text(
                f"UUID={BTRFS_UUID} / btrfs defaults,subvol=@ 0 0\n"
                f"UUID={BTRFS_UUID} /home btrfs defaults,subvol=@home 0 0\n"
                f"UUID={_fat_uuid(ESP_SERIAL)} /boot/efi vfat umask=0077 0 1\n")
        finally:
            sh("umount", mnt)
        _install_grub(dev, mnt, efi)
    esp = tmp / "esp.img"
    sh("truncate", "-s", str(parts[2][1] * 512), esp)
    sh("mkfs.fat", "-F", "16", "-i", ESP_SERIAL, "-n", "ESP", esp)
    env = dict(os.environ, MTOOLS_SKIP_CHECK="1")
    for d in ("::/EFI", "::/EFI/BOOT", "::/EFI/debian"):
        sh("mmd", "-i", esp, d, env=env)
    sh("mcopy", "-i", esp, efi, "::/EFI/BOOT/BOOTX64.EFI", env=env)
    sh("mcopy", "-i", esp, efi, "::/EFI/debian/grubx64.efi", env=env)
    sh("dd", f"if={esp}", f"of={img}", "bs=1M", f"seek={parts[2][0] * 512}", "oflag=seek_bytes",
       "conv=notrunc,sparse")


def _install_grub(dev: str, mnt: str, efi: Path) -> None:
    """In a chroot of `@`: grub-install for BIOS, update-grub, and the x86_64-efi core image."""
    sh("mount", "-t", "btrfs", "-o", "subvol=@", f"{dev}p3", mnt)
    binds = []
    try:
        for d in ("dev", "proc", "sys"):
            sh("mount", "--bind", f"/{d}", f"{mnt}/{d}")
            binds.append(f"{mnt}/{d}")
        sh("chroot", mnt, "grub-install", "--target=i386-pc", dev)
        sh("chroot", mnt, "update-grub")
        grub_cfg = Path(mnt, "boot/grub/grub.cfg").read_text()
        if "rootflags=subvol=@" not in grub_cfg:
            raise RuntimeError("update-grub did not write rootflags=subvol=@ for the btrfs root")
        sh("chroot", mnt, "mkdir", "-p", "/boot/grub/x86_64-efi")
        sh("chroot", mnt, "sh", "-c", "cp /usr/lib/grub/x86_64-efi/*.mod /usr/lib/grub/x86_64-efi/*.lst "
           "/boot/grub/x86_64-efi/")
        Path(mnt, "tmp/load.cfg").write_text(f"search.fs_uuid {BTRFS_UUID} root\nset prefix=($root)'/@/boot/grub'\n")
        sh("chroot", mnt, "grub-mkimage", "-O", "x86_64-efi", "-o", "/tmp/grubx64.efi",
           "-c", "/tmp/load.cfg", "-p", "", "part_gpt", "part_msdos", "btrfs", "search_fs_uuid")
        shutil.copyfile(Path(mnt, "tmp/grubx64.efi"), efi)
        Path(mnt, "tmp/grubx64.efi").unlink()
        Path(mnt, "tmp/load.cfg").unlink()
    finally:
        for b in reversed(binds):
            sh("umount", "-l", b, check=False)
        sh("umount", mnt)


if __name__ == "__main__":
    print(debian_btrfs_disk())
