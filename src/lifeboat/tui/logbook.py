"""The log: every `lifeboat.*` logging record (engine steps included) goes to the backend's log file
and into a LogBook kept in memory for the log view."""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections import deque
from collections.abc import Callable

from lifeboat.events import Event, LogLine, StepFinished, StepStarted

MAX_LINES = 5000
LEVELS = {"info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}
job_log = logging.getLogger("lifeboat.job")


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



def log_event(event: Event) -> None:
    """Engine steps and log lines go to the `lifeboat.job` logger (file and log view); byte counts do not."""
    if isinstance(event, StepStarted):
        job_log.info("start %s %s", event.step, event.detail)
    elif isinstance(event, StepFinished):
        job_log.info("%s %s %s", event.outcome, event.step, event.detail)
    elif isinstance(event, LogLine):
        job_log.log(LEVELS.get(event.level, logging.INFO), "%s", event.message)


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


def attach_logging(log_path: str, book: LogBook) -> Callable[[], None]:
    """Send `lifeboat.*` records to the log file and to the log view; returns a function that undoes it."""
    root = logging.getLogger("lifeboat")
    handlers: list[logging.Handler] = [LogBookHandler(book)]
    try:
        os.makedirs(os.path.dirname(log_path) or ".", exist_ok=True)
        file_handler = logging.FileHandler(log_path)
    except OSError as error:
        book.add(f"cannot write the log file {log_path}: {error}")
    else:
        file_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        handlers.append(file_handler)
    for handler in handlers:
        root.addHandler(handler)
    old_level, old_propagate = root.level, root.propagate
    if root.level == logging.NOTSET or root.level > logging.INFO:
        root.setLevel(logging.INFO)
    # Anything written to the terminal under a full-screen app garbles it: while the TUI runs, records
    # stay out of the stderr handlers a command line set up (logging.basicConfig), whatever logger they come from.
    root.propagate = False
    terminal_handlers = [h for h in logging.getLogger().handlers if _writes_to_terminal(h)]
    for handler in terminal_handlers:
        logging.getLogger().removeHandler(handler)

    def detach() -> None:
        for handler in handlers:
            root.removeHandler(handler)
            handler.close()
        root.setLevel(old_level)
        root.propagate = old_propagate
        for handler in terminal_handlers:
            logging.getLogger().addHandler(handler)

    return detach


def _writes_to_terminal(handler: logging.Handler) -> bool:
    stream = getattr(handler, "stream", None)
    return isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler) and (
        stream in (sys.stderr, sys.stdout, sys.__stderr__, sys.__stdout__)
    )
