# Copyright (c) Portcullis contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
name: noncompliance
short_description: Why a host is not compliant, naming every remaining finding
version_added: 0.1.0
author:
  - Portcullis contributors (@portcullis)
description:
  - Turns the result of M(portcullis.hardening.port_audit) into the message that fails a host - every finding above
    info, with its severity and remediation - or says that it was not audited, and why.
options:
  _input:
    description: The result of M(portcullis.hardening.port_audit) (or a failed or unreachable result).
    type: dict
    required: true
  host:
    description: The host's name, for the message.
    type: str
    required: true
"""

EXAMPLES = r"""
- name: Fail unless the host is compliant
  ansible.builtin.fail:
    msg: "{{ audit | portcullis.hardening.noncompliance(inventory_hostname) }}"
  when: not audit.compliant
"""

RETURN = r"""
_value:
  description: The message, one line per finding after the first.
  type: str
"""

from ansible.errors import AnsibleFilterError

from ansible_collections.portcullis.hardening.plugins.plugin_utils._summary import noncompliance as explain


def noncompliance(result, host):
    try:
        return explain(result, host)
    except (KeyError, TypeError, AttributeError) as exc:
        raise AnsibleFilterError("noncompliance: the audit result lacks a field or has a wrong type (%r); pass what "
                                 "portcullis.hardening.port_audit returns" % exc)


class FilterModule:
    def filters(self):
        return {"noncompliance": noncompliance}
