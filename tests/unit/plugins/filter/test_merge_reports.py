# Copyright (c) Portcullis contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The merge_reports filter and its logic (plugin_utils/_merge.py): the JSON reports of the slices of a sliced job,
each written by the real audit_report filter, merged into the report of the whole fleet."""

from __future__ import annotations

import copy
import itertools
import json
import re
import xml.etree.ElementTree as ET

import pytest
import yaml
from ansible.errors import AnsibleFilterError

from ansible_collections.portcullis.hardening.plugins.filter import merge_reports as merge_reports_plugin
from ansible_collections.portcullis.hardening.plugins.filter.audit_report import audit_report
from ansible_collections.portcullis.hardening.plugins.filter.merge_reports import merge_reports as merge_filter
from ansible_collections.portcullis.hardening.plugins.plugin_utils._merge import merge_reports, report_results
from ansible_collections.portcullis.hardening.plugins.plugin_utils._reports import build_report, render_json

from ..plugin_utils import test_reports
from ..plugin_utils.test_reports import (
    COMPLIANT,
    NONCOMPLIANT,
    REPORT_SCHEMA,
    UNREACHABLE,
    audited,
    load_json,
    make_finding,
    make_listener,
    suite_counts,
    validate,
)

# The audit_report tests' fixtures: the fixture fleet's audit results, the SARIF 2.1.0 schema.
results = test_reports.results
sarif_schema = test_reports.sarif_schema

FAILED = "fail-01.example.org"
EARLY = "2025-06-01T09:00:00Z"
LATE = "2025-06-01T09:30:00Z"
PREVIOUS_AT = "2025-05-31T09:30:00Z"
FORMATS = ("json", "junit", "sarif", "html", "text")


@pytest.fixture
def fleet(results):
    """The fixture's three hosts (not compliant, unreachable, compliant) and a host whose audit failed."""
    return dict(results, **{FAILED: {"failed": True, "msg": "sudo: a password is required"}})


def slice_report(fleet, hosts, generated_at, tool_version="0.1.0"):
    """A slice's JSON report as the role writes it (audit_report 'json'), parsed as the playbook reads it."""
    return json.loads(audit_report({host: fleet[host] for host in hosts}, "json", generated_at, tool_version))


@pytest.fixture
def slices(fleet):
    """Two slices: the host not compliant and the failed one, written first; then the other two, later."""
    return [slice_report(fleet, [NONCOMPLIANT, FAILED], EARLY), slice_report(fleet, [UNREACHABLE, COMPLIANT], LATE)]


# --- merging ---------------------------------------------------------------------------------------------------------

def test_two_slices_merge_into_the_report_of_the_whole_fleet(fleet, slices):
    merged = merge_reports(slices)
    assert merged == build_report(fleet, LATE, "0.1.0")
    assert list(merged["hosts"]) == [NONCOMPLIANT, UNREACHABLE, FAILED, COMPLIANT]
    assert merged["generated_at"] == LATE  # the newest slice's
    assert merged["summary"] == {"hosts": 4, "compliant": 1, "noncompliant": 1, "unreachable": 2,
                                 "findings": {"high": 8, "medium": 2, "low": 1, "info": 6}}
    assert merged["hosts"][FAILED] == {"status": "failed", "compliant": None, "error": "sudo: a password is required",
                                       "findings": [], "listeners": [], "allowlist": [], "probe": None}
    validate(json.loads(render_json(merged)), load_json(REPORT_SCHEMA))


@pytest.mark.parametrize("split", [
    pytest.param([[NONCOMPLIANT], [UNREACHABLE], [FAILED], [COMPLIANT]], id="a host per slice"),
    pytest.param([[NONCOMPLIANT, UNREACHABLE, FAILED, COMPLIANT]], id="one slice"),
    pytest.param([[COMPLIANT, FAILED], [], [UNREACHABLE, NONCOMPLIANT]], id="with an empty slice"),
])
def test_every_way_of_slicing_the_fleet_gives_the_fleet_report(fleet, split):
    slices = [slice_report(fleet, hosts, "2025-06-01T09:%02d:00Z" % position) for position, hosts in enumerate(split)]
    newest = "2025-06-01T09:%02d:00Z" % (len(split) - 1)
    assert merge_reports(slices) == build_report(fleet, newest, "0.1.0")


