# Copyright (c) Portcullis contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""portcullis.hardening.stop_unlisted end to end, on a lab of its own (Debian 12 and 13), over real SSH.

The module stops and disables units, so this module never touches the shared test lab: its `lab` fixture
(harness.own_lab) starts a lab of its own and takes it down at the end. The allowlist allows 22 and 8080: of the
lab's rogue listeners, udp 9999 (portcullis-rogue-udp.service) and tcp [::]:8443 (portcullis-rogue-v6.service) are
unlisted, and 127.0.0.1:6379 (portcullis-rogue-loopback.service) too, but loopback-only: it stops only with
include_loopback. Every test starts with the four rogue units enabled and running, nothing armed and no blocker.

The change goes through the change engine: armed (/var/lib/portcullis/armed, timer portcullis-rollback-<token>.timer),
confirmed over a new connection from the controller, else put back by the timer, or at boot by
portcullis-rollback.service. The controller is made slow with PORTCULLIS_TEST_HOLD_AFTER=stop:seconds (the action
plugin's hook after the stop), and new SSH connections are blocked with harness.BLOCK_NEW_SSH.
"""

from __future__ import annotations

import json
import tempfile
import time

import pytest

from harness import BLOCK_NEW_SSH, STATE_DIR, in_background, own_lab, probe, ss_sockets, stop_masters, wait_for

ALLOW = [{"port": 22, "comment": "SSH"}, {"port": 8080, "comment": "web"}]
WEB, UDP, V6, LOOPBACK = ("portcullis-rogue-%s.service" % name for name in ("web", "udp", "v6", "loopback"))
ROGUE = (WEB, UDP, V6, LOOPBACK)
UNLISTED = sorted([UDP, V6])
LISTENERS = {UDP: ["udp 0.0.0.0:9999"], V6: ["tcp [::]:8443"]}
RUNNING = ("active", "enabled")
STOPPED = ("inactive", "disabled")
HOLD = "PORTCULLIS_TEST_HOLD_AFTER"
# What the controller sees: answered / refused for UDP, open / refused for TCP (the lab has no firewall here).
REACH_RUNNING = {("udp", 4, 9999): "answered", ("tcp", 6, 8443): "open", ("tcp", 4, 8080): "open"}
REACH_STOPPED = {("udp", 4, 9999): "refused", ("tcp", 6, 8443): "refused", ("tcp", 4, 8080): "open"}

# A socket-activated service of the test's own (Accept=no: the service accepts on the socket systemd passes it).
ECHO_SOCKET = "portcullis-test-echo.socket"
ECHO_SERVICE = "portcullis-test-echo.service"
ECHO_PROGRAM = """\
import socket
server = socket.socket(fileno=3)  # the listening socket systemd passes (LISTEN_FDS=1)
while True:
    client, _peer = server.accept()
    client.sendall(b"portcullis-test echo\\n")
    client.close()
"""
ECHO_SOCKET_UNIT = """\
[Unit]
Description=Portcullis test: socket activation on tcp 7777

[Socket]
ListenStream=7777
Accept=no

[Install]
WantedBy=sockets.target
"""
ECHO_SERVICE_UNIT = """\
[Unit]
Description=Portcullis test: the service behind portcullis-test-echo.socket

[Service]
ExecStart=/usr/bin/python3 /usr/local/bin/portcullis-test-echo
"""
ECHO_REMOVE = ("systemctl disable --now --quiet {socket} 2>/dev/null; systemctl stop {service} 2>/dev/null; "
               "rm -f /etc/systemd/system/{socket} /etc/systemd/system/{service} /usr/local/bin/portcullis-test-echo; "
               "systemctl daemon-reload").format(socket=ECHO_SOCKET, service=ECHO_SERVICE)
ECHO_RUNNING = {ECHO_SOCKET: RUNNING, ECHO_SERVICE: ("active", "static")}
ECHO_STOPPED = {ECHO_SOCKET: STOPPED, ECHO_SERVICE: ("inactive", "static")}

# The starting state: no blocker left, the rogue units enabled and running.
RESET = ("systemctl stop portcullis-test-unblock.service 2>/dev/null; nft delete table inet portcullis_test_blocker "
         "2>/dev/null; systemctl enable --now --quiet %s" % " ".join(ROGUE))


@pytest.fixture(scope="module")
def lab():
    with own_lab(prefix="portcullis-services-lab-") as the_lab:
        yield the_lab


def units(host, names, console=False):
    """{unit: (active state, unit file state)} on the host (through podman exec with console=True)."""
    script = "for unit in %s; do echo $unit $(systemctl is-active $unit) $(systemctl is-enabled $unit 2>/dev/null); " \
             "done" % " ".join(names)
    out = (host.console if console else host.ssh)(script).stdout
    return {fields[0]: tuple(fields[1:3]) for fields in (line.split() for line in out.splitlines()) if fields}


def listening(host):
    """{(protocol, port)} of every listening socket on the host, as ss lists them."""
    return {(protocol, port) for protocol, _family, _address, port in ss_sockets(host.ssh("ss -H -lntu").stdout)}


def rogue_state(lab, console=False):
    return {host.name: units(host, ROGUE, console) for host in lab.hosts}


def expect(**states):
    """The rogue units' states: RUNNING, except those given (UDP=STOPPED...)."""
    return {unit: states.get(name, RUNNING) for name, unit in zip(("WEB", "UDP", "V6", "LOOPBACK"), ROGUE)}


def armed_change(host):
    """The armed change's manifest (token, description...) on the host."""
    return json.loads(host.ssh("cat %s/armed/manifest.json" % STATE_DIR).stdout)


def rollback_units(host):
    """The rollback timers and services of changes (the boot unit portcullis-rollback.service is not one)."""
    return host.ssh("systemctl list-units --all --plain --no-legend 'portcullis-rollback-*'").stdout.strip()


def stopped_units(result):
    return sorted(unit for group in result["stopped"] for unit in group["units"])


def by_units(result):
    return {tuple(group["units"]): group["listeners"] for group in result["stopped"]}


def stop_unlisted(lab, hosts="all", check_mode=False, before=(), fresh=True, control_dir=None, env=None, **args):
    """Run portcullis.hardening.stop_unlisted (allowlist ALLOW unless given) after the tasks `before`; return
    (rc, {host: result})."""
    args = dict({"allowlist": ALLOW, "confirm_timeout": 30}, **args)
    tasks = list(before) + [{"name": "stop", "portcullis.hardening.stop_unlisted": args}]
    completed, results = lab.playbook(tasks, hosts, ["--check", "--diff"] if check_mode else [], fresh=fresh,
                                      control_dir=control_dir, **(env or {}))
    names = [host.name for host in lab.hosts] if hosts == "all" else [hosts]
    assert sorted(results.get("stop", {})) == sorted(names), (completed.stdout[-3000:], completed.stderr[-3000:])
    return completed.returncode, results["stop"]


def assert_committed(lab, count):
    """Nothing armed, no rollback unit left, and the last `count` changes in the history committed."""
    for host in lab.hosts:
        assert not host.armed(), host.name
        assert rollback_units(host) == "", host.name
        history = host.history()
        assert [(entry["kind"], entry["by"]) for entry in history[-count:]] == [("services", "commit")] * count


@pytest.fixture(autouse=True)
def baseline(lab):
    """Every host with the rogue units enabled and listening, nothing armed, no blocker."""
    for host in lab.hosts:
        wait_for(lambda host=host: not host.armed(), 90, "no change armed on %s" % host.name)
        host.ssh(RESET)
        wait_for(lambda host=host: {("tcp", 8080), ("udp", 9999), ("tcp", 8443), ("tcp", 6379)} <= listening(host),
                 30, "the rogue listeners on %s" % host.name)
    assert rogue_state(lab) == {host.name: expect() for host in lab.hosts}
    return lab


@pytest.fixture
def echo(lab):
    """portcullis-test-echo.socket (tcp 7777) enabled and listening, its service started by a first connection."""
    for host in lab.hosts:
        host.ssh("cat > /usr/local/bin/portcullis-test-echo", input_text=ECHO_PROGRAM)
        host.ssh("cat > /etc/systemd/system/%s" % ECHO_SOCKET, input_text=ECHO_SOCKET_UNIT)
        host.ssh("cat > /etc/systemd/system/%s" % ECHO_SERVICE, input_text=ECHO_SERVICE_UNIT)
        host.ssh("systemctl daemon-reload && systemctl enable --now --quiet %s" % ECHO_SOCKET)
        assert probe(host.address, "tcp", 7777) == "open"  # systemd accepts it, and starts the service
        wait_for(lambda host=host: units(host, ECHO_RUNNING) == ECHO_RUNNING, 30, "the echo service on %s" % host.name)
    yield lab
    for host in lab.hosts:
        host.ssh(ECHO_REMOVE, check=False)


def test_check_mode_lists_the_units_it_would_stop_and_changes_nothing(lab):
    before = {host.name: listening(host) for host in lab.hosts}
    rc, results = stop_unlisted(lab, check_mode=True)
    assert rc == 0, results
    for host in lab.hosts:
        result = results[host.name]
        assert result["changed"] is True and not result.get("failed"), result
        assert by_units(result) == {(UDP,): LISTENERS[UDP], (V6,): LISTENERS[V6]}
        assert all(group["before"] == {group["units"][0]: {"active": "active", "enabled": "enabled"}}
                   for group in result["stopped"]), result["stopped"]
        assert result["kept"] == []
        assert "rollback" not in result and "confirmed" not in result
        assert sorted(result["diff"]["before"].splitlines()) == ["%s: active, enabled" % unit for unit in UNLISTED]
        assert sorted(result["diff"]["after"].splitlines()) == ["%s: inactive, disabled" % unit for unit in UNLISTED]
        assert not host.armed() and listening(host) == before[host.name]
    assert rogue_state(lab) == {host.name: expect() for host in lab.hosts}  # nothing stopped, nothing disabled
    for host in lab.hosts:
        assert host.probe(REACH_RUNNING) == host.expected(REACH_RUNNING)


def test_stops_and_disables_the_unlisted_units_then_changes_nothing(lab):
    rc, results = stop_unlisted(lab)
    assert rc == 0, results
    for host in lab.hosts:
        result = results[host.name]
        assert result["changed"] is True and result["confirmed"] is True, result
        assert "rollback" not in result and result["still_listening"] == []
        assert by_units(result) == {(UDP,): LISTENERS[UDP], (V6,): LISTENERS[V6]}
        assert result["kept"] == []
        assert sorted(host.history()[-1]["description"][len("stop "):].split(", ")) == UNLISTED
    assert_committed(lab, 1)
    assert rogue_state(lab) == {host.name: expect(UDP=STOPPED, V6=STOPPED) for host in lab.hosts}
    for host in lab.hosts:
        assert host.probe(REACH_STOPPED) == host.expected(REACH_STOPPED)  # new connections from the controller
        now = listening(host)
        assert ("udp", 9999) not in now and ("tcp", 8443) not in now
        assert {("tcp", 8080), ("tcp", 6379), ("tcp", 22)} <= now  # allowed, and loopback-only: untouched

    # Nothing left to stop: nothing changes, nothing is armed.
    count = {host.name: len(host.history()) for host in lab.hosts}
    rc, results = stop_unlisted(lab)
    assert rc == 0, results
    for host in lab.hosts:
        result = results[host.name]
        assert result["changed"] is False and result["stopped"] == [] and result["kept"] == [], result
        assert "rollback" not in result and "confirmed" not in result
        assert len(host.history()) == count[host.name] and not host.armed()
    assert rogue_state(lab) == {host.name: expect(UDP=STOPPED, V6=STOPPED) for host in lab.hosts}

    # With include_loopback, the loopback-only cache goes too.
    rc, results = stop_unlisted(lab, include_loopback=True)
    assert rc == 0, results
    for host in lab.hosts:
        result = results[host.name]
        assert result["confirmed"] is True and by_units(result) == {(LOOPBACK,): ["tcp 127.0.0.1:6379"]}, result
        assert ("tcp", 6379) not in listening(host)
    assert_committed(lab, 2)
    assert rogue_state(lab) == {host.name: expect(UDP=STOPPED, V6=STOPPED, LOOPBACK=STOPPED) for host in lab.hosts}


def test_protected_units_keep_running_and_are_reported(lab):
    rc, results = stop_unlisted(lab, protected_units=["portcullis-rogue-udp*"])
    assert rc == 0, results
    for host in lab.hosts:
        result = results[host.name]
        assert result["confirmed"] is True and by_units(result) == {(V6,): LISTENERS[V6]}, result
        assert result["kept"] == [{"listener": "udp 0.0.0.0:9999", "reason": "its unit %s is protected "
                                   "(portcullis-rogue-udp*): reported, not stopped" % UDP}]
        assert any(warning.startswith("udp 0.0.0.0:9999 is not allowed, but its unit %s is protected" % UDP)
                   for warning in result.get("warnings", [])), result.get("warnings")
    assert_committed(lab, 1)
    assert rogue_state(lab) == {host.name: expect(V6=STOPPED) for host in lab.hosts}
    for host in lab.hosts:
        assert probe(host.address, "udp", 9999) == "answered"


def test_a_socket_activated_unit_is_stopped_with_its_service_and_put_back_by_the_timer(echo):
    lab = echo
    # The controller stalls past the confirm timeout: the host's timer puts the socket and its service back.
    rc, results = stop_unlisted(lab, confirm_timeout=10, env={HOLD: "stop:16"})
    assert rc != 0
    for host in lab.hosts:
        result = results[host.name]
        assert result["failed"] is True and result["rolled_back"] is True and result["confirmed"] is False, result
        assert "its rollback timer put the previous configuration back" in result["msg"], result["msg"]
        assert by_units(result)[(ECHO_SOCKET, ECHO_SERVICE)] == ["tcp [::]:7777"], result["stopped"]
        group = [group for group in result["stopped"] if group["units"] == [ECHO_SOCKET, ECHO_SERVICE]][0]
        assert group["before"] == {ECHO_SOCKET: {"active": "active", "enabled": "enabled"},
                                   ECHO_SERVICE: {"active": "active", "enabled": "static"}}
        wait_for(lambda host=host: units(host, ECHO_RUNNING) == ECHO_RUNNING, 30, "the echo units back on %s"
                 % host.name)
        assert (host.history()[-1]["by"], host.history()[-1]["status"]) == ("timer", 0)
        assert not host.armed() and rollback_units(host) == ""
        assert probe(host.address, "tcp", 7777) == "open"
    assert rogue_state(lab) == {host.name: expect() for host in lab.hosts}

    # Confirmed in time: the socket stops first, then its service; the socket is disabled (the service is static).
    rc, results = stop_unlisted(lab)
    assert rc == 0, results
    for host in lab.hosts:
        result = results[host.name]
        assert result["confirmed"] is True and result["still_listening"] == [], result
        assert stopped_units(result) == sorted(UNLISTED + [ECHO_SERVICE, ECHO_SOCKET])
        assert units(host, ECHO_STOPPED) == ECHO_STOPPED
        assert ("tcp", 7777) not in listening(host)
        assert probe(host.address, "tcp", 7777) == "refused"  # nothing starts it again
    assert_committed(lab, 1)


def test_blocked_confirm_rolls_back(lab):
    control_dir = tempfile.mkdtemp(prefix="psv-cp-")  # short: it holds unix sockets
    try:
        started = time.monotonic()
        # The master connection is established, so the stop goes through; the confirmation over a new connection
        # cannot, until the blocker removes itself after the rollback timer fired.
        rc, results = stop_unlisted(lab, confirm_timeout=15, fresh=False, control_dir=control_dir, before=[
            {"name": "warm up", "ansible.builtin.ping": {}},
            {"name": "block new connections", "ansible.builtin.command": {"argv": ["sh", "-c", BLOCK_NEW_SSH]}}])
        took = time.monotonic() - started
    finally:
        stop_masters(control_dir)
    assert rc != 0, results
    assert took >= 15, took  # the rollback timer, not an early failure
    for host in lab.hosts:
        result = results[host.name]
        assert result.get("failed") is True and result.get("unreachable") is not True, result
        assert result["rolled_back"] is True and result["confirmed"] is False, result
        assert "its rollback timer put the previous configuration back" in result["msg"], result["msg"]
        assert "a new connection works again" in result["msg"], result["msg"]
        assert stopped_units(result) == UNLISTED  # they were stopped, then put back
    for host in lab.hosts:
        wait_for(lambda host=host: host.ssh("nft list table inet portcullis_test_blocker", check=False).returncode
                 != 0, 60, "the blocker gone on %s" % host.name)
        assert (host.history()[-1]["by"], host.history()[-1]["status"]) == ("timer", 0)
        assert not host.armed() and rollback_units(host) == ""
    assert rogue_state(lab) == {host.name: expect() for host in lab.hosts}
    for host in lab.hosts:
        assert host.reachable()
        assert host.probe(REACH_RUNNING) == host.expected(REACH_RUNNING)


def test_restart_while_armed_puts_the_units_back_at_boot(echo):
    lab = echo
    running = in_background(stop_unlisted, lab, confirm_timeout=12, env={HOLD: "stop:10"})
    wait_for(lambda: all(host.armed() and units(host, [UDP])[UDP] == STOPPED for host in lab.hosts), 60,
             "the units stopped, the change armed, on every host")
    assert {host.name: units(host, ECHO_STOPPED) for host in lab.hosts} == {host.name: ECHO_STOPPED
                                                                            for host in lab.hosts}
    for host in lab.hosts:
        lab.restart(host)
    # The hosts came back with new addresses, which the lab's files know only after `up`, and `up` would start the
    # rogue units itself: read the hosts through podman exec until the boot-time rollback is proven.
    for host in lab.hosts:
        wait_for(lambda host=host: host.console("systemctl is-system-running --wait", check=False).stdout.strip()
                 in ("running", "degraded"), 90, "%s booted" % host.name)
        history = host.history(console=True)
        assert (history[-1]["kind"], history[-1]["by"], history[-1]["status"]) == ("services", "boot", 0), history
        assert host.console("test ! -e %s/armed" % STATE_DIR, check=False).returncode == 0
        assert units(host, ROGUE, console=True) == expect(), host.name
        assert units(host, ECHO_RUNNING, console=True) == ECHO_RUNNING, host.name
    rc, results = running.result(timeout=300)
    assert rc != 0, "a run whose change was rolled back at boot must not end green"
    assert all(result.get("failed") and result.get("confirmed") is False for result in results.values()), results
    lab.up()
    for host in lab.hosts:
        assert host.reachable()
        assert units(host, ECHO_RUNNING) == ECHO_RUNNING  # `up` does not touch these
        assert probe(host.address, "tcp", 7777) == "open"


def test_two_runs_at_once_one_is_refused_naming_the_armed_change(lab):
    first = in_background(stop_unlisted, lab, confirm_timeout=60, env={HOLD: "stop:15"})
    wait_for(lambda: all(host.armed() for host in lab.hosts), 60, "the first run's change armed on every host")
    armed = {host.name: armed_change(host) for host in lab.hosts}
    # The second run has something left to stop (8080, which it does not allow): it is refused.
    rc, results = stop_unlisted(lab, allowlist=[{"port": 22}])
    assert rc != 0
    for host in lab.hosts:
        result, change = results[host.name], armed[host.name]
        assert result["failed"] is True and result["rolled_back"] is False, result
        assert result["host_state"] == "unchanged: another change is pending"
        assert "the services change %s (%s), armed at" % (change["token"], change["description"]) in result["msg"]
        assert ("is still waiting for its confirmation; its rollback timer portcullis-rollback-%s.timer puts the "
                "previous configuration back" % change["token"]) in result["msg"], result["msg"]
        assert "Nothing was changed" in result["msg"]
    rc, results = first.result(timeout=300)
    assert rc == 0, results
    for host in lab.hosts:
        assert results[host.name]["confirmed"] is True, results[host.name]
        assert host.history()[-1]["token"] == armed[host.name]["token"]
    assert_committed(lab, 1)
    assert rogue_state(lab) == {host.name: expect(UDP=STOPPED, V6=STOPPED) for host in lab.hosts}


def test_a_run_with_nothing_left_to_stop_while_a_change_is_armed_says_so(lab):
    first = in_background(stop_unlisted, lab, confirm_timeout=60, env={HOLD: "stop:10"})
    try:
        wait_for(lambda: all(host.armed() for host in lab.hosts), 60, "the first run's change armed on every host")
        # The same allowlist: the armed change stopped everything it would stop, but its timer may still undo that.
        rc, results = stop_unlisted(lab)
    finally:
        first_rc, _first = first.result(timeout=300)
    assert first_rc == 0
    assert rc != 0 and all("is still waiting for its confirmation" in result.get("msg", "")
                           for result in results.values()), results
