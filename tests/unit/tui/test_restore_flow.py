"""Restore: image → target → plan → type the name → progress → result, and its failure paths."""

from __future__ import annotations

import threading

from lifeboat.errors import CommandFailed
from lifeboat.tui.dialogs.confirm import ConfirmDialog, TypeNameDialog
from lifeboat.tui.dialogs.error import ErrorDialog
from lifeboat.tui.screens.home import HomeScreen
from lifeboat.tui.screens.pick import DiskPickScreen, PickScreen
from lifeboat.tui.screens.plan import PlanScreen
from lifeboat.tui.screens.progress import ProgressScreen
from lifeboat.tui.screens.result import ResultScreen
from textual.widgets import OptionList

from tui_pilot import SIZE, drive, screen_text, started, wait_for_screen, wait_until


async def to_plan(pilot, target_downs: int) -> PlanScreen:
    """From home: restore the first image onto the disk `target_downs` below the first."""
    await started(pilot)
    await pilot.press("r")
    await wait_for_screen(pilot, PickScreen)
    await pilot.press("enter")
    await wait_for_screen(pilot, DiskPickScreen)
    await pilot.press(*["down"] * target_downs, "enter")
    plans = lambda: [s for s in pilot.app.screen_stack if isinstance(s, PlanScreen)]  # noqa: E731
    await wait_until(pilot, plans, what="the plan screen")  # a refused plan puts a dialog on top at once
    return plans()[0]


@drive
async def test_restore_happy_path(make_app, backend):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        plan_screen = await to_plan(pilot, 1)  # sdb, the blank 500 GiB disk
        await wait_until(pilot, lambda: plan_screen.plan is not None, what="the plan")
        text = screen_text(plan_screen)
        assert "grows" in text and "Write a gpt partition table to /dev/sdb" in text
        await pilot.press("enter")
        await wait_for_screen(pilot, TypeNameDialog)
        await pilot.press("s", "d", "a", "enter")  # the wrong name writes nothing
        assert isinstance(app.screen, TypeNameDialog)
        assert "That is not sdb" in screen_text(app.screen)
        await pilot.press("s", "d", "b", "enter")
        await wait_for_screen(pilot, ResultScreen)
        assert app.screen.verdict == "Done"
        assert "Bootloader: GRUB (UEFI) reinstalled" in screen_text(app.screen)
        assert backend.calls == [("restore", "laptop-2026-11-01", "/dev/sdb")]
        await pilot.press("enter")
        await wait_for_screen(pilot, HomeScreen)


@drive
async def test_unsafe_target_is_greyed_and_cannot_be_chosen(make_app, backend):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        await pilot.press("r", "enter")
        screen = await wait_for_screen(pilot, DiskPickScreen)
        choices = screen.query_one(OptionList)
        boot_stick = choices.get_option("/dev/sdd")
        assert boot_stick.disabled
        assert "Lifeboat runs from this disk" in str(boot_stick.prompt)
        await pilot.press("end", "enter")  # the last choosable disk is sdc, never the stick
        dialog = await wait_for_screen(pilot, ErrorDialog)  # sdc is too small for this image
        assert dialog.message.startswith("/dev/sdc ")
        await pilot.press("enter", "escape")
        await wait_for_screen(pilot, DiskPickScreen)


@drive
async def test_target_too_small_is_refused_before_anything_is_written(make_app, backend):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await to_plan(pilot, 2)  # sdc is 64 GiB, the image came from 256 GiB
        dialog = await wait_for_screen(pilot, ErrorDialog)
        assert "too small" in dialog.message
        assert backend.log_path in screen_text(dialog)
        await pilot.press("enter")
        plan_screen = await wait_for_screen(pilot, PlanScreen)
        await pilot.press("enter")  # no plan: going on is not possible
        await pilot.pause()
        assert app.screen is plan_screen and backend.calls == []


@drive
async def test_cancel_asks_first_then_says_what_state_the_target_is_in(make_app, backend):
    backend.gate = threading.Event()  # the job holds after its first progress event
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await to_plan(pilot, 1)
        await wait_until(pilot, lambda: app.screen.plan is not None, what="the plan")
        await pilot.press("enter", "s", "d", "b", "enter")
        progress = await wait_for_screen(pilot, ProgressScreen)
        await wait_until(pilot, lambda: progress.reached == "restore", what="the first bytes")
        await pilot.press("escape")
        await wait_for_screen(pilot, ConfirmDialog)
        await pilot.press("n")  # changed my mind: the job goes on
        await wait_for_screen(pilot, ProgressScreen)
        assert not progress.cancel.is_set()
        await pilot.press("escape")
        await wait_for_screen(pilot, ConfirmDialog)
        await pilot.press("y")
        result = await wait_for_screen(pilot, ResultScreen)
        assert result.verdict == "Stopped"
        assert "sdb was partly written" in result.state
        assert not backend.gate.is_set()


@drive
async def test_engine_error_shows_dialog_with_log_location_then_result(make_app, backend):
    backend.fail_at = 0.5
    backend.failure = CommandFailed(["partclone.ext4", "-r", "-s", "-", "-o", "/dev/sdb2"], 1, "write error")
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await to_plan(pilot, 1)
        await wait_until(pilot, lambda: app.screen.plan is not None, what="the plan")
        await pilot.press("enter", "s", "d", "b", "enter")
        dialog = await wait_for_screen(pilot, ErrorDialog)
        assert "failed with exit code 1: write error" in dialog.message
        assert f"The full log is in {backend.log_path}" in screen_text(dialog)
        await pilot.press("l")  # the log view from the error dialog
        await wait_until(pilot, lambda: type(app.screen).__name__ == "LogScreen", what="the log")
        await pilot.press("escape", "enter")
        result = await wait_for_screen(pilot, ResultScreen)
        assert result.verdict == "Failed"
        assert "holds no usable system" in result.state


@drive
async def test_typed_name_with_letters_that_are_also_keys(backend, make_app):
    """'l' opens the log everywhere else; typing 'loop1' must still reach the name field."""
    from dataclasses import replace

    loop = replace(backend.disks[1], path="/dev/loop1", name="loop1", model="Loop disk")
    backend.disks[1] = loop
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        plan_screen = await to_plan(pilot, 1)
        await wait_until(pilot, lambda: plan_screen.plan is not None, what="the plan")
        await pilot.press("enter")
        await wait_for_screen(pilot, TypeNameDialog)
        await pilot.press(*"loop1", "enter")
        await wait_for_screen(pilot, ResultScreen)
        assert backend.calls == [("restore", "laptop-2026-11-01", "/dev/loop1")]


@drive
async def test_clock_ticks_while_the_engine_is_busy_and_quit_waits_for_the_job(make_app, backend):
    from textual.widgets import Static

    backend.gate = threading.Event()  # the engine thread sits in its work and posts nothing
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("v")  # verify: the shortest way to a running job
        await wait_for_screen(pilot, PickScreen)
        await pilot.press("enter")
        progress = await wait_for_screen(pilot, ProgressScreen)
        await wait_until(pilot, backend.started.is_set, what="the job to start")
        numbers = progress.query_one("#numbers", Static)
        await wait_until(pilot, lambda: "elapsed 0:00:01" in str(numbers.render()), timeout=5, what="the clock")
        await pilot.press("ctrl+q")  # leaving now would abandon the job: refused
        await pilot.pause()
        assert app.screen is progress and app.is_running
        backend.gate.set()
        await wait_for_screen(pilot, ResultScreen)
