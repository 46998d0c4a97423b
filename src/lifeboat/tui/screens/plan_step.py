"""A wizard step that works out a plan in a worker thread, shows it, and goes on with Enter only once there is
one: the capture and restore plan screens share this and differ in what they show."""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

from textual import work
from textual.widgets import Static

from lifeboat.errors import LifeboatError
from lifeboat.tui.messages import PlanReady
from lifeboat.tui.screens.pick import WizardStep

PlanView = TypeVar("PlanView")


class PlanStep(WizardStep, Generic[PlanView]):
    """Subclasses set `job` ("capture", "restore"), compose their widgets and implement `show_plan`."""

    job = "job"

    def __init__(self, title: str, intro: str, load: Callable[[], PlanView],
                 on_go: Callable[[PlanView], None]) -> None:
        super().__init__(title, intro)
        self.load = load
        self.on_go = on_go
        self.plan: PlanView | None = None

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
            return
        self.plan = message.plan
        self.show_plan(message.plan)
        self.refresh_bindings()

    def plan_refused(self, reason: str) -> None:
        self.query_one(".step-intro", Static).update(f"This {self.job} cannot be done: {reason}")
        self.app.show_error(f"This {self.job} cannot be done", reason)

    def show_plan(self, plan: PlanView) -> None:
        raise NotImplementedError

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "go":
            return self.plan is not None
        return True

    def action_go(self) -> None:
        if self.plan is not None:
            self.on_go(self.plan)
