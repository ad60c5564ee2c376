# Copyright (c) Portcullis contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Stop (and disable) the systemd units behind listeners that no allowlist entry allows.

Which listeners: the audit's own `unexpected_listener` findings that count against compliance (loopback-only ones
only with include_loopback), so "unlisted" means here what it means in every report. Which unit: the service (or,
under socket activation, the socket and the service) that holds the socket, as /proc/<pid>/cgroup and
`systemctl list-sockets` say. Never a unit matching a protected pattern or serving this very connection, never a
scope (a program started by hand, a login session): those are reported, not killed.

Pure planning here, and small readers over a Host (module_utils/_host.py); the stop_unlisted module arms the change
with the engine (module_utils/_transaction.py). Private to the collection.
"""

from __future__ import annotations

import fnmatch
import os

from ansible_collections.portcullis.hardening.plugins.module_utils._audit import audit_listeners
from ansible_collections.portcullis.hardening.plugins.module_utils._host import PortcullisError
from ansible_collections.portcullis.hardening.plugins.module_utils._procnet import endpoint_text
from ansible_collections.portcullis.hardening.plugins.module_utils._procscan import unit_from_cgroup
from ansible_collections.portcullis.hardening.plugins.module_utils._published import proxy_processes
from ansible_collections.portcullis.hardening.plugins.module_utils._session import MAX_ANCESTORS, parent_pid
from ansible_collections.portcullis.hardening.plugins.module_utils._systemd import (
    SYSTEMCTL,
    first,
    unit_properties,
)

KIND = "services"
STOPPABLE_SUFFIXES = (".service", ".socket")
# Unit file states `systemctl disable` undoes, and `systemctl enable` puts back.
DISABLEABLE_STATES = ("enabled",)
UNIT_PROPERTIES = ("Id", "LoadState", "ActiveState", "UnitFileState", "TriggeredBy", "Triggers")


class StopUnlistedError(PortcullisError):
    """A unit could not be planned, stopped or put back."""


def listener_text(listener):
    return "%s %s" % (listener["protocol"], endpoint_text(listener["address"], listener["port"]))


def unlisted(listeners, rules, include_loopback=False):
    """The listeners no allowlist entry allows, as the audit finds them: [(listener, finding)]."""
    findings = {(item["protocol"], item["address"], item["port"]): item
                for item in audit_listeners(listeners, rules, include_loopback)
                if item["kind"] == "unexpected_listener" and item["severity"] != "info"}
    # A userland proxy's socket (docker-proxy) is a published container port: stopping it would stop the container
    # runtime; the firewall's forward chain closes the port instead.
    return [(listener, findings[(listener["protocol"], listener["address"], listener["port"])])
            for listener in listeners if (listener["protocol"], listener["address"], listener["port"]) in findings
            and not proxy_processes(listener)]


def protected_by(unit, patterns):
    """The first pattern (fnmatch) that protects `unit`, or None."""
    for pattern in patterns:
        if fnmatch.fnmatchcase(unit, pattern):
            return pattern
    return None


def parse_list_sockets(text):
    """`systemctl list-sockets --all --full --no-legend --no-pager`: [(listen, socket unit, [activated units])].

    The LISTEN column may hold spaces (kobject-uevent 1), so the socket unit is the first field after it ending in
    .socket that is not a path (LISTEN may be one, such as /run/snapd.socket; a unit name holds no "/").
    """
    sockets = []
    for line in text.splitlines():
        fields = line.split()
        for position, field in enumerate(fields):
            if position and field.endswith(".socket") and "/" not in field:
                sockets.append((" ".join(fields[:position]), field, fields[position + 1:]))
                break
    return sockets


def _listen_endpoint(listen):
    """(address, port) of a LISTEN entry such as 0.0.0.0:22, [::]:22, 127.0.0.1:6379; None for paths and others."""
    address, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit():
        return None
    if address.startswith("[") and address.endswith("]"):
        address = address[1:-1]
    return (address or "::"), int(port)


def socket_units_for(listener, sockets):
    """The socket units that hold `listener`'s address and port (systemd itself holds the socket)."""
    wanted = (listener["address"], listener["port"])
    return sorted({unit for listen, unit, _activates in sockets if _listen_endpoint(listen) == wanted})


def management_units(proc_root="/proc", pid=None):
    """The units of this process's ancestors: the session and the sshd that serve the management connection."""
    units = set()
    current = os.getpid() if pid is None else pid
    for _hop in range(MAX_ANCESTORS):
        if not current or current <= 1:
            break
        try:
            with open(os.path.join(proc_root, str(current), "cgroup")) as stream:
                unit = unit_from_cgroup(stream.read())
        except OSError:
            break
        if unit:
            units.add(unit)
        current = parent_pid(proc_root, current)
    return units


