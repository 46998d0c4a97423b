"""s3:// repositories on any S3-compatible service, with boto3 (AWS's own SDK, in Debian as python3-boto3).

- Endpoint, region and keys the standard way: AWS_ENDPOINT_URL (any S3-compatible service: MinIO, Ceph RGW,
  Garage, rclone), AWS_REGION, AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE and ~/.aws/credentials
  (boto3 reads them itself), or the keys in a Lifeboat credentials file.
- One object per chunk; one client shared by all threads (boto3 clients are thread-safe) with a connection
  pool as large as the capture's and restore's worker pools, so transfers run in parallel.
- A PUT is atomic: an object is whole or absent. sync() has nothing to do (a PUT returns once stored).
- Timeouts: 10 s to connect, 30 s per read; botocore's standard retries (3 attempts, with back-off) then
  BackendUnavailable.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import boto3
import botocore.config
import botocore.exceptions

from lifeboat import traffic
from lifeboat.errors import RepositoryError
from lifeboat.repo.backend import ObjectLocks, ObjectMissing, retrying
from lifeboat.repo.credentials import Credentials
from lifeboat.repo.location import Location

POOL = 32
_NETWORK = (botocore.exceptions.EndpointConnectionError, botocore.exceptions.ConnectionClosedError,
            botocore.exceptions.ReadTimeoutError, botocore.exceptions.ConnectTimeoutError,
            botocore.exceptions.ResponseStreamingError, ConnectionError)


class S3Backend:
    read_only = False
    can_list = True

    def __init__(self, location: Location, creds: Credentials):
        self.url, self.creds = location.display(), creds  # kept: `lifeboat mount` hands them to its daemon
        self.bucket = location.host
        self.prefix = f"{location.path}/" if location.path and location.path != "/" else ""
        config = botocore.config.Config(max_pool_connections=POOL, connect_timeout=10, read_timeout=30,
                                        retries={"max_attempts": 3, "mode": "standard"},
                                        s3={"addressing_style": "path"})
        keys = {}
        if creds.access_key:
            keys = {"aws_access_key_id": creds.access_key, "aws_secret_access_key": creds.secret_key,
                    "aws_session_token": creds.token or None}
        # read here too: Debian 12's boto3 (1.26) predates AWS_ENDPOINT_URL and AWS_REGION
        endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or None
        region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or None
        self.client = boto3.session.Session().client("s3", config=config, endpoint_url=endpoint, region_name=region,
                                                     **keys)
        self._locks = ObjectLocks(self)
        try:
            self._call("opening the bucket", self.client.head_bucket, Bucket=self.bucket)
        except ObjectMissing:
            raise RepositoryError(f"{self.url}: there is no bucket {self.bucket!r} at this endpoint") from None

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
            return self.client.get_object(Bucket=self.bucket, Key=self._key(name))["Body"].read()
        data = self._call(f"reading {name}", get)
        traffic.count_received(len(data))
        return data

    def write(self, name: str, data: bytes, *, durable: bool = False) -> None:
        self._call(f"writing {name}", self.client.put_object, Bucket=self.bucket, Key=self._key(name), Body=bytes(data))
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
        self.client.close()
