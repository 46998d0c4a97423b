"""Capture step shown when the source holds LUKS containers: what will be imaged by used blocks (an opened
container's contents), what copied whole, and the warning when decrypted contents would go into a repository
that is not encrypted."""

from __future__ import annotations

from collections.abc import Callable

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.widgets import Footer, Static

from lifeboat.tui.backend import CapturePlanView
from lifeboat.tui.screens.plan_step import PlanStep

PLAINTEXT = ("WARNING: {repo} is not encrypted: the opened containers' contents would be stored there decrypted, "
             "readable by anyone who can read the repository. Capture into an encrypted repository instead, or "
             "confirm by typing plaintext.")


class CapturePlanScreen(PlanStep[CapturePlanView]):
    BINDINGS = [Binding("enter", "go", "Capture…")]
    job = "capture"

    def __init__(self, load: Callable[[], CapturePlanView], on_go: Callable[[CapturePlanView], None]) -> None:
        super().__init__("Capture: check the plan", "Opening the containers and reading the used blocks…", load, on_go)

    def compose(self) -> ComposeResult:
        yield from self.compose_header()
        with VerticalScroll(id="plan-lines"):
            yield Static("", id="plan-text", markup=False)
            yield Static("", id="plaintext-warning", classes="problem", markup=False)
        yield Footer()

    def show_plan(self, plan: CapturePlanView) -> None:
        self.query_one(".step-intro", Static).update(
            f"{plan.source.name} is only read. Enter to go on, Esc to choose again.")
        self.query_one("#plan-text", Static).update("\n".join(plan.lines))
        if plan.plaintext:
            self.query_one("#plaintext-warning", Static).update(PLAINTEXT.format(repo=plan.repo_path))
