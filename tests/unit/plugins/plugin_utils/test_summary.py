# Copyright (c) Portcullis contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""A host's summary for the console and the message that fails a non-compliant host, from port_audit results."""

from __future__ import annotations

import pytest

from ansible_collections.portcullis.hardening.plugins.module_utils._audit import finding
from ansible_collections.portcullis.hardening.plugins.plugin_utils._summary import (
    SHOWN_FINDINGS,
    compliance_line,
    host_summary,
    noncompliance,
)

SSHD = [{"pid": 10, "name": "sshd", "unit": "ssh.service", "cmdline": "sshd"}]


def make(severity, port, message=None, remediation=None, kind="unexpected_listener"):
    return finding(kind, severity, "tcp", "ipv4", "0.0.0.0", port, SSHD,
                   message or "tcp 0.0.0.0:%d listens (%s)" % (port, severity),
                   remediation or "close %d" % port)


def audit(*findings):
    return {"compliant": all(item["severity"] == "info" for item in findings), "findings": list(findings),
            "listeners": [], "allowlist": []}


# --- compliance ----------------------------------------------------------------------------------------------------

def test_compliant_without_findings():
    assert host_summary(audit()) == ["compliant"]
    assert compliance_line(audit()) == "compliant"


def test_compliant_with_info_findings_counts_them_and_lists_none():
    result = audit(make("info", 6379), make("info", 631))
    assert host_summary(result) == ["compliant: no finding above info (2 info)"]


def test_not_compliant_counts_by_severity_in_severity_order_and_lists_the_findings_above_info():
    result = audit(make("medium", 8080), make("info", 6379), make("high", 23), make("high", 21))
    assert host_summary(result) == [
        "NOT compliant: 2 high, 1 medium (1 info)",
        "[medium] tcp 0.0.0.0:8080 listens (medium)",
        "[high] tcp 0.0.0.0:23 listens (high)",
        "[high] tcp 0.0.0.0:21 listens (high)",
    ]


def test_not_compliant_without_info_findings_has_no_info_count():
    assert compliance_line(audit(make("low", 6379))) == "NOT compliant: 1 low"
    assert compliance_line(audit(make("low", 1), make("medium", 2), make("low", 3))) == "NOT compliant: 1 medium, 2 low"


@pytest.mark.parametrize("result, line", [
    ({"failed": True, "msg": "Permission denied reading /proc"}, "not audited: Permission denied reading /proc"),
    ({"unreachable": True, "msg": "Failed to connect to the host via ssh"},
     "not audited: Failed to connect to the host via ssh"),
    ({"failed": True}, "not audited: no audit result"),
    ({"skipped": True, "skip_reason": "Conditional result was False"}, "not audited: no audit result"),
    ({}, "not audited: no audit result"),
    (None, "not audited: no audit result"),
    ({"findings": "not a list", "compliant": True}, "not audited: no audit result"),
    ({"findings": [], "msg": "no compliant field"}, "not audited: no compliant field"),
])
def test_not_audited_says_why(result, line):
    assert host_summary(result) == [line]
    assert compliance_line(result) == line


def test_more_than_ten_findings_are_cut_with_a_count():
    findings = [make("medium", 9000 + number) for number in range(SHOWN_FINDINGS + 3)]
    lines = host_summary(audit(*findings))
    assert SHOWN_FINDINGS == 10
    assert lines[0] == "NOT compliant: 13 medium"
    assert lines[1:11] == ["[medium] tcp 0.0.0.0:%d listens (medium)" % (9000 + number) for number in range(10)]
    assert lines[11:] == ["... and 3 more (see the reports)"]


def test_ten_findings_and_info_findings_need_no_more_line():
    findings = [make("high", 9000 + number) for number in range(10)] + [make("info", 631)] * 4
    lines = host_summary(audit(*findings))
    assert lines[0] == "NOT compliant: 10 high (4 info)"
    assert len(lines) == 11 and not any(line.startswith("...") for line in lines)


def test_control_characters_in_messages_are_escaped():
    result = audit(make("high", 23, message="tcp 0.0.0.0:23 (evil\x1b[2J\x1b]0;pwned\x07) listens\r\nfake line"))
    assert host_summary(result)[1] == "[high] tcp 0.0.0.0:23 (evil\\x1b[2J\\x1b]0;pwned\\x07) listens\\r\\nfake line"
    assert compliance_line({"failed": True, "msg": "boom\x1b[31m\u202e"}) == "not audited: boom\\x1b[31m\\u202e"


