"""`lifeboat init` and `lifeboat key list|add|remove`, and how every command opens `--repo`
(with `--credentials FILE` and `--passphrase-file FILE`; never a secret as an argument)."""

from __future__ import annotations

import os
import sys

from lifeboat.errors import LifeboatError
from lifeboat.options import repo_option
from lifeboat.repo.credentials import ask_passphrase, read_credentials_file, read_passphrase_file

LOST_PASSPHRASE = ("Keep the passphrase safe: a lost passphrase cannot be recovered, and without it nothing in "
                   "this repository can be read. `lifeboat key add` adds a second one.")


def open_repository(location: str, args, create: bool = False):
    from lifeboat.repo.store import Repository

    creds = read_credentials_file(args.credentials) if getattr(args, "credentials", None) else None
    phrase_file = getattr(args, "passphrase_file", None)
    repo = Repository.open(location, create=create, credentials=creds,
                           passphrase=lambda what: ask_passphrase(what, file=phrase_file))
    expect_encrypted(repo, bool(phrase_file or os.environ.get("LIFEBOAT_PASSPHRASE_FILE")))
    backend = getattr(repo, "backend", None)
    if backend is not None and backend.url != str(repo.root):  # a mounted share: its URL and protocol version
        print(f"repository {backend.url} mounted at {repo.root}", file=sys.stderr)
    return repo


def expect_encrypted(repo, passphrase_given: bool) -> None:
    """A passphrase was given for a repository that turns out unencrypted: whoever holds the storage may have
    replaced an encrypted repository by a plain one of their making. Refuse rather than trust it."""
    if passphrase_given and not repo.encrypted:
        raise LifeboatError(f"{repo.root} is not encrypted, yet a passphrase was given for it: refusing to use it "
                            "(an encrypted repository replaced by a plain one would look like this); "
                            "unset LIFEBOAT_PASSPHRASE_FILE / drop --passphrase-file if it was never encrypted")


def _location(args) -> str:
    from lifeboat.config import default_repo

    location = default_repo(args.repo)
    if not location:
        raise LifeboatError("no repository given: use --repo DIR or URL, LIFEBOAT_REPO, or `repo` in the config file")
    return location


def cmd_init(args) -> int:
    from lifeboat.repo.location import open_backend
    from lifeboat.repo.store import Repository

    creds = read_credentials_file(args.credentials) if args.credentials else None
    backend = open_backend(_location(args), credentials=creds)
    phrase = None
    if args.encrypt:
        phrase = ask_passphrase(f"new passphrase for {backend.url}", file=args.passphrase_file, confirm=True)
    repo = Repository.initialize(backend, phrase)
    kind = "encrypted (AES-256-GCM, HMAC-SHA256 chunk ids, scrypt key slot)" if repo.encrypted else "unencrypted"
    print(f"Created an {kind} repository at {repo.root}")
    if repo.encrypted:
        print(LOST_PASSPHRASE)
    return 0


def cmd_key(args) -> int:
    repo = open_repository(_location(args), args)
    if args.action == "list":
        for slot in repo.key_slots():
            print(f"{slot.id}  scrypt n=2^{slot.log_n} r={slot.r} p={slot.p}")
        if not repo.encrypted:
            print(f"{repo.root} is not encrypted: it has no key slots", file=sys.stderr)
        return 0
    if args.action == "add":
        phrase = (read_passphrase_file(args.new_passphrase_file) if args.new_passphrase_file
                  else ask_passphrase("new passphrase", file=None, confirm=True))
        slot = repo.add_key(phrase)
        print(f"Added key slot {slot.id}: its passphrase opens {repo.root} too")
        return 0
    if not args.slot:
        raise LifeboatError("name the key slot to remove (see `lifeboat key list`)")
    repo.remove_key(args.slot)
    print(f"Removed key slot {args.slot}; its passphrase no longer opens {repo.root}")
    return 0


def add_subcommand(sub) -> None:
    p = sub.add_parser("init", help="create a repository (local directory or URL), optionally encrypted",
                       parents=[repo_option(required=True)])
    p.add_argument("--encrypt", action="store_true", help="encrypt and authenticate everything under a passphrase")
    p.set_defaults(func=cmd_init)

    p = sub.add_parser("key", help="list, add or remove an encrypted repository's passphrases (key slots)",
                       parents=[repo_option()])
    p.add_argument("action", choices=["list", "add", "remove"])
    p.add_argument("slot", nargs="?", help="the slot to remove")
    p.add_argument("--new-passphrase-file", metavar="FILE", help="the passphrase to add (mode 0600), else asked")
    p.set_defaults(func=cmd_key)
