# Copyright (c) Portcullis contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""playbooks/audit.yml on the lab: exact findings, four reports, and not a byte changed on any host."""

from __future__ import annotations

import json
import os
import socket
import subprocess
from xml.etree import ElementTree

import pytest

from harness import LAB_DIR, ansible_env

PLAYBOOK = os.path.join(os.path.dirname(__file__), "..", "..", "playbooks", "audit.yml")
ALLOWLIST = [
    {"port": 22, "process": "sshd", "comment": "SSH"},
    {"port": 8080, "process": "portcullis-rogue", "comment": "web"},
    {"port": 6379, "bind": "loopback", "comment": "cache"},
    {"port": 443, "comment": "HTTPS, not deployed yet"},
]


def closed_loopback_port():
    """A loopback port nothing listens on: an SSH target that refuses at once."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def run_audit(tmp_path, *extra, unreachable_host=False):
    inventory = [os.path.join(LAB_DIR, "inventory.yml")]
    if unreachable_host:
        ghost = tmp_path / "ghost.yml"
        ghost.write_text("all:\n  hosts:\n    ghost:\n      ansible_host: 127.0.0.1\n      ansible_port: %d\n"
                         "      ansible_user: root\n" % closed_loopback_port())
        inventory.append(str(ghost))
    reports = tmp_path / "reports"
    command = ["ansible-playbook", PLAYBOOK, "-e", json.dumps({"portcullis_allowlist": ALLOWLIST}),
               "-e", "portcullis_report_dir=%s" % reports] + list(extra)
    for path in inventory:
        command += ["-i", path]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=600, env=ansible_env(), check=False)
    return completed, reports


def snapshot(host):
    """Everything an audit must leave alone: firewall, sshd configuration, unit and unit-file states."""
    return {
        "nft": host.ssh("nft list ruleset").stdout,
        "sshd": host.ssh("find /etc/ssh -type f -print0 | sort -z | xargs -0 sha256sum").stdout,
        # SSH logins come and go as session scopes: compare services, sockets and timers only.
        "units": host.ssh("systemctl list-units --all --no-legend --plain --no-pager '*.service' '*.socket' "
                          "'*.timer' | grep -v 'user@\\|user-runtime-dir@'").stdout,
        "unit_files": host.ssh("systemctl list-unit-files --no-legend --no-pager").stdout,
    }


def expected_findings(host):
    ipv6 = host.ipv6
    findings = [
        ("unexpected_listener", "high", "tcp", "::", 8443, None),
        ("unexpected_listener", "high", "udp", "0.0.0.0", 9999, None),
        ("allowed_not_listening", "info", "tcp", None, 443, 3),
    ]
    # The rogue UDP service answers the controller's datagram over IPv4 (the lab has no firewall yet).
    findings.insert(0, ("reachable_not_allowed", "high", "udp", host.address, 9999, None))
    if ipv6:  # the IPv6-only listener answers the controller over IPv6
        findings.insert(0, ("reachable_not_allowed", "high", "tcp", ipv6, 8443, None))
    return findings


@pytest.mark.parametrize("check_mode", [True, False], ids=["check", "run"])
def test_audit_finds_exactly_the_rogue_listeners_and_changes_nothing(lab_hosts, tmp_path, check_mode):
    hosts = lab_hosts
    before = {host.name: snapshot(host) for host in hosts}
    completed, reports = run_audit(tmp_path, *(["--check"] if check_mode else []))
    after = {host.name: snapshot(host) for host in hosts}
    assert before == after, "the audit changed a host"

    # Non-compliant hosts fail the run, naming their findings, but only after every report is written.
    assert completed.returncode != 0, completed.stdout[-3000:]
    for host in hosts:
        assert "%s is not compliant: %d findings remain" % (host.name, 3 + bool(host.ipv6)) in completed.stdout
    report = json.loads((reports / "portcullis-report.json").read_text())
    assert report["summary"]["hosts"] == len(hosts)
    assert report["summary"]["noncompliant"] == len(hosts) and report["summary"]["unreachable"] == 0
    for host in hosts:
        entry = report["hosts"][host.name]
        assert entry["status"] == "noncompliant" and entry["compliant"] is False
        assert [(f["kind"], f["severity"], f["protocol"], f["address"], f["port"], f["rule"])
                for f in entry["findings"]] == expected_findings(host)
        rogue_udp = [f for f in entry["findings"] if f["port"] == 9999 and f["kind"] == "unexpected_listener"][0]
        assert [(p["name"], p["unit"]) for p in rogue_udp["processes"]] == [("portcullis-rogu",
                                                                            "portcullis-rogue-udp.service")]
        assert [c["id"] for c in rogue_udp["controls"]] == ["2.1.22", "4.3.8"]
        assert {(item["protocol"], item["port"]) for item in entry["listeners"]} >= {("tcp", 22), ("udp", 9999)}

    junit = ElementTree.parse(str(reports / "portcullis-report.junit.xml")).getroot()
    assert int(junit.get("failures")) >= 3 * len(hosts)
    sarif = json.loads((reports / "portcullis-report.sarif").read_text())
    assert sarif["version"] == "2.1.0"
    assert len(sarif["runs"][0]["results"]) == sum(len(report["hosts"][h.name]["findings"]) for h in hosts)
    html = (reports / "portcullis-report.html").read_text()
    assert all(host.name in html for host in hosts) and "portcullis-rogue-udp.service" in html


def test_unreachable_host_is_reported_not_dropped(lab_hosts, tmp_path):
    hosts = lab_hosts
    completed, reports = run_audit(tmp_path, "-e", "portcullis_fail_on_findings=false", unreachable_host=True)
    assert completed.returncode == 0, completed.stdout[-3000:]
    report = json.loads((reports / "portcullis-report.json").read_text())
    assert report["summary"]["hosts"] == len(hosts) + 1
    assert report["summary"]["unreachable"] == 1
    ghost = report["hosts"]["ghost"]
    assert ghost["status"] == "unreachable" and ghost["compliant"] is None and ghost["error"]
    junit = ElementTree.parse(str(reports / "portcullis-report.junit.xml")).getroot()
    assert int(junit.get("errors")) == 1


def test_bad_allowlist_fails_before_the_hosts_are_touched(tmp_path):
    reports = tmp_path / "reports"
    command = ["ansible-playbook", PLAYBOOK, "-i", os.path.join(LAB_DIR, "inventory.yml"),
               "-e", json.dumps({"portcullis_allowlist": [{"port": 22}, {"port": "100-90"}]}),
               "-e", "portcullis_report_dir=%s" % reports]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False, env=ansible_env())
    assert completed.returncode != 0
    assert "allowlist[1].port: '100-90' is a range whose start is above its end" in completed.stdout


CHROMIUM = ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def test_html_report_renders_every_finding_in_chromium(lab_hosts, tmp_path):
    """Print the HTML report with headless Chromium; every host and finding must be visible on the pages."""
    completed, reports = run_audit(tmp_path, "--check", "-e", "portcullis_fail_on_findings=false")
    assert completed.returncode == 0, completed.stdout[-3000:]
    report = json.loads((reports / "portcullis-report.json").read_text())
    pdf = tmp_path / "report.pdf"
    printed = subprocess.run(CHROMIUM + ["--user-data-dir=%s" % (tmp_path / "chromium"), "--no-pdf-header-footer",
                                         "--print-to-pdf=%s" % pdf, (reports / "portcullis-report.html").as_uri()],
                             capture_output=True, text=True, timeout=180, check=False)
    assert pdf.exists() and pdf.stat().st_size > 10000, printed.stderr[-2000:]
    # -raw keeps each table cell's text together, in page order.
    text = subprocess.run(["pdftotext", "-raw", str(pdf), "-"], capture_output=True, text=True, timeout=60,
                          check=True).stdout

    def squeezed(value):
        """Line breaks, and the hyphens Chromium adds where it breaks a word, do not matter."""
        return "".join(value.split()).replace("-", "").replace("\u00ad", "")

    rendered = squeezed(text)
    for host in lab_hosts:
        assert squeezed(host.name) in rendered
        for item in report["hosts"][host.name]["findings"]:
            assert squeezed(item["message"]) in rendered, item["message"]
            assert squeezed(item["remediation"]) in rendered, item["remediation"]
