"""Snapshots of the key screens at 80x24 (pytest-textual-snapshot; update with --snapshot-update)."""

from __future__ import annotations

import re
from pathlib import Path

from lifeboat.tui.app import create_app
from lifeboat.tui.fake_backend import DEMO_REPO, FakeBackend
from lifeboat.tui.net_location import RecentLocations
from lifeboat.tui.screens.plan import PlanScreen
from tui_pilot import SIZE, TODAY, started, wait_until


def demo_app():
    return create_app(FakeBackend(job_seconds=0.05), repo_path=DEMO_REPO, today=lambda: TODAY, shell=lambda: None,
                      recent_locations=RecentLocations(Path("/nonexistent/lifeboat-recent.json")))


def steady(screen) -> None:
    """A blinking cursor would make the picture depend on when it is taken."""
    from textual.widgets import Input

    for field in screen.query(Input):
        field.cursor_blink = False


async def at_home(pilot) -> None:
    await started(pilot)


def test_home(snap_compare):
    assert snap_compare(demo_app(), terminal_size=SIZE, run_before=at_home)


def test_restore_target_with_unsafe_disk_greyed(snap_compare):
    async def to_targets(pilot):
        await started(pilot)
        await pilot.press("r", "enter")
        await pilot.pause()

    assert snap_compare(demo_app(), terminal_size=SIZE, run_before=to_targets)


def test_restore_plan_side_by_side(snap_compare):
    async def to_plan(pilot):
        await started(pilot)
        await pilot.press("r", "enter", "down", "enter")
        await wait_until(pilot, lambda: isinstance(pilot.app.screen, PlanScreen) and pilot.app.screen.plan)
        await pilot.pause()

    assert snap_compare(demo_app(), terminal_size=SIZE, run_before=to_plan)


def test_type_the_name_to_confirm(snap_compare):
    async def to_confirm(pilot):
        await to_plan_ready(pilot)
        await pilot.press("enter")
        # on a loaded machine one pause is not always enough for the dialog to be on screen
        await wait_until(pilot, lambda: type(pilot.app.screen).__name__ == "TypeNameDialog", what="the confirmation")
        await pilot.pause()

    assert snap_compare(demo_app(), terminal_size=SIZE, run_before=to_confirm)


def test_error_dialog_names_the_log(snap_compare):
    async def to_error(pilot):
        await started(pilot)
        await pilot.press("r", "enter", "down", "down", "enter")  # sdc is too small
        await wait_until(pilot, lambda: type(pilot.app.screen).__name__ == "ErrorDialog")
        await pilot.pause()

    assert snap_compare(demo_app(), terminal_size=SIZE, run_before=to_error)


async def to_plan_ready(pilot):
    await started(pilot)
    await pilot.press("r", "enter", "down", "enter")
    await wait_until(pilot, lambda: isinstance(pilot.app.screen, PlanScreen) and pilot.app.screen.plan)


def test_network_location_form(snap_compare):
    from textual.widgets import Input

    from lifeboat.tui.dialogs.network_location import NetworkLocationScreen
    from lifeboat.tui.dialogs.repo_picker import RepoPickerScreen

    async def to_form(pilot):
        await started(pilot)
        await pilot.press("o")
        await wait_until(pilot, lambda: isinstance(pilot.app.screen, RepoPickerScreen) and pilot.app.screen.named)
        await pilot.press("1")  # office-nas from lifeboat-repos.toml
        await wait_until(pilot, lambda: isinstance(pilot.app.screen, NetworkLocationScreen))
        pilot.app.screen.query_one("#password", Input).value = "nas-secret-pw"
        await pilot.press("ctrl+t")
        await wait_until(pilot, lambda: "Connected" in str(pilot.app.screen.query_one("#net-result").render()))
        steady(pilot.app.screen)
        await pilot.pause()

    assert snap_compare(demo_app(), terminal_size=(80, 30), run_before=to_form)


def test_capture_read_error_offers_rescue(snap_compare):
    from lifeboat.tui.screens.result import ResultScreen

    app = demo_app()
    app.backend.fail_at = 0.3

    async def to_result(pilot):
        await started(pilot)
        await pilot.press("c", "enter", "enter")
        await wait_until(pilot, lambda: type(pilot.app.screen).__name__ == "RepoPickerScreen"
                         and pilot.app.screen.query_one("#choices").option_count > 2)
        await pilot.press("down", "enter", "enter")
        await wait_until(pilot, lambda: type(pilot.app.screen).__name__ == "ErrorDialog")
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(pilot.app.screen, ResultScreen))
        lines = pilot.app.screen.query_one("#result-lines")
        # the time taken depends on the machine's load: show it as on an idle one
        lines.update(re.sub(r"Time taken: \S+", "Time taken: 0:00:00", str(lines.render())))
        await pilot.pause()

    assert snap_compare(app, terminal_size=SIZE, run_before=to_result)


def test_new_encrypted_repository_passphrase(snap_compare):
    from lifeboat.tui.dialogs.passphrase import PassphraseDialog

    async def to_dialog(pilot):
        await started(pilot)
        pilot.app.push_screen(PassphraseDialog("ssh://root@backup.example/srv/new", create=True))
        await wait_until(pilot, lambda: isinstance(pilot.app.screen, PassphraseDialog))
        await pilot.pause()
        pilot.app.screen.query_one("#phrase").value = "typed but masked"
        steady(pilot.app.screen)
        await pilot.pause()

    assert snap_compare(demo_app(), terminal_size=SIZE, run_before=to_dialog)
