"""Everything the log holds, live."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Footer, Header, RichLog, Static


class LogScreen(Screen):
    BINDINGS = [Binding("escape,l,q", "app.pop_screen", "Close")]

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(f"Log (also written to {self.app.backend.log_path})", classes="step-title")
        yield RichLog(id="log-view", max_lines=5000, wrap=True, markup=False)
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = "Log"
        self.seen = 0
        self.follow()
        self.set_interval(0.5, self.follow)
        self.query_one(RichLog).focus()

    def follow(self) -> None:
        book = self.app.log_book
        lines, total = book.since(self.seen)
        view = self.query_one(RichLog)
        for line in lines:
            view.write(line)
        self.seen = total
