"""Options several commands share, defined once as argparse parent parsers (cli.py and boot/command.py)."""

from __future__ import annotations

import argparse


def repo_option(*, required: bool = False, secrets: bool = True) -> argparse.ArgumentParser:
    """--repo, and (unless secrets=False) how to open a network or encrypted one: --credentials, --passphrase-file."""
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("--repo", metavar="DIR|URL", required=required,
                        help="the image repository: a directory or ssh://, s3://, https://, smb://, nfs:// "
                             "(default: $LIFEBOAT_REPO, then `repo` in the config file)")
    if secrets:
        parent.add_argument("--credentials", metavar="FILE",
                            help="network credentials: key = value lines (username, password, domain, "
                                 "aws_access_key_id, aws_secret_access_key); mode 0600")
        parent.add_argument("--passphrase-file", metavar="FILE",
                            help="the encrypted repository's passphrase on the first line; mode 0600 "
                                 "(else LIFEBOAT_PASSPHRASE_FILE, else asked)")
    return parent


def luks_option() -> argparse.ArgumentParser:
    """--luks-passphrase-file: the passphrase of the disk's LUKS containers (not the repository's)."""
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("--luks-passphrase-file", metavar="FILE",
                        help="the LUKS containers' passphrase on the first line (mode 0600): capture opens them "
                             "read-only and images their contents by used blocks, restore re-creates and fills them")
    return parent


def json_option() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    return parent