def test_every_format_is_the_one_the_role_writes_for_the_whole_fleet(fleet, slices):
    """What the role's report phase writes (audit_report on every host's result), byte for byte."""
    for report_format in FORMATS:
        assert merge_filter(slices, report_format) == audit_report(fleet, report_format, LATE)


def test_the_summary_is_counted_from_the_hosts_and_slice_drift_is_dropped(fleet, slices):
    slices[0]["summary"] = {"hosts": 40, "compliant": 0, "noncompliant": 40, "unreachable": 0,
                            "findings": {"high": 400, "medium": 0, "low": 0, "info": 0}}
    del slices[1]["summary"]
    slices[1]["drift"] = build_report({COMPLIANT: fleet[COMPLIANT]}, LATE, "0.1.0", previous=json.loads(
        render_json(build_report({}, PREVIOUS_AT, "0.1.0"))))["drift"]
    merged = merge_reports(slices)
    assert merged == build_report(fleet, LATE, "0.1.0")
    assert "drift" not in merged and merged["summary"]["hosts"] == 4


def test_the_slices_order_and_their_keys_order_change_nothing(fleet, slices):
    renders = {report_format: merge_filter(slices, report_format) for report_format in FORMATS}
    for order in itertools.permutations(slices + [slice_report(fleet, [], "2025-06-01T08:00:00Z")]):
        shuffled = [json.loads(json.dumps(dict(reversed(list(report.items()))))) for report in order]
        for report in shuffled:
            report["hosts"] = dict(reversed(list(report["hosts"].items())))
        for report_format in FORMATS:
            assert merge_filter(shuffled, report_format) == renders[report_format]
    assert slices == [slice_report(fleet, [NONCOMPLIANT, FAILED], EARLY),
                      slice_report(fleet, [UNREACHABLE, COMPLIANT], LATE)]  # the input is left as it was


def test_the_slices_may_be_given_as_their_json_text(fleet, slices):
    texts = [render_json(report) for report in slices]
    assert merge_reports(texts) == merge_reports(slices) == merge_filter([text.encode() for text in texts])


def test_a_merged_report_merged_alone_is_itself(slices):
    """The playbook merges once, then renders [merged] in each format."""
    merged = merge_reports(slices)
    assert merge_reports([merged]) == merged
    assert merge_reports([json.loads(render_json(merged))]) == merged


def test_report_results_are_what_build_report_takes_back(fleet, slices):
    report = build_report(fleet, LATE, "0.1.0")
    assert build_report(report_results(report), LATE, "0.1.0") == report
    assert report_results(report)[UNREACHABLE] == {"unreachable": True, "msg": fleet[UNREACHABLE]["msg"]}
    assert report_results(report)[FAILED] == {"failed": True, "msg": "sudo: a password is required"}


@pytest.mark.parametrize("generated_at, expected", [
    ("2025-06-02T12:00:00+02:00", "2025-06-02T10:00:00Z"),
    ("2025-06-01 08:00:00", "2025-06-01T08:00:00Z"),  # before the slices: the caller's choice
])
def test_generated_at_may_be_given(fleet, slices, generated_at, expected):
    assert merge_reports(slices, generated_at=generated_at) == build_report(fleet, expected, "0.1.0")
    assert json.loads(merge_filter(slices, "json", generated_at=generated_at))["generated_at"] == expected
    assert ET.fromstring(merge_filter(slices, "junit", generated_at=generated_at)).find(
        "testsuite").get("timestamp") == expected.rstrip("Z")


# --- the same host in two slices -------------------------------------------------------------------------------------

