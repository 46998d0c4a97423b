import io

from lifeboat.events import LogLine, Progress, StepFinished, StepStarted
from lifeboat.terminal import ConsoleProgress, damage_note


def test_plain_log_lines_when_not_a_terminal():
    out = io.StringIO()
    sink = ConsoleProgress(out, interval=0)
    sink(StepStarted("partition 2 (ext4)", "used-blocks"))
    sink(Progress("capture", "partition 2 (ext4)", 50, 100, 150, 300, at=0))
    sink(StepFinished("partition 2 (ext4)", "done", "100 bytes"))
    sink(LogLine("disk full", "error"))
    lines = out.getvalue().splitlines()
    assert lines[0] == "» partition 2 (ext4): used-blocks"
    assert "partition 2 (ext4):  50%" in lines[1] and "overall  50%" in lines[1] and "ETA" in lines[1]
    assert "\r" not in out.getvalue()
    assert lines[-1] == "! disk full"


def test_progress_is_rate_limited():
    out = io.StringIO()
    sink = ConsoleProgress(out, interval=3600)
    for i in range(1, 101):
        sink(Progress("restore", "p1", i, 100, i, 100))
    lines = out.getvalue().splitlines()
    assert len(lines) == 2  # the first event, then nothing until the final 100% line
    assert "  1%" in lines[0] and "100%" in lines[1]


def test_a_rescue_capture_shows_read_errors_and_bytes_to_retry():
    out = io.StringIO()
    sink = ConsoleProgress(out, interval=3600)
    sink(Progress("capture", "partition 1 (ext4)", 10, 100, 10, 300))
    sink(Progress("capture", "partition 1 (ext4)", 60, 100, 60, 300, read_errors=3, to_retry=3 << 20))
    sink(Progress("capture", "partition 1 (ext4)", 100, 100, 100, 300, read_errors=5))
    sink(Progress("capture", "partition 2 (ext4)", 200, 200, 300, 300))
    lines = out.getvalue().splitlines()
    assert len(lines) == 3  # the first event, then each partition's last one; the middle one is rate-limited
    assert "read error" not in lines[0] and lines[1].endswith(" | 5 read errors") and "read error" not in lines[2]
    assert damage_note(Progress("capture", "p", 1, 2, 1, 2, read_errors=1, to_retry=1536)) == (
        " | 1 read error, 1.5 KiB to retry")
