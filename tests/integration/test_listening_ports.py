# Copyright (c) Portcullis contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""listening_ports on real lab hosts, compared with `ss -H -lntup` listener by listener.

ss is only the reference here: the module itself never runs it.
"""

from __future__ import annotations

import re
import uuid

import pytest

SS_LINE = re.compile(r"^(?P<proto>tcp|udp)\s+\S+\s+\d+\s+\d+\s+(?P<local>\S+)\s+\S+\s*(?P<users>.*)$")
# The lab's rogue listeners run /usr/local/bin/portcullis-rogue: the kernel keeps 15 characters of its name.
ROGUE = "portcullis-rogu"
SS_USER = re.compile(r'\("(?P<name>[^"]*)",pid=(?P<pid>\d+),fd=\d+\)')

# Extra hard cases started inside the host as a transient unit, on top of the lab's rogue listeners:
# an IPv6 socket bound to an IPv4-mapped address, a UDP socket on ::1, and a connected UDP socket
# (not listening: must not be reported).
HARD_CASES = r"""
import socket, time
mapped = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
mapped.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
mapped.bind(("::ffff:127.0.0.1", 7001)); mapped.listen()
udp6 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM); udp6.bind(("::1", 7002))
connected = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); connected.bind(("127.0.0.1", 7003))
connected.connect(("127.0.0.1", 9))
time.sleep(600)
"""


def parse_ss(text):
    """{(protocol, family, address, port): sorted [(pid, name)]} from `ss -H -lntup`."""
    sockets = {}
    for line in text.splitlines():
        match = SS_LINE.match(line)
        assert match, "unexpected ss line: %r" % line
        host, _sep, port = match.group("local").rpartition(":")
        host = host.split("%")[0]  # drop a bound device: 127.0.0.53%lo, [fe80::1]%eth0
        if host == "*":  # ss prints a dual-stack [::] socket as *
            family, host = "ipv6", "::"
        elif host.startswith("["):
            family, host = "ipv6", host[1:-1]
        else:
            family = "ipv4"
        owners = sorted((int(m.group("pid")), m.group("name")) for m in SS_USER.finditer(match.group("users")))
        key = (match.group("proto"), family, host, int(port))
        assert key not in sockets or key[3] == 0, "duplicate socket in ss output: %r" % (key,)
        sockets[key] = owners
    return sockets


def unit_pids(host, unit):
    """Every pid in a unit's cgroup (unified or hybrid hierarchy), without ps or pgrep on the host."""
    cgroup = host.ssh(["systemctl", "show", "-p", "ControlGroup", "--value", unit]).stdout.strip()
    assert cgroup, "%s has no control group on %s" % (unit, host.name)
    for mount in ("/sys/fs/cgroup", "/sys/fs/cgroup/unified", "/sys/fs/cgroup/systemd"):
        pids = host.ssh(["cat", mount + cgroup + "/cgroup.procs"], check=False).stdout.split()
        if pids:
            return sorted(int(pid) for pid in pids)
    raise AssertionError("no cgroup.procs for %s on %s" % (unit, host.name))


def from_module(listeners):
    return {(item["protocol"], item["family"], item["address"], item["port"]):
            sorted((process["pid"], process["name"]) for process in item["processes"])
            for item in listeners}


def test_matches_ss_exactly(lab_host):
    result = lab_host.module("portcullis.hardening.listening_ports")
    assert not result.get("failed"), result
    assert result["changed"] is False
    assert result["scan"]["complete"] is True
    assert "ansible_facts" not in result
    reference = parse_ss(lab_host.ssh("ss -H -lntup").stdout)
    assert from_module(result["listeners"]) == reference


