"""`lifeboat bootfix DISK [--yes] [--json]`: registered by cli.py through add_subcommand()."""

from __future__ import annotations

import argparse
import json
import os
import sys

from lifeboat.boot.fix import bootfix, exit_code
from lifeboat.boot.model import NEEDS_PASSPHRASE, overall
from lifeboat.errors import LifeboatError
from lifeboat.options import json_option, luks_option
from lifeboat.terminal import ConsoleProgress
from lifeboat.volumes.luks import read_key_file

MARK = {"done": "ok", "not-needed": "--", "needs-passphrase": "??", "failed": "!!"}
EPILOG = ("Exit status: 0 when no step failed, 1 when one did, 2 when refused. A LUKS container left locked for want "
          "of --luks-passphrase-file is not a failure (the disk's other systems are still fixed): its step and the "
          "result say needs-passphrase (with --json: \"outcome\": \"needs-passphrase\" and the partitions in "
          "\"needs_passphrase\"), and the exit status is 0 when nothing else failed.")


def add_subcommand(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "bootfix", parents=[json_option(), luks_option()], epilog=EPILOG,
        help="reinstall the bootloader(s) of the systems installed on DISK",
        description="Find the installed systems on DISK (GRUB-booted Linux, Windows boot manager), reinstall "
                    "GRUB for every firmware they were set up for, write the removable UEFI fallback and, "
                    "under UEFI, the firmware boot entry. Each step is reported done / not-needed / failed.")
    p.add_argument("disk", metavar="DISK", help="the whole disk, e.g. /dev/nvme0n1")
    p.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    p.set_defaults(func=run_command)
    return p


def _confirm(disk: str) -> bool | None:
    if not sys.stdin.isatty():
        return None
    name = os.path.basename(disk)
    answer = input(f"bootfix writes boot code to {disk} and loader files to its ESP.\n"
                   f"Type the disk's name ({name}) to go on: ")
    return answer.strip() in (disk, name)


def run_command(args: argparse.Namespace) -> int:
    if not args.yes:
        ok = _confirm(args.disk)
        if ok is None:
            print("lifeboat: bootfix: no terminal to confirm on; pass --yes", file=sys.stderr)
            return 2
        if not ok:
            print("lifeboat: bootfix: not confirmed; nothing written", file=sys.stderr)
            return 1
    try:
        key = read_key_file(args.luks_passphrase_file) if args.luks_passphrase_file else None
        outcomes = bootfix(args.disk, ConsoleProgress(sys.stderr, prefix="[bootfix] "), key)
    except LifeboatError as err:
        print(f"lifeboat: bootfix: {err}", file=sys.stderr)
        return err.exit_code
    code = exit_code(outcomes)
    locked = [o.step.removeprefix("unlock ") for o in outcomes
              if o.outcome == NEEDS_PASSPHRASE and o.step.startswith("unlock ")]
    if args.json:
        print(json.dumps({"disk": args.disk, "ok": code == 0, "outcome": overall(outcomes), "needs_passphrase": locked,
                          "steps": [o.to_dict() for o in outcomes]}, indent=2))
    else:
        for o in outcomes:
            print(f"{MARK.get(o.outcome, o.outcome)} {o}")
        print("bootfix: " + _summary(code, locked))
    return code


def _summary(code: int, locked: list[str]) -> str:
    if code:
        return "some steps FAILED (see above)"
    if locked:
        return (f"nothing failed, but the LUKS container(s) {', '.join(locked)} need the passphrase: run again with "
                "--luks-passphrase-file FILE")
    return "every step done or not needed"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lifeboat")
    add_subcommand(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)
