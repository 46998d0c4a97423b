"""Options several commands share, defined once as argparse parent parsers (cli.py and boot/command.py)."""

from __future__ import annotations

import argparse


def repo_option() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("--repo", metavar="DIR",
                        help="the image repository (default: $LIFEBOAT_REPO, then `repo` in the config file)")
    return parent


def json_option() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    return parent
