# Copyright (c) Portcullis contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Which firewall enforces the allowlist on a host, and the ufw and firewalld backends behind one interface.

One host needs one authority: an accept in one netfilter table never overrides a drop in another, so Portcullis
enforces the allowlist in the firewall that already runs (an active ufw, a running firewalld), or else in its own
nftables table (module_utils/_firewall.py). A backend change is a list of commands in that firewall's own words
with the commands that undo it live, and the files it may write; the change engine arms, applies and confirms it
like any other change. Private to the collection.
"""

from __future__ import annotations

import shlex

from ansible_collections.portcullis.hardening.plugins.module_utils import _firewalld as firewalld
from ansible_collections.portcullis.hardening.plugins.module_utils import _ufw as ufw
from ansible_collections.portcullis.hardening.plugins.module_utils._firewall import (
    STATE_FILE,
    FirewallError,
    Nftables,
    apply_armed,
    armed_result,
)
from ansible_collections.portcullis.hardening.plugins.module_utils._systemd import is_active
from ansible_collections.portcullis.hardening.plugins.module_utils._transaction import new_token

BACKENDS = ("nftables", "ufw", "firewalld")


def detect(host):
    """{"ufw": active, "firewalld": running} on the host."""
    ufw_host = ufw.Ufw(host)
    return {"ufw": ufw_host.installed() and ufw_host.active(), "firewalld": is_active(host, "firewalld.service")}


def choose(host, requested, absent=False):
    """(backend name, why) for `requested` (auto, nftables, ufw, firewalld); FirewallError, before anything changes,
    when it would fight another active firewall or is not there."""
    active = detect(host)
    if active["ufw"] and active["firewalld"] and not absent:
        raise FirewallError("both ufw and firewalld are active on this host: their rules block each other (one "
                            "host needs one authority); disable one of them and run again (nothing was changed)")
    running = [name for name in ("ufw", "firewalld") if active[name]]
    if requested == "auto":
        if running:
            return running[0], "%s is active on this host (backend: auto)" % running[0]
        return "nftables", "neither ufw nor firewalld is active on this host (backend: auto)"
    others = [name for name in running if name != requested]
    if others and not absent:
        raise FirewallError("backend: %s, but %s is active on this host: a second firewall would not open what %s "
                            "drops (one host needs one authority); use backend: auto, or disable %s (nothing was "
                            "changed)" % (requested, others[0], others[0], others[0]))
    if requested == "ufw" and not ufw.Ufw(host).installed():
        raise FirewallError("backend: ufw, but ufw is not installed on this host (package ufw); nothing was changed")
    if requested == "firewalld" and not active["firewalld"] and not absent:
        raise FirewallError("backend: firewalld, but firewalld is not running on this host; start it (systemctl "
                            "enable --now firewalld) or use backend: auto (nothing was changed)")
    why = "backend: %s was asked for" % requested
    if requested == "ufw" and not active["ufw"]:
        why += "; ufw is inactive, and is enabled once the allowlist's rules are in"
    return requested, why


def text_of(commands):
    return [shlex.join(argv) for argv in commands]


def _kept_warnings(name, kept, session_port):
    """Warnings for the rules state=absent keeps because they let this connection in (ufw rules, or texts)."""
    texts = [rule.text() if hasattr(rule, "text") else rule for rule in kept]
    return ["%s: `%s` is Portcullis's, but it opens %s/tcp, the port of this connection, and %s stays active: it "
            "stays (remove it yourself once another rule lets you in)" % (name, text, session_port, name)
            for text in texts]


def _filters_opening(rule, openings):
    """Whether an incoming deny or reject rule of ufw matches a port the openings let in."""
    if not rule.incoming or rule.action not in ("deny", "reject"):
        return False
    return any(rule.protocol in (opening.protocol, "any") and opening.low <= high and low <= opening.high
               for opening in openings for low, high in rule.port_ranges())


class UfwBackend:
    """The allowlist in ufw: its incoming rules and default incoming policy."""

    name = "ufw"

    def __init__(self, host):
        self.host = host
        self.ufw = ufw.Ufw(host)
        self.nft = Nftables(host)

    def recorded(self):
        return self.nft.state().get("ufw", {})

    def plan(self, openings, policy, persist):
        if not persist:
            raise FirewallError("persist: false, but ufw writes every rule to /etc/ufw itself: it has no runtime-only "
                                "change; use persist: true with the ufw backend (nothing was changed)")
        state = self.ufw.read()
        self.ufw.check_ipv6(state)
        planned = ufw.plan(state, openings, policy)
        warnings = ["ufw rule `%s` (not Portcullis's) stays and comes first: the allowlisted port it matches is "
                    "allowed but filtered" % rule.text() for rule in state.rules if _filters_opening(rule, openings)]
        record = dict(self.recorded())
        record.setdefault("input_policy_before", state.input_policy)
        record.setdefault("enabled_ufw", not state.active)
        return {"changed": bool(planned["commands"]), "commands": planned["commands"],
                "before": state.listing(), "after": planned["after"].listing(),
                "undo": self.ufw.undo_commands(state), "paths": list(ufw.UFW_FILES), "warnings": warnings,
                "record": record, "removed": [rule.text() for rule in planned["deleted"]]}

    def removal(self, session_port=None):
        state = self.ufw.read()
        planned = ufw.removal_plan(state, self.recorded(), session_port)
        return {"changed": bool(planned["commands"]), "commands": planned["commands"], "before": state.listing(),
                "after": planned["after"].listing(), "undo": self.ufw.undo_commands(state),
                "paths": list(ufw.UFW_FILES), "warnings": _kept_warnings(self.name, planned["kept"], session_port),
                "record": None, "removed": [rule.text() for rule in planned["deleted"]]}

    def apply(self, change, step):
        self.ufw.run_all(change["commands"], step)

    def move(self, old_ports, port):
        state = self.ufw.read()
        transition, final, moved = ufw.move_plan(state, old_ports, port)
        remaining = [rule.text() for old in old_ports for rule in ufw.opening_rules(state, old) if rule not in moved]
        return {"managed": True, "backend": self.name, "before": state.listing(), "transition": transition,
                "final": final, "undo": self.ufw.undo_commands(state), "paths": list(ufw.UFW_FILES),
                "moved": len(moved), "remaining": remaining}


class FirewalldBackend:
    """The allowlist in firewalld: the managed zones' ports, services, rich rules, runtime and permanent."""

    name = "firewalld"

    def __init__(self, host):
        self.host = host
        self.firewalld = firewalld.Firewalld(host)
        self.nft = Nftables(host)

    def recorded(self):
        return self.nft.state().get("firewalld", {}).get("added", {})

    def plan(self, openings, policy, persist):
        state = self.firewalld.read()
        planned = firewalld.plan(state, openings, persist)
        planned["warnings"] += firewalld.target_warnings(state, planned["zones"], policy)
        record = {"added": firewalld.record_added(self.recorded(), planned)}
        removed = [firewalld.element_text(zone, kind, value) for zone, items in sorted(planned["removed"].items())
                   for kind, value in items]
        return {"changed": bool(planned["commands"]), "commands": planned["commands"], "before": planned["before"],
                "after": planned["after"], "undo": planned["undo"], "paths": firewalld.zone_files(planned["zones"]),
                "warnings": planned["warnings"], "record": record, "removed": removed, "zones": planned["zones"]}

    def removal(self, session_port=None):
        state = self.firewalld.read()
        planned = firewalld.removal_plan(state, self.recorded(), session_port)
        return {"changed": bool(planned["commands"]), "commands": planned["commands"], "before": planned["before"],
                "after": planned["after"], "undo": planned["undo"],
                "paths": firewalld.zone_files(sorted(self.recorded())),
                "warnings": _kept_warnings(self.name, planned["kept"], session_port), "record": {"added": {}},
                "removed": planned["removed"]}

    def apply(self, change, step):
        self.firewalld.run_all(change["commands"], step)

    def move(self, old_ports, port):
        state = self.firewalld.read()
        zones, _warnings = firewalld.managed_zones(state)
        moving = firewalld.move_plan(state, old_ports, port)
        remaining = [firewalld.element_text(*item) for old in old_ports
                     for item in firewalld.opening_elements(state, old) if item not in moving["moved"]]
        return {"managed": True, "backend": self.name, "before": moving["before"], "transition": moving["transition"],
                "final": moving["final"], "undo": moving["undo"], "paths": firewalld.zone_files(zones),
                "moved": len(moving["moved"]), "remaining": remaining}


