# Copyright (c) Portcullis contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import copy
import datetime
import html
import json
import os
import re
import sys
import xml.etree.ElementTree as ET

import jsonschema
import pytest
import yaml

from ansible.errors import AnsibleFilterError

from ansible_collections.portcullis.hardening.plugins.filter import audit_report as audit_report_plugin
from ansible_collections.portcullis.hardening.plugins.filter.audit_report import audit_report
from ansible_collections.portcullis.hardening.plugins.module_utils._allowlist import parse_allowlist
from ansible_collections.portcullis.hardening.plugins.module_utils._audit import (
    normalise_listeners,
    probe_findings,
    sort_findings,
)
from ansible_collections.portcullis.hardening.plugins.plugin_utils._report_html import render_html
from ansible_collections.portcullis.hardening.plugins.plugin_utils._reports import (
    KIND_ORDER,
    KINDS,
    build_report,
    printable_report,
    render_json,
    render_junit,
    render_sarif,
    render_text,
    report_drift,
    where,
)

HERE = os.path.dirname(os.path.abspath(__file__))
COLLECTION = os.path.abspath(os.path.join(HERE, "..", "..", "..", ".."))
REPORT_SCHEMA = os.path.join(COLLECTION, "docs", "report.schema.json")
# The SARIF 2.1.0 schema as the SARIF SDK publishes it (json.schemastore.org/sarif-2.1.0.json), from the npm
# package @microsoft/sarif-multitool-ts, installed into the venv: npm install --prefix .venv --no-save ...
SARIF_SCHEMA = os.path.join(sys.prefix, "node_modules", "@microsoft", "sarif-multitool-ts", "assets",
                            "sarif-2.1.0.schema.json")
GENERATED_AT = "2025-06-01T09:30:00Z"
COMPLIANT, NONCOMPLIANT, UNREACHABLE = "web-01.example.org", "app-01.example.org", "db-01.example.org"


def load_json(path):
    with open(path, encoding="utf-8") as source:
        return json.load(source)


@pytest.fixture
def results():
    """Three hosts as the audit playbook collects them: compliant, not compliant (every finding kind), unreachable.

    The findings were made by port_audit's own logic (module_utils/_audit.py) from the listeners and allowlists;
    those of the UDP probe are made here the same way, as the action plugin does: udp 0.0.0.0:9999 gave no answer.
    """
    results = load_json(os.path.join(HERE, "fixtures", "audit_results.json"))
    app = results[NONCOMPLIANT]
    seen = {"192.0.2.20": {9999: ("open|filtered", None)}, "2001:db8::20": {9999: ("closed", None)}}
    rules = parse_allowlist([{key: value for key, value in rule.items() if key != "index"} for rule in app["allowlist"]])
    app["findings"] = sort_findings(app["findings"] + probe_findings(normalise_listeners(app["listeners"]), rules,
                                                                     seen, "udp"))
    app["probe"]["udp_ports"] = {address: {str(port): state for port, (state, _from) in by_port.items()}
                                 for address, by_port in seen.items()}
    return results


@pytest.fixture
def report(results):
    return build_report(results, GENERATED_AT, "0.1.0")


def validate(instance, schema):
    validator = jsonschema.validators.validator_for(schema)
    validator.check_schema(schema)
    validator(schema, format_checker=validator.FORMAT_CHECKER).validate(instance)


def test_fixture_has_every_finding_kind(results):
    assert {item["kind"] for item in results[NONCOMPLIANT]["findings"]} == set(KIND_ORDER)
    assert results[COMPLIANT]["compliant"] and results[COMPLIANT]["findings"]  # an info finding only


def test_a_silent_udp_port_is_recorded_in_every_format_never_failed(report):
    [item] = [item for item in report["hosts"][NONCOMPLIANT]["findings"] if item["kind"] == "udp_open_or_filtered"]
    assert (item["severity"], item["protocol"], item["address"], item["port"], item["source"]) == (
        "info", "udp", "192.0.2.20", 9999, "probe")
    assert "not proof either way" in item["message"] and KINDS["udp_open_or_filtered"].severity == "info"
    assert KIND_ORDER.index("udp_open_or_filtered") == KIND_ORDER.index("listening_but_filtered") + 1
    assert report["hosts"][NONCOMPLIANT]["probe"]["udp_ports"] == {"192.0.2.20": {"9999": "open|filtered"},
                                                                   "2001:db8::20": {"9999": "closed"}}
    # JUnit: in the system-out of its own check, which passes.
    suite = ET.fromstring(render_junit(report)).find("testsuite[@name='%s']" % NONCOMPLIANT)
    [case] = [case for case in suite if case.get("name") == "listening UDP ports that gave the probe no answer"]
    assert case.find("failure") is None and item["message"] in case.find("system-out").text
    # SARIF: a note under its own rule, without a security severity.
    run = json.loads(render_sarif(report))["runs"][0]
    rule = run["tool"]["driver"]["rules"][KIND_ORDER.index("udp_open_or_filtered")]
    assert (rule["id"], rule["name"], rule["defaultConfiguration"]["level"]) == (
        "udp_open_or_filtered", "UdpOpenOrFiltered", "note")
    assert "security-severity" not in rule["properties"] and "CIS 4.3.8" in rule["properties"]["tags"]
    [result] = [result for result in run["results"] if result["ruleId"] == "udp_open_or_filtered"]
    assert result["level"] == "note" and result["message"]["text"] == item["message"]
    # Text: not among the findings to fix; HTML: in the host's section, not in the fleet's table.
    assert "udp 192.0.2.20:9999" not in render_text(report)
    page = render_html(report)
    assert html.escape(item["message"]) in page and html.escape(item["message"]) not in page.split(
        'id="findings"')[1].split("<h2>")[0]


# --- JSON -------------------------------------------------------------------------------------------

def test_json_report_validates_against_its_schema(report):
    validate(json.loads(render_json(report)), load_json(REPORT_SCHEMA))


