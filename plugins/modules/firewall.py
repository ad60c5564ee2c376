#!/usr/bin/python
# Copyright (c) Portcullis contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: firewall
short_description: Default-deny nftables firewall from an allowlist, that keeps other rules and cannot lock you out
version_added: 0.1.0
description:
  - Enforces O(allow) at the network layer with nftables, in a table of its own (C(table inet portcullis)). It
    never flushes the ruleset and never touches another table, so Docker, libvirt or Debian's own rules stay
    as they are.
  - The input chain drops (or rejects, O(policy)) everything except established and related traffic, loopback,
    essential ICMP and ICMPv6 (neighbour discovery, router advertisements, packet-too-big, errors, rate-limited
    echo), the management port and the allowlist, for IPv4 and IPv6 alike. Forwarded and outgoing traffic is
    not filtered.
  - The whole table is rendered, validated with C(nft -c -f) and applied in one C(nft -f) transaction (the
    old own table is deleted and the new one created in the same transaction). A second run with the same
    input changes nothing; C(--diff) shows the rules before and after; check mode changes nothing.
  - "Commit-confirm: before applying, the host arms a systemd timer that restores the previous own table after
    O(confirm_timeout) seconds. The action plugin then opens a new connection from the controller and
    confirms over it, which cancels the timer and persists the rules. If the new connection fails, the timer
    restores the previous rules and the task fails saying so."
  - The management port (by default the port of the current connection) is always open. When O(allow) does not
    open it, the module keeps it open anyway and warns.
author:
  - Portcullis contributors (@portcullis)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.flow
  - portcullis.hardening.allowlist.allow
attributes:
  action:
    support: full
    details: The action plugin validates every option on the controller and confirms over a new connection.
  async:
    support: none
  bypass_host_loop:
    support: none
  check_mode:
    support: full
  diff_mode:
    support: full
  platform:
    platforms: linux
options:
  policy:
    description: What happens to traffic nothing allows. V(reject) answers TCP with a reset and the rest with ICMP.
    type: str
    choices: [drop, reject]
    default: drop
  backend:
    description:
      - V(auto) uses nftables, unless ufw or firewalld is active on the host, in which case the task fails
        rather than fight them (their backends are not supported yet). V(ufw) and V(firewalld) fail likewise.
    type: str
    choices: [auto, nftables, ufw, firewalld]
    default: auto
  management_port:
    description:
      - TCP port kept open whatever O(allow) says. Default the port of the current connection (22 for
        connections that are not SSH).
    type: int
  keep_management_port:
    description:
      - Set to V(false) to let O(allow) alone decide about O(management_port). Refused while the current
        connection uses that port and O(allow) does not open it.
    type: bool
    default: true
  persist:
    description:
      - Write the table to C(/etc/nftables.d/portcullis.nft), include it from C(/etc/nftables.conf) (adding one
        line, keeping everything else) and enable C(nftables.service), so the rules survive a reboot.
    type: bool
    default: true
  confirm_timeout:
    description:
      - Seconds after which the host restores the previous rules unless a new connection from the controller
        confirmed the change. V(0) applies without commit-confirm.
    type: int
    default: 60
  state:
    description: V(absent) deletes the own table and its persistence, and nothing else.
    type: str
    choices: [present, absent]
    default: present
  log_dropped:
    description: Log what the policy drops, rate-limited (5 a minute), with the prefix C(portcullis drop).
    type: bool
    default: false
  confirm:
    description:
      - Set by the action plugin when it confirms a change over a new connection (the token of the armed
        rollback). Do not set it yourself.
    type: str
notes:
  - Debian's C(/etc/nftables.conf) starts with C(flush ruleset), as shipped. At boot that is harmless, but
    restarting C(nftables.service) by hand flushes the rules of other tools such as Docker; this module never
    restarts it.
seealso:
  - module: portcullis.hardening.port_audit
"""

EXAMPLES = r"""
- name: Allow SSH, HTTPS and monitoring; drop everything else
  portcullis.hardening.firewall:
    allow:
      - {port: 22, comment: SSH}
      - {port: 443}
      - {port: 9100, sources: [10.0.0.0/8], comment: node exporter}
      - {port: 51820, protocol: udp, comment: WireGuard}

- name: Preview the rules without touching the host
  portcullis.hardening.firewall:
    allow: "{{ portcullis_allowlist }}"
  check_mode: true
  diff: true

