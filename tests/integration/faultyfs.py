"""A FUSE filesystem with one file, `disk.img`, whose reads fail with EIO in given byte ranges.

A loop device over it is a disk with unreadable sectors: real kernel errors, real O_DIRECT reads, no
mock in Lifeboat. Run as a program (the FUSE main loop blocks):

    python3 faultyfs.py BACKING_FILE MOUNTPOINT BAD_RANGES_JSON

BAD_RANGES_JSON is a file holding [[offset, length], ...] in bytes of the disk. It is re-read when its
modification time changes, so a test can add damage while the disk is in use. Mounted with direct_io:
the kernel passes every read through with its exact offset and size (no page cache rounding to 4 KiB).
Reads are served by fusepy (PyPI; it loads Debian's libfuse2).
"""

from __future__ import annotations

import errno
import json
import os
import stat
import sys
import threading

from fuse import FUSE, FuseOSError, Operations

NAME = "/disk.img"


class FaultyDisk(Operations):
    def __init__(self, backing: str, ranges_file: str):
        self.fd = os.open(backing, os.O_RDONLY)
        self.size = os.fstat(self.fd).st_size
        self.ranges_file = ranges_file
        self.ranges: list[tuple[int, int]] = []
        self.mtime = 0.0
        self.failed_reads = 0
        self.lock = threading.Lock()

    def _bad(self, offset: int, size: int) -> bool:
        mtime = os.stat(self.ranges_file).st_mtime
        with self.lock:
            if mtime != self.mtime:
                with open(self.ranges_file) as f:
                    self.ranges = [tuple(r) for r in json.load(f)]
                self.mtime = mtime
            return any(s < offset + size and offset < s + n for s, n in self.ranges)

    def getattr(self, path, fh=None):
        if path == "/":
            return {"st_mode": stat.S_IFDIR | 0o755, "st_nlink": 2}
        if path == NAME:
            return {"st_mode": stat.S_IFREG | 0o444, "st_nlink": 1, "st_size": self.size}
        raise FuseOSError(errno.ENOENT)

    def readdir(self, path, fh):
        return [".", "..", NAME[1:]]

    def open(self, path, flags):
        if path != NAME:
            raise FuseOSError(errno.ENOENT)
        if flags & (os.O_WRONLY | os.O_RDWR):
            raise FuseOSError(errno.EROFS)
        return 0

    def read(self, path, size, offset, fh):
        if self._bad(offset, size):
            self.failed_reads += 1
            raise FuseOSError(errno.EIO)
        return os.pread(self.fd, size, offset)


def main() -> None:
    backing, mountpoint, ranges_file = sys.argv[1:4]
    FUSE(FaultyDisk(backing, ranges_file), mountpoint, foreground=True, ro=True, direct_io=True, nothreads=False)


if __name__ == "__main__":
    main()
