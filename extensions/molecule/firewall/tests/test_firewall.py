# Copyright (c) Portcullis contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Testinfra checks of portcullis.hardening.firewall on the lab hosts (molecule scenario "firewall").

On each host (testinfra's ansible backend with molecule's inventory, over SSH): the own table as
converge.yml saved it, persisted and included for boot, the foreign tables as prepare.yml saved them, and
nothing left to roll back. From the controller, in the same run: raw sockets, each a new connection, to the
host's IPv4 address (its `ansible_host`) and IPv6 address (from the lab's inventory, checked against the
host's own addresses), all probes of a host at once - the allowlist is reachable, the rest is filtered.
"""

from __future__ import annotations

import json
import os
import sys

import pytest

# The lab harness the integration tests share: probe_all() and molecule_lab_ipv6(), from the collection's tests/integration.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "..", "tests", "integration"))
from harness import molecule_lab_ipv6, probe_all  # noqa: E402  pylint: disable=wrong-import-position

RESULT_DIR = "/var/lib/portcullis-test"
PERSIST_FILE = "/etc/nftables.d/portcullis.nft"
INCLUDE_LINE = 'include "%s"' % PERSIST_FILE

# (protocol, IP version, port) -> what a new connection from the controller gets: open / refused / filtered
# for TCP, answered / silent for UDP. prepare.yml checked that tcp 7070 answered before the firewall.
REACH = [
    ("tcp", 4, 22, "open"),
    ("tcp", 4, 8080, "open"),
    ("tcp", 4, 8443, "filtered"),  # allowed for IPv6 only
    ("tcp", 4, 6379, "filtered"),  # loopback-only listener, and not allowed
    ("tcp", 4, 7070, "filtered"),  # a real listener, not allowed
    ("udp", 4, 9999, "answered"),  # allowed from the controller's network
    ("udp", 4, 7071, "silent"),  # a real listener, not allowed
    ("tcp", 6, 22, "open"),
    ("tcp", 6, 8443, "open"),
    ("tcp", 6, 8080, "refused"),  # allowed for both families; only an IPv4 program listens
    ("tcp", 6, 7070, "filtered"),
    ("udp", 6, 9999, "silent"),  # its sources are IPv4 only
]


@pytest.fixture(scope="module")
def saved(host):
    """What converge.yml saved: the rendered rules, the management ports and the lab network."""
    saved_file = host.file(RESULT_DIR + "/firewall.json")
    assert saved_file.is_file, "%s/firewall.json is missing: did converge run?" % RESULT_DIR
    return json.loads(saved_file.content_string)


def _own_table(host):
    listing = host.run("nft list table inet portcullis")
    assert listing.rc == 0, listing.stderr
    return listing.stdout


def _chain(table_text, name):
    """The rules (stripped lines) of one chain of a table listing."""
    lines, inside = [], False
    for line in table_text.splitlines():
        if line.strip() == "chain %s {" % name:
            inside = True
        elif inside and line.strip() == "}":
            return lines
        elif inside:
            lines.append(line.strip())
    return lines


def test_own_table_is_live_with_policy_drop_and_the_allowlist(host, saved):
    own = _own_table(host)
    assert own == saved["rules"], "the live table differs from what the module rendered"
    lines = [line.strip() for line in own.splitlines()]
    assert "type filter hook input priority filter; policy drop;" in lines
    assert 'ct state established,related accept comment "portcullis: replies and related traffic"' in lines
    assert 'iif "lo" accept comment "portcullis: loopback"' in lines
    allowlist = [line for line in _chain(own, "input") if 'comment "allowlist[' in line]
    assert allowlist == [
        'tcp dport 22 accept comment "allowlist[0]: SSH"',
        'tcp dport 8080 accept comment "allowlist[1]: tcp/8080 from anywhere"',
        'ip saddr {net} udp dport 9999 accept comment "allowlist[2]: udp/9999 from {net}"'.format(
            net=saved["lab_network"]),
        'meta nfproto ipv6 tcp dport 8443 accept comment "allowlist[3]: tcp/8443 ipv6 from anywhere"',
    ]
    # Ports published to containers: only new DNATed connections reach the published chain, which lets the same
    # entries in by the original destination port (the host publishes nothing here: no container networks).
    assert _chain(own, "forward") == [
        "type filter hook forward priority filter; policy accept;",
        'ct state new ct status dnat jump published comment "portcullis: new connections to published ports"',
    ]
    assert _chain(own, "published") == [
        'meta l4proto tcp ct original proto-dst 22 accept comment "allowlist[0]: SSH"',
        'meta l4proto tcp ct original proto-dst 8080 accept comment "allowlist[1]: tcp/8080 from anywhere"',
        'ip saddr {net} meta l4proto udp ct original proto-dst 9999 accept comment "allowlist[2]: udp/9999 from {net}"'
        .format(net=saved["lab_network"]),
        'meta nfproto ipv6 meta l4proto tcp ct original proto-dst 8443 accept comment "allowlist[3]: tcp/8443 ipv6 '
        'from anywhere"',
        'drop comment "portcullis: published ports the allowlist does not allow"',
    ]
    assert saved["management_ports"] == []
    assert "management port" not in own  # the allowlist opens 22 itself


def test_persisted_and_included_for_boot(host, saved):
    persisted = host.file(PERSIST_FILE)
    assert persisted.is_file and persisted.user == "root"
    assert persisted.content_string == ("add table inet portcullis\ndelete table inet portcullis\n"
                                        + saved["rules"])
    conf = host.file("/etc/nftables.conf").content_string
    lines = [line.strip() for line in conf.splitlines()]
    assert INCLUDE_LINE in lines
    assert lines.index(INCLUDE_LINE) > lines.index("flush ruleset"), "the boot flush would drop the table"
    assert host.run("nft -c -f /etc/nftables.conf").rc == 0
    assert host.service("nftables").is_enabled


def test_debian_nftables_conf_kept(host):
    original = host.file(RESULT_DIR + "/nftables.conf.before").content_string
    conf = host.file("/etc/nftables.conf").content_string
    assert original.startswith("#!/usr/sbin/nft -f") and "table inet filter" in original
    assert conf.startswith(original), "Debian's /etc/nftables.conf was changed, not only added to"
    added = [line for line in conf[len(original):].splitlines() if line.strip() and not line.startswith("#")]
    assert added == [INCLUDE_LINE]


def test_foreign_tables_byte_identical(host):
    before = host.file(RESULT_DIR + "/foreign.before").content_string
    assert "chain DOCKER-USER" in before and "fib daddr type local jump DOCKER" in before
    now = host.run("nft list table ip nat && nft list table ip filter")
    assert now.rc == 0, now.stderr
    assert now.stdout == before


def test_nothing_left_to_roll_back(host):
    assert "portcullis-rollback-" not in host.check_output("systemctl list-timers --all")
    assert host.check_output("systemctl list-units --all --plain --no-legend 'portcullis-rollback-*'") == ""
    assert "armed" not in host.file("/var/lib/portcullis").listdir()


@pytest.mark.parametrize("protocol, port", [("tcp", 7070), ("udp", 7071)])
def test_unallowed_listeners_answer_on_the_host(host, protocol, port):
    """The listeners the controller cannot reach are alive: the host itself reaches them (loopback is open)."""
    address = host.ansible.get_variables()["ansible_host"]
    kind = "SOCK_STREAM" if protocol == "tcp" else "SOCK_DGRAM"
    program = ("import socket; s = socket.socket(socket.AF_INET, socket.%s); s.settimeout(5); "
               "s.connect((%r, %d)); s.send(b'ping'); print(s.recv(100).decode())" % (kind, address, port))
    assert host.check_output("python3 -c %s", program) == "portcullis-test %s/%d" % (protocol, port)


@pytest.fixture(scope="module")
def reached(host):
    """Every probe of REACH from the controller, all at once: (protocol, version, port) -> what it got."""
    addresses = {4: host.ansible.get_variables()["ansible_host"], 6: molecule_lab_ipv6(host)}
    keys = [(protocol, version, port) for protocol, version, port, _expected in REACH if addresses[version]]
    reached = probe_all((addresses[version], protocol, port) for protocol, version, port in keys)
    return dict((key, reached[(addresses[key[1]], key[0], key[2])]) for key in keys)


@pytest.mark.parametrize("protocol, version, port, expected", REACH,
                         ids=["%s-ipv%d-%d-%s" % item for item in REACH])
def test_controller_reaches_exactly_the_allowlist(reached, protocol, version, port, expected):
    if (protocol, version, port) not in reached:
        pytest.skip("the lab network has no IPv6")
    assert reached[(protocol, version, port)] == expected
