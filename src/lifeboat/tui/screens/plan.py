"""Restore step: the plan. Today's layout of the target beside the one to be written."""

from __future__ import annotations

from collections.abc import Callable

from rich.console import Group
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import Footer, Static

from lifeboat.errors import LifeboatError
from lifeboat.tui.backend import RestorePlanView
from lifeboat.tui.messages import PlanReady
from lifeboat.tui.screens.pick import WizardStep
from lifeboat.tui.widgets.layout_view import layout_bar, layout_table


class PlanScreen(WizardStep):
    BINDINGS = [Binding("enter", "go", "Restore…")]

    def __init__(self, load: Callable[[], RestorePlanView], on_go: Callable[[RestorePlanView], None]) -> None:
        super().__init__("Restore: check the plan", "Working out what will be written…")
        self.load = load
        self.on_go = on_go
        self.plan: RestorePlanView | None = None

    def compose(self) -> ComposeResult:
        yield from self.compose_header()
        yield Static("", id="bars")
        with Horizontal(id="layouts"):
            yield Static("", id="layout-now", classes="layout")
            yield Static("", id="layout-new", classes="layout")
        with VerticalScroll(id="plan-lines"):
            yield Static("", id="plan-text", markup=False)
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
            self.plan_refused(message.error)
        else:
            self.show_plan(message.plan)

    def plan_refused(self, message: str) -> None:
        self.query_one(".step-intro", Static).update(f"This restore cannot be done: {message}")
        self.app.show_error("This restore cannot be done", message)

    def show_plan(self, plan: RestorePlanView) -> None:
        self.plan = plan
        target = plan.target
        self.query_one(".step-intro", Static).update(
            f"Image {plan.image} onto {target.name} ({target.model}). Everything now on {target.name} will be "
            "replaced. Enter to go on, Esc to choose again."
        )
        self.query_one("#bars", Static).update(Group(
            layout_bar(f"{target.name} today", plan.current, target.size),
            layout_bar(f"{target.name} after the restore", plan.new, target.size)))
        self.query_one("#layout-now", Static).update(layout_table(f"{target.name} today", plan.current, target.size))
        self.query_one("#layout-new", Static).update(layout_table("after the restore", plan.new, target.size))
        self.query_one("#plan-text", Static).update("\n".join(plan.describe()))
        self.refresh_bindings()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "go":
            return self.plan is not None
        return True

    def action_go(self) -> None:
        if self.plan is not None:
            self.on_go(self.plan)
