"""Yes/no questions, and the one that makes the user type the target's name."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Footer, Input, Label, Static


class ConfirmDialog(ModalScreen[bool]):
    """Ask a question; y / Enter answers yes, n / Esc answers no."""

    BINDINGS = [
        Binding("y,enter", "answer(True)", "Yes"),
        Binding("n,escape", "answer(False)", "No"),
    ]

    def __init__(self, question: str, detail: str = "") -> None:
        super().__init__(classes="dialog-screen")
        self.question = question
        self.detail = detail

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(self.question, classes="dialog-title")
            if self.detail:
                yield Static(self.detail, classes="dialog-body")
            yield Static("y = yes    n / Esc = no", classes="dialog-keys")
        yield Footer()

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)


class TypeNameDialog(ModalScreen[bool]):
    """Destruction needs the target's name typed in full: 'sdb', not just Enter."""

    BINDINGS = [Binding("escape", "give_up", "Back")]

    def __init__(self, name: str, warning: str) -> None:
        super().__init__(classes="dialog-screen")
        self.expected = name
        self.warning = warning

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog danger"):
            yield Label(self.warning, classes="dialog-title")
            yield Static(f"Type [b]{self.expected}[/b] and press Enter to go ahead; Esc goes back.", classes="dialog-body")
            yield Input(placeholder=self.expected, id="typed-name")
            yield Static("", id="typed-hint", classes="dialog-keys")
        yield Footer()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.value.strip() == self.expected:
            self.dismiss(True)
        else:
            self.query_one("#typed-hint", Static).update(f"That is not {self.expected}. Nothing was written.")
            event.input.value = ""

    def action_give_up(self) -> None:
        self.dismiss(False)
