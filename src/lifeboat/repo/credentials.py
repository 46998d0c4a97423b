"""Secrets for network repositories and passphrases for encrypted ones.

Where they come from, first found wins:
- a credentials file named by `--credentials FILE` or LIFEBOAT_CREDENTIALS_FILE: `key = value` lines
  (username, password, domain; for S3 aws_access_key_id, aws_secret_access_key, aws_session_token; for SSH
  identity_file, a private key file, relative to the credentials file's directory), the format mount.cifs reads. It must be owned by the user and not readable by group or others (mode 0600 or
  stricter), else it is refused;
- the standard variables: SSHPASS for ssh://, USER/PASSWD for smb:// (as mount.cifs), AWS_* for s3://
  (read by boto3 itself, with ~/.aws/credentials and AWS_PROFILE);
- an interactive prompt, only when a terminal is there and the server asks.
Passphrases: `--passphrase-file FILE`, LIFEBOAT_PASSPHRASE_FILE naming such a file (same mode check; its
first line), or a prompt. Never a plain command-line argument: argv is visible to every user in `ps`.
Nothing here is logged; Credentials' repr hides the secrets.
"""

from __future__ import annotations

import getpass
import os
import stat
import sys
from dataclasses import dataclass, field
from pathlib import Path

from lifeboat.errors import LifeboatError, RepositoryError

_KEYS = {"username": "user", "user": "user", "password": "password", "pass": "password", "domain": "domain",
         "aws_access_key_id": "access_key", "aws_secret_access_key": "secret_key", "aws_session_token": "token",
         "identity_file": "key_file", "identityfile": "key_file"}


class CredentialsError(RepositoryError):
    exit_code = 2


@dataclass(frozen=True)
class Credentials:
    user: str = ""
    password: str = field(default="", repr=False)
    domain: str = ""
    access_key: str = ""
    secret_key: str = field(default="", repr=False)
    token: str = field(default="", repr=False)
    key_file: str = ""  # ssh: a private key file to try before the usual ones
    source: str = ""  # where they came from, for messages ("file /root/nas.cred", "environment", "prompt")


def check_private(path: Path, what: str) -> None:
    """Refuse a secrets file that others can read or that another user owns."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise CredentialsError(f"{what} {path} does not exist") from None
    if not stat.S_ISREG(st.st_mode):
        raise CredentialsError(f"{what} {path} is not a regular file")
    if st.st_mode & 0o077:
        raise CredentialsError(f"{what} {path} can be read by others (mode {stat.S_IMODE(st.st_mode):04o}): "
                               f"run `chmod 600 {path}` first")
    if st.st_uid != os.getuid():
        raise CredentialsError(f"{what} {path} belongs to another user (uid {st.st_uid})")


def read_credentials_file(path: str | os.PathLike) -> Credentials:
    path = Path(path)
    check_private(path, "credentials file")
    values: dict[str, str] = {}
    for n, line in enumerate(path.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep or key.strip().lower() not in _KEYS:
            raise CredentialsError(f"credentials file {path}, line {n}: expected one of "
                                   f"{', '.join(sorted(_KEYS))} = value")
        values[_KEYS[key.strip().lower()]] = value.strip()
    if values.get("key_file"):
        key_file = path.parent / values["key_file"]  # an absolute path stays as it is
        check_private(key_file, f"identity_file of {path}:")
        values["key_file"] = str(key_file)
    return Credentials(**values, source=f"file {path}")


def credentials_for(location, file: str | os.PathLike | None = None) -> Credentials:
    """Credentials for a Location from a file or the standard variables (no prompt: that comes when needed)."""
    from lifeboat.repo.location import Scheme

    file = file or os.environ.get("LIFEBOAT_CREDENTIALS_FILE")
    if file:
        return read_credentials_file(file)
    env = os.environ
    if location.scheme is Scheme.SSH and env.get("SSHPASS"):
        return Credentials(user=location.user, password=env["SSHPASS"], source="environment (SSHPASS)")
    if location.scheme is Scheme.SMB and env.get("PASSWD"):
        return Credentials(user=location.user or env.get("USER", ""), password=env["PASSWD"],
                           source="environment (PASSWD)")
    return Credentials(user=location.user)


_no_prompt = ""  # why the terminal must not be asked (the TUI owns it), "" when it may


def forbid_prompts(reason: str) -> None:
    """From now on prompt_password raises and confirm_host_key says no: `reason` names where to give them."""
    global _no_prompt
    _no_prompt = reason


def prompt_password(what: str) -> str:
    """A password typed at the terminal (not echoed), or CredentialsError when there is none."""
    if _no_prompt:
        raise CredentialsError(f"{what} is needed: {_no_prompt}")
    if not sys.stdin.isatty():
        raise CredentialsError(f"{what} is needed and there is no terminal to ask on: use a credentials file "
                               "(LIFEBOAT_CREDENTIALS_FILE, mode 0600) or the standard environment variables")
    return getpass.getpass(f"{what}: ")


def read_passphrase_file(path: str | os.PathLike) -> str:
    path = Path(path)
    check_private(path, "passphrase file")
    lines = path.read_text().splitlines()
    if not lines or not lines[0]:
        raise CredentialsError(f"passphrase file {path} is empty")
    return lines[0]


def ask_passphrase(what: str, *, file: str | os.PathLike | None = None, confirm: bool = False) -> str:
    """The passphrase from `file`, LIFEBOAT_PASSPHRASE_FILE, or the terminal (twice when `confirm`)."""
    file = file or os.environ.get("LIFEBOAT_PASSPHRASE_FILE")
    if file:
        return read_passphrase_file(file)
    phrase = prompt_password(what)
    if confirm and getpass.getpass("again, to be sure: ") != phrase:
        raise LifeboatError("the two passphrases differ; nothing was changed")
    return phrase


def confirm_host_key(host: str, fingerprint: str) -> bool:
    """Ask at the terminal whether to trust an SSH host key seen for the first time (no terminal: no)."""
    if _no_prompt or not sys.stdin.isatty():
        return False
    print(f"The host key of {host} is not known yet. Its fingerprint is {fingerprint}.\n"
          "Compare it with the one the server's owner gives you.", file=sys.stderr)
    return input("Trust it and remember it? [y/N] ").strip().lower() in ("y", "yes")
