# Copyright (c) Portcullis contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Compliance reports of a fleet audit: one JSON report, rendered as JSON, JUnit XML and SARIF.

Given the previous JSON report, a report carries its drift (report_drift): the findings, listeners and hosts
that changed since then, and every rendering shows it first.

Private to the collection: pure functions, used by the audit_report filter. The HTML rendering is in
_report_html. Same input, same output: nothing here reads the clock or depends on dict order.

Everything in a host's result is the host's word, so the renderings people read start from printable_report()
(text and JUnit here, HTML in the audit_report filter): a process named "\\x1b]0;...\\x07" cannot drive the
reader's terminal. JSON and SARIF keep the data as it is (json.dumps escapes the C0 controls).
"""

from __future__ import annotations

import datetime
import hashlib
import json
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Mapping
from typing import NamedTuple
from urllib.parse import quote

from ansible_collections.portcullis.hardening.plugins.module_utils._text import printable
from ansible_collections.portcullis.hardening.plugins.plugin_utils._table import align

SCHEMA_VERSION = 1
TOOL_NAME = "portcullis.hardening"
DOCS_URL = "https://github.com/portcullis/hardening/blob/main/docs/reports.md"
SEVERITIES = ("high", "medium", "low", "info")
SARIF_LEVELS = {"high": "error", "medium": "warning", "low": "note", "info": "note"}
SECURITY_SEVERITY = {"high": "8.0", "medium": "5.5", "low": "3.0"}


class Kind(NamedTuple):
    """What one finding kind means, for every report format."""

    name: str  # SARIF reportingDescriptor.name
    title: str
    check: str  # the JUnit test case of a finding that names no allowlist entry
    severity: str  # the usual severity: SARIF defaultConfiguration.level
    description: str


KINDS = {
    "unexpected_listener": Kind(
        "UnexpectedListener", "Listener not in the allowlist", "no unexpected listeners", "high",
        "A socket listens on a port that no allowlist entry allows. Every listening service is attack "
        "surface; one nobody declared is usually forgotten, unpatched or not meant to be there."),
    "wider_bind_than_allowed": Kind(
        "WiderBindThanAllowed", "Listens more widely than allowed", "no listener bound wider than allowed", "high",
        "A service the allowlist allows on loopback only listens on a network address, so other hosts "
        "can reach it."),
    "unexpected_process": Kind(
        "UnexpectedProcess", "Allowed port held by another program", "no allowed port held by another program",
        "medium",
        "An allowed port is held by a program other than the one the allowlist entry names: a replaced "
        "or misconfigured service, or a program squatting on the port."),
    "allowed_not_listening": Kind(
        "AllowedNotListening", "Allowed port unused", "every allowed port is used", "info",
        "An allowlist entry allows a port on which nothing listens. A firewall built from the allowlist "
        "opens that port for nothing; remove the entry if the service was retired."),
    "reachable_not_allowed": Kind(
        "ReachableNotAllowed", "Reachable but not allowed", "no reachable ports outside the allowlist", "high",
        "The controller could connect to a port that no allowlist entry allows, or from an address the "
        "entry's sources do not list: the firewall and the network path let the connection through."),
    "listening_but_filtered": Kind(
        "ListeningButFiltered", "Listens but unreachable", "listening ports the controller cannot reach", "low",
        "A service listens on a network address but the controller's connection was refused or dropped: "
        "a firewall or the network path blocks it, which is expected for ports the allowlist does not "
        "allow and a problem for ports it does."),
    "udp_open_or_filtered": Kind(
        "UdpOpenOrFiltered", "UDP port open or filtered", "listening UDP ports that gave the probe no answer", "info",
        "A UDP service listens on a network address but the controller's datagrams got neither a reply nor an "
        "ICMP port unreachable: a firewall may drop them, or the service ignores the probe. Not proof either "
        "way, so never a violation; check with a client of the service's own protocol."),
    "unexpected_published_port": Kind(
        "UnexpectedPublishedPort", "Published container port not in the allowlist",
        "no unexpected published container ports", "high",
        "A port is published to a container (docker run -p, podman -p, a hostPort): the host rewrites its "
        "destination (DNAT) and forwards it to the container, so it bypasses the host's input chain and often has no "
        "socket on the host. No allowlist entry allows it."),
    "allowed_but_filtered": Kind(
        "AllowedButFiltered", "Allowed port dropped by a filter", "no allowlisted port dropped by an active filter",
        "medium",
        "The allowlist allows a port, but one of the host's active filters (a nftables table, ufw, firewalld) "
        "drops new connections to it. netfilter runs every filter of the input path and an accept in one never "
        "overrides a drop in another, so the allowlist's promise is false."),
    "firewall_inactive": Kind(
        "FirewallInactive", "No default-deny firewall", "a firewall denies by default, for IPv4 and IPv6", "high",
        "The allowlist is meant to be enforced with default deny, but no active filter of the input path drops a "
        "port the allowlist does not have, for one family at least (IPv6 left open is the usual case)."),
}
KIND_ORDER = tuple(KINDS)
# JUnit test cases every audited host gets, findings or not: these checks concern no allowlist entry.
STANDING_CHECKS = ("unexpected_listener", "reachable_not_allowed")


def _utc_timestamp(generated_at):
    """ISO-8601 UTC with a Z, from a datetime or ISO text; naive values are taken as UTC."""
    if isinstance(generated_at, str):
        try:
            generated_at = datetime.datetime.fromisoformat(generated_at.strip().replace("Z", "+00:00"))
        except ValueError:
            raise ValueError("generated_at: %r is not an ISO-8601 date and time" % generated_at)
    if not isinstance(generated_at, datetime.datetime):
        raise ValueError("generated_at: %r must be an ISO-8601 text or a datetime" % (generated_at,))
    if generated_at.tzinfo is not None:
        generated_at = generated_at.astimezone(datetime.timezone.utc)
    return generated_at.strftime("%Y-%m-%dT%H:%M:%SZ")


def plain(value):
    """A copy of value made of JSON's own types (dict, list, str, int, float, bool, None), other values as they are.

    Ansible hands a filter tagged subclasses (a str that carries where it came from): a deep copy copies every tag,
    which took seconds for two hosts' audits, and no report needs them.
    """
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        return str(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, Mapping):
        return {plain(key): plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(item) for item in value]
    return value


def _host_entry(host, result):
    if not isinstance(result, dict):
        raise ValueError("host %s: %r is not an audit result (a mapping)" % (host, result))
    if result.get("unreachable") or result.get("failed") or result.get("skipped"):
        status = "unreachable" if result.get("unreachable") else "failed"
        error = result.get("msg") or result.get("skip_reason") or status
        return {"status": status, "compliant": None, "error": str(error), "findings": [], "listeners": [],
                "allowlist": [], "probe": None}
    for field in ("compliant", "findings", "listeners", "allowlist"):
        if field not in result:
            raise ValueError("host %s: the audit result has no %r; pass what port_audit returns" % (host, field))
    for position, item in enumerate(result["findings"]):
        if not isinstance(item, dict) or item.get("kind") not in KINDS or item.get("severity") not in SEVERITIES:
            raise ValueError("host %s: findings[%d] is not a finding of a known kind and severity: %r"
                             % (host, position, item))
    compliant = result["compliant"]
    if not isinstance(compliant, bool):
        raise ValueError("host %s: compliant: %r must be true or false" % (host, compliant))
    return {"status": "compliant" if compliant else "noncompliant", "compliant": compliant, "error": None,
            "findings": plain(result["findings"]), "listeners": plain(result["listeners"]),
            "allowlist": plain(result["allowlist"]), "probe": plain(result.get("probe"))}


def build_report(results_by_host, generated_at, tool_version, previous=None):
    """The JSON report (a dict) of {host: audit result}; see docs/report.schema.json.

    With previous (the JSON report of an earlier run, parsed), the report has a "drift" (report_drift).
    """
    if not isinstance(results_by_host, dict):
        raise ValueError("expected a mapping of host name to audit result, got %s" % type(results_by_host).__name__)
    hosts = {str(host): _host_entry(host, results_by_host[host]) for host in sorted(results_by_host, key=str)}
    statuses = [entry["status"] for entry in hosts.values()]
    counts = dict.fromkeys(SEVERITIES, 0)
    for entry in hosts.values():
        for item in entry["findings"]:
            counts[item["severity"]] += 1
    report = {
        "schema_version": SCHEMA_VERSION,
        "generated_at": _utc_timestamp(generated_at),
        "tool": {"name": TOOL_NAME, "version": str(tool_version)},
        "summary": {"hosts": len(hosts), "compliant": statuses.count("compliant"),
                    "noncompliant": statuses.count("noncompliant"),
                    "unreachable": statuses.count("unreachable") + statuses.count("failed"),
                    "findings": counts},
        "hosts": hosts,
    }
    if previous is not None:
        report["drift"] = report_drift(previous, report)
    return report


# --- drift: what changed since the previous report ------------------------------------------------

NOT_AUDITED = ("unreachable", "failed")
# With the host: the identity of a finding (fingerprint). The family tells apart the findings that have no address
# (an allowlist entry's, a filter's), which may come once per family.
FINDING_FIELDS = ("kind", "protocol", "family", "address", "port")
LISTENER_FIELDS = ("protocol", "family", "address", "port")  # with the host: the identity of a listener
# What the renderings read of a resolved finding: every field the schema requires.
PREVIOUS_FINDING_FIELDS = FINDING_FIELDS + ("severity", "processes", "rule", "message", "remediation",
                                            "controls", "source")


def _check_previous(previous):
    """ValueError naming the first thing report_drift cannot use in a previous report."""
    if not isinstance(previous, dict):
        raise ValueError("previous report: %r is not a JSON report (a mapping)" % type(previous).__name__)
    for field in ("schema_version", "generated_at", "hosts"):
        if field not in previous:
            raise ValueError("previous report: it has no %r; pass what audit_report('json') wrote" % field)
    if previous["schema_version"] != SCHEMA_VERSION:
        raise ValueError("previous report: schema_version %r is not %d" % (previous["schema_version"], SCHEMA_VERSION))
    try:
        _utc_timestamp(previous["generated_at"])
    except ValueError as exc:
        raise ValueError("previous report: %s" % exc)
    if not isinstance(previous["hosts"], dict):
        raise ValueError("previous report: hosts: %r is not a mapping" % type(previous["hosts"]).__name__)
    for host, entry in previous["hosts"].items():
        if not isinstance(entry, dict) or entry.get("status") not in ("compliant", "noncompliant") + NOT_AUDITED:
            raise ValueError("previous report: hosts.%s is not a host entry with a status" % host)
        for name, fields in (("findings", PREVIOUS_FINDING_FIELDS), ("listeners", LISTENER_FIELDS + ("processes",))):
            items = entry.get(name)
            if not isinstance(items, list):
                raise ValueError("previous report: hosts.%s.%s is not a list" % (host, name))
            for position, item in enumerate(items):
                missing = [field for field in fields if not isinstance(item, dict) or field not in item]
                if missing:
                    raise ValueError("previous report: hosts.%s.%s[%d] has no %s"
                                     % (host, name, position, ", ".join(repr(field) for field in missing)))
                if name == "findings" and (item["kind"] not in KINDS or item["severity"] not in SEVERITIES):
                    raise ValueError("previous report: hosts.%s.findings[%d] is not of a known kind and severity"
                                     % (host, position))


def _changes(previous_items, items, fields):
    """(only in items, only in previous_items), as multisets of identity: a socket twice counts twice."""
    def key(host, item):
        return (host,) + tuple(str(item[field]) if item[field] is not None else None for field in fields)

    def extra(these, those):
        left = Counter(key(host, item) for host, item in those)
        found = []
        for host, item in these:
            if left[key(host, item)]:
                left[key(host, item)] -= 1
            else:
                found.append((host, item))
        return found
    return extra(items, previous_items), extra(previous_items, items)


def report_drift(previous_report, report):
    """What changed from previous_report to report (both JSON reports); see docs/reports.md "Drift".

    {"previous_generated_at": "2025-05-31T09:30:00Z",
     "findings": {"new": [{"host", "finding"}], "resolved": [{"host", "finding"}], "unchanged": count},
     "listeners": {"appeared": [{"host", "listener"}], "disappeared": [{"host", "listener"}]},
     "hosts": {"appeared": [host], "disappeared": [host]}}

    A finding is its host, kind, protocol, address and port (as its SARIF fingerprint), a listener its host,
    protocol, family, address and port. Only hosts audited in report are compared: a host not audited now
    resolves nothing and loses no listener; one not audited before (or new) has every finding new and every
    listener appeared. Lists follow the report's order: hosts sorted, then the audit's own order.
    """
    _check_previous(previous_report)
    audited = [host for host, entry in report["hosts"].items() if entry["status"] not in NOT_AUDITED]
    before = {host: entry for host, entry in previous_report["hosts"].items()
              if host in audited and entry["status"] not in NOT_AUDITED}

    def pairs(entries, field):
        return [(host, item) for host in sorted(entries) for item in entries[host][field]]
    now = {host: report["hosts"][host] for host in audited}
    new, resolved = _changes(pairs(before, "findings"), pairs(now, "findings"), FINDING_FIELDS)
    appeared, disappeared = _changes(pairs(before, "listeners"), pairs(now, "listeners"), LISTENER_FIELDS)
    return {
        "previous_generated_at": _utc_timestamp(previous_report["generated_at"]),
        "findings": {"new": [{"host": host, "finding": plain(item)} for host, item in new],
                     "resolved": [{"host": host, "finding": plain(item)} for host, item in resolved],
                     "unchanged": len(pairs(now, "findings")) - len(new)},
        "listeners": {"appeared": [{"host": host, "listener": plain(item)} for host, item in appeared],
                      "disappeared": [{"host": host, "listener": plain(item)} for host, item in disappeared]},
        "hosts": {"appeared": sorted(set(report["hosts"]) - set(previous_report["hosts"])),
                  "disappeared": sorted(set(previous_report["hosts"]) - set(report["hosts"]), key=str)},
    }


def drift_lines(drift):
    """The drift as plain lines: the counts, then + new / - resolved findings, listeners and hosts."""
    findings, listeners, hosts = drift["findings"], drift["listeners"], drift["hosts"]
    lines = ["Since %s: %d new findings, %d resolved, %d unchanged; listeners: %d appeared, %d disappeared; "
             "hosts: %d appeared, %d disappeared" % (
                 drift["previous_generated_at"], len(findings["new"]), len(findings["resolved"]),
                 findings["unchanged"], len(listeners["appeared"]), len(listeners["disappeared"]),
                 len(hosts["appeared"]), len(hosts["disappeared"]))]
    for sign, changed in (("+", findings["new"]), ("-", findings["resolved"])):
        lines += ["  %s %s [%s] %s: %s" % (
            sign, item["host"], item["finding"]["severity"], KINDS[item["finding"]["kind"]].title,
            where(item["finding"])) for item in changed]
    for sign, changed in (("+", listeners["appeared"]), ("-", listeners["disappeared"])):
        lines += ["  %s %s listener %s %s" % (
            sign, item["host"], where(item["listener"]), processes_text(item["listener"]["processes"]))
            for item in changed]
    lines += ["  + host %s" % host for host in hosts["appeared"]]
    lines += ["  - host %s" % host for host in hosts["disappeared"]]
    return lines


def printable_report(report):
    """The report with every text in it, keys included, made printable (_text.printable)."""
    if isinstance(report, str):
        return printable(report)
    if isinstance(report, dict):
        return {printable_report(key): printable_report(value) for key, value in report.items()}
    if isinstance(report, (list, tuple)):
        return [printable_report(item) for item in report]
    return report


def render_json(report):
    return json.dumps(report, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def render_text(report):
    """For a console: the drift if any, the fleet's summary, every finding worse than info, the hosts not audited."""
    report = printable_report(report)
    summary = report["summary"]
    lines = drift_lines(report["drift"]) + [""] if "drift" in report else []
    lines += ["%d hosts: %d compliant, %d not compliant, %d not audited; findings: %s" % (
        summary["hosts"], summary["compliant"], summary["noncompliant"], summary["unreachable"],
        ", ".join("%d %s" % (summary["findings"][severity], severity) for severity in SEVERITIES))]
    rows = [(host, item["severity"], KINDS[item["kind"]].title, where(item), processes_text(item["processes"]))
            for host, entry in report["hosts"].items() for item in entry["findings"] if item["severity"] != "info"]
    if rows:
        lines += [""] + align(("HOST", "SEVERITY", "FINDING", "WHERE", "PROCESSES"), rows)
    lines += ["%s: not audited (%s): %s" % (host, entry["status"], entry["error"])
              for host, entry in report["hosts"].items() if entry["status"] in ("unreachable", "failed")]
    return "\n".join(lines) + "\n"


