"""A job as the progress screen runs it: what to call, what to ask before stopping it, and what a
stop leaves behind."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from lifeboat.events import ProgressSink
from lifeboat.tui.backend import JobOutcome


@dataclass(frozen=True)
class JobSpec:
    title: str  # "Restoring laptop-2026-11-01 to sdb"
    run: Callable[[ProgressSink, threading.Event], JobOutcome]
    stop_question: str  # "Stop the restore?"
    stop_warning: str  # what stopping will do, said before the user decides
    # The target's state after a stop or a failure, given how far the job got: "" (nothing started),
    # "started" (steps began, no bytes yet) or the engine phase of the last Progress ("restore", "verify"...).
    state_after_stop: Callable[[str], str]
    offer_power: bool = False  # the result screen offers reboot / power off
    phases: dict[str, str] = field(default_factory=dict)  # engine phase -> heading ("verify": "Verifying")
    on_success: Callable[[], None] | None = None  # e.g. refresh the image list
    # a capture that stopped on a read error: start the same capture again with rescue on
    rescue_retry: Callable[[], None] | None = None


def is_read_error(error: BaseException | None) -> bool:
    """A capture stopped by an unreadable source (the engine says so and suggests --rescue)."""
    text = str(error or "").lower()
    return "read error" in text or "--rescue" in text
