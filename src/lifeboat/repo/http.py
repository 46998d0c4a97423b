"""http:// and https:// repositories: read-only, from any static web server (nginx, Apache, a NAS's).

Static servers do not list directories in a way we can rely on, so image names come from images/index.json,
which every Lifeboat writes beside the manifests. https:// checks the server's certificate against the system's
authorities (SSL_CERT_FILE / SSL_CERT_DIR name others, e.g. a shop's own CA). A user and password from the
credentials file become HTTP basic authentication (refused over plain http://).

Each thread keeps its own keep-alive connection, so the restore's workers fetch chunks in parallel; a dropped
connection is reopened and the request retried with back-off (about 4 s), then BackendUnavailable.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import ssl
import threading
from collections.abc import Iterator
from urllib.parse import quote

from lifeboat import traffic
from lifeboat.errors import RepositoryError
from lifeboat.repo.backend import ObjectMissing, ReadOnly, retrying
from lifeboat.repo.credentials import Credentials
from lifeboat.repo.location import Location, Scheme

TIMEOUT = 30.0
_NETWORK = (OSError, http.client.HTTPException)


class HttpBackend:
    read_only = True
    can_list = False
    transfer_workers = None

    def __init__(self, location: Location, creds: Credentials):
        self.location, self.creds = location, creds  # kept: `lifeboat mount` hands them to its daemon
        self.url = location.display()
        self.base = location.path.rstrip("/")
        self.https = location.scheme is Scheme.HTTPS
        self.context = ssl.create_default_context() if self.https else None
        self.headers = {"User-Agent": "lifeboat"}
        if creds.user and creds.password:
            if not self.https:
                raise RepositoryError(f"{self.url}: refusing to send a password over plain http://; use https://")
            token = base64.b64encode(f"{creds.user}:{creds.password}".encode()).decode()
            self.headers["Authorization"] = f"Basic {token}"
        self._local = threading.local()

    def _connection(self) -> http.client.HTTPConnection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            port = self.location.port
            if self.https:
                conn = http.client.HTTPSConnection(self.location.host, port, timeout=TIMEOUT, context=self.context)
            else:
                conn = http.client.HTTPConnection(self.location.host, port, timeout=TIMEOUT)
            self._local.conn = conn
        return conn

    def _drop(self) -> None:
        conn = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None:
            conn.close()

    def _request(self, method: str, name: str) -> tuple[int, bytes, int]:
        def attempt():
            conn = self._connection()
            try:
                conn.request(method, quote(f"{self.base}/{name}"), headers=self.headers)
                resp = conn.getresponse()
                body = resp.read()
            except ssl.SSLCertVerificationError as exc:
                self._drop()
                raise RepositoryError(f"{self.url}: the server's certificate is not trusted ({exc.verify_message}); "
                                      "name its CA with SSL_CERT_FILE") from None
            except _NETWORK:
                self._drop()
                raise
            if resp.getheader("Connection", "").lower() == "close":
                self._drop()
            return resp.status, body, int(resp.getheader("Content-Length") or len(body))
        return retrying(f"{self.url}: {method} {name}", attempt, _NETWORK)

    def read(self, name: str) -> bytes:
        status, body, _ = self._request("GET", name)
        if status == 404:
            raise ObjectMissing(f"{self.url}/{name} does not exist")
        if status != 200:
            raise RepositoryError(f"{self.url}/{name}: the server answered HTTP {status}")
        traffic.count_received(len(body))
        return body

    def size(self, name: str) -> int | None:
        status, _, length = self._request("HEAD", name)
        if status == 404:
            return None
        if status != 200:
            raise RepositoryError(f"{self.url}/{name}: the server answered HTTP {status}")
        return length

    def exists(self, name: str) -> bool:
        return self.size(name) is not None

    def list(self, prefix: str) -> Iterator[tuple[str, int]]:
        return iter(())  # static servers cannot list; see images/index.json

    def write(self, name: str, data: bytes, *, durable: bool = False) -> None:
        raise ReadOnly(f"{self.url} is read-only (http and https repositories can be listed, verified and restored "
                       "from; capture into a directory, ssh:// or s3:// and serve that)")

    def delete(self, name: str) -> None:
        self.write(name, b"")

    @contextlib.contextmanager
    def lock(self, scope: str, exclusive: bool):
        if exclusive:
            self.write(scope, b"")
        yield  # readers need no lock: nobody writes through http

    def sync(self) -> None:
        pass

    def free_bytes(self) -> int | None:
        return 0

    def clean_partial(self) -> None:
        pass

    def close(self) -> None:
        self._drop()


