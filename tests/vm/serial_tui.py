"""Drive a full-screen program over a serial line: pexpect for the bytes, pyte for the screen they draw.

    term = SerialTerminal.spawn(machine.argv(), log=tmp_path / "serial.log")   # QEMU with -serial stdio
    try:
        term.expect_raw(re.compile(rb"LIFEBOAT-READY [^\\r\\n]* mode=tui"), 600)
        term.wait_for("Disks (", 60)
        term.keys("r")
        term.choose("LBTARGET", timeout=60)   # move the highlight onto the option showing this text, Enter
    finally:
        term.kill()

Every byte read is fed to a pyte screen (80x24, the size lifeboat.live gives a serial console) and
appended to the log file. Waits are for screen text, never sleeps. QEMU is killed by its PID.
"""

from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path

import pexpect
import pyte

COLUMNS, ROWS = 80, 24

KEYS = {
    "Enter": b"\r",
    "Escape": b"\x1b",
    "Tab": b"\t",
    "Up": b"\x1b[A",
    "Down": b"\x1b[B",
    "Right": b"\x1b[C",
    "Left": b"\x1b[D",
    "Backspace": b"\x7f",
}


class _Feed:
    """pexpect's logfile_read: every byte read goes to the screen and to the log file."""

    def __init__(self, stream: pyte.ByteStream, log: Path | None) -> None:
        self.stream = stream
        self.log = open(log, "ab", buffering=0) if log else None
        self.last_read = time.monotonic()

    def write(self, data: bytes) -> None:
        self.last_read = time.monotonic()
        if self.log:
            self.log.write(data)
        self.stream.feed(data)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        if self.log:
            self.log.close()


class SerialTerminal:
    def __init__(self, child: pexpect.spawn, screen: pyte.Screen, feed: _Feed) -> None:
        self.child = child
        self.screen = screen
        self.feed = feed
        self.started = time.monotonic()

    @classmethod
    def spawn(cls, argv: list[str], log: Path | None = None, env: dict[str, str] | None = None,
              size: tuple[int, int] = (COLUMNS, ROWS)) -> "SerialTerminal":
        screen = pyte.Screen(*size)
        feed = _Feed(pyte.ByteStream(screen), log)
        child = pexpect.spawn(argv[0], list(argv[1:]), env=env, dimensions=(size[1], size[0]), echo=False)
        child.logfile_read = feed
        child.delaybeforesend = None
        return cls(child, screen, feed)

    # ---- lifecycle
    @property
    def pid(self) -> int:
        return self.child.pid

    def alive(self) -> bool:
        return self.child.isalive()

    def kill(self) -> None:
        """Kill the process by its PID (if still running) and reap it."""
        try:
            if self.child.isalive():
                try:
                    os.kill(self.child.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            self.child.close(force=True)
        except Exception:  # noqa: BLE001 - closing must not hide the test's own failure
            pass
        finally:
            self.feed.close()

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    # ---- reading
    def _pump(self, timeout: float) -> None:
        """Read what is there (waiting up to `timeout` for something); the bytes reach the screen."""
        try:
            self.child.read_nonblocking(65536, timeout=timeout)
        except pexpect.TIMEOUT:
            pass
        except pexpect.EOF:
            raise AssertionError(f"the process ended ({self.child.exitstatus}, {self.child.signalstatus}); "
                                 f"the screen shows:\n{self.text()}") from None

    def expect_raw(self, pattern: re.Pattern | bytes, timeout: float) -> bytes:
        """Wait for `pattern` in the byte stream (before a full-screen program starts: boot markers)."""
        try:
            self.child.expect(pattern, timeout=timeout)
        except pexpect.TIMEOUT:
            raise AssertionError(f"{pattern!r} did not appear within {timeout:.0f} s; the screen shows:\n"
                                 f"{self.text()}") from None
        except pexpect.EOF:
            raise AssertionError(f"the process ended before {pattern!r}; the screen shows:\n{self.text()}") from None
        return self.child.after

    def lines(self) -> list[str]:
        return list(self.screen.display)

    def text(self) -> str:
        return "\n".join(line.rstrip() for line in self.screen.display)

    def highlighted(self) -> str:
        """The text of the rows drawn in the highlight colour (an option list's cursor).

        The highlight is the background (or reverse video) that covers the most cells of a row while
        being different from the background of most of the screen."""
        counts: dict[tuple, int] = {}
        rows: list[tuple[int, tuple]] = []
        for y in range(self.screen.lines):
            line = self.screen.buffer[y]
            per_row: dict[tuple, int] = {}
            for x in range(self.screen.columns):
                char = line[x]
                key = (char.bg, char.reverse)
                per_row[key] = per_row.get(key, 0) + 1
                counts[key] = counts.get(key, 0) + 1
            rows.append((y, max(per_row, key=per_row.get)))
        background = max(counts, key=counts.get)
        out = []
        for y, _ in rows:
            line = self.screen.buffer[y]
            cells = [line[x] for x in range(self.screen.columns)]
            marked = [c for c in cells if (c.bg, c.reverse) != background]
            # a highlighted option row: a long run of non-background cells that holds text
            run = "".join(c.data for c in cells if (c.bg, c.reverse) != background)
            if len(marked) >= 20 and run.strip():
                out.append(run.rstrip())
        return "\n".join(out)

    def wait_for(self, pattern: str | re.Pattern, timeout: float) -> re.Match:
        """Wait until the screen shows `pattern` (text or regex; searched in the rows joined by newlines)."""
        regex = pattern if isinstance(pattern, re.Pattern) else re.compile(re.escape(pattern))
        deadline = time.monotonic() + timeout
        while True:
            m = regex.search(self.text())
            if m:
                return m
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{regex.pattern!r} did not appear on the screen within {timeout:.0f} s; "
                                     f"it shows:\n{self.text()}")
            self._pump(min(left, 0.5))

    def settle(self, quiet: float = 1.0, timeout: float = 30) -> None:
        """Read until nothing new has arrived for `quiet` seconds (a redraw is complete)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._pump(0.2)
            if time.monotonic() - self.feed.last_read >= quiet:
                return

    # ---- typing
    def send(self, data: bytes | str) -> None:
        self.child.send(data.encode() if isinstance(data, str) else data)

    def keys(self, *names: str) -> None:
        """Named keys (Enter, Down, Escape...) or literal text, one after the other."""
        for name in names:
            self.send(KEYS.get(name, name.encode()))
            self._pump(0.1)

    def choose(self, needle: str, timeout: float, max_moves: int = 20) -> None:
        """Move an option list's highlight down (from the top) onto the option whose text holds `needle`,
        then press Enter. Each move waits until the highlight has been redrawn."""
        self.wait_for(needle, timeout)
        self.settle(0.5, timeout)
        for _ in range(max_moves):
            current = self.highlighted()
            if needle in current:
                self.keys("Enter")
                return
            self.keys("Down")
            deadline = time.monotonic() + timeout
            while self.highlighted() == current:
                if time.monotonic() > deadline:
                    raise AssertionError(f"the highlight did not move from {current!r}; the screen shows:\n"
                                         f"{self.text()}")
                self._pump(0.3)
            self.settle(0.3, timeout)
        raise AssertionError(f"no option holding {needle!r} could be highlighted; the screen shows:\n{self.text()}")
