# Copyright (c) Portcullis contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The change engine's fault matrix, on a lab of this module's own (Debian 12 and 13), over real SSH.

Compound faults, not only single ones: the host restarts while a firewall change or a move is armed (in each
phase of the move), the rollback timer fires while the commit arrives, two runs start at once, persisting fails
at commit, a non-root process named sshd holds the new port. Each case ends with two checks: the host answers a
new SSH connection on the port a re-run's inventory would use (22), and a re-run converges, with a second re-run
at changed=0. docs/reliability.md lists the cases with these tests' names.

The controller is made slow or lost with the PORTCULLIS_TEST_HOLD_AFTER=step:seconds hook of the action plugins,
and the rollback slow with the /run/portcullis/test-slow-rollback hook of the rollback script.
"""

from __future__ import annotations

import json
import shlex
import time

import pytest

from harness import STATE_DIR, in_background, own_lab, wait_for

BASELINE = [{"port": 22, "comment": "SSH"}, {"port": 8080}]
CHANGED = BASELINE + [{"port": 9100, "comment": "node exporter"}]
NEW_PORT = 2222
SLOW_HOOK = "/run/portcullis/test-slow-rollback"


@pytest.fixture(scope="module")
def lab():
    with own_lab(prefix="portcullis-faults-lab-") as the_lab:
        yield the_lab


def firewall(lab, allow, hosts="all", timeout=60, **env):
    """The firewall task on `hosts`; (rc, {host: result})."""
    completed, results = lab_play(lab, [{"name": "firewall", "portcullis.hardening.firewall": {
        "allow": allow, "confirm_timeout": timeout}}], hosts, **env)
    return completed.returncode, results.get("firewall", {})


def lab_play(lab, tasks, hosts="all", **env):
    return lab.playbook(tasks, hosts, **env)


def move(lab, port, previous=(22,), hosts="all", **env):
    completed, results = lab_play(lab, [
        {"name": "move", "register": "moved", "portcullis.hardening.ssh_port": {
            "port": port, "previous_ports": list(previous), "confirm_timeout": 90}},
        {"name": "switch", "ansible.builtin.set_fact": {"ansible_port": "{{ moved.ansible_port }}"},
         "when": "moved.ansible_port is defined"},
        {"name": "after", "ansible.builtin.command": {"argv": ["true"]}, "changed_when": False},
    ], hosts, **env)
    return completed.returncode, results.get("move", {})


def converges(lab, run):
    """A re-run converges, and a second re-run changes nothing: run() -> (rc, {host: result})."""
    rc, results = run()
    assert rc == 0, {name: result.get("msg") for name, result in results.items()}
    rc, results = run()
    assert rc == 0 and not any(result.get("changed") for result in results.values()), results


def own_table(host):
    return host.ssh("nft list table inet portcullis 2>/dev/null || true").stdout


def armed_everywhere(lab):
    return all(host.armed() for host in lab.hosts)


def history(host):
    """[(claimed by, status)] of the engine's history on the host, oldest first."""
    return [(entry["by"], entry["status"]) for entry in host.history()]


def restart_all(lab):
    for host in lab.hosts:
        lab.restart(host)
    lab.up()  # addresses may change: the lab rewrites inventory, known_hosts and ssh_config
    for host in lab.hosts:
        wait_for(host.reachable, 60, "%s answering SSH after the restart" % host.name)


@pytest.fixture
def baseline(lab):
    """Every host with the baseline firewall committed, sshd on 22 and no hook left."""
    for host in lab.hosts:
        host.ssh("rm -f %s; test -f /etc/nftables.d || rm -f /etc/nftables.d" % SLOW_HOOK, check=False)
    rc, results = firewall(lab, BASELINE)
    assert rc == 0, results
    yield lab
    for host in lab.hosts:
        host.ssh("rm -f %s" % SLOW_HOOK, check=False)


def test_restart_while_a_firewall_change_is_armed(baseline):
    lab = baseline
    before = {host.name: own_table(host) for host in lab.hosts}
    running = in_background(firewall, lab, CHANGED, timeout=60, PORTCULLIS_TEST_HOLD_AFTER="apply:45")
    wait_for(lambda: armed_everywhere(lab), 120, "the firewall change armed on every host")
    assert all("9100" in own_table(host) for host in lab.hosts)  # the new table is live, not yet committed
    restart_all(lab)
    for host in lab.hosts:
        assert own_table(host) == before[host.name], "the boot unit must have put the committed table back"
        assert not host.armed()
        assert history(host)[-1][0] == "boot"
    rc, _results = running.result(timeout=900)
    assert rc != 0, "a run whose change was rolled back at boot must not end green"
    converges(lab, lambda: firewall(lab, CHANGED))


@pytest.mark.parametrize("phase", ["transition", "finalize"])
def test_restart_while_a_move_is_armed(baseline, phase):
    lab = baseline
    running = in_background(move, lab, NEW_PORT, PORTCULLIS_TEST_HOLD_AFTER="%s:45" % phase)
    wait_for(lambda: armed_everywhere(lab), 120, "the move armed on every host")
    time.sleep(3)  # the phase's own restart of sshd is done before the controller holds
    restart_all(lab)  # reachable on 22 (the port a re-run's inventory says) is checked here
    for host in lab.hosts:
        assert history(host)[-1][0] == "boot", host.name
        assert host.ssh("ss -H -ltn 'sport = :%d' | wc -l" % NEW_PORT).stdout.strip() == "0"
    rc, _result = running.result(timeout=900)
    assert rc != 0
    converges(lab, lambda: move(lab, NEW_PORT))
    converges(lab, lambda: move(lab, 22, previous=(NEW_PORT,)))


