# Copyright (c) Portcullis contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
name: audit_report
short_description: Render the audit results of a fleet as a JSON, JUnit, SARIF or HTML compliance report
version_added: 0.1.0
author:
  - Portcullis contributors (@portcullis)
description:
  - Turns a mapping of host name to the result of M(portcullis.hardening.port_audit) into one compliance
    report for the fleet, as text in the format asked for.
  - V(json) is the report itself (schema in C(docs/report.schema.json)); V(junit) is JUnit XML for CI test
    reports (a test suite per host, a test case per allowlist entry and host-wide check, and a failing one per
    finding above info); V(sarif) is SARIF 2.1.0 for code scanning (a rule per finding kind, a result per
    finding); V(html) is one self-contained page for people, findings first; V(text) is a short summary for a
    console, with the counts, a table of every finding above info, and the hosts not audited.
  - A host whose result is marked C(unreachable) or C(failed) (with its C(msg)) is reported as not audited,
    in every format.
  - With O(previous), the JSON report of an earlier run, every format first shows what changed since then (the
    drift) - new and resolved findings, listeners that appeared or disappeared, hosts that appeared or
    disappeared. See C(docs/reports.md), section "Drift".
  - The same input gives the same text, byte for byte.
  - In V(text), V(junit) and V(html), control characters, line separators and bidirectional overrides in
    what the hosts report (process names, command lines, messages) are shown as escapes such as C(\x1b) and
    C(\u202e), so that a host cannot drive the terminal or reorder what the reader sees.
options:
  _input:
    description: Mapping of host name to its M(portcullis.hardening.port_audit) result.
    type: dict
    required: true
  format:
    description: Report format.
    type: str
    required: true
    choices: [json, junit, sarif, html, text]
  generated_at:
    description:
      - When the report was made, as ISO-8601 text (V(2025-06-01T09:30:00Z)) or a datetime. A time without
        a zone is taken as UTC.
      - Passed in rather than read from the clock so that all formats of one run agree.
    type: raw
    required: true
  tool_version:
    description: Version of portcullis.hardening named in the report.
    type: str
    default: 0.1.0
  previous:
    description:
      - The JSON report of an earlier run, parsed (read it with the C(ansible.builtin.file) lookup or
        M(ansible.builtin.slurp), then C(from_json)), to compare this one with.
      - V(null) (the default) makes a report without drift. A mapping that is not such a report fails the filter
        with a message naming what is wrong.
    type: dict
    version_added: 0.1.0
"""

EXAMPLES = r"""
- name: Fix the report time once, so that every format says the same
  ansible.builtin.set_fact:
    report_time: "{{ now(utc=true, fmt='%Y-%m-%dT%H:%M:%SZ') }}"

- name: Write the fleet's compliance reports
  ansible.builtin.copy:
    content: "{{ audit_results | portcullis.hardening.audit_report(item.format, report_time) }}"
    dest: "reports/portcullis-report.{{ item.extension }}"
    mode: "0644"
  loop:
    - {format: json, extension: json}
    - {format: junit, extension: junit.xml}
    - {format: sarif, extension: sarif}
    - {format: html, extension: html}
  delegate_to: localhost
  run_once: true

- name: Say what changed since the last run's JSON report
  ansible.builtin.debug:
    msg: >-
      {{ audit_results | portcullis.hardening.audit_report('text', report_time,
         previous=lookup('ansible.builtin.file', 'reports/portcullis-report.json') | from_json) }}
"""

RETURN = r"""
_value:
  description: The report in the format asked for, ending with a newline.
  type: str
"""

from ansible.errors import AnsibleFilterError

from ansible_collections.portcullis.hardening.plugins.module_utils._text import printable
from ansible_collections.portcullis.hardening.plugins.plugin_utils._report_html import render_html
from ansible_collections.portcullis.hardening.plugins.plugin_utils._reports import (
    build_report,
    render_json,
    render_junit,
    render_sarif,
    render_text,
)


RENDERERS = {"json": render_json, "junit": render_junit, "sarif": render_sarif, "html": render_html,
             "text": render_text}


def audit_report(results_by_host, format, generated_at, tool_version="0.1.0", previous=None):
    if format not in RENDERERS:
        raise AnsibleFilterError("audit_report: format %r is not one of: %s" % (format, ", ".join(RENDERERS)))
    try:
        return RENDERERS[format](build_report(results_by_host, generated_at, tool_version, previous))
    except ValueError as exc:
        raise AnsibleFilterError(printable("audit_report: %s" % exc))  # it may quote a host name
    except (KeyError, TypeError, AttributeError) as exc:
        raise AnsibleFilterError("audit_report: an audit result lacks a field or has a wrong type (%r); pass "
                                 "the results of portcullis.hardening.port_audit by host" % exc)


class FilterModule:
    def filters(self):
        return {"audit_report": audit_report}
