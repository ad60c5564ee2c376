# Copyright (c) Portcullis contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Testinfra checks of the hardened lab hosts (molecule scenario "harden"), after converge and again after a reboot.

Inside each host, over new SSH connections to 2222 (see ../conftest.py): only what the allowlist allows listens
(sshd on 2222, the web server on 8080, the loopback-only service on 6379), sshd from its own unit (ssh.service, or
ssh.socket on the socket-activated host), the Portcullis table loaded and persisted, the foreign table byte for byte
as prepare.yml saved it, the units behind unlisted listeners stopped and disabled, nothing armed. From the controller,
new connections over IPv4 and IPv6 (harness.probe): 2222 and 8080 answer, 22, 8443 and udp 9999 do not.
"""

from __future__ import annotations

import pytest
from conftest import NEW_PORT, RESULT_DIR, ROGUE_UNITS, listening_sockets, nothing_armed, unit_state

OWN_TABLE = "nft list table inet portcullis"
PERSIST_FILE = "/etc/nftables.d/portcullis.nft"

# (protocol, IP version, port) -> what a new connection from the controller gets (policy drop: "filtered" for TCP,
# "silent" for UDP, where nothing may answer).
REACH = [
    ("tcp", 4, NEW_PORT, "open"),
    ("tcp", 6, NEW_PORT, "open"),
    ("tcp", 4, 8080, "open"),
    ("tcp", 6, 8080, "refused"),  # allowed for both families; the web server listens on 0.0.0.0 only
    ("tcp", 4, 22, "filtered"),  # sshd left it, and the firewall drops it
    ("tcp", 6, 22, "filtered"),
    ("tcp", 4, 8443, "filtered"),  # not allowed: its unit is stopped, and the firewall drops it
    ("tcp", 6, 8443, "filtered"),
    ("udp", 4, 9999, "silent"),  # not allowed: its unit is stopped, and the firewall drops it
    ("udp", 6, 9999, "silent"),
    ("tcp", 4, 6379, "filtered"),  # allowed on loopback only
]


@pytest.fixture(scope="module")
def node(lab_host):
    """The host, over new SSH connections to 2222."""
    return lab_host.connect(NEW_PORT)


@pytest.fixture(scope="module")
def reached(lab_host):
    return lab_host.probe_all(REACH)


def test_new_ssh_connections_on_2222_over_ipv4_and_ipv6(lab_host):
    for address in filter(None, (lab_host.ipv4, lab_host.ipv6)):
        login = lab_host.ssh(address, NEW_PORT, "id -un")
        assert login.returncode == 0, "ssh -p %d root@%s: %s" % (NEW_PORT, address, login.stderr)
        assert login.stdout.strip() == "root"


def test_only_the_allowlist_listens(node, lab_host):
    sshd = {("tcp", "::", NEW_PORT)} if lab_host.ssh_socket else {("tcp", "0.0.0.0", NEW_PORT), ("tcp", "::", NEW_PORT)}
    assert listening_sockets(node) == sshd | {("tcp", "0.0.0.0", 8080), ("tcp", "127.0.0.1", 6379)}


def test_sshd_on_2222_from_its_unit(node, lab_host):
    assert node.check_output("sshd -T | grep -i '^port '").split() == ["port", str(NEW_PORT)]
    if lab_host.ssh_socket:
        assert unit_state(node, "ssh.socket") == ("active", "enabled")
        # ssh.socket (Accept=no) starts ssh.service for the first connection; it stays disabled.
        assert unit_state(node, "ssh.service")[1] == "disabled"
        assert node.check_output("systemctl show ssh.service -p TriggeredBy") == "TriggeredBy=ssh.socket"
        assert node.check_output("systemctl show ssh.socket -p Listen") == "Listen=[::]:%d (Stream)" % NEW_PORT
    else:
        assert unit_state(node, "ssh.service") == ("active", "enabled")
        assert unit_state(node, "ssh.socket")[1] != "enabled"


def test_own_table_loaded_and_persisted(node):
    listing = node.run(OWN_TABLE)
    assert listing.rc == 0, listing.stderr
    lines = [line.strip() for line in listing.stdout.splitlines()]
    assert "type filter hook input priority filter; policy drop;" in lines
    allowed = [line for line in lines if " accept" in line and "dport" in line]
    assert any(line.startswith("tcp dport %d accept" % NEW_PORT) for line in allowed), allowed
    assert any(line.startswith("tcp dport 8080 accept") for line in allowed), allowed
    assert not [line for line in allowed if "dport 22 " in line or "dport 6379 " in line], allowed
    persisted = node.file(PERSIST_FILE)
    assert persisted.is_file
    assert persisted.content_string.endswith(listing.stdout)
    assert 'include "%s"' % PERSIST_FILE in node.file("/etc/nftables.conf").content_string
    assert node.service("nftables").is_enabled


def test_foreign_table_byte_identical(node):
    before = node.file(RESULT_DIR + "/foreign.before").content_string
    assert 'comment "portcullis test: a foreign rule the role must keep"' in before
    now = node.run("nft list table ip portcullis_test_foreign")
    assert now.rc == 0, now.stderr
    assert now.stdout == before


@pytest.mark.parametrize("rogue", ["udp", "v6"])
def test_unlisted_rogue_units_stopped_and_disabled(node, rogue):
    assert unit_state(node, ROGUE_UNITS[rogue]) == ("inactive", "disabled")


@pytest.mark.parametrize("rogue", ["web", "loopback"])
def test_listed_rogue_units_still_run(node, rogue):
    assert unit_state(node, ROGUE_UNITS[rogue]) == ("active", "enabled")


def test_nothing_left_armed(node):
    assert nothing_armed(node)


def test_report_says_compliant(lab_host, report):
    entry = report["hosts"][lab_host.name]
    assert entry["status"] == "compliant", entry.get("findings")
    assert [finding for finding in entry["findings"] if finding["severity"] != "info"] == []


@pytest.mark.parametrize("protocol, version, port, expected", REACH, ids=["%s-ipv%d-%d-%s" % item for item in REACH])
def test_controller_reaches_exactly_the_allowlist(reached, protocol, version, port, expected):
    if (protocol, version, port) not in reached:
        pytest.skip("the lab network has no IPv6")
    assert reached[(protocol, version, port)] == expected
