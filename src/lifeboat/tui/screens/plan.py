"""Restore step: the plan. Today's layout of the target beside the one to be written."""

from __future__ import annotations

from collections.abc import Callable

from rich.console import Group
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import Footer, Static

from lifeboat.tui.backend import RestorePlanView
from lifeboat.tui.screens.plan_step import PlanStep
from lifeboat.tui.widgets.layout_view import layout_bar, layout_table


class PlanScreen(PlanStep[RestorePlanView]):
    BINDINGS = [Binding("enter", "go", "Restore…")]
    job = "restore"

    def __init__(self, load: Callable[[], RestorePlanView], on_go: Callable[[RestorePlanView], None]) -> None:
        super().__init__("Restore: check the plan", "Working out what will be written…", load, on_go)

    def compose(self) -> ComposeResult:
        yield from self.compose_header()
        yield Static("", id="bars")
        with Horizontal(id="layouts"):
            yield Static("", id="layout-now", classes="layout")
            yield Static("", id="layout-new", classes="layout")
        with VerticalScroll(id="plan-lines"):
            yield Static("", id="plan-text", markup=False)
        yield Footer()

    def show_plan(self, plan: RestorePlanView) -> None:
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
