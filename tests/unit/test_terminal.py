import io

from lifeboat.events import LogLine, Progress, StepFinished, StepStarted
from lifeboat.terminal import ConsoleProgress


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
