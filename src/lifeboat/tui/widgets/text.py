"""How disks, images, sizes and times are written on screen (plain Rich Text, no widgets)."""

from __future__ import annotations

import os

from rich.text import Text

from lifeboat.devices import Disk, human_size
from lifeboat.tui.backend import ImageInfo, RepoLocation

UNSAFE_STYLE = "dim italic"


def duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}"


def rate(bytes_per_second: float) -> str:
    return f"{human_size(bytes_per_second)}/s"


def disk_contents(disk: Disk) -> str:
    """What is on a disk now, in a few words: 'gpt: vfat EFI, ext4 root, swap'."""
    if not disk.partitions:
        return f"{disk.table} table, no partitions" if disk.table else "empty (no partition table)"
    parts = ", ".join(" ".join(x for x in (p.fstype or "unknown", p.label) if x) for p in disk.partitions)
    return f"{disk.table}: {parts}" if disk.table else parts


def disk_label(disk: Disk) -> str:
    """The model, or for a loop disk the name of its file ('demo-laptop'), which says more than 'Loop disk'."""
    if disk.transport == "loop" and disk.backing_file:
        return os.path.splitext(os.path.basename(disk.backing_file))[0]
    return disk.model or disk.transport or "disk"


def disk_prompt(disk: Disk, show_unsafe: bool = True) -> Text:
    """Two lines for a disk in a pick list; greyed with the reason when it must not be written."""
    serial = f"  s/n {disk.serial}" if disk.serial else ""
    head = f"{disk.name:<8} {disk_label(disk):<22} {human_size(disk.size):>10}{serial}"
    text = Text(head)
    text.append("\n         " + disk_contents(disk))
    if disk.health and disk.health.status in ("failing", "warning"):
        style = "bold red" if disk.health.status == "failing" else "yellow"
        text.append(f"\n         {disk.health.describe()}: capture it with rescue", style=style)
    elif disk.health and disk.health.status == "passed":
        text.append(f"\n         {disk.health.describe()}")
    if disk.incomplete_restore:
        text.append(f"\n         INCOMPLETE: {disk.incomplete_restore}", style="bold red")
    if show_unsafe and disk.unsafe_reason:
        text.append(f"\n         not usable: {disk.unsafe_reason}")
        text.stylize(UNSAFE_STYLE)
    return text


def image_prompt(image: ImageInfo) -> Text:
    created = image.created.strftime("%Y-%m-%d %H:%M") if image.created else "date unknown"
    text = Text(f"{image.name:<32} {created}", style="bold")
    source = f"{image.source_model or 'unknown disk'} {human_size(image.source_size)}"
    text.append(
        f"\n   from {source} · {len(image.partitions)} partitions · stored {human_size(image.stored_bytes)}",
        style="not bold",
    )
    if image.unreadable_bytes:
        text.append(f"\n   INCOMPLETE: {human_size(image.unreadable_bytes)} could not be read at capture "
                    "(restored as zeros)", style="not bold yellow")
    return text


def repo_prompt(repo: RepoLocation) -> Text:
    count = "no images yet" if not repo.image_count else f"{repo.image_count} images"
    if repo.image_count is None:
        count = "not a repository yet"
    text = Text(repo.path, style="bold")
    text.append(f"\n   {repo.description} · {count}" if repo.description else f"\n   {count}", style="not bold")
    if repo.note:
        text.append(f"\n   not usable: {repo.note}", style="not bold")
        text.stylize(UNSAFE_STYLE)
    return text