# --- words shared by every rendering --------------------------------------------------------------

def address_port(finding):
    """0.0.0.0:8080, [::]:8443, or *:443 for an allowlist entry (no address)."""
    address = finding["address"]
    if address is None:
        address = "*"
    elif ":" in address:
        address = "[%s]" % address
    return "%s:%s" % (address, finding["port"])


def where(finding):
    """tcp 0.0.0.0:22; a finding with no address names its family when it has one (tcp *:8080 ipv6)."""
    family = " %s" % finding["family"] if finding["address"] is None and finding.get("family") in ("ipv4", "ipv6") \
        else ""
    return "%s %s%s" % (finding["protocol"], address_port(finding), family)


def found_by(finding):
    return "found on the host" if finding["source"] == "host" else "found by the controller's probe"


def processes_text(processes):
    """sshd (36) in ssh.service; each program once, with its pids and unit."""
    by_program = {}
    for process in processes:
        by_program.setdefault((process["name"], process.get("unit")), []).append(str(process["pid"]))
    return "; ".join("%s (%s)%s" % (name, ",".join(pids), " in " + unit if unit else "")
                     for (name, unit), pids in by_program.items()) or "-"


def control_text(control):
    return "%s %s %s: %s" % (control["benchmark"], control["version"], control["id"], control["title"])


