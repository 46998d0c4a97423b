"""LUKS containers in the TUI (issue 11, issue 9's repair): the capture asks each container's passphrase (a wrong
one said and asked again) or copies it whole, shows the plan with the contents imaged by used blocks and the
plaintext warning, and asks `plaintext` typed before storing decrypted contents in an unencrypted repository; a
restore of opened contents asks the passphrase; a repair that can unlock roots asks it too. The passphrase is in
no log line, no logbook line and no screen.

The FakeBackend stands in for cryptsetup: this host has no device-mapper, so a real capture of a LUKS container
through the TUI cannot run here (tests/vm/test_luks.py captures one with the CLI inside the live ISO).
"""

from __future__ import annotations

import subprocess

from textual.widgets import Footer, Input

from lifeboat.devices import Disk, Partition
from lifeboat.tui.backend import LuksAnswer, LuksContainer
from lifeboat.tui.dialogs.confirm import ConfirmDialog, TypeNameDialog
from lifeboat.tui.dialogs.luks import LuksPassphraseDialog
from lifeboat.tui.fake_backend import DEMO_REPO, GiB, MiB
from lifeboat.tui.screens.capture_plan import CapturePlanScreen
from lifeboat.tui.screens.pick import DiskPickScreen, PickScreen
from lifeboat.tui.screens.plan import PlanScreen
from lifeboat.tui.screens.result import ResultScreen
from lifeboat.volumes.luks import LuksKey, LuksKeys
from tui_pilot import SIZE, drive, screen_text, started, to_compression_step, wait_for_screen, wait_until

SECRET = "Lb-Tui-Secret-4711"
HOME_SECRET = "Lb-Home-Secret-0815"
ROOT_UUID = "5f0c6a2e-7b1d-4c3a-9e8f-0a1b2c3d4e5f"


def luks_laptop() -> Disk:
    parts = (
        Partition("/dev/nvme0n1p1", 1, MiB, 512 * MiB, "vfat", "EFI"),
        Partition("/dev/nvme0n1p2", 2, 513 * MiB, 200 * GiB, "crypto_LUKS", "cryptroot", ROOT_UUID),
        Partition("/dev/nvme0n1p3", 3, 201 * GiB, 64 * GiB, "crypto_LUKS", "crypthome", "a1b2c3d4-0000-4000-8000-1234"),
    )
    return Disk("/dev/nvme0n1", "nvme0n1", 512 * GiB, "WD Blue SN570", "22117Z8", "nvme", table="gpt",
                partitions=parts)


def everything_shown(app, backend) -> str:
    """The logbook, the log file and the screens' text: where a passphrase must never be."""
    lines, _ = app.log_book.since(0)
    with open(backend.log_path, encoding="utf-8", errors="replace") as f:
        logged = f.read()
    return "\n".join(lines) + logged + "\n".join(screen_text(s) for s in app.screen_stack)


async def type_into(pilot, dialog, text: str) -> None:
    dialog.query_one("#luks-phrase", Input).value = text
    await pilot.press("enter")


async def capture_luks_laptop(pilot, repo_index: int) -> LuksPassphraseDialog:
    """From home: capture the LUKS laptop (the first disk) into the repository `repo_index`, level 3."""
    await to_compression_step(pilot, repo_index=repo_index)
    await pilot.press("enter")
    return await wait_for_screen(pilot, LuksPassphraseDialog)


