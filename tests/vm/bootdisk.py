"""Bootable fixture disks, built from Debian's own packages, cached under /var/cache/lifeboat/fixtures.

Two layouts, both booting under SeaBIOS and OVMF:

  gpt: p1 BIOS boot (1 MiB, GRUB core.img), p2 ESP (32 MiB FAT16), p3 ext4 root
  mbr: p1 ESP (type 0xef, 32 MiB FAT16), p2 ext4 root (active); GRUB core.img in the MBR gap

The root holds Debian's kernel (linux-image-amd64's vmlinuz) and an initramfs made of busybox-static and a
tiny /init that prints `LIFEBOAT-FIXTURE-BOOTED name=<layout> firmware=<bios|uefi>` on the serial console
and powers off. GRUB is installed for i386-pc with the host's grub-install on a loop device (the host can
mount ext4), and for x86_64-efi as \\EFI\\BOOT\\BOOTX64.EFI (plus \\EFI\\debian\\grubx64.efi) made with
grub-mkimage and copied into the FAT image with mtools (the host kernel has no vfat driver). Every UUID,
GUID and serial is fixed (timestamps are not, so two builds differ in bytes, never in identity); the cache
key covers this file, the kernel and busybox packages and the GRUB, dosfstools and e2fsprogs packages.

The heavier "real system" (debootstrapped Debian that boots to a login prompt) is `debian_disk()`.
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import os
import shutil
import subprocess
import tempfile
from contextlib import contextmanager
from pathlib import Path

HERE = Path(__file__).resolve().parent
CACHE = Path(os.environ.get("LIFEBOAT_CACHE", "/var/cache/lifeboat"))
MIB = 1024 * 1024
MARKER = "LIFEBOAT-FIXTURE-BOOTED"
LOGIN_PROMPT = "lifeboat-fixture login:"

ROOT_UUID = {"gpt": "6c1f0b3e-1a2b-4c3d-8e4f-000000000a01", "mbr": "6c1f0b3e-1a2b-4c3d-8e4f-000000000b01",
             "debian": "6c1f0b3e-1a2b-4c3d-8e4f-000000000d01"}
ESP_SERIAL = {"gpt": "1B0A0001", "mbr": "1B0B0001", "debian": "1B0D0001"}  # FAT volume ids
DISK_GUID = "4c1f0b3e-0000-4000-8000-0000000000a0"
PART_GUIDS = ["4c1f0b3e-0000-4000-8000-0000000000a1", "4c1f0b3e-0000-4000-8000-0000000000a2",
              "4c1f0b3e-0000-4000-8000-0000000000a3"]
MBR_SIGNATURE = "0x1b0b1b0b"

GRUB_EFI_MODULES = (
    "part_gpt part_msdos fat ext2 search search_fs_uuid normal configfile linux echo serial terminal "
    "test gzio all_video efi_gop boot reboot halt ls cat"
).split()


def sh(*argv, **kw) -> subprocess.CompletedProcess:
    kw.setdefault("check", True)
    if "input" not in kw:
        kw.setdefault("stdin", subprocess.DEVNULL)
    kw.setdefault("capture_output", True)
    kw.setdefault("env", dict(os.environ))
    kw["env"]["PATH"] = kw["env"].get("PATH", "/usr/bin:/bin") + ":/usr/sbin:/sbin"
    proc = subprocess.run([str(a) for a in argv], text=True, **kw)
    return proc


# ---- inputs from Debian ---------------------------------------------------------------------------
def _candidate_deb(package: str) -> str | None:
    """The file name `apt-get download` gives the candidate version of `package` (epoch colon as %3a)."""
    fields = dict(line.split(": ", 1) for line in sh("apt-cache", "show", "--no-all-versions", package,
                                                      check=False).stdout.splitlines() if ": " in line)
    if "Version" not in fields or "Architecture" not in fields:
        return None
    return f"{package}_{fields['Version'].replace(':', '%3a')}_{fields['Architecture']}.deb"


def _apt_download(package: str, dest: Path) -> Path:
    """The candidate .deb of `package` in `dest`: downloaded only when that version is not there yet."""
    dest.mkdir(parents=True, exist_ok=True)
    want = _candidate_deb(package)
    if want and (dest / want).is_file():
        return dest / want
    have = sorted(dest.glob(f"{package}_*.deb"))
    for attempt in range(3):
        proc = sh("apt-get", "download", package, cwd=dest, check=False)
        if proc.returncode == 0:
            break
        if "Unable to locate" in proc.stderr or "no installation candidate" in proc.stderr:
            sh("apt-get", "update", "-q", check=False)
    new = sorted(dest.glob(f"{package}_*.deb"), key=lambda p: p.stat().st_mtime)
    if not new and not have:
        raise RuntimeError(f"apt-get download {package} failed: {proc.stderr[-500:]}")
    return (new or have)[-1]


@functools.cache
def kernel_package() -> str:
    out = sh("apt-cache", "depends", "linux-image-amd64", check=False).stdout
    if "linux-image-" not in out.replace("linux-image-amd64", ""):
        sh("apt-get", "update", "-q", check=False)
        out = sh("apt-cache", "depends", "linux-image-amd64").stdout
    for line in out.splitlines():
        word = line.split(":")[-1].strip()
        if line.strip().startswith("Depends:") and word.startswith("linux-image-") and word.endswith("-amd64"):
            return word
    raise RuntimeError(f"cannot find the kernel linux-image-amd64 depends on:\n{out}")


def _extract(deb: Path, member: str, dest: Path) -> Path:
    with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
        sh("dpkg-deb", "-x", deb, tmp)
        matches = sorted(Path(tmp).glob(member))
        if not matches:
            raise RuntimeError(f"{member} not found in {deb}")
        shutil.copyfile(matches[0], dest)
    return dest


@functools.cache
def debian_inputs() -> dict[str, Path]:
    """Debian's kernel and static busybox, downloaded once into the cache (looked up once per process)."""
    debs = CACHE / "debs"
    kdeb = _apt_download(kernel_package(), debs)
    bdeb = _apt_download("busybox-static", debs)
    out = CACHE / "inputs"
    out.mkdir(parents=True, exist_ok=True)
    vmlinuz = out / (kdeb.stem + ".vmlinuz")
    busybox = out / (bdeb.stem + ".busybox")
    if not vmlinuz.exists():
        _extract(kdeb, "boot/vmlinuz-*", vmlinuz)
    if not busybox.exists():
        _extract(bdeb, "bin/busybox", busybox)
        busybox.chmod(0o755)
    return {"vmlinuz": vmlinuz, "busybox": busybox}