def test_summary_counts_every_host_and_finding(report):
    # high: 2 reachable, 3 unexpected listeners, a published port, a wide bind and IPv6 without default deny;
    # medium: 8080 dropped by the "ip hardening" table and held by another program
    assert report["summary"] == {"hosts": 3, "compliant": 1, "noncompliant": 1, "unreachable": 1,
                                 "findings": {"high": 8, "medium": 2, "low": 1, "info": 6}}
    assert list(report["hosts"]) == [NONCOMPLIANT, UNREACHABLE, COMPLIANT]
    assert [entry["status"] for entry in report["hosts"].values()] == ["noncompliant", "unreachable", "compliant"]
    assert report["hosts"][UNREACHABLE] == {
        "status": "unreachable", "compliant": None, "findings": [], "listeners": [], "allowlist": [], "probe": None,
        "error": "Failed to connect to the host via ssh: ssh: connect to host 192.0.2.30 port 22: No route to host"}
    assert report["generated_at"] == GENERATED_AT
    assert report["tool"] == {"name": "portcullis.hardening", "version": "0.1.0"}


@pytest.mark.parametrize("generated_at", [
    "2025-06-01T09:30:00Z",
    "2025-06-01T09:30:00+00:00",
    "2025-06-01T11:30:00+02:00",
    "2025-06-01 09:30:00",
    datetime.datetime(2025, 6, 1, 9, 30, tzinfo=datetime.timezone.utc),
    datetime.datetime(2025, 6, 1, 9, 30),
])
def test_generated_at_is_utc_to_the_second(results, generated_at):
    assert build_report(results, generated_at, "0.1.0")["generated_at"] == GENERATED_AT


def test_same_input_gives_byte_identical_reports(results):
    shuffled = {host: results[host] for host in reversed(list(results))}
    for render in (render_json, render_junit, render_sarif, render_html):
        first = render(build_report(results, GENERATED_AT, "0.1.0"))
        assert render(build_report(shuffled, GENERATED_AT, "0.1.0")) == first
        assert render(build_report(copy.deepcopy(results), GENERATED_AT, "0.1.0")) == first


@pytest.mark.parametrize("result, status, error", [
    ({"unreachable": True, "msg": "ssh: no route to host"}, "unreachable", "ssh: no route to host"),
    ({"failed": True, "msg": "allowlist[2].port: 70000 is outside 1-65535"}, "failed",
     "allowlist[2].port: 70000 is outside 1-65535"),
    ({"failed": True}, "failed", "failed"),
    ({"skipped": True, "skip_reason": "Conditional result was False"}, "failed", "Conditional result was False"),
])
def test_hosts_not_audited_are_reported_not_dropped(result, status, error):
    entry = build_report({"h1": result}, GENERATED_AT, "0.1.0")["hosts"]["h1"]
    assert (entry["status"], entry["compliant"], entry["error"]) == (status, None, error)


@pytest.mark.parametrize("results_by_host, generated_at, problem", [
    (["web-01"], GENERATED_AT, "expected a mapping of host name to audit result, got list"),
    ({"h1": "unreachable"}, GENERATED_AT, "host h1: 'unreachable' is not an audit result"),
    ({"h1": {"compliant": True, "listeners": [], "allowlist": []}}, GENERATED_AT, "has no 'findings'"),
    ({"h1": {"compliant": "yes", "findings": [], "listeners": [], "allowlist": []}}, GENERATED_AT,
     "compliant: 'yes' must be true or false"),
    ({"h1": {"compliant": False, "findings": [{"kind": "open_port", "severity": "high"}], "listeners": [],
             "allowlist": []}}, GENERATED_AT, "findings[0] is not a finding of a known kind and severity"),
    ({}, "yesterday", "generated_at: 'yesterday' is not an ISO-8601 date and time"),
    ({}, 1717234200, "generated_at: 1717234200 must be an ISO-8601 text or a datetime"),
])
def test_bad_input_is_named(results_by_host, generated_at, problem):
    with pytest.raises(ValueError, match=re.escape(problem)):
        build_report(results_by_host, generated_at, "0.1.0")


# --- JUnit ------------------------------------------------------------------------------------------

def suite_counts(suite):
    cases = suite.findall("testcase")
    return {"tests": len(cases),
            "failures": sum(1 for case in cases if case.find("failure") is not None),
            "errors": sum(1 for case in cases if case.find("error") is not None),
            "skipped": sum(1 for case in cases if case.find("skipped") is not None)}


def test_junit_counts_are_exact_per_suite_and_in_total(report):
    root = ET.fromstring(render_junit(report))
    suites = {suite.get("name"): suite for suite in root.findall("testsuite")}
    expected = {
        # 6 allowlist entries, 4 of them failing: #2, #4 and #5 once, #1 (8080) twice, a test case each (a filter
        # drops it, another program holds it); 3 unexpected listeners, 1 reachable port, 1 published container port
        # and IPv6 without a default-deny firewall, a test case each; 2 checks with info findings only (filtered
        # ports, a silent UDP port)
        NONCOMPLIANT: {"tests": 6 + 1 + 3 + 1 + 1 + 1 + 2, "failures": 3 + 2 + 3 + 1 + 1 + 1, "errors": 0,
                       "skipped": 0},
        UNREACHABLE: {"tests": 1, "failures": 0, "errors": 1, "skipped": 0},
        COMPLIANT: {"tests": 3 + 2, "failures": 0, "errors": 0, "skipped": 0},  # 3 entries, 2 standing checks
    }
    assert list(suites) == list(expected)
    for host, counts in expected.items():
        assert suite_counts(suites[host]) == counts
        assert {key: int(suites[host].get(key)) for key in counts} == counts
    assert {key: int(root.get(key)) for key in ("tests", "failures", "errors", "skipped")} == {
        "tests": 21, "failures": 11, "errors": 1, "skipped": 0}
    assert sum(report["summary"]["findings"][severity] for severity in ("high", "medium", "low")) == 11
    for suite in root:
        names = [case.get("name") for case in suite]
        assert len(set(names)) == len(names)
        assert all(case.get("classname") == suite.get("name") for case in suite)
        assert all(len(case.findall("failure")) <= 1 for case in suite)


