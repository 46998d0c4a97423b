"""Ask the passphrase of an encrypted repository (masked, never logged); a wrong one is said and asked again.
With `create`, the passphrase of a new encrypted repository, typed twice, after saying that a lost one
cannot be recovered."""

from __future__ import annotations

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Footer, Input, Label, Static

from lifeboat.errors import LifeboatError

LOST_WARNING = ("A lost passphrase cannot be recovered: without it nobody, Lifeboat included, can read the images "
                "in this repository. Write it down and keep it somewhere safe.")


class PassphraseAnswer(Message):
    def __init__(self, error: str) -> None:
        super().__init__()
        self.error = error


class PassphraseDialog(ModalScreen[bool]):
    """Dismissed with True once the backend accepted the passphrase, False when the user gave up (Esc)."""

    BINDINGS = [Binding("escape", "give_up", "Cancel")]

    def __init__(self, url: str, create: bool = False) -> None:
        super().__init__(classes="dialog-screen")
        self.url = url
        self.create = create
        self.tries = 0

    def compose(self) -> ComposeResult:
        title = "New encrypted repository" if self.create else "Encrypted repository"
        with Vertical(classes="dialog"):
            yield Label(title, classes="dialog-title")
            yield Static(f"Passphrase for {self.url}", classes="dialog-body", markup=False)
            if self.create:
                yield Static(LOST_WARNING, id="lost-warning", classes="dialog-body problem")
            yield Input(password=True, placeholder="passphrase", id="phrase")
            if self.create:
                yield Input(password=True, placeholder="the same again", id="again")
            yield Static("", id="phrase-problem", classes="problem", markup=False)
            verb = "next field, then create" if self.create else "open"
            yield Static(f"Enter = {verb}    Esc = cancel", classes="dialog-keys")
        yield Footer()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        phrase = self.query_one("#phrase", Input).value
        if not phrase:
            self._problem("Type the passphrase.")
            return
        if self.create:
            if event.input.id == "phrase":
                self.query_one("#again", Input).focus()
                return
            if self.query_one("#again", Input).value != phrase:
                self._problem("The two passphrases differ; type them again.")
                self._clear()
                return
        self._problem("Checking…" if not self.create else "Creating the repository…")
        self.check(phrase)

    @work(thread=True, exclusive=True, exit_on_error=False, group="passphrase")
    def check(self, phrase: str) -> None:
        backend = self.app.backend
        try:
            if self.create:
                backend.create_encrypted(self.url, phrase)
            else:
                backend.unlock(self.url, phrase)
        except LifeboatError as error:
            self.post_message(PassphraseAnswer(str(error)))
        else:
            self.post_message(PassphraseAnswer(""))

    def on_passphrase_answer(self, message: PassphraseAnswer) -> None:
        message.stop()
        if not message.error:
            self.dismiss(True)
            return
        self.tries += 1
        self._problem(f"{message.error}. Try again (attempt {self.tries + 1}).")
        self._clear()

    def _clear(self) -> None:
        for field in self.query(Input):
            field.value = ""
        self.query_one("#phrase", Input).focus()

    def _problem(self, text: str) -> None:
        self.query_one("#phrase-problem", Static).update(text)

    def action_give_up(self) -> None:
        self.dismiss(False)
