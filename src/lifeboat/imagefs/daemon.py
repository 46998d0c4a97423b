"""The FUSE daemon behind `lifeboat mount`: one read-only file per address space of an image.

    VIEW/p2           partition 2's address space (its size, zero outside the block map)
    VIEW/lv-vg0-root  a logical volume's
    VIEW/stats.json   chunks fetched, bytes fetched, cache hits, reads (read anew on every open)

Run as `python -m lifeboat.imagefs.daemon REPO IMAGE VIEW READY_FILE [--secrets-fd=N]`; an encrypted
repository's master key and a network repository's credentials arrive on file descriptor N (a pipe from
`lifeboat mount`, read to its end and closed; secrets.py). It writes READY_FILE once the kernel has the mount, and serves until it is unmounted or sent SIGTERM. Nothing here writes to the
repository or the image.
"""

from __future__ import annotations

import errno
import json
import os
import stat
import sys
import time

from lifeboat.imagefs.fusebinding import FUSE, FuseOSError, Operations

from lifeboat.imagefs.secrets import DaemonSecrets, read_pipe
from lifeboat.imagefs.view import SpaceReader, WindowCache, address_spaces
from lifeboat.repo.manifest import load_manifest
from lifeboat.repo.store import Repository

STATS = "stats.json"


class ImageOps(Operations):
    use_ns = True  # times in nanoseconds (fusepy warns otherwise)

    def __init__(self, readers: dict[str, SpaceReader], cache: WindowCache, ready: str):
        self.readers, self.cache, self.ready = readers, cache, ready
        self.now = time.time_ns()

    def init(self, path):
        with open(self.ready, "w") as f:
            f.write(f"{os.getpid()}\n")

    def _stats(self) -> bytes:
        return (json.dumps(self.cache.stats.to_json()) + "\n").encode()

    def getattr(self, path, fh=None):
        base = {"st_uid": 0, "st_gid": 0, "st_atime": self.now, "st_mtime": self.now, "st_ctime": self.now}
        if path == "/":
            return {**base, "st_mode": stat.S_IFDIR | 0o555, "st_nlink": 2}
        name = path[1:]
        if name == STATS:
            return {**base, "st_mode": stat.S_IFREG | 0o444, "st_nlink": 1, "st_size": 4096}
        reader = self.readers.get(name)
        if reader is None:
            raise FuseOSError(errno.ENOENT)
        return {**base, "st_mode": stat.S_IFREG | 0o444, "st_nlink": 1, "st_size": reader.space.size,
                "st_blocks": reader.space.stream.used_bytes // 512}

    def readdir(self, path, fh):
        return [".", "..", STATS, *self.readers]

    def open(self, path, fi):
        if fi.flags & (os.O_WRONLY | os.O_RDWR):
            raise FuseOSError(errno.EROFS)
        name = path[1:]
        if name == STATS:
            fi.direct_io = 1  # its content changes: never cached
        elif name in self.readers:
            fi.keep_cache = 1  # the image never changes
        else:
            raise FuseOSError(errno.ENOENT)
        return 0

    def read(self, path, size, offset, fi):
        name = path[1:]
        if name == STATS:
            return self._stats()[offset : offset + size]
        reader = self.readers.get(name)
        if reader is None:
            raise FuseOSError(errno.ENOENT)
        try:
            return reader.read(offset, size)
        except Exception as exc:  # noqa: BLE001 - a damaged chunk is an I/O error to the reader, logged here
            print(f"lifeboat mount: {reader.space.title} at offset {offset}: {exc}", file=sys.stderr, flush=True)
            raise FuseOSError(errno.EIO) from None


def serve(repo_root: str, image: str, view: str, ready: str, secrets_fd: int | None = None) -> None:
    secrets = DaemonSecrets() if secrets_fd is None else read_pipe(secrets_fd)
    repo = Repository.open(repo_root, master_key=secrets.key(), credentials=secrets.credentials)
    manifest = load_manifest(repo, image)
    cache = WindowCache(repo)
    readers = {s.name: SpaceReader(repo, s, cache) for s in address_spaces(manifest)}
    FUSE(ImageOps(readers, cache, ready), view, foreground=True, ro=True, raw_fi=True, nothreads=False,
         fsname=f"lifeboat:{image}", subtype="lifeboat", default_permissions=True)


if __name__ == "__main__":
    fds = [int(a.removeprefix("--secrets-fd=")) for a in sys.argv[5:] if a.startswith("--secrets-fd=")]
    serve(*sys.argv[1:5], secrets_fd=fds[0] if fds else None)
