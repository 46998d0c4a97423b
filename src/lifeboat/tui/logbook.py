"""The log the TUI shows: engine events and `lifeboat.*` logging records, kept in memory (the file
log is the backend's business)."""

from __future__ import annotations

import logging
import threading
import time
from collections import deque

from lifeboat.engine.events import Event, LogLine, StepFinished, StepStarted

MAX_LINES = 5000


class LogBook:
    """Thread-safe: workers and the logging module append, the log screen reads."""

    def __init__(self) -> None:
        self._lines: deque[str] = deque(maxlen=MAX_LINES)
        self._total = 0
        self._lock = threading.Lock()

    def add(self, line: str) -> None:
        stamp = time.strftime("%H:%M:%S")
        with self._lock:
            self._lines.append(f"{stamp} {line}")
            self._total += 1

    def since(self, seen: int) -> tuple[list[str], int]:
        """Lines added after the first `seen` ones (as many as are still kept), and the new count."""
        with self._lock:
            new = min(self._total - seen, len(self._lines))
            return (list(self._lines)[len(self._lines) - new :] if new > 0 else []), self._total

    def add_event(self, event: Event) -> None:
        if isinstance(event, StepStarted):
            self.add(f"start {event.step} {event.detail}".rstrip())
        elif isinstance(event, StepFinished):
            self.add(f"{event.outcome} {event.step} {event.detail}".rstrip())
        elif isinstance(event, LogLine):
            self.add(f"{event.level}: {event.message}")


class LogBookHandler(logging.Handler):
    def __init__(self, book: LogBook) -> None:
        super().__init__(logging.INFO)
        self.book = book
        self.setFormatter(logging.Formatter("%(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.book.add(self.format(record))
        except Exception:  # noqa: BLE001 - logging must never break the job
            self.handleError(record)
