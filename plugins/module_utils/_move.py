# Copyright (c) Portcullis contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The move pipeline that sshd (_ssh_port) and any other service (_service_port) share: who listens where, the
firewall rules that follow the port, and arming, committing and rolling back a move through the change engine.

A move is armed once (every file it may write backed up, the firewall's previous table saved), applied in one or
more phases, proven from the controller over new connections, then committed - persisting the firewall while
still armed - or rolled back. Private to the collection.
"""

from __future__ import annotations

import contextlib
import shlex
import time

from ansible_collections.portcullis.hardening.plugins.module_utils._backends import backend_for, choose
from ansible_collections.portcullis.hardening.plugins.module_utils._firewall import (
    FirewallError,
    Nftables,
    PERSIST_FILE,
    persist,
    persisted_paths,
    persistence_plan,
    persistence_summary,
    record_live,
    rollback_files,
    undo_commands,
)
from ansible_collections.portcullis.hardening.plugins.module_utils._host import PortcullisError
from ansible_collections.portcullis.hardening.plugins.module_utils._listeners import discover
from ansible_collections.portcullis.hardening.plugins.module_utils._nftables import (
    apply_script,
    move_tcp_port,
    tcp_rules_opening,
)
from ansible_collections.portcullis.hardening.plugins.module_utils._procnet import endpoint_text
from ansible_collections.portcullis.hardening.plugins.module_utils._text import printable
from ansible_collections.portcullis.hardening.plugins.module_utils._transaction import Engine, file_diff, new_token

# How long a daemon may take to listen as expected after a reload or restart.
LISTEN_WAIT_SECONDS = 15
LISTEN_POLL_SECONDS = 0.25


class MoveError(PortcullisError):
    """A step of a move that failed; the message names the step and what the host looks like now."""


def listening_of(listeners, owns):
    """[(address text, port)] of the listeners that `owns(listener)` says are the service's."""
    return sorted((endpoint_text(listener["address"], listener["port"]), listener["port"])
                  for listener in listeners if owns(listener))


def port_holders_of(listeners, port, owns):
    """Processes of listeners on `port` that `owns(listener)` does not claim: ["name[pid] on address"]."""
    held = []
    for listener in listeners:
        if listener["port"] != port or owns(listener):
            continue
        owners = ", ".join("%s[%d]" % (printable(process["name"]), process["pid"])
                           for process in listener["processes"])
        held.append("%s on %s" % (owners or "a process Portcullis cannot see",
                                  endpoint_text(listener["address"], listener["port"])))
    return held


def tcp_listeners(proc_root="/proc"):
    return discover(proc_root=proc_root, protocols=["tcp"]).listeners


def wait_until_listening(get_listening, what, wanted_ports, gone_ports, step, wanted_addresses=(), sleep=time.sleep):
    """Poll get_listening() -> [(address text, port)] until `what` listens on every wanted port and address and on
    no gone port; return the addresses. A daemon binds one address after the other after a reload or a restart,
    so a first look may be partial; raises MoveError naming the step after LISTEN_WAIT_SECONDS."""
    deadline = time.monotonic() + LISTEN_WAIT_SECONDS
    while True:
        listening = get_listening()
        ports = set(port for _address, port in listening)
        addresses = [address for address, _port in listening]
        missing = sorted(set(wanted_addresses) - set(addresses))
        if set(wanted_ports) <= ports and not ports & set(gone_ports) and not missing:
            return addresses
        if time.monotonic() > deadline:
            raise MoveError("%s: after %d s %s listens on %s, not on port(s) %s%s%s" % (
                step, LISTEN_WAIT_SECONDS, what, ", ".join(addresses) or "nothing",
                ", ".join(str(port) for port in sorted(wanted_ports)),
                " without %s" % ", ".join(str(port) for port in sorted(gone_ports)) if gone_ports else "",
                " (it no longer listens on %s, as it did before)" % ", ".join(missing) if missing else ""))
        sleep(LISTEN_POLL_SECONDS)


def plan_backend_move(backend, old_ports, port, warnings):
    """The move in an active ufw or firewalld: the new port opened beside the old ones (transition), then the old
    ones closed (final: the transition's commands again - both backends take an existing rule as done - then the
    old rules' removal, so that one step alone is complete too)."""
    moving = backend.move(old_ports, port)
    info = {"managed": True, "backend": backend.name, "before": moving["before"], "transition": None, "final": None,
            "moved": moving["moved"], "undo": moving["undo"], "paths": moving["paths"]}
    if moving["transition"] or moving["final"]:
        info["transition"] = {"backend": backend.name, "commands": moving["transition"]}
        info["final"] = {"backend": backend.name, "commands": moving["transition"] + moving["final"]}
    for rule in moving["remaining"] if info["final"] else []:
        warnings.append("%s still opens an old port after the move, through `%s`, which this module does not edit; "
                        "update the allowlist and run the firewall" % (backend.name, rule))
    return info


def firewall_diff(firewall):
    """The move's firewall change, for --diff: the table (nftables), or the backend's rules and the commands that
    move them (ufw, firewalld)."""
    if not firewall.get("backend"):
        return file_diff("nft list table inet portcullis", firewall["before"], firewall["final"])
    commands = "".join("# %s\n" % shlex.join(argv) for argv in firewall["final"]["commands"])
    return file_diff(firewall["backend"], firewall["before"], firewall["before"] + "# the move runs:\n" + commands)


def plan_firewall(nft, old_ports, port, wanted, warnings):
    """The Portcullis table with the new port opened beside the old ones (transition) and the old ones closed
    (final). `wanted` is manage_firewall: None (when there is a table), True (must), False (never). With an active
    ufw or firewalld, the move happens there instead (plan_backend_move)."""
    info = {"managed": False, "before": None, "transition": None, "final": None, "moved": 0}
    if wanted is False:
        return info
    name, _why = choose(nft.host, "auto")
    if name != "nftables":
        return plan_backend_move(backend_for(name, nft.host), old_ports, port, warnings)
    try:
        live_text, _normal = nft.live_table()
    except FirewallError as exc:
        if wanted:
            raise MoveError("plan: manage_firewall=true, but %s" % exc)
        return info
    if live_text is None:
        if wanted:
            warnings.append("manage_firewall=true, but the host has no Portcullis firewall table "
                            "(portcullis.hardening.firewall): there is no firewall rule to move")
        return info
    info.update(managed=True, before=live_text)
    opening = [old for old in old_ports if tcp_rules_opening(live_text, old)]
    if not opening:
        # No rule opens an old port: the new port stays as the table has it (closed, or opened already).
        return info
    try:
        transition, info["moved"] = move_tcp_port(live_text, opening, port, keep_old=True)
        final, _moved = move_tcp_port(live_text, opening, port, keep_old=False)
    except ValueError as exc:
        raise MoveError("plan: cannot open port %d in the Portcullis firewall: %s" % (port, exc))
    if final != live_text:
        info.update(transition=transition, final=final)
    for old in opening:
        for rule in tcp_rules_opening(final, old):
            warnings.append("the firewall still opens the old port %d/tcp after the move, through a rule this "
                            "module does not edit (%s); update the allowlist and run the firewall" % (old, rule))
    return info


class Move:
    """One move's way through the change engine, on one Host."""

    def __init__(self, host, kind, error=MoveError):
        self.host = host
        self.kind = kind
        self.error = error  # the adapter's own MoveError subclass
        self.engine = Engine(host)
        self.nft = Nftables(host)

    def locked(self, step):
        return self.engine.locked(step)

    @contextlib.contextmanager
    def starting(self, step):
        """The first changing step of a move: under the host lock, refused while another change is pending;
        yields the new change's token."""
        with self.locked(step):
            self.engine.refuse_if_pending(step)
            yield new_token()

    def arm(self, token, description, paths, timeout, firewall, live_commands, boot_commands=(), data=None):
        """Arm the rollback: the files the move writes, the firewall table when the move changes it (and the files
        persisting it, written at commit), then the commands that undo the rest."""
        paths = list(paths)
        live = []
        boot = list(boot_commands)
        files = {}
        if firewall["final"] and firewall.get("backend"):
            paths += firewall["paths"]
            live += firewall["undo"]  # the files back first, then the backend's live rules
            data = dict(data or {}, firewall_final=firewall["final"], firewall_persisted=False)
        elif firewall["final"]:
            persisted = self.host.exists(PERSIST_FILE)
            paths += persisted_paths(self.nft, persisted)
            files = rollback_files(firewall["before"])
            undo_live, undo_boot = undo_commands(self.nft, self.engine.armed_file("firewall-rollback.nft"))
            live += undo_live[:1]  # the previous table; the service's state stays as it is (not enabled by a move)
            data = dict(data or {}, firewall_final=firewall["final"], firewall_persisted=persisted)
        live += list(live_commands)
        return self.engine.arm(self.kind, token, description, sorted(set(paths)), timeout, live_commands=live,
                               boot_commands=boot, files=files, data=data)

    def set_firewall(self, step):
        """Put a step live (the rollback is armed): the Portcullis table's text, or a backend's commands."""
        if isinstance(step, dict):
            backend_for(step["backend"], self.host).apply(step, "moving the port in %s" % step["backend"])
            return
        self.nft.load(apply_script(step), "setting the Portcullis table")
        record_live(step, self.nft)

    def require(self, token, step):
        return self.engine.require(token, self.kind, step)

    def failed(self, token, step, exc):
        """MoveError for a step that failed after arming: the move is rolled back now, and the message says what
        the host is in."""
        try:
            outcome = self.engine.rollback_now(token, self.kind, step)
        except PortcullisError as rollback_exc:
            outcome = "rolling back ALSO failed: %s" % rollback_exc
        error = self.error("%s failed: %s; %s" % (step, str(exc).strip(), outcome))
        error.details = {"rolled_back": True, "host_state": "the previous configuration"}
        return error

    def commit(self, token):
        """Persist the moved firewall rules (when the table was persisted before) while still armed, then commit."""
        def finish(change):
            if not change.data.get("firewall_final") or not change.data.get("firewall_persisted"):
                return {}
            persistence = persistence_plan(change.data["firewall_final"], self.nft)
            persistence["service"] = False  # a move persists the table where it was; it enables nothing
            persist(change.data["firewall_final"], self.nft, persistence)
            return persistence_summary(persistence)

        with self.locked("commit"):
            persisted = self.engine.commit(token, self.kind, "commit", finish)
        return {"changed": True, "committed": True, "firewall_persistence": persisted}

    def rollback(self, token):
        """Undo the move now: (its data, {changed, rolled_back, committed, outcome}). A move that had been
        committed (the answer to the commit was lost) stays: committed True, nothing undone."""
        with self.locked("rollback"):
            change = self.engine.armed()
            done = self.engine.finished(token)
            if change is not None and change.token == token:
                data = change.data
            elif done is not None:
                data = done.data
            else:
                raise self.error("rollback: change %s is unknown on this host" % token)
            outcome = self.engine.rollback_now(token, self.kind, "rollback")
            done = self.engine.finished(token)
        committed = done is not None and done.claimed_by == "commit"
        return data, {"changed": not committed, "rolled_back": not committed, "committed": committed,
                      "outcome": outcome}
