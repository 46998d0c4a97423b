"""The Lifeboat TUI: an App built by `create_app(backend, ...)`, so tests inject a FakeBackend.

Nothing here touches a disk: listing and jobs go through the backend in thread workers, which talk
back only with messages.
"""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Callable
from datetime import date

from textual import work
from textual.app import App
from textual.binding import Binding

from lifeboat.config import default_repo
from lifeboat.devices import Disk
from lifeboat.events import Event
from lifeboat.errors import LifeboatError
from lifeboat.options import repo_option
from lifeboat.run import interactive
from lifeboat.tui.backend import Backend, ImageInfo, NeedsPassphrase
from lifeboat.tui.dialogs.confirm import ConfirmDialog
from lifeboat.tui.dialogs.error import ErrorDialog
from lifeboat.tui.dialogs.passphrase import PassphraseDialog
from lifeboat.tui.dialogs.repo_picker import RepoPickerScreen
from lifeboat.tui.logbook import LogBook, attach_logging, log_event
from lifeboat.tui.messages import DisksChanged, ListReady, PassphraseWanted
from lifeboat.tui.net_location import RecentLocations
from lifeboat.tui.screens.home import HomeScreen
from lifeboat.tui.screens.log import LogScreen

log = logging.getLogger("lifeboat.tui")
UDEV_SETTLE_SECONDS = 1.0  # udev fills in a new disk's properties shortly after 'add': look again


def run_shell() -> None:
    shell = os.environ.get("SHELL") or "/bin/bash"
    print("Type 'exit' to return to Lifeboat.", flush=True)
    interactive([shell])