def rule_label(rule):
    """allow tcp/22 (any, from anywhere) #0 SSH"""
    if rule["bind"] == "loopback":
        reach = "loopback, local clients only"
    else:
        reach = "%s, from %s" % (rule["bind"], ", ".join(rule["sources"]) or "anywhere")
    family = "" if rule["family"] == "any" else " " + rule["family"]
    label = rule["comment"] or rule["process"]
    return "allow %s/%s%s (%s) #%d%s" % (rule["protocol"], rule["port"], family, reach, rule["index"],
                                         " " + label if label else "")


def finding_details(finding):
    """Several lines of plain text: everything a finding says."""
    lines = ["[%s] %s: %s" % (finding["severity"], finding["kind"], finding["message"]),
             "where: %s (%s), %s" % (where(finding), finding["family"], found_by(finding)),
             "processes: %s" % processes_text(finding["processes"])]
    lines.extend("  pid %s: %s" % (process["pid"], process.get("cmdline") or process["name"])
                 for process in finding["processes"])
    if finding["rule"] is not None:
        lines.append("allowlist entry: #%d" % finding["rule"])
    lines.extend("control: %s" % control_text(control) for control in finding["controls"])
    lines.append("remediation: %s" % finding["remediation"])
    return "\n".join(lines)


def probed(probe):
    """Whether the controller probed the host: a probe record not marked as disabled."""
    return probe is not None and probe.get("enabled", True)