def test_a_host_in_two_slices_with_different_entries_is_named_with_both_slices(fleet, slices):
    stale = slice_report(dict(fleet, **{COMPLIANT: {"unreachable": True, "msg": "timed out"}}), [COMPLIANT],
                         PREVIOUS_AT)
    names = ["slices/1/portcullis-report.json", "slices/2/portcullis-report.json", "old/portcullis-report.json"]
    message = ("host %s is in reports[1] (slices/2/portcullis-report.json) and in reports[2] "
               "(old/portcullis-report.json), with different entries: a host must be in one slice only (are both "
               "from the same run? generated_at %s and %s)" % (COMPLIANT, LATE, PREVIOUS_AT))
    with pytest.raises(ValueError) as error:
        merge_reports(slices + [stale], names=names)
    assert str(error.value) == message
    with pytest.raises(AnsibleFilterError) as error:
        merge_filter(slices + [stale], "html", names=names)
    assert str(error.value) == "merge_reports: " + message


def test_a_finding_more_makes_the_entries_different(fleet, slices):
    other = copy.deepcopy(slices[1])
    other["hosts"][COMPLIANT]["findings"].append(make_finding(3000))
    with pytest.raises(ValueError, match=r"^host %s is in reports\[1\] and in reports\[2\], with different"
                       % re.escape(COMPLIANT)):
        merge_reports(slices + [other])


def test_a_host_in_two_slices_with_identical_entries_is_merged_once(fleet, slices):
    again = slice_report(fleet, [COMPLIANT], "2025-06-01T09:45:00Z")  # the same audit, in a report written later
    merged = merge_reports(slices + [again])
    assert merged == build_report(fleet, "2025-06-01T09:45:00Z", "0.1.0")
    assert merge_reports(slices + slices) == merge_reports(slices)  # the same file given twice


def test_a_hostile_host_name_in_an_error_is_shown_escaped(slices):
    evil = "\x1b]0;owned\x07web"
    first = json.loads(render_json(build_report({evil: audited()}, EARLY, "0.1.0")))
    second = json.loads(render_json(build_report({evil: audited([make_finding(22)])}, LATE, "0.1.0")))
    with pytest.raises(AnsibleFilterError) as error:
        merge_filter([first, second])
    assert "\x1b" not in str(error.value) and "host \\x1b]0;owned\\x07web is in reports[0]" in str(error.value)


# --- tool versions ---------------------------------------------------------------------------------------------------

def test_other_tool_versions_are_merged_with_a_warning_naming_each(fleet):
    slices = [slice_report(fleet, [NONCOMPLIANT], EARLY, "0.9.0"), slice_report(fleet, [COMPLIANT], EARLY, "0.10.0"),
              slice_report(fleet, [UNREACHABLE, FAILED], LATE, "0.9.0")]
    warnings = []
    merged = merge_reports(slices, names=["a", "b", "c"], warn=warnings.append)
    assert merged == build_report(fleet, LATE, "0.10.0")  # the highest version, not the newest slice's
    assert warnings == ["the slices were written by different versions of portcullis.hardening: 0.9.0 by "
                        "reports[0] (a), reports[2] (c); 0.10.0 by reports[1] (b); the merged report names 0.10.0"]
    assert json.loads(merge_filter(slices, "sarif"))["runs"][0]["tool"]["driver"]["version"] == "0.10.0"


def test_the_filter_warns_through_ansible(fleet, monkeypatch):
    shown = []
    monkeypatch.setattr(merge_reports_plugin.display, "warning", shown.append)
    slices = [slice_report(fleet, [NONCOMPLIANT], EARLY, "0.1.0"), slice_report(fleet, [COMPLIANT], LATE, "0.2.0")]
    assert merge_filter(slices)["tool"]["version"] == "0.2.0"
    assert shown == ["merge_reports: the slices were written by different versions of portcullis.hardening: 0.1.0 "
                     "by reports[0]; 0.2.0 by reports[1]; the merged report names 0.2.0"]
    shown.clear()
    merge_filter([slices[0], slice_report(fleet, [COMPLIANT], LATE, "0.1.0")])
    assert shown == []


# --- drift -----------------------------------------------------------------------------------------------------------

