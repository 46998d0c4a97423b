"""A capture's start-up imports only what a capture uses: every module is read (cold, from the stick) before the
first chunk, and cryptography, bootfix's detection and the TUI together took 0.2-0.3 s of a cold start."""

import subprocess
import sys

HEAVY = ("cryptography", "bcrypt", "paramiko", "boto3", "botocore", "textual", "lifeboat.boot", "lifeboat.unattended",
         "lifeboat.tui", "lifeboat.foreign", "lifeboat.imagefs")

# what `lifeboat capture SOURCE NAME --repo DIR` imports before its first chunk (cli.cmd_capture and what it calls)
SCRIPT = """
import sys
from lifeboat import cli
args = cli.build_parser(["capture", "/dev/sdx", "name", "--repo", "/tmp/r"]).parse_args(
    ["capture", "/dev/sdx", "name", "--repo", "/tmp/r"])
assert args.func is cli.cmd_capture
import lifeboat.engine.capture, lifeboat.engine.luks_capture, lifeboat.repo.command, lifeboat.repo.location
import lifeboat.repo.local, lifeboat.terminal, lifeboat.health
print("\\n".join(sorted(sys.modules)))
"""


def test_the_capture_path_imports_no_heavy_module():
    loaded = subprocess.run([sys.executable, "-c", SCRIPT], check=True, capture_output=True, text=True).stdout.split()
    assert "lifeboat.engine.capture" in loaded and "zstandard" in loaded
    assert [m for m in loaded if m.startswith(HEAVY)] == []


def test_other_commands_and_help_still_get_every_command():
    from lifeboat import cli

    for argv in (None, [], ["--help"], ["bootfix", "/dev/sdx"], ["-v", "import", "dir", "name"]):
        parser = cli.build_parser(argv)
        commands = parser._subparsers._group_actions[0].choices
        assert {"capture", "bootfix", "unattended", "init", "mount", "import"} <= set(commands)
    assert "bootfix" not in cli.build_parser(["capture", "/dev/sdx", "n"])._subparsers._group_actions[0].choices
