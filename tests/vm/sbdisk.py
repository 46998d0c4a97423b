"""The "Secure Boot Debian" fixture: Debian booting through Debian's signed chain, laid out as the Debian
installer lays out a UEFI machine with a separate /boot (root on LVM is still to come: a plain ext4 root here).

  GPT: p1 ESP (64 MiB FAT16, /boot/efi), p2 /boot (ext4), p3 / (ext4)
  ESP: \\EFI\\debian\\{shimx64,grubx64,mmx64}.efi and grub.cfg (search /boot by UUID, configfile /grub/grub.cfg),
       \\EFI\\BOOT\\BOOTX64.EFI = shim with grubx64.efi and mmx64.efi beside it (what Debian's grub-install
       --uefi-secure-boot --force-extra-removable writes): it boots under OVMF with Secure Boot enforced and
       an empty NVRAM.

The rootfs comes from images/debian-sb-rootfs.sh (debootstrap with shim-signed, grub-efi-amd64-signed and
the signed linux-image-amd64). The system's own update-grub runs in a chroot on a loop device (the host
mounts ext4); the ESP is filled with mtools (the host kernel has no vfat), from the system's own signed files.
Boots to `lifeboat-fixture login:` on the serial console. Cached like bootdisk's fixtures.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import bootdisk
from bootdisk import CACHE, sh

SCRIPT = bootdisk.HERE / "images" / "debian-sb-rootfs.sh"
SIZE_MIB, ESP_MIB, BOOT_MIB = 1280, 64, 256
ROOT_UUID = "6c1f0b3e-1a2b-4c3d-8e4f-000000005b01"
BOOT_UUID = "6c1f0b3e-1a2b-4c3d-8e4f-000000005b02"
ESP_SERIAL = "5B0E0001"
DISK_GUID = "4c1f0b3e-0000-4000-8000-0000000005b0"
PART_GUIDS = [f"4c1f0b3e-0000-4000-8000-0000000005b{i}" for i in (1, 2, 3)]
SIGNED = {"shimx64.efi": "usr/lib/shim/shimx64.efi.signed", "mmx64.efi": "usr/lib/shim/mmx64.efi.signed",
          "grubx64.efi": "usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed"}


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
    """Path of the cached image (build it if missing). Copy it before writing to it."""
    tar = rootfs()
    key = bootdisk._key("debian-sb", SIZE_MIB, tar.name, Path(__file__).read_bytes())
    out = CACHE / "fixtures" / f"debian-sb-{SIZE_MIB}M-{key}.img"
    if out.exists():
        return out
    with bootdisk._locked("fixtures"):
        if out.exists():
            return out
        out.parent.mkdir(parents=True, exist_ok=True)
        with bootdisk._unpacked(tar) as root, tempfile.TemporaryDirectory(dir=CACHE) as tmp:
            img = Path(tmp) / "disk.img"
            _build(root, Path(tmp), img)
            os.replace(img, out)
        bootdisk._prune(out)
    return out


def _split_boot(root: Path, tmp: Path) -> Path:
    """Move the rootfs's /boot into its own tree (the /boot partition), leaving the mount point."""
    boot = tmp / "boot"
    shutil.move(root / "boot", boot)
    (root / "boot").mkdir()
    (boot / "efi").mkdir(exist_ok=True)
    (boot / "grub").mkdir(exist_ok=True)
    (root / "etc/fstab").write_text(
        f"UUID={ROOT_UUID} / ext4 errors=remount-ro 0 1\n"
        f"UUID={BOOT_UUID} /boot ext4 defaults 0 2\n"
        f"UUID={ESP_SERIAL[:4]}-{ESP_SERIAL[4:]} /boot/efi vfat umask=0077 0 1\n")
    return boot


def _build(root: Path, tmp: Path, img: Path) -> None:
    sh("truncate", "-s", f"{SIZE_MIB}M", img)
    sh("sgdisk", "-U", DISK_GUID,
       "-n", f"1:2048:+{ESP_MIB}M", "-t", "1:EF00", "-c", "1:EFI system partition", "-u", f"1:{PART_GUIDS[0]}",
       "-n", f"2:0:+{BOOT_MIB}M", "-t", "2:8300", "-c", "2:boot", "-u", f"2:{PART_GUIDS[1]}",
       "-n", "3:0:0", "-t", "3:8300", "-c", "3:root", "-u", f"3:{PART_GUIDS[2]}", img)
    parts = bootdisk._partitions(img)
    boot = _split_boot(root, tmp)
    for num, uuid, label, tree in ((2, BOOT_UUID, "debboot", boot), (3, ROOT_UUID, "debroot", root)):
        start, size = parts[num]
        sh("mke2fs", "-q", "-F", "-t", "ext4", "-U", uuid, "-L", label, "-E", f"offset={start * 512}",
           "-d", tree, img, f"{size * 512 // 1024}k")
    _update_grub(img)
    esp = tmp / "esp.img"
    sh("truncate", "-s", str(parts[1][1] * 512), esp)
    _fill_esp(esp, root)
    sh("dd", f"if={esp}", f"of={img}", "bs=1M", f"seek={parts[1][0] * 512}", "oflag=seek_bytes", "conv=notrunc,sparse")


def _update_grub(img: Path) -> None:
    """The system's own update-grub in a chroot, root and /boot mounted from the image on a loop device."""
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
            if "root=UUID=" + ROOT_UUID not in Path(mnt, "boot/grub/grub.cfg").read_text():
                raise RuntimeError("update-grub wrote a grub.cfg without the root's UUID")
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
