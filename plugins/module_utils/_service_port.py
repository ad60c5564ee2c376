# Copyright (c) Portcullis contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Host side of moving a service (not sshd) to another port: plan, apply, commit, rollback.

The port is set either by a line of a configuration file (found by a regular expression) or by a systemd
socket unit's ListenStream. apply() runs under one armed change of the change engine (module_utils/_transaction.py,
through _move.py), like ssh_port: the host restores the file, the socket drop-in and the firewall table and
restarts the service unless the controller, having reached the new port over TCP, commits in time.

Private to the collection. Everything goes through a Host (module_utils/_host.py).
"""

from __future__ import annotations

import re

from ansible_collections.portcullis.hardening.plugins.module_utils._host import PortcullisError
from ansible_collections.portcullis.hardening.plugins.module_utils._move import (
    Move,
    MoveError,
    firewall_diff,
    listening_of,
    plan_firewall,
    port_holders_of,
    tcp_listeners,
    wait_until_listening,
)
from ansible_collections.portcullis.hardening.plugins.module_utils._sshd import (
    parse_listen_property,
    socket_drop_in,
    socket_listens,
    stream_port,
)
from ansible_collections.portcullis.hardening.plugins.module_utils._systemd import restart_sequence
from ansible_collections.portcullis.hardening.plugins.module_utils._transaction import (
    ChangePending,
    file_diff,
    write_edits,
)

KIND = "service-port"
OWNER = "portcullis.hardening.service_port"


class ServicePortError(MoveError):
    """A step of moving a service that failed; the message names the step and what the host looks like now."""


def edit_config(text, regexp, line, path):
    """`text` with every line matching `regexp` replaced by `line`: (new text, lines replaced)."""
    try:
        pattern = re.compile(regexp)
    except re.error as exc:
        raise ServicePortError("regexp: %r is not a valid regular expression: %s" % (regexp, exc))
    lines = text.splitlines()
    replaced = 0
    for number, current in enumerate(lines):
        if pattern.search(current):
            lines[number] = line
            replaced += 1
    if not replaced:
        raise ServicePortError("regexp: %r matches no line of %s, so the port line cannot be found (nothing was "
                               "changed)" % (regexp, path))
    return "\n".join(lines) + ("\n" if text.endswith("\n") or not text else ""), replaced


def socket_drop_in_path(socket_unit):
    return "/etc/systemd/system/%s.d/portcullis-service-port.conf" % socket_unit


class ServiceHost:
    """The service's listeners, its socket unit and the firewall table as this module sees them, through a Host."""

    def __init__(self, host, proc_root="/proc", check_mode=False):
        self.host = host
        self.run = host.run
        self.read = host.read
        self.proc_root = proc_root
        self.check_mode = check_mode
        self.move = Move(host, KIND, ServicePortError)

    def check(self, argv, step):
        return self.host.check(argv, step, ServicePortError)

    def listeners(self):
        return tcp_listeners(self.proc_root)

    @staticmethod
    def owned_by(units):
        """Whether a listener is the service's: one of its processes runs in one of `units`."""
        return lambda listener: any(process.get("unit") in units for process in listener["processes"])

    def listening(self, units):
        """[(address text, port)] of the TCP sockets held by processes of `units`."""
        return listening_of(self.listeners(), self.owned_by(units))

    def socket_listens(self, socket_unit):
        rc, out, err = self.run(["systemctl", "show", socket_unit, "--property=Listen", "--property=LoadState"])
        if rc != 0 or "LoadState=loaded" not in out:
            raise ServicePortError("socket_unit: %s is not a loaded unit on this host (%s)"
                                   % (socket_unit, (err or out).strip()))
        return parse_listen_property(out)


