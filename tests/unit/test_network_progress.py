"""Network throughput beside disk throughput: the backends count the bytes they move (traffic.py), every
Progress event carries the counts, the CLI's progress line and the TUI's job meter show their rates.
A local directory repository moves no network bytes, and neither front end shows network figures for it."""

from __future__ import annotations

import io

import pytest
from textual.app import App
from textual.widgets import Static

from lifeboat import traffic
from lifeboat.events import Progress
from lifeboat.repo.local import LocalBackend
from lifeboat.repo.mounts import negotiated_version
from lifeboat.terminal import ConsoleProgress
from lifeboat.tui.widgets.job_meter import JobMeter
from tui.tui_pilot import drive

MIB = 1 << 20


def test_progress_events_carry_the_network_counts_when_made():
    before = traffic.totals()
    traffic.count_received(3 * MIB)
    traffic.count_sent(1 * MIB)
    event = Progress("restore", "p1", 0, 1, 0, 1)
    assert (event.net_received - before.received, event.net_sent - before.sent) == (3 * MIB, 1 * MIB)


def test_a_mounted_share_counts_its_traffic_and_a_local_directory_does_not(tmp_path):
    share, local = LocalBackend(tmp_path / "share", network=True), LocalBackend(tmp_path / "local")
    for backend in (share, local):
        backend.prepare()
    before = traffic.totals()
    local.write("chunks/aa/x.zst", b"x" * 1000)
    local.read("chunks/aa/x.zst")
    assert traffic.totals() == before
    share.write("chunks/aa/x.zst", b"x" * 1000)
    share.read("chunks/aa/x.zst")
    share.read("chunks/aa/x.zst")
    after = traffic.totals()
    assert (after.sent - before.sent, after.received - before.received) == (1000, 2000)


class _Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _event(done: int, received: int, sent: int = 0, at: float = 0.0) -> Progress:
    return Progress("restore", "partition 1", done, 100 * MIB, done, 100 * MIB, at=at, net_received=received,
                    net_sent=sent)


def test_cli_progress_shows_the_network_rate_beside_the_disk_rate(monkeypatch):
    clock = _Clock()
    monkeypatch.setattr("lifeboat.terminal.time.monotonic", clock)
    out = io.StringIO()
    base = traffic.totals()  # what earlier jobs of the process fetched is not this job's rate
    sink = ConsoleProgress(out, interval=0)
    sink(_event(0, base.received, base.sent, at=clock.now))
    clock.now += 10
    sink(_event(40 * MIB, base.received + 20 * MIB, base.sent + 2 * MIB, at=clock.now))
    lines = out.getvalue().splitlines()
    assert "network" not in lines[0]
    assert "overall  40% 40.0 MiB/100.0 MiB 4.0 MiB/s" in lines[1]
    assert lines[1].endswith("| network in 2.0 MiB/s out 204.8 KiB/s")


def test_cli_progress_of_a_local_job_shows_no_network_figures(monkeypatch):
    clock = _Clock()
    monkeypatch.setattr("lifeboat.terminal.time.monotonic", clock)
    out = io.StringIO()
    sink = ConsoleProgress(out, interval=0)
    base = traffic.totals()
    for n in range(3):
        clock.now += 5
        sink(_event(n * 10 * MIB, base.received, base.sent, at=clock.now))
    assert "network" not in out.getvalue()


class _MeterApp(App):
    def compose(self):
        yield JobMeter()


