# Copyright (c) Portcullis contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
name: host_summary
short_description: A host's audit and what the run changed, in a few lines for the console
version_added: 0.1.0
author:
  - Portcullis contributors (@portcullis)
description:
  - Turns the result of M(portcullis.hardening.port_audit) into lines - compliant or not with the findings counted
    by severity, the findings above info (at most ten), then what the run changed - sshd and services moved, the
    firewall, the units stopped or that would stop, and the unlisted listeners kept with the reason.
  - The role C(portcullis.hardening.ports) prints it for every host in its C(report) phase.
options:
  _input:
    description: The result of M(portcullis.hardening.port_audit) (or a failed or unreachable result).
    type: dict
    required: true
  ssh:
    description: The result of M(portcullis.hardening.ssh_port), if it ran.
    type: dict
  service_ports:
    description: The registered loop of M(portcullis.hardening.service_port), if it ran.
    type: dict
  firewall:
    description: The result of M(portcullis.hardening.firewall), if it ran.
    type: dict
  services:
    description: The result of M(portcullis.hardening.stop_unlisted), if it ran.
    type: dict
  check_mode:
    description: Whether the run was in check mode (the summary then says what would change).
    type: bool
    default: false
  stop_unlisted:
    description: Whether the run was to stop the unlisted units (C(portcullis_stop_unlisted)), or only list them.
    type: bool
    default: false
"""

EXAMPLES = r"""
- name: Summarise the host
  ansible.builtin.debug:
    msg: "{{ audit | portcullis.hardening.host_summary(firewall=firewall_result) }}"
"""

RETURN = r"""
_value:
  description: The lines, the first saying whether the host is compliant.
  type: list
  elements: str
"""

from ansible.errors import AnsibleFilterError

from ansible_collections.portcullis.hardening.plugins.plugin_utils._summary import host_summary as summarise


def host_summary(result, ssh=None, service_ports=None, firewall=None, services=None, check_mode=False,
                 stop_unlisted=False):
    try:
        return summarise(result, ssh, service_ports, firewall, services, check_mode, stop_unlisted)
    except (KeyError, TypeError, AttributeError) as exc:
        raise AnsibleFilterError("host_summary: a result lacks a field or has a wrong type (%r); pass what the "
                                 "collection's modules return" % exc)


class FilterModule:
    def filters(self):
        return {"host_summary": host_summary}
