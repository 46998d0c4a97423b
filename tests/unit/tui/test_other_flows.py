"""Capture (with its automatic verify), Verify, Repair boot, the repository picker, log, power."""

from __future__ import annotations

from textual.widgets import DataTable, Input, OptionList

from lifeboat.devices import Disk
from lifeboat.tui.dialogs.confirm import ConfirmDialog
from lifeboat.tui.fake_backend import DEMO_REPO, GiB
from lifeboat.tui.screens.home import HomeScreen
from lifeboat.tui.screens.log import LogScreen
from lifeboat.tui.screens.pick import DiskPickScreen, PickScreen, TextStepScreen
from lifeboat.tui.screens.result import ResultScreen
from tui_pilot import SIZE, choose_repository, drive, screen_text, started, wait_for_screen, wait_until


@drive
async def test_capture_suggests_a_name_then_verifies(make_app, backend):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        await pilot.press("c")
        await wait_for_screen(pilot, DiskPickScreen)
        await pilot.press("enter")  # sda, the Samsung
        name_step = await wait_for_screen(pilot, TextStepScreen)
        assert name_step.query_one(Input).value == "samsung-ssd-860-2026-11-24"
        await pilot.press("enter")
        await choose_repository(pilot, 1)  # /media/usb-backup
        levels = await wait_for_screen(pilot, PickScreen)
        assert levels.query_one(OptionList).highlighted == 0  # level 3 is the default
        await pilot.press("down", "enter")  # level 1
        result = await wait_for_screen(pilot, ResultScreen)
        assert result.verdict == "Done"
        assert backend.calls == [
            ("capture", "/dev/sda", "samsung-ssd-860-2026-11-24", "/media/usb-backup", 1, False),
            ("verify", "/media/usb-backup", "samsung-ssd-860-2026-11-24"),
        ]
        assert "every chunk and the manifest check out" in screen_text(result)
        await pilot.press("enter")
        home = await wait_for_screen(pilot, HomeScreen)
        assert app.repo_path == "/media/usb-backup"
        images = home.query_one("#images", DataTable)
        await wait_until(pilot, lambda: images.row_count == 1, what="the new image listed")


@drive
async def test_capture_refuses_a_bad_name(make_app, backend):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        await pilot.press("c", "enter")
        step = await wait_for_screen(pilot, TextStepScreen)
        step.query_one(Input).value = "../etc"
        await pilot.press("enter")
        assert app.screen is step
        assert "no spaces or '/'" in screen_text(step)
        step.query_one(Input).value = "office-pc"  # already in the repository
        await pilot.press("enter")
        assert "already exists" in screen_text(step) and app.screen is step


@drive
async def test_cancelled_capture_says_the_source_is_unchanged(make_app, backend):
    import threading

    backend.gate = threading.Event()
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        await pilot.press("c", "enter")
        await wait_for_screen(pilot, TextStepScreen)
        await pilot.press("enter")
        await choose_repository(pilot, 0)
        await wait_for_screen(pilot, PickScreen)
        await pilot.press("enter")
        await wait_until(pilot, backend.started.is_set, what="the capture to start")
        await pilot.press("escape")
        await wait_for_screen(pilot, ConfirmDialog)
        await pilot.press("y")
        result = await wait_for_screen(pilot, ResultScreen)
        assert result.verdict == "Stopped"
        assert "sda was only read and is unchanged" in result.state
        assert len(backend.repos[DEMO_REPO]) == 2  # nothing half-made was recorded


@drive
async def test_verify_flow(make_app, backend):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        await pilot.press("v")
        await wait_for_screen(pilot, PickScreen)
        await pilot.press("down", "enter")
        result = await wait_for_screen(pilot, ResultScreen)
        assert backend.calls == [("verify", DEMO_REPO, "office-pc")]
        assert "Image office-pc: every chunk" in screen_text(result)