@pytest.fixture
def previous(fleet):
    """An earlier merged report: the compliant host had a finding on 4000 (resolved since), the failed host was
    not there, and old-01 was (gone since)."""
    before = copy.deepcopy(fleet)
    del before[FAILED]
    before[COMPLIANT] = dict(before[COMPLIANT], findings=before[COMPLIANT]["findings"] + [make_finding(4000)],
                             listeners=before[COMPLIANT]["listeners"] + [make_listener(4000)])
    before["old-01.example.org"] = audited([make_finding(25)], [make_listener(25)])
    first = slice_report(before, [NONCOMPLIANT, "old-01.example.org"], PREVIOUS_AT)
    second = slice_report(before, [UNREACHABLE, COMPLIANT], PREVIOUS_AT)
    return json.loads(merge_filter([first, second], "json"))


def test_the_merged_report_has_its_drift_since_a_previous_merged_report(fleet, slices, previous):
    merged = merge_reports(slices, previous=previous)
    assert merged == build_report(fleet, LATE, "0.1.0", previous)
    drift = merged["drift"]
    assert drift["previous_generated_at"] == PREVIOUS_AT
    assert [(item["host"], item["finding"]["port"]) for item in drift["findings"]["resolved"]] == [(COMPLIANT, 4000)]
    assert drift["findings"]["new"] == []
    assert drift["hosts"] == {"appeared": [FAILED], "disappeared": ["old-01.example.org"]}
    for report_format in FORMATS:
        assert merge_filter(slices, report_format, previous=previous) == audit_report(
            fleet, report_format, LATE, previous=previous)
    validate(json.loads(merge_filter(slices, "json", previous=previous)), load_json(REPORT_SCHEMA))


def test_the_previous_report_may_be_given_as_its_json_text(fleet, slices, previous):
    """As the playbook does: the merged report and the previous one as JSON text, parsed by the filter."""
    merged = merge_filter(slices, "json")
    for report_format in FORMATS:
        assert merge_filter([merged], report_format, previous=render_json(previous)) == audit_report(
            fleet, report_format, LATE, previous=previous)


@pytest.mark.parametrize("change, problem", [
    (lambda previous: dict(previous, schema_version=2), "previous report: schema_version 2 is not 1"),
    (lambda previous: "", "previous report: the text is empty, not a JSON report"),
    (lambda previous: render_json(previous)[:-20], "previous report: not JSON (Unterminated string starting at: "),
    (lambda previous: ["hosts"], "previous report: 'list' is not a JSON report (a mapping)"),
])
def test_a_bad_previous_report_is_named(slices, previous, change, problem):
    with pytest.raises(AnsibleFilterError, match=re.escape("merge_reports: " + problem)):
        merge_filter(slices, "json", previous=change(previous))


# --- the renderings of a merged report -------------------------------------------------------------------------------

def test_sarif_of_a_merged_report_is_valid_sarif_2_1_0(slices, previous, sarif_schema):
    for drift in (None, previous):
        sarif = json.loads(merge_filter(slices, "sarif", previous=drift))
        validate(sarif, sarif_schema)
        [run] = sarif["runs"]
        hosts = {result["properties"]["host"] for result in run["results"]}
        assert hosts == {NONCOMPLIANT, COMPLIANT}
        notifications = run["invocations"][0]["toolExecutionNotifications"]
        assert sorted(item["properties"]["host"] for item in notifications) == [UNREACHABLE, FAILED]
        assert run["properties"]["summary"] == merge_reports(slices)["summary"]
    absent = [result for result in run["results"] if result.get("baselineState") == "absent"]
    assert [result["locations"][0]["logicalLocations"][0]["fullyQualifiedName"] for result in absent] == [
        COMPLIANT + "/tcp/0.0.0.0:4000"]


