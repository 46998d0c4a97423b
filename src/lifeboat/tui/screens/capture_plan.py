"""Capture step shown when the source holds LUKS containers: what will be imaged by used blocks (an opened
container's contents), what copied whole, and the warning when decrypted contents would go into a repository
that is not encrypted."""

from __future__ import annotations

from collections.abc import Callable

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.widgets import Footer, Static

from lifeboat.errors import LifeboatError
from lifeboat.tui.backend import CapturePlanView
from lifeboat.tui.messages import PlanReady
from lifeboat.tui.screens.pick import WizardStep

PLAINTEXT = ("WARNING: {repo} is not encrypted: the opened containers' contents would be stored there decrypted, "
             "readable by anyone who can read the repository. Capture into an encrypted repository instead, or "
             "confirm by typing plaintext.")


class CapturePlanScreen(WizardStep):
    BINDINGS = [Binding("enter", "go", "Capture…")]

    def __init__(self, load: Callable[[], CapturePlanView], on_go: Callable[[CapturePlanView], None]) -> None:
        super().__init__("Capture: check the plan", "Opening the containers and reading the used blocks…")
        self.load = load
        self.on_go = on_go
        self.plan: CapturePlanView | None = None

    def compose(self) -> ComposeResult:
        yield from self.compose_header()
        with VerticalScroll(id="plan-lines"):
            yield Static("", id="plan-text", markup=False)
            yield Static("", id="plaintext-warning", classes="problem", markup=False)
        yield Footer()

    def on_mount(self) -> None:
        super().on_mount()
        self.build_plan()

    @work(thread=True, exclusive=True, exit_on_error=False, group="plan")
    def build_plan(self) -> None:
        try:
            self.post_message(PlanReady(plan=self.load()))
        except LifeboatError as error:
            self.post_message(PlanReady(error=str(error)))

    def on_plan_ready(self, message: PlanReady) -> None:
        if message.error:
            self.query_one(".step-intro", Static).update(f"This capture cannot be done: {message.error}")
            self.app.show_error("This capture cannot be done", message.error)
            return
        plan: CapturePlanView = message.plan
        self.plan = plan
        self.query_one(".step-intro", Static).update(
            f"{plan.source.name} is only read. Enter to go on, Esc to choose again.")
        self.query_one("#plan-text", Static).update("\n".join(plan.lines))
        if plan.plaintext:
            self.query_one("#plaintext-warning", Static).update(PLAINTEXT.format(repo=plan.repo_path))
        self.refresh_bindings()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "go":
            return self.plan is not None
        return True

    def action_go(self) -> None:
        if self.plan is not None:
            self.on_go(self.plan)