@drive
async def test_capture_asks_each_container_retries_a_wrong_passphrase_and_confirms_plaintext(make_app, backend):
    backend.disks.insert(0, luks_laptop())
    backend.luks_passphrases = {"/dev/nvme0n1p2": SECRET, "/dev/nvme0n1p3": HOME_SECRET}
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        first = await capture_luks_laptop(pilot, 0)  # the demo repository: not encrypted
        text = screen_text(first)
        assert "Encrypted partition (1 of 2)" in text
        assert f"partition 2 (/dev/nvme0n1p2): LUKS2 container, UUID {ROOT_UUID}, label 'cryptroot'" in text
        assert "F2 = copy it whole instead: 200.0 GiB, encrypted" in text
        assert first.query_one("#luks-phrase", Input).password  # masked

        await type_into(pilot, first, "not-the-passphrase")
        problem = first.query_one("#luks-problem")
        await wait_until(pilot, lambda: "attempt 2" in str(problem.render()), what="the wrong passphrase said")
        assert "wrong passphrase for the LUKS container on partition 2" in str(problem.render())
        assert app.screen is first and first.query_one("#luks-phrase", Input).value == ""
        await type_into(pilot, first, SECRET)

        second = await wait_until_dialog(pilot, first)
        assert "(2 of 2)" in screen_text(second) and "label 'crypthome'" in screen_text(second)
        assert "copy it whole instead: 64.0 GiB" in screen_text(second)
        await pilot.press("f2")  # copy /home's container whole

        plan = await wait_for_screen(pilot, CapturePlanScreen)
        await wait_until(pilot, lambda: plan.plan is not None, what="the capture plan")
        text = screen_text(plan)
        assert "partition 2: LUKS2 container, opened read-only with the passphrase" in text
        assert "contents: ext4 " in text and "used blocks" in text
        assert "partition 3: LUKS2 container, copied whole (64.0 GiB)" in text
        assert f"WARNING: {DEMO_REPO} is not encrypted" in text and "typing plaintext" in text
        assert ("plan_capture", "/dev/nvme0n1", DEMO_REPO, ((2, False), (3, True))) in backend.calls

        await pilot.press("enter")
        confirm = await wait_for_screen(pilot, TypeNameDialog)
        await pilot.press("y", "e", "s", "enter")  # anything but `plaintext` stores nothing
        assert app.screen is confirm and not [c for c in backend.calls if c[0] == "capture"]
        confirm.query_one(Input).value = "plaintext"
        await pilot.press("enter")
        result = await wait_for_screen(pilot, ResultScreen)
        assert result.verdict == "Done"
        (given,) = backend.capture_plans
        assert given is plan.plan and given.plan == (LuksAnswer(2, SECRET), LuksAnswer(3))
        shown = everything_shown(app, backend)
        assert "Capturing nvme0n1" in shown  # the job is in the log...
        assert SECRET not in shown and HOME_SECRET not in shown  # ...the passphrase is not
        assert SECRET not in repr(given) and SECRET not in repr(LuksKeys(((2, LuksKey(SECRET)),)))


async def wait_until_dialog(pilot, previous) -> LuksPassphraseDialog:
    await wait_until(pilot, lambda: isinstance(pilot.app.screen, LuksPassphraseDialog)
                     and pilot.app.screen is not previous, what="the next container's dialog")
    await pilot.pause()
    return pilot.app.screen


@drive
async def test_capture_copying_every_container_whole_into_an_encrypted_repository(make_app, backend):
    backend.disks.insert(0, luks_laptop())
    backend.passphrases["/media/usb-backup"] = "repository passphrase"  # encrypted, already unlocked
    backend.unlocked.add("/media/usb-backup")
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await capture_luks_laptop(pilot, 1)
        first = await wait_for_screen(pilot, LuksPassphraseDialog)
        await pilot.press("f2")
        second = await wait_until_dialog(pilot, first)
        await pilot.press("f2")
        plan = await wait_for_screen(pilot, CapturePlanScreen)
        await wait_until(pilot, lambda: plan.plan is not None, what="the capture plan")
        assert "copied whole (200.0 GiB)" in screen_text(plan) and "WARNING" not in screen_text(plan)
        assert not plan.plan.plaintext and second is not first
        assert not [c for c in backend.calls if c[0] == "check_luks"]  # no passphrase tried
        await pilot.press("enter")  # nothing decrypted: no `plaintext` to type
        result = await wait_for_screen(pilot, ResultScreen)
        assert result.verdict == "Done"


