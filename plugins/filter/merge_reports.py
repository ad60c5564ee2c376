# Copyright (c) Portcullis contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
name: merge_reports
short_description: Merge the JSON reports of the slices of a sliced job into one fleet report, in any format
version_added: 0.1.0
author:
  - Portcullis contributors (@portcullis)
description:
  - A sliced job (AWX or Ansible Automation Platform job slicing) audits its hosts in several slices, and each
    slice writes its own JSON report. This filter makes the report of the whole fleet from them - the report
    P(portcullis.hardening.audit_report#filter) makes from every host's audit result at once.
  - Without O(format), it returns the merged JSON report as a mapping. With O(format), it returns the text of
    that report in the format, rendered by the renderers of P(portcullis.hardening.audit_report#filter) - the
    same text, byte for byte, as the role C(portcullis.hardening.ports) writes for the same hosts.
  - Every slice must have this collection's C(schema_version) and tool name. Their tool versions may differ -
    the filter then warns, naming each slice's version, and the merged report names the highest.
  - A host is in one slice only, or in several with identical entries. A host with different entries in two
    slices fails the filter, naming the host and both slices.
  - The summary is counted again from the hosts; the slices' own summaries and drift are not read. C(generated_at)
    is the newest slice's unless O(generated_at) is given. With O(previous), the merged report has its drift, as
    in P(portcullis.hardening.audit_report#filter).
  - "A malformed slice fails the filter with a message naming it (its position, and its name from O(names)), the
    field and the value, such as C(reports[1]: schema_version: 2 is not 1)."
  - The same slices give the same report, byte for byte, in whatever order they are given.
  - See C(docs/reports.md), section "Merging the reports of a sliced job".
options:
  _input:
    description:
      - The JSON reports of the slices, each parsed (C(from_json)) or as the text of its file, which the filter
        parses itself so that an error names the slice.
    type: list
    elements: raw
    required: true
  format:
    description:
      - The format to render the merged report in. Omitted (the default), the filter returns the merged report
        as a mapping.
    type: str
    choices: [json, junit, sarif, html, text]
  generated_at:
    description:
      - When the merged report was made, as ISO-8601 text (V(2025-06-01T09:30:00Z)) or a datetime. A time without
        a zone is taken as UTC.
      - V(null) (the default) takes the newest C(generated_at) of the slices.
    type: raw
  previous:
    description:
      - The JSON report of an earlier run (a merged report, or the report of an unsliced run) to compare the merged
        report with, parsed or as the text of its file. See C(docs/reports.md), section "Drift".
      - V(null) (the default) makes a report without drift.
    type: raw
  names:
    description:
      - A name for each slice, in the order of the input (their files' paths), for messages.
      - V(null) (the default) names them by their position only, V(reports[0]), V(reports[1]), ...
    type: list
    elements: str
"""

EXAMPLES = r"""
- name: Merge the slices' reports once, checking them, and keep the merged JSON report
  ansible.builtin.set_fact:
    fleet_report: >-
      {{ query('ansible.builtin.file', 'slices/1/portcullis-report.json', 'slices/2/portcullis-report.json')
         | portcullis.hardening.merge_reports('json', names=['slices/1', 'slices/2']) }}

- name: Write the fleet's reports, as the role names them, with what changed since the last merge
  ansible.builtin.copy:
    content: >-
      {{ [fleet_report] | portcullis.hardening.merge_reports(item.format,
         previous=lookup('ansible.builtin.file', 'reports/portcullis-report.json')) }}
    dest: "reports/portcullis-report.{{ item.extension }}"
    mode: "0644"
  loop:
    - {format: json, extension: json}
    - {format: junit, extension: junit.xml}
    - {format: sarif, extension: sarif}
    - {format: html, extension: html}
    - {format: text, extension: txt}

- name: Say how the fleet is doing
  ansible.builtin.debug:
    msg: >-
      {{ (query('ansible.builtin.file', 'slices/1/portcullis-report.json', 'slices/2/portcullis-report.json')
          | portcullis.hardening.merge_reports).summary }}
"""

RETURN = r"""
_value:
  description:
    - Without O(format), the merged JSON report (see C(docs/report.schema.json)).
    - With O(format), its text in that format, ending with a newline.
  type: raw
"""

from ansible.errors import AnsibleFilterError
from ansible.utils.display import Display

from ansible_collections.portcullis.hardening.plugins.filter.audit_report import RENDERERS
from ansible_collections.portcullis.hardening.plugins.module_utils._text import printable
from ansible_collections.portcullis.hardening.plugins.plugin_utils._merge import merge_reports as merge

display = Display()


def _warn(message):
    display.warning(printable("merge_reports: %s" % message))


def merge_reports(reports, format=None, generated_at=None, previous=None, names=None):
    if format is not None and format not in RENDERERS:
        raise AnsibleFilterError("merge_reports: format %r is not one of: %s" % (format, ", ".join(RENDERERS)))
    try:
        merged = merge(reports, generated_at, previous, names, warn=_warn)
        # The merged report is build_report's of the fleet's hosts, rendered by audit_report's own renderers: the
        # text the role writes for these hosts, byte for byte.
        return merged if format is None else RENDERERS[format](merged)
    except ValueError as exc:
        raise AnsibleFilterError(printable("merge_reports: %s" % exc))  # it may quote a host name
    except (KeyError, TypeError, AttributeError) as exc:
        raise AnsibleFilterError("merge_reports: a report lacks a field or has a wrong type (%r); pass the JSON "
                                 "reports that portcullis.hardening.audit_report wrote" % exc)


class FilterModule:
    def filters(self):
        return {"merge_reports": merge_reports}
