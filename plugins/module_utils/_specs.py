# Copyright (c) Portcullis contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The argument specs of the changing modules, in one place: the modules, their action plugins (which
validate on the controller before anything runs) and the tests read them from here.

Private to the collection.
"""

from __future__ import annotations

from ansible_collections.portcullis.hardening.plugins.module_utils._allowlist import ENTRY_SPEC

PORT_AUDIT_SPEC = {
    "allowlist": {"type": "list", "elements": "dict", "options": ENTRY_SPEC, "default": []},
    "listeners": {"type": "list", "elements": "dict"},
    "include_loopback": {"type": "bool", "default": False},
    "include_published": {"type": "bool", "default": True},
    "expect_default_deny": {"type": "bool", "default": False},
    # Used by the action plugin on the controller; accepted by the module so that it documents one interface.
    "probe": {"type": "bool", "default": True},
    "probe_addresses": {"type": "list", "elements": "str", "default": []},
    "probe_ports": {"type": "list", "elements": "int", "default": []},
    "probe_timeout": {"type": "float", "default": 1.0},
    "probe_concurrency": {"type": "int", "default": 32},
    "probe_max_ports": {"type": "int", "default": 1024},
    "probe_protocols": {"type": "list", "elements": "str", "choices": ["tcp", "udp"], "default": ["tcp", "udp"]},
}

FIREWALL_SPEC = {
    "allow": {"type": "list", "elements": "dict", "options": ENTRY_SPEC, "default": []},
    "policy": {"type": "str", "choices": ["drop", "reject"], "default": "drop"},
    "backend": {"type": "str", "choices": ["auto", "nftables", "ufw", "firewalld"], "default": "auto"},
    "management_port": {"type": "int"},
    "keep_management_port": {"type": "bool", "default": True},
    "persist": {"type": "bool", "default": True},
    "confirm_timeout": {"type": "int", "default": 60},
    "state": {"type": "str", "choices": ["present", "absent"], "default": "present"},
    "log_dropped": {"type": "bool", "default": False},
    "close_published": {"type": "bool", "default": True},
    "confirm": {"type": "str", "no_log": False},
}

SSH_PORT_STEPS = ("plan", "transition", "finalize", "commit", "rollback")
SSH_PORT_SPEC = {
    "port": {"type": "int", "required": True},
    "previous_ports": {"type": "list", "elements": "int", "default": [22]},
    "listen_addresses": {"type": "list", "elements": "str"},
    "manage_firewall": {"type": "bool"},
    "selinux": {"type": "str", "choices": ["auto", "true", "false"], "default": "auto"},
    "confirm_timeout": {"type": "int", "default": 120},
    "locate_only": {"type": "bool", "default": False},
    "step": {"type": "str", "choices": list(SSH_PORT_STEPS), "default": "plan"},
    "token": {"type": "str", "no_log": False},
}

SERVICE_PORT_STEPS = ("plan", "apply", "commit", "rollback")
SERVICE_PORT_SPEC = {
    "service": {"type": "str", "required": True},
    "port": {"type": "int", "required": True},
    "previous_port": {"type": "int"},
    "path": {"type": "path"},
    "regexp": {"type": "str"},
    "line": {"type": "str"},
    "socket_unit": {"type": "str"},
    "validate": {"type": "list", "elements": "str"},
    "restart": {"type": "str", "choices": ["restarted", "reloaded"], "default": "restarted"},
    "manage_firewall": {"type": "bool"},
    "probe": {"type": "bool", "default": True},
    "probe_address": {"type": "str"},
    "confirm_timeout": {"type": "int", "default": 60},
    "step": {"type": "str", "choices": list(SERVICE_PORT_STEPS), "default": "plan"},
    "token": {"type": "str", "no_log": False},
}
SERVICE_PORT_MUTUALLY_EXCLUSIVE = [["path", "socket_unit"]]
SERVICE_PORT_REQUIRED_ONE_OF = [["path", "socket_unit"]]
SERVICE_PORT_REQUIRED_TOGETHER = [["path", "regexp", "line"]]

# Unit patterns stop_unlisted never stops, whatever the task says (fnmatch patterns on unit names).
ALWAYS_PROTECTED_UNITS = ("ssh.service", "ssh.socket", "ssh@*.service", "sshd.service", "sshd.socket", "sshd@*.service",
                          "systemd-*", "dbus.service", "dbus.socket", "portcullis-rollback*")
STOP_UNLISTED_SPEC = {
    "allowlist": {"type": "list", "elements": "dict", "options": ENTRY_SPEC, "default": []},
    "protected_units": {"type": "list", "elements": "str", "default": []},
    "include_loopback": {"type": "bool", "default": False},
    "disable": {"type": "bool", "default": True},
    "settle_timeout": {"type": "int", "default": 10},
    "confirm_timeout": {"type": "int", "default": 60},
    "confirm": {"type": "str", "no_log": False},
}
