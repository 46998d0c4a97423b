"""A disk drawn as one proportional bar of its partitions, the way a partitioning tool shows it.

    sdb today, 100.0 GiB
    [1 ESP][2 ext4 60.0 GiB       ][3 ntfs 39.5 GiB    ]
    sdb after the restore, 64.0 GiB
    [1 ESP][2 ext4 35.0 GiB ▼ ][3 ntfs 28.5 GiB▼]...free

A rich renderable, so the same picture is the CLI's (ANSI colours, plain text when not a terminal)
and the TUI's (at whatever width its widget has). Only the 16 basic colours are used, so it reads
the same on a serial console. ▲ marks a partition that grows, ▼ one that shrinks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rich.console import Console, ConsoleOptions, RenderResult
from rich.text import Text

from lifeboat.devices import human_size

# fstype -> (background, foreground): 16-colour names only
COLOURS = {
    "ext2": ("green", "black"), "ext3": ("green", "black"), "ext4": ("green", "black"),
    "xfs": ("cyan", "black"), "btrfs": ("yellow", "black"), "ntfs": ("blue", "white"),
    "vfat": ("magenta", "white"), "EFI system": ("magenta", "white"), "exfat": ("bright_magenta", "black"),
    "swap": ("red", "white"), "BIOS boot": ("white", "black"),
}
OTHER = ("bright_black", "white")
FREE_STYLE = "dim"
MARKS = {"grows": "▲", "shrinks": "▼"}


@dataclass(frozen=True)
class BarSegment:
    number: int
    start: int  # bytes
    size: int  # bytes
    fstype: str = ""
    change: str = ""  # "grows" | "shrinks" | ""


def _pieces(segments: Sequence[BarSegment], disk_size: int) -> list[tuple[BarSegment | None, int]]:
    """Partitions and the free gaps between them (gaps under 1 % of the disk are left out)."""
    out: list[tuple[BarSegment | None, int]] = []
    pos = 0
    for seg in sorted(segments, key=lambda s: s.start):
        if seg.start - pos > disk_size // 100:
            out.append((None, seg.start - pos))
        out.append((seg, seg.size))
        pos = max(pos, seg.start + seg.size)
    if disk_size - pos > disk_size // 100:
        out.append((None, disk_size - pos))
    return out


def _widths(sizes: list[int], width: int) -> list[int]:
    """Proportional widths summing to `width`, at least 1 each (largest remainders get the rest)."""
    total = sum(sizes) or 1
    exact = [s * width / total for s in sizes]
    widths = [max(1, int(e)) for e in exact]
    while sum(widths) > width and max(widths) > 1:
        widths[widths.index(max(widths))] -= 1
    order = sorted(range(len(sizes)), key=lambda i: exact[i] - int(exact[i]), reverse=True)
    for i in order:
        if sum(widths) >= width:
            break
        widths[i] += 1
    return widths


def _label(seg: BarSegment | None, size: int, width: int) -> str:
    if seg is None:
        options = [f"free {human_size(size)}", "free", ""]
    else:
        mark = MARKS.get(seg.change, "")
        kind = seg.fstype or "?"
        options = [f"{seg.number} {kind} {human_size(seg.size)}{mark}", f"{seg.number} {kind}{mark}",
                   f"{seg.number}{mark}", str(seg.number), ""]
        if width >= 3:  # a boundary that shows without colours too
            return "|" + next(o for o in options if len(o) <= width - 1).center(width - 1)
    text = next(o for o in options if len(o) <= width)
    return text.center(width)


class DiskBar:
    def __init__(self, title: str, segments: Sequence[BarSegment], disk_size: int):
        self.title, self.segments, self.disk_size = title, tuple(segments), disk_size

    def bar(self, width: int) -> Text:
        pieces = _pieces(self.segments, self.disk_size)
        text = Text(no_wrap=True, overflow="crop")
        if not pieces:
            return Text("(no partitions)".center(width), style=FREE_STYLE)
        for (seg, size), w in zip(pieces, _widths([s for _, s in pieces], width)):
            if seg is None:
                text.append(_label(None, size, w).replace(" ", "·"), style=FREE_STYLE)
            else:
                back, fore = COLOURS.get(seg.fstype, OTHER)
                text.append(_label(seg, size, w), style=f"{fore} on {back}")
        return text

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        yield Text(f"{self.title}, {human_size(self.disk_size)}", style="bold")
        yield self.bar(max(10, options.max_width))
