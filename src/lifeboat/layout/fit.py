"""Fit a captured layout onto a target disk of another size. Pure: touches no disk.

Larger target: data partitions grow in proportion to their size; fixed-size ones (ESP, BIOS boot,
swap, Microsoft reserved/recovery) keep theirs; every gap between partitions is kept, so the first
partition never moves and boot regions stay valid. Smaller target: allowed only if every partition
still fits as it is; otherwise TargetTooSmall says by how much.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from lifeboat.devices import human_size
from lifeboat.errors import TargetTooSmall
from lifeboat.layout.model import DiskLayout, PartitionEntry, gpt_head_sectors

ALIGN_BYTES = 1 << 20  # partitions grow in whole MiB
ALIGN = ALIGN_BYTES // 512  # the same in 512-byte sectors (shrink works only on 512-byte layouts)


@dataclass(frozen=True)
class FittedPartition:
    entry: PartitionEntry
    source: PartitionEntry

    @property
    def grows(self) -> bool:
        return self.entry.size > self.source.size


def _usable_end(layout: DiskLayout, disk_sectors: int) -> int:
    """Last sector a partition may use on a disk of `disk_sectors`."""
    return disk_sectors - gpt_head_sectors(layout.sector_size) if layout.label == "gpt" else disk_sectors - 1


def fit_layout(layout: DiskLayout, target_bytes: int, keep_size: frozenset[int] = frozenset()
               ) -> tuple[DiskLayout, list[FittedPartition]]:
    """`keep_size`: numbers of partitions that must not grow (their content could not use the room)."""
    target_sectors = target_bytes // layout.sector_size
    if target_sectors < layout.min_disk_sectors:
        short = (layout.min_disk_sectors - target_sectors) * layout.sector_size
        raise TargetTooSmall(
            f"target is {human_size(target_bytes)}, the image needs at least "
            f"{human_size(layout.min_disk_sectors * layout.sector_size)}: {human_size(short)} ({short} bytes) short"
        )
    source_usable = _usable_end(layout, layout.disk_sectors)
    extra = _usable_end(layout, target_sectors) - source_usable
    if extra <= ALIGN_BYTES // layout.sector_size:
        fitted = layout.with_partitions(list(layout.partitions), target_sectors)
        if layout.label == "gpt" and target_sectors == layout.disk_sectors and layout.last_lba:
            fitted = replace(fitted, last_lba=layout.last_lba)
        return fitted, [FittedPartition(p, p) for p in layout.partitions]
    return _grow(layout, target_sectors, extra, keep_size)


def _grow(layout: DiskLayout, target_sectors: int, extra: int, keep_size: frozenset[int]
          ) -> tuple[DiskLayout, list[FittedPartition]]:
    ordered = sorted(layout.data_partitions(), key=lambda p: p.start)
    growable = [p for p in ordered if not p.fixed_size and p.number not in keep_size]
    total = sum(p.size for p in growable) or 1
    align = ALIGN_BYTES // layout.sector_size
    new_entries: dict[int, PartitionEntry] = {}
    shift = 0
    for p in ordered:
        start = p.start + shift
        size = p.size
        if p in growable:
            size += (extra * p.size // total) // align * align
        new_entries[p.number] = replace(p, start=start, size=size)
        shift += size - p.size
    for ext in (p for p in layout.partitions if p.is_extended):
        new_entries[ext.number] = _fit_extended(ext, layout, new_entries)
    entries = [new_entries[p.number] for p in layout.partitions]
    fitted = layout.with_partitions(entries, target_sectors)
    return fitted, [FittedPartition(new_entries[p.number], p) for p in layout.partitions]


def _fit_extended(ext: PartitionEntry, layout: DiskLayout, moved: dict[int, PartitionEntry]) -> PartitionEntry:
    """An extended container keeps its margins around its logical partitions."""
    logicals = [p for p in layout.partitions if p.number > 4 and ext.start <= p.start <= ext.end]
    if not logicals:
        return ext
    first = min(logicals, key=lambda p: p.start)
    last = max(logicals, key=lambda p: p.end)
    start = moved[first.number].start - (first.start - ext.start)
    end = moved[last.number].end + (ext.end - last.end)
    return replace(ext, start=start, size=end - start + 1)
