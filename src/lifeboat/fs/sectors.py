"""The sector size a filesystem records, read from its first 4 KiB: the largest logical sector size of a
disk it can live on. A filesystem made on a 512-byte-sector disk may record 512-byte units (FAT's
bytes-per-sector, XFS's sectsz, a 1 KiB ext4 block) that a 4Kn disk cannot address; the kernel then
refuses to mount it ("bad block size", "logical sector size too small"). Pure: bytes in, a number out.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

HEAD_BYTES = 4096  # every superblock read here lies in the first 4 KiB


@dataclass(frozen=True)
class SectorLimit:
    largest: int  # largest logical sector size the filesystem works on
    what: str  # what records it, for the plan ("FAT bytes-per-sector 512")


def sector_limit(fstype: str, head: bytes) -> SectorLimit | None:
    """None when `fstype` records no sector size this knows of, or `head` does not look like it."""
    if len(head) < HEAD_BYTES:
        return None
    if fstype in ("ext2", "ext3", "ext4"):
        if struct.unpack_from("<H", head, 1024 + 56)[0] != 0xEF53:
            return None
        block = 1024 << struct.unpack_from("<I", head, 1024 + 24)[0]
        return SectorLimit(block, f"{fstype} block size {block}")
    if fstype == "xfs":
        if head[:4] != b"XFSB":
            return None
        sectsz = struct.unpack_from(">H", head, 102)[0]
        return SectorLimit(sectsz, f"XFS sector size (sectsz) {sectsz}")
    if fstype in ("vfat", "ntfs"):
        bps = struct.unpack_from("<H", head, 11)[0]
        name = "FAT" if fstype == "vfat" else "NTFS"
        return SectorLimit(bps, f"{name} bytes-per-sector {bps}") if bps in (512, 1024, 2048, 4096) else None
    if fstype == "exfat":
        if head[3:11] != b"EXFAT   ":
            return None
        bps = 1 << head[108]
        return SectorLimit(bps, f"exFAT bytes-per-sector {bps}")
    return None