# --- JUnit XML ------------------------------------------------------------------------------------

def _groups(entry):
    """[(check kind or None, name, findings)] of an audited host: allowlist entries, then host-wide checks."""
    by_rule = {rule["index"]: (None, rule_label(rule), []) for rule in entry["allowlist"]}
    checks = {kind: (kind, KINDS[kind].check, []) for kind in STANDING_CHECKS}
    for item in entry["findings"]:
        kind = item["kind"]
        group = by_rule.get(item["rule"]) or checks.setdefault(kind, (kind, KINDS[kind].check, []))
        group[2].append(item)
    return [by_rule[index] for index in sorted(by_rule)] + [checks[kind] for kind in KIND_ORDER if kind in checks]


def _test_cases(entry):
    """[(name, failing finding or None, info findings, reason to skip or None)] of an audited host.

    A group (allowlist entry or check) without findings above info is one test case; otherwise each such
    finding is a test case of its own, "<group>: <where>", so that every one shows in CI with its message
    (one <failure> per test case: Jenkins, GitLab and most readers show only the first).
    """
    cases = []
    for check, name, findings in _groups(entry):
        failing = [item for item in findings if item["severity"] != "info"]
        infos = [item for item in findings if item["severity"] == "info"]
        if not failing:
            unprobed = check == "reachable_not_allowed" and not probed(entry["probe"])
            cases.append((name, None, infos, "the controller did not probe this host" if unprobed else None))
        for position, item in enumerate(failing):
            cases.append(("%s: %s" % (name, where(item)), item, infos if position == 0 else [], None))
    seen = {}
    for position, (name, *rest) in enumerate(cases):  # the same socket twice in a group: number them
        seen[name] = seen.get(name, 0) + 1
        if seen[name] > 1:
            cases[position] = ("%s (%d)" % (name, seen[name]), *rest)
    return cases


