# Copyright (c) Portcullis contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Testinfra checks of portcullis.hardening.listening_ports on the lab hosts (molecule scenario "discovery").

converge.yml saved the module's answer in /var/lib/portcullis-test/listening_ports.json on each host.
These tests read it over SSH (testinfra's ansible backend with molecule's inventory) and compare it
with what systemd, /proc and `ss` say on the same host. `ss` serves only as the reference here.
"""

from __future__ import annotations

import ipaddress
import json
import os
import sys

import pytest

# The lab harness the integration tests share: ss_sockets(), from the collection's tests/integration.
COLLECTION = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "..")
sys.path.insert(0, os.path.join(COLLECTION, "tests", "integration"))
from harness import ss_sockets  # noqa: E402  pylint: disable=wrong-import-position

SAVED = "/var/lib/portcullis-test/listening_ports.json"
# /proc/<pid>/comm of a script started through its #! line is the script's file name, cut to 15 bytes.
ROGUE = "portcullis-rogu"
WEB_UNIT = "portcullis-rogue-web.service"

# What the lab runs on every host: protocol, family, address, port, user, process name, systemd unit.
EXPECTED = [
    ("tcp", "ipv4", "0.0.0.0", 8080, "root", ROGUE, WEB_UNIT),
    ("udp", "ipv4", "0.0.0.0", 9999, "nobody", ROGUE, "portcullis-rogue-udp.service"),
    ("tcp", "ipv6", "::", 8443, "root", ROGUE, "portcullis-rogue-v6.service"),
    ("tcp", "ipv4", "127.0.0.1", 6379, "root", ROGUE, "portcullis-rogue-loopback.service"),
    ("tcp", "ipv4", "0.0.0.0", 22, "root", "sshd", "ssh.service"),
    ("tcp", "ipv6", "::", 22, "root", "sshd", "ssh.service"),
]


def _expected_id(expected):
    return "%s-%s-%s" % (expected[0], expected[3], expected[1])


@pytest.fixture(scope="module")
def answer(host):
    """The module's answer that converge.yml saved on the host."""
    saved = host.file(SAVED)
    assert saved.is_file, "%s is missing: did converge run?" % SAVED
    assert saved.user == "root" and saved.mode == 0o600
    return json.loads(saved.content_string)


def _key(listener):
    return (listener["protocol"], listener["family"], listener["address"], listener["port"])


def _find(answer, protocol, family, address, port):
    found = [item for item in answer["listeners"] if _key(item) == (protocol, family, address, port)]
    assert len(found) == 1, "%s %s [%s]:%d listed %d times in %s" % (
        protocol, family, address, port, len(found), sorted(_key(item) for item in answer["listeners"]))
    return found[0]


def _main_pid(host, unit):
    pid = int(host.check_output("systemctl show --property=MainPID --value %s", unit))
    assert pid > 0, "%s has no main process" % unit
    return pid


def _unit_pids(host, unit):
    """Pids in the unit's cgroup, from cgroup.procs (systemd's own hierarchy on cgroup v1/hybrid hosts)."""
    group = host.check_output("systemctl show --property=ControlGroup --value %s", unit)
    assert group.startswith("/"), "%s has no control group" % unit
    for root in ("/sys/fs/cgroup/systemd", "/sys/fs/cgroup/unified", "/sys/fs/cgroup"):
        procs = host.file(root + group + "/cgroup.procs")
        if procs.exists:
            return sorted(int(pid) for pid in procs.content_string.split())
    raise AssertionError("no cgroup.procs for %s (control group %s)" % (unit, group))


def _proc_status(host, pid, field):
    for line in host.file("/proc/%d/status" % pid).content_string.splitlines():
        if line.startswith(field + ":"):
            return line.split(":", 1)[1].strip()
    raise AssertionError("/proc/%d/status has no %s" % (pid, field))


def _proc_argv(host, pid):
    return [arg.decode() for arg in host.file("/proc/%d/cmdline" % pid).content.split(b"\0") if arg]


def _ss_sockets(host):
    """(protocol, address, port) of every listening TCP and bound UDP socket, as `ss -H -lntu` prints them."""
    return {(protocol, address, port)
            for protocol, _family, address, port in ss_sockets(host.check_output("ss -H -lntu"))}


