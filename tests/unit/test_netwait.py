"""The wait for a route before mounting a share (repo/netwait.py), with the route probe and the clock injected;
probe_route itself against this machine's own routes (loopback, and an address family with none)."""

from __future__ import annotations

import pytest

from lifeboat.repo import netwait
from lifeboat.repo.netwait import NoNetwork, RouteProbe, RouteState, probe_route, wait_for_route


class Net:
    """A network that has a route to the server from `ready_at` seconds on; the clock moves only in sleep()."""

    def __init__(self, ready_at: float | None, unresolved_until: float = 0.0):
        self.ready_at, self.unresolved_until = ready_at, unresolved_until
        self.now, self.probes, self.said = 0.0, [], []

    def probe(self, host: str, port: int) -> RouteProbe:
        self.probes.append(self.now)
        if self.now < self.unresolved_until:
            return RouteProbe(RouteState.UNRESOLVED, detail="Temporary failure in name resolution")
        if self.ready_at is not None and self.now >= self.ready_at:
            return RouteProbe(RouteState.READY, "192.0.2.7")
        return RouteProbe(RouteState.NO_ROUTE, "192.0.2.7", "Network is unreachable")

    def sleep(self, seconds: float) -> None:
        self.now += seconds

    def wait(self, host: str = "nas.local", timeout: float = 45) -> str:
        with netwait.reporting(self.said.append):
            return wait_for_route(host, 445, timeout=timeout, probe=self.probe, sleep=self.sleep, clock=lambda: self.now)


def test_a_route_present_is_used_at_once_without_a_word():
    net = Net(ready_at=0)
    assert net.wait() == "192.0.2.7"
    assert net.probes == [0.0] and net.said == []


def test_no_route_gives_up_after_the_bound_with_a_clear_message():
    net = Net(ready_at=None)
    with pytest.raises(NoNetwork) as caught:
        net.wait(timeout=30)
    assert str(caught.value) == ("no network yet: no route to nas.local (192.0.2.7) "
                                 "(is the cable plugged in / DHCP done?)")
    assert "101" not in str(caught.value)
    assert net.now == 30 and len(net.probes) == 31  # once a second, the last at the bound
    # a status line at once and every 5 s, each saying what it waits for and how long so far
    assert len(net.said) == 6 and net.said[0].startswith("waiting for the network to reach nas.local: no route")
    assert "(25 s of 30 s)" in net.said[-1]


def test_a_route_that_appears_after_some_seconds_ends_the_wait():
    net = Net(ready_at=7)
    assert net.wait() == "192.0.2.7"
    assert net.now == 7 and net.probes[-1] == 7
    assert net.said[-1] == "network ready: nas.local reachable after 7 s"


def test_a_name_that_resolves_only_once_dhcp_gave_a_dns_server_is_waited_for():
    net = Net(ready_at=0, unresolved_until=3)
    assert net.wait() == "192.0.2.7"
    assert "its name does not resolve" in net.said[0]
    never = Net(ready_at=None, unresolved_until=99)
    with pytest.raises(NoNetwork, match=r"no network yet: cannot resolve the server name nas.local "
                                        r"\(Temporary failure in name resolution; is the cable plugged in"):
        never.wait(timeout=10)


def test_a_name_that_does_not_exist_while_the_network_is_up_fails_at_once():
    probes = []

    def typo(host, port):
        probes.append(host)
        return RouteProbe(RouteState.UNKNOWN_NAME, detail="Name or service not known")

    with pytest.raises(netwait.RepositoryError, match=r"cannot find the server nsa.local: the name does not resolve "
                                                       r"\(Name or service not known\); check the name") as caught:
        wait_for_route("nsa.local", 445, timeout=45, probe=typo, sleep=lambda _: None)
    assert probes == ["nsa.local"] and not isinstance(caught.value, NoNetwork)


def test_no_wait_when_told_so(monkeypatch):
    monkeypatch.setenv("LIFEBOAT_NETWORK_WAIT", "0")
    net = Net(ready_at=None)
    with pytest.raises(NoNetwork):
        with netwait.reporting(net.said.append):
            wait_for_route("10.0.2.2", 2049, probe=net.probe, sleep=net.sleep, clock=lambda: net.now)
    assert net.probes == [0.0]
    monkeypatch.setenv("LIFEBOAT_NETWORK_WAIT", "soon")
    with pytest.raises(netwait.RepositoryError, match="LIFEBOAT_NETWORK_WAIT='soon'"):
        wait_for_route("10.0.2.2", 2049, probe=net.probe)


def test_probe_route_asks_the_kernel():
    assert probe_route("127.0.0.1", 445) == RouteProbe(RouteState.READY, "127.0.0.1")
    # RFC 6761: .invalid never resolves; at once when the network is up, after the wait when it is not
    assert probe_route("name.invalid", 445).state in (RouteState.UNKNOWN_NAME, RouteState.UNRESOLVED)


def test_mount_errors_that_mean_no_network():
    assert netwait.unreachable("mount error(101): Network is unreachable\nRefer to the mount.cifs(8) manual page")
    assert netwait.unreachable("mount.nfs: No route to host")
    assert not netwait.unreachable("mount error(13): Permission denied")


def test_status_lines_go_to_stderr_without_a_sink(capsys):
    net = Net(ready_at=2)
    wait_for_route("nas", 445, probe=net.probe, sleep=net.sleep, clock=lambda: net.now)
    assert "lifeboat: waiting for the network to reach nas: no route to it yet (0 s of 45 s)" in capsys.readouterr().err



def test_under_the_tui_status_lines_go_to_the_log_only(capsys, caplog, monkeypatch):
    monkeypatch.setattr(netwait, "_stderr", [True])
    netwait.log_only()
    net = Net(ready_at=2)
    with caplog.at_level("INFO", logger="lifeboat.repo.netwait"):
        wait_for_route("nas", 445, probe=net.probe, sleep=net.sleep, clock=lambda: net.now)
    assert capsys.readouterr().err == ""
    assert "waiting for the network to reach nas" in caplog.text
