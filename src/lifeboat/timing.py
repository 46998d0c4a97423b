"""Where the time goes: seconds per pipeline stage, summed over the threads that did the work.

The capture and restore pipelines add to one of these per partition and log a summary, so a slow
run says which stage to look at next (the benchmark prints it). Adding costs a lock and two clock
reads per 4 MiB chunk.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager


class StageTimes:
    """Thread-seconds and bytes per stage (read, hash, compress, write, ...), safe to add from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.seconds: dict[str, float] = {}
        self.bytes: dict[str, int] = {}
        self.started = time.monotonic()

    def add(self, stage: str, seconds: float, nbytes: int = 0) -> None:
        with self._lock:
            self.seconds[stage] = self.seconds.get(stage, 0.0) + seconds
            self.bytes[stage] = self.bytes.get(stage, 0) + nbytes

    @contextmanager
    def measure(self, stage: str, nbytes: int = 0) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.add(stage, time.perf_counter() - start, nbytes)

    def summary(self, workers: int) -> str:
        """'read 3.1 s (1.6 GB/s), hash 4.2 s, ... in 9.0 s with 4 workers': thread-seconds per stage."""
        wall = time.monotonic() - self.started
        with self._lock:
            parts = [f"{stage} {s:.1f} s" + (f" ({self.bytes[stage] / s / 1e9:.2f} GB/s)" if self.bytes[stage] and s > 0 else "")
                     for stage, s in self.seconds.items()]
        on = f" with {workers} workers" if workers else ""
        return f"time per stage (thread-seconds): {', '.join(parts) or 'none'}; {wall:.1f} s wall{on}"
