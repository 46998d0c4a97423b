"""A test hook that kills this process with SIGKILL at a named point, to prove jobs are crash-safe.

LIFEBOAT_TEST_KILL_AT=NAME[:N] kills the process the N-th time (default 1st) `crashpoint(NAME)` runs;
LIFEBOAT_TEST_STOP_AT=NAME[:N] stops it there instead (SIGSTOP), so a test can pull a disk out from under
a job at a known moment and then let it continue (SIGCONT).
Unset (always, outside the crash-safety tests) it costs one dictionary lookup. SIGKILL runs no
handler, no `finally` and no atexit: what is on disk afterwards is exactly what a pulled plug or
the OOM killer leaves (minus the page cache, which the tests cannot drop for a loop device alone).
"""

from __future__ import annotations

import os
import signal
import threading

ENV = "LIFEBOAT_TEST_KILL_AT"
STOP_ENV = "LIFEBOAT_TEST_STOP_AT"
_counts: dict[str, int] = {}
_lock = threading.Lock()


def crashpoint(name: str) -> None:
    for env, sig in ((ENV, signal.SIGKILL), (STOP_ENV, signal.SIGSTOP)):
        wanted = os.environ.get(env)
        if wanted and _reached(env, wanted, name):
            os.kill(os.getpid(), sig)


def _reached(env: str, wanted: str, name: str) -> bool:
    point, _, nth = wanted.partition(":")
    if point != name:
        return False
    with _lock:
        key = f"{env}/{name}"
        _counts[key] = _counts.get(key, 0) + 1
        return _counts[key] == int(nth or 1)
