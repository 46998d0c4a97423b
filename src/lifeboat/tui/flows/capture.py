"""Capture: source → name → repository → compression level → progress (capture, then verify) → result.
A source holding LUKS containers adds, after the level: each container's passphrase (or copy it whole), the
plan, and typing `plaintext` when the decrypted contents would go into an unencrypted repository."""

from __future__ import annotations

import re
from datetime import date

from lifeboat.devices import Disk
from lifeboat.errors import InvalidName, LifeboatError
from lifeboat.repo.store import check_image_name
from lifeboat.tui.backend import CapturePlanView, JobOutcome
from lifeboat.tui.dialogs.confirm import TypeNameDialog
from lifeboat.tui.dialogs.luks import LuksPurpose, ask_each
from lifeboat.tui.dialogs.repo_picker import RepoPickerScreen
from lifeboat.tui.jobs import JobSpec
from lifeboat.tui.screens.capture_plan import CapturePlanScreen
from lifeboat.tui.screens.pick import DiskPickScreen, PickScreen, TextStepScreen
from lifeboat.tui.screens.progress import ProgressScreen

LEVELS = [
    ("3", "Level 3: balanced (recommended)"),
    ("1", "Level 1: fastest, a little larger"),
    ("9", "Level 9: smaller, slower"),
    ("19", "Level 19: smallest, much slower"),
    ("3r", "Level 3, rescue: a failing disk (reads around damage, records what is lost)"),
]


def suggest_name(disk: Disk, today: date) -> str:
    model = re.sub(r"[^a-z0-9]+", "-", (disk.model or disk.name).lower()).strip("-") or disk.name
    return f"{model}-{today.isoformat()}"


def minutes_problem(text: str) -> str:
    """'' for an empty line (no limit) or a whole number of minutes above 0."""
    if text and not (text.isdigit() and int(text) > 0):
        return f"{text!r} is not a number of minutes: type one (e.g. 60), or leave the line empty for no limit."
    return ""


def name_problem(name: str, existing: set[str]) -> str:
    """What is wrong with `name` for a new image here: the repository's own rule (check_image_name), then
    whether the name is taken."""
    try:
        check_image_name(name)
    except InvalidName:
        return ("Use letters, digits, '.', '_', '+' and '-' only (no spaces or '/'), starting with a letter or digit, "
                "at most 128 characters.")
    if name in existing:
        return f"An image called {name} already exists here; choose another name."
    return ""