@drive
async def test_restore_of_opened_contents_asks_the_passphrase(make_app, backend):
    container = LuksContainer(2, "", "2", ROOT_UUID, "cryptroot", 240 * GiB)
    backend.image_luks["laptop-2026-11-01"] = ((container,), SECRET)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        await pilot.press("r")
        await wait_for_screen(pilot, PickScreen)
        await pilot.press("enter")  # laptop-2026-11-01
        await wait_for_screen(pilot, DiskPickScreen)
        await pilot.press("down", "enter")  # sdb
        dialog = await wait_for_screen(pilot, LuksPassphraseDialog)
        text = screen_text(dialog)
        assert f"partition 2: LUKS2 container, UUID {ROOT_UUID}, label 'cryptroot'" in text
        assert "re-creates the container from its header backup" in text and "F2" not in text  # no whole copy here
        await pilot.press("f2")
        assert app.screen is dialog
        await type_into(pilot, dialog, "wrong")
        problem = dialog.query_one("#luks-problem")
        await wait_until(pilot, lambda: "attempt 2" in str(problem.render()), what="the wrong passphrase said")
        await type_into(pilot, dialog, SECRET)
        plan = await wait_for_screen(pilot, PlanScreen)
        await wait_until(pilot, lambda: plan.plan is not None, what="the plan")  # the fake refuses a wrong one
        assert backend.calls == [("check_image_luks", "laptop-2026-11-01", 2)] * 2
        assert SECRET not in everything_shown(app, backend)


async def repair_boot_of_the_laptop(pilot) -> LuksPassphraseDialog:
    """From home: Repair boot of the LUKS laptop (the first disk), confirmed; returns the passphrase dialog."""
    await started(pilot)
    await pilot.press("b")
    await wait_for_screen(pilot, DiskPickScreen)
    await pilot.press("enter")
    await wait_for_screen(pilot, ConfirmDialog)
    await pilot.press("y")
    return await wait_for_screen(pilot, LuksPassphraseDialog)


@drive
async def test_repair_boot_asks_one_passphrase_that_opens_every_container(make_app, backend):
    backend.disks.insert(0, luks_laptop())
    backend.luks_passphrases = {"/dev/nvme0n1p2": SECRET, "/dev/nvme0n1p3": HOME_SECRET}
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        dialog = await repair_boot_of_the_laptop(pilot)
        text = screen_text(dialog)
        assert "repairs that system's boot" in text and "every LUKS container on this disk" in text
        assert "F2 = repair without it" in text and "1 of" not in text  # one passphrase for the disk
        await type_into(pilot, dialog, SECRET)  # opens the root's container, not /home's: bootfix would fail
        problem = dialog.query_one("#luks-problem")
        await wait_until(pilot, lambda: "attempt 2" in str(problem.render()), what="the container it does not open")
        assert "partition 3 (/dev/nvme0n1p3)" in str(problem.render())
        backend.luks_passphrases["/dev/nvme0n1p3"] = SECRET  # (as if both had been given the same one)
        await type_into(pilot, dialog, SECRET)
        result = await wait_for_screen(pilot, ResultScreen)
        assert backend.calls[-1] == ("bootfix", "/dev/nvme0n1") and backend.bootfix_passphrases == [SECRET]
        assert SECRET not in everything_shown(app, backend) and result.verdict == "Done"


@drive
async def test_repair_boot_without_the_passphrase(make_app, backend):
    backend.disks.insert(0, luks_laptop())
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await repair_boot_of_the_laptop(pilot)
        await pilot.press("f2")
        await wait_for_screen(pilot, ResultScreen)
        assert backend.bootfix_passphrases == [""] and ("check_luks", "/dev/nvme0n1p2") not in backend.calls


