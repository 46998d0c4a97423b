"""Waiting for the network before mounting a share.

Right after the live system boots, DHCP may not have configured the interface yet: a cifs mount then fails
with the kernel's "-101 network unreachable" and an NFS mount with a long timeout. Before mounting, the
server's name is resolved and the kernel is asked for a route to its address (a UDP socket's connect():
the same route lookup as `ip route get ADDR`, no packet sent). A name the resolver says does not exist while the network is up
(a default route) is a typo, not DHCP: that fails at once. Until both succeed Lifeboat waits, up to
WAIT_SECONDS (LIFEBOAT_NETWORK_WAIT overrides it; 0: do not wait), saying every few seconds what it waits
for; then it gives up with a message that names the server and the likely cause, not the kernel's errno.

The status lines go to the sink installed for the calling thread (`reporting()`: the TUI's form shows them)
or else to stderr (not under the TUI: log_only()) and the log.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import StrEnum

from lifeboat.errors import RepositoryError

log = logging.getLogger("lifeboat.repo.netwait")
WAIT_SECONDS = 45.0
INTERVAL = 1.0  # between probes
SAY_EVERY = 5.0  # seconds between status lines
_NO_ROUTE = {errno.ENETUNREACH, errno.EHOSTUNREACH, errno.EADDRNOTAVAIL}


class NoNetwork(RepositoryError):
    """No route to (or no address for) a share's server after the wait."""


class RouteState(StrEnum):
    READY = "ready"
    NO_ROUTE = "no route"
    UNRESOLVED = "unresolved"  # the name has no address (yet: DNS may come with DHCP)
    UNKNOWN_NAME = "unknown name"  # the name has no address though the network is up: a typo, not DHCP


@dataclass(frozen=True)
class RouteProbe:
    state: RouteState
    address: str = ""  # the server's address, once resolved
    detail: str = ""  # the resolver's or the kernel's words, for the log


def probe_route(host: str, port: int) -> RouteProbe:
    """Resolve `host` and ask the kernel for a route to each of its addresses; READY with the first routable one."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    except socket.gaierror as exc:
        up = exc.errno == socket.EAI_NONAME and _default_route()  # the resolver answered: no such name
        return RouteProbe(RouteState.UNKNOWN_NAME if up else RouteState.UNRESOLVED, detail=str(exc.strerror or exc))
    detail, address = "", ""
    for family, kind, proto, _, sockaddr in infos:
        address = str(sockaddr[0])
        with socket.socket(family, kind, proto) as sock:
            try:
                sock.connect(sockaddr)  # UDP: a route lookup only, nothing is sent
            except OSError as exc:
                if exc.errno not in _NO_ROUTE:
                    raise
                detail = exc.strerror or str(exc)
                continue
        return RouteProbe(RouteState.READY, address)
    return RouteProbe(RouteState.NO_ROUTE, address, detail)


def _default_route() -> bool:
    """Whether the kernel would route to an address outside every local network (TEST-NET-1: nothing is sent)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect(("192.0.2.1", 9))
        except OSError:
            return False
    return True


def no_network_message(host: str, probe: RouteProbe | None = None) -> str:
    if probe is not None and probe.state is RouteState.UNRESOLVED:
        return (f"no network yet: cannot resolve the server name {host} ({probe.detail}; is the cable plugged "
                "in / DHCP done? or give the server's IP address)")
    shown = host if probe is None or not probe.address or probe.address == host else f"{host} ({probe.address})"
    return f"no network yet: no route to {shown} (is the cable plugged in / DHCP done?)"


def wait_for_route(host: str, port: int, *, timeout: float | None = None,
                   probe: Callable[[str, int], RouteProbe] = probe_route,
                   sleep: Callable[[float], None] = time.sleep,
                   clock: Callable[[], float] = time.monotonic) -> str:
    """The server's routable address, once there is one; NoNetwork after `timeout` seconds without."""
    limit = wait_seconds() if timeout is None else timeout
    started = clock()
    said = None
    while True:
        found = probe(host, port)
        waited = clock() - started
        if found.state is RouteState.UNKNOWN_NAME:  # waiting would not help
            raise RepositoryError(f"cannot find the server {host}: the name does not resolve ({found.detail}); "
                                  "check the name, or give the server's IP address")
        if found.state is RouteState.READY:
            if said is not None:
                _say(f"network ready: {host} reachable after {waited:.0f} s")
            return found.address
        if waited >= limit:
            log.info("giving up on %s after %.0f s: %s %s", host, waited, found.state, found.detail)
            raise NoNetwork(no_network_message(host, found))
        if said is None or waited - said >= SAY_EVERY:
            said = waited
            what = "its name does not resolve" if found.state is RouteState.UNRESOLVED else "no route to it"
            _say(f"waiting for the network to reach {host}: {what} yet ({waited:.0f} s of {limit:.0f} s)")
        sleep(min(INTERVAL, max(0.0, limit - waited)))


def wait_seconds() -> float:
    text = os.environ.get("LIFEBOAT_NETWORK_WAIT", "")
    try:
        return max(0.0, float(text)) if text else WAIT_SECONDS
    except ValueError:
        raise RepositoryError(f"LIFEBOAT_NETWORK_WAIT={text!r}: expected a number of seconds") from None


def unreachable(stderr: str) -> bool:
    """Whether a mount's error says the network is unreachable (the kernel's -101 / ENETUNREACH)."""
    return "error(101)" in stderr or "Network is unreachable" in stderr or "No route to host" in stderr


_sink = threading.local()
_stderr = [True]  # the fallback; off under the TUI, which owns the terminal (its log view shows the lines)


def log_only() -> None:
    """From now on, status lines of threads with no sink go to the log only, not to stderr."""
    _stderr[0] = False


@contextlib.contextmanager
def reporting(say: Callable[[str], None]) -> Iterator[None]:
    """Status lines of waits made by this thread go to `say` inside the block."""
    previous = getattr(_sink, "say", None)
    _sink.say = say
    try:
        yield
    finally:
        _sink.say = previous


def _say(text: str) -> None:
    log.info("%s", text)
    say = getattr(_sink, "say", None)
    if say is not None:
        say(text)
    elif _stderr[0]:
        print(f"lifeboat: {text}", file=sys.stderr, flush=True)
