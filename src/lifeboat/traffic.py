"""Bytes this process moved to and from network repositories: the payload of every object read from or
written to an ssh://, s3://, http(s):// backend or a mounted smb:// / nfs:// share (not the protocols'
own overhead). Counted by the backends, read by every Progress event (events.py), so the progress
screens can show network throughput beside disk throughput. Thread-safe; never reset (a rate is a
difference of two readings)."""

from __future__ import annotations

import threading
from dataclasses import dataclass

_lock = threading.Lock()
_received = 0
_sent = 0


@dataclass(frozen=True)
class Traffic:
    received: int = 0  # bytes fetched from network repositories
    sent: int = 0  # bytes sent to them

    @property
    def total(self) -> int:
        return self.received + self.sent


def count_received(n: int) -> None:
    global _received
    with _lock:
        _received += n


def count_sent(n: int) -> None:
    global _sent
    with _lock:
        _sent += n


def received() -> int:
    return _received


def sent() -> int:
    return _sent


def totals() -> Traffic:
    with _lock:
        return Traffic(_received, _sent)