class CaptureFlow:
    def __init__(self, app) -> None:
        self.app = app
        self.source: Disk | None = None
        self.name = ""
        self.repo = ""
        self.rescue_timeout: float | None = None  # seconds; None: no limit

    def start(self) -> None:
        intro = "Which disk should be copied into an image? It is only read, never written."
        self.app.push_screen(
            DiskPickScreen("Capture: choose the source disk", intro, self.app.disks, self.source_chosen, allow_unsafe=True)
        )

    def source_chosen(self, path: str) -> None:
        self.source = self.app.disk_by_path(path)
        if self.source is None:
            self.app.show_error("That disk is gone", f"{path} is no longer connected.")
            return
        existing = {i.name for i in self.app.images}
        self.app.push_screen(
            TextStepScreen(
                "Capture: name the image",
                f"A name for the image of {self.source.name} ({self.source.model}). Enter to accept.",
                suggest_name(self.source, self.app.today()),
                self.name_chosen,
                validate=lambda name: name_problem(name, existing),
            )
        )

    def name_chosen(self, name: str) -> None:
        self.name = name
        self.app.push_screen(RepoPickerScreen(self.repo_chosen, "Capture: where should the image go?"))

    def repo_chosen(self, repo: str) -> None:
        self.repo = repo
        options = [(key, label, False) for key, label in LEVELS]
        intro = "zstd compression. Higher levels make smaller images and take longer."
        health = self.source.health if self.source else None
        if health is not None and health.needs_rescue:  # a dying disk: rescue first, and say why
            options = [options[-1]] + options[:-1]
            intro = f"{self.source.name}: {health.describe()}. Rescue is recommended: it reads the good areas first. " + intro
        self.app.push_screen(PickScreen("Capture: compression", intro, options, self.level_chosen))

    def level_chosen(self, level: str) -> None:
        number, rescue = int(level.rstrip("r")), level.endswith("r")
        if not rescue:
            self.start_capture(number, False)
            return
        self.app.push_screen(self.limit_step(lambda: self.start_capture(number, True)))

    def limit_step(self, then) -> TextStepScreen:
        """Ask the rescue's time limit, keep it in rescue_timeout, then `then()`."""
        intro = ("How many minutes may the rescue spend going back over damaged areas? After that, what was not "
                 "read counts as unreadable, so a disk that keeps failing cannot hold the capture forever. "
                 "Leave the line empty for no limit.")

        def chosen(minutes: str) -> None:
            self.rescue_timeout = int(minutes) * 60 if minutes else None
            then()

        return TextStepScreen("Capture: rescue time limit", intro, "", chosen, validate=minutes_problem)

    def start_capture(self, number: int, rescue: bool) -> None:
        try:
            containers = self.app.backend.luks_containers(self.source)
        except LifeboatError as error:
            self.app.show_error("The source cannot be read", str(error))
            return
        if not containers:
            self.app.push_screen(self.job(number, rescue))
            return
        backend, source, repo = self.app.backend, self.source, self.repo

        def answered(answers) -> None:
            self.app.push_screen(CapturePlanScreen(lambda: backend.plan_capture(source, repo, answers),
                                                   lambda plan: self.plan_accepted(plan, number, rescue)))

        ask_each(self.app, containers, LuksPurpose.CAPTURE, backend.check_luks_passphrase, answered)

    def plan_accepted(self, plan: CapturePlanView, level: int, rescue: bool) -> None:
        """Decrypted contents into an unencrypted repository only once `plaintext` is typed, as the CLI asks."""
        if not plan.plaintext:
            self.app.push_screen(self.job(level, rescue, plan))
            return
        warning = f"Store the decrypted contents in {plan.repo_path}, which is not encrypted?"
        self.app.push_screen(TypeNameDialog("plaintext", warning),
                             lambda yes: yes and self.app.push_screen(self.job(level, rescue, plan)))

    def job(self, level: int, rescue: bool, plan: CapturePlanView | None = None) -> ProgressScreen:
        backend, source, name, repo = self.app.backend, self.source, self.name, self.repo

        def capture_then_verify(progress, cancel) -> JobOutcome:
            captured = backend.run_capture(source, name, repo, level, progress, cancel, rescue=rescue, plan=plan,
                                           rescue_timeout=self.rescue_timeout if rescue else None)
            verified = backend.run_verify(repo, name, progress, cancel)
            again = set(captured.warnings)  # the INCOMPLETE lines of a rescue image: once, from the capture
            return JobOutcome(captured.lines + verified.lines,
                              captured.warnings + tuple(w for w in verified.warnings if w not in again))

        spec = JobSpec(
            title=f"Capturing {source.name} as {name}" + (" (rescue)" if rescue else ""),
            run=capture_then_verify,
            stop_question="Stop the capture?",
            stop_warning=f"{source.name} is only read and stays as it is. The unfinished image will not be kept.",
            state_after_stop=lambda reached: _capture_state(source.name, name, reached),
            phases={"capture": "Copying", "verify": "Verifying"},
            on_success=lambda: self.app.use_repository(repo),
            rescue_retry=None if rescue else lambda: self.app.switch_screen(
                self.limit_step(lambda: self.app.push_screen(self.job(level, True, plan)))),
        )
        return ProgressScreen(spec)


def _capture_state(disk: str, image: str, reached: str) -> str:
    if reached == "verify":
        return f"{disk} is unchanged. The image {image} was stored but its check did not finish: verify it before relying on it."
    return f"{disk} was only read and is unchanged. The unfinished image was not recorded; the repository is still usable."
