"""Where a repository's objects live: the small protocol every backend implements.

An object has a name made of '/'-separated parts (``chunks/ab/<id>.zst``, ``images/NAME/manifest.json``)
and holds bytes. Backends know nothing of chunks, compression, hashing or encryption: the Repository
(store.py) does those once, above any backend.

Semantics every backend keeps:
- write() is atomic: a reader sees the old object, or none, or the whole new one; never a part.
- sync() makes every write so far durable; the Repository calls it before a manifest appears.
- lock(scope, exclusive) holds a named lock while the block runs, or raises RepositoryError at once
  (never waits): two holders of one scope conflict when either is exclusive.

Locks on stores without file locking (SFTP, S3) are lock objects, as restic does: ``locks/<scope>~<owner>.json``
holding host, pid, time and whether it is exclusive. To take a lock, write one's own lock object, then list
the scope's others: a conflicting lock that is not stale makes us delete ours and refuse. A holder rewrites
its object every LOCK_REFRESH (5 min) seconds; an object older than LOCK_STALE (30 min) belongs to a process that
died without removing it, and is ignored (and removed), as is at once one whose process ran on this machine and
is gone. A lock object we could not remove (the server was gone) is removed at our next lock. Two processes that
write their objects at the same moment both see each other and both refuse: never both win. A process frozen
for longer than LOCK_STALE can lose its lock unknowingly; captures never take that long between refreshes.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Protocol

from lifeboat.errors import RepositoryError

LOCK_REFRESH = 300.0
LOCK_STALE = 1800.0


class ObjectMissing(RepositoryError):
    """The object does not exist."""


class Locked(RepositoryError):
    """Another process holds a conflicting lock."""


class BackendUnavailable(RepositoryError):
    """The server cannot be reached or stopped answering (after retries)."""


class ReadOnly(RepositoryError):
    """The backend cannot be written to (http:// and https:// repositories)."""


class Backend(Protocol):
    url: str  # for messages: never holds a secret
    read_only: bool
    can_list: bool  # False: image names come from images/index.json (static web servers)
    transfer_workers: int | None  # a capture's or restore's pool size; None: the pipeline's default (cores)

    def read(self, name: str) -> bytes: ...  # raises ObjectMissing

    def write(self, name: str, data: bytes, *, durable: bool = False) -> None: ...  # durable: synced before return

    def exists(self, name: str) -> bool: ...

    def size(self, name: str) -> int | None: ...  # None: missing

    def list(self, prefix: str) -> Iterator[tuple[str, int]]: ...  # (name, size) of objects under prefix

    def delete(self, name: str) -> None: ...  # a missing object is not an error

    def lock(self, scope: str, exclusive: bool) -> contextlib.AbstractContextManager[None]: ...

    def sync(self) -> None: ...

    def free_bytes(self) -> int | None: ...  # None: unknown or unlimited

    def clean_partial(self) -> None: ...  # remove leftovers of interrupted writes by dead processes

    def close(self) -> None: ...


def retrying(what: str, attempt, errors: tuple[type[BaseException], ...], *, tries: int = 4, first_delay: float = 0.5,
             on_retry=None):
    """attempt() with back-off (0.5, 1, 2 s: about 4 s in all) on `errors`; then BackendUnavailable naming `what`."""
    delay = first_delay
    for n in range(tries):
        try:
            return attempt()
        except errors as exc:
            if n == tries - 1:
                raise BackendUnavailable(f"{what}: {exc or type(exc).__name__} (gave up after {tries} tries)") from None
            time.sleep(delay)
            delay *= 2
            if on_retry is not None:
                with contextlib.suppress(*errors):
                    on_retry()
    raise AssertionError("unreachable")


def _dead_here(record: dict) -> bool:
    """A lock of a process on this machine that no longer runs."""
    pid = record.get("pid")
    return (record.get("host") == socket.gethostname() and isinstance(pid, int) and pid != os.getpid()
            and not os.path.exists(f"/proc/{pid}"))


class ObjectLocks:
    """restic-style lock objects on a backend that has no file locks (see the module's docstring)."""

    def __init__(self, backend: Backend):
        self.backend = backend
        self._orphans: set[str] = set()  # our lock objects that could not be removed (the server was gone)

    @contextlib.contextmanager
    def hold(self, scope: str, exclusive: bool) -> Iterator[None]:
        self._remove_orphans()
        owner = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        name = f"locks/{scope}~{owner}.json"
        self._write(name, exclusive)
        try:
            self._check(scope, name, exclusive)
        except BaseException:
            self.backend.delete(name)
            raise
        stop = threading.Event()
        refresher = threading.Thread(target=self._refresh, args=(name, exclusive, stop), daemon=True,
                                     name=f"lifeboat-lock-{scope}")
        refresher.start()
        try:
            yield
        finally:
            stop.set()
            refresher.join(timeout=5)
            try:
                self.backend.delete(name)
            except (RepositoryError, OSError):
                self._orphans.add(name)

    def _remove_orphans(self) -> None:
        for name in list(self._orphans):
            with contextlib.suppress(RepositoryError, OSError):
                self.backend.delete(name)
                self._orphans.discard(name)

    def _write(self, name: str, exclusive: bool) -> None:
        record = {"host": socket.gethostname(), "pid": os.getpid(), "time": time.time(), "exclusive": exclusive}
        self.backend.write(name, json.dumps(record).encode())

    def _check(self, scope: str, mine: str, exclusive: bool) -> None:
        for other, _ in list(self.backend.list(f"locks/{scope}~")):
            if other == mine:
                continue
            try:
                record = json.loads(self.backend.read(other))
            except (ObjectMissing, ValueError):
                continue
            if time.time() - float(record.get("time", 0)) > LOCK_STALE or _dead_here(record):
                with contextlib.suppress(RepositoryError):
                    self.backend.delete(other)
                continue
            if exclusive or record.get("exclusive"):
                raise Locked(
                    f"{self.backend.url} is locked ({scope}) by process {record.get('pid')} on {record.get('host')} "
                    f"since {time.strftime('%H:%M:%S', time.localtime(record.get('time', 0)))}; "
                    f"a lock not refreshed for {LOCK_STALE / 60:.0f} minutes is ignored")

    def _refresh(self, name: str, exclusive: bool, stop: threading.Event) -> None:
        while not stop.wait(LOCK_REFRESH):
            with contextlib.suppress(RepositoryError, OSError):
                self._write(name, exclusive)