# --- what the run changed ------------------------------------------------------------------------------------------

def changes(**kwargs):
    return host_summary(audit(), **kwargs)[1:]


@pytest.mark.parametrize("ssh, check_mode, line", [
    ({"changed": True, "found_on": 22, "port": 2222}, False, "sshd: moved from 22 to 2222"),
    ({"changed": True, "found_on": 22, "port": 2222}, True, "sshd: would move from 22 to 2222"),
    ({"changed": False, "found_on": 2222, "port": 2222}, False, "sshd: on 2222 already"),
    ({"changed": False, "port": 2222}, True, "sshd: on 2222 already"),
])
def test_ssh_lines(ssh, check_mode, line):
    assert changes(ssh=ssh, check_mode=check_mode) == [line]


@pytest.mark.parametrize("ssh", [
    {"skipped": True, "changed": False, "skip_reason": "Conditional result was False"},
    {"failed": True, "msg": "port taken", "port": 2222, "changed": True},
    {"changed": False},  # no port: nothing to say
    {"changed": False, "port": None},
    "not a result",
    None,
])
def test_ssh_results_that_did_not_run_say_nothing(ssh):
    assert changes(ssh=ssh) == []


def test_service_port_loop_results():
    loop = {"changed": True, "results": [
        {"item": {"service": "nginx", "port": 8443}, "changed": True, "port": 8443},
        {"item": {"service": "redis", "port": 6380}, "changed": False, "port": 6380},
        {"item": {"service": "postgresql", "port": 5433}, "skipped": True, "changed": False},
        {"item": {"service": "mysql", "port": 3307}, "failed": True, "msg": "taken", "port": 3307},
        {"item": None, "changed": True, "port": 9000},
    ]}
    assert changes(service_ports=loop) == [
        "nginx: moved to port 8443",
        "redis: on port 6380 already",
        "a service: moved to port 9000",
    ]
    assert changes(service_ports=loop, check_mode=True)[0] == "nginx: would move to port 8443"


@pytest.mark.parametrize("service_ports", [None, {}, {"results": []}, ["not", "a", "loop"], {"skipped": True}])
def test_no_service_port_lines_without_loop_results(service_ports):
    assert changes(service_ports=service_ports) == []


@pytest.mark.parametrize("firewall, check_mode, line", [
    ({"changed": True, "confirmed": True}, False, "firewall: rules applied and confirmed over a new connection"),
    ({"changed": True, "rules": "table inet portcullis {}"}, False, "firewall: change the rules"),
    ({"changed": True, "rules": "table inet portcullis {}"}, True, "firewall: would change the rules"),
    ({"changed": False, "rules": "table inet portcullis {}"}, False, "firewall: unchanged"),
    ({"changed": False}, True, "firewall: unchanged"),
])
def test_firewall_lines(firewall, check_mode, line):
    assert changes(firewall=firewall, check_mode=check_mode) == [line]


@pytest.mark.parametrize("firewall", [
    {"skipped": True, "changed": False}, {"failed": True, "msg": "nft failed", "changed": True}, None])
def test_firewall_that_did_not_run_says_nothing(firewall):
    assert changes(firewall=firewall) == []


SERVICES = {"changed": True, "kept": [], "stopped": [
    {"units": ["cups.service", "cups.socket"], "listeners": ["tcp 0.0.0.0:631"], "before": {}},
    {"units": ["rpcbind.service"], "listeners": ["tcp 0.0.0.0:111"], "before": {}},
]}


@pytest.mark.parametrize("check_mode, stop_unlisted, line", [
    (False, True, "services: stopped and disabled cups.service, cups.socket, rpcbind.service"),
    (True, True, "services: would stop and disable cups.service, cups.socket, rpcbind.service"),
    (False, False, "services: would stop cups.service, cups.socket, rpcbind.service (set portcullis_stop_unlisted "
                   "to stop them)"),
    (True, False, "services: would stop cups.service, cups.socket, rpcbind.service (set portcullis_stop_unlisted "
                  "to stop them)"),
])
def test_services_lines(check_mode, stop_unlisted, line):
    assert changes(services=SERVICES, check_mode=check_mode, stop_unlisted=stop_unlisted) == [line]


