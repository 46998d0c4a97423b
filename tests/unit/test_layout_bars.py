"""The disk bar: widths in proportion to sizes, every partition visible, grows/shrinks marked, free space."""

from __future__ import annotations

from rich.console import Console

from lifeboat.layout.bars import BarSegment, DiskBar, _widths

G, M = 1024**3, 1024**2


def _plain(bar: DiskBar, width: int = 80) -> list[str]:
    console = Console(width=width, record=True, color_system=None)
    console.print(bar)
    return console.export_text().splitlines()


def test_widths_are_proportional_and_never_zero():
    assert _widths([1, 1], 10) == [5, 5]
    assert _widths([1, 1000, 999], 20) == [1, 10, 9]
    assert sum(_widths([3, 7, 11, 13], 77)) == 77


def test_bar_shows_partitions_changes_and_free_space():
    segments = [BarSegment(1, M, 512 * M, "vfat"), BarSegment(2, 513 * M, 35 * G, "ext4", "shrinks"),
                BarSegment(3, 513 * M + 35 * G, 20 * G, "ntfs", "grows")]
    title, bar = _plain(DiskBar("sdc after the restore", segments, 64 * G))
    assert title == "sdc after the restore, 64.0 GiB"
    assert len(bar) == 80
    assert "2 ext4 35.0 GiB▼" in bar
    assert "3 ntfs 20.0 GiB▲" in bar and "free" in bar
    ext4_cols = bar.index("|", bar.index("2 ext4")) - bar.rindex("|", 0, bar.index("2 ext4"))
    assert abs(ext4_cols - 80 * 35 / 64) <= 2


def test_serial_console_colours_are_the_16_basic_ones():
    from lifeboat.layout.bars import COLOURS, OTHER

    basic = {"black", "red", "green", "yellow", "blue", "magenta", "cyan", "white"}
    for back, fore in [*COLOURS.values(), OTHER]:
        assert back.removeprefix("bright_") in basic and fore.removeprefix("bright_") in basic
