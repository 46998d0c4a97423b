"""Wizard steps: pick one thing from a list, or type a line. Esc goes back one step."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Footer, Header, Input, OptionList, Static
from textual.widgets.option_list import Option

from lifeboat.devices import Disk
from lifeboat.tui.widgets.text import disk_prompt


class WizardStep(Screen):
    """A step with a title line and an explanation; Esc returns to the previous step."""

    BINDINGS = [Binding("escape", "back", "Back")]

    def __init__(self, title: str, intro: str) -> None:
        super().__init__()
        self.step_title = title
        self.intro = intro

    def compose_header(self) -> ComposeResult:
        yield Header()
        yield Static(self.step_title, classes="step-title")
        yield Static(self.intro, classes="step-intro")

    def on_mount(self) -> None:
        self.sub_title = self.step_title

    def action_back(self) -> None:
        self.app.pop_screen()


class PickScreen(WizardStep):
    """Choose one option; disabled options are shown greyed and cannot be chosen."""

    BINDINGS = [Binding("enter", "choose", "Choose", show=True, priority=False)]

    def __init__(
        self,
        title: str,
        intro: str,
        options: Sequence[tuple[str, Text | str, bool]],
        on_pick: Callable[[str], None],
        empty: str = "Nothing to choose from.",
    ) -> None:
        super().__init__(title, intro)
        self.options = list(options)
        self.on_pick = on_pick
        self.empty = empty

    def compose(self) -> ComposeResult:
        yield from self.compose_header()
        yield OptionList(*self._build_options(), id="choices")
        yield Static(self.empty if not self.options else "", id="empty-note", classes="step-intro")
        yield Footer()

    def _build_options(self) -> list[Option]:
        return [Option(prompt, id=key, disabled=disabled) for key, prompt, disabled in self.options]

    def set_options(self, options: Sequence[tuple[str, Text | str, bool]], keep_highlight: bool = True) -> None:
        """Replace the choices (hotplug), keeping the highlight on the same key when it is still there."""
        choices = self.query_one("#choices", OptionList)
        current = choices.highlighted_option.id if choices.highlighted_option is not None else None
        self.options = list(options)
        choices.clear_options()
        choices.add_options(self._build_options())
        keys = [key for key, _, disabled in self.options]
        if keep_highlight and current in keys:
            choices.highlighted = keys.index(current)
        elif self.options:
            choices.highlighted = 0
        self.query_one("#empty-note", Static).update(self.empty if not self.options else "")

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        if event.option.id is not None and not event.option.disabled:
            self.on_pick(event.option.id)

    def action_choose(self) -> None:
        self.query_one("#choices", OptionList).action_select()


def disk_options(disks: Sequence[Disk], allow_unsafe: bool) -> list[tuple[str, Text, bool]]:
    return [(d.path, disk_prompt(d, show_unsafe=True), bool(d.unsafe_reason) and not allow_unsafe) for d in disks]


class DiskPickScreen(PickScreen):
    """Choose a disk; the list follows hotplug. Unsafe disks are greyed unless `allow_unsafe` (reading)."""

    def __init__(self, title: str, intro: str, disks: Sequence[Disk], on_pick, allow_unsafe: bool = False) -> None:
        super().__init__(title, intro, disk_options(disks, allow_unsafe), on_pick, "No disks found. Plug one in.")
        self.allow_unsafe = allow_unsafe

    def show_disks(self, disks: Sequence[Disk]) -> None:
        self.set_options(disk_options(disks, self.allow_unsafe))


class TextStepScreen(WizardStep):
    """Type one line (an image name, a path). `validate` returns an error sentence or ''."""

    def __init__(
        self,
        title: str,
        intro: str,
        value: str,
        on_enter: Callable[[str], None],
        validate: Callable[[str], str] = lambda _: "",
    ) -> None:
        super().__init__(title, intro)
        self.value = value
        self.on_enter = on_enter
        self.validate = validate

    def compose(self) -> ComposeResult:
        yield from self.compose_header()
        yield Input(value=self.value, id="line")
        yield Static("", id="problem", classes="problem")
        yield Static("Enter = next    Esc = back", classes="step-intro")
        yield Footer()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        value = event.value.strip()
        problem = self.validate(value)
        self.query_one("#problem", Static).update(problem)
        if not problem:
            self.on_enter(value)
