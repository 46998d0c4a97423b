"""A repository in a local directory (a stick's data partition, a disk, or a mounted SMB/NFS share).

Objects are files under the root; a write goes to ROOT/tmp/ and is renamed into place. Locks are flock(2)
on files in ROOT/tmp/, released by the kernel when a process dies. The layout is the one every earlier
Lifeboat wrote, so existing repositories open unchanged.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

from lifeboat import traffic
from lifeboat.crashpoint import crashpoint
from lifeboat.errors import RepositoryError
from lifeboat.repo.backend import Locked, ObjectMissing

_libc = ctypes.CDLL(None, use_errno=True)  # syncfs(2): Python has no wrapper before 3.12
_libc.sync_file_range.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
SYNC_FILE_RANGE_WRITE = 2


class LocalBackend:
    read_only = False
    can_list = True
    transfer_workers = None

    def __init__(self, root: Path, *, network: bool = False):
        self.root = root
        self.network = network  # a mounted smb:// or nfs:// share: reads and writes are network traffic
        self.url = str(root)
        self.tmp_dir = root / "tmp"

    def path(self, name: str) -> Path:
        return self.root / name

    def prepare(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        for d in ("chunks", "images", "tmp"):
            (self.root / d).mkdir(exist_ok=True)

    def read(self, name: str) -> bytes:
        try:
            data = self.path(name).read_bytes()
        except FileNotFoundError:
            raise ObjectMissing(f"{self.path(name)} does not exist") from None
        if self.network:
            traffic.count_received(len(data))
        return data

    def write(self, name: str, data: bytes, *, durable: bool = False) -> None:
        final = self.path(name)
        final.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(final, data, self.tmp_dir, sync=durable)
        if self.network:
            traffic.count_sent(len(data))

    def exists(self, name: str) -> bool:
        return self.path(name).exists()

    def size(self, name: str) -> int | None:
        try:
            return self.path(name).stat().st_size
        except FileNotFoundError:
            return None

    def list(self, prefix: str) -> Iterator[tuple[str, int]]:
        base, _, start = prefix.rpartition("/")
        top = self.root / base if base else self.root
        if not top.is_dir():
            return
        for dirpath, _dirs, files in os.walk(top):
            rel = Path(dirpath).relative_to(self.root).as_posix()
            for f in files:
                name = f if rel == "." else f"{rel}/{f}"
                if name.startswith(prefix):
                    with contextlib.suppress(FileNotFoundError):
                        yield name, os.stat(os.path.join(dirpath, f)).st_size

    def delete(self, name: str) -> None:
        path = self.path(name)
        path.unlink(missing_ok=True)
        if name.startswith("images/"):
            with contextlib.suppress(OSError):
                path.parent.rmdir()

    @contextlib.contextmanager
    def lock(self, scope: str, exclusive: bool) -> Iterator[None]:
        path = self.tmp_dir / f"{scope}.lock"
        # read-only: no obstacle to a remount ro. An NFS share emulates flock with POSIX locks, and an exclusive
        # one there needs the file open for writing (else EBADF): a share's lock file is opened read-write.
        fd = os.open(path, (os.O_RDWR if self.network else os.O_RDONLY) | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
            except BlockingIOError:
                raise Locked(f"{self.root} is locked ({scope}) by another Lifeboat process") from None
            except OSError as exc:
                raise RepositoryError(f"cannot lock {path} ({scope}): {exc.strerror}") from None
            yield
        finally:
            os.close(fd)
            if scope != "repository":  # the repository lock file is shared by every capture: it stays
                with contextlib.suppress(OSError):
                    path.unlink()

    def sync(self) -> None:
        fd = os.open(self.root, os.O_RDONLY)
        try:
            if _libc.syncfs(fd) != 0:
                os.sync()
        finally:
            os.close(fd)

    def sync_dir(self, name: str) -> None:
        fd = os.open(self.path(name).parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def free_bytes(self) -> int | None:
        st = os.statvfs(self.root)
        return st.f_bavail * st.f_frsize

    def clean_partial(self) -> None:
        """Remove partial files left by this process, or by processes that no longer exist.

        Another Lifeboat may be capturing into this repository right now: its files stay.
        """
        for p in self.tmp_dir.glob("*.part"):
            pid = p.name.split(".")[-3] if p.name.count(".") >= 3 else ""
            if pid.isdigit() and int(pid) != os.getpid() and os.path.exists(f"/proc/{pid}"):
                continue
            with contextlib.suppress(OSError):
                p.unlink()

    def close(self) -> None:
        pass


def start_writeback(fd: int) -> None:
    """Start writing the file's dirty pages to the disk, without waiting (sync_file_range(2)): the
    capture's final sync then finds them written instead of writing every chunk at the end."""
    _libc.sync_file_range(fd, 0, 0, SYNC_FILE_RANGE_WRITE)  # errors (a filesystem without it) change nothing


def atomic_write(final: Path, data: bytes, tmp_dir: Path, sync: bool = True) -> None:
    tmp = tmp_dir / f"{final.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.part"
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            if sync:
                os.fsync(f.fileno())
            else:
                start_writeback(f.fileno())
        crashpoint(f"before-replace-{final.name}")
        os.replace(tmp, final)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
