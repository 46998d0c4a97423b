"""What a job did: success with its summary, or what failed and what state it left behind."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Footer, Header, Static

from lifeboat.errors import Cancelled, LifeboatError
from lifeboat.tui.backend import JobOutcome
from lifeboat.tui.jobs import JobSpec, is_read_error

RESCUE_OFFER = "r = Capture again with rescue (reads around bad areas)"
from lifeboat.tui.widgets.text import duration


class ResultScreen(Screen):
    BINDINGS = [
        Binding("enter,escape", "app.go_home", "Home"),
        Binding("l", "app.show_log", "Log"),
        Binding("ctrl+r", "reboot", "Reboot"),
        Binding("ctrl+p", "power_off", "Power off"),
        Binding("r", "rescue", "Capture again with rescue"),
    ]

    def __init__(
        self, spec: JobSpec, outcome: JobOutcome | None, error: LifeboatError | None, elapsed: float, state: str
    ) -> None:
        super().__init__()
        self.spec = spec
        self.outcome = outcome
        self.error = error
        self.elapsed = elapsed
        self.state = state

    @property
    def verdict(self) -> str:
        if self.error is None:
            return "Done, with warnings" if self.outcome and self.outcome.warnings else "Done"
        return "Stopped" if isinstance(self.error, Cancelled) else "Failed"

    def compose(self) -> ComposeResult:
        yield Header()
        css = "result-ok" if self.verdict == "Done" else "result-bad"
        yield Static(f"{self.verdict}: {self.spec.title}", id="verdict", classes=f"step-title {css}")
        lines = list(self.outcome.lines) if self.outcome else []
        if self.outcome:
            lines += [f"Warning: {w}" for w in self.outcome.warnings]
        if self.error is not None:
            lines.append(str(self.error))
        if self.state:
            lines.append(self.state)
        lines.append(f"Time taken: {duration(self.elapsed)}")
        yield Static("\n".join(lines), id="result-lines", classes="result-body", markup=False)
        if self.offers_rescue:
            yield Static(RESCUE_OFFER, id="rescue-offer", classes="step-title")
        keys = "Enter = back to the start    l = log"
        if self.spec.offer_power:
            keys += "    Ctrl+R = reboot    Ctrl+P = power off"
        yield Static(keys, classes="step-intro")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = self.verdict

    @property
    def offers_rescue(self) -> bool:
        return (self.spec.rescue_retry is not None and self.error is not None
                and not isinstance(self.error, Cancelled) and is_read_error(self.error))

    def action_rescue(self) -> None:
        if self.offers_rescue:
            self.spec.rescue_retry()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("reboot", "power_off"):
            return self.spec.offer_power
        if action == "rescue":
            return self.offers_rescue
        return True

    def action_reboot(self) -> None:
        self.app.action_reboot()

    def action_power_off(self) -> None:
        self.app.action_power_off()
