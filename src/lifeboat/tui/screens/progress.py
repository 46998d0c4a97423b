"""Runs one job in a thread worker and shows how it goes. The worker talks back only by messages."""

from __future__ import annotations

import logging
import threading
import time

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Footer, Header, RichLog, Static

from lifeboat.events import Event, LogLine, Progress, StepFinished, StepStarted
from lifeboat.errors import Cancelled, LifeboatError
from lifeboat.tui.dialogs.confirm import ConfirmDialog
from lifeboat.tui.jobs import JobSpec
from lifeboat.tui.messages import EngineEvent, JobFinished
from lifeboat.tui.widgets.job_meter import JobMeter

log = logging.getLogger("lifeboat.tui")


class ProgressScreen(Screen):
    BINDINGS = [
        Binding("escape", "stop", "Stop"),
        Binding("l", "app.show_log", "Log"),
    ]

    def __init__(self, spec: JobSpec) -> None:
        super().__init__()
        self.spec = spec
        self.cancel = threading.Event()
        self.reached = ""  # how far the job got: "", "started", or the last phase (decides what a stop leaves)
        self.phase = ""
        self.started = time.monotonic()
        self.finished = False

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(self.spec.title, id="job-title", classes="step-title")
        yield Static("Starting…", id="job-step", classes="step-intro")
        yield JobMeter()
        yield RichLog(id="job-log", max_lines=200, wrap=True, markup=False)
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = self.spec.title
        self.set_interval(1.0, self.tick)
        self.run_job()

    def tick(self) -> None:
        """Runs on the event loop every second, whatever the worker is doing: the clock never stops."""
        if not self.finished:
            self.query_one(JobMeter).tick()

    @work(thread=True, exclusive=True, exit_on_error=False, group="job")
    def run_job(self) -> None:
        try:
            outcome = self.spec.run(self.sink, self.cancel)
        except LifeboatError as error:
            self.post_message(JobFinished(error=error))
        except Exception as error:  # noqa: BLE001 - a bug must still reach the user, not kill the UI
            log.exception("job failed unexpectedly")
            self.post_message(JobFinished(error=LifeboatError(f"unexpected error: {error!r}")))
        else:
            self.post_message(JobFinished(outcome=outcome))

    def sink(self, event: Event) -> None:
        """The engine's progress sink: called on the worker thread, so it only posts."""
        self.post_message(EngineEvent(event))

    def on_engine_event(self, message: EngineEvent) -> None:
        event = message.event
        self.app.record_event(event)
        if isinstance(event, Progress):
            self._show_progress(event)
        elif isinstance(event, StepStarted):
            self.reached = self.reached or "started"
            detail = f": {event.detail}" if event.detail else ""
            self.query_one("#job-step", Static).update(f"Now: {event.step}{detail}")
            self._log(f"▶ {event.step}{detail}")
        elif isinstance(event, StepFinished):
            detail = f" ({event.detail})" if event.detail else ""
            self._log(f"✓ {event.step}: {event.outcome}{detail}")
        elif isinstance(event, LogLine):
            self._log(("! " if event.level != "info" else "  ") + event.message)

    def _show_progress(self, event: Progress) -> None:
        meter = self.query_one(JobMeter)
        if event.phase != self.phase:
            if self.phase:
                meter.reset()
            self.phase = event.phase
            heading = self.spec.phases.get(event.phase, event.phase.capitalize())
            self.query_one("#job-title", Static).update(f"{self.spec.title} — {heading}")
        self.reached = event.phase
        meter.feed(event)

    def _log(self, line: str) -> None:
        self.query_one("#job-log", RichLog).write(line)

    def action_stop(self) -> None:
        if self.finished or self.cancel.is_set():
            return
        self.app.push_screen(ConfirmDialog(self.spec.stop_question, self.spec.stop_warning), self._stop_answered)

    def _stop_answered(self, stop: bool | None) -> None:
        if stop and not self.finished:
            self.cancel.set()
            self.query_one("#job-step", Static).update("Stopping safely… (waiting for the current step to end)")
            self._log("Stop requested by the user")

    def on_job_finished(self, message: JobFinished) -> None:
        from lifeboat.tui.screens.result import ResultScreen

        self.finished = True
        self.app.refresh_disks()  # a job changes disks in ways udev may not announce (locks, mounts)
        elapsed = time.monotonic() - self.started
        error = message.error
        if error is None and self.spec.on_success is not None:
            self.spec.on_success()
        state = self.spec.state_after_stop(self.reached) if error is not None else ""
        result = ResultScreen(self.spec, message.outcome, error, elapsed, state)
        while self.app.screen is not self:  # a stop question or the log view is open: close it
            self.app.pop_screen()
        self.app.switch_screen(result)
        if error is not None and not isinstance(error, Cancelled):
            self.app.show_error(f"{self.spec.title} failed", str(error))
