"""The short flows: verify an image, repair a disk's boot."""

from __future__ import annotations

from lifeboat.errors import LifeboatError
from lifeboat.tui.dialogs.confirm import ConfirmDialog
from lifeboat.tui.dialogs.luks import LuksPurpose, ask_each
from lifeboat.tui.flows.restore import image_pick_screen
from lifeboat.tui.jobs import JobSpec
from lifeboat.tui.screens.pick import DiskPickScreen
from lifeboat.tui.screens.progress import ProgressScreen


def start_verify(app) -> None:
    def chosen(name: str) -> None:
        repo, backend = app.repo_path, app.backend
        spec = JobSpec(
            title=f"Verifying {name}",
            run=lambda progress, cancel: backend.run_verify(repo, name, progress, cancel),
            stop_question="Stop verifying?",
            stop_warning="Verify only reads; stopping changes nothing.",
            state_after_stop=lambda reached: "Verify only reads: nothing was changed. The image was not fully checked.",
            phases={"verify": "Checking every chunk"},
        )
        app.push_screen(ProgressScreen(spec))

    app.push_screen(image_pick_screen(app, "Verify: choose an image", chosen))


def start_browse(app) -> None:
    """Pick an image, mount it read-only, walk its tree and copy files out; closing unmounts it."""
    from lifeboat.tui.screens.browse import BrowseScreen

    def chosen(name: str) -> None:
        repo, backend = app.repo_path, app.backend
        try:
            view = backend.open_image(repo, name)
        except LifeboatError as error:
            app.show_error("This image cannot be opened", str(error))
            return
        app.push_screen(BrowseScreen(view, lambda: backend.close_image(view)))

    app.push_screen(image_pick_screen(app, "Browse: choose an image", chosen))


def start_bootfix(app) -> None:
    def chosen(path: str) -> None:
        disk = app.disk_by_path(path)
        if disk is None:
            app.show_error("That disk is gone", f"{path} is no longer connected.")
            return
        question = f"Reinstall the bootloader on {disk.name} ({disk.model})?"
        detail = "Only the bootloader and its boot entry are rewritten; files and partitions stay as they are."
        app.push_screen(ConfirmDialog(question, detail), lambda yes: yes and unlock(disk))

    def unlock(disk) -> None:
        """A root inside a LUKS container is repaired with its passphrase (asked here, held in memory): one
        passphrase, which must open every container on the disk (bootfix opens them all with it)."""
        try:
            containers = app.backend.bootfix_luks_containers(disk)
        except LifeboatError as error:
            app.show_error("The disk cannot be read", str(error))
            return
        if not containers:
            run(disk, "")
            return

        def answered(answers) -> None:
            run(disk, answers[0].passphrase if answers else "")

        def opens_all(_first, phrase: str) -> None:  # bootfix opens every container with the one passphrase
            for container in containers:
                app.backend.check_luks_passphrase(container, phrase)

        ask_each(app, containers[:1], LuksPurpose.BOOTFIX, opens_all, answered)

    def run(disk, luks_passphrase: str) -> None:
        backend = app.backend
        spec = JobSpec(
            title=f"Repairing boot on {disk.name}",
            run=lambda progress, cancel: backend.run_bootfix(disk, progress, cancel, luks_passphrase=luks_passphrase),
            stop_question="Stop repairing the bootloader?",
            stop_warning="A half-installed bootloader may not start; run Repair boot again before restarting.",
            state_after_stop=lambda reached: (
                f"The bootloader on {disk.name} may be half installed: run Repair boot again before restarting."
                if reached else f"Nothing was changed on {disk.name}."
            ),
            offer_power=True,
        )
        app.push_screen(ProgressScreen(spec))

    intro = "Which disk's bootloader should be reinstalled? Greyed disks cannot be written."
    app.push_screen(DiskPickScreen("Repair boot: choose the disk", intro, app.disks, chosen))