def test_junit_puts_each_finding_in_its_test_case(report):
    root = ET.fromstring(render_junit(report))
    checks = {"unexpected_listener": "no unexpected listeners",
              "reachable_not_allowed": "no reachable ports outside the allowlist",
              "listening_but_filtered": "listening ports the controller cannot reach",
              "udp_open_or_filtered": "listening UDP ports that gave the probe no answer",
              "unexpected_published_port": "no unexpected published container ports",
              "allowed_but_filtered": "no allowlisted port dropped by an active filter",
              "firewall_inactive": "a firewall denies by default, for IPv4 and IPv6"}
    assert all(KINDS[kind].check == check for kind, check in checks.items())
    for host in (NONCOMPLIANT, COMPLIANT):
        cases = list(root.find("testsuite[@name='%s']" % host))
        for item in report["hosts"][host]["findings"]:
            group = checks[item["kind"]] if item["rule"] is None else "allow %s/%s " % (item["protocol"], item["port"])
            if item["severity"] == "info":
                [case] = [case for case in cases if case.find("system-out") is not None
                          and item["message"] in case.find("system-out").text]
                assert case.get("name").startswith(group)
            else:
                [case] = [case for case in cases if case.find("failure") is not None
                          and item["message"] in case.find("failure").get("message")]
                failure = case.find("failure")
                assert case.get("name").startswith(group) and case.get("name").endswith(": " + where(item))
                assert failure.get("type") == item["kind"] and failure.get("message").startswith(
                    "[%s] " % item["severity"])
                assert item["remediation"] in failure.text
    unreachable = root.find("testsuite[@name='%s']/testcase/error" % UNREACHABLE)
    assert unreachable.get("type") == "unreachable" and "No route to host" in unreachable.get("message")


def test_junit_names_each_allowlist_entry_and_check(report):
    root = ET.fromstring(render_junit(report))
    names = [case.get("name") for case in root.find("testsuite[@name='%s']" % NONCOMPLIANT)]
    assert names == [
        "allow tcp/22 (any, from anywhere) #0 SSH",
        "allow tcp/8080 (any, from anywhere) #1 web front-end: tcp *:8080 ipv4",  # dropped by the ip hardening table
        "allow tcp/8080 (any, from anywhere) #1 web front-end: tcp 0.0.0.0:8080",
        "allow tcp/6379 (loopback, local clients only) #2 cache, for local clients only: tcp 0.0.0.0:6379",
        "allow tcp/443 (any, from anywhere) #3 HTTPS, not deployed yet",
        "allow tcp/5432 (any, from 10.20.0.0/16) #4 PostgreSQL from the app network: tcp 192.0.2.20:5432",
        "allow tcp/9100 ipv4 (any, from 10.0.0.0/8) #5 node exporter for Prometheus: tcp 192.0.2.20:9100",
        "no unexpected listeners: tcp 0.0.0.0:3000",
        "no unexpected listeners: tcp [::]:8443",
        "no unexpected listeners: udp 0.0.0.0:9999",
        "no reachable ports outside the allowlist: tcp [2001:db8::20]:8443",
        "listening ports the controller cannot reach",
        "listening UDP ports that gave the probe no answer",
        "no unexpected published container ports: tcp 0.0.0.0:8081",
        "a firewall denies by default, for IPv4 and IPv6: tcp *:65535 ipv6",
    ]


def test_junit_test_case_names_stay_unique(results):
    entry = results[NONCOMPLIANT]
    twice = [item for item in entry["findings"] if item["kind"] == "wider_bind_than_allowed"] * 2
    entry["findings"] = twice + [dict(twice[0], address="::", family="ipv6")]
    names = [case.get("name") for case in ET.fromstring(render_junit(build_report(
        {NONCOMPLIANT: entry}, GENERATED_AT, "0.1.0"))).find("testsuite") if case.find("failure") is not None]
    group = "allow tcp/6379 (loopback, local clients only) #2 cache, for local clients only: "
    assert names == [group + "tcp 0.0.0.0:6379", group + "tcp 0.0.0.0:6379 (2)", group + "tcp [::]:6379"]


@pytest.mark.parametrize("probe", [None, {"enabled": False, "addresses": [], "ports": {}}])
def test_junit_skips_the_reachability_check_without_a_probe(results, probe):
    results[COMPLIANT]["probe"] = probe
    suite = ET.fromstring(render_junit(build_report(results, GENERATED_AT, "0.1.0"))).find(
        "testsuite[@name='%s']" % COMPLIANT)
    [skipped] = [case for case in suite if case.find("skipped") is not None]
    assert skipped.get("name") == "no reachable ports outside the allowlist"
    assert (suite.get("tests"), suite.get("skipped")) == ("5", "1")


# --- SARIF ------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def sarif_schema():
    if not os.path.isfile(SARIF_SCHEMA):
        pytest.fail("The SARIF 2.1.0 schema is missing at %s: npm install --prefix %s --no-save "
                    "@microsoft/sarif-multitool-ts@5.7.0" % (SARIF_SCHEMA, sys.prefix))
    schema = load_json(SARIF_SCHEMA)
    assert schema["title"] == "Static Analysis Results Format (SARIF) Version 2.1.0 JSON Schema"
    return schema


def test_sarif_validates_against_the_sarif_2_1_0_schema(report, sarif_schema):
    validate(json.loads(render_sarif(report)), sarif_schema)


