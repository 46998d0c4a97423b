"""Shrinking is a per-filesystem capability: how each filesystem gets into a smaller partition.

  resize  ext2/3/4 (resize2fs), btrfs (`btrfs filesystem resize`, mounted), ntfs (ntfsresize): the
          filesystem is restored at its full size and shrunk in place (engine/shrink_restore.py says
          where the part beyond the new end lives meanwhile);
  copy    xfs (cannot shrink), vfat, exfat and anything else with a mkfs and a way to read it: the
          filesystem is made anew on the target with the same UUID, label and parameters, and its
          files are copied from the image's read-only view (rsync -aHAXS --numeric-ids: owners, modes,
          ACLs, extended attributes, hard links, sparse files, timestamps; mtools for FAT, whose
          driver a kernel may lack);
  swap    made anew, smaller;
  none    raw or unknown content, which keeps its size.

The minimum sizes are estimates from the data stored (the used-block map counts every block the
filesystem uses, metadata and journal included) plus what each filesystem needs to work in; they err
on the large side, because the plan refuses on them before anything is written.
"""

from __future__ import annotations

import os
import re
import shutil
import uuid as uuidlib
from dataclasses import dataclass
from enum import StrEnum

from lifeboat import mounts
from lifeboat.errors import LifeboatError
from lifeboat.run import run

MiB = 1024 * 1024
XFS_MIN = 300 * MiB  # mkfs.xfs refuses smaller filesystems (xfsprogs >= 5.19)
BTRFS_MIN = 256 * MiB  # the kernel's resize ioctl refuses a smaller size (EINVAL)
# rough rates for the plan's time estimates (this kind of machine, loop disks)
WRITE_RATE = 150 * MiB  # restoring stored data
MOVE_RATE = 40 * MiB  # data the resize tool moves from beyond the new end, through the overflow view
COPY_RATE = 40 * MiB  # files copied from the image view onto a new filesystem


class ShrinkMethod(StrEnum):
    RESIZE = "shrink the filesystem"
    COPY = "re-create the filesystem and copy its files"
    SWAP = "new swap, smaller"
    NONE = "cannot shrink"


@dataclass(frozen=True)
class ShrinkCapability:
    fstype: str
    method: ShrinkMethod
    tools: tuple[str, ...]
    overhead: int  # bytes the filesystem needs beyond its data
    factor: float = 1.1  # data grows by this much (fragmentation, metadata for the new size)
    floor: int = 0  # the filesystem's own minimum size

    def min_bytes(self, used: int) -> int:
        return max(self.floor, int(used * self.factor) + self.overhead)


CAPABILITIES = {c.fstype: c for c in (
    ShrinkCapability("ext2", ShrinkMethod.RESIZE, ("e2fsck", "resize2fs"), 16 * MiB),
    ShrinkCapability("ext3", ShrinkMethod.RESIZE, ("e2fsck", "resize2fs"), 16 * MiB),
    ShrinkCapability("ext4", ShrinkMethod.RESIZE, ("e2fsck", "resize2fs"), 16 * MiB),
    ShrinkCapability("btrfs", ShrinkMethod.RESIZE, ("btrfs", "mount", "umount"), 128 * MiB, 1.5,
                     floor=BTRFS_MIN),
    ShrinkCapability("ntfs", ShrinkMethod.RESIZE, ("ntfsresize",), 16 * MiB),
    ShrinkCapability("xfs", ShrinkMethod.COPY, ("mkfs.xfs", "xfs_info", "rsync", "mount", "umount"), 64 * MiB,
                     floor=XFS_MIN),
    ShrinkCapability("vfat", ShrinkMethod.COPY, ("mkfs.vfat", "mcopy"), 4 * MiB),
    ShrinkCapability("exfat", ShrinkMethod.COPY, ("mkfs.exfat", "rsync", "mount", "umount"), 8 * MiB),
    ShrinkCapability("swap", ShrinkMethod.SWAP, ("mkswap",), 0),
)}
CANNOT = ShrinkCapability("", ShrinkMethod.NONE, (), 0)


def capability(fstype: str) -> ShrinkCapability:
    cap = CAPABILITIES.get(fstype, CANNOT)
    if fstype == "exfat" and not _kernel_has("exfat"):
        return CANNOT  # its files can only be copied through the kernel's driver
    return cap


def _kernel_has(fstype: str) -> bool:
    with open("/proc/filesystems") as f:
        return any(line.split()[-1] == fstype for line in f if line.strip())


def estimate_seconds(method: ShrinkMethod, used: int, beyond: int) -> float:
    if method is ShrinkMethod.RESIZE:
        return used / WRITE_RATE + beyond / MOVE_RATE + 2
    if method is ShrinkMethod.COPY:
        return used / COPY_RATE + 2
    return 0.0


# ---------------------------------------------------------------- shrinking in place