class Plan:
    """What stopping the unlisted listeners' units means on this host.

    groups: [{"units": [socket units first, then the service], "listeners": [text], "reasons": [finding messages]}]
    kept: [{"listener": text, "reason": why it is reported but not stopped}]
    states: {unit: {"active": str, "enabled": str}} before the change, for every unit of the groups.
    """

    def __init__(self):
        self.groups = []
        self.kept = []
        self.states = {}

    @property
    def units(self):
        return [unit for group in self.groups for unit in group["units"]]

    def summary(self):
        return [{"units": group["units"], "listeners": group["listeners"],
                 "before": {unit: self.states[unit] for unit in group["units"]}} for group in self.groups]


def _group_for(plan, units):
    for group in plan.groups:
        if set(group["units"]) & set(units):
            return group
    group = {"units": [], "listeners": [], "reasons": []}
    plan.groups.append(group)
    return group


def plan_stops(host, targets, sockets, protected):
    """A Plan for `targets` ([(listener, finding)] from unlisted()), reading unit states through `host`."""
    plan = Plan()
    properties = {}

    def props(unit):
        if unit not in properties:
            properties[unit] = unit_properties(host, unit, UNIT_PROPERTIES)
        return properties[unit]

    for listener, finding in targets:
        text = listener_text(listener)
        held_by = [process for process in listener["processes"] if process.get("unit")]
        units = sorted({process["unit"] for process in held_by})
        if not listener["processes"]:
            plan.kept.append({"listener": text, "reason": "no process holds it that could be read (a kernel socket, "
                              "or run with become to see its owner): reported, not stopped"})
            continue
        # systemd itself (pid 1, init.scope) holds the sockets of socket units.
        if any(process["pid"] == 1 for process in listener["processes"]) or "init.scope" in units:
            units = sorted((set(units) - {"init.scope"}) | set(socket_units_for(listener, sockets)))
        chosen = []
        for unit in units:
            if not unit.endswith(STOPPABLE_SUFFIXES):
                continue
            unit_props = props(unit)
            if first(unit_props, "LoadState") != "loaded":
                continue  # a user's unit (user@.service's own manager), or one that is gone
            chosen.append(unit)
            chosen.extend(trigger for trigger in first(unit_props, "TriggeredBy").split() if trigger.endswith(".socket"))
            # A socket's service, even while it does not run: enabled, it would start the socket again at boot.
            chosen.extend(service for service in first(unit_props, "Triggers").split()
                          if unit.endswith(".socket") and service.endswith(".service") and "@." not in service
                          and first(props(service), "LoadState") == "loaded")
        if not chosen:
            where = ", ".join(units) or "no systemd unit"
            plan.kept.append({"listener": text, "reason": "it runs in %s, not in a service or socket unit of the "
                              "system (a program started by hand or in a login session): reported, never killed"
                              % where})
            continue
        chosen = sorted(set(chosen), key=lambda unit: (not unit.endswith(".socket"), unit))
        shielded = [(unit, protected_by(unit, protected)) for unit in chosen]
        shielded = [(unit, pattern) for unit, pattern in shielded if pattern]
        if shielded:
            plan.kept.append({"listener": text, "reason": "its unit %s is protected (%s): reported, not stopped"
                              % (shielded[0][0], shielded[0][1])})
            continue
        group = _group_for(plan, chosen)
        group["units"] = sorted(set(group["units"]) | set(chosen), key=lambda unit: (not unit.endswith(".socket"), unit))
        group["listeners"].append(text)
        group["reasons"].append(finding["message"])
    for unit in plan.units:
        plan.states[unit] = {"active": first(props(unit), "ActiveState", "unknown"),
                             "enabled": first(props(unit), "UnitFileState", "unknown")}
    return plan


def stop_commands(plan, disable):
    """Argument lists that stop (and disable) the plan's units: sockets before services, so that no socket starts
    its service again."""
    commands = []
    for unit in plan.units:
        if disable and plan.states[unit]["enabled"] in DISABLEABLE_STATES:
            commands.append([SYSTEMCTL, "disable", "--now", unit])
        else:
            commands.append([SYSTEMCTL, "stop", unit])
    return commands


def undo_commands(plan, disable):
    """(live, boot) argument lists that put the units back as they were: enabled again, started again.

    At boot the rollback runs before sysinit.target, after systemd planned the boot without the units: the starts
    are queued (--no-block) and run once their dependencies are up.
    """
    enable = [[SYSTEMCTL, "enable", unit] for unit in plan.units
              if disable and plan.states[unit]["enabled"] in DISABLEABLE_STATES]
    active = [unit for unit in plan.units if plan.states[unit]["active"] in ("active", "activating", "reloading")]
    live = enable + [[SYSTEMCTL, "start", unit] for unit in active]
    boot = enable + [[SYSTEMCTL, "start", "--no-block", unit] for unit in active]
    return live, boot


def state_text(plan, after=False, disable=True):
    """The units' states, one per line, before or after the change (for --diff)."""
    lines = []
    for unit in plan.units:
        state = plan.states[unit]
        if after:
            enabled = "disabled" if disable and state["enabled"] in DISABLEABLE_STATES else state["enabled"]
            lines.append("%s: inactive, %s" % (unit, enabled))
        else:
            lines.append("%s: %s, %s" % (unit, state["active"], state["enabled"]))
    return "\n".join(lines) + ("\n" if lines else "")
