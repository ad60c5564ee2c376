# Copyright (c) Portcullis contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The firewall, the audit and an SSH move on hosts whose firewall is ufw (active) or firewalld (running).

Each backend gets a lab of its own (harness.own_lab with firewall=ufw or firewalld: Debian 12 hosts with the
Debian package, ufw enabled with 22/tcp allowed, firewalld with its zone public). Before the tests the host gets
an allow the allowlists never have (9090/tcp) and dual-stack listeners on 8181, 9090 and 7070. Every reachability
check is a new connection from the controller: raw sockets, and ssh with ControlMaster=no.
"""

from __future__ import annotations

import shlex
import tempfile
import time

import pytest

from harness import BLOCK_NEW_SSH, own_lab, run_play, stop_masters, wait_for

ALLOW = [{"port": 22, "comment": "SSH"}, {"port": 8181}]
CHANGED = ALLOW + [{"port": 7070}]
LISTENER = """\
import socket, threading
def serve(port):
    server = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    server.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("::", port))
    server.listen(16)
    while True:
        client, _peer = server.accept()
        client.close()
threads = [threading.Thread(target=serve, args=(port,)) for port in (8181, 9090, 7070)]
for thread in threads:
    thread.start()
"""
# What the controller sees over IPv4 (4) and IPv6 (6), by port: before, and after the allowlist. A closed port is
# "closed": ufw drops it (filtered), firewalld's zone rejects it (ICMP administratively prohibited: rejected).
BEFORE = {22: "open", 9090: "open", 8181: "closed", 7070: "closed"}
ENFORCED = {22: "open", 8181: "open", 9090: "closed", 7070: "closed"}
CLOSED = {"ufw": "filtered", "firewalld": "rejected"}
# Everything the backend keeps, read on the host: compared before and after what must change nothing.
STATE = {
    "ufw": "ufw status verbose; sha256sum /etc/ufw/user.rules /etc/ufw/user6.rules /etc/default/ufw /etc/ufw/ufw.conf",
    # (firewalld keeps the zone file it replaced as .xml.old: a backup of its own, not configuration)
    "firewalld": "firewall-cmd --zone=public --list-all; firewall-cmd --permanent --zone=public --list-all; "
                 "sha256sum /etc/firewalld/zones/*.xml 2>/dev/null || true",
}
FOREIGN_ALLOW = {
    "ufw": "ufw allow 9090/tcp",
    "firewalld": "firewall-cmd --zone=public --add-port=9090/tcp && firewall-cmd --permanent --zone=public "
                 "--add-port=9090/tcp",
}


def start_listeners(host):
    host.ssh("systemctl is-active --quiet portcullis-test-listeners || systemd-run --quiet --unit "
             "portcullis-test-listeners python3 -c %s" % shlex.quote(LISTENER))
    wait_for(lambda: host.ssh("ss -H -ltn 'sport = :7070' | grep -q .", check=False).returncode == 0, 30,
             "listeners on %s" % host.name)


def _prepare(lab):
    for host in lab.hosts:
        host.ssh(FOREIGN_ALLOW[host.firewall])
        start_listeners(host)


@pytest.fixture(scope="module", params=["ufw", "firewalld"])
def lab(request):
    with own_lab(_prepare, prefix="portcullis-%s-lab-" % request.param, releases=("bookworm",),
                 firewall=request.param) as the_lab:
        the_lab.backend = request.param
        yield the_lab


@pytest.fixture
def host(lab):
    [only] = lab.hosts
    assert only.firewall == lab.backend
    return only


def state(host):
    return host.ssh(STATE[host.firewall]).stdout


def firewall(lab, args, check_mode=False, fresh=True, control_dir=None, tasks_before=()):
    tasks = list(tasks_before) + [{"name": "firewall", "portcullis.hardening.firewall": args}]
    completed, results = lab.playbook(tasks, extra_args=["--check", "--diff"] if check_mode else [], fresh=fresh,
                                      control_dir=control_dir)
    [result] = results["firewall"].values()
    return completed.returncode, result


def assert_reach(host, by_port):
    """Probe each port over IPv4 and IPv6 (new connections) and compare with `by_port` ({port: state})."""
    expected = dict((("tcp", version, port), CLOSED[host.firewall] if state == "closed" else state)
                    for port, state in by_port.items() for version in (4, 6))
    assert host.probe(expected) == host.expected(expected)


def assert_reachable(host):
    assert host.reachable() and (not host.ipv6 or host.reachable(ipv6=True))


def test_check_mode_then_converge_closes_the_foreign_allow_and_is_idempotent(lab, host):
    assert_reach(host, BEFORE)
    before = state(host)
    rc, planned = firewall(lab, {"allow": ALLOW, "confirm_timeout": 30}, check_mode=True)
    assert rc == 0, planned
    assert planned["changed"] is True and planned["backend"] == lab.backend, planned
    assert "%s is active on this host (backend: auto)" % lab.backend == planned["backend_reason"]
    assert any("9090" in rule for rule in planned["removed_rules"]), planned["removed_rules"]
    assert "9090" in planned["diff"]["before"] and "9090" not in planned["diff"]["after"]
    assert state(host) == before  # check mode changed nothing
    assert_reach(host, BEFORE)

    rc, result = firewall(lab, {"allow": ALLOW, "confirm_timeout": 30})
    assert rc == 0, result
    assert result["changed"] is True and result["confirmed"] is True and "rollback" not in result, result
    assert result["commands"] == planned["commands"]
    assert_reach(host, ENFORCED)  # 8181 opened, the old 9090 allow closed, 7070 never open: IPv4 and IPv6
    assert "armed" not in host.ssh("ls /var/lib/portcullis").stdout.split()

    after = state(host)
    rc, again = firewall(lab, {"allow": ALLOW, "confirm_timeout": 30})
    assert rc == 0 and again["changed"] is False and again["commands"] == [], again
    assert state(host) == after
    rc, again = firewall(lab, {"allow": ALLOW}, check_mode=True)
    assert rc == 0 and again["changed"] is False, again
    assert_reachable(host)


def test_rules_survive_a_restart(lab, host):
    firewall(lab, {"allow": ALLOW, "confirm_timeout": 30})
    before = state(host)
    lab.restart(host)
    lab.up(("bookworm",), lab.backend)
    [host] = lab.hosts  # its address may have changed
    start_listeners(host)
    wait_for(lambda: host.ssh({"ufw": "ufw status | grep -q 'Status: active'",
                               "firewalld": "firewall-cmd --state"}[host.firewall], check=False).returncode == 0,
             60, "%s running again on %s" % (host.firewall, host.name))
    assert state(host) == before
    assert_reach(host, ENFORCED)
    rc, again = firewall(lab, {"allow": ALLOW, "confirm_timeout": 30})
    assert rc == 0 and again["changed"] is False, again


def test_blocked_confirm_rolls_back(lab, host):
    firewall(lab, {"allow": ALLOW, "confirm_timeout": 30})
    before = state(host)
    control_dir = tempfile.mkdtemp(prefix="pbk-cp-")
    try:
        started = time.monotonic()
        rc, result = firewall(lab, {"allow": CHANGED, "confirm_timeout": 20}, fresh=False, control_dir=control_dir,
                              tasks_before=[{"name": "warm up", "ansible.builtin.ping": {}},
                                            {"name": "block new connections",
                                             "ansible.builtin.command": {"argv": ["sh", "-c", BLOCK_NEW_SSH]}}])
        took = time.monotonic() - started
    finally:
        stop_masters(control_dir)
    assert rc != 0 and result.get("failed") is True, result
    assert took >= 20, took  # the rollback timer undid it, not an early failure
    assert result["rolled_back"] is True and result["confirmed"] is False, result
    assert "its rollback timer put the previous configuration back" in result["msg"], result["msg"]
    wait_for(lambda: host.ssh("nft list table inet portcullis_test_blocker", check=False).returncode != 0, 60,
             "the blocker gone")
    assert state(host) == before  # the backend's rules, live and on disk, as they were
    assert_reach(host, ENFORCED)  # 7070 was opened, then closed again
    assert_reachable(host)


def test_audit_sees_the_backend(lab, host):
    firewall(lab, {"allow": ALLOW, "confirm_timeout": 30})
    args = {"allowlist": ALLOW + [{"port": 9090}], "expect_default_deny": True, "probe": False}
    audit = host.module("portcullis.hardening.port_audit", args)
    kinds = sorted((item["kind"], item["family"], item["port"]) for item in audit["findings"]
                   if item["kind"] in ("allowed_but_filtered", "firewall_inactive"))
    # 9090 is allowlisted here, but the backend (converged to ALLOW) drops it; default deny holds for both.
    assert kinds == [("allowed_but_filtered", "ipv4", 9090), ("allowed_but_filtered", "ipv6", 9090)], audit
    assert lab.backend in " ".join(item["message"] for item in audit["findings"]
                                   if item["kind"] == "allowed_but_filtered")


def test_ssh_move_opens_the_new_port_first_and_closes_the_old_one(lab, host):
    firewall(lab, {"allow": ALLOW, "confirm_timeout": 30})
    move = {"name": "move", "portcullis.hardening.ssh_port": {"port": 2222, "confirm_timeout": 60},
            "register": "moved"}
    switch = {"name": "switch", "ansible.builtin.set_fact": {"ansible_port": "{{ moved.ansible_port }}"},
              "when": "moved.ansible_port is defined"}
    after = {"name": "after", "ansible.builtin.command": {"argv": ["hostname"]}, "changed_when": False}
    try:
        completed, results = run_play(host.inventory, [move, switch, after], host.name, (), **lab.env())
        moved = results["move"][host.name]
        assert completed.returncode == 0, moved.get("msg")
        assert moved["firewall"] == {"managed": True, "rules_moved": moved["firewall"]["rules_moved"],
                                     "backend": lab.backend} and moved["firewall"]["rules_moved"] >= 1, moved
        assert results["after"][host.name]["stdout"] == host.name
        for ipv6 in (False, True):
            assert host.ssh("true", port=2222, ipv6=ipv6, check=False).returncode == 0
        assert_reach(host, {22: "closed"})  # closed in the backend, not only unused
        assert "2222" in host.ssh(STATE[host.firewall], port=2222).stdout
    finally:
        back = {"name": "move", "portcullis.hardening.ssh_port": {"port": 22, "previous_ports": [2222],
                                                                  "confirm_timeout": 60}, "register": "moved"}
        completed, results = run_play(host.inventory, [back, switch, after], host.name, (), **lab.env())
        assert completed.returncode == 0, results["move"][host.name].get("msg")
    assert_reachable(host)
    assert_reach(host, ENFORCED)


def test_state_absent_removes_only_what_portcullis_added(lab, host):
    firewall(lab, {"allow": ALLOW, "confirm_timeout": 30})
    rc, removed = firewall(lab, {"state": "absent"})
    assert rc == 0 and removed["changed"] is True, removed
    text = state(host)
    if host.firewall == "ufw":
        assert "portcullis" not in text and "Status: active" in text  # the operator's ufw stays on
    else:
        assert "8181/tcp" not in text
    assert_reach(host, {22: "open", 8181: "closed", 9090: "closed", 7070: "closed"})
    assert_reachable(host)  # SSH's rule was the operator's (ufw allow 22/tcp, the ssh service): it stays
    rc, again = firewall(lab, {"state": "absent"})
    assert rc == 0 and again["changed"] is False, again
