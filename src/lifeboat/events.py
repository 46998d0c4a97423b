"""Typed progress events, below every package that emits or renders them (engine, boot, tui).

The engine and boot emit them through a `progress` callable; front ends render them.

The engine never waits on a front end: a progress sink must return quickly (the TUI posts a message,
the CLI redraws a line).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Union

from lifeboat import traffic


class Outcome(StrEnum):
    """How a step ended, in the same words everywhere: CLI, TUI, unattended result, JSON."""

    DONE = "done"
    NOT_NEEDED = "not-needed"  # nothing to do (a data disk needs no bootloader), with a note saying why
    SKIPPED = "skipped"  # the user asked not to (--no-bootloader)
    NEEDS_PASSPHRASE = "needs-passphrase"  # a LUKS container stayed locked: no passphrase was given (not a failure)
    FAILED = "failed"


def summarize(outcomes: Iterable[Outcome | str]) -> Outcome:
    """One word for several steps: failed if any failed (or none ran), needs-passphrase if a step could not be
    done without one, skipped or not-needed when every step was, else done."""
    found = [Outcome(o) for o in outcomes]
    if not found or Outcome.FAILED in found:
        return Outcome.FAILED
    if Outcome.NEEDS_PASSPHRASE in found:
        return Outcome.NEEDS_PASSPHRASE
    for word in (Outcome.SKIPPED, Outcome.NOT_NEEDED):
        if all(o == word for o in found):
            return word
    return Outcome.DONE


@dataclass(frozen=True)
class StepStarted:
    """A named stage begins: 'layout', 'boot-regions', 'partition 2 (ext4)', 'grow p2', 'bootloader'..."""

    step: str
    detail: str = ""


@dataclass(frozen=True)
class StepFinished:
    step: str
    outcome: Outcome = Outcome.DONE
    detail: str = ""


@dataclass(frozen=True)
class Progress:
    """Byte counts. `item` names the partition being worked on; the totals cover the whole job.
    `net_received`/`net_sent`: this process's bytes from/to network repositories so far (traffic.py), read when
    the event is made; the front ends show their rate beside the disk rate (0 and unchanged: a local job)."""

    phase: str  # capture | restore | verify
    item: str
    item_done: int
    item_total: int
    done: int
    total: int
    at: float = field(default_factory=time.monotonic)
    read_errors: int = 0  # a rescue capture: failed reads of the current partition so far
    to_retry: int = 0  # a rescue capture: bytes the retry passes have still to go over
    net_received: int = field(default_factory=traffic.received)
    net_sent: int = field(default_factory=traffic.sent)


@dataclass(frozen=True)
class LogLine:
    message: str
    level: str = "info"  # info | warning | error


Event = Union[StepStarted, StepFinished, Progress, LogLine]
ProgressSink = Callable[[Event], None]


def discard(event: Event) -> None:
    """A progress sink that ignores everything."""
