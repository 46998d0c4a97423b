"""Restore: image → target → plan → (type `failing` for a failing disk) → type the target's name → progress →
result. An image holding the
opened contents of LUKS containers asks their passphrase before the plan (the restore re-opens them)."""

from __future__ import annotations

from lifeboat.devices import human_size
from lifeboat.errors import LifeboatError
from lifeboat.health import HealthStatus
from lifeboat.tui.backend import LuksAnswer, RestorePlanView
from lifeboat.tui.dialogs.confirm import TypeNameDialog
from lifeboat.tui.dialogs.luks import LuksPurpose, ask_each
from lifeboat.tui.jobs import JobSpec
from lifeboat.tui.screens.pick import DiskPickScreen, PickScreen
from lifeboat.tui.screens.plan import PlanScreen
from lifeboat.tui.screens.progress import ProgressScreen
from lifeboat.tui.widgets.text import image_prompt


class ImagePickScreen(PickScreen):
    """Choose an image of the current repository; the list follows the repository's contents."""

    def __init__(self, app, title: str, on_pick) -> None:
        empty = f"No images in {app.repo_path}. Esc, then o to choose another repository."
        super().__init__(title, f"Images in {app.repo_path}", image_options(app.images), on_pick, empty)

    def show_images(self, images) -> None:
        self.set_options(image_options(images))


def image_options(images) -> list:
    return [(i.name, image_prompt(i), False) for i in images]


def image_pick_screen(app, title: str, on_pick) -> PickScreen:
    return ImagePickScreen(app, title, on_pick)


class RestoreFlow:
    def __init__(self, app) -> None:
        self.app = app
        self.image = ""

    def start(self) -> None:
        self.app.push_screen(image_pick_screen(self.app, "Restore: choose an image", self.image_chosen))

    def image_chosen(self, name: str) -> None:
        self.image = name
        intro = (
            f"Restore {name} onto which disk? Everything on it will be replaced. "
            "Greyed disks cannot be written; the reason is shown."
        )
        self.app.push_screen(DiskPickScreen("Restore: choose the target disk", intro, self.app.disks, self.target_chosen))

    def target_chosen(self, path: str) -> None:
        target = self.app.disk_by_path(path)
        if target is None:
            self.app.show_error("That disk is gone", f"{path} is no longer connected.")
            return
        repo, backend, image = self.app.repo_path, self.app.backend, self.image
        try:
            containers = backend.image_luks_containers(repo, image)
        except LifeboatError as error:
            self.app.show_error("This image cannot be read", str(error))
            return
        if not containers:
            self.app.push_screen(PlanScreen(lambda: backend.plan_restore(repo, image, target), self.plan_accepted))
            return

        def answered(answers: tuple[LuksAnswer, ...]) -> None:
            phrases = {a.passphrase for a in answers}
            if len(phrases) > 1:  # the engine re-opens every container with one passphrase
                self.app.show_error("Different passphrases", "This image's LUKS containers open with different "
                                    "passphrases; a restore takes one passphrase for all of them (not supported yet).")
                return
            phrase = phrases.pop()
            self.app.push_screen(PlanScreen(lambda: backend.plan_restore(repo, image, target, luks_passphrase=phrase),
                                            self.plan_accepted))

        ask_each(self.app, containers, LuksPurpose.RESTORE,
                 lambda c, phrase: backend.check_image_luks_passphrase(repo, image, c.partition, phrase), answered)

    def plan_accepted(self, plan: RestorePlanView) -> None:
        """A target whose SMART health is failing first needs `failing` typed (as the CLI asks), then its name."""
        target = plan.target
        if target.health is not None and target.health.status == HealthStatus.FAILING:
            warning = (f"{target.name} is failing ({target.health.describe()}): what is restored onto it may not "
                       "stay readable. Restore onto it anyway?")
            self.app.push_screen(TypeNameDialog("failing", warning), lambda yes: yes and self.confirm_erase(plan))
            return
        self.confirm_erase(plan)

    def confirm_erase(self, plan: RestorePlanView) -> None:
        target = plan.target
        warning = (
            f"Restore {plan.image} onto {target.name} ({target.model or 'disk'}, {human_size(target.size)})? "
            f"Everything now on {target.name} will be lost."
        )
        self.app.push_screen(TypeNameDialog(target.name, warning), lambda yes: yes and self.run(plan))

    def run(self, plan: RestorePlanView) -> None:
        backend, name = self.app.backend, plan.target.name
        spec = JobSpec(
            title=f"Restoring {plan.image} to {name}",
            run=lambda progress, cancel: backend.run_restore(plan, progress, cancel),
            stop_question=f"Stop the restore to {name}?",
            stop_warning=f"{name} will be left half written and will not start a system until it is restored again.",
            state_after_stop=lambda reached: _target_state(name, reached),
            offer_power=True,
            phases={"restore": "Writing", "verify": "Checking"},
        )
        self.app.push_screen(ProgressScreen(spec))


def _target_state(name: str, reached: str) -> str:
    if not reached:
        return f"Nothing was written to {name}: it is as it was."
    return f"{name} was partly written and holds no usable system now. Restore again (or wipe it) before using it."
