"""The mount table, read in one place, and the one way Lifeboat mounts and unmounts (through lifeboat.run).

`mount_table()` parses /proc/self/mountinfo (the kernel's octal escapes undone); `mounted()` is a
context manager that mounts, yields the mount point and always unmounts; `MountStack` keeps several
such mounts (a chroot's tree) and undoes them in reverse order.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass

from lifeboat.errors import CommandFailed, CommandTimedOut
from lifeboat.run import run

log = logging.getLogger("lifeboat.mounts")

MOUNTINFO = "/proc/self/mountinfo"
SWAPS = "/proc/swaps"
_OCTAL = re.compile(r"\\([0-7]{3})")


@dataclass(frozen=True)
class Mount:
    source: str  # /dev/sda2, tmpfs, server:/export...
    point: str
    fstype: str
    options: tuple[str, ...]
    devnum: int  # st_rdev of the block device, 0 when the source is not one (tmpfs, overlay, nfs)

    @property
    def writable(self) -> bool:
        return "rw" in self.options


def unescape(field: str) -> str:
    """Undo the kernel's escaping of spaces, tabs, newlines and backslashes (\\040, \\011, \\012, \\134)."""
    return _OCTAL.sub(lambda m: chr(int(m.group(1), 8)), field)


def parse_mountinfo(text: str) -> list[Mount]:
    mounts = []
    for line in text.splitlines():
        fields = line.split()
        if "-" not in fields[6:]:
            continue
        sep = fields.index("-", 6)
        major, _, minor = fields[2].partition(":")
        devnum = os.makedev(int(major), int(minor)) if int(major) else 0
        mounts.append(Mount(source=unescape(fields[sep + 2]), point=unescape(fields[4]), fstype=fields[sep + 1],
                            options=tuple(fields[5].split(",")), devnum=devnum))
    return mounts


def mount_table(path: str = MOUNTINFO) -> list[Mount]:
    """Every mount this process sees."""
    try:
        with open(path) as f:
            return parse_mountinfo(f.read())
    except OSError:
        return []


def mount_point_of(device: str) -> str:
    """Where the block device `device` is mounted (its first mount), or ''."""
    try:
        devnum = os.stat(device).st_rdev
    except OSError:
        return ""
    return next((m.point for m in mount_table() if m.devnum and m.devnum == devnum), "")


def swap_devices(path: str = SWAPS) -> set[int]:
    """st_rdev of every block device in use as swap."""
    found = set()
    try:
        with open(path) as f:
            next(f, None)
            for line in f:
                with contextlib.suppress(OSError, IndexError):
                    found.add(os.stat(unescape(line.split()[0])).st_rdev)
    except OSError:
        pass
    return found


def mount(source: str, target: str, *, fstype: str | None = None, options: str | None = None,
          bind: bool = False, timeout: float | None = None) -> None:
    """Mount `source` on `target` (made if missing). A bind mount is recursive and made a slave, so
    unmounting the tree below it never propagates back to the live system's /dev, /sys..."""
    os.makedirs(target, exist_ok=True)
    argv = ["mount"] + (["--rbind"] if bind else [])
    argv += ["-t", fstype] if fstype else []
    argv += ["-o", options] if options else []
    run(argv + [source, target], timeout=timeout)
    if bind:
        run(["mount", "--make-rslave", target], check=False)


def unmount(target: str, *, recursive: bool = False, timeout: float | None = None) -> None:
    """Unmount `target`; when it is busy, detach it lazily (and say so in the log)."""
    flags = ["-R"] if recursive else []
    try:
        run(["umount", *flags, target], timeout=timeout)
    except (CommandFailed, CommandTimedOut) as err:
        log.warning("umount %s failed (%s); detaching lazily", target, err)
        run(["umount", *flags, "-l", target], check=False, timeout=timeout)


def temp_dir(prefix: str, base: str | None = None) -> str:
    """A fresh directory to mount on: under `base`, else /run when writable, else the system's temp dir."""
    if base is None and os.path.isdir("/run") and os.access("/run", os.W_OK):
        base = "/run"
    if base:
        os.makedirs(base, exist_ok=True)
    return tempfile.mkdtemp(prefix=prefix, dir=base)


@contextlib.contextmanager
def mounted(source: str, target: str | None = None, *, fstype: str | None = None, options: str | None = None,
            bind: bool = False, prefix: str = "lifeboat-", base: str | None = None,
            timeout: float | None = None) -> Iterator[str]:
    """Mount for the duration of the block and yield the mount point; a directory made here is removed.
    `timeout` bounds each mount and umount (a damaged filesystem can make them hang)."""
    made = target is None
    point = temp_dir(prefix, base) if target is None else target
    try:
        mount(source, point, fstype=fstype, options=options, bind=bind, timeout=timeout)
        try:
            yield point
        finally:
            unmount(point, recursive=bind, timeout=timeout)
    finally:
        if made:
            with contextlib.suppress(OSError):
                os.rmdir(point)


class MountStack:
    """Several mounts (a root, its /boot and ESP, bind mounts for a chroot), undone in reverse order on exit,
    even on error. `with MountStack() as m: root = m.tempdir("x-"); m.mount(dev, root)`."""

    def __init__(self) -> None:
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> MountStack:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def tempdir(self, prefix: str) -> str:
        path = temp_dir(prefix)
        self._stack.callback(_remove_dir, path)
        return path

    def mount(self, source: str, target: str, *, fstype: str | None = None, options: str | None = None,
              bind: bool = False) -> str:
        return self._stack.enter_context(mounted(source, target, fstype=fstype, options=options, bind=bind))

    def close(self) -> None:
        try:
            self._stack.close()
        finally:
            run(["sync"], check=False)


def _remove_dir(path: str) -> None:
    with contextlib.suppress(OSError):
        os.rmdir(path)