def test_sarif_has_a_rule_per_kind_and_a_result_per_finding(report):
    sarif = json.loads(render_sarif(report))
    assert (sarif["$schema"], sarif["version"]) == ("https://json.schemastore.org/sarif-2.1.0.json", "2.1.0")
    [run] = sarif["runs"]
    rules = run["tool"]["driver"]["rules"]
    assert run["tool"]["driver"]["name"] == "portcullis"
    assert [rule["id"] for rule in rules] == list(KIND_ORDER)
    for rule in rules:
        assert rule["name"] and rule["shortDescription"]["text"] and rule["fullDescription"]["text"]
        assert rule["helpUri"].endswith("docs/reports.md#" + rule["id"])
        assert rule["defaultConfiguration"]["level"] in ("error", "warning", "note")
    assert "CIS 2.1.22" in rules[KIND_ORDER.index("unexpected_listener")]["properties"]["tags"]
    filtered = rules[KIND_ORDER.index("allowed_but_filtered")]
    assert (filtered["name"], filtered["defaultConfiguration"]["level"], filtered["properties"]["security-severity"]) == (
        "AllowedButFiltered", "warning", "5.5")
    assert {"CIS 4.3.8", "CIS 4.2.6", "CIS 4.4.2.4", "CIS 4.4.3.4"} <= set(filtered["properties"]["tags"])
    inactive = rules[KIND_ORDER.index("firewall_inactive")]
    assert (inactive["name"], inactive["defaultConfiguration"]["level"], inactive["properties"]["security-severity"]) == (
        "FirewallInactive", "error", "8.0")
    assert {"CIS 4.1.1", "CIS 4.3.8"} <= set(inactive["properties"]["tags"])
    findings = [(host, item) for host, entry in report["hosts"].items() for item in entry["findings"]]
    assert len(run["results"]) == len(findings) == 17
    for result, (host, item) in zip(run["results"], findings):
        assert rules[result["ruleIndex"]]["id"] == result["ruleId"] == item["kind"]
        assert result["message"]["text"] == item["message"]
        assert result["properties"]["host"] == host and result["properties"]["remediation"] == item["remediation"]
        [location] = result["locations"]
        [logical] = location["logicalLocations"]
        assert logical["fullyQualifiedName"] == host + "/" + logical["name"] and logical["kind"] == "resource"
        assert location["physicalLocation"]["artifactLocation"]["uri"] == "hosts/" + host
    fingerprints = [result["partialFingerprints"]["portcullisFinding/v1"] for result in run["results"]]
    assert len(set(fingerprints)) == len(fingerprints)


@pytest.mark.parametrize("severity, level", [("high", "error"), ("medium", "warning"), ("low", "note"),
                                             ("info", "note")])
def test_sarif_level_follows_severity(report, severity, level):
    results = json.loads(render_sarif(report))["runs"][0]["results"]
    assert {result["level"] for result in results if result["properties"]["severity"] == severity} == {level}


def test_sarif_logical_location_names_host_and_socket(report):
    results = json.loads(render_sarif(report))["runs"][0]["results"]
    names = {result["locations"][0]["logicalLocations"][0]["fullyQualifiedName"] for result in results}
    assert {"app-01.example.org/tcp/0.0.0.0:3000", "app-01.example.org/tcp/[::]:8443",
            "app-01.example.org/udp/0.0.0.0:9999", "web-01.example.org/tcp/*:80"} <= names


def test_sarif_fingerprints_are_stable_and_hosts_not_audited_are_notifications(results, report):
    results[NONCOMPLIANT]["findings"].reverse()
    again = json.loads(render_sarif(build_report(results, GENERATED_AT, "0.1.0")))["runs"][0]
    run = json.loads(render_sarif(report))["runs"][0]
    assert sorted(r["partialFingerprints"]["portcullisFinding/v1"] for r in run["results"]) == sorted(
        r["partialFingerprints"]["portcullisFinding/v1"] for r in again["results"])
    [invocation] = run["invocations"]
    [notification] = invocation["toolExecutionNotifications"]
    assert invocation["executionSuccessful"] is False
    assert notification["level"] == "error" and notification["properties"]["host"] == UNREACHABLE
    assert "No route to host" in notification["message"]["text"]


# --- HTML -------------------------------------------------------------------------------------------

def test_html_shows_every_host_and_finding(report):
    page = render_html(report)
    for host, entry in report["hosts"].items():
        assert html.escape(host) in page
        for item in entry["findings"]:
            assert html.escape(item["message"]) in page and html.escape(item["remediation"]) in page
    assert html.escape(report["hosts"][UNREACHABLE]["error"]) in page
    fleet_table = page.split('id="findings"')[1].split("<h2>")[0]
    assert fleet_table.count("<tr class=\"sev-") == 11  # every finding above info, across the fleet


def test_html_probe_shows_udp_states_with_their_uncertainty(report):
    probe = render_html(report).rsplit(html.escape(NONCOMPLIANT), maxsplit=1)[-1].split("Probe from the controller")[1]
    rows = [row for row in probe.split("<tr") if "udp " in row]
    assert len(rows) == 2
    silent = [row for row in rows if "192.0.2.20" in row][0]
    refused = [row for row in rows if "2001:db8::20" in row][0]

    def cells(row):
        return [cell.split("</td>")[0].rsplit(">", 1)[-1] for cell in row.split("<td")[2:]]
    assert cells(silent) == ["-", "-", "9999 (open|filtered)"]
    assert cells(refused) == ["-", "9999", "-"]


def test_html_is_self_contained(report):
    page = render_html(report)
    assert "http://" not in page and "https://" not in page
    assert all(target.startswith("#") for target in re.findall(r'(?:href|src)="([^"]*)"', page))
    assert "<script" not in page.lower() and "url(" not in page and "@import" not in page
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")


