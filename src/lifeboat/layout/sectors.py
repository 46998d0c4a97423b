"""Logical sector sizes: what a disk uses, and a captured table converted to another size.

A partition table counts in the disk's logical sectors (512 or 4096 bytes). An image of a 512-byte
disk restored onto a 4Kn disk needs every start and size divided by 8. A partition whose start is not
a whole number of target sectors cannot be placed and is refused before anything is written; one whose
size is not (an installer's last partition, which ends where the 512-byte table's usable area ended)
is rounded up to whole sectors, less than one sector more, when that does not reach the next
partition. Pure, except logical_sector_size() which reads sysfs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace

from lifeboat.errors import LifeboatError
from lifeboat.layout.model import DiskLayout, gpt_head_sectors


def logical_sector_size(disk: str) -> int:
    """The logical sector size the kernel reports for `disk` (512 when it cannot be read, as for a file)."""
    name = os.path.basename(os.path.realpath(disk))
    try:
        with open(f"/sys/class/block/{name}/queue/logical_block_size") as f:
            return int(f.read())
    except (OSError, ValueError):
        return 512


@dataclass(frozen=True)
class Misaligned:
    number: int
    what: str  # "start" | "size"
    byte_offset: int


def misaligned(layout: DiskLayout, target_sector_size: int) -> list[Misaligned]:
    """Partitions whose start is not a whole number of `target_sector_size` sectors, or whose size rounded up to
    whole sectors would reach the next partition's start."""
    ss, found = layout.sector_size, []
    starts = sorted(p.start * ss for p in layout.partitions if not p.is_extended)
    for p in layout.partitions:
        start, end = p.start * ss, (p.start + p.size) * ss
        rounded = -(-end // target_sector_size) * target_sector_size
        if start % target_sector_size:
            found.append(Misaligned(p.number, "start", start))
        elif rounded != end and not p.is_extended and any(end <= s < rounded for s in starts):
            found.append(Misaligned(p.number, "size", p.size * ss))
    return found


def convert_layout(layout: DiskLayout, target_sector_size: int) -> DiskLayout:
    """`layout` with every position in `target_sector_size` sectors. Raises LifeboatError naming the
    first partition that does not fall on the target's sector boundaries."""
    ss = layout.sector_size
    if ss == target_sector_size:
        return layout
    bad = misaligned(layout, target_sector_size)
    if bad:
        b = bad[0]
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        raise LifeboatError(
            f"partition {b.number}: its {b.what} ({b.byte_offset} bytes) is not a multiple of the target's "
            f"{target_sector_size}-byte sectors{more}, so the table cannot be converted from {ss}-byte sectors; "
            "nothing was written")
    parts = []
    for p in layout.partitions:
        size = -(-p.size * ss // target_sector_size)  # whole sectors: rounded up (misaligned() checked the room)
        parts.append(replace(p, start=p.start * ss // target_sector_size, size=size))
    first = 0
    if layout.label == "gpt":
        first = max(gpt_head_sectors(target_sector_size), -(-layout.first_lba * ss // target_sector_size))
        first = min(first, min((p.start for p in parts), default=first))
    converted = replace(layout, sector_size=target_sector_size, partitions=tuple(parts), first_lba=first, last_lba=0,
                        disk_sectors=layout.disk_sectors * ss // target_sector_size)
    # the backup GPT takes 20 KiB at 4096-byte sectors, 16.5 KiB at 512: a last partition that ended where the
    # source's usable area ended needs a disk a few KiB larger than the source's in the target's sectors
    return replace(converted, disk_sectors=max(converted.disk_sectors, converted.min_disk_sectors))
