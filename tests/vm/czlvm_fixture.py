"""A Clonezilla image of a disk holding LVM, made by the REAL Clonezilla (Debian's `clonezilla` + `drbl`,
`ocs-sr savedisk` in batch mode). This host has no device-mapper, so ocs-sr cannot read logical volumes
here: the image is made inside the live ISO. Clonezilla's scripts and the few tools they need that the
live system lacks (bc, file) are the host's own installed packages (`dpkg -L`), carried on the output
disk and copied into the guest's writable root; partclone, lvm2, sfdisk, parted, zstd are the live
system's.

The guest builds a GPT disk: partition 1 ext4 (a plain partition beside the group), partition 2 an LVM
PV holding volume group czvg with `root` (ext4, in two segments), `data` (xfs) and `swap`; it fills them,
records the UUIDs and file hashes (expect.json) and runs `ocs-sr -z9p -i 1 savedisk czlvm vdX` (zstd,
split into 1 MB pieces). The host copies the image out of the output disk. Cached under
/var/cache/lifeboat/clonezilla-fixtures/czlvm-<key>, the key a hash of this file and the host's package
versions of what shapes the image (the live ISO's partclone and lvm2 are not in it: the image is rebuilt
when this file or Clonezilla changes, not with every ISO). One boot, about 5 minutes on a quiet machine
(11 under this host's load: ocs-sr itself took 666 s).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
import time
from pathlib import Path

from bootdisk import CACHE, _locked, sh
from iso_helpers import BOOT_TIMEOUT, blank_disk, ready_pattern, shell, wait_for_all
from qemu import Drive, Machine

NAME = "czlvm"
VG = "czvg"
HOST_PACKAGES = ("clonezilla", "drbl", "bc", "file", "libmagic1", "libmagic-mgc", "pigz")
OUT = CACHE / "clonezilla-fixtures"
SOURCE_MIB, OUT_MIB = 512, 256
SRC = "/dev/disk/by-id/virtio-LBCZSRC"

BUILD = (
    f"sgdisk -n 1:2048:+32M -t 1:8300 -n 2:0:0 -t 2:8e00 {SRC} >/dev/null && partx -u {SRC} && udevadm settle"
    f" && mkfs.ext4 -q -L czboot {SRC}-part1"
    f" && pvcreate -q {SRC}-part2 && vgcreate -q --addtag site-cz {VG} {SRC}-part2"
    f" && lvcreate -q -y -n root -L 48M --addtag role-root {VG} && lvcreate -q -y -n data -L 304M {VG}"
    f" && lvcreate -q -y -n swap -L 16M {VG} && lvextend -q -L +16M {VG}/root"  # root in two segments
    f" && mkfs.ext4 -q -L czroot /dev/{VG}/root && mkfs.xfs -q -L czdata /dev/{VG}/data"
    f" && mkswap -L czswap /dev/{VG}/swap >/dev/null"
)
FILL = (
    f"mkdir -p /mnt/b /mnt/r /mnt/d && mount {SRC}-part1 /mnt/b && mount /dev/{VG}/root /mnt/r"
    f" && mount /dev/{VG}/data /mnt/d"
    " && head -c 3M /dev/urandom >/mnt/b/boot.bin && head -c 6M /dev/urandom >/mnt/r/a.bin"
    " && mkdir /mnt/r/etc && echo clonezilla-lvm >/mnt/r/etc/hostname && head -c 9M /dev/urandom >/mnt/d/b.bin"
    " && echo hello >/mnt/d/hello.txt && sync"
)
# file -> sha256, by where it lives: "p1" partition 1, "root"/"data" the logical volumes
SUMS = ("(cd /mnt/b && sha256sum boot.bin | sed 's/^/p1 /'; cd /mnt/r && sha256sum a.bin etc/hostname | sed 's/^/root /';"
        " cd /mnt/d && sha256sum b.bin hello.txt | sed 's/^/data /')")
REPORT = "--reportformat json --units b --nosuffix -o vg_name,vg_uuid,vg_tags,lv_name,lv_uuid,lv_tags,lv_size"
# ocs-sr as tests/integration/clonezilla_fixtures.py runs it; its reboot/poweroff bound to `true`
OCS = (
    "for c in reboot poweroff halt shutdown; do [ -e /usr/sbin/$c ] && mount --bind /bin/true /usr/sbin/$c; done;"
    " mkdir -p /home/partimag /mnt/out/img && mount --bind /mnt/out/img /home/partimag"
    " && ocs-sr -q2 -b -nogui -j2 -sfsck -scs -senc -noabo -p true -z9p -i 1 savedisk {name} {disk}"
    " </dev/null >/mnt/out/ocs-sr.log 2>&1; rc=$?; tail -30 /mnt/out/ocs-sr.log; (exit $rc)"
)


def _versions() -> str:
    return sh("dpkg-query", "-W", "-f", "${Package}=${Version}\n", *HOST_PACKAGES, check=False).stdout


def cache_dir() -> Path:
    key = hashlib.sha256(Path(__file__).read_bytes() + _versions().encode()).hexdigest()[:16]
    return OUT / f"{NAME}-{key}"


def _tools_tree(dest: Path) -> None:
    """The host's installed files of HOST_PACKAGES (files and symlinks, not directories) under dest."""
    for package in HOST_PACKAGES:
        for line in sh("dpkg", "-L", package).stdout.splitlines():
            src = Path(line)
            if line.startswith("/") and (src.is_symlink() or src.is_file()):
                target = dest / line.lstrip("/")
                target.parent.mkdir(parents=True, exist_ok=True)
                if src.is_symlink():
                    target.symlink_to(src.readlink())
                else:
                    shutil.copy2(src, target)