# ---- initramfs (newc cpio written here: no cpio binary needed, device nodes without root) -----------
def _cpio_entry(name: str, mode: int, data: bytes = b"", rdev: tuple[int, int] = (0, 0), ino: int = 0) -> bytes:
    namez = name.encode() + b"\0"
    fields = [ino, mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1], len(namez), 0]
    head = b"070701" + b"".join(b"%08X" % f for f in fields) + namez
    head += b"\0" * (-len(head) % 4)
    return head + data + b"\0" * (-len(data) % 4)


INIT_SCRIPT = """#!/bin/busybox sh
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sys /sys
fw=bios
[ -d /sys/firmware/efi ] && fw=uefi
name=unknown
for arg in $(/bin/busybox cat /proc/cmdline); do
  case "$arg" in lifeboat.fixture=*) name=${arg#lifeboat.fixture=} ;; esac
done
echo "%s name=$name firmware=$fw"
/bin/busybox sync
/bin/busybox poweroff -f
""" % MARKER


def make_initramfs(busybox: Path, dest: Path) -> Path:
    entries = [
        _cpio_entry("dev", 0o040755, ino=1), _cpio_entry("dev/console", 0o020600, rdev=(5, 1), ino=2),
        _cpio_entry("proc", 0o040755, ino=3), _cpio_entry("sys", 0o040755, ino=4),
        _cpio_entry("bin", 0o040755, ino=5),
        _cpio_entry("bin/busybox", 0o100755, busybox.read_bytes(), ino=6),
        _cpio_entry("bin/sh", 0o120777, b"busybox", ino=7),
        _cpio_entry("init", 0o100755, INIT_SCRIPT.encode(), ino=8),
        _cpio_entry("TRAILER!!!", 0),
    ]
    dest.write_bytes(b"".join(entries))
    return dest