def test_reports_survive_hostile_text(results):
    hostile_cmd = '/opt/x --name=<script>alert("owned")</script> & \x1b[31m'
    hostile_host = 'evil<img src=x onerror=alert(1)>"&'
    results[hostile_host] = results.pop(COMPLIANT)
    for listener in results[hostile_host]["listeners"]:
        for process in listener["processes"]:
            process["cmdline"] = hostile_cmd
    item = results[NONCOMPLIANT]["findings"][1]  # the first with a process ([0], firewall_inactive, names none)
    assert item["processes"] and item["severity"] != "info"
    item["message"] = "</td></tr></table><script>alert(2)</script>"
    item["processes"][0]["cmdline"] = hostile_cmd
    report = build_report(results, GENERATED_AT, "0.1.0")

    page = render_html(report)
    assert "<script" not in page and "<img" not in page
    assert html.escape(hostile_cmd.replace("\x1b", "\\x1b")) in page and html.escape(hostile_host) in page
    assert "\x1b" not in page  # the escape character is shown, never sent to a browser or a terminal
    assert html.escape(item["message"]) in page

    root = ET.fromstring(render_junit(report))  # control characters do not break the XML
    assert root.find("testsuite[@name='%s']" % hostile_host) is not None
    failures = "".join(failure.get("message") + failure.text for failure in root.iter("failure"))
    assert item["message"] in failures and "\\x1b[31m" in failures and "\x1b" not in failures
    assert json.loads(render_sarif(report))["runs"][0]["results"][1]["message"]["text"] == item["message"]
    assert json.loads(render_json(report))["hosts"][hostile_host]["listeners"][0]["processes"][0]["cmdline"] == (
        hostile_cmd)


# --- the filter -------------------------------------------------------------------------------------

def test_filter_renders_each_format(results, report):
    for name, render in (("json", render_json), ("junit", render_junit), ("sarif", render_sarif),
                         ("html", render_html)):
        assert audit_report(results, name, GENERATED_AT) == render(report)


@pytest.mark.parametrize("results_by_host, report_format, problem", [
    ({}, "pdf", "format 'pdf' is not one of: json, junit, sarif, html"),
    ("web-01", "json", "expected a mapping of host name to audit result, got str"),
    ({"h1": {"compliant": True, "findings": [{"kind": "unexpected_listener", "severity": "high"}], "listeners": [],
             "allowlist": []}}, "junit", "an audit result lacks a field or has a wrong type"),
])
def test_filter_names_the_problem(results_by_host, report_format, problem):
    with pytest.raises(AnsibleFilterError, match=re.escape(problem)):
        audit_report(results_by_host, report_format, GENERATED_AT)


def test_text_summary_for_a_console(results):
    text = render_text(build_report(results, "2026-11-24T12:00:00Z", "0.1.0"))
    lines = text.splitlines()
    report = build_report(results, "2026-11-24T12:00:00Z", "0.1.0")
    summary = report["summary"]
    assert lines[0] == "%d hosts: %d compliant, %d not compliant, %d not audited; findings: %d high, %d medium, " \
        "%d low, %d info" % (summary["hosts"], summary["compliant"], summary["noncompliant"], summary["unreachable"],
                             *(summary["findings"][s] for s in ("high", "medium", "low", "info")))
    assert lines[2].split() == ["HOST", "SEVERITY", "FINDING", "WHERE", "PROCESSES"]
    worse_than_info = [(host, item) for host, entry in report["hosts"].items() for item in entry["findings"]
                       if item["severity"] != "info"]
    table = lines[3:3 + len(worse_than_info)]
    for line, (host, item) in zip(table, worse_than_info):
        assert line.startswith(host) and item["severity"] in line and str(item["port"]) in line
    not_audited = [host for host, entry in report["hosts"].items() if entry["status"] in ("unreachable", "failed")]
    assert [line.split(":")[0] for line in lines[3 + len(worse_than_info):]] == not_audited


# --- text from hosts that would drive a terminal ------------------------------------------------------

HOSTILE = "\x1b]0;pwned\x07\x1b[2J\r\u202eexe.txt\u2028\x9b31m"
SHOWN = "\\x1b]0;pwned\\x07\\x1b[2J\\r\\u202eexe.txt\\u2028\\x9b31m"
# What must not reach a reader raw: controls but the newline, DEL, C1, line separators, bidi controls.
RAW = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]")
HOST_TEXT_FIELDS = ("name", "cmdline", "unit", "user", "message", "remediation", "comment", "process", "title",
                    "msg")


def poisoned(value):
    """The audit results with HOSTILE appended to every text a host controls, host names included."""
    if isinstance(value, dict):
        return {key + HOSTILE if key.endswith(".example.org") else key:
                item + HOSTILE if key in HOST_TEXT_FIELDS and isinstance(item, str) else poisoned(item)
                for key, item in value.items()}
    if isinstance(value, list):
        return [poisoned(item) for item in value]
    return value


@pytest.mark.parametrize("report_format", ["text", "junit", "html"])
def test_host_text_cannot_drive_the_terminal(results, report_format):
    rendered = audit_report(poisoned(results), report_format, GENERATED_AT)
    assert RAW.search(rendered) is None
    assert "pwned" in rendered and SHOWN in rendered
    if report_format == "junit":
        ET.fromstring(rendered)  # still XML


def test_text_report_shows_hostile_names_escaped(results):
    item = results[NONCOMPLIANT]["findings"][1]  # the first with a process ([0], firewall_inactive, names none)
    assert item["processes"] and item["severity"] != "info"
    item["processes"][0]["name"] = "\x1b]0;pwned\x07"
    results[UNREACHABLE]["msg"] = "ssh: \r\x1b[Kall good"
    text = render_text(build_report(results, GENERATED_AT, "0.1.0"))
    assert "\x1b" not in text and "\r" not in text
    assert "\\x1b]0;pwned\\x07 (%s)" % item["processes"][0]["pid"] in text
    assert "ssh: \\r\\x1b[Kall good" in text


