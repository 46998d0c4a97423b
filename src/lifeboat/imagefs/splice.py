"""A FUSE file that is a filesystem's full-size address space while it is shrunk in place.

    VIEW/fs   bytes [0, CUT)  -> the target partition (its node, at the same offsets)
              bytes [CUT, SIZE) -> OVERFLOW, a sparse file holding only what lies beyond the cut

The resize tool (through a loop device over VIEW/fs) sees the filesystem at its captured size, moves
what lies beyond the cut into the partition, and shrinks it to CUT; afterwards the overflow is
discarded. Run as `python -m lifeboat.imagefs.splice TARGET CUT OVERFLOW SIZE VIEW READY_FILE`.
"""

from __future__ import annotations

import errno
import os
import stat
import sys
import time

from lifeboat.imagefs.fusebinding import FUSE, FuseOSError, Operations

NAME = "fs"


class SpliceOps(Operations):
    use_ns = True

    def __init__(self, target: str, cut: int, overflow: str, size: int, ready: str):
        self.cut, self.size, self.ready = cut, size, ready
        self.target = os.open(target, os.O_RDWR)
        self.overflow = os.open(overflow, os.O_RDWR)
        self.now = time.time_ns()

    def init(self, path):
        with open(self.ready, "w") as f:
            f.write(f"{os.getpid()}\n")

    def destroy(self, path):
        for fd in (self.target, self.overflow):
            os.fsync(fd)
            os.close(fd)

    def getattr(self, path, fh=None):
        base = {"st_uid": 0, "st_gid": 0, "st_atime": self.now, "st_mtime": self.now, "st_ctime": self.now}
        if path == "/":
            return {**base, "st_mode": stat.S_IFDIR | 0o755, "st_nlink": 2}
        if path != f"/{NAME}":
            raise FuseOSError(errno.ENOENT)
        return {**base, "st_mode": stat.S_IFREG | 0o600, "st_nlink": 1, "st_size": self.size}

    def readdir(self, path, fh):
        return [".", "..", NAME]

    def open(self, path, flags):
        if path != f"/{NAME}":
            raise FuseOSError(errno.ENOENT)
        return 0

    def _pieces(self, offset: int, length: int):
        """(fd, file offset, length) for each side of the cut that [offset, offset+length) touches."""
        end = min(offset + length, self.size)
        if offset < min(end, self.cut):
            yield self.target, offset, min(end, self.cut) - offset
        if end > self.cut and end > offset:
            start = max(offset, self.cut)
            yield self.overflow, start - self.cut, end - start

    def read(self, path, size, offset, fh):
        return b"".join(os.pread(fd, n, at).ljust(n, b"\0") for fd, at, n in self._pieces(offset, size))

    def write(self, path, data, offset, fh):
        if offset + len(data) > self.size:
            raise FuseOSError(errno.ENOSPC)
        pos = 0
        for fd, at, n in self._pieces(offset, len(data)):
            view = memoryview(data)[pos : pos + n]
            done = 0
            while done < n:
                done += os.pwrite(fd, view[done:], at + done)
            pos += n
        return len(data)

    def truncate(self, path, length, fh=None):
        if length != self.size:
            raise FuseOSError(errno.EPERM)

    def fsync(self, path, datasync, fh):
        os.fsync(self.target)
        os.fsync(self.overflow)
        return 0

    def flush(self, path, fh):
        return 0


def serve(target: str, cut: str, overflow: str, size: str, view: str, ready: str) -> None:
    FUSE(SpliceOps(target, int(cut), overflow, int(size), ready), view, foreground=True, nothreads=False,
         fsname="lifeboat-splice", subtype="lifeboat", big_writes=True, max_write=131072)


if __name__ == "__main__":
    serve(*sys.argv[1:7])