def shrink_in_place(fstype: str, device: str, new_bytes: int, mountpoint: str) -> str:
    """Shrink the filesystem on `device` to `new_bytes`. Returns what was done."""
    if fstype in ("ext2", "ext3", "ext4"):
        proc = run(["e2fsck", "-f", "-y", device], check=False)
        if proc.returncode not in (0, 1):
            raise LifeboatError(f"e2fsck found errors it could not fix before shrinking: "
                                f"{(proc.stdout + proc.stderr).strip().splitlines()[-1:]}")
        run(["resize2fs", device, f"{new_bytes // 1024}K"])
        return f"shrunk with resize2fs to {new_bytes // MiB} MiB"
    if fstype == "btrfs":
        with mounts.mounted(device, mountpoint, fstype="btrfs"):
            # compact partly used chunks first (new chunks go to the lowest free space), so the chunks
            # beyond the new end fit below it when resize relocates them
            run(["btrfs", "balance", "start", "-dusage=90", "-musage=90", mountpoint])
            run(["btrfs", "filesystem", "resize", str(new_bytes), mountpoint])
        return f"shrunk with btrfs filesystem resize to {new_bytes // MiB} MiB"
    if fstype == "ntfs":
        run(["ntfsresize", "--force", "--no-progress-bar", "-s", str(new_bytes), device], input="y\n")
        return f"shrunk with ntfsresize to {new_bytes // MiB} MiB"
    raise LifeboatError(f"{fstype} cannot be shrunk in place")


# ---------------------------------------------------------------- re-create and copy


def xfs_mkfs_options(xfs_info: str) -> list[str]:
    """mkfs.xfs options that re-create a filesystem with the parameters xfs_info printed."""
    values = dict(re.findall(r"([a-z0-9_-]+)=([0-9a-z]+)", xfs_info))
    section = {k: v for k, v in re.findall(r"^(meta-data|data|naming)\s*=.*?bsize=(\d+)", xfs_info, re.M)}
    meta = [f"{k}={values[k]}" for k in ("crc", "finobt", "rmapbt", "reflink", "bigtime", "inobtcount")
            if k in values]
    options = ["-m", ",".join(meta)] if meta else []
    if "isize" in values:
        options += ["-i", f"size={values['isize']}" + (f",sparse={values['sparse']}" if "sparse" in values else "")]
    if "data" in section:
        options += ["-b", f"size={section['data']}"]
    if "naming" in section:
        options += ["-n", f"size={section['naming']}" + (f",ftype={values['ftype']}" if "ftype" in values else "")]
    if "sectsz" in values:
        options += ["-s", f"size={values['sectsz']}"]
    return options


FAT32_MIN_CLUSTERS = 65525  # fewer, and firmware reads the FAT as FAT16 whatever its boot sector says


def fat_options(fat: str, size: int, sector: int) -> list[str]:
    """mkfs.vfat options for a FAT made anew in `size` bytes of a disk with `sector`-byte sectors: the source's
    FAT32 where it can hold FAT32's least cluster count (a 4Kn disk needs 256 MiB for that, with one sector per
    cluster), else mkfs.vfat's own choice for the size; the sector size is the disk's."""
    options = ["-S", str(sector)]
    if fat == "FAT32" and size // sector >= FAT32_MIN_CLUSTERS + 1024:  # room for the FATs and reserved sectors
        options += ["-F", "32", "-s", "1"] if sector >= 4096 else ["-F", "32"]
    return options


def make_like(fstype: str, node: str, uuid: str, label: str, params: list[str]) -> None:
    """A new, empty filesystem on `node` with the UUID, label and parameters of the image's."""
    if fstype == "xfs":
        meta = [f"uuid={uuid}"] if uuid else []
        if params[:1] == ["-m"]:
            meta.insert(0, params[1])
            params = params[2:]
        run(["mkfs.xfs", "-f", "-q", *params, *(["-m", ",".join(meta)] if meta else []),
             *(["-L", label] if label else []), node])
    elif fstype == "vfat":
        run(["mkfs.vfat", *(["-i", uuid.replace("-", "")] if uuid else []), *(["-n", label] if label else []),
             *params, node])
    elif fstype == "exfat":
        run(["mkfs.exfat", *(["-L", label] if label else []), node])
        if uuid:
            run(["tune.exfat", "-I", "0x" + uuid.replace("-", ""), node])
    else:
        raise LifeboatError(f"Lifeboat cannot re-create a {fstype} filesystem")


def copy_tree(source: str, target: str) -> None:
    """Every file of `source` into `target` with owners, modes, ACLs, xattrs, hard links, sparse
    files and timestamps."""
    run(["rsync", "-aHAXS", "--numeric-ids", f"{source.rstrip('/')}/", f"{target.rstrip('/')}/"])


def copy_fat(source_image: str, node: str, scratch: str) -> None:
    """A FAT filesystem's files from an image file onto a new one, through mtools (no kernel driver)."""
    tree = os.path.join(scratch, f"fat-{uuidlib.uuid4().hex[:8]}")
    os.makedirs(tree)
    listing = run(["mdir", "-a", "-b", "-i", source_image, "::/"], check=False).stdout.split()
    if listing:
        run(["mcopy", "-s", "-p", "-m", "-n", "-i", source_image, "::/*", tree])
        for entry in sorted(os.listdir(tree)):
            run(["mcopy", "-s", "-p", "-m", "-i", node, os.path.join(tree, entry), "::/"])
    shutil.rmtree(tree, ignore_errors=True)