def test_kept_listeners_are_listed_with_the_reason_escaped():
    services = {"changed": False, "stopped": [], "kept": [
        {"listener": "tcp 0.0.0.0:5000", "reason": "it runs in session-3.scope: reported, never killed"},
        {"listener": "tcp 0.0.0.0:5001 (x\x1b[2Jy)", "reason": "line\nbreak"},
    ]}
    assert changes(services=services, stop_unlisted=True) == [
        "services: kept tcp 0.0.0.0:5000: it runs in session-3.scope: reported, never killed",
        "services: kept tcp 0.0.0.0:5001 (x\\x1b[2Jy): line\\nbreak",
    ]


@pytest.mark.parametrize("services", [
    {"skipped": True, "stopped": SERVICES["stopped"]},
    {"failed": True, "msg": "refused", "stopped": SERVICES["stopped"]},
    {"changed": False, "stopped": [], "kept": []},
    {"changed": True, "confirmed": True},
    None,
])
def test_services_that_stopped_nothing_or_did_not_run_say_nothing(services):
    assert changes(services=services, stop_unlisted=True) == []


def test_a_whole_run_in_order():
    lines = host_summary(
        audit(make("high", 23), make("info", 631)),
        ssh={"changed": True, "found_on": 22, "port": 2222},
        service_ports={"results": [{"item": {"service": "nginx"}, "changed": True, "port": 8443}]},
        firewall={"changed": True, "confirmed": True},
        services=SERVICES, stop_unlisted=True)
    assert lines == [
        "NOT compliant: 1 high (1 info)",
        "[high] tcp 0.0.0.0:23 listens (high)",
        "sshd: moved from 22 to 2222",
        "nginx: moved to port 8443",
        "firewall: rules applied and confirmed over a new connection",
        "services: stopped and disabled cups.service, cups.socket, rpcbind.service",
    ]


def test_a_finding_without_a_severity_is_an_error():
    with pytest.raises(KeyError):
        host_summary({"compliant": False, "findings": [{"message": "no severity"}]})


# --- noncompliance -------------------------------------------------------------------------------------------------

def test_noncompliance_names_every_finding_above_info_with_its_remediation():
    findings = [make("medium", 9000 + number) for number in range(SHOWN_FINDINGS + 2)] + [make("info", 631)]
    message = noncompliance(audit(make("high", 23, remediation="Stop telnetd"), *findings), "web-01")
    lines = message.split("\n")
    assert lines[0] == "web-01 is not compliant: 13 findings remain:"
    assert lines[1] == "- [high] tcp 0.0.0.0:23 listens (high). Remediation: Stop telnetd"
    assert lines[2:] == ["- [medium] tcp 0.0.0.0:%d listens (medium). Remediation: close %d" % (port, port)
                         for port in range(9000, 9012)]
    assert "631" not in message


def test_noncompliance_singular():
    assert noncompliance(audit(make("low", 6379), make("info", 631)), "db-01") == (
        "db-01 is not compliant: 1 finding remains:\n"
        "- [low] tcp 0.0.0.0:6379 listens (low). Remediation: close 6379")


def test_noncompliance_of_a_compliant_host():
    assert noncompliance(audit(), "web-01") == "web-01 is compliant"
    assert noncompliance(audit(make("info", 631)), "web-01") == "web-01 is compliant"


@pytest.mark.parametrize("result, message", [
    ({"unreachable": True, "msg": "Connection timed out"}, "web-01: not audited: Connection timed out"),
    ({"failed": True, "msg": "bad\x1b[0m"}, "web-01: not audited: bad\\x1b[0m"),
    (None, "web-01: not audited: no audit result"),
])
def test_noncompliance_of_a_host_not_audited(result, message):
    assert noncompliance(result, "web-01") == message


def test_noncompliance_escapes_messages_and_remediations():
    result = audit(make("high", 23, message="evil\x1b]0;t\x07", remediation="run\rthis\u202e"))
    assert noncompliance(result, "h") == ("h is not compliant: 1 finding remains:\n"
                                          "- [high] evil\\x1b]0;t\\x07. Remediation: run\\rthis\\u202e")