def test_junit_of_a_merged_report_has_a_suite_per_host_of_every_slice(fleet, slices, previous):
    root = ET.fromstring(merge_filter(slices, "junit", previous=previous))
    suites = root.findall("testsuite")
    assert [suite.get("name") for suite in suites] == ["drift", NONCOMPLIANT, UNREACHABLE, FAILED, COMPLIANT]
    for suite in suites:
        assert {key: int(suite.get(key)) for key in ("tests", "failures", "errors", "skipped")} == suite_counts(suite)
    totals = {key: sum(int(suite.get(key)) for suite in suites) for key in ("tests", "failures", "errors", "skipped")}
    assert {key: int(root.get(key)) for key in totals} == totals
    assert totals["errors"] == 2 and totals["failures"] == 11  # the hosts not audited; the findings above info
    [case] = root.find("testsuite[@name='%s']" % FAILED).findall("testcase")
    assert case.find("error").get("type") == "failed"


# --- bad input -------------------------------------------------------------------------------------------------------

def changed(path, value):
    """A change to the second slice's report: set the value at path (keys), or delete it with value DELETE."""
    def change(slices):
        target = slices[1]
        for key in path[:-1]:
            target = target[key]
        if value is DELETE:
            del target[path[-1]]
        else:
            target[path[-1]] = value
        return slices
    return change


DELETE = object()


@pytest.mark.parametrize("change, problem", [
    (lambda slices: slices[0], "expected a list of JSON reports (one per slice), got dict"),
    (lambda slices: [], "no reports to merge: the list of slices is empty"),
    (lambda slices: [slices[0], "  \n"], "reports[1]: the text is empty, not a JSON report"),
    (lambda slices: [slices[0], "{not json"],
     "reports[1]: not JSON (Expecting property name enclosed in double quotes: line 1 column 2 (char 1)); pass what "
     "audit_report('json') wrote"),
    (lambda slices: [slices[0], ["hosts"]], "reports[1]: 'list' is not a JSON report (a mapping)"),
    (changed(["hosts"], DELETE), "reports[1]: it has no 'hosts'; pass what audit_report('json') wrote"),
    (changed(["schema_version"], 2), "reports[1]: schema_version: 2 is not 1, the schema this collection reads and "
                                     "writes"),
    (changed(["schema_version"], "1"), "reports[1]: schema_version: '1' is not 1"),
    (changed(["generated_at"], "yesterday"),
     "reports[1]: generated_at: 'yesterday' is not an ISO-8601 date and time"),
    (changed(["tool", "name"], "other.tool"), "reports[1]: tool.name: 'other.tool' is not 'portcullis.hardening'"),
    (changed(["tool", "version"], 1), "reports[1]: tool.version: 1 is not a version (text)"),
    (changed(["hosts"], []), "reports[1]: hosts: 'list' is not a mapping"),
    (changed(["hosts", COMPLIANT], "ok"), "reports[1]: hosts.%s: 'str' is not a host entry (a mapping)" % COMPLIANT),
    (changed(["hosts", COMPLIANT, "probe"], DELETE), "reports[1]: hosts.%s has no 'probe'" % COMPLIANT),
    (changed(["hosts", COMPLIANT, "status"], "fine"),
     "reports[1]: hosts.%s.status: 'fine' is not one of: compliant, noncompliant, unreachable, failed" % COMPLIANT),
    (changed(["hosts", COMPLIANT, "compliant"], False),
     "reports[1]: hosts.%s.compliant: False contradicts its status 'compliant'" % COMPLIANT),
    (changed(["hosts", COMPLIANT, "error"], "oops"),
     "reports[1]: hosts.%s.error: 'oops' must be null for an audited host" % COMPLIANT),
    (changed(["hosts", UNREACHABLE, "error"], ""),
     "reports[1]: hosts.%s.error: '' must say why the host was not audited (unreachable)" % UNREACHABLE),
    (changed(["hosts", UNREACHABLE, "findings"], [{"kind": "unexpected_listener"}]),
     "reports[1]: hosts.%s.findings: [{'kind': 'unexpected_listener'}] must be [] for a host not audited "
     "(unreachable)" % UNREACHABLE),
    (changed(["hosts", UNREACHABLE, "compliant"], False),
     "reports[1]: hosts.%s.compliant: False must be null for a host not audited (unreachable)" % UNREACHABLE),
    (changed(["hosts", COMPLIANT, "listeners"], {}), "reports[1]: hosts.%s.listeners: 'dict' is not a list" % COMPLIANT),
    (changed(["hosts", COMPLIANT, "findings", 0, "port"], DELETE),
     "reports[1]: hosts.%s.findings[0] has no 'port'" % COMPLIANT),
    (changed(["hosts", COMPLIANT, "findings", 0, "severity"], "critical"),
     "reports[1]: hosts.%s.findings[0].severity: 'critical' is not one of: high, medium, low, info" % COMPLIANT),
    (changed(["hosts", COMPLIANT, "findings", 0, "kind"], "open_port"),
     "reports[1]: hosts.%s.findings[0].kind: 'open_port' is not one of: unexpected_listener" % COMPLIANT),
    (changed(["hosts", COMPLIANT, "listeners", 1, "family"], DELETE),
     "reports[1]: hosts.%s.listeners[1] has no 'family'" % COMPLIANT),
    (changed(["hosts", COMPLIANT, "allowlist", 0, "bind"], DELETE),
     "reports[1]: hosts.%s.allowlist[0] has no 'bind'" % COMPLIANT),
    (changed(["hosts", COMPLIANT, "probe"], "none"), "reports[1]: hosts.%s.probe: 'none' is not a mapping or null"
     % COMPLIANT),
])
def test_bad_input_names_the_slice_the_field_and_the_value(slices, change, problem):
    reports = change(slices)
    with pytest.raises(ValueError) as error:
        merge_reports(reports)
    assert str(error.value).startswith(problem)
    with pytest.raises(AnsibleFilterError) as error:
        merge_filter(reports, "text")
    assert str(error.value).startswith("merge_reports: " + problem)


