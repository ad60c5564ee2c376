# Copyright (c) Portcullis contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Testinfra checks right after `molecule check` (converge.yml with --check) in scenario "harden": nothing changed.

Run by the `verify check` step (molecule.yml), never by the plain verify steps (they run tests/). Each host is as
prepare.yml left it: sshd on 22 from its own unit and reachable over IPv4 and IPv6, nothing on 2222, no table
inet portcullis, the ruleset and /etc/nftables.conf byte for byte as prepare.yml saved them, every rogue unit active
and enabled, no drop-in or persisted rule written, nothing armed. The check run did run the whole role: its report
(written on the controller in check mode too) shows every host as not compliant yet, with the findings converge
will fix.
"""

from __future__ import annotations

import pytest
from conftest import NEW_PORT, RESULT_DIR, ROGUE_UNITS, listening_sockets, nothing_armed, unit_state

OLD_PORT = 22
NOT_WRITTEN = [
    "/etc/ssh/sshd_config.d/portcullis-ssh-port.conf",
    "/etc/systemd/system/ssh.socket.d/portcullis-ssh-port.conf",
    "/etc/nftables.d/portcullis.nft",
]

# What the controller reaches on the untouched host: every listener that is not loopback-only.
REACH = [
    ("tcp", 4, OLD_PORT, "open"),
    ("tcp", 6, OLD_PORT, "open"),
    ("tcp", 4, NEW_PORT, "refused"),
    ("tcp", 4, 8080, "open"),
    ("tcp", 6, 8443, "open"),
    ("udp", 4, 9999, "answered"),
    ("tcp", 4, 6379, "refused"),  # loopback-only
]


@pytest.fixture(scope="module")
def node(lab_host):
    """The host, over new SSH connections to 22 (nothing moved)."""
    return lab_host.connect(OLD_PORT)


def test_sshd_still_on_22_from_the_same_unit(node, lab_host):
    assert node.check_output("sshd -T | grep -i '^port '").split() == ["port", str(OLD_PORT)]
    ports = {port for protocol, _address, port in listening_sockets(node) if protocol == "tcp"}
    assert OLD_PORT in ports and NEW_PORT not in ports
    if lab_host.ssh_socket:
        assert unit_state(node, "ssh.socket") == ("active", "enabled")
        # ssh.socket (Accept=no) starts ssh.service for the first connection; it stays disabled.
        assert unit_state(node, "ssh.service")[1] == "disabled"
    else:
        assert unit_state(node, "ssh.service") == ("active", "enabled")


def test_no_portcullis_table_and_the_ruleset_as_before(node):
    assert node.run("nft list table inet portcullis").rc != 0
    ruleset = node.run("nft list ruleset")
    assert ruleset.rc == 0, ruleset.stderr
    assert ruleset.stdout == node.file(RESULT_DIR + "/ruleset.before").content_string
    before = node.file(RESULT_DIR + "/nftables.conf.before").content_string
    assert node.file("/etc/nftables.conf").content_string == before


@pytest.mark.parametrize("path", NOT_WRITTEN)
def test_nothing_written(node, path):
    assert not node.file(path).exists


@pytest.mark.parametrize("rogue", sorted(ROGUE_UNITS))
def test_rogue_units_still_active_and_enabled(node, rogue):
    assert unit_state(node, ROGUE_UNITS[rogue]) == ("active", "enabled")


def test_nothing_armed(node):
    assert nothing_armed(node)


@pytest.mark.parametrize("protocol, version, port, expected", REACH, ids=["%s-ipv%d-%d-%s" % item for item in REACH])
def test_controller_reaches_what_listened_before(lab_host, protocol, version, port, expected):
    reached = lab_host.probe_all([(protocol, version, port, expected)])
    if not reached:
        pytest.skip("the lab network has no IPv6")
    assert reached[(protocol, version, port)] == expected


def test_the_check_run_audited_the_host(lab_host, report):
    entry = report["hosts"][lab_host.name]
    assert entry["status"] == "noncompliant"
    unexpected = sorted((finding["protocol"], finding["port"]) for finding in entry["findings"]
                        if finding["kind"] == "unexpected_listener" and finding["severity"] != "info")
    assert ("tcp", 8443) in unexpected and ("udp", 9999) in unexpected, entry["findings"]