# ---- GRUB ---------------------------------------------------------------------------------------
def grub_cfg(name: str, root_uuid: str) -> str:
    return f"""serial --unit=0 --speed=115200
terminal_input serial console
terminal_output serial console
set timeout=0
set default=0
menuentry "Lifeboat fixture {name}" {{
  search --no-floppy --fs-uuid --set=root {root_uuid}
  echo "LIFEBOAT-GRUB platform=$grub_platform"
  linux /boot/vmlinuz console=ttyS0,115200 panic=5 lifeboat.fixture={name}
  initrd /boot/initrd.img
}}
"""


def make_grub_efi(root_uuid: str, dest: Path) -> Path:
    """A GRUB EFI image whose embedded config finds the root by UUID (what Debian's grub-install does)."""
    with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
        early = Path(tmp) / "early.cfg"
        early.write_text(
            f"search.fs_uuid {root_uuid} root\nset prefix=($root)/boot/grub\nconfigfile $prefix/grub.cfg\n"
        )
        sh("grub-mkimage", "-O", "x86_64-efi", "-o", dest, "-p", "/boot/grub", "-c", early, *GRUB_EFI_MODULES)
    return dest


def fill_esp(esp_img: Path, serial: str, grub_efi: Path) -> None:
    env = dict(os.environ, MTOOLS_SKIP_CHECK="1")
    sh("mkfs.fat", "-F", "16", "-i", serial, "-n", "ESP", esp_img)
    for d in ("::/EFI", "::/EFI/BOOT", "::/EFI/debian"):
        sh("mmd", "-i", esp_img, d, env=env)
    sh("mcopy", "-i", esp_img, grub_efi, "::/EFI/BOOT/BOOTX64.EFI", env=env)
    sh("mcopy", "-i", esp_img, grub_efi, "::/EFI/debian/grubx64.efi", env=env)


@contextmanager
def loop_device(image: Path, readonly: bool = False):
    """A loop device with partition nodes added by partx (this host's kernel parses no tables)."""
    dev = sh("losetup", "--find", "--show", *(["--read-only"] if readonly else []), image).stdout.strip()
    held = None
    try:
        sh("udevadm", "settle", check=False)
        # A shared BSD lock on the whole disk while we use it (as lifeboat.locks.holding_disk does): udevd
        # needs an exclusive one to re-read the table when a tool closes a partition it wrote (mkfs,
        # grub-install, a restore), and on this host a re-read drops every partition node. With two vm
        # workers building and restoring at once, such closes are frequent.
        held = os.open(dev, os.O_RDONLY | os.O_CLOEXEC)
        fcntl.flock(held, fcntl.LOCK_SH)
        sh("partx", "-a", dev, check=False)
        sh("partx", "-u", dev, check=False)
        yield dev
    finally:
        if held is not None:
            os.close(held)
        sh("partx", "-d", dev, check=False)
        sh("losetup", "-d", dev, check=False)


def grub_install_bios(image: Path, root_part: int) -> None:
    """The host's grub-install --target=i386-pc onto the image through a loop device, root mounted."""
    with loop_device(image) as dev, tempfile.TemporaryDirectory(dir=CACHE) as mnt:
        part = f"{dev}p{root_part}"
        if not Path(part).exists():
            raise RuntimeError(f"{part} did not appear")
        sh("mount", "-t", "ext4", part, mnt)
        try:
            sh("grub-install", "--target=i386-pc", f"--boot-directory={mnt}/boot",
               "--modules=part_gpt part_msdos ext2", "--no-floppy", dev)
            (Path(mnt) / "boot/grub/grub.cfg").exists() or _fail("grub.cfg missing")
        finally:
            sh("umount", mnt)


def _fail(msg: str):
    raise RuntimeError(msg)


# ---- the fixture disks ------------------------------------------------------------------------------
def _key(*parts) -> str:
    h = hashlib.sha256()
    h.update(Path(__file__).read_bytes())
    for p in parts:
        h.update(str(p).encode())
    h.update(sh("dpkg-query", "-W", "grub-common", "grub2-common", "grub-pc-bin", "grub-efi-amd64-bin",
                "dosfstools", "e2fsprogs", check=False).stdout.encode())
    return h.hexdigest()[:16]


