"""Ask the passphrase of one LUKS container (masked, never logged: it goes from this field to the backend, which
hands it to cryptsetup on a pipe). The container is named (partition, LUKS version, UUID, label); a wrong
passphrase is said and asked again. For a capture (and a repair), F2 goes on without it: the container is
copied whole (the size it takes is said), or the repair leaves a root inside it alone."""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Footer, Input, Label, Static

from lifeboat.devices import human_size
from lifeboat.errors import LifeboatError
from lifeboat.tui.backend import LuksAnswer, LuksContainer


class LuksChecked(Message):
    """The backend's answer to a passphrase: `error` when it opens nothing. The passphrase stays out of repr
    (textual's devtools log messages)."""

    def __init__(self, error: str, passphrase: str = "") -> None:
        super().__init__()
        self.error = error
        self.passphrase = passphrase

    def __repr__(self) -> str:
        return f"LuksChecked(error={self.error!r})"


class LuksPurpose(StrEnum):
    CAPTURE = "capture"
    RESTORE = "restore"
    BOOTFIX = "bootfix"


WHY = {
    LuksPurpose.CAPTURE: "With its passphrase the container is opened read-only and what is inside is imaged by its "
                         "used blocks, like any partition.",
    LuksPurpose.RESTORE: "The image holds this container's contents: the restore re-creates the container from its "
                         "header backup and opens it with its passphrase to write them.",
    LuksPurpose.BOOTFIX: "A system's root may be inside: with the passphrase the repair unlocks it, repairs that "
                         "system's boot and locks it again. It must open every LUKS container on this disk.",
}


def without(purpose: LuksPurpose, container: LuksContainer) -> str:
    """What F2 (going on without the passphrase) means; "" when there is no such choice."""
    if purpose is LuksPurpose.CAPTURE:
        return (f"F2 = copy it whole instead: {human_size(container.size)}, encrypted, byte for byte (encrypted data "
                "does not compress), and not grown on a larger disk.")
    if purpose is LuksPurpose.BOOTFIX:
        return "F2 = repair without it: a system inside stays as it is (reported as needing the passphrase)."
    return ""


class LuksPassphraseDialog(ModalScreen[LuksAnswer | None]):
    """Dismissed with a LuksAnswer (the passphrase the backend accepted, or copy_whole), None on Esc."""

    BINDINGS = [Binding("escape", "give_up", "Cancel"), Binding("f2", "without", "Go on without it")]

    def __init__(self, container: LuksContainer, purpose: LuksPurpose, check: Callable[[str], None],
                 of: str = "") -> None:
        """`check(passphrase)` raises LifeboatError when it does not open the container (run in a thread).
        `of`: "1 of 2" when several containers are asked in turn."""
        super().__init__(classes="dialog-screen")
        self.container = container
        self.purpose = purpose
        self.check = check
        self.of = of
        self.tries = 0

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog tall"):
            yield Label("Encrypted partition" + (f" ({self.of})" if self.of else ""), classes="dialog-title")
            yield Static(self.container.describe(), id="luks-container", classes="dialog-body", markup=False)
            yield Static(WHY[self.purpose], classes="dialog-body", markup=False)
            yield Input(password=True, placeholder="passphrase", id="luks-phrase")
            yield Static("", id="luks-problem", classes="problem", markup=False)
            alternative = without(self.purpose, self.container)
            if alternative:
                yield Static(alternative, id="luks-without", classes="dialog-body", markup=False)
            yield Static("Enter = open    " + ("F2 = without it    " if alternative else "") + "Esc = cancel",
                         classes="dialog-keys")
        yield Footer()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "without":
            return bool(without(self.purpose, self.container))
        return True

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        phrase = event.value
        if not phrase:
            self._problem("Type the passphrase" + (", or F2 to go on without it." if self.check_action(
                "without", ()) else "."))
            return
        self._problem("Checking…")
        self.try_phrase(phrase)

    @work(thread=True, exclusive=True, exit_on_error=False, group="luks-passphrase")
    def try_phrase(self, phrase: str) -> None:
        try:
            self.check(phrase)
        except LifeboatError as error:
            self.post_message(LuksChecked(str(error)))
        else:
            self.post_message(LuksChecked("", phrase))

    def on_luks_checked(self, message: LuksChecked) -> None:
        message.stop()
        if not message.error:
            self.dismiss(LuksAnswer(self.container.partition, message.passphrase))
            return
        self.tries += 1
        self._problem(f"{message.error}. Try again (attempt {self.tries + 1}).")
        field = self.query_one("#luks-phrase", Input)
        field.value = ""
        field.focus()

    def _problem(self, text: str) -> None:
        self.query_one("#luks-problem", Static).update(text)

    def action_without(self) -> None:
        self.dismiss(LuksAnswer(self.container.partition))

    def action_give_up(self) -> None:
        self.dismiss(None)


def ask_each(app, containers: tuple[LuksContainer, ...], purpose: LuksPurpose, check: Callable[[LuksContainer, str], None],
             done: Callable[[tuple[LuksAnswer, ...]], None]) -> None:
    """Ask the containers' passphrases in turn (those that cannot be opened here are not asked: copied whole);
    `done(answers)` once all are answered; nothing when the user gives up (Esc)."""
    askable = [c for c in containers if not c.unavailable]
    answers: list[LuksAnswer] = [LuksAnswer(c.partition) for c in containers if c.unavailable]

    def ask(i: int) -> None:
        if i == len(askable):
            done(tuple(answers))
            return
        container = askable[i]

        def answered(answer: LuksAnswer | None) -> None:
            if answer is not None:
                answers.append(answer)
                ask(i + 1)

        of = f"{i + 1} of {len(askable)}" if len(askable) > 1 else ""
        app.push_screen(LuksPassphraseDialog(container, purpose, lambda phrase: check(container, phrase), of),
                        answered)

    ask(0)