def _add_case(suite, host, name, failing, infos, skipped_because):
    case = ET.SubElement(suite, "testcase", {"classname": host, "name": name, "time": "0"})
    if failing:
        ET.SubElement(case, "failure", {
            "message": "[%s] %s" % (failing["severity"], failing["message"]), "type": failing["kind"],
        }).text = finding_details(failing)
    elif skipped_because:
        ET.SubElement(case, "skipped", {"message": skipped_because})
    if infos:
        ET.SubElement(case, "system-out").text = "\n\n".join(finding_details(item) for item in infos)


def _drift_suite(root, drift, timestamp):
    """The "drift" test suite: a test case per new finding, failing above info; the rest of the drift as output."""
    suite = ET.SubElement(root, "testsuite", {"name": "drift", "timestamp": timestamp})
    since = "new since %s" % drift["previous_generated_at"]
    cases, seen = [], Counter()
    for item in drift["findings"]["new"]:
        name = "%s: %s: %s" % (since, KINDS[item["finding"]["kind"]].title, where(item["finding"]))
        seen[(item["host"], name)] += 1
        count = seen[(item["host"], name)]
        cases.append((item["host"], name if count == 1 else "%s (%d)" % (name, count), item["finding"]))
    if not cases:
        ET.SubElement(suite, "testcase", {"classname": "drift", "name": "no new findings since %s"
                                          % drift["previous_generated_at"], "time": "0"})
    for host, name, finding in cases:
        failing = finding if finding["severity"] != "info" else None
        _add_case(suite, host, name, failing, [] if failing else [finding], None)
    ET.SubElement(suite, "system-out").text = "\n".join(drift_lines(drift))
    failures = sum(1 for _host, _name, finding in cases if finding["severity"] != "info")
    return {"tests": max(len(cases), 1), "failures": failures, "errors": 0, "skipped": 0}, suite