def test_data_formats_keep_host_text_as_it_is(results):
    report = build_report(poisoned(results), GENERATED_AT, "0.1.0")
    host = NONCOMPLIANT + HOSTILE
    assert json.loads(render_json(report))["hosts"][host]["findings"][0]["message"].endswith(HOSTILE)
    assert "\x1b" not in render_json(report) and "\x1b" not in render_sarif(report)  # json.dumps escapes C0
    assert json.loads(render_sarif(report))["runs"][0]["results"][0]["properties"]["host"] == host


def test_printable_report_leaves_ordinary_reports_alone(report):
    assert printable_report(report) == report
    assert printable_report(build_report(poisoned({"h": {"unreachable": True, "msg": "x"}}), GENERATED_AT, "0"))[
        "hosts"]["h"]["error"] == "x" + SHOWN


# --- drift ------------------------------------------------------------------------------------------

PREVIOUS_AT = "2025-05-31T09:30:00Z"
GONE = "old-01.example.org"


def make_finding(port, address="0.0.0.0", kind="unexpected_listener", severity="high", message="listens"):
    return {"kind": kind, "severity": severity, "protocol": "tcp", "family": "ipv6" if ":" in address else "ipv4",
            "address": address, "port": port, "processes": [{"pid": 7, "name": "x"}], "rule": None,
            "message": message, "remediation": "stop it", "controls": [], "source": "host"}


def make_listener(port, address="0.0.0.0"):
    return {"protocol": "tcp", "family": "ipv6" if ":" in address else "ipv4", "address": address, "port": port,
            "processes": [{"pid": 7, "name": "x"}], "loopback": False, "wildcard": True}


def audited(findings=(), listeners=()):
    return {"compliant": not findings, "findings": list(findings), "listeners": list(listeners), "allowlist": [],
            "probe": None}


DOWN = {"unreachable": True, "msg": "no route to host"}


def summarise(drift):
    """The drift as (new, resolved, unchanged, appeared, disappeared, hosts appeared, hosts disappeared)."""
    return ([(item["host"], item["finding"]["port"]) for item in drift["findings"]["new"]],
            [(item["host"], item["finding"]["port"]) for item in drift["findings"]["resolved"]],
            drift["findings"]["unchanged"],
            [(item["host"], item["listener"]["address"], item["listener"]["port"])
             for item in drift["listeners"]["appeared"]],
            [(item["host"], item["listener"]["address"], item["listener"]["port"])
             for item in drift["listeners"]["disappeared"]],
            drift["hosts"]["appeared"], drift["hosts"]["disappeared"])


@pytest.mark.parametrize("before, now, expected", [
    pytest.param({"h1": audited([make_finding(3000)])}, {"h1": audited([make_finding(3000)])},
                 ([], [], 1, [], [], [], []), id="unchanged"),
    pytest.param({"h1": audited([make_finding(3000, message="old words")])},
                 {"h1": audited([make_finding(3000, message="new words", severity="medium")])},
                 ([], [], 1, [], [], [], []), id="same socket, other message: unchanged"),
    pytest.param({"h1": audited()}, {"h1": audited([make_finding(3000)])},
                 ([("h1", 3000)], [], 0, [], [], [], []), id="new finding"),
    pytest.param({"h1": audited([make_finding(3000), make_finding(4000)])}, {"h1": audited([make_finding(3000)])},
                 ([], [("h1", 4000)], 1, [], [], [], []), id="resolved finding"),
    pytest.param({"h1": audited([make_finding(3000)])},
                 {"h1": audited([make_finding(3000, kind="reachable_not_allowed")])},
                 ([("h1", 3000)], [("h1", 3000)], 0, [], [], [], []), id="other kind, same socket"),
    pytest.param({"h1": audited([make_finding(3000)])}, {"h1": audited([make_finding(3000, address="::")])},
                 ([("h1", 3000)], [("h1", 3000)], 0, [], [], [], []), id="other address"),
    pytest.param({"h1": audited([make_finding(3000)])}, {"h1": audited([make_finding(3000)] * 2)},
                 ([("h1", 3000)], [], 1, [], [], [], []), id="the same socket twice now, once before"),
    pytest.param({"h1": audited(listeners=[make_listener(22)])},
                 {"h1": audited(listeners=[make_listener(22), make_listener(8080)])},
                 ([], [], 0, [("h1", "0.0.0.0", 8080)], [], [], []), id="listener appeared"),
    pytest.param({"h1": audited(listeners=[make_listener(22), make_listener(22, "::")])},
                 {"h1": audited(listeners=[make_listener(22)])},
                 ([], [], 0, [], [("h1", "::", 22)], [], []), id="listener disappeared"),
    pytest.param({"h1": audited()}, {"h1": audited(), "h2": audited([make_finding(3000)], [make_listener(3000)])},
                 ([("h2", 3000)], [], 0, [("h2", "0.0.0.0", 3000)], [], ["h2"], []), id="host appeared"),
    pytest.param({"h1": audited(), "h2": audited([make_finding(3000)], [make_listener(3000)])}, {"h1": audited()},
                 ([], [], 0, [], [], [], ["h2"]), id="host disappeared: nothing resolved"),
    pytest.param({"h1": audited([make_finding(3000)], [make_listener(3000)])}, {"h1": DOWN},
                 ([], [], 0, [], [], [], []), id="host not audited now: nothing resolved"),
    pytest.param({"h1": DOWN}, {"h1": audited([make_finding(3000)], [make_listener(3000)])},
                 ([("h1", 3000)], [], 0, [("h1", "0.0.0.0", 3000)], [], [], []), id="host not audited before"),
])
def test_report_drift(before, now, expected):
    previous = json.loads(render_json(build_report(before, PREVIOUS_AT, "0.1.0")))
    report = build_report(now, GENERATED_AT, "0.1.0", previous)
    assert report["drift"]["previous_generated_at"] == PREVIOUS_AT
    assert summarise(report["drift"]) == expected
    assert report_drift(previous, build_report(now, GENERATED_AT, "0.1.0")) == report["drift"]
    validate(json.loads(render_json(report)), load_json(REPORT_SCHEMA))


