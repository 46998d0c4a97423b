"""The two requests a capture or restore makes per chunk, GET and PUT of one object, sent without boto3's
per-call machinery.

A boto3 call validates and serialises its parameters, runs some twenty event handlers, signs, sends through
urllib3 and parses the response against the operation's model: about 1 ms of one core's time per request on
this machine, whatever the object's size, which for a 4 MiB chunk (1.3 MB compressed) costs more than moving
its bytes. Here each request is the same standard S3 request boto3 would send, signed by botocore's own
SigV4 signer (S3SigV4Auth, UNSIGNED-PAYLOAD as the client is configured) with the client's credentials,
region and endpoint (path-style URL), on keep-alive http.client connections with TCP_NODELAY: 0.45 ms per
1.3 MB GET against 1.25 ms through boto3 (rclone serve s3 on 127.0.0.1).

Only a plain success is handled here: a 200 answer to the GET (its body read whole, Content-Length checked)
or to the PUT. Any other answer returns None, and the caller makes the same request through boto3, which
knows S3's errors, region redirects and retries, so errors read as before; after GIVE_UP answers that mean
the request belonged elsewhere (a bucket in another region), boto3 makes every request. Not used (boto3 makes every
request) when a proxy applies to the endpoint or no credentials were found. A connection that the server
closed while idle is replaced once at once; other network errors are raised (http.client's, OSError) for the
caller's retries.

Tried and measured, not kept (all 1258 chunks of the benchmark disk, 1.65 GB, 16 threads, rclone serve s3 on
127.0.0.1, client CPU per run, three alternating runs each): reading each body into a reused per-thread
bytearray with readinto (0.93-1.00 s vs 0.94-0.96 s), and sending the request and parsing the response by hand
on the raw socket instead of http.client (0.97-1.03 s vs 0.97-1.01 s). The client's share is the kernel's
copy of the bytes and the threads' wake-ups; the S3 server's own CPU (1.4-1.7 s for the same GETs) is the
larger cost on shared cores.
"""

from __future__ import annotations

import http.client
import os
import socket
import ssl
import threading
from urllib.parse import quote, urlsplit

import botocore.auth
import botocore.awsrequest
import botocore.httpsession
import botocore.utils

MAX_IDLE = 32  # kept-alive connections (a capture's or restore's workers each hold one at a time)
GIVE_UP = 3  # misdirected answers after which boto3 makes every request
NETWORK_ERRORS = (http.client.HTTPException, ConnectionError, TimeoutError)
_STALE = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)


class Wire:
    def __init__(self, client, credentials, bucket: str, *, verify, connect_timeout: float, read_timeout: float):
        self.client, self.credentials = client, credentials
        self.region = client.meta.region_name or "us-east-1"
        url = urlsplit(client.meta.endpoint_url.rstrip("/"))
        self.https = url.scheme == "https"
        self.host, self.port = url.hostname, url.port
        self.base = f"{url.scheme}://{url.netloc}{url.path}/{quote(bucket, safe='')}/"
        self.path = f"{url.path}/{quote(bucket, safe='')}/"
        self.timeouts = (connect_timeout, read_timeout)
        self.context = _tls_context(verify) if self.https else None
        self._idle: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()
        self._misdirected = 0  # answers that mean boto3 would have sent the request elsewhere

    @classmethod
    def for_client(cls, client, credentials, bucket: str, **kw) -> Wire | None:
        """A Wire for this client, or None where boto3 must make every request (a proxy, no credentials)."""
        url = client.meta.endpoint_url
        proxies = botocore.utils.get_environ_proxies(url)
        if credentials is None or proxies.get(urlsplit(url).scheme) or proxies.get("all"):
            return None
        return cls(client, credentials, bucket, **kw)

    # ---------------------------------------------------------------- requests

    def get(self, key: str) -> bytes | None:
        """The object's bytes, or None for any answer but 200 (ask boto3)."""
        return self._request("GET", key, None)

    def put(self, key: str, data) -> bool:
        """True once stored (200); False for any other answer (ask boto3)."""
        return self._request("PUT", key, data) is not None

    def _request(self, method: str, key: str, body):
        if self._misdirected >= GIVE_UP:  # boto3 follows the redirects (and caches the bucket's region)
            return None
        quoted = quote(key, safe="/~")
        headers = self._signed(method, quoted, None if body is None else len(body))
        conn, reused = self._take()
        try:
            try:
                status, data, keep = self._exchange(conn, method, self.path + quoted, headers, body)
            except _STALE:
                if not reused:
                    raise
                conn.close()  # closed by the server while idle: once more on a new connection
                conn = self._connect()
                status, data, keep = self._exchange(conn, method, self.path + quoted, headers, body)
        except BaseException:
            conn.close()
            raise
        self._give(conn, keep)
        if status in (301, 307, 400):  # the bucket is in another region than the client's, or similar
            self._misdirected += 1
        if status != 200:
            return None
        return data if method == "GET" else b""

    def _signed(self, method: str, quoted: str, length: int | None) -> dict[str, str]:
        request = botocore.awsrequest.AWSRequest(method=method, url=self.base + quoted)
        request.headers["Host"] = self._host_header()
        if length is not None:
            request.headers["Content-Length"] = str(length)
        request.context["client_config"] = self.client.meta.config  # payload_signing_enabled=False: UNSIGNED-PAYLOAD
        botocore.auth.S3SigV4Auth(self.credentials.get_frozen_credentials(), "s3", self.region).add_auth(request)
        return dict(request.headers.items())

    def _host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.https else 80
        return host if self.port in (None, default) else f"{host}:{self.port}"

    @staticmethod
    def _exchange(conn, method: str, path: str, headers: dict, body) -> tuple[int, bytes, bool]:
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        data = response.read()  # Content-Length is checked: a short body raises IncompleteRead
        return response.status, data, not response.will_close

    # ---------------------------------------------------------------- connections

    def _take(self) -> tuple[http.client.HTTPConnection, bool]:
        with self._lock:
            if self._idle:
                return self._idle.pop(), True
        return self._connect(), False

    def _give(self, conn: http.client.HTTPConnection, keep: bool) -> None:
        with self._lock:
            if keep and len(self._idle) < MAX_IDLE:
                self._idle.append(conn)
                return
        conn.close()

    def _connect(self) -> http.client.HTTPConnection:
        connect, read = self.timeouts
        if self.https:
            conn = http.client.HTTPSConnection(self.host, self.port, timeout=connect, context=self.context)
        else:
            conn = http.client.HTTPConnection(self.host, self.port, timeout=connect)
        conn.connect()
        conn.sock.settimeout(read)
        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return conn

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()


def _tls_context(verify) -> ssl.SSLContext:
    """Certificates checked as boto3 checks them: `verify` is botocore's (True: its default bundle; a path:
    AWS_CA_BUNDLE, ca_bundle or REQUESTS_CA_BUNDLE; False: the user turned checking off)."""
    if verify is False:
        context = ssl.create_default_context()
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
        return context
    bundle = botocore.httpsession.get_cert_path(verify)
    if bundle and os.path.isdir(bundle):
        return ssl.create_default_context(capath=bundle)
    return ssl.create_default_context(cafile=bundle or None)
