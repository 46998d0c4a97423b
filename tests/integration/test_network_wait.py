"""Mounting a share with no route to its server yet (the live system right after boot, DHCP not done): the CLI
waits, bounded, then says "no network yet" instead of cifs' -101; and it goes on once a route appears.

Real kernel routing: `lifeboat images` runs in a network namespace of its own (`ip netns`), whose only
interface, lo, starts down: no route anywhere, as before DHCP. This host has no cifs or nfs client, so what
follows the wait (the mount) fails here either way; the tests assert what the wait decided."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.integration
SERVER = "192.0.2.10"  # TEST-NET-1 (RFC 5737)


@pytest.fixture
def netns():
    name = f"lifeboat-test-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def lifeboat_in(netns: str, url: str, wait: int, tmp_path) -> subprocess.CompletedProcess:
    env = dict(os.environ, LIFEBOAT_NETWORK_WAIT=str(wait), LIFEBOAT_LOCK_DIR=str(tmp_path / "locks"))
    return subprocess.run(["ip", "netns", "exec", netns, sys.executable, "-m", "lifeboat", "images", "--repo", url],
                          env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("url", [f"smb://{SERVER}/share/images", f"nfs://{SERVER}/export?vers=4.2"])
def test_no_route_to_the_server_says_no_network_yet(netns, url, tmp_path):
    started = time.monotonic()
    result = lifeboat_in(netns, url, 3, tmp_path)
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert last == f"lifeboat: error: no network yet: no route to {SERVER} (is the cable plugged in / DHCP done?)"
    assert f"waiting for the network to reach {SERVER}: no route to it yet" in result.stderr
    assert "101" not in result.stderr
    assert 3 <= time.monotonic() - started < 60  # waited its bound, no more than the mount's own timeouts


def test_a_name_with_no_network_to_resolve_it_says_no_network_yet(netns, tmp_path):
    result = lifeboat_in(netns, "smb://nas.invalid/share", 2, tmp_path)
    assert result.returncode != 0
    assert "waiting for the network to reach nas.invalid: its name does not resolve yet" in result.stderr
    assert "lifeboat: error: no network yet: cannot resolve the server name nas.invalid (" in result.stderr


def test_a_route_that_appears_during_the_wait_ends_it(netns, tmp_path):
    env = dict(os.environ, LIFEBOAT_NETWORK_WAIT="60", LIFEBOAT_LOCK_DIR=str(tmp_path / "locks"))
    proc = subprocess.Popen(["ip", "netns", "exec", netns, sys.executable, "-m", "lifeboat", "images", "--repo",
                             f"nfs://{SERVER}/export?vers=4.2"], env=env, stderr=subprocess.PIPE, text=True)
    try:
        first = proc.stderr.readline()
        assert f"waiting for the network to reach {SERVER}: no route to it yet" in first
        # DHCP done: an address on the namespace's interface (lo here), hence a route to the server
        subprocess.run(["ip", "-n", netns, "link", "set", "lo", "up"], check=True)
        subprocess.run(["ip", "-n", netns, "addr", "add", f"{SERVER}/24", "dev", "lo"], check=True)
        rest = proc.stderr.read()
        assert proc.wait(timeout=120) != 0  # the mount that follows cannot work on this host
    finally:
        proc.kill()
        proc.wait()
    assert f"network ready: {SERVER} reachable after" in rest
    assert "no network yet" not in rest
