# Copyright (c) Portcullis contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
name: allowlist
short_description: Check an allowlist (and its extra entries) on the controller, before anything runs on a host
version_added: 0.1.0
author:
  - Portcullis contributors (@portcullis)
description:
  - Validates the entries as the collection's modules do - ports and ranges, protocols, families, C(sources) CIDRs
    (no host bits, matching the family), C(bind), duplicates and contradictions - and returns the list with the
    extra entries appended.
  - "An error names the variable, the entry index, the field and the value, such as
    C(portcullis_allowlist_extra[1].sources[0]: '10.0.0.1/8' has host bits set)."
  - The role C(portcullis.hardening.ports) checks its allowlist this way first, so that a bad entry stops the run
    before any phase changes a host.
options:
  _input:
    description: The allowlist entries (see the O(portcullis.hardening.port_audit#module:allowlist) option).
    type: list
    elements: dict
    required: true
  extra:
    description: More entries, appended to the first ones (a group's or a host's own).
    type: list
    elements: dict
    default: []
  name:
    description: The name of the first list, for messages.
    type: str
    default: portcullis_allowlist
  extra_name:
    description: The name of the extra list, for messages.
    type: str
    default: portcullis_allowlist_extra
"""

EXAMPLES = r"""
- name: Check the allowlist before anything changes
  ansible.builtin.set_fact:
    checked_allowlist: "{{ portcullis_allowlist | portcullis.hardening.allowlist(portcullis_allowlist_extra) }}"
"""

RETURN = r"""
_value:
  description: The entries, then the extra entries, as they were given.
  type: list
  elements: dict
"""

from ansible.errors import AnsibleFilterError

from ansible_collections.portcullis.hardening.plugins.module_utils._allowlist import AllowlistError, parse_allowlist
from ansible_collections.portcullis.hardening.plugins.module_utils._text import printable


def allowlist(entries, extra=None, name="portcullis_allowlist", extra_name="portcullis_allowlist_extra"):
    extra = [] if extra is None else extra
    for value, label in ((entries, name), (extra, extra_name)):
        if not isinstance(value, list):
            raise AnsibleFilterError("%s: %r must be a list of entries" % (label, value))
    try:
        parse_allowlist(entries, name=name)
        parse_allowlist(extra, name=extra_name)
        combined = list(entries) + list(extra)
        parse_allowlist(combined, name="(%s + %s)" % (name, extra_name))
    except AllowlistError as exc:
        raise AnsibleFilterError(printable(str(exc)))
    return combined


class FilterModule:
    def filters(self):
        return {"allowlist": allowlist}