def test_the_slices_are_named_as_asked(slices):
    slices[1]["schema_version"] = 2
    with pytest.raises(AnsibleFilterError, match=re.escape(
            "merge_reports: reports[1] (/runs/42/portcullis-report.json): schema_version: 2 is not 1")):
        merge_filter(slices, names=["/runs/41/portcullis-report.json", "/runs/42/portcullis-report.json"])
    with pytest.raises(AnsibleFilterError, match=re.escape(
            "merge_reports: names: ['one'] must be a list of one name per report (2)")):
        merge_filter(slices, names=["one"])


def test_bad_options_are_named(slices):
    with pytest.raises(AnsibleFilterError, match=re.escape(
            "merge_reports: format 'pdf' is not one of: json, junit, sarif, html, text")):
        merge_filter(slices, "pdf")
    with pytest.raises(AnsibleFilterError, match=re.escape(
            "merge_reports: generated_at: 'tomorrow' is not an ISO-8601 date and time")):
        merge_filter(slices, generated_at="tomorrow")


def test_a_malformed_finding_deeper_down_fails_with_the_filters_message(slices):
    slices[1]["hosts"][COMPLIANT]["findings"][0]["processes"] = [{"pid": 7}]  # no name
    with pytest.raises(AnsibleFilterError, match=r"^merge_reports: a report lacks a field or has a wrong type "
                       r"\(KeyError\('name'\)\); pass the JSON reports that portcullis.hardening.audit_report wrote"):
        merge_filter(slices, "junit")


# --- the plugin ------------------------------------------------------------------------------------------------------

def test_the_filter_is_registered_and_documented():
    assert merge_reports_plugin.FilterModule().filters() == {"merge_reports": merge_filter}
    doc = yaml.safe_load(merge_reports_plugin.DOCUMENTATION)
    assert doc["name"] == "merge_reports"
    assert set(doc["options"]) == {"_input", "format", "generated_at", "previous", "names"}
    assert doc["options"]["format"]["choices"] == list(FORMATS)
    examples = yaml.safe_load(merge_reports_plugin.EXAMPLES)
    assert "portcullis.hardening.merge_reports('json', names=" in examples[0]["ansible.builtin.set_fact"]["fleet_report"]
    assert "[fleet_report] | portcullis.hardening.merge_reports(item.format" in examples[1]["ansible.builtin.copy"][
        "content"]
    assert yaml.safe_load(merge_reports_plugin.RETURN)["_value"]["type"] == "raw"