class LifeboatApp(App):
    CSS_PATH = "app.tcss"
    TITLE = "Lifeboat"
    ENABLE_COMMAND_PALETTE = False
    BINDINGS = [
        Binding("l", "show_log", "Log"),
        Binding("ctrl+q", "quit_asking", "Quit", show=False, priority=True),
    ]

    def __init__(
        self,
        backend: Backend,
        repo_path: str | None = None,
        shell: Callable[[], None] = run_shell,
        today: Callable[[], date] = date.today,
        watch_disks: bool = True,
        recent_locations: RecentLocations | None = None,
    ) -> None:
        super().__init__()
        self.backend = backend
        self.repo_path = repo_path
        self.shell = shell
        self.today = today
        self.watch = watch_disks
        self.disks: list[Disk] = []
        self.images: list[ImageInfo] = []
        self.log_book = LogBook()
        self.recent_locations = recent_locations if recent_locations is not None else RecentLocations()
        self._stop_watching: Callable[[], None] | None = None
        self._detach_logging: Callable[[], None] | None = None

    # ---- start and stop

    def on_mount(self) -> None:
        self.theme = "ansi-dark"
        self._detach_logging = attach_logging(self.backend.log_path, self.log_book)
        log.info("Lifeboat TUI started; log file %s", self.backend.log_path)
        self.push_screen(HomeScreen())
        if self.watch:
            self._stop_watching = self.backend.watch_disks(lambda: self.post_message(DisksChanged()))
        self.refresh_disks()
        self.refresh_images()

    def on_unmount(self) -> None:
        if self._stop_watching is not None:
            self._stop_watching()
        close = getattr(self.backend, "close", None)
        if close is not None:
            close()  # e.g. unmount repositories the backend mounted
        if self._detach_logging is not None:
            self._detach_logging()

    # ---- disks and images, read in workers

    @work(thread=True, exclusive=True, exit_on_error=False, group="disks")
    def refresh_disks(self) -> None:
        try:
            self.post_message(ListReady("disks", self.backend.list_disks()))
        except LifeboatError as error:
            self.post_message(ListReady("disks", [], str(error)))

    @work(thread=True, exclusive=True, exit_on_error=False, group="images")
    def refresh_images(self) -> None:
        if not self.repo_path:
            self.post_message(ListReady("images", []))
            return
        try:
            self.post_message(ListReady("images", self.backend.list_images(self.repo_path)))
        except NeedsPassphrase as error:
            self.post_message(ListReady("images", [], str(error)))
            self.post_message(PassphraseWanted(self.repo_path))
        except LifeboatError as error:
            self.post_message(ListReady("images", [], str(error)))

    def on_disks_changed(self, _: DisksChanged) -> None:
        self.refresh_disks()
        self.set_timer(UDEV_SETTLE_SECONDS, self.refresh_disks)

    def on_list_ready(self, message: ListReady) -> None:
        if message.kind == "disks":
            self.disks = list(message.items)
            for screen in self.screen_stack:
                if hasattr(screen, "show_disks"):
                    screen.show_disks(self.disks)
        elif message.kind == "images":
            self.images = list(message.items)
            for screen in self.screen_stack:
                if isinstance(screen, HomeScreen):
                    screen.show_repository(self.repo_path, self.images, message.error)
                elif hasattr(screen, "show_images"):
                    screen.show_images(self.images)

    def on_passphrase_wanted(self, message: PassphraseWanted) -> None:
        if message.url == self.repo_path and not isinstance(self.screen, PassphraseDialog):
            self.push_screen(PassphraseDialog(message.url), lambda ok: ok and self.refresh_images())

    def disk_by_path(self, path: str) -> Disk | None:
        return next((d for d in self.disks if d.path == path), None)

    def use_repository(self, path: str) -> None:
        self.repo_path = path
        log.info("repository: %s", path)
        self.refresh_images()

    # ---- shared services for screens

    def record_event(self, event: Event) -> None:
        log_event(event)

    def show_error(self, title: str, message: str) -> None:
        log.error("%s: %s", title, message)
        self.push_screen(ErrorDialog(title, message, self.backend.log_path))

    def action_go_home(self) -> None:
        while len(self.screen_stack) > 1 and not isinstance(self.screen, HomeScreen):
            self.pop_screen()
        self.refresh_images()
        self.refresh_disks()

    def action_show_log(self) -> None:
        if not isinstance(self.screen, LogScreen):
            self.push_screen(LogScreen())

    # ---- the actions of the home screen

    def _with_repository(self, then: Callable[[], None]) -> None:
        if self.repo_path:
            then()
            return

        def chosen(path: str) -> None:
            self.pop_screen()
            self.use_repository(path)
            then()

        self.push_screen(RepoPickerScreen(chosen))

    def action_restore(self) -> None:
        from lifeboat.tui.flows.restore import RestoreFlow

        self._with_repository(RestoreFlow(self).start)

    def action_capture(self) -> None:
        from lifeboat.tui.flows.capture import CaptureFlow

        CaptureFlow(self).start()

    def action_verify(self) -> None:
        from lifeboat.tui.flows.others import start_verify

        self._with_repository(lambda: start_verify(self))

    def action_browse(self) -> None:
        from lifeboat.tui.flows.others import start_browse

        self._with_repository(lambda: start_browse(self))

    def action_bootfix(self) -> None:
        from lifeboat.tui.flows.others import start_bootfix

        start_bootfix(self)

    def action_repository(self) -> None:
        def chosen(path: str) -> None:
            self.pop_screen()
            self.use_repository(path)

        self.push_screen(RepoPickerScreen(chosen))

    def action_shell(self) -> None:
        with self.suspend():
            self.shell()
        self.refresh_disks()

    def action_reboot(self) -> None:
        self._power("reboot", "Restart the computer now?")

    def action_power_off(self) -> None:
        self._power("poweroff", "Switch the computer off now?")

    def _power(self, action: str, question: str) -> None:
        def answered(yes: bool | None) -> None:
            if yes:
                self.backend.power(action)
                self.exit(0)

        self.push_screen(ConfirmDialog(question, "Remove the Lifeboat stick if the computer should start from its own disk."), answered)

    def action_quit_asking(self) -> None:
        from lifeboat.tui.screens.progress import ProgressScreen

        if any(isinstance(s, ProgressScreen) and not s.finished for s in self.screen_stack):
            self.notify("A job is running: stop it first with Esc.", severity="warning")
            return
        self.push_screen(ConfirmDialog("Leave Lifeboat?"), lambda yes: yes and self.exit(0))


def create_app(backend: Backend, repo_path: str | None = None, **options) -> LifeboatApp:
    """The app with its dependencies injected (tests pass a FakeBackend, `today`, `shell`...)."""
    return LifeboatApp(backend, repo_path=repo_path, **options)


def main(argv: list[str] | None = None) -> int:
    """`lifeboat tui [--repo DIR] [--demo]` (and `lifeboat` with no arguments)."""
    parser = argparse.ArgumentParser(prog="lifeboat tui", description="The Lifeboat text user interface",
                                     parents=[repo_option(secrets=False)])
    parser.add_argument("--demo", action="store_true", help="made-up disks and images; nothing is touched")
    args = parser.parse_args(argv)
    if args.demo:
        from lifeboat.tui.fake_backend import DEMO_REPO, FakeBackend

        seconds = float(os.environ.get("LIFEBOAT_DEMO_JOB_SECONDS", "12"))
        backend, repo = FakeBackend(job_seconds=seconds), args.repo or DEMO_REPO
    else:
        from lifeboat.repo import netwait
        from lifeboat.repo.credentials import forbid_prompts
        from lifeboat.tui.engine_backend import EngineBackend

        # the TUI owns the terminal: a getpass() under it would hang the screen
        forbid_prompts("give it in the repository picker's Network location form (o, then n)")
        netwait.log_only()  # waits for a share's network: in the log view, not written over the screen

        backend, repo = EngineBackend(), default_repo(args.repo)
    app = create_app(backend, repo_path=repo)
    app.run()
    return app.return_code or 0