def test_a_report_without_previous_has_no_drift(report):
    assert "drift" not in report


def previous_of(report):
    return json.loads(render_json(report))


@pytest.mark.parametrize("change, problem", [
    (lambda previous: "report", "previous report: 'str' is not a JSON report"),
    (lambda previous: {}, "previous report: it has no 'schema_version'"),
    (lambda previous: previous.pop("generated_at") and previous, "previous report: it has no 'generated_at'"),
    (lambda previous: dict(previous, schema_version=2), "previous report: schema_version 2 is not 1"),
    (lambda previous: dict(previous, generated_at="yesterday"),
     "previous report: generated_at: 'yesterday' is not an ISO-8601 date and time"),
    (lambda previous: dict(previous, hosts=[]), "previous report: hosts: 'list' is not a mapping"),
    (lambda previous: dict(previous, hosts={"h1": {"findings": []}}),
     "previous report: hosts.h1 is not a host entry with a status"),
    (lambda previous: previous["hosts"][NONCOMPLIANT]["findings"][1].pop("port") and previous,
     "previous report: hosts.%s.findings[1] has no 'port'" % NONCOMPLIANT),
    (lambda previous: previous["hosts"][NONCOMPLIANT]["findings"][0].update(kind="open_port") or previous,
     "previous report: hosts.%s.findings[0] is not of a known kind and severity" % NONCOMPLIANT),
    (lambda previous: previous["hosts"][COMPLIANT].pop("listeners") and previous,
     "previous report: hosts.%s.listeners is not a list" % COMPLIANT),
    (lambda previous: previous["hosts"][COMPLIANT]["listeners"][2].pop("family") and previous,
     "previous report: hosts.%s.listeners[2] has no 'family'" % COMPLIANT),
])
def test_a_bad_previous_report_is_named(results, report, change, problem):
    previous = change(previous_of(report))
    with pytest.raises(ValueError, match=re.escape(problem)):
        build_report(results, GENERATED_AT, "0.1.0", previous)
    with pytest.raises(AnsibleFilterError, match=re.escape("audit_report: " + problem)):
        audit_report(results, "json", GENERATED_AT, previous=previous)


@pytest.fixture
def previous(results):
    """The report of a run before: udp 0.0.0.0:9999 (and the probe's finding about it) was not there, tcp
    0.0.0.0:4000 was; web-01 was not audited yet, old-01 was."""
    before = copy.deepcopy(results)
    app = before[NONCOMPLIANT]
    app["findings"] = [item for item in app["findings"] if item["port"] != 9999]
    app["listeners"] = [item for item in app["listeners"] if item["port"] != 9999]
    app["findings"].append(make_finding(4000))
    app["listeners"].append(make_listener(4000))
    del before[COMPLIANT]
    before[GONE] = audited([make_finding(25)], [make_listener(25)])
    return previous_of(build_report(before, PREVIOUS_AT, "0.1.0"))


@pytest.fixture
def drifted(results, previous):
    return build_report(results, GENERATED_AT, "0.1.0", previous)


def test_drift_of_the_fixture(drifted, results):
    new, resolved, unchanged, appeared, disappeared, hosts_appeared, hosts_disappeared = summarise(drifted["drift"])
    web = results[COMPLIANT]
    assert new == [(NONCOMPLIANT, 9999)] * 2 + [(COMPLIANT, item["port"]) for item in web["findings"]]
    assert resolved == [(NONCOMPLIANT, 4000)]  # old-01's findings are not resolved: it is gone, not fixed
    assert unchanged == len(results[NONCOMPLIANT]["findings"]) - 2
    assert appeared == [(NONCOMPLIANT, "0.0.0.0", 9999)] + [
        (COMPLIANT, item["address"], item["port"]) for item in web["listeners"]]
    assert disappeared == [(NONCOMPLIANT, "0.0.0.0", 4000)]
    assert (hosts_appeared, hosts_disappeared) == ([COMPLIANT], [GONE])


def test_json_report_with_drift_validates_against_its_schema(drifted):
    rendered = render_json(drifted)
    validate(json.loads(rendered), load_json(REPORT_SCHEMA))
    assert json.loads(rendered)["drift"] == drifted["drift"]


def test_text_starts_with_the_drift(drifted, report):
    lines = render_text(drifted).splitlines()
    assert lines[0].startswith("Since %s: 3 new findings, 1 resolved, 14 unchanged; " % PREVIOUS_AT)
    assert lines[0].endswith("listeners: 5 appeared, 1 disappeared; hosts: 1 appeared, 1 disappeared")
    block = lines[:lines.index("")]
    assert "  + %s [high] Listener not in the allowlist: udp 0.0.0.0:9999" % NONCOMPLIANT in block
    assert "  + %s [info] UDP port open or filtered: udp 192.0.2.20:9999" % NONCOMPLIANT in block
    assert "  - %s [high] Listener not in the allowlist: tcp 0.0.0.0:4000" % NONCOMPLIANT in block
    assert "  - %s listener tcp 0.0.0.0:4000 x (7)" % NONCOMPLIANT in block
    assert block[-2:] == ["  + host " + COMPLIANT, "  - host " + GONE]
    assert lines[len(block) + 1:] == render_text(report).splitlines()  # then the report as without drift


def test_html_shows_the_drift_before_the_findings(drifted):
    page = render_html(drifted)
    assert "<h2>What changed since 2025-05-31 09:30:00 UTC</h2>" in page
    assert page.index('id="drift"') < page.index('aria-label="Summary"') < page.index('id="findings"')
    section = page.split('id="drift"')[1].split("</section>")[0]
    assert "New findings (3)" in section and "Resolved findings (1)" in section
    assert "Listening sockets (6 changed)" in section and "Hosts (2 changed)" in section
    assert "udp 0.0.0.0:9999" in section and "tcp 0.0.0.0:4000" in section and html.escape(GONE) in section
    assert "drift" not in render_html(build_report({}, GENERATED_AT, "0.1.0"))


