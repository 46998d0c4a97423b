"""The restore plan as pictures: the target disk today and after the restore, one bar each."""

from __future__ import annotations

import os

from lifeboat.layout.bars import BarSegment, DiskBar


def plan_bars(plan) -> list[DiskBar]:
    """Bars for a RestorePlan: today's partitions (their filesystems as blkid sees them) and the new ones."""
    name = os.path.basename(plan.target)
    size = plan.target_disk.size
    found = {p.number: p.fstype for p in plan.target_disk.partitions}
    today = []
    if plan.current_layout is not None:
        ss = plan.current_layout.sector_size
        today = [BarSegment(p.number, p.start * ss, p.size * ss, found.get(p.number) or p.kind)
                 for p in plan.current_layout.partitions if not p.is_extended]
    ss = plan.target_layout.sector_size
    after = []
    for a in plan.actions:
        change = "grows" if a.grows else "shrinks" if a.target.size < a.source.size else ""
        after.append(BarSegment(a.target.number, a.target.start * ss, a.target.size * ss,
                                a.fstype or a.target.kind, change))
    if plan.keep_table:  # the partitions not restored are there after as they are today
        written = {a.target.number for a in plan.actions}
        after += [s for s in today if s.number not in written]
    return [DiskBar(f"{name} today", today, size), DiskBar(f"{name} after the restore", after, size)]
