"""s3:// repositories on any S3-compatible service, with boto3 (AWS's own SDK, in Debian as python3-boto3).

- Endpoint, region and keys the standard way: AWS_ENDPOINT_URL (any S3-compatible service: MinIO, Ceph RGW,
  Garage, rclone), AWS_REGION, AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE and ~/.aws/credentials
  (boto3 reads them itself), or the keys in a Lifeboat credentials file.
- One object per chunk; one client shared by all threads (boto3 clients are thread-safe) with a connection
  pool as large as the capture's and restore's worker pools, so transfers run in parallel.
- A PUT is atomic: an object is whole or absent. sync() has nothing to do (a PUT returns once stored).
- Timeouts: 10 s to connect, 30 s per read; botocore's standard retries (3 attempts, with back-off) then
  BackendUnavailable.
- A chunk's PUT carries it as it is, in one send: no SHA-256 of the body for the signature (UNSIGNED-PAYLOAD:
  the headers are still signed), no Content-MD5, and no `Expect: 100-continue` round trip with the body
  sent 8 KiB at a time from a BytesIO, which is what botocore does by default with a bytes body. Every
  object is checked where it matters, on read: a chunk against its id (and, encrypted, its AES-GCM tag), a
  manifest against its checksum or tag; a body altered on the way is caught there, as one altered at rest.
  Measured against `rclone serve s3` on 127.0.0.1, 8 threads, 1.3 MB objects (a compressed 4 MiB chunk):
  the client's CPU per GB put fell from 3.5 to 1.3 s (MD5 1.6 s, SHA-256 0.5 s, small sends the rest).
- Chunks' GETs and PUTs (and any object's) are sent by s3wire.Wire, without boto3's per-call work (1.2 -> 0.5 s
  per GB); anything but a success, and every other operation (HEAD, LIST, DELETE), goes through boto3.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import boto3
import botocore.config
import botocore.exceptions
import botocore.handlers
import botocore.session
import botocore.utils

from lifeboat import traffic
from lifeboat.errors import RepositoryError
from lifeboat.repo.backend import ObjectLocks, ObjectMissing, retrying
from lifeboat.repo.credentials import Credentials
from lifeboat.repo.location import Location
from lifeboat.repo.s3wire import NETWORK_ERRORS, Wire

POOL = 32
# A capture's or restore's workers: each waits for its PUT or GET to be answered, so more of them than the
# cores (the pipeline's default) keep more transfers in flight while the others compress or decompress.
TRANSFER_WORKERS = 16
_NETWORK = (botocore.exceptions.EndpointConnectionError, botocore.exceptions.ConnectionClosedError,
            botocore.exceptions.ReadTimeoutError, botocore.exceptions.ConnectTimeoutError,
            botocore.exceptions.ResponseStreamingError, *NETWORK_ERRORS)


# botocore >= 1.36 adds a CRC32 of every body by default; only when the operation requires one here
_ONLY_REQUIRED_CHECKSUMS = ({"request_checksum_calculation": "when_required"}
                            if "request_checksum_calculation" in botocore.config.Config.OPTION_DEFAULTS else {})


def _plain_puts(client) -> None:
    """PutObject sends its bytes-like body as it is (see the module's docstring): botocore's handlers that
    compute a Content-MD5 and turn a bytes body into a BytesIO (hence `Expect: 100-continue` and 8 KiB sends)
    are taken off this client's PutObject; other operations and clients keep them."""
    for event, module, name in (("before-parameter-build.s3.PutObject", botocore.handlers, "convert_body_to_file_like_object"),
                                ("before-call.s3.PutObject", botocore.utils, "conditionally_calculate_md5")):
        handler = getattr(module, name, None)  # newer botocore may have renamed or dropped it: nothing to take off
        if handler is not None:
            client.meta.events.unregister(event, handler)


class S3Backend:
    read_only = False
    can_list = True
    transfer_workers = TRANSFER_WORKERS

    def __init__(self, location: Location, creds: Credentials):
        self.url, self.creds = location.display(), creds  # kept: `lifeboat mount` hands them to its daemon
        self.bucket = location.host
        self.prefix = f"{location.path}/" if location.path and location.path != "/" else ""
        config = botocore.config.Config(max_pool_connections=POOL, connect_timeout=10, read_timeout=30,
                                        retries={"max_attempts": 3, "mode": "standard"},
                                        s3={"addressing_style": "path", "payload_signing_enabled": False},
                                        **_ONLY_REQUIRED_CHECKSUMS)
        keys = {}
        if creds.access_key:
            keys = {"aws_access_key_id": creds.access_key, "aws_secret_access_key": creds.secret_key,
                    "aws_session_token": creds.token or None}
        # read here too: Debian 12's boto3 (1.26) predates AWS_ENDPOINT_URL and AWS_REGION
        endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or None
        region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or None
        core = botocore.session.Session()
        session = boto3.session.Session(botocore_session=core, **keys)
        self.client = session.client("s3", config=config, endpoint_url=endpoint, region_name=region)
        _plain_puts(self.client)
        self._locks = ObjectLocks(self)
        self._wire: Wire | None = None
        try:
            self._call("opening the bucket", self.client.head_bucket, Bucket=self.bucket)
        except ObjectMissing:
            raise RepositoryError(f"{self.url}: there is no bucket {self.bucket!r} at this endpoint") from None
        # chunks' GETs and PUTs (s3wire.py); the credentials are those the call above was signed with
        verify = core.get_config_variable("ca_bundle") or os.environ.get("REQUESTS_CA_BUNDLE", True)
        self._wire = Wire.for_client(self.client, session.get_credentials(), self.bucket, verify=verify,
                                     connect_timeout=10, read_timeout=30)

    def _call(self, what: str, fn, **kwargs):
        """fn(**kwargs); a dropped connection (also mid-body, which botocore does not retry) is retried with
        back-off, about 4 s in all, then BackendUnavailable."""
        try:
            return retrying(f"{self.url}: {what}", lambda: fn(**kwargs), _NETWORK)
        except botocore.exceptions.ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in ("NoSuchKey", "404", "NotFound"):
                raise ObjectMissing(f"{self.url}: {what}: no such object") from None
            raise RepositoryError(f"{self.url}: {what}: {code or exc}") from None
        except botocore.exceptions.NoCredentialsError:
            raise RepositoryError(f"{self.url}: no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
                                  "AWS_PROFILE, or use a credentials file") from None

    def _key(self, name: str) -> str:
        return self.prefix + name

    def read(self, name: str) -> bytes:
        def get():
            data = self._wire.get(self._key(name)) if self._wire is not None else None
            if data is None:  # no wire, or not a 200: boto3 makes the request and reads its errors
                data = self.client.get_object(Bucket=self.bucket, Key=self._key(name))["Body"].read()
            return data
        data = self._call(f"reading {name}", get)
        traffic.count_received(len(data))
        return data

    def write(self, name: str, data: bytes, *, durable: bool = False) -> None:
        def put():
            if self._wire is None or not self._wire.put(self._key(name), data):
                self.client.put_object(Bucket=self.bucket, Key=self._key(name),
                                       Body=data if isinstance(data, (bytes, bytearray)) else bytes(data))
        self._call(f"writing {name}", put)
        traffic.count_sent(len(data))

    def exists(self, name: str) -> bool:
        return self.size(name) is not None

    def size(self, name: str) -> int | None:
        try:
            return self._call(f"looking at {name}", self.client.head_object, Bucket=self.bucket,
                              Key=self._key(name))["ContentLength"]
        except ObjectMissing:
            return None

    def list(self, prefix: str) -> Iterator[tuple[str, int]]:
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self._key(prefix))
        out = []
        for page in self._call(f"listing {prefix or '/'}", lambda: list(pages)):
            out.extend((o["Key"][len(self.prefix):], o["Size"]) for o in page.get("Contents", []))
        return iter(out)

    def delete(self, name: str) -> None:
        self._call(f"deleting {name}", self.client.delete_object, Bucket=self.bucket, Key=self._key(name))

    def lock(self, scope: str, exclusive: bool):
        return self._locks.hold(scope, exclusive)

    def sync(self) -> None:
        pass

    def free_bytes(self) -> int | None:
        return None

    def clean_partial(self) -> None:
        pass  # a PUT leaves nothing partial behind

    def close(self) -> None:
        if self._wire is not None:
            self._wire.close()
        self.client.close()