def _prune(out: Path) -> None:
    """Remove older cached builds of the same fixture (same name before the key)."""
    prefix = out.name.rsplit("-", 1)[0] + "-"
    for old in out.parent.glob(prefix + "*"):
        if old != out and old.name.rsplit("-", 1)[0] + "-" == prefix:
            shutil.rmtree(old) if old.is_dir() else old.unlink()


@contextmanager
def _locked(name: str):
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / f".{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def fixture_disk(layout: str = "gpt", size_mib: int = 100) -> Path:
    """Path of the cached fixture image (build it if missing). Copy it before writing to it."""
    if layout not in ("gpt", "mbr"):
        raise ValueError(layout)
    inputs = debian_inputs()
    key = _key(layout, size_mib, inputs["vmlinuz"].name, inputs["busybox"].name)
    out = CACHE / "fixtures" / f"{layout}-{size_mib}M-{key}.img"
    if out.exists():  # images appear whole (os.replace): no lock needed to use one
        return out
    with _locked("fixtures"):
        if out.exists():
            return out
        out.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
            img = Path(tmp) / "disk.img"
            _build(layout, size_mib, inputs, Path(tmp), img)
            os.replace(img, out)
        _prune(out)
    return out


def _build(layout: str, size_mib: int, inputs: dict[str, Path], tmp: Path, img: Path) -> None:
    sh("truncate", "-s", f"{size_mib}M", img)
    esp_mib = 32
    if layout == "gpt":
        sh("sgdisk", "-U", DISK_GUID,
           "-n", "1:2048:+1M", "-t", "1:EF02", "-c", "1:bios", "-u", f"1:{PART_GUIDS[0]}",
           "-n", f"2:0:+{esp_mib}M", "-t", "2:EF00", "-c", "2:esp", "-u", f"2:{PART_GUIDS[1]}",
           "-n", "3:0:0", "-t", "3:8300", "-c", "3:root", "-u", f"3:{PART_GUIDS[2]}", img)
        esp_num, root_num = 2, 3
    else:
        sh("sfdisk", img, input=(
            f"label: dos\nlabel-id: {MBR_SIGNATURE}\n"
            f"start=2048, size={esp_mib * 2048}, type=ef\n"
            f"start={2048 + esp_mib * 2048}, type=83, bootable\n"))
        esp_num, root_num = 1, 2
    parts = _partitions(img)
    # ext4 root, populated with mke2fs -d straight into the image at the partition's offset.
    stage = tmp / "root"
    (stage / "boot/grub").mkdir(parents=True)
    shutil.copyfile(inputs["vmlinuz"], stage / "boot/vmlinuz")
    make_initramfs(inputs["busybox"], stage / "boot/initrd.img")
    (stage / "boot/grub/grub.cfg").write_text(grub_cfg(layout, ROOT_UUID[layout]))
    (stage / "etc").mkdir()
    (stage / "etc/fstab").write_text(f"UUID={ROOT_UUID[layout]} / ext4 defaults 0 1\n")
    start, size = parts[root_num]
    sh("mke2fs", "-q", "-F", "-t", "ext4", "-U", ROOT_UUID[layout], "-L", f"lb{layout}root",
       "-E", f"offset={start * 512},root_owner=0:0", "-d", stage, img, f"{size * 512 // 1024}k")
    # ESP built as its own file with mtools, then written into place.
    esp = tmp / "esp.img"
    estart, esize = parts[esp_num]
    sh("truncate", "-s", str(esize * 512), esp)
    fill_esp(esp, ESP_SERIAL[layout], make_grub_efi(ROOT_UUID[layout], tmp / "grubx64.efi"))
    sh("dd", f"if={esp}", f"of={img}", "bs=1M", f"seek={estart * 512}", "oflag=seek_bytes", "conv=notrunc,sparse")
    grub_install_bios(img, root_num)


