# Copyright (c) Portcullis contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""One fleet report from the JSON reports of the slices of a sliced job (AWX / AAP job slicing).

Each slice of a sliced job audits its share of the hosts and writes its own JSON report; merge_reports() makes
the report of the whole fleet, the one build_report() makes from every host's audit result at once:

- every slice must have this collection's schema_version and tool name; the tool versions may differ (the
  merged report names the highest, and warn() is told every slice's);
- a host is in one slice, or in several with identical entries; otherwise it is an error naming the host and
  both slices;
- generated_at is the newest slice's, unless one is given; the summary is recomputed from the hosts (a slice's
  own summary and drift are not read); with previous, the merged report has its drift (report_drift).

Private to the collection: pure functions, used by the merge_reports filter. Same input, same output, whatever
the order of the slices: nothing here reads the clock or depends on dict or list order.
"""

from __future__ import annotations

import json
import re

from ansible_collections.portcullis.hardening.plugins.plugin_utils._reports import (
    KINDS,
    LISTENER_FIELDS,
    NOT_AUDITED,
    PREVIOUS_FINDING_FIELDS,
    SCHEMA_VERSION,
    SEVERITIES,
    TOOL_NAME,
    _utc_timestamp,
    build_report,
)

STATUSES = ("compliant", "noncompliant") + NOT_AUDITED
RULE_FIELDS = ("index", "port", "protocol", "family", "bind", "sources", "process", "comment")
ENTRY_FIELDS = ("status", "compliant", "error", "findings", "listeners", "allowlist", "probe")
RESULT_FIELDS = ("compliant", "findings", "listeners", "allowlist", "probe")  # of an audited host, as port_audit's


def _label(position, names):
    return "reports[%d]" % position + (" (%s)" % names[position] if names is not None else "")


def _parse(item, label):
    """A slice as a mapping: parsed already, or JSON text (read from its file) parsed here."""
    if isinstance(item, (bytes, bytearray)):
        item = item.decode("utf-8", errors="replace")
    if isinstance(item, str):
        if not item.strip():
            raise ValueError("%s: the text is empty, not a JSON report" % label)
        try:
            item = json.loads(item)
        except ValueError as exc:
            raise ValueError("%s: not JSON (%s); pass what audit_report('json') wrote" % (label, exc))
    if not isinstance(item, dict):
        raise ValueError("%s: %r is not a JSON report (a mapping); pass what audit_report('json') wrote"
                         % (label, type(item).__name__))
    return item


def _check_items(label, host, entry, name, fields):
    items = entry[name]
    if not isinstance(items, list):
        raise ValueError("%s: hosts.%s.%s: %r is not a list" % (label, host, name, type(items).__name__))
    for position, item in enumerate(items):
        missing = [field for field in fields if not isinstance(item, dict) or field not in item]
        if missing:
            raise ValueError("%s: hosts.%s.%s[%d] has no %s"
                             % (label, host, name, position, ", ".join(repr(field) for field in missing)))
        if name == "findings":
            for field, known in (("kind", KINDS), ("severity", SEVERITIES)):
                if item[field] not in known:
                    raise ValueError("%s: hosts.%s.findings[%d].%s: %r is not one of: %s"
                                     % (label, host, position, field, item[field], ", ".join(known)))


def _check_entry(label, host, entry):
    """ValueError naming the field and value of the first thing wrong with a host entry of a slice."""
    if not isinstance(host, str):
        raise ValueError("%s: hosts: %r is not a host name (text)" % (label, host))
    if not isinstance(entry, dict):
        raise ValueError("%s: hosts.%s: %r is not a host entry (a mapping)" % (label, host, type(entry).__name__))
    missing = [field for field in ENTRY_FIELDS if field not in entry]
    if missing:
        raise ValueError("%s: hosts.%s has no %s" % (label, host, ", ".join(repr(field) for field in missing)))
    status = entry["status"]
    if status not in STATUSES:
        raise ValueError("%s: hosts.%s.status: %r is not one of: %s" % (label, host, status, ", ".join(STATUSES)))
    if status in NOT_AUDITED:
        for field, empty in (("compliant", None), ("findings", []), ("listeners", []), ("allowlist", []),
                             ("probe", None)):
            if (entry[field] is not None) if empty is None else (entry[field] != []):
                raise ValueError("%s: hosts.%s.%s: %r must be %s for a host not audited (%s)"
                                 % (label, host, field, entry[field], json.dumps(empty), status))
        if not isinstance(entry["error"], str) or not entry["error"]:
            raise ValueError("%s: hosts.%s.error: %r must say why the host was not audited (%s)"
                             % (label, host, entry["error"], status))
        return
    if entry["compliant"] is not (status == "compliant"):
        raise ValueError("%s: hosts.%s.compliant: %r contradicts its status %r" % (label, host, entry["compliant"], status))
    if entry["error"] is not None:
        raise ValueError("%s: hosts.%s.error: %r must be null for an audited host" % (label, host, entry["error"]))
    _check_items(label, host, entry, "findings", PREVIOUS_FINDING_FIELDS)
    _check_items(label, host, entry, "listeners", LISTENER_FIELDS + ("processes",))
    _check_items(label, host, entry, "allowlist", RULE_FIELDS)
    if entry["probe"] is not None and not isinstance(entry["probe"], dict):
        raise ValueError("%s: hosts.%s.probe: %r is not a mapping or null" % (label, host, entry["probe"]))


def check_slice(report, label):
    """ValueError naming the field and value of the first thing in a slice's report that merge_reports cannot use."""
    for field in ("schema_version", "generated_at", "tool", "hosts"):
        if field not in report:
            raise ValueError("%s: it has no %r; pass what audit_report('json') wrote" % (label, field))
    version = report["schema_version"]
    if isinstance(version, bool) or not isinstance(version, int) or version != SCHEMA_VERSION:
        raise ValueError("%s: schema_version: %r is not %d, the schema this collection reads and writes"
                         % (label, version, SCHEMA_VERSION))
    try:
        _utc_timestamp(report["generated_at"])
    except ValueError as exc:
        raise ValueError("%s: %s" % (label, exc))
    tool = report["tool"]
    if not isinstance(tool, dict) or tool.get("name") != TOOL_NAME:
        raise ValueError("%s: tool.name: %r is not %r" % (
            label, tool.get("name") if isinstance(tool, dict) else tool, TOOL_NAME))
    if not isinstance(tool.get("version"), str) or not tool["version"]:
        raise ValueError("%s: tool.version: %r is not a version (text)" % (label, tool.get("version")))
    if not isinstance(report["hosts"], dict):
        raise ValueError("%s: hosts: %r is not a mapping" % (label, type(report["hosts"]).__name__))
    for host, entry in report["hosts"].items():
        _check_entry(label, host, entry)