def render_junit(report):
    """JUnit XML: a test suite per host, test cases per allowlist entry and host-wide check (see _test_cases),
    after a "drift" suite when the report has a drift (_drift_suite).

    Printable text is valid XML 1.0 too: no character of the host's breaks the file.
    """
    report = printable_report(report)
    timestamp = report["generated_at"].rstrip("Z")
    root = ET.Element("testsuites", {"name": "portcullis audit"})
    totals = dict.fromkeys(("tests", "failures", "errors", "skipped"), 0)
    if "drift" in report:
        counts, suite = _drift_suite(root, report["drift"], timestamp)
        for key, value in counts.items():
            suite.set(key, str(value))
            totals[key] += value
        suite.set("time", "0")
    for host, entry in report["hosts"].items():
        suite = ET.SubElement(root, "testsuite", {"name": host, "hostname": host, "timestamp": timestamp})
        counts = dict.fromkeys(totals, 0)
        if entry["error"] is not None:
            case = ET.SubElement(suite, "testcase", {"classname": host, "name": "audited", "time": "0"})
            ET.SubElement(case, "error", {"message": entry["error"], "type": entry["status"]}).text = (
                "%s could not be audited (%s): %s" % (host, entry["status"], entry["error"]))
            counts.update(tests=1, errors=1)
        else:
            for name, failing, infos, skipped_because in _test_cases(entry):
                _add_case(suite, host, name, failing, infos, skipped_because)
                counts["tests"] += 1
                counts["failures"] += failing is not None
                counts["skipped"] += failing is None and skipped_because is not None
        for key, value in counts.items():
            suite.set(key, str(value))
            totals[key] += value
        suite.set("time", "0")
    for key, value in totals.items():
        root.set(key, str(value))
    root.set("time", "0")
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


# --- SARIF 2.1.0 ----------------------------------------------------------------------------------

