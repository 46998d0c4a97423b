"""A restore in progress is visible on the target until its last data byte is on the disk.

Design (the safest of the options; see the commit that added it):

1. Before the first data write, every whole-disk signature is wiped (`wipefs --all`: the old MBR/GPT,
   their backups, a whole-disk filesystem), the first 34 and last 33 sectors are zeroed, and sector 0
   gets a Lifeboat "restore in progress" record: a magic string, the image name and repository, the
   start time, and NO 0x55AA boot signature. BIOS refuses a sector 0 without the signature, UEFI finds
   neither a protective MBR nor a GPT header, libblkid/partx/the kernel see no partition table: the disk
   cannot boot and no OS mounts half-written filesystems from it. `lifeboat disks` and the restore plan
   read the record and say "incomplete restore of image X".
2. The data goes to each partition's offset through the whole-disk device (no partition nodes needed).
3. Filesystems are grown and swap is made while the disk still has no table: the kernel is given the
   partitions by the BLKPG ioctl with explicit ranges, not by reading a table (no tool needed:
   Debian trixie moved `addpart` out of util-linux).
4. Then the new table is committed: sfdisk writes it into a sparse scratch file of the target's size
   (never onto the target), and the sectors it wrote are copied to the target, every sector but the
   first, flushed, then sector 0 last (the image's boot code in bytes 0-439, sfdisk's table and
   signature after). Sector 0 is the commit record: before it lands the disk shows the marker, after
   it the disk is complete.

Only the bootloader step runs after the commit (grub-install needs the table); a crash there leaves
every data byte and the table in place, as a restore whose bootloader step failed does.
"""

from __future__ import annotations

import ctypes
import fcntl
import json
import os
import tempfile
import time
from dataclasses import dataclass

from lifeboat.layout.model import DiskLayout, gpt_entry_sectors, gpt_head_sectors
from lifeboat.errors import LifeboatError
from lifeboat.layout.write import partition_node, sfdisk_script
from lifeboat.run import run

MAGIC = b"LIFEBOAT RESTORE IN PROGRESS\n"
SECTOR = 512
MBR_BOOT_CODE = 440


@dataclass(frozen=True)
class RestoreMarker:
    image: str
    repo: str
    started: str

    def describe(self) -> str:
        return f"incomplete restore of image {self.image!r} from {self.repo} (started {self.started}): restore it again"


def read_marker(disk: str) -> RestoreMarker | None:
    """The in-progress record in sector 0 of `disk`, or None (also when the disk cannot be read)."""
    try:
        with open(disk, "rb") as f:
            sector = f.read(SECTOR)
    except OSError:
        return None
    return parse_marker(sector)


def parse_marker(sector: bytes) -> RestoreMarker | None:
    if not sector.startswith(MAGIC):
        return None
    try:
        body = json.loads(sector[len(MAGIC):MBR_BOOT_CODE].rstrip(b"\0"))
        return RestoreMarker(str(body["image"]), str(body["repo"]), str(body["started"]))
    except (ValueError, KeyError, TypeError):
        return RestoreMarker("?", "?", "?")


def marker_sector(marker: RestoreMarker) -> bytes:
    body = json.dumps({"image": marker.image, "repo": marker.repo, "started": marker.started}).encode()
    record = MAGIC + body
    if len(record) > MBR_BOOT_CODE:  # a very long repository path: keep the image name, cut the path
        body = json.dumps({"image": marker.image, "repo": marker.repo[-120:], "started": marker.started}).encode()
        record = MAGIC + body
    return record.ljust(SECTOR, b"\0")  # bytes 510-511 stay zero: no boot signature


def wipe_signatures(disk: str) -> None:
    """Step 1a, before the target is opened exclusively: every table and whole-disk signature goes."""
    run(["wipefs", "--all", "--force", "--quiet", disk])


def table_head_bytes(layout: DiskLayout) -> int:
    """Bytes at the start of the disk that belong to the table: MBR + GPT header + entries
    (34 sectors at 512 bytes, 6 at 4096), or the MBR's first sector."""
    return (gpt_head_sectors(layout.sector_size) if layout.label == "gpt" else 1) * layout.sector_size


def mark_in_progress(fd: int, size: int, marker: RestoreMarker, sector_size: int = SECTOR) -> None:
    """Step 1b: zero the table areas (MBR + GPT header + entries, the backup entries + header) and write
    the record. Flushed on return."""
    zeros = bytes((1 + gpt_entry_sectors(sector_size)) * sector_size)
    os.pwrite(fd, zeros, size - len(zeros))
    os.pwrite(fd, bytes(gpt_head_sectors(sector_size) * sector_size), 0)
    os.pwrite(fd, marker_sector(marker), 0)
    os.fsync(fd)