def test_reached_over_real_ssh(host):
    hostvars = host.ansible.get_variables()
    assert hostvars["ansible_connection"] == "ssh"
    assert "StrictHostKeyChecking=yes" in hostvars["ansible_ssh_common_args"]
    client, _client_port, server, server_port = host.check_output("echo $SSH_CONNECTION").split()
    assert ipaddress.ip_address(client)
    assert (server, server_port) == (hostvars["ansible_host"], "22")
    assert host.check_output("id -un") == "root"


def test_scan_was_complete(answer):
    assert answer["changed"] is False
    assert answer["scan_complete"] is True
    assert answer["scan_unreadable_pids"] == []
    assert answer["scan_missing_tables"] == []


def test_fact_is_the_same_list_and_each_run_returns_it_once(answer):
    assert answer["listeners"]
    assert answer["fact_portcullis_listeners"] == answer["listeners"]
    assert answer["listeners_only_once"] is True


@pytest.mark.parametrize("expected", EXPECTED, ids=[_expected_id(expected) for expected in EXPECTED])
def test_listener_found_with_owner_processes_and_unit(host, answer, expected):
    protocol, family, address, port, user, name, unit = expected
    listener = _find(answer, protocol, family, address, port)

    assert listener["user"] == user
    assert listener["uid"] == host.user(user).uid
    assert listener["interface"] is None
    assert listener["loopback"] is (address == "127.0.0.1")
    assert listener["wildcard"] is (address in ("0.0.0.0", "::"))

    processes = listener["processes"]
    assert processes, "no process listed for %s" % (_key(listener),)
    assert sorted({process["name"] for process in processes}) == [name]
    assert sorted({process["unit"] for process in processes}) == [unit]
    main = _main_pid(host, unit)
    pids = [process["pid"] for process in processes]
    assert main in pids
    assert set(pids) <= set(_unit_pids(host, unit))
    for process in processes:
        # Each listed process really holds this socket, and runs the program systemd started.
        assert ("socket:[%d]" % listener["inode"]) in host.check_output("ls -l /proc/%d/fd" % process["pid"])
        assert host.file("/proc/%d/comm" % process["pid"]).content_string.strip() == name
        assert process["cmdline"] == " ".join(_proc_argv(host, process["pid"]))
        assert int(_proc_status(host, process["pid"], "Uid").split()[0]) == listener["uid"]
    if name == ROGUE:
        assert "--port %d" % port in processes[0]["cmdline"]


def test_preforked_web_server_lists_every_process(host, answer):
    listener = _find(answer, "tcp", "ipv4", "0.0.0.0", 8080)
    pids = sorted(process["pid"] for process in listener["processes"])
    main = _main_pid(host, WEB_UNIT)
    argv = _proc_argv(host, main)
    workers = int(argv[argv.index("--workers") + 1])

    assert workers >= 2
    assert pids == _unit_pids(host, WEB_UNIT)
    assert len(pids) == workers + 1
    assert [pid for pid in pids if pid != main] == sorted(
        pid for pid in pids if pid != main and int(_proc_status(host, pid, "PPid")) == main)
    assert len({process["cmdline"] for process in listener["processes"]}) == 1


def test_sshd_listens_on_both_families(host, answer):
    main = _main_pid(host, "ssh.service")
    for family, address in (("ipv4", "0.0.0.0"), ("ipv6", "::")):
        listener = _find(answer, "tcp", family, address, 22)
        assert listener["wildcard"] is True and listener["loopback"] is False
        assert [(p["pid"], p["name"], p["unit"]) for p in listener["processes"]] == [(main, "sshd", "ssh.service")]


def test_loopback_and_wildcard_flags(answer):
    for listener in answer["listeners"]:
        address = ipaddress.ip_address(listener["address"])
        if getattr(address, "ipv4_mapped", None):
            address = address.ipv4_mapped
        assert listener["loopback"] is address.is_loopback, listener
        assert listener["wildcard"] is address.is_unspecified, listener


def test_same_sockets_as_ss(host, answer):
    found = {(item["protocol"], item["address"], item["port"]) for item in answer["listeners"]}
    assert found == _ss_sockets(host)


def test_fresh_discovery_agrees_with_saved_answer(host, answer):
    """The sockets and processes have not changed since converge, so the saved answer is current."""
    result = host.ansible("portcullis.hardening.listening_ports", check=True)
    assert result["changed"] is False

    def summary(listeners):
        return sorted((_key(item), item["inode"], item["uid"], tuple(p["pid"] for p in item["processes"]))
                      for item in listeners)
    assert summary(result["listeners"]) == summary(answer["listeners"])
    assert "ansible_facts" not in result