def _partitions(img: Path) -> dict[int, tuple[int, int]]:
    """{number: (start sector, size in sectors)} from sfdisk --json."""
    import json

    table = json.loads(sh("sfdisk", "--json", img).stdout)["partitiontable"]
    out = {}
    for p in table["partitions"]:
        num = int("".join(c for c in p["node"][len(str(img)):] if c.isdigit()))
        out[num] = (p["start"], p["size"])
    return out


# ---- the real system: debootstrapped Debian ------------------------------------------------------------
ROOTFS_SCRIPT = HERE / "images" / "debian-rootfs.sh"
DEBIAN_SIZE_MIB = 1024
RESCUE_UUID = "6c1f0b3e-1a2b-4c3d-8e4f-000000000e01"


def debian_rootfs() -> Path:
    """The debootstrapped rootfs tarball (about 2 minutes to build cold, cached by the script's hash)."""
    key = hashlib.sha256(ROOTFS_SCRIPT.read_bytes()).hexdigest()[:16]
    out = CACHE / "rootfs" / f"debian-{key}.tar"
    if out.exists():
        return out
    with _locked("rootfs"):
        if not out.exists():
            out.parent.mkdir(parents=True, exist_ok=True)
            proc = subprocess.run(["bash", str(ROOTFS_SCRIPT), str(out)], stdin=subprocess.DEVNULL,
                                  capture_output=True, text=True)
            if proc.returncode != 0:
                raise RuntimeError(f"{ROOTFS_SCRIPT} failed:\n{(proc.stdout + proc.stderr)[-3000:]}")
            _prune(out)
    return out


@contextmanager
def _unpacked(tar: Path):
    with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
        root = Path(tmp) / "root"
        root.mkdir()
        sh("tar", "-C", root, "--numeric-owner", "-xf", tar)
        yield root


def _kernel_files(root: Path) -> tuple[Path, Path]:
    vmlinuz = sorted((root / "boot").glob("vmlinuz-*"))[-1]
    initrd = sorted((root / "boot").glob("initrd.img-*"))[-1]
    return vmlinuz, initrd


def debian_disk() -> Path:
    """GPT: p1 BIOS boot, p2 ESP (FAT16, /boot/efi), p3 ext4 root; GRUB for i386-pc installed by the system's
    own grub-install in a chroot (on a loop device), update-grub run there too; for x86_64-efi the same core
    image grub-install would make (grub-mkimage + search.fs_uuid load.cfg + modules in /boot/grub/x86_64-efi),
    because grub-install refuses an --efi-directory that is not FAT and the host cannot mount FAT.
    Boots to `lifeboat-fixture login:` on the serial console."""
    tar = debian_rootfs()
    key = _key("debian", DEBIAN_SIZE_MIB, tar.name)
    out = CACHE / "fixtures" / f"debian-{DEBIAN_SIZE_MIB}M-{key}.img"
    if out.exists():
        return out
    with _locked("fixtures"):
        if out.exists():
            return out
        out.parent.mkdir(parents=True, exist_ok=True)
        with _unpacked(tar) as root, tempfile.TemporaryDirectory(dir=CACHE) as tmp:
            img = Path(tmp) / "disk.img"
            _build_debian(root, Path(tmp), img)
            os.replace(img, out)
        _prune(out)
    return out


def _fat_uuid(serial: str) -> str:
    return f"{serial[:4]}-{serial[4:]}"


