"""Errors are shown in a dialog that says where the full log is."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Footer, Label, Static


class ErrorDialog(ModalScreen[None]):
    BINDINGS = [
        Binding("enter,escape", "close", "Close"),
        Binding("l", "app.show_log", "Log"),
    ]

    def __init__(self, title: str, message: str, log_path: str) -> None:
        super().__init__(classes="dialog-screen")
        self.title_text = title
        self.message = message
        self.log_path = log_path

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog danger"):
            yield Label(self.title_text, classes="dialog-title")
            yield Static(self.message, classes="dialog-body", markup=False)
            yield Static(f"The full log is in {self.log_path} (press l to read it here).", classes="dialog-body")
            yield Static("Enter = close", classes="dialog-keys")
        yield Footer()

    def action_close(self) -> None:
        self.dismiss(None)