def _output_disk(path: Path, work: Path) -> Path:
    tree = work / "outfs"
    _tools_tree(tree / "tools")
    blank_disk(path, OUT_MIB)
    sh("mkfs.ext4", "-q", "-F", "-L", "LBCZOUT", "-d", tree, path)
    return path


def _ok(vm: Machine, command: str, timeout: float = 300) -> str:
    rc, out = shell(vm, command, timeout)
    if rc != 0:
        raise AssertionError(f"{command}\n-> rc {rc}:\n{out}")
    return out


def _in_guest(vm: Machine) -> dict:
    _ok(vm, "mkdir -p /mnt/out && mount LABEL=LBCZOUT /mnt/out && cp -a /mnt/out/tools/. / && ocs-sr --help >/dev/null"
            " 2>&1; command -v ocs-sr bc file")
    _ok(vm, BUILD)
    _ok(vm, FILL)
    sums = [line.split() for line in _ok(vm, SUMS).splitlines() if line.strip()]
    blk = _ok(vm, f"blkid -o export {SRC}-part1 /dev/{VG}/root /dev/{VG}/data /dev/{VG}/swap")
    _ok(vm, "umount /mnt/b /mnt/r /mnt/d")
    out = _ok(vm, f"lvs --devices {SRC}-part2 {REPORT}")
    lvs = json.loads(out[out.index("{"):])["report"][0]["lv"]
    pv = _ok(vm, f"pvs --devices {SRC}-part2 --noheadings -o pv_uuid").strip()
    _ok(vm, f"vgchange -an {VG}")
    disk = _ok(vm, f"basename $(readlink -f {SRC})").strip()
    started = time.monotonic()
    print(_ok(vm, OCS.format(name=NAME, disk=disk), timeout=1800))
    print(f"ocs-sr savedisk in the guest: {time.monotonic() - started:.0f} s")
    _ok(vm, f"ls -la /mnt/out/img/{NAME} && sync && umount /home/partimag /mnt/out")
    return {"disk": disk, "pv_uuid": pv, "lvs": {row["lv_name"]: row for row in lvs}, "blkid": blk,
            "sums": [{"where": w, "sha256": h, "file": f} for w, h, f in sums]}


def fixture(live_iso: Path) -> Path:
    """The cached directory holding the Clonezilla image NAME/ and NAME.expect.json (built once, one
    live-ISO boot of a few minutes)."""
    root = cache_dir()
    if (root / f"{NAME}.expect.json").exists():
        return root
    with _locked("czlvm-fixture"):
        if (root / f"{NAME}.expect.json").exists():
            return root
        with tempfile.TemporaryDirectory(prefix="czlvm-", dir="/var/tmp") as tmp:
            work = Path(tmp)
            out = _output_disk(work / "out.img", work)
            disks = [Drive(live_iso, "sata", media="cdrom", bootindex=0),
                     Drive(blank_disk(work / "source.img", SOURCE_MIB), "virtio", serial="LBCZSRC"),
                     Drive(out, "virtio", serial="LBCZOUT")]
            with Machine(disks, firmware="bios", workdir=work, memory=1536, name="czlvm") as vm:
                wait_for_all(vm, [ready_pattern(_version(), "ttyS0", "shell")], BOOT_TIMEOUT)
                time.sleep(2)
                expect = _in_guest(vm)
            mnt = work / "mnt"
            mnt.mkdir()
            sh("mount", "-o", "ro", out, mnt)
            try:
                staged = work / "staged"
                staged.mkdir()
                shutil.copytree(mnt / "img" / NAME, staged / NAME, symlinks=True)
                shutil.copy2(mnt / "ocs-sr.log", staged / f"{NAME}.ocs-sr.log")
            finally:
                sh("umount", mnt)
            (staged / f"{NAME}.expect.json").write_text(json.dumps(expect, indent=1))
            for old in OUT.glob(f"{NAME}-*"):
                shutil.rmtree(old, ignore_errors=True)
            OUT.mkdir(parents=True, exist_ok=True)
            shutil.move(str(staged), root)
    return root


def _version() -> str:
    from lifeboat import __version__

    return __version__


if __name__ == "__main__":
    import sys

    print(fixture(Path(sys.argv[1])))
