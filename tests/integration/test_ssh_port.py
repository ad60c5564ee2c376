# Copyright (c) Portcullis contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""portcullis.hardening.ssh_port end to end on the test lab (Debian 12 and 13), over real SSH.

Each host is moved 22 -> 2222 over the very connection being moved, the play goes on over the new port, a
re-run whose inventory still says 22 changes nothing, and the host is moved back. Then the faults: the new
port taken by another process, blocked by a rule that was there before, and an sshd configuration that
fails `sshd -t`; each must end with the host reachable on 22, its configuration as it was and a message
that says what went wrong. Every reachability check is a new SSH connection (ControlMaster=no); the
playbooks run with fresh connections too (harness.run_play).

This module runs last in the suite (file order) and puts each host back as it found it, through
`podman exec` by container id when SSH no longer answers.
"""

from __future__ import annotations

import shlex

import pytest

from harness import run_play

NEW_PORT = 2222
SSH_FILES = "/etc/ssh/sshd_config /etc/ssh/sshd_config.d /etc/systemd/system/ssh.socket.d /var/lib/portcullis"
# What must be the same before and after a failed move: files, listeners and the units left behind.
# The change engine's history (/var/lib/portcullis/history) records every change, failed ones too.
SNAPSHOT = ("find %s -type f ! -name firewall.json ! -path '/var/lib/portcullis/history/*' "
            "-exec sha256sum {} + 2>/dev/null | sort; "
            "ss -H -ltn | awk '{print $4}' | sort; "
            "systemctl list-units --all --plain --no-legend 'portcullis-rollback-*'" % SSH_FILES)
# Put a host back by container id (used only when SSH does not answer on 22).
RESTORE = ("rm -f /etc/ssh/sshd_config.d/portcullis-ssh-port.conf /etc/ssh/sshd_config.d/broken.conf; "
           "rm -rf /etc/systemd/system/ssh.socket.d /var/lib/portcullis/armed; "
           "nft delete table inet portcullis_test_blocker 2>/dev/null; "
           "systemctl stop portcullis-test-squatter 2>/dev/null; "
           "systemctl daemon-reload; systemctl restart ssh.service")


def ssh_on(lab_host, port, command, ipv6=False, check=True):
    """A command over a new SSH connection to `port` (IPv4 address, or the IPv6 one)."""
    return lab_host.ssh(command, check=check, timeout=60, ipv6=ipv6, port=port, connect_timeout=5)


def answers(lab_host, port, ipv6=False):
    return ssh_on(lab_host, port, "true", ipv6=ipv6, check=False).returncode == 0


def play(lab_host, tasks, check_mode=False):
    """Run a play of `tasks` on one host (fresh SSH connections); return (rc, {task name: result})."""
    completed, results = run_play(lab_host.inventory, tasks, lab_host.name,
                                  ["--check", "--diff"] if check_mode else [])
    return completed.returncode, {name: hosts.get(lab_host.name) for name, hosts in results.items()}


def move(port, **options):
    return {"name": "move", "portcullis.hardening.ssh_port": dict(port=port, confirm_timeout=60, **options),
            "register": "moved"}


SWITCH = {"name": "switch", "ansible.builtin.set_fact": {"ansible_port": "{{ moved.ansible_port }}"},
          "when": "moved.ansible_port is defined"}
AFTER = {"name": "after", "ansible.builtin.command": {"argv": ["cat", "/proc/sys/kernel/hostname"]},
         "changed_when": False}


def snapshot(lab_host):
    return ssh_on(lab_host, 22, SNAPSHOT).stdout


@pytest.fixture
def on_22(lab_host):
    """The host answers on 22 before the test, and is put back on 22 (by container id if need be) after it."""
    if not answers(lab_host, 22):
        restore(lab_host)
    assert answers(lab_host, 22), "%s does not answer on port 22 before the test" % lab_host.name
    yield lab_host
    if not answers(lab_host, 22) or answers(lab_host, NEW_PORT):
        restore(lab_host)
    assert answers(lab_host, 22), "%s does not answer on port 22 after the test" % lab_host.name


def restore(lab_host):
    lab_host.console(RESTORE, check=False)


def test_check_mode_plans_the_move_and_changes_nothing(on_22):
    before = snapshot(on_22)
    rc, results = play(on_22, [move(NEW_PORT)], check_mode=True)
    assert rc == 0, results
    planned = results["move"]
    assert planned["changed"] and planned["ansible_port"] == 22
    assert planned["steps"] == ["found sshd on 22", "plan"]
    changed_files = [diff["after_header"] for diff in planned["diff"]]
    assert changed_files == ["/etc/ssh/sshd_config.d/portcullis-ssh-port.conf"]
    assert "Port %d\n" % NEW_PORT in planned["diff"][0]["after"]
    assert snapshot(on_22) == before
    assert not answers(on_22, NEW_PORT)


def test_move_over_the_moved_connection_then_rerun_with_the_stale_inventory_then_back(on_22):
    rc, results = play(on_22, [move(NEW_PORT), SWITCH, AFTER])
    moved = results["move"]
    assert rc == 0, moved.get("msg")
    assert moved["changed"]
    assert [step.partition(":")[0] for step in moved["steps"]] == [
        "found sshd on 22", "plan", "transition", "host key on %d" % NEW_PORT, "new connection on %d" % NEW_PORT,
        "finalize", "commit"]
    # The server on the new port proved to hold the host key of the one on 22, before anything logged in there.
    assert "present the same" in moved["steps"][3], moved["steps"][3]
    assert moved["ansible_port"] == NEW_PORT
    assert results["after"]["stdout"] == on_22.name  # the play went on, over the new port
    # sshd listens on the new port on every address it listened on before (IPv4 and IPv6), and only there.
    assert sorted(address.replace(":22", ":%d" % NEW_PORT) for address in moved["listening_before"]) \
        == sorted(moved["listening_after"])
    assert moved["old_port_closed"] == {"22": True}
    assert answers(on_22, NEW_PORT) and answers(on_22, NEW_PORT, ipv6=True)
    assert not answers(on_22, 22) and not answers(on_22, 22, ipv6=True)
    effective = ssh_on(on_22, NEW_PORT, "sshd -T | grep -i '^port '").stdout.split("\n")
    assert [line for line in effective if line] == ["port %d" % NEW_PORT]
    # Committed: nothing armed, no rollback unit left, the change in the engine's history.
    left = ssh_on(on_22, NEW_PORT, "ls /var/lib/portcullis; systemctl list-units --all --plain --no-legend "
                  "'portcullis-rollback-*'", check=False).stdout.split()
    assert "armed" not in left and "history" in left and not [name for name in left if name.endswith(".timer")]

    # The inventory still says 22: sshd is found on the new port, nothing changes and the play goes on.
    rc, results = play(on_22, [move(NEW_PORT), SWITCH, AFTER])
    again = results["move"]
    assert rc == 0, again.get("msg")
    assert not again["changed"]
    assert again["steps"] == ["found sshd on %d" % NEW_PORT, "plan"]
    assert again["ansible_port"] == NEW_PORT
    assert results["after"]["stdout"] == on_22.name

    # And back to 22, found through previous_ports.
    rc, results = play(on_22, [move(22, previous_ports=[NEW_PORT]), SWITCH, AFTER])
    assert rc == 0, results["move"].get("msg")
    assert results["move"]["changed"] and results["move"]["ansible_port"] == 22
    assert answers(on_22, 22) and not answers(on_22, NEW_PORT)


def _failed_move(lab_host, port=NEW_PORT):
    before = snapshot(lab_host)
    rc, results = play(lab_host, [move(port), SWITCH, AFTER])
    failed = results["move"]
    assert rc != 0 and failed.get("failed"), failed
    assert "after" not in results or results["after"] is None
    assert answers(lab_host, 22), "the host must answer on 22 after a failed move"
    assert answers(lab_host, 22, ipv6=True)
    assert snapshot(lab_host) == before, "a failed move must leave the host as it was"
    return failed


def test_port_taken_by_another_process_is_refused_before_any_change(on_22):
    failed = _failed_move(on_22, 8080)  # the lab's rogue web server
    assert failed["failed_step"] == "plan"
    assert "port 8080/tcp is already taken by portcullis-rogu[" in failed["msg"]
    assert "nothing was changed" in failed["msg"]


def test_new_port_already_taken_is_refused(on_22):
    squatter = shlex.quote("import socket, time; s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, "
                           "socket.SO_REUSEADDR, 1); s.bind(('0.0.0.0', %d)); s.listen(); time.sleep(600)" % NEW_PORT)
    ssh_on(on_22, 22, "systemd-run --quiet --collect --unit portcullis-test-squatter python3 -c %s && for _ in "
           "$(seq 40); do ss -H -ltn 'sport = :%d' | grep -q . && exit 0; sleep 0.25; done; exit 1"
           % (squatter, NEW_PORT))
    try:
        failed = _failed_move(on_22)
        assert failed["failed_step"] == "plan"
        assert "port %d/tcp is already taken by python3[" % NEW_PORT in failed["msg"]
    finally:
        ssh_on(on_22, 22, "systemctl stop portcullis-test-squatter", check=False)


def test_new_port_blocked_by_an_existing_rule_rolls_back(on_22):
    ssh_on(on_22, 22, "nft add table inet portcullis_test_blocker && nft add chain inet portcullis_test_blocker "
                      "input '{ type filter hook input priority -10; }' && nft add rule inet portcullis_test_blocker "
                      "input tcp dport %d drop" % NEW_PORT)
    try:
        failed = _failed_move(on_22)
        # The controller's first look at the new port (its host key, before any login) already fails.
        assert failed["failed_step"] == "host key on %d" % NEW_PORT
        assert failed["rolled_back"] is True
        assert "the new port %d could not be proven from the controller" % NEW_PORT in failed["msg"]
        assert "The previous configuration was restored" in failed["msg"]
    finally:
        ssh_on(on_22, 22, "nft delete table inet portcullis_test_blocker", check=False)


def test_sshd_configuration_that_fails_sshd_t_is_refused(on_22):
    ssh_on(on_22, 22, "echo 'NoSuchOption yes' > /etc/ssh/sshd_config.d/broken.conf")
    try:
        failed = _failed_move(on_22)
        assert failed["failed_step"] == "plan"
        assert "sshd -t rejects the configuration" in failed["msg"]
        assert "Bad configuration option: NoSuchOption" in failed["msg"]
    finally:
        ssh_on(on_22, 22, "rm -f /etc/ssh/sshd_config.d/broken.conf", check=False)


def test_bad_input_names_the_option_and_changes_nothing(on_22):
    before = snapshot(on_22)
    for options, message in (({"port": 70000}, "port: 70000 is outside 1-65535"),
                             ({"port": NEW_PORT, "listen_addresses": ["10.0.0.1:22"]},
                              "listen_addresses[0]: '10.0.0.1:22' is not an IPv4 or IPv6 address"),
                             ({"port": NEW_PORT, "confirm_timeout": 5}, "confirm_timeout: 5 must be within")):
        port = options.pop("port")
        rc, results = play(on_22, [{"name": "move", "portcullis.hardening.ssh_port": dict(port=port, **options)}])
        assert rc != 0 and message in results["move"]["msg"], results["move"]
    assert snapshot(on_22) == before