@pytest.mark.parametrize("shown", [False, True])
@drive
async def test_tui_job_meter_shows_network_throughput_beside_disk_throughput(monkeypatch, shown):
    clock = _Clock()
    monkeypatch.setattr("lifeboat.tui.widgets.job_meter.clock", clock)
    base = traffic.totals()
    app = _MeterApp()
    async with app.run_test() as pilot:
        meter = app.query_one(JobMeter)
        for second in range(1, 7):
            clock.now += 1
            moved = (second * 6 * MIB, second * MIB // 2) if shown else (0, 0)
            meter.feed(_event(second * 8 * MIB, base.received + moved[0], base.sent + moved[1]))
            meter.tick()
        await pilot.pause()
        line = str(app.query_one("#numbers", Static).render())
    if shown:
        assert "disk 8.0 MiB/s    network ↓ 6.0 MiB/s ↑ 512.0 KiB/s" in line, line
    else:
        assert "network" not in line and "8.0 MiB/s" in line and "disk" not in line, line


@drive
async def test_tui_job_meter_shows_bytes_arriving_before_the_first_chunk_is_done(monkeypatch):
    """On a slow link the first 4 MiB chunk takes seconds: the backends count bytes as they arrive, and the
    meter reads those counts at every tick, so the rate moves before any Progress event."""
    clock = _Clock()
    monkeypatch.setattr("lifeboat.tui.widgets.job_meter.clock", clock)
    app = _MeterApp()
    async with app.run_test() as pilot:
        meter = app.query_one(JobMeter)
        for _ in range(4):
            clock.now += 1
            traffic.count_received(MIB)
            meter.tick()
        await pilot.pause()
        line = str(app.query_one("#numbers", Static).render())
    assert "starting…    network ↓ 1.0 MiB/s ↑ 0 B/s" in line, line


def test_the_negotiated_protocol_version_is_read_from_mountinfo(tmp_path):
    mountinfo = (
        "25 1 0:22 / /run rw,nosuid shared:5 - tmpfs tmpfs rw\n"
        "301 25 0:60 / /run/lifeboat/mnt/ab12 rw,nosuid,nodev,noexec,relatime shared:160 - cifs //10.0.2.2/share "
        "rw,vers=3.0,cache=strict,username=tech,uid=0,noforceuid,addr=10.0.2.2,file_mode=0600,port=44445\n"
        "302 25 0:61 / /run/lifeboat/mnt/cd34 rw,relatime - nfs4 10.0.2.2:/export/x rw,vers=4.1,rsize=1048576\n"
    )
    assert negotiated_version("/run/lifeboat/mnt/ab12", mountinfo) == "3.0"
    assert negotiated_version("/run/lifeboat/mnt/cd34", mountinfo) == "4.1"
    assert negotiated_version("/run/lifeboat/mnt/none", mountinfo) == ""


def test_a_directory_on_a_network_mount_counts_as_network_traffic():
    from lifeboat.repo.mounts import on_network_filesystem

    mountinfo = (
        "22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw\n"
        "25 22 0:22 / /run rw,nosuid shared:5 - tmpfs tmpfs rw\n"
        "301 25 0:60 / /run/lifeboat/mnt/ab12 rw,relatime shared:160 - cifs //10.0.2.2/share rw,vers=3.0\n"
        "302 22 0:61 / /mnt/nas rw,relatime - nfs4 nas:/export rw,vers=4.2\n"
        "303 302 8:1 / /mnt/nas/usb rw,relatime - ext4 /dev/sda1 rw\n"
    )
    assert on_network_filesystem("/run/lifeboat/mnt/ab12/lab", mountinfo)
    assert on_network_filesystem("/mnt/nas", mountinfo) and on_network_filesystem("/mnt/nas/images", mountinfo)
    assert not on_network_filesystem("/mnt/nas/usb/images", mountinfo)  # a local disk mounted below the share
    assert not on_network_filesystem("/run/lifeboat/mnt/ab", mountinfo)
    assert not on_network_filesystem("/srv/images", mountinfo)


def test_cli_progress_closes_with_what_went_over_the_network(monkeypatch):
    clock = _Clock()
    monkeypatch.setattr("lifeboat.terminal.time.monotonic", clock)
    out = io.StringIO()
    sink = ConsoleProgress(out, interval=0)
    traffic.count_sent(1 * MIB)  # before the first event: counted too
    sink(Progress("capture", "p1", 10 * MIB, 10 * MIB, 10 * MIB, 10 * MIB, at=clock.now))
    traffic.count_sent(3 * MIB)  # after the last event (the last chunks of a capture)
    traffic.count_received(MIB // 2)
    clock.now += 2
    sink.close()
    assert out.getvalue().splitlines()[-1] == "network: 512.0 KiB received, 4.0 MiB sent, 2.2 MiB/s on average"
    quiet = io.StringIO()
    local = ConsoleProgress(quiet, interval=0)
    local(Progress("capture", "p1", 1, 1, 1, 1))
    local.close()
    assert "network" not in quiet.getvalue()


@drive
async def test_tui_job_meter_shows_a_rescue_captures_read_errors_and_bytes_still_to_retry(monkeypatch):
    """Issue 13: the TUI's progress shows the error count and the bytes still to retry, as the CLI's line does."""
    clock = _Clock()
    monkeypatch.setattr("lifeboat.tui.widgets.job_meter.clock", clock)
    app = _MeterApp()
    async with app.run_test() as pilot:
        meter = app.query_one(JobMeter)
        clock.now += 1
        meter.feed(Progress("capture", "partition 1 (ext4)", 60 * MIB, 100 * MIB, 60 * MIB, 300 * MIB, read_errors=12,
                            to_retry=3 * MIB // 2))
        meter.tick()
        await pilot.pause()
        line = str(app.query_one("#numbers", Static).render())
        assert line.endswith(" | 12 read errors, 1.5 MiB to retry"), line
        clock.now += 1
        meter.feed(Progress("capture", "partition 2 (ext4)", MIB, 100 * MIB, 101 * MIB, 300 * MIB))
        meter.tick()
        await pilot.pause()
        assert "read error" not in str(app.query_one("#numbers", Static).render())  # a clean partition: no note
