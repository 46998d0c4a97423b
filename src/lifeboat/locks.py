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
