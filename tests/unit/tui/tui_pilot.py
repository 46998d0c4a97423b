"""Helpers for driving the TUI through Pilot (imported by the tests as `tui_pilot`)."""

from __future__ import annotations

import asyncio
import functools
import time
from datetime import date

from textual.widgets import OptionList

from lifeboat.tui.dialogs.repo_picker import RepoPickerScreen
from lifeboat.tui.screens.pick import DiskPickScreen, PickScreen, TextStepScreen

SIZE = (80, 24)
TODAY = date(2026, 11, 24)  # the date the app is told it is (suggested image names, snapshots)


def drive(test):
    """Run an async test function on its own event loop (no pytest-asyncio needed)."""

    @functools.wraps(test)
    def wrapper(*args, **kwargs):
        asyncio.run(test(*args, **kwargs))

    return wrapper


async def wait_until(pilot, predicate, timeout: float = 10.0, what: str = "condition") -> None:
    """Let the app run until `predicate()` holds; fail (not hang) after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}; screen is {type(pilot.app.screen).__name__}")
        await pilot.pause(0.02)


async def wait_for_screen(pilot, screen_type, timeout: float = 10.0):
    await wait_until(pilot, lambda: isinstance(pilot.app.screen, screen_type), timeout, screen_type.__name__)
    await pilot.pause()
    return pilot.app.screen


async def started(pilot) -> None:
    """The home screen has its disks and images."""
    await wait_until(pilot, lambda: pilot.app.disks and pilot.app.images, what="disks and images")
    await pilot.pause()


def screen_text(screen) -> str:
    """Everything the Static/Label widgets of a screen show, joined (for asserting on wording)."""
    from textual.widgets import Label, Static

    return "\n".join(str(w.render()) for w in screen.query(Static) if isinstance(w, (Static, Label)))


async def choose_repository(pilot, index: int) -> None:
    """On the repository picker: the `index`-th choice, once the scan has found more than one."""
    screen = await wait_for_screen(pilot, RepoPickerScreen)
    choices = screen.query_one(OptionList)
    await wait_until(pilot, lambda: choices.option_count > 1, what="repositories found")
    await pilot.press(*["down"] * index, "enter")


async def to_compression_step(pilot, *downs: str, repo_index: int = 1):
    """From home: capture the disk `downs` below the first, keep the suggested name, choose the repository
    `repo_index` (1: /media/usb-backup); returns the compression step."""
    await started(pilot)
    await pilot.press("c")
    await wait_for_screen(pilot, DiskPickScreen)
    await pilot.press(*downs, "enter")
    await wait_for_screen(pilot, TextStepScreen)
    await pilot.press("enter")
    await choose_repository(pilot, repo_index)
    return await wait_for_screen(pilot, PickScreen)
