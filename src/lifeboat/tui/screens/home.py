"""The first screen: disks (live), the images in the current repository, and what can be done."""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Label, OptionList
from textual.widgets.option_list import Option

from lifeboat import secureboot
from lifeboat.devices import Disk, human_size
from lifeboat.tui.backend import ImageInfo
from lifeboat.tui.widgets.text import UNSAFE_STYLE, disk_contents, disk_label

# (action name, label, key shown)
ACTIONS = [
    ("capture", "Capture disk", "c"),
    ("restore", "Restore image", "r"),
    ("verify", "Verify image", "v"),
    ("browse", "Browse image", "i"),
    ("bootfix", "Repair boot", "b"),
    ("repository", "Repository…", "o"),
    ("show_log", "Log", "l"),
    ("shell", "Shell", "s"),
    ("reboot", "Reboot", ""),
    ("power_off", "Power off", ""),
]


class HomeScreen(Screen):
    BINDINGS = [
        Binding("c", "app.capture", "Capture"),
        Binding("r", "app.restore", "Restore"),
        Binding("v", "app.verify", "Verify"),
        Binding("i", "app.browse", "Browse", show=False),
        Binding("b", "app.bootfix", "Boot fix"),
        Binding("o", "app.repository", "Repo"),
        Binding("s", "app.shell", "Shell", show=False),
        Binding("q", "app.quit_asking", "Quit"),
        Binding("tab", "focus_next", "Next pane", show=False),
    ]

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="home"):
            options = [Option(f"{key or ' '}  {label}", id=name) for name, label, key in ACTIONS]
            yield OptionList(*options, id="actions")
            with Vertical(id="lists"):
                yield Label("Disks", id="disks-title", classes="pane-title")
                yield DataTable(id="disks", cursor_type="row", zebra_stripes=False)
                yield Label("Images", id="images-title", classes="pane-title")
                yield DataTable(id="images", cursor_type="row")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = f"Capture and restore whole disks · {secureboot.describe(secureboot.state())}"
        disks = self.query_one("#disks", DataTable)
        for label, width in (("disk", 5), ("model", 12), ("size", 9), ("on it now", 26)):
            disks.add_column(label, width=width)
        images = self.query_one("#images", DataTable)
        for label, width in (("image", 20), ("date", 10), ("from", 13), ("stored", 9)):
            images.add_column(label, width=width)
        self.query_one("#actions", OptionList).focus()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        getattr(self.app, f"action_{event.option.id}")()

    def _table(self, selector: str) -> DataTable | None:
        """The table, or None while the app closes: a list read in a worker may arrive after the widgets went."""
        return next(iter(self.query(selector).results(DataTable)), None)

    def show_disks(self, disks: Sequence[Disk]) -> None:
        table = self._table("#disks")
        if table is None:
            return
        table.clear()
        for disk in disks:
            style = UNSAFE_STYLE if disk.unsafe_reason else ""
            note = disk.unsafe_reason or disk_contents(disk)
            cells = (disk.name, disk_label(disk), human_size(disk.size), note)
            table.add_row(*(Text(str(c), style=style) for c in cells), key=disk.path)
        self.query_one("#disks-title", Label).update(f"Disks ({len(disks)})")

    def show_repository(self, repo_path: str | None, images: Sequence[ImageInfo], error: str = "") -> None:
        table = self._table("#images")
        if table is None:
            return
        table.clear()
        for image in images:
            date = image.created.strftime("%Y-%m-%d") if image.created else "?"
            source = image.source_model or human_size(image.source_size)
            table.add_row(image.name, date, source, human_size(image.stored_bytes), key=image.name)
        title = f"Images in {repo_path}" if repo_path else "Images (no repository chosen: press o)"
        if error:
            title = f"{repo_path}: {error}"
        self.query_one("#images-title", Label).update(title)
