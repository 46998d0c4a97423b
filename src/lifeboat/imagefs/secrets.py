"""What `lifeboat mount` hands its FUSE daemon through a pipe, never through argv, the environment or
a file: an encrypted repository's unlocked key and a network repository's credentials (from
`--credentials FILE`, a prompt or the environment), so the daemon asks nothing and opens the same
repository the command did."""

from __future__ import annotations

import dataclasses
import json
import os

from lifeboat.repo.credentials import Credentials
from lifeboat.repo.crypto import MasterKey


@dataclasses.dataclass(frozen=True)
class DaemonSecrets:
    master_key: bytes | None = dataclasses.field(default=None, repr=False)
    credentials: Credentials | None = None

    def encode(self) -> bytes:
        creds = dataclasses.asdict(self.credentials) if self.credentials is not None else None
        key = self.master_key.hex() if self.master_key is not None else None
        return json.dumps({"master_key": key, "credentials": creds}).encode()

    @classmethod
    def decode(cls, raw: bytes) -> DaemonSecrets:
        data = json.loads(raw)
        creds = data["credentials"]
        key = data["master_key"]
        return cls(bytes.fromhex(key) if key is not None else None,
                   Credentials(**creds) if creds is not None else None)

    def key(self) -> MasterKey | None:
        return MasterKey(self.master_key) if self.master_key is not None else None


def write_pipe(secrets: DaemonSecrets) -> int:
    """A pipe holding the encoded secrets, its write end closed; returns the read end (the caller closes it)."""
    read_end, write_end = os.pipe()
    try:
        data = secrets.encode()  # well under a pipe's 64 KiB buffer: writing never blocks
        while data:
            data = data[os.write(write_end, data):]
    except BaseException:
        os.close(read_end)
        raise
    finally:
        os.close(write_end)
    return read_end


def read_pipe(fd: int) -> DaemonSecrets:
    """The secrets from the pipe `fd`, read to its end and closed."""
    chunks = []
    with os.fdopen(fd, "rb") as pipe:
        while chunk := pipe.read(4096):
            chunks.append(chunk)
    return DaemonSecrets.decode(b"".join(chunks))
