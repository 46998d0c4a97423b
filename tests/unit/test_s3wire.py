"""s3wire's answers that are not a success: a stand-in HTTP server on 127.0.0.1 answers every request as AWS
answers one sent to the wrong region (301 PermanentRedirect). A stand-in, because AWS cannot be reached
here and `rclone serve s3` (the real server of tests/integration/test_s3wire.py) has no regions to redirect."""

from __future__ import annotations

import http.server
import threading
from types import SimpleNamespace

import botocore.config
import botocore.credentials
import pytest

from lifeboat.repo.s3wire import GIVE_UP, Wire


@pytest.fixture
def redirecting():
    seen: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _redirect(self):
            seen.append(f"{self.command} {self.path}")
            if self.command == "PUT":
                self.rfile.read(int(self.headers["Content-Length"]))
            body = b"<Error><Code>PermanentRedirect</Code></Error>"
            self.send_response(301)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_PUT = _redirect

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()


def test_misdirected_answers_go_to_boto3_then_boto3_makes_every_request(redirecting):
    url, seen = redirecting
    config = botocore.config.Config(s3={"addressing_style": "path", "payload_signing_enabled": False})
    client = SimpleNamespace(meta=SimpleNamespace(endpoint_url=url, region_name="eu-west-1", config=config))  # what Wire reads
    creds = botocore.credentials.Credentials("k", "s")
    wire = Wire.for_client(client, creds, "bucket", verify=True, connect_timeout=2, read_timeout=2)
    try:
        assert wire.get("p/chunks/ab/x.zst") is None
        assert wire.put("p/chunks/ab/y.zst", b"data") is False
        for _ in range(GIVE_UP):
            wire.get("p/chunks/ab/x.zst")
        assert seen == ["GET /bucket/p/chunks/ab/x.zst", "PUT /bucket/p/chunks/ab/y.zst"] + \
            ["GET /bucket/p/chunks/ab/x.zst"] * (GIVE_UP - 2)
        assert len(wire._idle) == 1  # one kept-alive connection served them all
    finally:
        wire.close()
