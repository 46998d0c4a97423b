"""Browse an image: its filesystems as a tree (read-only), and copy a file or folder out of it."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DirectoryTree, Footer, Input, ProgressBar, Static

from lifeboat.devices import human_size
from lifeboat.tui.backend import BrowseView
from lifeboat.tui.screens.pick import WizardStep

BLOCK = 1024 * 1024


def _sizes(path: str) -> int:
    if os.path.isfile(path) and not os.path.islink(path):
        return os.path.getsize(path)
    total = 0
    for root, _dirs, names in os.walk(path):
        total += sum(os.path.getsize(os.path.join(root, n)) for n in names
                     if os.path.isfile(os.path.join(root, n)) and not os.path.islink(os.path.join(root, n)))
    return total


def copy_out(source: str, dest_dir: str, advance: Callable[[int], None]) -> str:
    """Copy a file or folder into `dest_dir` (times and modes kept, links as links). Returns the copy."""
    target = os.path.join(dest_dir, os.path.basename(source.rstrip("/")))
    if os.path.isdir(source) and not os.path.islink(source):
        for root, dirs, names in os.walk(source):
            here = os.path.join(target, os.path.relpath(root, source))
            os.makedirs(here, exist_ok=True)
            for name in names:
                _copy_file(os.path.join(root, name), os.path.join(here, name), advance)
            shutil.copystat(root, here)
    else:
        _copy_file(source, target, advance)
    return target


def _copy_file(source: str, target: str, advance: Callable[[int], None]) -> None:
    if os.path.islink(source):
        os.symlink(os.readlink(source), target)
        return
    with open(source, "rb") as src, open(target, "wb") as dst:
        while block := src.read(BLOCK):
            dst.write(block)
            advance(len(block))
    shutil.copystat(source, target)


class BrowseScreen(WizardStep):
    BINDINGS = [Binding("ctrl+y", "copy", "Copy to…")]

    def __init__(self, view: BrowseView, on_close: Callable[[], None]) -> None:
        skipped = f" Not shown: {view.note}." if view.note else ""
        super().__init__(f"Browse {view.image}", "Read-only. Pick a file or folder, type where to copy it, "
                                                  f"Ctrl+Y copies it there; Esc closes the image.{skipped}")
        self.view, self.on_close = view, on_close
        self.selected = ""

    def compose(self) -> ComposeResult:
        yield from self.compose_header()
        yield DirectoryTree(self.view.root, id="tree")
        yield Input(placeholder="copy to this directory, e.g. /media/usb", id="dest")
        yield ProgressBar(id="copy-bar", show_eta=False)
        yield Static("", id="copy-status")
        yield Footer()

    def on_directory_tree_file_selected(self, event: DirectoryTree.FileSelected) -> None:
        self.selected = str(event.path)
        self.query_one("#copy-status", Static).update(f"selected {self.selected}")

    def on_directory_tree_directory_selected(self, event: DirectoryTree.DirectorySelected) -> None:
        self.selected = str(event.path)
        self.query_one("#copy-status", Static).update(f"selected {self.selected}")

    def action_copy(self) -> None:
        dest = self.query_one("#dest", Input).value.strip()
        problem = ("pick a file or folder first" if not self.selected else
                   f"{dest or 'the destination'} is not a directory" if not os.path.isdir(dest) else
                   "the image is read-only: copy somewhere else" if os.path.realpath(dest).startswith(
                       os.path.realpath(self.view.root)) else "")
        if problem:
            self.query_one("#copy-status", Static).update(problem)
            return
        self.copy(self.selected, dest)

    @work(thread=True, exclusive=True, group="copy")
    def copy(self, source: str, dest: str) -> None:
        total = _sizes(source)
        bar = self.query_one("#copy-bar", ProgressBar)
        self.app.call_from_thread(bar.update, total=max(total, 1), progress=0)
        try:
            copied = copy_out(source, dest, lambda n: self.app.call_from_thread(bar.advance, n))
            text = f"copied {human_size(total)} to {copied}"
        except OSError as exc:
            text = f"copy failed: {exc.strerror or exc} ({exc.filename or source})"
        self.app.call_from_thread(self.query_one("#copy-status", Static).update, text)

    def action_back(self) -> None:
        """Close the image (unmounted) and go back to the start."""
        self.on_close()
        self.app.action_go_home()
