# Copyright (c) Portcullis contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Testinfra checks of the move of sshd to 2222 (molecule scenario "ssh_port").

Molecule's inventory still says port 22, which no longer answers: these tests take each host's address, user
and key from that inventory (testinfra's `host.ansible.get_variables()`, which does not connect) and open a
new SSH connection of their own (ControlMaster=no) for every check, on IPv4 and on IPv6. From the controller,
plain TCP connections check that the old ports are closed.
"""

from __future__ import annotations

import json
import os
import shlex
import socket
import subprocess

import pytest

NEW_PORT = 2222
# Debian 12 runs sshd from ssh.socket behind the Portcullis firewall; Debian 13 had Port 2200 in sshd_config.
OLD_PORTS = {"bookworm": [22], "trixie": [22, 2200]}
DROP_IN = "/etc/ssh/sshd_config.d/portcullis-ssh-port.conf"
SOCKET_DROP_IN = "/etc/systemd/system/ssh.socket.d/portcullis-ssh-port.conf"


class Remote:
    """A lab host reached with new SSH connections to the new port (IPv4, or IPv6 with ipv6=True)."""

    def __init__(self, variables):
        self.address = variables["ansible_host"]
        self.user = variables.get("ansible_user", "root")
        self.key = variables["ansible_private_key_file"]
        self.known_hosts = os.path.join(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"], "lab", "known_hosts")

    def ssh(self, command, port=NEW_PORT, address=None, check=True):
        argv = ["ssh", "-o", "ControlMaster=no", "-o", "ControlPath=none", "-o", "BatchMode=yes",
                "-o", "ConnectTimeout=5", "-o", "IdentitiesOnly=yes", "-o", "StrictHostKeyChecking=yes",
                "-o", "UserKnownHostsFile=" + self.known_hosts, "-i", self.key, "-p", str(port),
                "%s@%s" % (self.user, address or self.address), "--", command]
        completed = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
        if check and completed.returncode != 0:
            raise AssertionError("ssh -p %d %s %r failed (rc=%d): %s" % (
                port, address or self.address, command, completed.returncode, completed.stderr))
        return completed

    def text(self, path):
        return self.ssh("cat %s" % shlex.quote(path)).stdout


@pytest.fixture(scope="module")
def remote(host):
    return Remote(host.ansible.get_variables())


@pytest.fixture(scope="module")
def release(remote):
    return remote.ssh(". /etc/os-release && echo $VERSION_CODENAME").stdout.strip()


@pytest.fixture(scope="module")
def saved(remote):
    """The ssh_port result converge saved on its first run."""
    return json.loads(remote.text("/var/lib/portcullis-test/ssh_port.json"))


def tcp_open(address, port):
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.settimeout(3)
        try:
            sock.connect((address, port))
        except OSError:
            return False
        return True


def test_new_connections_on_the_new_port_over_ipv4_and_ipv6(remote):
    assert remote.ssh("true").returncode == 0
    ipv6 = remote.ssh("ip -6 -o addr show scope global | awk '{print $4}' | cut -d/ -f1 | head -1").stdout.strip()
    assert ipv6, "the lab host has no global IPv6 address"
    assert remote.ssh("true", address=ipv6).returncode == 0


def test_old_ports_are_closed(remote, release):
    for port in OLD_PORTS[release]:
        assert remote.ssh("true", port=port, check=False).returncode != 0
        assert not tcp_open(remote.address, port), "port %d still accepts TCP connections" % port


def test_sshd_sets_the_new_port_once(remote):
    effective = remote.ssh("sshd -T | grep -i '^port '").stdout.split()
    assert effective == ["port", str(NEW_PORT)]
    assert remote.text(DROP_IN).splitlines()[1:] == ["Port %d" % NEW_PORT]
    active = remote.ssh("grep -rhiE '^[[:space:]]*port[[:space:]]' /etc/ssh/sshd_config /etc/ssh/sshd_config.d/ "
                        "|| true").stdout.split("\n")
    assert [line for line in active if line] == ["Port %d" % NEW_PORT]


def test_the_main_file_port_line_is_disabled_not_lost(remote, release):
    main = remote.text("/etc/ssh/sshd_config")
    if release == "trixie":
        assert "# disabled by portcullis.hardening.ssh_port (the port is set in %s): Port 2200" % DROP_IN in main
    assert "\nPort " not in main


def test_socket_activation_moved_by_a_drop_in_not_masked(remote, release):
    if release != "bookworm":
        assert remote.ssh("test -e %s" % SOCKET_DROP_IN, check=False).returncode != 0
        return
    assert remote.ssh("systemctl is-enabled ssh.socket").stdout.strip() == "enabled"
    assert remote.ssh("systemctl is-active ssh.socket").stdout.strip() == "active"
    assert remote.ssh("systemctl show ssh.socket -p Listen").stdout.strip() == "Listen=[::]:%d (Stream)" % NEW_PORT
    assert remote.text(SOCKET_DROP_IN).splitlines()[2:] == ["[Socket]", "ListenStream=", "ListenStream=[::]:2222"]


def test_firewall_moved_with_sshd_and_persisted(remote, release):
    if release != "bookworm":
        return
    for text in (remote.ssh("nft list table inet portcullis").stdout, remote.text("/etc/nftables.d/portcullis.nft")):
        assert 'tcp dport %d accept comment "portcullis: management port"' % NEW_PORT in text
        assert "tcp dport 22 " not in text
        assert 'tcp dport 8080 accept comment "allowlist[0]: tcp/8080 from anywhere"' in text


def test_the_move_kept_every_address_and_left_nothing_behind(remote, release, saved):
    assert saved["changed"] is True
    assert saved["found_on"] == OLD_PORTS[release][-1]
    assert [step.partition(":")[0] for step in saved["steps"][1:]] == [
        "plan", "transition", "host key on %d" % NEW_PORT, "new connection on %d" % NEW_PORT, "finalize", "commit"]
    old = ":%d" % OLD_PORTS[release][-1]
    assert sorted(address.replace(old, ":%d" % NEW_PORT) for address in saved["listening_before"]) \
        == sorted(saved["listening_after"])
    assert saved["old_port_closed"] == {str(OLD_PORTS[release][-1]): True}
    assert saved["socket_activated"] is (release == "bookworm")
    assert saved["firewall"]["managed"] is (release == "bookworm")
    leftovers = remote.ssh("ls -d /var/lib/portcullis/armed 2>/dev/null; systemctl list-units --all --plain "
                           "--no-legend 'portcullis-rollback-*'", check=False).stdout
    assert leftovers.strip() == ""
