"""Fit a captured layout onto a SMALLER disk. Pure: touches no disk.

Every partition keeps its order, its start alignment and the gap before it; only sizes change:

  1. partitions whose size is part of their meaning (ESP, BIOS boot, Microsoft reserved, recovery)
     and partitions whose content cannot shrink here keep their size;
  2. the partitions that can shrink give up the shortfall between them, each keeping at least its
     minimum (its data plus the room its filesystem needs) and, above that, a share of the remaining
     free room in proportion to the room it had;
  3. only when that is not enough does swap shrink (down to MIN_SWAP), and the plan says so;
  4. when even that is not enough, TargetTooSmall names the partition holding the most data and the
     shortfall in bytes, before anything is written.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from lifeboat.devices import human_size
from lifeboat.errors import TargetTooSmall
from lifeboat.layout.fit import ALIGN, FittedPartition, _fit_extended, _usable_end
from lifeboat.layout.model import DiskLayout

MIN_SWAP = 64 * 1024 * 1024  # bytes


@dataclass(frozen=True)
class ShrinkNeed:
    """What one partition allows: `min_bytes` is the smallest size that holds its content."""

    number: int
    min_bytes: int
    shrinkable: bool  # False: keeps its size (fixed type, raw content, no method for its filesystem)
    swap: bool = False
    title: str = ""  # "partition 3 (xfs)"
    data_bytes: int = 0


def _align_up(sectors: int) -> int:
    return -(-sectors // ALIGN) * ALIGN


def _take(sizes: dict[int, int], mins: dict[int, int], numbers: list[int], deficit: int) -> int:
    """Shrink `numbers` by at least `deficit` sectors in total, in proportion to each one's room above
    its minimum. Every size changes by whole ALIGN units, so the partitions after it stay aligned.
    Returns what is still missing (0 when it fitted)."""
    room = {n: max(0, sizes[n] - mins[n]) for n in numbers}
    total = sum(room.values())
    if deficit <= 0:
        return 0
    keep = max(0, total - deficit)  # free room left, shared in proportion to the room each had
    removed = 0
    for n in numbers:
        if total:
            cut = (room[n] - keep * room[n] // total) // ALIGN * ALIGN
            sizes[n] -= cut
            removed += cut
    while removed < deficit:
        n = max(numbers, key=lambda k: sizes[k] - mins[k], default=None)
        if n is None or sizes[n] - mins[n] < ALIGN:
            break
        sizes[n] -= ALIGN
        removed += ALIGN
    return max(0, deficit - removed)


def shrink_layout(layout: DiskLayout, target_bytes: int, needs: dict[int, ShrinkNeed]
                  ) -> tuple[DiskLayout, list[FittedPartition], list[str]]:
    """The layout on a disk of `target_bytes`, the fitted partitions, and notes for the plan
    (swap shrunk). Raises TargetTooSmall naming the partition and the shortfall."""
    ss = layout.sector_size
    target_sectors = target_bytes // ss
    deficit = _usable_end(layout, layout.disk_sectors) - _usable_end(layout, target_sectors)
    # the source's unused tail first: a layout may end well before its disk did
    tail = _usable_end(layout, layout.disk_sectors) - max(p.end for p in layout.partitions)
    deficit = max(0, deficit - tail)
    data = layout.data_partitions()
    sizes = {p.number: p.size for p in data}
    mins = _minimums(layout, needs)
    plain = [p.number for p in data if not (needs.get(p.number) and needs[p.number].swap)]
    swaps = [p.number for p in data if needs.get(p.number) and needs[p.number].swap]
    notes = []
    missing = _take(sizes, mins, plain, deficit)
    if missing and swaps:
        missing = _take(sizes, mins, swaps, missing)
        for n in swaps:
            if sizes[n] < layout.partition(n).size:
                notes.append(f"swap partition {n} shrinks from {human_size(layout.partition(n).size * ss)} "
                             f"to {human_size(sizes[n] * ss)}: the disk is too small to keep it whole")
    if missing:
        raise TargetTooSmall(_too_small(layout, target_bytes, needs, missing * ss))
    return (*_placed(layout, sizes, target_sectors), notes)


def _minimums(layout: DiskLayout, needs: dict[int, ShrinkNeed]) -> dict[int, int]:
    mins = {}
    for p in layout.data_partitions():
        need = needs.get(p.number)
        if need is None or not need.shrinkable:
            mins[p.number] = p.size
        else:
            floor = MIN_SWAP if need.swap else need.min_bytes
            mins[p.number] = min(p.size, _align_up(-(-floor // layout.sector_size)))
    return mins


def minimum_bytes(layout: DiskLayout, needs: dict[int, ShrinkNeed]) -> int:
    """The smallest disk the layout fits on with every partition at its minimum."""
    placed, _ = _placed(layout, _minimums(layout, needs), layout.disk_sectors)
    return placed.min_disk_sectors * layout.sector_size


def _too_small(layout: DiskLayout, target_bytes: int, needs: dict[int, ShrinkNeed], short: int) -> str:
    biggest = max((n for n in needs.values() if n.shrinkable and not n.swap), key=lambda n: n.data_bytes,
                  default=None)
    worst = ""
    if biggest is not None:
        worst = (f"; {biggest.title} holds {human_size(biggest.data_bytes)} of data and needs at least "
                 f"{human_size(biggest.min_bytes)}")
    return (f"target is {human_size(target_bytes)}: even with every partition shrunk to its data the image "
            f"does not fit, {human_size(short)} ({short} bytes) short{worst}; nothing was written")


def _placed(layout: DiskLayout, sizes: dict[int, int], target_sectors: int
            ) -> tuple[DiskLayout, list[FittedPartition]]:
    ordered = sorted(layout.data_partitions(), key=lambda p: p.start)
    moved, shift = {}, 0
    for p in ordered:
        moved[p.number] = replace(p, start=p.start + shift, size=sizes[p.number])
        shift += sizes[p.number] - p.size
    for ext in (p for p in layout.partitions if p.is_extended):
        moved[ext.number] = _fit_extended(ext, layout, moved)
    fitted = layout.with_partitions([moved[p.number] for p in layout.partitions], target_sectors)
    return fitted, [FittedPartition(moved[p.number], p) for p in layout.partitions]