def _build_debian(root: Path, tmp: Path, img: Path) -> None:
    sh("truncate", "-s", f"{DEBIAN_SIZE_MIB}M", img)
    sh("sgdisk", "-U", DISK_GUID,
       "-n", "1:2048:+1M", "-t", "1:EF02", "-c", "1:bios", "-u", f"1:{PART_GUIDS[0]}",
       "-n", "2:0:+64M", "-t", "2:EF00", "-c", "2:esp", "-u", f"2:{PART_GUIDS[1]}",
       "-n", "3:0:0", "-t", "3:8300", "-c", "3:root", "-u", f"3:{PART_GUIDS[2]}", img)
    parts = _partitions(img)
    (root / "boot/efi").mkdir(exist_ok=True)
    (root / "etc/fstab").write_text(
        f"UUID={ROOT_UUID['debian']} / ext4 errors=remount-ro 0 1\n"
        f"UUID={_fat_uuid(ESP_SERIAL['debian'])} /boot/efi vfat umask=0077 0 1\n"
    )
    start, size = parts[3]
    sh("mke2fs", "-q", "-F", "-t", "ext4", "-U", ROOT_UUID["debian"], "-L", "debroot",
       "-E", f"offset={start * 512}", "-d", root, img, f"{size * 512 // 1024}k")
    esp = tmp / "esp.img"
    sh("truncate", "-s", str(parts[2][1] * 512), esp)
    sh("mkfs.fat", "-F", "16", "-i", ESP_SERIAL["debian"], "-n", "ESP", esp)
    efi = tmp / "grubx64.efi"
    with loop_device(img) as dev, tempfile.TemporaryDirectory(dir=CACHE) as mnt:
        sh("mount", "-t", "ext4", f"{dev}p3", mnt)
        binds = []
        try:
            for d in ("dev", "proc", "sys"):
                sh("mount", "--bind", f"/{d}", f"{mnt}/{d}")
                binds.append(f"{mnt}/{d}")
            sh("chroot", mnt, "grub-install", "--target=i386-pc", dev)
            sh("chroot", mnt, "update-grub")
            sh("chroot", mnt, "mkdir", "-p", "/boot/grub/x86_64-efi")
            sh("chroot", mnt, "sh", "-c", "cp /usr/lib/grub/x86_64-efi/*.mod /usr/lib/grub/x86_64-efi/*.lst "
               "/boot/grub/x86_64-efi/")
            Path(mnt, "tmp/load.cfg").write_text(
                f"search.fs_uuid {ROOT_UUID['debian']} root\nset prefix=($root)'/boot/grub'\n")
            sh("chroot", mnt, "grub-mkimage", "-O", "x86_64-efi", "-o", "/tmp/grubx64.efi",
               "-c", "/tmp/load.cfg", "-p", "", "part_gpt", "part_msdos", "ext2", "search_fs_uuid")
            shutil.copyfile(Path(mnt, "tmp/grubx64.efi"), efi)
            Path(mnt, "tmp/grubx64.efi").unlink()
            Path(mnt, "tmp/load.cfg").unlink()
        finally:
            for b in reversed(binds):
                sh("umount", "-l", b, check=False)
            sh("umount", mnt)
    env = dict(os.environ, MTOOLS_SKIP_CHECK="1")
    for d in ("::/EFI", "::/EFI/BOOT", "::/EFI/debian"):
        sh("mmd", "-i", esp, d, env=env)
    sh("mcopy", "-i", esp, efi, "::/EFI/BOOT/BOOTX64.EFI", env=env)
    sh("mcopy", "-i", esp, efi, "::/EFI/debian/grubx64.efi", env=env)
    sh("dd", f"if={esp}", f"of={img}", "bs=1M", f"seek={parts[2][0] * 512}", "oflag=seek_bytes",
       "conv=notrunc,sparse")


def rescue_guest() -> dict[str, Path]:
    """The same Debian as one whole-disk ext4 (label LBRESCUE, its own UUID) plus its kernel and initrd,
    for booting with -kernel/-initrd and init=/usr/local/sbin/lifeboat-job (see images/debian-rootfs.sh)."""
    tar = debian_rootfs()
    key = _key("rescue", tar.name)
    out = CACHE / "fixtures" / f"rescue-{key}"
    if (out / "rescue.img").exists():  # written last, by os.replace
        return {"image": out / "rescue.img", "kernel": out / "vmlinuz", "initrd": out / "initrd.img"}
    with _locked("fixtures"):
        if not (out / "rescue.img").exists():
            out.mkdir(parents=True, exist_ok=True)
            with _unpacked(tar) as root:
                (root / "etc/fstab").write_text("LABEL=LBRESCUE / ext4 defaults 0 1\n")
                vmlinuz, initrd = _kernel_files(root)
                shutil.copyfile(vmlinuz, out / "vmlinuz")
                shutil.copyfile(initrd, out / "initrd.img")
                tmp_img = out / "rescue.img.tmp"
                sh("mke2fs", "-q", "-F", "-t", "ext4", "-U", RESCUE_UUID, "-L", "LBRESCUE", "-d", root,
                   tmp_img, "900M")
                os.replace(tmp_img, out / "rescue.img")
            _prune(out)
    return {"image": out / "rescue.img", "kernel": out / "vmlinuz", "initrd": out / "initrd.img"}


