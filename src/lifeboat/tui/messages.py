"""Messages that carry news from threads (udev, engine workers) to the UI thread."""

from __future__ import annotations

from textual.message import Message

from lifeboat.events import Event, Progress
from lifeboat.errors import LifeboatError
from lifeboat.tui.backend import JobOutcome


class DisksChanged(Message):
    """udev says a disk came, went or changed: re-read the list."""

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, DisksChanged)


class EngineEvent(Message):
    """One event from the engine's progress sink."""

    def __init__(self, event: Event) -> None:
        super().__init__()
        self.event = event

    def can_replace(self, message: Message) -> bool:
        # A burst of byte counts for the same item collapses into the newest one.
        mine, theirs = self.event, getattr(message, "event", None)
        return (
            isinstance(message, EngineEvent)
            and isinstance(mine, Progress)
            and isinstance(theirs, Progress)
            and (mine.phase, mine.item) == (theirs.phase, theirs.item)
        )


class JobFinished(Message):
    """The worker is done: `outcome` on success, `error` otherwise (Cancelled included)."""

    def __init__(self, outcome: JobOutcome | None = None, error: LifeboatError | None = None) -> None:
        super().__init__()
        self.outcome = outcome
        self.error = error


class PlanReady(Message):
    """A plan was worked out in a worker: `plan`, or `error` saying why it cannot be done."""

    def __init__(self, plan: object | None = None, error: str = "") -> None:
        super().__init__()
        self.plan = plan
        self.error = error


class ListReady(Message):
    """Something slow to list (disks, images, repositories) was read in a worker."""

    def __init__(self, kind: str, items: list, error: str = "") -> None:
        super().__init__()
        self.kind = kind
        self.items = items
        self.error = error


class PassphraseWanted(Message):
    """The repository in use is encrypted and locked: ask its passphrase."""

    def __init__(self, url: str) -> None:
        super().__init__()
        self.url = url