def test_the_timer_fires_while_the_commit_arrives(baseline):
    lab = baseline
    before = {host.name: own_table(host) for host in lab.hosts}
    for host in lab.hosts:
        host.ssh("mkdir -p /run/portcullis && echo 20 > %s" % SLOW_HOOK)
    # The timer fires at 10 s and its script claims the change, then sleeps 20 s; the commit arrives at ~12 s.
    rc, results = firewall(lab, CHANGED, timeout=10, PORTCULLIS_TEST_HOLD_AFTER="apply:12")
    assert rc != 0
    for name, result in results.items():
        assert result["failed"] and result["rolled_back"] is True, result
        assert "rolled back" in result["msg"], result["msg"]
    for host in lab.hosts:
        host.ssh("rm -f %s" % SLOW_HOOK)
        wait_for(lambda host=host: not host.armed(), 60, "the slow rollback on %s" % host.name)
        assert own_table(host) == before[host.name]
        assert history(host)[-1] == ("timer", 0)
    converges(lab, lambda: firewall(lab, CHANGED))


def test_two_runs_at_once_on_one_host(baseline):
    lab = baseline
    runs = [in_background(firewall, lab, allow) for allow in (CHANGED, CHANGED + [{"port": 9200}])]
    outcomes = [run.result(timeout=900) for run in runs]
    for rc, results in outcomes:
        for result in results.values():
            if result.get("failed"):  # the one that lost: a clear refusal, never a crash
                assert ("another Portcullis run holds the host lock" in result["msg"]
                        or "is still waiting for its confirmation" in result["msg"]), result["msg"]
                assert "Traceback" not in result.get("module_stderr", "")
    # Each host is locked on its own: on each, the run that got there first changes it, and the other waits its turn
    # or is refused. So the two runs may split the hosts between them, but no host is left to neither.
    for host in lab.hosts:
        on_host = [results.get(host.name, {}) for _rc, results in outcomes]
        assert any(not result.get("failed") and not result.get("unreachable") for result in on_host), outcomes
        assert host.reachable()
    converges(lab, lambda: firewall(lab, CHANGED))


def test_persisting_fails_at_commit(baseline):
    lab = baseline
    before = {host.name: own_table(host) for host in lab.hosts}
    persisted = {host.name: host.ssh("cat /etc/nftables.d/portcullis.nft").stdout for host in lab.hosts}
    for host in lab.hosts:  # the directory the table persists into becomes a file: the write fails
        host.ssh("mv /etc/nftables.d /etc/nftables.d.saved && touch /etc/nftables.d")
    try:
        rc, results = firewall(lab, CHANGED)
        assert rc != 0
        for result in results.values():
            assert result["failed"] and result["rolled_back"] is True, result
            assert "an immediate rollback put the previous configuration back" in result["msg"], result["msg"]
        for host in lab.hosts:
            assert own_table(host) == before[host.name]
    finally:
        for host in lab.hosts:
            host.ssh("rm -f /etc/nftables.d && mv /etc/nftables.d.saved /etc/nftables.d", check=False)
    for host in lab.hosts:
        assert host.ssh("cat /etc/nftables.d/portcullis.nft").stdout == persisted[host.name]
    converges(lab, lambda: firewall(lab, CHANGED))


SQUATTER = ("import socket, time; s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); "
            "s.bind(('0.0.0.0', %d)); s.listen(); time.sleep(600)" % NEW_PORT)


def test_a_non_root_process_named_sshd_on_the_new_port_is_not_taken_for_sshd(baseline):
    lab = baseline
    for host in lab.hosts:
        host.ssh("install -m 0755 /usr/bin/python3 /tmp/sshd && systemd-run --quiet --collect --uid=nobody --unit "
                 "portcullis-test-fake-sshd /tmp/sshd -c %s" % shlex.quote(SQUATTER))
        wait_for(lambda host=host: host.ssh("ss -H -ltnp 'sport = :%d' | grep -q sshd" % NEW_PORT,
                                            check=False).returncode == 0, 30, "the fake sshd on %s" % host.name)
    try:
        rc, results = move(lab, NEW_PORT)
        assert rc != 0
        for result in results.values():
            assert result["failed_step"] == "plan", result
            assert "port %d/tcp is already taken by sshd[" % NEW_PORT in result["msg"], result["msg"]
        for host in lab.hosts:
            assert host.reachable()
            assert json.loads(host.ssh("python3 -c 'import json, os; print(json.dumps(os.path.isdir(\"%s/armed\")))'"
                                       % STATE_DIR).stdout) is False
    finally:
        for host in lab.hosts:
            host.ssh("systemctl stop portcullis-test-fake-sshd; rm -f /tmp/sshd", check=False)
    converges(lab, lambda: firewall(lab, CHANGED))