def _sarif_rule(kind, findings):
    info = KINDS[kind]
    controls = {}
    for item in findings:
        for control in item["controls"]:
            controls.setdefault((control["id"], control["benchmark"], control["version"]), control)
    tags = ["security", "network", "compliance"] + sorted({"CIS " + key[0] for key in controls})
    properties = {"tags": tags, "controls": [controls[key] for key in sorted(controls)]}
    if info.severity in SECURITY_SEVERITY:
        properties["security-severity"] = SECURITY_SEVERITY[info.severity]
    return {"id": kind, "name": info.name, "shortDescription": {"text": info.title},
            "fullDescription": {"text": info.description}, "helpUri": "%s#%s" % (DOCS_URL, kind),
            "help": {"text": "%s Each result says what to do in properties.remediation." % info.description},
            "defaultConfiguration": {"level": SARIF_LEVELS[info.severity]}, "properties": properties}


def fingerprint(host, finding):
    """Stable across runs for the same problem on the same host."""
    parts = (host,) + tuple(finding[field] for field in FINDING_FIELDS)  # the identity drift compares too
    key = "\x1f".join(str(part) for part in parts)
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def _sarif_result(host, finding):
    name = "%s/%s" % (finding["protocol"], address_port(finding))
    return {
        "ruleId": finding["kind"],
        "ruleIndex": KIND_ORDER.index(finding["kind"]),
        "level": SARIF_LEVELS[finding["severity"]],
        "message": {"text": finding["message"]},
        "locations": [{
            # GitHub code scanning rejects a file whose results name no artifact: the host stands in for one.
            "physicalLocation": {"artifactLocation": {"uri": "hosts/" + quote(host, safe="")},
                                 "region": {"startLine": 1}},
            "logicalLocations": [{"name": name, "fullyQualifiedName": "%s/%s" % (host, name), "kind": "resource"}],
        }],
        "partialFingerprints": {"portcullisFinding/v1": fingerprint(host, finding)},
        "properties": {"host": host, "severity": finding["severity"], "remediation": finding["remediation"],
                       "controls": finding["controls"], "source": finding["source"],
                       "processes": finding["processes"]},
    }


def render_sarif(report):
    """SARIF 2.1.0: one run, a rule per finding kind, a result per finding; hosts not audited as notifications.

    With a drift, each result has a baselineState (new or unchanged) and each resolved finding is a result too,
    "absent".
    """
    results, notifications = [], []
    by_kind = {kind: [] for kind in KIND_ORDER}
    drift = report.get("drift")
    # The drift's new findings are the last ones of their identity (report_drift matches the first ones).
    new = Counter(fingerprint(item["host"], item["finding"]) for item in drift["findings"]["new"]) if drift else None
    total = Counter(fingerprint(host, item) for host, entry in report["hosts"].items() for item in entry["findings"])
    seen = Counter()
    for host, entry in report["hosts"].items():
        if entry["error"] is not None:
            notifications.append({"level": "error",
                                  "message": {"text": "%s could not be audited (%s): %s" % (
                                      host, entry["status"], entry["error"])},
                                  "properties": {"host": host, "status": entry["status"]}})
        for item in entry["findings"]:
            result = _sarif_result(host, item)
            if drift:
                key = fingerprint(host, item)
                result["baselineState"] = "new" if seen[key] >= total[key] - new[key] else "unchanged"
                seen[key] += 1
            results.append(result)
            by_kind[item["kind"]].append(item)
    for item in drift["findings"]["resolved"] if drift else []:
        # In the baseline, not in this run: SARIF's "absent", a passing result (kind pass, level none).
        result = _sarif_result(item["host"], item["finding"])
        result.update(baselineState="absent", kind="pass", level="none")
        results.append(result)
    sarif = {
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {"name": "portcullis", "fullName": TOOL_NAME, "version": report["tool"]["version"],
                                "informationUri": DOCS_URL,
                                "rules": [_sarif_rule(kind, by_kind[kind]) for kind in KIND_ORDER]}},
            "invocations": [{"executionSuccessful": not notifications, "endTimeUtc": report["generated_at"],
                             "toolExecutionNotifications": notifications}],
            "results": results,
            "properties": dict({"summary": report["summary"]}, **(
                {"previous_generated_at": drift["previous_generated_at"]} if drift else {})),
        }],
    }
    return json.dumps(sarif, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
