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

import os
import re

from ansible_collections.portcullis.hardening.plugins.module_utils._firewall import (
    FirewallError,
    Host as FirewallHost,
    STATE_FILE as FIREWALL_STATE,
    apply_table,
    persist,
    persistence_plan,
    read_file,
    write_file,
)
from ansible_collections.portcullis.hardening.plugins.module_utils._listeners import discover
from ansible_collections.portcullis.hardening.plugins.module_utils._nftables import (
    PERSIST_PATH as FIREWALL_PERSIST,
    move_tcp_port,
    rollback_script as firewall_rollback_script,
    tcp_rules_opening,
)
from ansible_collections.portcullis.hardening.plugins.module_utils._ssh_port import (
    SshPortError,
    address_text,
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
    refuse_if_pending,
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


class ServiceHost:
    def __init__(self, run, read=read_file, proc_root="/proc"):
        self.run = run
        self.read = read
        self.proc_root = proc_root
        self.firewall = FirewallHost(run)

    def check(self, argv, step):
        rc, out, err = self.run(argv)
        if rc != 0:
            raise ServicePortError("%s failed (%s, rc=%d): %s" % (step, " ".join(argv), rc, (err or out).strip()))
        return out

    def listening(self, units):
        """[(address text, port)] of the TCP sockets held by processes of `units`."""
        found = []
        for listener in discover(proc_root=self.proc_root, protocols=["tcp"]).listeners:
            if any(process.get("unit") in units for process in listener["processes"]):
                found.append((address_text(listener), listener["port"]))
        return sorted(found)

    def holders(self, port, units):
        held = []
        for listener in discover(proc_root=self.proc_root, protocols=["tcp"]).listeners:
            if listener["port"] == port and not any(process.get("unit") in units for process in listener["processes"]):
                owners = ", ".join("%s[%d]" % (process["name"], process["pid"]) for process in listener["processes"])
                held.append("%s on %s" % (owners or "a process Portcullis cannot see", address_text(listener)))
        return held

    def socket_listens(self, socket_unit):
        rc, out, err = self.run(["systemctl", "show", socket_unit, "--property=Listen", "--property=LoadState"])
        if rc != 0 or "LoadState=loaded" not in out:
            raise ServicePortError("socket_unit: %s is not a loaded unit on this host (%s)"
                                   % (socket_unit, (err or out).strip()))
        return parse_listen_property(out)


def _diff(path, before, after):
    return {"before_header": path, "after_header": path, "before": before or "", "after": after or ""}


def plan(host, params):
    """What moving the service would change; reads only."""
    service, socket_unit, port = params["service"], params["socket_unit"], params["port"]
    units = [service] + ([socket_unit] if socket_unit else [])
    refuse_if_pending(KIND, host.run)
    listening = host.listening(units)
    ports = sorted(set(item for _address, item in listening))
    old = params["previous_port"]
    if old is None:
        moved = [item for item in ports if item != port]
        if len(moved) > 1:
            raise ServicePortError("previous_port: %s listens on ports %s; say which one moves"
                                   % (service, ", ".join(str(item) for item in moved)))
        old = moved[0] if moved else None
    holders = host.holders(port, units)
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
    diff = [_diff(path, host.read(path), text) for path, text in sorted(edits.items())]
    if firewall["final"]:
        diff.append(_diff("nft list table inet portcullis", firewall["before"], firewall["final"]))
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
    commands = []
    if firewall["final"]:
        firewall_script = os.path.join(transaction.directory, "firewall-rollback.nft")
        commands.append(["nft", "-f", firewall_script])
    undo_restart = restart_commands(params)
    if undo_restart[-1][1] == "reload":
        undo_restart[-1] = ["systemctl", "restart", params["service"]]
    commands.extend(undo_restart)
    transaction.begin(paths, commands, params["confirm_timeout"], data={
        "firewall_final": firewall["final"], "units": steps["units"], "previous_port": result["previous_port"]})
    if firewall["final"]:
        write_file(firewall_script, firewall_rollback_script(firewall["before"]), mode=0o600)
    step = "apply: writing %s" % ", ".join(sorted(steps["edits"]))
    try:
        for path, text in sorted(steps["edits"].items()):
            write_file(path, text, mode=_mode(path))
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
        try:
            transaction.rollback_now()
            after = "the previous configuration was restored"
        except TransactionError as rollback_exc:
            after = "restoring the previous configuration ALSO failed: %s" % rollback_exc
        raise ServicePortError("%s failed: %s; %s" % (step, str(exc).strip(), after))
    result["token"] = token
    return result


def _mode(path):
    try:
        return os.stat(path).st_mode & 0o7777
    except FileNotFoundError:
        return 0o644


def commit(host, token):
    transaction = Transaction(KIND, token, host.run)
    data = transaction.manifest()["data"]
    transaction.commit()
    persisted = {}
    if data.get("firewall_final") and os.path.exists(FIREWALL_PERSIST):
        persisted = persistence_plan(data["firewall_final"], host.firewall)
        persist(data["firewall_final"], host.firewall, persisted)
    return {"changed": True, "committed": True, "firewall_persistence": persisted}


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
