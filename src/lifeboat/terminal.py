"""The one progress printer: engine and boot events for a person, as a redrawn status line on a terminal and
as plain lines in a log or on a serial console (the CLI, bootfix and unattended jobs all print through it)."""

from __future__ import annotations

import sys
import time
from typing import TextIO

from lifeboat import traffic
from lifeboat.devices import human_size
from lifeboat.events import Event, LogLine, Progress, StepFinished, StepStarted


def _eta(remaining: int, rate: float) -> str:
    if rate <= 0:
        return "--:--"
    seconds = int(remaining / rate)
    return f"{seconds // 60:02d}:{seconds % 60:02d}"


def damage_note(e: Progress) -> str:
    """' | 12 read errors, 1.5 MiB to retry' while a rescue capture meets damage; '' otherwise."""
    if not e.read_errors and not e.to_retry:
        return ""
    retry = f", {human_size(e.to_retry)} to retry" if e.to_retry else ""
    return f" | {e.read_errors} read error{'s' if e.read_errors != 1 else ''}{retry}"


class ConsoleProgress:
    """A progress sink. On a TTY it redraws one line at most 10×/s; otherwise it logs every few seconds.
    `prefix` starts every line ("lifeboat: " on an unattended job's console)."""

    def __init__(self, stream: TextIO | None = None, interval: float | None = None, prefix: str = ""):
        self.stream = stream or sys.stderr
        self.prefix = prefix
        self.tty = self.stream.isatty()
        self.interval = interval if interval is not None else (0.1 if self.tty else 5.0)
        self.started = time.monotonic()
        self.item = ""
        self.item_started = self.started
        self.item_base = 0
        self._last_draw = float("-inf")  # the first event always shows
        # (time, received, sent) when the sink was made: a job's first event comes after its first chunks moved
        self._net_base: tuple[float, int, int] = (self.started, traffic.received(), traffic.sent())
        self._line_open = False

    def __call__(self, event: Event) -> None:
        if isinstance(event, Progress):
            self._progress(event)
        elif isinstance(event, StepStarted):
            self._print(f"» {event.step}" + (f": {event.detail}" if event.detail else ""))
        elif isinstance(event, StepFinished):
            self._print(f"  {event.step}: {event.outcome}" + (f" ({event.detail})" if event.detail else ""))
        elif isinstance(event, LogLine):
            self._print(("! " if event.level != "info" else "  ") + event.message)

    def _progress(self, e: Progress) -> None:
        now = time.monotonic()
        finished = e.done >= e.total or e.item_done >= e.item_total  # each partition's last line always shows
        if now - self._last_draw < self.interval and not finished:
            return
        self._last_draw = now
        if e.item != self.item:
            self.item, self.item_started, self.item_base = e.item, now, e.item_done
        rate = e.done / max(now - self.started, 1e-6)
        item_rate = (e.item_done - self.item_base) / max(now - self.item_started, 1e-6)
        item_pct = 100 * e.item_done / e.item_total if e.item_total else 100
        pct = 100 * e.done / e.total if e.total else 100
        line = (
            f"{e.phase} {e.item}: {item_pct:3.0f}% {human_size(item_rate)}/s ETA {_eta(e.item_total - e.item_done, item_rate)}"
            f" | overall {pct:3.0f}% {human_size(e.done)}/{human_size(e.total)} {human_size(rate)}/s"
            f" ETA {_eta(e.total - e.done, rate)}{self._network(e)}"
        ) + damage_note(e)
        if self.tty:
            self.stream.write("\r\x1b[K" + self.prefix + line)
            self._line_open = True
        else:
            self.stream.write(self.prefix + line + "\n")
        self.stream.flush()

    def _network(self, e: Progress) -> str:
        """' | network in 11.2 MiB/s out 0 B/s' (the rates since the first event), or '' while no network
        repository has moved a byte."""
        start, received, sent = self._net_base
        if e.net_received == received and e.net_sent == sent:
            return ""
        seconds = max(e.at - start, 1e-6)
        return (f" | network in {human_size((e.net_received - received) / seconds)}/s"
                f" out {human_size((e.net_sent - sent) / seconds)}/s")

    def _print(self, text: str) -> None:
        if self._line_open:
            self.stream.write("\r\x1b[K")
            self._line_open = False
        self.stream.write(self.prefix + text + "\n")
        self.stream.flush()

    def close(self) -> None:
        """End the status line; after a job with a network repository, say what went over the network (the
        last events of a capture come before its last chunks are sent)."""
        if self._line_open:
            self.stream.write("\n")
            self._line_open = False
        start, received, sent = self._net_base
        now = traffic.totals()
        received, sent = now.received - received, now.sent - sent
        if received or sent:
            seconds = max(time.monotonic() - start, 1e-6)
            self._print(f"network: {human_size(received)} received, {human_size(sent)} sent, "
                        f"{human_size((received + sent) / seconds)}/s on average")
