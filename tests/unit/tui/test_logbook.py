"""While the TUI runs, log records reach the file and the log view, never the terminal."""

from __future__ import annotations

import io
import logging

from lifeboat.tui.logbook import LogBook, attach_logging


def test_records_go_to_file_and_view_not_to_the_command_lines_stderr_handler(tmp_path, monkeypatch):
    terminal = io.StringIO()
    monkeypatch.setattr("sys.stderr", terminal)
    stderr_handler = logging.StreamHandler()  # what logging.basicConfig installs: writes to sys.stderr
    logging.getLogger().addHandler(stderr_handler)
    try:
        book = LogBook()
        detach = attach_logging(str(tmp_path / "lifeboat.log"), book)
        logging.getLogger("lifeboat.run").info("+ mount -o ro /dev/sdb1 /run/lifeboat/peek/x")
        logging.getLogger("other.library").warning("a warning from elsewhere")
        detach()
        lines, total = book.since(0)
        assert total == 1 and lines[0].endswith("lifeboat.run: + mount -o ro /dev/sdb1 /run/lifeboat/peek/x")
        assert "+ mount -o ro" in (tmp_path / "lifeboat.log").read_text()
        assert terminal.getvalue() == ""
        assert stderr_handler in logging.getLogger().handlers  # given back afterwards
        assert logging.getLogger("lifeboat").propagate
    finally:
        logging.getLogger().removeHandler(stderr_handler)