def test_sarif_marks_new_unchanged_and_absent_results(drifted, report, sarif_schema):
    sarif = json.loads(render_sarif(drifted))
    validate(sarif, sarif_schema)
    [run] = sarif["runs"]
    states = [(result["properties"]["host"], result["locations"][0]["logicalLocations"][0]["name"],
               result["baselineState"]) for result in run["results"]]
    assert [state for state in states if state[2] != "unchanged"] == [
        (NONCOMPLIANT, "udp/0.0.0.0:9999", "new"), (NONCOMPLIANT, "udp/192.0.2.20:9999", "new")] + [
        (COMPLIANT, result["locations"][0]["logicalLocations"][0]["name"], "new")
        for result in json.loads(render_sarif(report))["runs"][0]["results"]
        if result["properties"]["host"] == COMPLIANT] + [(NONCOMPLIANT, "tcp/0.0.0.0:4000", "absent")]
    [absent] = [result for result in run["results"] if result["baselineState"] == "absent"]
    assert (absent["kind"], absent["level"]) == ("pass", "none")
    assert run["properties"]["previous_generated_at"] == PREVIOUS_AT
    assert all("baselineState" not in result for result in json.loads(render_sarif(report))["runs"][0]["results"])


def test_sarif_marks_the_extra_occurrence_of_a_socket_new(results, sarif_schema):
    before = {"h1": audited([make_finding(3000)])}
    previous = previous_of(build_report(before, PREVIOUS_AT, "0.1.0"))
    sarif = json.loads(render_sarif(build_report({"h1": audited([make_finding(3000)] * 2)}, GENERATED_AT, "0.1.0",
                                                 previous)))
    validate(sarif, sarif_schema)
    assert [result["baselineState"] for result in sarif["runs"][0]["results"]] == ["unchanged", "new"]


def test_junit_has_a_drift_suite_failing_per_new_finding(drifted):
    root = ET.fromstring(render_junit(drifted))
    suite = root.find("testsuite")
    assert suite.get("name") == "drift"
    cases = suite.findall("testcase")
    assert [(case.get("classname"), case.get("name")) for case in cases][0] == (
        NONCOMPLIANT, "new since %s: Listener not in the allowlist: udp 0.0.0.0:9999" % PREVIOUS_AT)
    # the silent UDP port and web-01's new finding are info
    assert [case.find("failure") is not None for case in cases] == [True, False, False]
    assert suite_counts(suite) == {"tests": 3, "failures": 1, "errors": 0, "skipped": 0}
    assert {key: int(suite.get(key)) for key in ("tests", "failures")} == {"tests": 3, "failures": 1}
    assert {key: int(root.get(key)) for key in ("tests", "failures")} == {"tests": 21 + 3, "failures": 11 + 1}
    assert "tcp 0.0.0.0:4000" in suite.find("system-out").text


def test_junit_drift_without_new_findings_passes(results, report):
    root = ET.fromstring(render_junit(build_report(results, GENERATED_AT, "0.1.0", previous_of(report))))
    [case] = root.find("testsuite[@name='drift']").findall("testcase")
    assert case.get("name") == "no new findings since %s" % GENERATED_AT and case.find("failure") is None


def test_filter_passes_the_previous_report(results, previous, drifted):
    for name, render in (("json", render_json), ("junit", render_junit), ("sarif", render_sarif),
                         ("html", render_html), ("text", render_text)):
        assert audit_report(results, name, GENERATED_AT, previous=previous) == render(drifted)
        assert audit_report(results, name, GENERATED_AT, previous=None) == render(
            build_report(results, GENERATED_AT, "0.1.0"))


def test_drift_text_from_hosts_cannot_drive_the_terminal(results):
    previous = previous_of(build_report({}, PREVIOUS_AT, "0.1.0"))
    for report_format in ("text", "junit", "html"):
        rendered = audit_report(poisoned(results), report_format, GENERATED_AT, previous=previous)
        assert RAW.search(rendered) is None and SHOWN in rendered


def test_filter_documents_the_previous_report():
    options = yaml.safe_load(audit_report_plugin.DOCUMENTATION)["options"]
    assert options["previous"]["type"] == "dict" and options["previous"].get("default") is None
    debug = yaml.safe_load(audit_report_plugin.EXAMPLES)[2]["ansible.builtin.debug"]
    assert "previous=" in debug["msg"]


def _tag_everything(value, tag):
    """value as Ansible hands it to a filter: every str and int a tagged subclass."""
    if isinstance(value, dict):
        return {key: _tag_everything(item, tag) for key, item in value.items()}
    if isinstance(value, list):
        return [_tag_everything(item, tag) for item in value]
    if isinstance(value, (str, int)) and not isinstance(value, bool):
        return tag.tag(value)
    return value


def test_tagged_input_gives_the_same_report_of_plain_types(results):
    from ansible._internal._datatag._tags import Origin
    from ansible.module_utils._internal._datatag import AnsibleTaggedObject

    tagged = _tag_everything(copy.deepcopy(results), Origin(path="/hostvars"))
    assert isinstance(tagged[NONCOMPLIANT]["listeners"][0]["address"], AnsibleTaggedObject)
    report = build_report(tagged, GENERATED_AT, "0.1.0", previous=build_report(results, PREVIOUS_AT, "0.1.0"))
    assert report == build_report(results, GENERATED_AT, "0.1.0", previous=build_report(results, PREVIOUS_AT, "0.1.0"))

    def types(value):  # type(), not isinstance(): a tagged str is an instance of str
        if isinstance(value, dict):
            return set().union({type(key) for key in value}, *(types(item) for item in value.values()))
        if isinstance(value, list):
            return set().union(*(types(item) for item in value))
        return {type(value)}
    assert types(report) <= {dict, list, str, int, float, bool, type(None)}