- name: Remove the Portcullis table and its persistence
  portcullis.hardening.firewall:
    state: absent
"""

RETURN = r"""
rules:
  description: The own table as rendered (what is live after the task, unless it failed).
  returned: state is present
  type: str
management_ports:
  description: Ports kept open besides O(allow) (empty when O(allow) opens the management port itself).
  returned: state is present
  type: list
  elements: int
persistence:
  description: What persisting changed (or would change) - C(file), C(include), C(service).
  returned: state is present and O(persist)
  type: dict
rollback:
  description: The armed rollback (C(token), C(unit), C(timeout)), before the action plugin confirmed it.
  returned: when a change was applied with commit-confirm
  type: dict
confirmed:
  description: Whether a new connection from the controller confirmed the change.
  returned: when a change was applied with commit-confirm
  type: bool
"""

import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.portcullis.hardening.plugins.module_utils._allowlist import (
    ENTRY_SPEC,
    opens_port,
    parse_allowlist,
)
from ansible_collections.portcullis.hardening.plugins.module_utils._firewall import (
    FirewallError,
    Host,
    apply_table,
    confirm,
    persist,
    persistence_plan,
    plan,
    remove,
)
from ansible_collections.portcullis.hardening.plugins.module_utils._nftables import render_table

ARGUMENT_SPEC = {
    "allow": {"type": "list", "elements": "dict", "options": ENTRY_SPEC, "default": []},
    "policy": {"type": "str", "choices": ["drop", "reject"], "default": "drop"},
    "backend": {"type": "str", "choices": ["auto", "nftables", "ufw", "firewalld"], "default": "auto"},
    "management_port": {"type": "int"},
    "keep_management_port": {"type": "bool", "default": True},
    "persist": {"type": "bool", "default": True},
    "confirm_timeout": {"type": "int", "default": 60},
    "state": {"type": "str", "choices": ["present", "absent"], "default": "present"},
    "log_dropped": {"type": "bool", "default": False},
    "confirm": {"type": "str", "no_log": False},
}


def management_ports(rules, port, keep):
    """The management port, unless an entry opens it (then that entry, with its sources, decides)."""
    return [] if not keep or opens_port(rules, "tcp", port) else [port]


def check_backend(module, host):
    backend = module.params["backend"]
    if backend in ("ufw", "firewalld"):
        raise FirewallError("backend: %r is not supported yet; use nftables (auto)" % backend)
    if not module.get_bin_path("nft"):
        raise FirewallError("nft was not found on the host: install the nftables package")
    others = host.active_managers()
    if others:
        raise FirewallError("%s is active on this host; Portcullis will not fight it with a second firewall. "
                            "Disable it, or wait for the %s backend" % (" and ".join(others), others[0]))


def run(module):
    params = module.params
    host = Host(module.run_command)
    check_backend(module, host)
    if params["state"] == "absent":
        return remove(host, module.check_mode)

    rules = parse_allowlist(params["allow"], name="allow")
    port = params["management_port"] or 22
    kept = management_ports(rules, port, params["keep_management_port"])
    if kept:
        module.warn("allow does not open the management port %d/tcp: the firewall keeps it open anyway "
                    "(set keep_management_port=false to let allow decide)" % port)
    desired = render_table(rules, params["policy"], kept, params["log_dropped"])
    if params["confirm"]:
        return {"changed": True, "confirmed": True, "rules": desired, "management_ports": kept,
                "persistence": confirm(params["confirm"], desired, host, params["persist"])}

    current = plan(desired, host)
    persistence = persistence_plan(desired, host) if params["persist"] else {}
    result = {"changed": current["table_changed"] or any(persistence.values()), "rules": desired,
              "management_ports": kept, "persistence": persistence,
              "diff": {"before": current["live_text"] or "", "after": desired}}
    if module.check_mode or not result["changed"]:
        return result
    rollback = None
    if current["table_changed"]:
        timeout = params["confirm_timeout"]
        rollback = apply_table(desired, host, current["live_text"], timeout, os.urandom(6).hex())
    if rollback:
        result.update(rollback=rollback, confirmed=False)  # the action plugin confirms, then persists
    elif params["persist"]:
        persist(desired, host, persistence)
    return result


def main():
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    try:
        result = run(module)
    except (FirewallError, ValueError) as exc:  # ValueError includes AllowlistError
        module.fail_json(msg=str(exc))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
