"""Process-wide claims on disks: a capture holds its source so that no restore can target it.

The claim is an flock on /run/lifeboat/capture-<dev>.lock, so it vanishes with the process that held it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator

from lifeboat.errors import UnsafeTarget

LOCK_DIR = os.environ.get("LIFEBOAT_LOCK_DIR", "/run/lifeboat")


def _lock_path(device: str) -> str:
    st = os.stat(device)
    return os.path.join(LOCK_DIR, f"capture-{os.major(st.st_rdev)}-{os.minor(st.st_rdev)}.lock")


@contextlib.contextmanager
def capturing(device: str) -> Iterator[None]:
    """Hold the capture claim on `device` for the duration of the block."""
    os.makedirs(LOCK_DIR, exist_ok=True)
    fd = os.open(_lock_path(device), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UnsafeTarget(f"{device} is already being captured by another Lifeboat process") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        os.close(fd)


def capture_in_progress(device: str) -> bool:
    try:
        path = _lock_path(device)
    except OSError:
        return False
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)


@contextlib.contextmanager
def holding_disk(device: str) -> Iterator[None]:
    """Tell udev we are using `device` for the duration of the block (systemd's block device locking).

    A shared BSD lock on the whole disk stops udevd from re-reading its partition table when a
    tool closes one of its partitions after writing (it needs an exclusive lock for that). Without
    this, mkfs/e2fsck/partclone closing a partition can make some kernels drop every partition node
    of the disk in the middle of our work.
    """
    fd = os.open(device, os.O_RDONLY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)