def _version_key(version):
    """0.10.0 after 0.9.0: numbers compare as numbers, other parts as text, after the numbers; then the text."""
    parts = tuple((0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"[.+-]", version))
    return parts, version


def report_results(report):
    """The hosts of a (checked) JSON report as the audit results build_report takes: {host: result}.

    The inverse of build_report's hosts: build_report(report_results(report), ...)["hosts"] == report["hosts"].
    """
    results = {}
    for host, entry in report["hosts"].items():
        if entry["status"] in NOT_AUDITED:
            results[host] = {entry["status"]: True, "msg": entry["error"]}
        else:
            results[host] = {field: entry[field] for field in RESULT_FIELDS}
    return results


def _canonical(entry):
    return json.dumps(entry, sort_keys=True, ensure_ascii=False)


def merge_reports(reports, generated_at=None, previous=None, names=None, warn=None):
    """The fleet report (a dict, as build_report makes it) of the JSON reports of a job's slices.

    reports: a list of JSON reports, each parsed or as its JSON text. names: a label for each (its file), for
    messages. generated_at: the merged report's time (default: the newest slice's). previous: the JSON report
    of an earlier run (parsed, or its JSON text), for the drift. warn: called with a message when the slices'
    tool versions differ.
    ValueError names the slice, the field and the value of the first thing wrong.
    """
    if not isinstance(reports, (list, tuple)):
        raise ValueError("expected a list of JSON reports (one per slice), got %s" % type(reports).__name__)
    if not reports:
        raise ValueError("no reports to merge: the list of slices is empty")
    if names is not None:
        if not isinstance(names, (list, tuple)) or len(names) != len(reports):
            raise ValueError("names: %r must be a list of one name per report (%d)" % (names, len(reports)))
        names = [str(name) for name in names]
    slices = []
    for position, item in enumerate(reports):
        label = _label(position, names)
        report = _parse(item, label)
        check_slice(report, label)
        slices.append((label, report))

    hosts, owner = {}, {}
    for label, report in slices:
        for host in sorted(report["hosts"]):
            entry = report["hosts"][host]
            if host not in hosts:
                hosts[host], owner[host] = entry, (label, report)
            elif _canonical(entry) != _canonical(hosts[host]):
                first, other = owner[host]
                raise ValueError("host %s is in %s and in %s, with different entries: a host must be in one slice "
                                 "only (are both from the same run? generated_at %s and %s)"
                                 % (host, first, label, other["generated_at"], report["generated_at"]))

    versions = {}
    for label, report in slices:
        versions.setdefault(report["tool"]["version"], []).append(label)
    version = max(versions, key=_version_key)
    if len(versions) > 1 and warn is not None:
        warn("the slices were written by different versions of %s: %s; the merged report names %s" % (
            TOOL_NAME, "; ".join("%s by %s" % (v, ", ".join(versions[v]))
                                 for v in sorted(versions, key=_version_key)), version))

    if previous is not None and not isinstance(previous, dict):
        previous = _parse(previous, "previous report")
    if generated_at is None:
        generated_at = max(_utc_timestamp(report["generated_at"]) for _name, report in slices)
    return build_report(report_results({"hosts": hosts}), generated_at, version, previous)