def job_disk(dest: Path, files: dict[str, bytes | str | Path], size_mib: int = 64) -> Path:
    """A small ext4 disk labelled LBJOB holding /run (the job script) and whatever else the job needs.
    Directories (Path values that are dirs) are copied whole."""
    with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
        stage = Path(tmp)
        for name, content in files.items():
            target = stage / name
            target.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, Path) and content.is_dir():
                shutil.copytree(content, target, ignore=shutil.ignore_patterns("__pycache__"))
            elif isinstance(content, Path):
                shutil.copyfile(content, target)
            else:
                target.write_bytes(content.encode() if isinstance(content, str) else content)
        sh("mke2fs", "-q", "-F", "-t", "ext4", "-L", "LBJOB", "-d", stage, dest, f"{size_mib}M")
    return dest


def read_from_ext4(image: Path, path: str) -> str:
    """Read one file from an ext4 image without mounting it (debugfs)."""
    return sh("debugfs", "-R", f"cat {path}", image).stdout


# ---- a synthetic Windows disk: only the ESP layout matters -------------------------------------------------
MS_RESERVED = "E3C9E316-0B5C-4DB8-817D-F92DF00215AE"
MS_BASIC_DATA = "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7"


def fake_pe(size: int = 64 * 1024) -> bytes:
    """Bytes that pass bootfix's loader check (MZ header, plausible size). NOT a program."""
    head = b"MZ" + bytes(0x3a) + (0x80).to_bytes(4, "little")
    return (head + bytes(0x80 - len(head)) + b"PE\0\0" + b"lifeboat synthetic bootmgfw").ljust(size, b"\0")


def windows_disk(dest: Path) -> Path:
    """GPT like a Windows install: p1 ESP with \\EFI\\Microsoft\\Boot\\{bootmgfw.efi,BCD} (fakes), p2 MSR,
    p3 basic data (blank). No fallback \\EFI\\Boot\\bootx64.efi, so bootfix has that to write."""
    sh("truncate", "-s", "80M", dest)
    sh("sgdisk", "-n", "1:2048:+32M", "-t", "1:EF00", "-c", "1:EFI system partition",
       "-n", "2:0:+16M", "-t", f"2:{MS_RESERVED}", "-c", "2:Microsoft reserved partition",
       "-n", "3:0:0", "-t", f"3:{MS_BASIC_DATA}", "-c", "3:Basic data partition", dest)
    start, size = _partitions(dest)[1]
    with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
        esp, pe, bcd = Path(tmp) / "esp.img", Path(tmp) / "bootmgfw.efi", Path(tmp) / "BCD"
        pe.write_bytes(fake_pe())
        bcd.write_bytes(b"regf" + bytes(8188))
        sh("truncate", "-s", str(size * 512), esp)
        sh("mkfs.fat", "-F", "16", "-n", "SYSTEM", esp)
        env = dict(os.environ, MTOOLS_SKIP_CHECK="1")
        for d in ("::/EFI", "::/EFI/Microsoft", "::/EFI/Microsoft/Boot"):
            sh("mmd", "-i", esp, d, env=env)
        sh("mcopy", "-i", esp, pe, "::/EFI/Microsoft/Boot/bootmgfw.efi", env=env)
        sh("mcopy", "-i", esp, bcd, "::/EFI/Microsoft/Boot/BCD", env=env)
        sh("dd", f"if={esp}", f"of={dest}", "bs=1M", f"seek={start * 512}", "oflag=seek_bytes", "conv=notrunc")
    return dest


def copy_image(src: Path, dest: Path) -> Path:
    """A sparse copy of a cached image, to write to."""
    sh("cp", "--sparse=always", src, dest)
    return dest


if __name__ == "__main__":
    import sys

    for layout in sys.argv[1:] or ["gpt", "mbr"]:
        if layout == "debian":
            print(debian_disk())
        elif layout == "rescue":
            print(rescue_guest())
        else:
            print(fixture_disk(layout))
