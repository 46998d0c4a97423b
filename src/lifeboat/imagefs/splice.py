"""A FUSE file that is a filesystem's full-size address space while it is shrunk in place.

    VIEW/fs   bytes [0, CUT)  -> the target partition (its node, at the same offsets)
              bytes [CUT, SIZE) -> OVERFLOW, a sparse encrypted scratch file (imagefs/scratch.py) holding
                                   only what lies beyond the cut; its key comes through a pipe

The resize tool (through a loop device over VIEW/fs) sees the filesystem at its captured size, moves
what lies beyond the cut into the partition, and shrinks it to CUT; afterwards the overflow is
discarded. Run as `python -m lifeboat.imagefs.splice TARGET CUT OVERFLOW SIZE VIEW READY_FILE --scratch-fd=N`.
"""

from __future__ import annotations

import errno
import os
import stat
import sys
import time

from lifeboat.errors import LifeboatError
from lifeboat.imagefs.fusebinding import FUSE, FuseOSError, Operations
from lifeboat.imagefs.scratch import ScratchFile, ScratchState, read_state

NAME = "fs"


class SpliceOps(Operations):
    use_ns = True

    def __init__(self, target: str, cut: int, overflow: str, size: int, ready: str, state: ScratchState):
        self.cut, self.size, self.ready = cut, size, ready
        self.target = os.open(target, os.O_RDWR)
        self.overflow = ScratchFile(overflow, state)
        self.now = time.time_ns()

    def init(self, path):
        with open(self.ready, "w") as f:
            f.write(f"{os.getpid()}\n")

    def destroy(self, path):
        os.fsync(self.target)
        os.close(self.target)
        self.overflow.close()

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
        """(is the target, file offset, length) for each side of the cut [offset, offset+length) touches."""
        end = min(offset + length, self.size)
        if offset < min(end, self.cut):
            yield True, offset, min(end, self.cut) - offset
        if end > self.cut and end > offset:
            start = max(offset, self.cut)
            yield False, start - self.cut, end - start

    def read(self, path, size, offset, fh):
        try:
            return b"".join(os.pread(self.target, n, at).ljust(n, b"\0") if target else self.overflow.read(at, n)
                            for target, at, n in self._pieces(offset, size))
        except LifeboatError as exc:  # a changed scratch file is an I/O error to the resize tool, logged here
            print(f"lifeboat splice: {exc}", file=sys.stderr, flush=True)
            raise FuseOSError(errno.EIO) from None

    def write(self, path, data, offset, fh):
        if offset + len(data) > self.size:
            raise FuseOSError(errno.ENOSPC)
        pos = 0
        try:
            for target, at, n in self._pieces(offset, len(data)):
                view = memoryview(data)[pos : pos + n]
                done = 0
                while target and done < n:
                    done += os.pwrite(self.target, view[done:], at + done)
                if not target:
                    self.overflow.write(at, view)
                pos += n
        except LifeboatError as exc:
            print(f"lifeboat splice: {exc}", file=sys.stderr, flush=True)
            raise FuseOSError(errno.EIO) from None
        return len(data)

    def truncate(self, path, length, fh=None):
        if length != self.size:
            raise FuseOSError(errno.EPERM)

    def fsync(self, path, datasync, fh):
        os.fsync(self.target)
        self.overflow.flush()
        return 0

    def flush(self, path, fh):
        return 0


def serve(target: str, cut: str, overflow: str, size: str, view: str, ready: str, scratch_fd: int) -> None:
    state = read_state(scratch_fd)
    FUSE(SpliceOps(target, int(cut), overflow, int(size), ready, state), view, foreground=True, nothreads=False,
         fsname="lifeboat-splice", subtype="lifeboat", big_writes=True, max_write=131072)


if __name__ == "__main__":
    fds = [int(a.removeprefix("--scratch-fd=")) for a in sys.argv[7:] if a.startswith("--scratch-fd=")]
    if not fds:
        sys.exit("lifeboat splice: --scratch-fd=N is required (the overflow's key comes through a pipe)")
    serve(*sys.argv[1:7], scratch_fd=fds[0])
