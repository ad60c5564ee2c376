# Copyright (c) Portcullis contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Controller side of port_audit: validate first, audit on the host, then probe from outside."""

from __future__ import annotations

from ansible.plugins.action import ActionBase

from ansible_collections.portcullis.hardening.plugins.module_utils._allowlist import AllowlistError, parse_allowlist
from ansible_collections.portcullis.hardening.plugins.module_utils._audit import (
    is_compliant,
    probe_findings,
    probe_ports,
    sort_findings,
)
from ansible_collections.portcullis.hardening.plugins.module_utils._specs import PORT_AUDIT_SPEC as ARGUMENT_SPEC
from ansible_collections.portcullis.hardening.plugins.plugin_utils._action import NETWORK_CONNECTIONS, validated
from ansible_collections.portcullis.hardening.plugins.plugin_utils._probe import (
    probe_tcp,
    probe_udp,
    resolve_addresses,
)

MODULE = "portcullis.hardening.port_audit"
PROBES = {"tcp": probe_tcp, "udp": probe_udp}
# Where the probe result keeps each protocol's states: {address: {port: state}}.
RESULT_KEYS = {"tcp": "ports", "udp": "udp_ports"}


def _probe_settings(params):
    """The probe's bounds, from arguments the module's spec has already typed."""
    settings = {
        "enabled": params["probe"],
        "addresses": params["probe_addresses"],
        "ports": params["probe_ports"],
        "timeout": params["probe_timeout"],
        "concurrency": params["probe_concurrency"],
        "max_ports": params["probe_max_ports"],
        "protocols": [protocol for protocol in PROBES if protocol in params["probe_protocols"]],
    }
    if not 0 < settings["timeout"] <= 60:
        raise ValueError("probe_timeout: %r must be above 0 and at most 60 seconds" % settings["timeout"])
    if not 1 <= settings["concurrency"] <= 256:
        raise ValueError("probe_concurrency: %r must be within 1-256" % settings["concurrency"])
    if not 1 <= settings["max_ports"] <= 65535:
        raise ValueError("probe_max_ports: %r must be within 1-65535" % settings["max_ports"])
    for position, port in enumerate(settings["ports"]):
        if not 1 <= port <= 65535:
            raise ValueError("probe_ports[%d]: %r must be a port within 1-65535" % (position, port))
    return settings


class ActionModule(ActionBase):
    TRANSFERS_FILES = False

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        task_vars = task_vars or {}
        args = self._task.args
        # Every input is checked here, on the controller, before anything runs on the host.
        try:
            rules = parse_allowlist(args.get("allowlist") or [])
            settings = _probe_settings(validated(args, ARGUMENT_SPEC))
        except (AllowlistError, ValueError, TypeError) as exc:
            result.update(failed=True, msg=str(exc))
            return result

        result.update(self._execute_module(module_name=MODULE, module_args=args, task_vars=task_vars))
        if result.get("failed") or not settings["enabled"] or not settings["protocols"]:
            return result

        names = settings["addresses"]
        if not names:
            connection = self._connection.transport
            if connection not in NETWORK_CONNECTIONS:
                self._display.warning("port_audit: not probing %s from the controller: its connection (%s) does "
                                      "not reach it over the network; set probe_addresses to probe it"
                                      % (task_vars.get("inventory_hostname"), connection))
                return result
            names = [task_vars.get("ansible_host") or task_vars.get("inventory_hostname")]
        try:
            addresses = resolve_addresses(names)
            # probe_max_ports bounds each protocol; both are checked before anything is probed.
            ports = {protocol: probe_ports(result["listeners"], rules, settings["ports"], settings["max_ports"],
                                           protocol, result.get("published") or []) for protocol in settings["protocols"]}
        except ValueError as exc:
            result.update(failed=True, msg=str(exc))
            return result
        findings = list(result["findings"])
        probe = {"addresses": addresses, "ports": {}, "udp_ports": {}}
        for protocol, to_probe in ports.items():
            seen = PROBES[protocol](addresses, to_probe, settings["timeout"], settings["concurrency"])
            findings += probe_findings(result["listeners"], rules, seen, protocol, result.get("published") or [])
            probe[RESULT_KEYS[protocol]] = {address: {str(port): state for port, (state, _seen_from) in by_port.items()}
                                            for address, by_port in seen.items()}
        findings = sort_findings(findings)
        result.update(findings=findings, compliant=is_compliant(findings), probe=probe)
        return result
