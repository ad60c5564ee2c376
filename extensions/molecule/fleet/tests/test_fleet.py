# Copyright (c) Portcullis contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Testinfra checks of the fleet's audit (molecule scenario "fleet"): five hosts, one unreachable, one report.

On the controller, the reports converge.yml and the idempotence run wrote in <ephemeral dir>/reports: the JSON report
is valid (docs/report.schema.json) and lists every host; the four reachable ones are audited, portcullis-bookworm-1
compliant (its host_vars allow every rogue listener), the other three not compliant with exactly the lab's rogue
listeners as findings; portcullis-trixie-2 is marked unreachable with the SSH error, in the JSON, JUnit, SARIF and text
reports alike; the second run found no drift. On each reachable host (testinfra's ansible backend, molecule's
inventory): the report's listeners are those `ss` shows, and the audit changed nothing. The unreachable host is up
and answers SSH on 22: only the port in its inventory is wrong.
"""

from __future__ import annotations

import json
import os
import sys
import xml.etree.ElementTree as ET

import jsonschema
import pytest
import yaml

# The lab harness the integration tests share: probe(), from the collection's tests/integration.
COLLECTION = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "..")
sys.path.insert(0, os.path.join(COLLECTION, "tests", "integration"))
from harness import probe, ss_sockets  # noqa: E402  pylint: disable=wrong-import-position

SCHEMA = os.path.join(COLLECTION, "docs", "report.schema.json")
UNREACHABLE = "portcullis-trixie-2"
COMPLIANT = "portcullis-bookworm-1"
# (kind, severity, protocol, port) of every finding on a lab host whose allowlist is only sshd on 22 and the web
# server on 8080: the UDP listener (listening, and answering the controller), the IPv6-only listener, and the
# loopback-only one (info: loopback listeners are not violations by default).
ROGUE_FINDINGS = sorted([
    ("reachable_not_allowed", "high", "udp", 9999),
    ("unexpected_listener", "high", "tcp", 8443),
    ("unexpected_listener", "high", "udp", 9999),
    ("unexpected_listener", "info", "tcp", 6379),
])


def _reports_dir():
    return os.path.join(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"], "reports")


@pytest.fixture(scope="module")
def report():
    with open(os.path.join(_reports_dir(), "portcullis-report.json"), encoding="utf-8") as stream:
        return json.load(stream)


@pytest.fixture(scope="module")
def platforms():
    with open(os.environ["MOLECULE_FILE"], encoding="utf-8") as stream:
        return sorted(platform["name"] for platform in yaml.safe_load(stream)["platforms"])


def _findings(entry):
    return sorted((finding["kind"], finding["severity"], finding["protocol"], finding["port"])
                  for finding in entry["findings"])


def test_report_is_valid_and_lists_every_host(report, platforms):
    with open(SCHEMA, encoding="utf-8") as stream:
        jsonschema.Draft202012Validator(json.load(stream)).validate(report)
    assert sorted(report["hosts"]) == platforms
    assert report["summary"] == {"hosts": 5, "compliant": 1, "noncompliant": 3, "unreachable": 1,
                                 "findings": {"high": 9, "medium": 0, "low": 0, "info": 3}}


def test_the_unreachable_host_is_marked_not_dropped(report):
    entry = report["hosts"][UNREACHABLE]
    assert entry["status"] == "unreachable"
    assert entry["compliant"] is None
    assert "port 1: Connection refused" in entry["error"]
    assert entry["findings"] == [] and entry["listeners"] == []


def test_four_hosts_audited(report, platforms):
    audited = {name: entry for name, entry in report["hosts"].items() if name != UNREACHABLE}
    assert sorted(audited) == [name for name in platforms if name != UNREACHABLE]
    for name, entry in audited.items():
        assert entry["error"] is None, name
        assert entry["listeners"], name
        # Probed from the controller, on the host's address: sshd and the web server answer.
        [address] = entry["probe"]["addresses"]
        ports = entry["probe"]["ports"][address]
        assert (ports["22"], ports["8080"]) == ("open", "open"), name
        if name == COMPLIANT:
            assert (entry["status"], entry["compliant"], entry["findings"]) == ("compliant", True, []), name
        else:
            assert (entry["status"], entry["compliant"]) == ("noncompliant", False), name
            assert _findings(entry) == ROGUE_FINDINGS, name


def test_every_format_marks_the_unreachable_host():
    reports = _reports_dir()
    junit = ET.parse(os.path.join(reports, "portcullis-report.junit.xml")).getroot()
    suites = {suite.get("name"): suite for suite in junit}
    assert suites[UNREACHABLE].get("errors") == "1"
    assert [error.get("type") for error in suites[UNREACHABLE].iter("error")] == ["unreachable"]
    assert all(suite.get("errors") == "0" for name, suite in suites.items() if name != UNREACHABLE)
    with open(os.path.join(reports, "portcullis-report.sarif"), encoding="utf-8") as stream:
        notifications = json.load(stream)["runs"][0]["invocations"][0]["toolExecutionNotifications"]
    assert [item["properties"] for item in notifications] == [{"host": UNREACHABLE, "status": "unreachable"}]
    with open(os.path.join(reports, "portcullis-report.txt"), encoding="utf-8") as stream:
        text = stream.read()
    assert "5 hosts: 1 compliant, 3 not compliant, 1 not audited" in text
    assert "%s: not audited (unreachable): " % UNREACHABLE in text


def test_no_drift_between_the_two_runs(report):
    assert "drift" in report, "no previous report: run verify after the idempotence step (molecule test -s fleet)"
    drift = report["drift"]
    assert drift["findings"]["new"] == [] and drift["findings"]["resolved"] == []
    assert drift["findings"]["unchanged"] == sum(len(entry["findings"]) for entry in report["hosts"].values())
    assert drift["listeners"] == {"appeared": [], "disappeared": []}
    assert drift["hosts"] == {"appeared": [], "disappeared": []}


def _ss_sockets(host):
    """(protocol, family, address, port) of every listening TCP and bound UDP socket, as `ss -H -lntu` prints them."""
    return ss_sockets(host.check_output("ss -H -lntu"))


def test_reported_listeners_are_what_listens(host, report):
    name = host.ansible.get_variables()["inventory_hostname"]
    if name == UNREACHABLE:
        pytest.skip("unreachable by design")
    listed = {(item["protocol"], item["family"], item["address"], item["port"])
              for item in report["hosts"][name]["listeners"]}
    assert listed == _ss_sockets(host)


def test_the_audit_changed_nothing(host):
    if host.ansible.get_variables()["inventory_hostname"] == UNREACHABLE:
        pytest.skip("unreachable by design")
    assert host.run("nft list table inet portcullis").rc != 0
    for unit in ("web", "udp", "v6", "loopback"):
        service = host.service("portcullis-rogue-%s.service" % unit)
        assert service.is_running and service.is_enabled, unit
    assert host.service("ssh.service").is_running


def test_the_unreachable_host_runs_only_its_inventory_port_is_wrong():
    inventory = os.path.join(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"], "lab", "inventory.yml")
    with open(inventory, encoding="utf-8") as stream:
        releases = yaml.safe_load(stream)["all"]["children"]["portcullis_lab"]["children"]
    address = releases["trixie"]["hosts"][UNREACHABLE]["ansible_host"]
    assert probe(address, "tcp", 1) == "refused"
    assert probe(address, "tcp", 22) == "open"