def test_the_engine_backend_hands_the_passphrase_to_cryptsetup_on_stdin_only(monkeypatch, caplog):
    """EngineBackend.check_luks_passphrase: argv (what `ps` shows) and the log have no passphrase; a wrong one
    (cryptsetup's exit 2) is WrongLuksPassphrase naming the partition. cryptsetup itself is not run: no
    device-mapper here, and --test-passphrase on a made-up container would prove nothing more."""
    import logging

    from lifeboat.tui.engine_backend import EngineBackend
    from lifeboat.volumes import luks

    seen = []

    def fake_run(argv, input=None, check=True, timeout=None):
        logging.getLogger("lifeboat.run").info("+ %s", " ".join(argv))
        seen.append((argv, input))
        return subprocess.CompletedProcess(argv, 0 if input == SECRET else luks.WRONG_PASSPHRASE, "", "No key")

    monkeypatch.setattr(luks, "run", fake_run)
    caplog.set_level(logging.DEBUG)
    container = LuksContainer(2, "/dev/nvme0n1p2", "2", ROOT_UUID, "cryptroot", 200 * GiB)
    backend = EngineBackend(log_path="/dev/null")
    backend.check_luks_passphrase(container, SECRET)
    try:
        backend.check_luks_passphrase(container, "wrong")
    except luks.WrongLuksPassphrase as error:
        assert "partition 2 (/dev/nvme0n1p2)" in str(error)
    else:
        raise AssertionError("a wrong passphrase was accepted")
    assert [argv for argv, _ in seen] == [["cryptsetup", "open", "--test-passphrase", "--key-file=-",
                                          "/dev/nvme0n1p2"]] * 2
    assert seen[0][1] == SECRET and SECRET not in caplog.text and "--test-passphrase" in caplog.text


def test_bootfix_gets_the_passphrase_as_a_key_and_a_locked_container_is_a_warning(monkeypatch):
    """EngineBackend.run_bootfix hands lifeboat.boot.bootfix a LuksKey (none without a passphrase); a container
    left locked (needs-passphrase) is a warning of the result, not a failure."""
    import threading

    from lifeboat.boot.model import StepOutcome
    from lifeboat.events import Outcome
    from lifeboat.tui.engine_backend import EngineBackend

    given = []

    def bootfix(path, progress, key=None):
        given.append(key)
        return [StepOutcome("detect", Outcome.DONE, "Debian on /dev/nvme0n1p1"),
                StepOutcome("unlock /dev/nvme0n1p3", Outcome.NEEDS_PASSPHRASE, "give the passphrase")]

    monkeypatch.setattr("lifeboat.boot.bootfix", bootfix)
    backend = EngineBackend(log_path="/dev/null")
    outcome = backend.run_bootfix(luks_laptop(), lambda e: None, threading.Event(), luks_passphrase=SECRET)
    backend.run_bootfix(luks_laptop(), lambda e: None, threading.Event())
    assert given == [LuksKey(SECRET), None]
    assert len(outcome.lines) == 1 and "needs-passphrase" in outcome.warnings[0]


def cut_off(dialog) -> list[str]:
    """The lines of a dialog that an 80x24 terminal does not show: each text widget of the dialog must lie wholly
    inside the dialog's content area (a dialog taller than its max-height clips its last lines)."""
    from textual.widgets import Label, Static

    box = dialog.query_one(".dialog")
    area = box.content_region
    return [str(w.render()) or f"#{w.id}" for w in box.query("*") if isinstance(w, (Static, Label, Input))
            and not (w.region.height and area.contains_region(w.region))]


@drive
async def test_the_passphrase_dialog_fits_a_serial_console_with_a_wrong_passphrase_said(make_app, backend):
    """80x24, the serial console's size: every line of the dialog shows, the keys line included, also once a
    wrong passphrase is said (the vm test drives this dialog over a real serial console)."""
    backend.disks.insert(0, luks_laptop())
    backend.luks_passphrases = {"/dev/nvme0n1p2": SECRET, "/dev/nvme0n1p3": HOME_SECRET}
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        first = await capture_luks_laptop(pilot, 0)
        assert cut_off(first) == []
        footer = first.query_one(Footer).region
        assert not first.query_one(".dialog").region.overlaps(footer)
        await type_into(pilot, first, "not-the-passphrase")
        problem = first.query_one("#luks-problem")
        await wait_until(pilot, lambda: "attempt 2" in str(problem.render()), what="the wrong passphrase said")
        await pilot.pause()
        assert problem.region.height >= 1 and cut_off(first) == []
        assert not first.query_one(".dialog").region.overlaps(footer)
