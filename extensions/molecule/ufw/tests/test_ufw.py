# Copyright (c) Portcullis contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Testinfra checks of portcullis.hardening.firewall through ufw on the lab host (molecule scenario "ufw").

On the host (testinfra's ansible backend with molecule's inventory, over SSH): ufw active with default deny
incoming, a Portcullis rule (comment `portcullis...`) for tcp 8181 in both families, in ufw's files and live in
iptables/ip6tables, the lab's 22/tcp rule still there, no 9090 rule left, and what converge.yml saved agrees. From
the controller: raw sockets, each a new connection, to the host's IPv4 address (its `ansible_host`) and IPv6 address
(from the lab's inventory, checked against the host's own addresses), all probes at once - 22 and 8181 answer, 9090
(allowed by ufw before the firewall ran) and 7070 are filtered, though their listeners run.
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
RULE_FILES = {"ipv4": "/etc/ufw/user.rules", "ipv6": "/etc/ufw/user6.rules"}
ANYWHERE = {"ipv4": "0.0.0.0/0", "ipv6": "::/0"}

# (IP version, TCP port) -> what a new connection from the controller gets: open / refused / filtered.
# Every port has a dual-stack listener (prepare.yml; 22 is sshd): what is not open is the firewall's doing.
REACH = [
    (4, 22, "open"),
    (4, 8181, "open"),
    (4, 9090, "filtered"),  # ufw allowed it before; the allowlist does not
    (4, 7070, "filtered"),
    (6, 22, "open"),
    (6, 8181, "open"),
    (6, 9090, "filtered"),
    (6, 7070, "filtered"),
]


def _tuples(host, family):
    """ufw's user rules of one family, as its `### tuple ###` lines say: [{fields, comment}]."""
    rules = []
    for line in host.file(RULE_FILES[family]).content_string.splitlines():
        if not line.startswith("### tuple ###"):
            continue
        body, _sep, hexed = line[len("### tuple ###"):].partition(" comment=")
        rules.append({"fields": body.split(), "comment": bytes.fromhex(hexed.strip()).decode() if hexed else ""})
    return rules


def _incoming_allows(host, family, port):
    """The incoming allow rules of one family for tcp `port` from anywhere to anywhere."""
    return [rule for rule in _tuples(host, family)
            if rule["fields"][:6] == ["allow", "tcp", str(port), ANYWHERE[family], "any", ANYWHERE[family]]
            and rule["fields"][-1] == "in"]


@pytest.fixture(scope="module")
def saved(host):
    """What converge.yml saved: the backend and the rules the module reported."""
    saved_file = host.file(RESULT_DIR + "/firewall.json")
    assert saved_file.is_file, "%s/firewall.json is missing: did converge run?" % RESULT_DIR
    return json.loads(saved_file.content_string)


def test_ufw_active_with_default_deny_incoming(host):
    status = host.check_output("ufw status verbose").splitlines()
    assert "Status: active" in status
    assert any(line.startswith("Default: deny (incoming)") for line in status), status
    assert "ENABLED=yes" in host.file("/etc/ufw/ufw.conf").content_string.splitlines()
    assert 'DEFAULT_INPUT_POLICY="DROP"' in host.file("/etc/default/ufw").content_string.splitlines()


@pytest.mark.parametrize("family", ["ipv4", "ipv6"])
def test_portcullis_rule_for_8181(host, family):
    rules = _incoming_allows(host, family, 8181)
    assert len(rules) == 1, rules
    assert rules[0]["comment"].startswith("portcullis"), rules


@pytest.mark.parametrize("family", ["ipv4", "ipv6"])
def test_ssh_rule_still_there(host, family):
    assert len(_incoming_allows(host, family, 22)) == 1, _tuples(host, family)


@pytest.mark.parametrize("family", ["ipv4", "ipv6"])
def test_no_9090_rule_left(host, family):
    assert [rule for rule in _tuples(host, family) if "9090" in rule["fields"]] == []


@pytest.mark.parametrize("command, chain", [("iptables", "ufw-user-input"), ("ip6tables", "ufw6-user-input")])
def test_live_rules_open_8181_and_22_and_not_9090(host, command, chain):
    """What ufw loaded into the kernel (iptables-nft), not only its files."""
    live = host.check_output("%s -S %s", command, chain).splitlines()
    for port in (22, 8181):
        assert any("--dport %d " % port in line and line.endswith("-j ACCEPT") for line in live), live
    assert not [line for line in live if "9090" in line], live


def test_saved_result_is_ufw(saved):
    assert saved["backend"] == "ufw"
    rules = saved["rules"].splitlines()
    assert "ufw default deny incoming" in rules
    ours = [line for line in rules if " port 8181 " in line + " "]
    assert len(ours) == 2 and all("comment 'portcullis" in line for line in ours), rules
    assert not [line for line in rules if "9090" in line], rules


@pytest.mark.parametrize("port", [9090, 7070])
def test_filtered_listeners_answer_on_the_host(host, port):
    """The listeners the controller cannot reach are alive: the host itself reaches them (loopback is open)."""
    address = host.ansible.get_variables()["ansible_host"]
    program = ("import socket; s = socket.create_connection((%r, %d), timeout=5); print(s.recv(100).decode())"
               % (address, port))
    assert host.check_output("python3 -c %s", program) == "portcullis-test tcp/%d" % port


@pytest.fixture(scope="module")
def reached(host):
    """Every probe of REACH from the controller, all at once: (version, port) -> what it got."""
    addresses = {4: host.ansible.get_variables()["ansible_host"], 6: molecule_lab_ipv6(host, "ufw")}
    reached = probe_all((addresses[version], "tcp", port) for version, port, _expected in REACH if addresses[version])
    return dict(((version, port), reached[(addresses[version], "tcp", port)])
                for version, port, _expected in REACH if addresses[version])


@pytest.mark.parametrize("version, port, expected", REACH, ids=["ipv%d-%d-%s" % item for item in REACH])
def test_controller_reaches_exactly_the_allowlist(reached, version, port, expected):
    if (version, port) not in reached:
        pytest.skip("the lab network has no IPv6")
    assert reached[(version, port)] == expected