def backend_for(name, host):
    """The ufw or firewalld backend (the nftables one lives in module_utils/_firewall.py)."""
    return {"ufw": UfwBackend, "firewalld": FirewalldBackend}[name](host)


def save_record(nft, name, record):
    """Keep what the backend `name` did in the firewall state file (backed up with the change)."""
    state = nft.state()
    if record is None:
        state.pop(name, None)
    else:
        state[name] = record
    nft.save_state(state)


def backup_paths(change):
    return sorted(set(change["paths"] + [STATE_FILE]))


def enforce(engine, backend, openings, params, result, warnings, kind):
    """Under the host lock: refuse while another change is armed, plan again, arm the rollback (the files the
    backend writes, the commands that undo it live), apply, record. `result` gets the rollback to confirm."""
    step = "applying the allowlist with %s" % backend.name
    with engine.locked("firewall"):
        warnings.extend(engine.refuse_if_pending("firewall"))
        change = backend.plan(openings, params["policy"], params["persist"])  # again: another run may have changed it
        if not change["changed"]:
            result["changed"] = False
            return result
        if not params["confirm_timeout"]:  # the operator chose no commit-confirm
            backend.apply(change, step)
            save_record(backend.nft, backend.name, change["record"])
            return result
        token = new_token()
        armed = engine.arm(kind, token, "%s rules" % backend.name, backup_paths(change), params["confirm_timeout"],
                           live_commands=change["undo"], boot_commands=[])

        def apply_change():
            backend.apply(change, step)
            save_record(backend.nft, backend.name, change["record"])

        apply_armed(engine, token, kind, apply_change)
        result.update(confirmed=False, rollback=armed_result(armed, params["confirm_timeout"]))
    return result
