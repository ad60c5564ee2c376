# Copyright (c) Portcullis contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""What the testinfra tests of scenario "harden" share (tests/ after converge and after the reboot, check/ after the
check run): the lab host behind each of molecule's hosts, SSH to it on a given port, and probes from the controller.

Molecule's inventory says port 22 throughout, which no longer answers once sshd moved, so the tests take each host's
address and key from it (`host.ansible.get_variables()`, which does not connect) and its IPv6 address from the lab's
inventory, then reach the host over SSH on the port they choose, with a new connection for every command
(ControlMaster=no): a reused master would hide a host that no longer lets anyone in.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import subprocess
import sys

import pytest
import testinfra
import yaml

# The lab harness the integration tests share: probe() and wait_for(), from the collection's tests/integration.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "tests", "integration"))
from harness import probe, ss_sockets  # noqa: E402  pylint: disable=wrong-import-position

RESULT_DIR = "/var/lib/portcullis-test"
NEW_PORT = 2222
ROGUE_UNITS = {
    "web": "portcullis-rogue-web.service",
    "udp": "portcullis-rogue-udp.service",
    "v6": "portcullis-rogue-v6.service",
    "loopback": "portcullis-rogue-loopback.service",
}


class LabHost:
    """One lab host: molecule's name, the lab's addresses and the key and known_hosts to reach it with."""

    def __init__(self, variables):
        self.name = variables["inventory_hostname"]
        self.ipv4 = variables["ansible_host"]
        self.key = variables["ansible_private_key_file"]
        self.ssh_socket = bool(variables.get("portcullis_molecule_ssh_socket", False))
        lab_dir = os.path.join(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"], "lab")
        self.known_hosts = os.path.join(lab_dir, "known_hosts")
        with open(os.path.join(lab_dir, "inventory.yml"), encoding="utf-8") as stream:
            releases = yaml.safe_load(stream)["all"]["children"]["portcullis_lab"]["children"]
        lab_hosts = {}
        for release in releases.values():
            lab_hosts.update(release["hosts"])
        lab_host = lab_hosts[self.name]
        assert lab_host["ansible_host"] == self.ipv4, "molecule's and the lab's inventories disagree"
        self.ipv6 = lab_host.get("portcullis_lab_ipv6")
        self.release = lab_host["portcullis_lab_release"]
        self.container_id = lab_host["portcullis_lab_container_id"]

    def ssh_options(self):
        return ["-o", "ControlMaster=no", "-o", "ControlPath=none", "-o", "BatchMode=yes", "-o", "ConnectTimeout=5",
                "-o", "IdentitiesOnly=yes", "-o", "StrictHostKeyChecking=yes",
                "-o", "UserKnownHostsFile=" + self.known_hosts]

    def connect(self, port):
        """A testinfra host that runs each command over a new SSH connection to `port` (IPv4)."""
        return testinfra.get_host("ssh://root@%s:%d" % (self.ipv4, port), ssh_config="/dev/null",
                                  ssh_identity_file=self.key, ssh_extra_args=" ".join(self.ssh_options()))

    def ssh(self, address, port, command="true"):
        """One new SSH connection to `address` (IPv4 or IPv6) and `port`: the completed process."""
        argv = ["ssh", "-F", "/dev/null", "-i", self.key, "-p", str(port)] + self.ssh_options() + [
            "root@" + address, "--", command]
        return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)

    def probe_all(self, reach):
        """Every (protocol, IP version, port) of `reach` from the controller, all at once: key -> what it got."""
        addresses = {4: self.ipv4, 6: self.ipv6}
        probes = [(protocol, version, port) for protocol, version, port, _expected in reach if addresses[version]]
        with concurrent.futures.ThreadPoolExecutor(max_workers=len(probes)) as pool:
            futures = {key: pool.submit(probe, addresses[key[1]], key[0], key[2]) for key in probes}
            return {key: future.result() for key, future in futures.items()}


@pytest.fixture(scope="module")
def lab_host(host):
    return LabHost(host.ansible.get_variables())


@pytest.fixture(scope="module")
def report():
    """The JSON report of the role's last run (converge, idempotence or check), on the controller."""
    path = os.path.join(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"], "reports", "portcullis-report.json")
    with open(path, encoding="utf-8") as stream:
        return json.load(stream)


def listening_sockets(node):
    """(protocol, address, port) of every listening TCP and bound UDP socket, as `ss -H -lntu` prints them."""
    return {(protocol, address, port)
            for protocol, _family, address, port in ss_sockets(node.check_output("ss -H -lntu"))}


def unit_state(node, unit):
    """(ActiveState, UnitFileState) of a unit."""
    properties = dict(line.split("=", 1) for line in node.check_output(
        "systemctl show --property=ActiveState,UnitFileState %s", unit).splitlines())
    return properties["ActiveState"], properties["UnitFileState"]


def nothing_armed(node):
    """True when the change engine has no change armed and no rollback unit or timer is left."""
    return (node.check_output("systemctl list-units --all --plain --no-legend 'portcullis-rollback-*'") == ""
            and not node.file("/var/lib/portcullis/armed").exists)