@drive
async def test_repair_boot_asks_then_runs(make_app, backend):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        await pilot.press("b")
        await wait_for_screen(pilot, DiskPickScreen)
        await pilot.press("enter")
        await wait_for_screen(pilot, ConfirmDialog)
        await pilot.press("n")
        await wait_for_screen(pilot, DiskPickScreen)
        assert backend.calls == []
        await pilot.press("enter")
        await wait_for_screen(pilot, ConfirmDialog)
        await pilot.press("y")
        result = await wait_for_screen(pilot, ResultScreen)
        assert backend.calls == [("bootfix", "/dev/sda")]
        assert "GRUB (UEFI) reinstalled on /dev/sda" in screen_text(result)


@drive
async def test_restore_without_a_repository_asks_for_one_first(make_app, backend):
    app = make_app(repo_path=None)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: app.disks, what="disks")
        assert "no repository chosen" in str(app.screen.query_one("#images-title").render())
        await pilot.press("r")
        await choose_repository(pilot, 0)
        await wait_until(pilot, lambda: app.images, what="images")
        assert app.repo_path == DEMO_REPO
        picker = await wait_for_screen(pilot, PickScreen)
        await wait_until(pilot, lambda: picker.query_one(OptionList).option_count == 2, what="the images")


@drive
async def test_hotplug_adds_and_removes_disks_everywhere(make_app, backend):
    app = make_app()
    usb = Disk("/dev/sde", "sde", 16 * GiB, "Kingston DataTraveler", "XYZ", "usb", removable=True)
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        table = app.screen.query_one("#disks", DataTable)
        assert table.row_count == 4
        backend.plug(usb)
        await wait_until(pilot, lambda: table.row_count == 5, timeout=2, what="the new disk on the home screen")
        await pilot.press("r", "enter")
        picker = await wait_for_screen(pilot, DiskPickScreen)
        choices = picker.query_one(OptionList)
        assert choices.option_count == 5
        backend.unplug("/dev/sde")
        await wait_until(pilot, lambda: choices.option_count == 4, timeout=2, what="the disk gone from the list")


@drive
async def test_log_view_shows_what_happened(make_app, backend):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        await pilot.press("v", "enter")
        await wait_for_screen(pilot, ResultScreen)
        await pilot.press("l")
        log = await wait_for_screen(pilot, LogScreen)
        view = log.query_one("#log-view")
        await wait_until(pilot, lambda: any("chunks" in str(line.text) for line in view.lines), what="log lines")
        await pilot.press("escape")
        with open(backend.log_path) as log_file:
            written = log_file.read()
        assert "start chunks" in written and "done chunks" in written
        await wait_for_screen(pilot, ResultScreen)


@drive
async def test_power_off_asks_then_exits(make_app, backend):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        await pilot.press("end", "enter")  # the last action: power off
        await wait_for_screen(pilot, ConfirmDialog)
        await pilot.press("n")
        await wait_for_screen(pilot, HomeScreen)
        assert backend.calls == []
        await pilot.press("enter")
        await wait_for_screen(pilot, ConfirmDialog)
        await pilot.press("y")
        await wait_until(pilot, lambda: backend.calls == [("power", "poweroff")], what="power off")


@drive
async def test_home_header_says_whether_secure_boot_is_on(make_app, tmp_path, monkeypatch):
    from lifeboat import secureboot

    efivars = tmp_path / "efi" / "efivars"
    efivars.mkdir(parents=True)
    (efivars / f"SecureBoot-{secureboot.GLOBAL_GUID}").write_bytes(b"\x06\x00\x00\x00\x01")
    (efivars / f"SetupMode-{secureboot.GLOBAL_GUID}").write_bytes(b"\x06\x00\x00\x00\x00")
    monkeypatch.setattr(secureboot, "EFI_DIR", tmp_path / "efi")
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        home = await wait_for_screen(pilot, HomeScreen)
        assert home.sub_title.endswith("Secure Boot on"), home.sub_title
