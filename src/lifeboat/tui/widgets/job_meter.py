"""The numbers of a running job: bars, disk and network rates, ETA, elapsed and a throughput sparkline."""

from __future__ import annotations

import time
from collections import deque

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widget import Widget
from textual.widgets import Label, ProgressBar, Sparkline, Static

from lifeboat import traffic
from lifeboat.devices import human_size
from lifeboat.events import Progress
from lifeboat.terminal import damage_note
from lifeboat.tui.widgets.text import duration, rate

clock = time.monotonic  # (tests set their own)
RATE_WINDOW = 5.0  # seconds of samples the rate is averaged over
SPARK_POINTS = 60


class ItemBar(Horizontal):
    """One partition's bar."""

    def __init__(self, item: str) -> None:
        super().__init__(classes="item-row")
        self.item = item
        self.values = (0, 1)

    def compose(self) -> ComposeResult:
        yield Label(self.item[:19], classes="item-name")
        yield ProgressBar(total=1, show_eta=False, classes="item-bar")
        yield Label("", classes="item-size")

    def on_mount(self) -> None:
        self.show(*self.values)

    def show(self, done: int, total: int) -> None:
        self.values = (done, total)
        bars = self.query(ProgressBar)
        if not bars:  # not composed yet: on_mount shows the latest values
            return
        bars.first().update(total=max(total, 1), progress=done)
        self.query_one(".item-size", Label).update(f"{human_size(done)} / {human_size(total)}")


class JobMeter(Vertical):
    """Fed with Progress events and a once-a-second tick; computes rate and ETA itself. The network rate
    (bytes to and from a network repository, Progress.net_received/net_sent) is shown beside the disk rate
    once a network repository has moved a byte."""

    def __init__(self) -> None:
        super().__init__(id="meter")
        self.started = clock()
        self.samples: deque[tuple[float, int]] = deque([(self.started, 0)])
        # the process's network counts when the job started (its first event comes after its first chunks moved)
        self.net_start = (traffic.received(), traffic.sent())
        self.net = self.net_start  # the last event's (received, sent)
        self.net_samples: deque[tuple[float, int, int]] = deque([(self.started, *self.net_start)])
        self.history: deque[float] = deque(maxlen=SPARK_POINTS)
        self.done = 0
        self.total = 0
        self.bars: dict[str, ItemBar] = {}
        self.damage = ""  # a rescue capture's read errors and bytes still to retry

    def compose(self) -> ComposeResult:
        with Horizontal(classes="overall-row"):
            yield Label("Overall", classes="item-name")
            yield ProgressBar(total=None, show_eta=False, id="overall")
        yield Static("", id="numbers")
        yield Sparkline([], id="throughput")
        yield VerticalScroll(id="items")

    def reset(self) -> None:
        """A new phase (capture → verify): start the bars and the rate again, keep the clock."""
        self.samples = deque([(clock(), 0)])
        self.done = self.total = 0
        self.query_one("#overall", ProgressBar).update(total=None, progress=0)
        for bar in self.bars.values():
            bar.remove()
        self.bars.clear()

    def feed(self, event: Progress) -> None:
        self.done, self.total = event.done, event.total
        self.damage = damage_note(event)
        self.net = (event.net_received, event.net_sent)
        self.query_one("#overall", ProgressBar).update(total=max(event.total, 1), progress=event.done)
        if event.item_total == event.total and not self.bars:
            return  # the item is the whole job (verify counts its items in job totals): the overall bar says it all
        bar = self.bars.get(event.item)
        if bar is None:
            bar = self.bars[event.item] = ItemBar(event.item)
            self.query_one("#items", VerticalScroll).mount(bar)
        bar.show(event.item_done, event.item_total)

    def tick(self) -> None:
        now = clock()
        self.samples.append((now, self.done))
        while len(self.samples) > 1 and now - self.samples[0][0] > RATE_WINDOW:
            self.samples.popleft()
        # the process's counters now, not the last event's: the backends count bytes as they arrive, while
        # events come only when a chunk is done (seconds apart on a slow link)
        self.net = (max(self.net[0], traffic.received()), max(self.net[1], traffic.sent()))
        self.net_samples.append((now, *self.net))
        while len(self.net_samples) > 1 and now - self.net_samples[0][0] > RATE_WINDOW:
            self.net_samples.popleft()
        speed = self.current_rate()
        self.history.append(speed)
        # an all-zero history would draw as a full bar: show nothing until bytes move
        self.query_one("#throughput", Sparkline).data = list(self.history) if max(self.history) > 0 else []
        self.query_one("#numbers", Static).update(self.numbers_line(now, speed, self.network_rates()))

    def current_rate(self) -> float:
        if len(self.samples) < 2:
            return 0.0
        (t0, d0), (t1, d1) = self.samples[0], self.samples[-1]
        return (d1 - d0) / (t1 - t0) if t1 > t0 else 0.0

    def network_rates(self) -> tuple[float, float] | None:
        """(received, sent) bytes per second over the last RATE_WINDOW seconds; None while no network
        repository has moved a byte since the job started (a local job shows no network figures)."""
        if len(self.net_samples) < 2 or self.net == self.net_start:
            return None
        (t0, r0, s0), (t1, r1, s1) = self.net_samples[0], self.net_samples[-1]
        return ((r1 - r0) / (t1 - t0), (s1 - s0) / (t1 - t0)) if t1 > t0 else (0.0, 0.0)

    def numbers_line(self, now: float, speed: float, network: tuple[float, float] | None = None) -> str:
        elapsed = f"elapsed {duration(now - self.started)}"
        net = "" if network is None else f"network ↓ {rate(network[0])} ↑ {rate(network[1])}"
        if not self.total:  # no chunk done yet (seconds on a slow link): the bytes arriving are shown already
            return f"{elapsed}    starting…" + (f"    {net}" if net else "")
        left = self.total - self.done
        eta = duration(left / speed) if speed > 0 else "--:--:--"
        speeds = rate(speed) if network is None else f"disk {rate(speed)}    {net}"
        return (
            f"{human_size(self.done)} of {human_size(self.total)}    {speeds}    "
            f"ETA {eta}    {elapsed}"
        ) + self.damage
