# Copyright (c) Portcullis contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
name: listener_table
short_description: Render discovered listeners of several hosts as a text table
version_added: 0.1.0
author:
  - Portcullis contributors (@portcullis)
description:
  - Turns a mapping of host name to the RV(portcullis.hardening.listening_ports#module:listeners) list
    into an aligned plain-text table with one row per listening socket, for people to read.
  - Columns are host, protocol, address, port, reach (local only, all IPv4/IPv6, this address),
    user, processes with their pids, and systemd units.
  - A host whose value is not a list (for example V(null) or an error text) is reported as not discovered.
  - Control characters, line separators and bidirectional overrides in what the hosts report (process names,
    units, users) are shown as escapes such as C(\x1b) and C(\u202e), so that a host cannot drive the terminal
    or reorder what the reader sees.
options:
  _input:
    description: Mapping of host name to its list of listeners.
    type: dict
    required: true
"""

EXAMPLES = r"""
- name: Show the fleet's listeners as a table
  ansible.builtin.debug:
    msg: "{{ {'web1': web1_listeners, 'db1': db1_listeners} | portcullis.hardening.listener_table }}"
"""

RETURN = r"""
_value:
  description: The table, lines separated by newlines, ending with a summary line.
  type: str
"""

from ansible.errors import AnsibleFilterError

from ansible_collections.portcullis.hardening.plugins.plugin_utils._table import render_table


def listener_table(listeners_by_host):
    if not isinstance(listeners_by_host, dict):
        raise AnsibleFilterError("listener_table expects a mapping of host name to listeners, got %s"
                                 % type(listeners_by_host).__name__)
    try:
        return render_table(listeners_by_host)
    except (KeyError, TypeError) as exc:
        raise AnsibleFilterError("listener_table: a listener lacks a field (%s); pass the "
                                 "listeners returned by portcullis.hardening.listening_ports" % exc)


class FilterModule:
    def filters(self):
        return {"listener_table": listener_table}
