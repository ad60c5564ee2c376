# Copyright (c) Portcullis contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Testinfra checks of portcullis.hardening.firewall through firewalld on the lab host (molecule scenario "firewalld").

On the host (testinfra's ansible backend with molecule's inventory, over SSH): firewalld running with default zone
public, whose runtime and permanent configuration have 8181/tcp, no 9090/tcp and still the service ssh, the live
nftables table of firewalld agreeing, and what converge.yml saved agrees. From the controller: raw sockets, each a
new connection, to the host's IPv4 address (its `ansible_host`) and IPv6 address (from the lab's inventory, checked
against the host's own addresses), all probes at once - 22 and 8181 answer, 9090 (open in firewalld before the
firewall ran) and 7070 are rejected (zone public's target), though their listeners run.
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
ZONE = "public"
WHERE = {"runtime": [], "permanent": ["--permanent"]}

# (IP version, TCP port) -> what a new connection from the controller gets: open / refused / filtered / rejected.
# Every port has a dual-stack listener (prepare.yml; 22 is sshd): what is not open is the firewall's doing.
# firewalld answers what its zone does not allow as the zone's target says, and the firewall keeps the target
# (target default: `reject with icmpx admin-prohibited` in table inet firewalld), whatever its `policy` (drop by
# default) says: so a port the allowlist does not open is rejected at once, not silently dropped.
REACH = [
    (4, 22, "open"),
    (4, 8181, "open"),
    (4, 9090, "rejected"),  # firewalld had it open before; the allowlist does not
    (4, 7070, "rejected"),
    (6, 22, "open"),
    (6, 8181, "open"),
    (6, 9090, "rejected"),
    (6, 7070, "rejected"),
]


def _zone(host, where):
    """`firewall-cmd --list-all` of zone public (runtime or permanent) as {key: [values]}."""
    listing = host.check_output(" ".join(["firewall-cmd"] + WHERE[where] + ["--zone=" + ZONE, "--list-all"]))
    zone = {}
    for line in listing.splitlines()[1:]:
        key, _sep, value = line.strip().partition(":")
        zone[key] = value.split()
    return zone


@pytest.fixture(scope="module")
def saved(host):
    """What converge.yml saved: the backend and the rules the module reported."""
    saved_file = host.file(RESULT_DIR + "/firewall.json")
    assert saved_file.is_file, "%s/firewall.json is missing: did converge run?" % RESULT_DIR
    return json.loads(saved_file.content_string)


def test_firewalld_running_with_default_zone_public(host):
    assert host.check_output("firewall-cmd --state") == "running"
    assert host.check_output("firewall-cmd --get-default-zone") == ZONE
    assert host.service("firewalld").is_running and host.service("firewalld").is_enabled


@pytest.mark.parametrize("where", ["runtime", "permanent"])
def test_zone_public_has_8181_and_not_9090(host, where):
    zone = _zone(host, where)
    assert "8181/tcp" in zone["ports"], zone
    assert "9090/tcp" not in zone["ports"], zone
    assert not [rule for rule in zone.get("rich rules", []) if "9090" in rule], zone


@pytest.mark.parametrize("where", ["runtime", "permanent"])
def test_zone_public_keeps_ssh_and_dhcpv6_client(host, where):
    services = _zone(host, where)["services"]
    assert "ssh" in services and "dhcpv6-client" in services, services


def test_live_table_opens_8181_and_not_9090(host):
    """What firewalld loaded into the kernel (its nftables table), not only what it says."""
    table = host.check_output("nft list table inet firewalld")
    assert "tcp dport 8181 accept" in table
    assert "9090" not in table


def test_saved_result_is_firewalld(saved):
    assert saved["backend"] == "firewalld"
    assert "8181/tcp" in saved["rules"] and "9090" not in saved["rules"], saved["rules"]


@pytest.mark.parametrize("port", [9090, 7070])
def test_closed_listeners_answer_on_the_host(host, port):
    """The listeners the controller cannot reach are alive: the host itself reaches them (loopback is open)."""
    address = host.ansible.get_variables()["ansible_host"]
    program = ("import socket; s = socket.create_connection((%r, %d), timeout=5); print(s.recv(100).decode())"
               % (address, port))
    assert host.check_output("python3 -c %s", program) == "portcullis-test tcp/%d" % port


@pytest.fixture(scope="module")
def reached(host):
    """Every probe of REACH from the controller, all at once: (version, port) -> what it got."""
    addresses = {4: host.ansible.get_variables()["ansible_host"], 6: molecule_lab_ipv6(host, "firewalld")}
    reached = probe_all((addresses[version], "tcp", port) for version, port, _expected in REACH if addresses[version])
    return dict(((version, port), reached[(addresses[version], "tcp", port)])
                for version, port, _expected in REACH if addresses[version])


@pytest.mark.parametrize("version, port, expected", REACH, ids=["ipv%d-%d-%s" % item for item in REACH])
def test_controller_reaches_exactly_the_allowlist(reached, version, port, expected):
    if (version, port) not in reached:
        pytest.skip("the lab network has no IPv6")
    assert reached[(version, port)] == expected
