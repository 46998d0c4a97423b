"""Issue 13 in the TUI: the disk lists show SMART health and a disk left by a killed restore, a failing source
is offered rescue first, restoring onto a failing disk needs `failing` typed before the disk's name (as the
CLI asks), and a rescue image is listed as incomplete."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from textual.widgets import OptionList

from lifeboat.health import parse_smartctl
from lifeboat.tui.dialogs.confirm import TypeNameDialog
from lifeboat.tui.screens.pick import DiskPickScreen, PickScreen, TextStepScreen
from lifeboat.tui.screens.plan import PlanScreen
from lifeboat.tui.screens.result import ResultScreen

from test_restore_flow import to_plan
from tui_pilot import SIZE, drive, screen_text, started, to_compression_step, wait_for_screen, wait_until

SMARTCTL = Path(__file__).parents[1] / "smartctl"  # real smartctl output (see its README)
FAILING = parse_smartctl(json.loads((SMARTCTL / "ata-failing.json").read_text()))
PASSED = parse_smartctl(json.loads((SMARTCTL / "ata-passed.json").read_text()))


@pytest.fixture
def sick(backend):
    """sda (the laptop) passes SMART, sdb (the blank 500 GiB disk) is failing."""
    backend.disks[0] = replace(backend.disks[0], health=PASSED)
    backend.disks[1] = replace(backend.disks[1], health=FAILING)
    return backend


async def type_text(pilot, text: str) -> None:
    await pilot.press(*text, "enter")


async def wait_until_step(pilot, app, title: str):
    await wait_until(pilot, lambda: isinstance(app.screen, TextStepScreen) and app.screen.step_title == title,
                     what=title)
    return app.screen


@drive
async def test_the_disk_list_shows_each_disks_health(make_app, sick):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        await pilot.press("c")
        screen = await wait_for_screen(pilot, DiskPickScreen)
        choices = screen.query_one(OptionList)
        assert PASSED.describe() in str(choices.get_option("/dev/sda").prompt)
        failing = str(choices.get_option("/dev/sdb").prompt)
        assert "SMART: FAILING (1975 reallocated sectors, 8 pending sectors): capture it with rescue" in failing
        assert "SMART" not in str(choices.get_option("/dev/sdc").prompt)  # health unknown: nothing claimed


@drive
async def test_a_failing_source_is_offered_rescue_first(make_app, sick):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        levels = await to_compression_step(pilot, "down")  # sdb, failing
        assert "Rescue is recommended" in screen_text(levels) and "SMART: FAILING" in screen_text(levels)
        await pilot.press("enter")  # the first choice
        limit = await wait_until_step(pilot, app, "Capture: rescue time limit")
        await type_text(pilot, "soon")
        assert "'soon' is not a number of minutes" in screen_text(limit) and app.screen is limit
        await pilot.press(*["backspace"] * 4)
        await type_text(pilot, "30")
        await wait_for_screen(pilot, ResultScreen)
        capture = next(c for c in sick.calls if c[0] == "capture")
        assert capture[1] == "/dev/sdb" and capture[-1] is True  # captured with rescue
        assert sick.rescue_timeouts == [1800]  # 30 minutes, in seconds


@drive
async def test_rescue_without_a_time_limit(make_app, sick):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await to_compression_step(pilot, "down")  # sdb, failing
        await pilot.press("enter")
        await wait_until_step(pilot, app, "Capture: rescue time limit")
        await pilot.press("enter")  # the empty line: no limit
        await wait_for_screen(pilot, ResultScreen)
        assert sick.rescue_timeouts == [None]


@drive
async def test_a_healthy_source_keeps_the_usual_first_choice(make_app, sick):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        levels = await to_compression_step(pilot)  # sda, passed
        assert "Rescue is recommended" not in screen_text(levels)
        assert levels.query_one("#choices", OptionList).get_option_at_index(0).id == "3"


@drive
async def test_restore_onto_a_failing_disk_needs_failing_typed_then_its_name(make_app, sick):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        plan_screen = await to_plan(pilot, 1)  # sdb, failing
        await wait_until(pilot, lambda: plan_screen.plan is not None, what="the plan")
        await pilot.press("enter")
        dialog = await wait_for_screen(pilot, TypeNameDialog)
        assert dialog.expected == "failing"
        assert "sdb is failing (SMART: FAILING (1975 reallocated sectors" in screen_text(dialog)
        await type_text(pilot, "sdb")  # the disk's name is not the answer here
        assert app.screen is dialog and "That is not failing" in screen_text(dialog)
        await pilot.press("escape")  # going back writes nothing
        await wait_for_screen(pilot, PlanScreen)
        assert not [c for c in sick.calls if c[0] == "restore"]
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, TypeNameDialog) and app.screen.expected == "failing",
                         what="the failing question again")
        await type_text(pilot, "failing")
        await wait_until(pilot, lambda: isinstance(app.screen, TypeNameDialog) and app.screen.expected == "sdb",
                         what="the target's name")
        await type_text(pilot, "sdb")
        result = await wait_for_screen(pilot, ResultScreen)
        assert result.verdict == "Done" and sick.calls == [("restore", "laptop-2026-11-01", "/dev/sdb")]


@drive
async def test_restore_onto_a_healthy_disk_asks_only_its_name(make_app, backend):
    backend.disks[1] = replace(backend.disks[1], health=PASSED)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        plan_screen = await to_plan(pilot, 1)
        await wait_until(pilot, lambda: plan_screen.plan is not None, what="the plan")
        await pilot.press("enter")
        dialog = await wait_for_screen(pilot, TypeNameDialog)
        assert dialog.expected == "sdb"


@drive
async def test_a_disk_left_by_a_killed_restore_is_listed_as_an_incomplete_restore(make_app, backend):
    note = "incomplete restore of image 'laptop-2026-11-01' from /srv/lifeboat-demo (started 2026-11-27T19:00): restore it again"
    backend.disks[1] = replace(backend.disks[1], incomplete_restore=note)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        await pilot.press("r", "enter")  # restore: the image, then the target list
        screen = await wait_for_screen(pilot, DiskPickScreen)
        assert f"INCOMPLETE: {note}" in str(screen.query_one(OptionList).get_option("/dev/sdb").prompt)
        assert "INCOMPLETE" not in str(screen.query_one(OptionList).get_option("/dev/sdc").prompt)


def test_the_engine_backend_reads_the_marker_a_killed_restore_left(tmp_path, monkeypatch):
    """The disk is a file whose sector 0 is the real in-progress record restore writes (restore_marker)."""
    from lifeboat import devices, health
    from lifeboat.devices import Disk
    from lifeboat.engine.restore_marker import RestoreMarker, marker_sector
    from lifeboat.tui.engine_backend import EngineBackend

    killed, fine = tmp_path / "killed.img", tmp_path / "fine.img"
    killed.write_bytes(marker_sector(RestoreMarker("pc", "/srv/repo", "2026-11-27T19:00:00")) + bytes(512))
    fine.write_bytes(bytes(1024))
    disks = [Disk(str(killed), "loop7", 1024, transport="loop"), Disk(str(fine), "loop8", 1024, transport="loop")]
    monkeypatch.setattr(devices, "list_disks", lambda include_loop: disks)
    monkeypatch.setattr(health, "read_health", lambda path: PASSED)
    listed = EngineBackend(log_path="/dev/null").list_disks()
    assert listed[0].incomplete_restore == ("incomplete restore of image 'pc' from /srv/repo "
                                            "(started 2026-11-27T19:00:00): restore it again")
    assert listed[1].incomplete_restore == "" and listed[1].health == PASSED


@drive
async def test_a_rescue_image_is_listed_as_incomplete(make_app, backend):
    from lifeboat.tui.fake_backend import DEMO_REPO

    images = backend.repos[DEMO_REPO]
    images[1] = replace(images[1], unreadable_bytes=2560)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        await pilot.press("r")
        screen = await wait_for_screen(pilot, PickScreen)
        choices = screen.query_one(OptionList)
        assert "INCOMPLETE: 2.5 KiB could not be read at capture" in str(choices.get_option("office-pc").prompt)
        assert "INCOMPLETE" not in str(choices.get_option("laptop-2026-11-01").prompt)
