"""restic-style lock objects (used on SFTP and S3), exercised on a local directory backend."""

import json
import socket
import time

import pytest

from lifeboat.repo.backend import LOCK_STALE, Locked, ObjectLocks
from lifeboat.repo.local import LocalBackend


@pytest.fixture
def backend(tmp_path):
    b = LocalBackend(tmp_path / "r")
    b.prepare()
    return b


def _foreign(backend, scope, **record):
    record = {"host": "other-host", "pid": 4242, "time": time.time(), "exclusive": False, **record}
    backend.write(f"locks/{scope}~other.json", json.dumps(record).encode())


def test_shared_locks_coexist_and_exclusive_conflicts(backend):
    a, b = ObjectLocks(backend), ObjectLocks(backend)
    with a.hold("repository", False), b.hold("repository", False):
        with pytest.raises(Locked, match=r"locked \(repository\) by process \d+"):
            with b.hold("repository", True):
                pass
    with a.hold("repository", True):
        with pytest.raises(Locked):
            with b.hold("repository", False):
                pass
    assert list(backend.list("locks/")) == []  # every lock object removed, refused ones too


def test_scopes_do_not_collide(backend):
    locks = ObjectLocks(backend)
    with locks.hold("image-a", True), locks.hold("image-a.b", True):
        pass


def test_stale_and_dead_locks_are_ignored(backend):
    locks = ObjectLocks(backend)
    _foreign(backend, "repository", exclusive=True, time=time.time() - LOCK_STALE - 1)
    with locks.hold("repository", False):
        pass
    _foreign(backend, "repository", exclusive=True, host=socket.gethostname(), pid=999_999_999)
    with locks.hold("repository", False):
        pass
    _foreign(backend, "repository", exclusive=True)
    with pytest.raises(Locked, match="process 4242 on other-host"):
        with locks.hold("repository", False):
            pass
