"""Where image repositories are: on mounted filesystems, and on partitions nobody has mounted, which
are looked into read-only and mounted (read-write) only when the user chooses one of them."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from lifeboat.devices import Disk, Partition
from lifeboat.errors import LifeboatError
from lifeboat.foreign.clonezilla import image_dirs
from lifeboat.mounts import mount, mount_table, mounted, unmount
from lifeboat.tui.backend import RepoLocation

log = logging.getLogger("lifeboat.tui")

REPO_MARKER = "lifeboat-repo.json"
REPO_SUBDIRS = ("", "lifeboat", "lifeboat-images")  # where on a filesystem a repository is looked for
CLONEZILLA_SUBDIRS = ("", "partimag", "home/partimag")  # where Clonezilla images are (read by lifeboat.foreign)
DATA_MOUNT = "/run/lifeboat/data"  # the stick's LIFEBOAT-DATA partition (see lifeboat.live)
PEEK_DIR = "/run/lifeboat/peek"
REPO_MOUNT_DIR = "/run/lifeboat/repos"
# Read-only without replaying a journal: looking must not change the filesystem.
READ_ONLY_OPTIONS = {"ext2": "ro,noload", "ext3": "ro,noload", "ext4": "ro,noload", "xfs": "ro,norecovery"}
MOUNTABLE = {"ext2", "ext3", "ext4", "xfs", "btrfs", "vfat", "exfat", "ntfs"}


@dataclass(frozen=True)
class UnmountedRepo:
    device: str
    mount_point: str  # where it will be mounted when chosen


def repo_dirs(root: str) -> Iterator[str]:
    for sub in REPO_SUBDIRS:
        path = os.path.join(root, sub) if sub else root
        if os.path.isfile(os.path.join(path, REPO_MARKER)):
            yield path
    for sub in CLONEZILLA_SUBDIRS:
        path = os.path.join(root, sub) if sub else root
        if not os.path.isfile(os.path.join(path, REPO_MARKER)) and is_clonezilla(path):
            yield path


def is_clonezilla(path: str) -> bool:
    try:
        return bool(image_dirs(path))
    except OSError:
        return False


def _kind(path: str) -> str:
    return " — Clonezilla images, restore or import them" if is_clonezilla(path) else ""


def image_count(path: str) -> int:
    if is_clonezilla(path):
        return len(image_dirs(path))
    try:
        return len([p for p in Path(path, "images").iterdir() if (p / "manifest.json").exists()])
    except OSError:
        return 0


def block_mounts() -> list[tuple[str, str]]:
    """(mount point, device) of every mounted block-device filesystem."""
    return [(m.point, m.source) for m in mount_table() if m.source.startswith("/dev/")]


def mounted_repositories() -> list[RepoLocation]:
    found = []
    for mount, device in block_mounts():
        for path in repo_dirs(mount):
            where = "the stick's data partition" if mount == DATA_MOUNT else f"{device} mounted at {mount}"
            if not os.access(path, os.W_OK):
                where += " (read-only: restore from it, capture elsewhere)"
            found.append(RepoLocation(path, where + _kind(path), image_count(path)))
    return found


def peeking(part: Partition) -> contextlib.AbstractContextManager[str]:
    """Mount a partition read-only in a private directory for a moment."""
    return mounted(part.path, options=READ_ONLY_OPTIONS.get(part.fstype, "ro"),
                   prefix=os.path.basename(part.path) + "-", base=PEEK_DIR)


def unmounted_repositories(disks: list[Disk]) -> tuple[list[RepoLocation], dict[str, UnmountedRepo]]:
    """Repositories on partitions nobody has mounted, and how to mount each when it is chosen."""
    found, how = [], {}
    for disk in disks:
        for part in disk.partitions:
            if part.mountpoints or part.fstype not in MOUNTABLE or disk.is_boot_medium:
                continue
            try:
                with peeking(part) as root:
                    subs = [(os.path.relpath(p, root), image_count(p), _kind(p)) for p in repo_dirs(root)]
            except LifeboatError as error:
                log.info("could not look into %s: %s", part.path, error)
                continue
            for sub, count, kind in subs:
                mount_point = os.path.join(REPO_MOUNT_DIR, os.path.basename(part.path))
                path = os.path.normpath(os.path.join(mount_point, sub))
                label = f" '{part.label}'" if part.label else ""
                description = (f"{part.path} {part.fstype}{label} on {disk.model or disk.name} (mounted when chosen)"
                               f"{kind}")
                found.append(RepoLocation(path, description, count))
                how[path] = UnmountedRepo(part.path, mount_point)
    return found, how


def mount_repository(repo: UnmountedRepo) -> None:
    if os.path.ismount(repo.mount_point):
        return
    mount(repo.device, repo.mount_point)
    log.info("mounted %s at %s", repo.device, repo.mount_point)


def unmount_repository(repo: UnmountedRepo) -> None:
    if os.path.ismount(repo.mount_point):
        unmount(repo.mount_point)
        log.info("unmounted %s", repo.mount_point)