def plan(host, params):
    """What moving the service would change; reads only."""
    service, socket_unit, port = params["service"], params["socket_unit"], params["port"]
    units = [service] + ([socket_unit] if socket_unit else [])
    warnings = []
    try:
        warnings.extend(host.move.engine.refuse_if_pending("plan", check_mode=True))
    except ChangePending as exc:
        if not host.check_mode:
            raise
        warnings.append("a real run would refuse now: %s" % exc)
    scanned = host.listeners()
    listening = listening_of(scanned, host.owned_by(units))
    ports = sorted(set(item for _address, item in listening))
    old = params["previous_port"]
    if old is None:
        moved = [item for item in ports if item != port]
        if len(moved) > 1:
            raise ServicePortError("previous_port: %s listens on ports %s; say which one moves"
                                   % (service, ", ".join(str(item) for item in moved)))
        old = moved[0] if moved else None
    holders = port_holders_of(scanned, port, host.owned_by(units))
    if holders:
        raise ServicePortError("plan: port %d/tcp is already taken by %s (nothing was changed)"
                               % (port, "; ".join(holders)))
    edits = {}
    if params["path"]:
        text = host.read(params["path"])
        if text is None:
            raise ServicePortError("path: %s does not exist on the host" % params["path"])
        new_text, _count = edit_config(text, params["regexp"], params["line"], params["path"])
        if new_text != text:
            edits[params["path"]] = new_text
    else:
        listens = host.socket_listens(socket_unit)
        stream_ports = [stream_port(address) for address, kind in listens if kind == "Stream"]
        if stream_ports != [port] * len(stream_ports) or not stream_ports:
            moved_ports = [item for item in stream_ports if item is not None and item != port]
            text = socket_drop_in(socket_listens(listens, [port], moved_ports),
                                  header="# Managed by %s: the port(s) %s listens on." % (OWNER, socket_unit))
            drop_in = socket_drop_in_path(socket_unit)
            if host.read(drop_in) != text:
                edits[drop_in] = text
    firewall = {"managed": False, "before": None, "final": None, "moved": 0}
    if old is not None and old != port:
        firewall = plan_firewall(host.move.nft, [old], port, params["manage_firewall"], warnings)
        if params["manage_firewall"] and not firewall["managed"]:
            raise ServicePortError("manage_firewall: true, but the host has no Portcullis firewall table")
    changed = bool(edits) or bool(firewall["final"]) or ports != [port]
    diff = [file_diff(path, host.read(path), text) for path, text in sorted(edits.items())]
    if firewall["final"]:
        diff.append(firewall_diff(firewall))
    return {"changed": changed, "port": port, "previous_port": old, "listening_before": [a for a, _p in listening],
            "firewall": {"managed": firewall["managed"], "rules_moved": firewall["moved"],
                         "backend": firewall.get("backend") or ("nftables" if firewall["managed"] else None)},
            "warnings": warnings, "diff": diff, "_plan": {"edits": edits, "firewall": firewall, "units": units}}


def restart_commands(params):
    if params["socket_unit"]:
        return restart_sequence(params["service"], params["socket_unit"])
    return restart_sequence(params["service"], verb="reload" if params["restart"] == "reloaded" else "restart")


def apply(host, params):
    """Arm the rollback, write the configuration, move the firewall rule, restart, wait for the new port."""
    with host.move.starting("apply") as token:
        result = plan(host, params)
        steps = result.pop("_plan")
        if not result["changed"]:
            return result
        firewall = steps["firewall"]
        undo = restart_sequence(params["service"], params["socket_unit"]) if params["socket_unit"] else \
            restart_sequence(params["service"])  # restart, not reload, on the way back: it may have died
        host.move.arm(token, "%s to port %d" % (params["service"], params["port"]), sorted(steps["edits"]),
                      params["confirm_timeout"], firewall, undo, [["systemctl", "daemon-reload"]],
                      data={"units": steps["units"], "previous_port": result["previous_port"]})
        step = "apply: writing %s" % ", ".join(sorted(steps["edits"]))
        try:
            write_edits(host.host, steps["edits"])
            if params["validate"]:
                step = "apply: validating the new configuration"
                host.check(params["validate"], step)
            step = "apply: opening port %d in the Portcullis firewall" % params["port"]
            if firewall["final"]:
                host.move.set_firewall(firewall["final"])
            step = "apply: restarting %s" % params["service"]
            for command in restart_commands(params):
                host.check(command, step)
            step = "apply: waiting for %s to listen on port %d" % (params["service"], params["port"])
            gone = [result["previous_port"]] if result["previous_port"] not in (None, params["port"]) else []
            result["listening_after"] = wait_until_listening(lambda: host.listening(steps["units"]),
                                                             params["service"], [params["port"]], gone, step)
        except (PortcullisError, OSError) as exc:
            raise host.move.failed(token, step, exc)
        result["token"] = token
        return result


def commit(host, token):
    return host.move.commit(token)


def rollback(host, token):
    data, ended = host.move.rollback(token)
    if ended["committed"]:
        return ended
    wanted = [data["previous_port"]] if data["previous_port"] else []
    listening = wait_until_listening(lambda: host.listening(data["units"]), "the service", wanted, [],
                                     "rollback: waiting for the service on its previous port")
    return dict(ended, listening_after=listening)
