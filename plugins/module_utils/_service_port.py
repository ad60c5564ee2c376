# Copyright (c) Portcullis contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Host side of moving a service (not sshd) to another port: plan, apply, commit, rollback.

The port is set either by a line of a configuration file (found by a regular expression) or by a systemd
socket unit's ListenStream. apply() runs inside a Transaction, like ssh_port: the host restores the file, the
socket drop-in and the firewall table and restarts the service unless the controller, having reached the
new port over TCP, commits in time.

Private to the collection. Commands go through one `run(argv) -> (rc, stdout, stderr)` callable.
"""

from __future__ import annotations

import re

from ansible_collections.portcullis.hardening.plugins.module_utils._firewall import (
    CommandHost,
    FirewallError,
    Host as FirewallHost,
    STATE_FILE as FIREWALL_STATE,
    apply_table,
    read_file,
)
from ansible_collections.portcullis.hardening.plugins.module_utils._listeners import discover
from ansible_collections.portcullis.hardening.plugins.module_utils._nftables import (
    move_tcp_port,
    tcp_rules_opening,
)
from ansible_collections.portcullis.hardening.plugins.module_utils._ssh_port import (
    SshPortError,
    listening_of,
    port_holders_of,
    wait_until_listening,
)
from ansible_collections.portcullis.hardening.plugins.module_utils._sshd import (
    parse_listen_property,
    socket_drop_in,
    socket_listens,
    stream_port,
)
from ansible_collections.portcullis.hardening.plugins.module_utils._transaction import (
    Transaction,
    TransactionError,
    clear_stale,
    commit_with_firewall,
    file_diff,
    refuse_if_pending,
    write_edits,
)

KIND = "service-port"
OWNER = "portcullis.hardening.service_port"
STEPS = ("plan", "apply", "commit", "rollback")


class ServicePortError(Exception):
    """A step that failed; the message names the step and what the host looks like now."""


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


class ServiceHost(CommandHost):
    """The service's listeners, its socket unit and the firewall table as this module sees them."""

    error = ServicePortError

    def __init__(self, run, read=read_file, proc_root="/proc"):
        super().__init__(run)
        self.read = read
        self.proc_root = proc_root
        self.firewall = FirewallHost(run)

    def listeners(self):
        return discover(proc_root=self.proc_root, protocols=["tcp"]).listeners

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
    refuse_if_pending(KIND, host.run)
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
    firewall = {"managed": False, "before": None, "final": None}
    if params["manage_firewall"] is not False and old is not None and old != port:
        live_text, _normal = host.firewall.live_table()
        if live_text is not None:
            # Only rules that open the old port move; when none does, the new port stays closed too.
            final, moved_rules = (move_tcp_port(live_text, [old], port, keep_old=False)
                                  if tcp_rules_opening(live_text, old) else (live_text, 0))
            firewall.update(managed=True, before=live_text, rules_moved=moved_rules)
            if moved_rules and final != live_text:
                firewall["final"] = final
        elif params["manage_firewall"]:
            raise ServicePortError("manage_firewall: true, but the host has no Portcullis firewall table")
    changed = bool(edits) or bool(firewall["final"]) or ports != [port]
    diff = [file_diff(path, host.read(path), text) for path, text in sorted(edits.items())]
    if firewall["final"]:
        diff.append(file_diff("nft list table inet portcullis", firewall["before"], firewall["final"]))
    return {"changed": changed, "port": port, "previous_port": old, "listening_before": [a for a, _p in listening],
            "firewall": {"managed": firewall["managed"], "rules_moved": firewall.get("rules_moved", 0)},
            "diff": diff, "_plan": {"edits": edits, "firewall": firewall, "units": units}}


def restart_commands(params):
    service, socket_unit = params["service"], params["socket_unit"]
    if socket_unit:
        return [["systemctl", "daemon-reload"], ["systemctl", "stop", socket_unit], ["systemctl", "stop", service],
                ["systemctl", "start", socket_unit], ["systemctl", "start", service]]
    verb = "reload" if params["restart"] == "reloaded" else "restart"
    return [["systemctl", "daemon-reload"], ["systemctl", verb, service]]


def apply(host, params, token):
    result = plan(host, params)
    steps = result.pop("_plan")
    if not result["changed"]:
        return result
    clear_stale(KIND, host.run)
    transaction = Transaction(KIND, token, host.run)
    firewall = steps["firewall"]
    paths = sorted(steps["edits"]) + ([FIREWALL_STATE] if firewall["final"] else [])
    commands, files = [], {}
    if firewall["final"]:
        files, restore = transaction.firewall_restore(firewall["before"])
        commands.append(restore)
    undo_restart = restart_commands(params)
    if undo_restart[-1][1] == "reload":
        undo_restart[-1] = ["systemctl", "restart", params["service"]]
    commands.extend(undo_restart)
    transaction.begin(paths, commands, params["confirm_timeout"], files=files, data={
        "firewall_final": firewall["final"], "units": steps["units"], "previous_port": result["previous_port"]})
    step = "apply: writing %s" % ", ".join(sorted(steps["edits"]))
    try:
        write_edits(steps["edits"])
        if params["validate"]:
            step = "apply: validating the new configuration"
            host.check(params["validate"], step)
        step = "apply: opening port %d in the Portcullis firewall" % params["port"]
        if firewall["final"]:
            apply_table(firewall["final"], host.firewall, firewall["before"], 0, token)
        step = "apply: restarting %s" % params["service"]
        for command in restart_commands(params):
            host.check(command, step)
        step = "apply: waiting for %s to listen on port %d" % (params["service"], params["port"])
        gone = [result["previous_port"]] if result["previous_port"] not in (None, params["port"]) else []
        result["listening_after"] = wait_until_listening(lambda: host.listening(steps["units"]), params["service"],
                                                         [params["port"]], gone, step)
    except (ServicePortError, SshPortError, FirewallError, TransactionError, OSError) as exc:
        raise ServicePortError(transaction.failed(step, exc))
    result["token"] = token
    return result


def commit(host, token):
    return commit_with_firewall(Transaction(KIND, token, host.run), host.firewall)


def rollback(host, token):
    transaction = Transaction(KIND, token, host.run)
    data = transaction.manifest()["data"]
    if not transaction.rolled_back():
        transaction.rollback_now()
    wanted = [data["previous_port"]] if data["previous_port"] else []
    listening = wait_until_listening(lambda: host.listening(data["units"]), "the service", wanted, [],
                                     "rollback: waiting for the service on its previous port")
    transaction.forget()
    return {"changed": True, "rolled_back": True, "listening_after": listening}
