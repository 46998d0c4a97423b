"""A partition layout as a proportional bar and as a small table, for 'today' beside 'after the restore'."""

from __future__ import annotations

from collections.abc import Sequence

from rich.table import Table
from rich.text import Text

from lifeboat.devices import human_size
from lifeboat.layout.bars import BarSegment, DiskBar
from lifeboat.tui.backend import LayoutRow


def layout_bar(title: str, rows: Sequence[LayoutRow], disk_size: int) -> DiskBar:
    """The disk as one bar of its partitions, in proportion, at the widget's width."""
    return DiskBar(title, [BarSegment(r.number, r.start, r.size, r.fstype,
                                      "grows" if r.grows else "shrinks" if r.shrinks else "") for r in rows],
                   disk_size)


def layout_table(title: str, rows: Sequence[LayoutRow], disk_size: int) -> Table:
    table = Table(title=title, title_justify="left", expand=True, box=None, pad_edge=False, show_edge=False)
    table.add_column("#", justify="right", width=2)
    table.add_column("type", width=8)
    table.add_column("size", justify="right", width=10)
    table.add_column("", width=7)
    if not rows:
        table.add_row("", Text("(empty)", style="italic"), "", "")
    for row in rows:
        kind = row.fstype or "unknown"
        grows = Text("grows", style="bold") if row.grows else Text("shrinks", style="bold") if row.shrinks else ""
        table.add_row(str(row.number), kind[:8], human_size(row.size), grows)
    used = sum(r.size for r in rows)
    if disk_size > used:
        table.add_row("", Text("free", style="italic"), human_size(disk_size - used), "")
    return table