def test_lab_rogue_listeners_with_process_user_and_unit(lab_host):
    listeners = lab_host.module("portcullis.hardening.listening_ports")["listeners"]
    by_key = {(item["protocol"], item["address"], item["port"]): item for item in listeners}
    expected = {
        ("tcp", "0.0.0.0", 22): ("root", "sshd", "ssh.service", False, True),
        ("tcp", "::", 22): ("root", "sshd", "ssh.service", False, True),
        ("tcp", "0.0.0.0", 8080): ("root", ROGUE, "portcullis-rogue-web.service", False, True),
        ("udp", "0.0.0.0", 9999): ("nobody", ROGUE, "portcullis-rogue-udp.service", False, True),
        ("tcp", "::", 8443): ("root", ROGUE, "portcullis-rogue-v6.service", False, True),
        ("tcp", "127.0.0.1", 6379): ("root", ROGUE, "portcullis-rogue-loopback.service", True, False),
    }
    for key, (user, name, unit, loopback, wildcard) in expected.items():
        assert key in by_key, "%s not discovered on %s" % (key, lab_host.name)
        item = by_key[key]
        assert (item["user"], item["loopback"], item["wildcard"]) == (user, loopback, wildcard), item
        assert item["processes"], item
        assert {(p["name"], p["unit"]) for p in item["processes"]} == {(name, unit)}, item
        if name == ROGUE:
            assert all(p["cmdline"].startswith("/usr/bin/python3 /usr/local/bin/portcullis-rogue --proto ")
                       for p in item["processes"]), item
    # The pre-forked web server: one socket, held by the main process and each worker.
    web = by_key[("tcp", "0.0.0.0", 8080)]
    assert len(web["processes"]) >= 3
    assert unit_pids(lab_host, "portcullis-rogue-web.service") == [p["pid"] for p in web["processes"]]


@pytest.fixture
def hard_cases(lab_host):
    unit = "portcullis-it-%s" % uuid.uuid4().hex[:10]
    lab_host.ssh(["systemd-run", "--unit", unit, "--property", "RuntimeMaxSec=600", "/usr/bin/python3", "-c",
                  HARD_CASES])
    for _attempt in range(60):
        if ":7002" in lab_host.ssh("ss -H -lnu").stdout:
            break
        lab_host.ssh("sleep 0.5")
    else:
        raise AssertionError("the hard-case listeners did not start on %s" % lab_host.name)
    yield unit
    lab_host.ssh(["systemctl", "stop", unit + ".service"], check=False)


def test_hard_cases_match_ss(lab_host, hard_cases):
    result = lab_host.module("portcullis.hardening.listening_ports")
    found = from_module(result["listeners"])
    assert found == parse_ss(lab_host.ssh("ss -H -lntup").stdout)
    by_key = {(item["protocol"], item["address"], item["port"]): item for item in result["listeners"]}
    mapped = by_key[("tcp", "::ffff:127.0.0.1", 7001)]
    assert (mapped["family"], mapped["loopback"], mapped["wildcard"]) == ("ipv6", True, False)
    assert mapped["processes"][0]["unit"] == hard_cases + ".service"
    assert by_key[("udp", "::1", 7002)]["loopback"] is True
    assert not [key for key in by_key if key[2] == 7003], "a connected UDP socket is not listening"


def test_filters_and_bad_options(lab_host):
    only_udp6 = lab_host.module("portcullis.hardening.listening_ports", "protocols=udp families=ipv6")
    assert {(item["protocol"], item["family"]) for item in only_udp6["listeners"]} <= {("udp", "ipv6")}
    bad = lab_host.module("portcullis.hardening.listening_ports", "protocols=icmp")
    assert bad["failed"] is True
    assert "protocols" in bad["msg"] and "icmp" in bad["msg"], bad["msg"]


def test_unprivileged_run_lists_sockets_and_says_what_it_could_not_see(lab_host):
    result = lab_host.module("portcullis.hardening.listening_ports", become_user="nobody")
    assert not result.get("failed"), result
    assert result["scan"]["complete"] is False and result["scan"]["unreadable_pids"]
    assert any("could not be read" in warning for warning in result.get("warnings", []))
    as_root = lab_host.module("portcullis.hardening.listening_ports")
    # Every socket is still listed; only the owners of other users' processes are unknown.
    assert set(from_module(result["listeners"])) == set(from_module(as_root["listeners"]))
    udp = [item for item in result["listeners"] if item["port"] == 9999][0]
    assert [p["name"] for p in udp["processes"]] == [ROGUE]  # nobody's own process stays visible