def table_sectors(layout: DiskLayout, size: int) -> list[tuple[int, bytes]]:
    """(offset, sector) for every non-zero sector sfdisk writes for `layout` on a disk of `size` bytes,
    found by letting sfdisk write a sparse scratch file instead of the disk."""
    with tempfile.NamedTemporaryFile(prefix="lifeboat-table-", dir="/var/tmp") as scratch:
        scratch.truncate(size)
        scratch.flush()
        if layout.sector_size == SECTOR:
            run(["sfdisk", "--quiet", "--no-reread", "--no-tell-kernel", scratch.name], input=sfdisk_script(layout))
        else:
            _sfdisk_through_loop(scratch.name, layout)
        return _written_sectors(scratch.fileno(), size)


def _sfdisk_through_loop(path: str, layout: DiskLayout) -> None:
    """sfdisk takes the sector size from the device (512 for a file, whatever the script says), so a table
    in other sectors is written through a loop device of that sector size over the scratch file."""
    loop = run(["losetup", "--find", "--show", "--sector-size", str(layout.sector_size), path]).stdout.strip()
    try:
        run(["sfdisk", "--quiet", "--no-reread", "--no-tell-kernel", loop], input=sfdisk_script(layout))
    finally:
        run(["losetup", "--detach", loop], check=False)


def _written_sectors(fd: int, size: int) -> list[tuple[int, bytes]]:
    out, pos = [], 0
    while pos < size:
        try:
            start = os.lseek(fd, pos, os.SEEK_DATA)
        except OSError:  # ENXIO: no data after pos
            break
        end = os.lseek(fd, start, os.SEEK_HOLE)
        data = os.pread(fd, end - start, start)
        for off in range(0, len(data), SECTOR):
            sector = data[off:off + SECTOR]
            if sector.strip(b"\0"):
                out.append((start + off, sector))
        pos = end
    return out


def register_partitions(disk: str, layout: DiskLayout) -> None:
    """Partition nodes for the layout's data partitions while the disk has no table (step 3)."""
    # udev may still be probing the old partitions (closing the written disk made it re-read it; an LVM PV's
    # pvscan opens them): settle first, or deleting them fails with EBUSY and so does adding them back
    run(["udevadm", "settle", "--timeout=10"], check=False)
    run(["partx", "--delete", disk], check=False)  # whatever the kernel still knows of the old table
    factor = layout.sector_size // SECTOR
    fd = os.open(disk, os.O_RDONLY)
    try:
        for p in layout.data_partitions():
            _blkpg_add(fd, disk, p.number, p.start * factor * SECTOR, p.size * factor * SECTOR)
    finally:
        os.close(fd)
    run(["udevadm", "settle", "--timeout=10"], check=False)
    for _ in range(50):
        if all(os.path.exists(partition_node(disk, p.number)) for p in layout.data_partitions()):
            return
        time.sleep(0.1)
    raise LifeboatError(f"{disk}: the partition nodes did not appear after BLKPG_ADD_PARTITION")


_BLKPG = 0x1269  # linux/fs.h: _IO(0x12, 105)
_BLKPG_ADD_PARTITION = 1


class _BlkpgPartition(ctypes.Structure):  # linux/blkpg.h
    _fields_ = [("start", ctypes.c_longlong), ("length", ctypes.c_longlong), ("pno", ctypes.c_int),
                ("devname", ctypes.c_char * 64), ("volname", ctypes.c_char * 64)]


class _BlkpgIoctlArg(ctypes.Structure):
    _fields_ = [("op", ctypes.c_int), ("flags", ctypes.c_int), ("datalen", ctypes.c_int), ("data", ctypes.c_void_p)]


def _blkpg_add(fd: int, disk: str, number: int, start: int, length: int) -> None:
    """Tell the kernel about partition `number` at byte `start`, `length` bytes long (what addpart does)."""
    part = _BlkpgPartition(start=start, length=length, pno=number)
    arg = _BlkpgIoctlArg(op=_BLKPG_ADD_PARTITION, flags=0, datalen=ctypes.sizeof(part),
                         data=ctypes.cast(ctypes.pointer(part), ctypes.c_void_p))
    try:
        fcntl.ioctl(fd, _BLKPG, arg)
    except OSError as exc:
        raise LifeboatError(f"{disk}: could not register partition {number} (bytes {start}+{length}): "
                            f"{exc.strerror}") from None


def commit_table(fd: int, sectors: list[tuple[int, bytes]], boot_code: bytes | None) -> None:
    """Step 3: every table sector but the first, flush, then sector 0 (with the image's boot code), flush."""
    first = b""
    for offset, sector in sectors:
        if offset == 0:
            first = sector
        else:
            os.pwrite(fd, sector, offset)
    os.fsync(fd)
    first = first or bytes(SECTOR)
    if boot_code is not None:
        first = boot_code[:MBR_BOOT_CODE].ljust(MBR_BOOT_CODE, b"\0") + first[MBR_BOOT_CODE:]
    os.pwrite(fd, first, 0)
    os.fsync(fd)
