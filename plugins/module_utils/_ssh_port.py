# Copyright (c) Portcullis contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Host side of moving sshd to another port: plan, transition (old and new port), finalize, commit, rollback.

The controller (the ssh_port action plugin) drives the steps; between them it opens new SSH connections to
prove the new port works. Every step that changes the host runs inside a Transaction whose timer restores
the previous sshd configuration, ssh.socket drop-in, SELinux label and firewall table if the controller does
not confirm in time.

Private to the collection. Commands go through one `run(argv) -> (rc, stdout, stderr)` callable; files are
read with read(path) and globs expanded with expand(pattern), so tests can drive it.
"""

from __future__ import annotations

import glob
import json
import os
import time

from ansible_collections.portcullis.hardening.plugins.module_utils._firewall import (
    CommandHost,
    FirewallError,
    Host as FirewallHost,
    STATE_FILE as FIREWALL_STATE,
    apply_table,
    read_file,
    write_file,
)
from ansible_collections.portcullis.hardening.plugins.module_utils._listeners import discover
from ansible_collections.portcullis.hardening.plugins.module_utils._nftables import (
    move_tcp_port,
    tcp_rules_opening,
)
from ansible_collections.portcullis.hardening.plugins.module_utils._sshd import (
    SOCKET_DROP_IN,
    SSHD_CONFIG,
    SshdConfigError,
    apply_edits,
    has_own_record,
    parse_listen_property,
    parse_port_range,
    parse_semanage_ports,
    plan_config,
    port_type,
    read_layout,
    selinux_commands,
    selinux_mode,
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

KIND = "ssh-port"
SSHD = "/usr/sbin/sshd"
SOCKET_UNIT = "ssh.socket"
SERVICE_UNITS = ("ssh.service", "sshd.service")
SELINUX_ENFORCE = "/sys/fs/selinux/enforce"
EPHEMERAL_RANGE = "/proc/sys/net/ipv4/ip_local_port_range"
# How long sshd may take to listen as expected after a reload or restart.
LISTEN_WAIT_SECONDS = 15
LISTEN_POLL_SECONDS = 0.25
STEPS = ("plan", "transition", "finalize", "commit", "rollback")


class SshPortError(Exception):
    """A step that failed; the message names the step and what the host looks like now."""


def expand_sorted(pattern):
    return sorted(glob.glob(pattern))


def address_text(listener):
    address = listener["address"]
    return "[%s]:%d" % (address, listener["port"]) if ":" in address else "%s:%d" % (address, listener["port"])


def listening_of(listeners, owns):
    """[(address text, port)] of the listeners that `owns(listener)` says are the service's."""
    return sorted((address_text(listener), listener["port"]) for listener in listeners if owns(listener))


def port_holders_of(listeners, port, owns):
    """Processes of listeners on `port` that `owns(listener)` does not claim: ["name[pid] on address"]."""
    held = []
    for listener in listeners:
        if listener["port"] != port or owns(listener):
            continue
        owners = ", ".join("%s[%d]" % (process["name"], process["pid"]) for process in listener["processes"])
        held.append("%s on %s" % (owners or "a process Portcullis cannot see", address_text(listener)))
    return held


class SshHost(CommandHost):
    """sshd, ssh.socket, SELinux and the firewall table as this module sees them, through one runner."""

    error = SshPortError

    def __init__(self, run, read=read_file, expand=expand_sorted, proc_root="/proc", sleep=time.sleep):
        super().__init__(run)
        self.read = read
        self.expand = expand
        self.proc_root = proc_root
        self.sleep = sleep
        self.firewall = FirewallHost(run)

    def layout(self):
        return read_layout(SSHD_CONFIG, self.read, self.expand)

    def test_config(self, step):
        """`sshd -t` on the configuration as written; /run/sshd is created first (a socket-activated sshd
        that has not run yet has none, and sshd -t refuses to run without it)."""
        if not os.path.isdir("/run/sshd"):
            os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
        rc, out, err = self.run([SSHD, "-t", "-f", SSHD_CONFIG])
        if rc != 0:
            raise SshPortError("%s: sshd -t rejects the configuration (rc=%d): %s"
                               % (step, rc, (err or out).replace("\r", "").strip()))

    def unit_property(self, unit, names):
        argv = ["systemctl", "show", unit] + ["--property=%s" % name for name in names]
        rc, out, _err = self.run(argv)
        values = {}
        if rc == 0:
            for line in out.splitlines():
                key, _sep, value = line.partition("=")
                values.setdefault(key, []).append(value)
        return values

    def socket(self):
        """{active, accept, listens} of ssh.socket; active False when it is not in use."""
        props = self.unit_property(SOCKET_UNIT, ["ActiveState", "Accept", "Listen", "LoadState"])
        active = props.get("ActiveState", [""])[0] == "active" and props.get("LoadState", [""])[0] == "loaded"
        listens = parse_listen_property("\n".join("Listen=" + value for value in props.get("Listen", [])))
        return {"active": active, "accept": props.get("Accept", ["no"])[0] == "yes", "listens": listens}

    def service(self):
        """The unit that runs sshd: ssh.service (Debian, Ubuntu) or sshd.service (Fedora, RHEL, Arch)."""
        for unit in SERVICE_UNITS:
            props = self.unit_property(unit, ["LoadState", "Id"])
            if props.get("LoadState", [""])[0] == "loaded":
                return props.get("Id", [unit])[0] or unit
        raise SshPortError("plan: neither ssh.service nor sshd.service is loaded: is sshd run by systemd?")

    def listeners(self):
        return discover(proc_root=self.proc_root, protocols=["tcp"]).listeners

    @staticmethod
    def is_sshd(listener, socket_ports=()):
        names = set(process["name"] for process in listener["processes"])
        if "sshd" in names:
            return True
        # Under socket activation systemd holds the socket until the first connection starts sshd.
        return names == {"systemd"} and listener["port"] in socket_ports

    def sshd_listening(self, socket_ports=(), listeners=None):
        """Where sshd listens: from `listeners` (one scan of /proc) when given, else from a new scan."""
        return listening_of(self.listeners() if listeners is None else listeners,
                            lambda listener: self.is_sshd(listener, socket_ports))

    def port_holders(self, port, socket_ports=(), listeners=None):
        """Processes other than sshd that listen on `port`/tcp: ["name[pid] on address"]."""
        return port_holders_of(self.listeners() if listeners is None else listeners, port,
                               lambda listener: self.is_sshd(listener, socket_ports))

    def wait_listening(self, wanted_ports, gone_ports, step, socket_ports=(), wanted_addresses=()):
        """Poll /proc until sshd listens on every wanted port and address and on no gone port."""
        return wait_until_listening(lambda: self.sshd_listening(socket_ports), "sshd", wanted_ports, gone_ports,
                                    step, wanted_addresses, self.sleep)

    def selinux(self, port, wanted_setting):
        """{mode, type_before, apply, undo} for labelling `port` ssh_port_t; no commands when not wanted."""
        mode = selinux_mode(self.read(SELINUX_ENFORCE))
        info = {"mode": mode, "type_before": None, "apply": [], "undo": []}
        wanted = wanted_setting == "true" or (wanted_setting == "auto" and mode != "disabled")
        if not wanted:
            return info
        rc, out, err = self.run(["semanage", "port", "-l", "-n"])
        if rc != 0:
            raise SshPortError("plan: selinux=%s but `semanage port -l` failed (rc=%d): %s. Install "
                               "policycoreutils-python-utils (semanage)" % (wanted_setting, rc, (err or out).strip()))
        records = parse_semanage_ports(out)
        info["type_before"] = port_type(records, port)
        info["apply"], info["undo"] = selinux_commands(port, info["type_before"],
                                                       own_record=has_own_record(records, port))
        return info


def wait_until_listening(get_listening, what, wanted_ports, gone_ports, step, wanted_addresses=(), sleep=time.sleep):
    """Poll get_listening() -> [(address text, port)] until `what` listens on every wanted port and address and on
    no gone port; return the addresses. A daemon binds one address after the other after a reload or a restart,
    so a first look may be partial; raises SshPortError naming the step after LISTEN_WAIT_SECONDS."""
    deadline = time.monotonic() + LISTEN_WAIT_SECONDS
    while True:
        listening = get_listening()
        ports = set(port for _address, port in listening)
        addresses = [address for address, _port in listening]
        missing = sorted(set(wanted_addresses) - set(addresses))
        if set(wanted_ports) <= ports and not ports & set(gone_ports) and not missing:
            return addresses
        if time.monotonic() > deadline:
            raise SshPortError("%s: after %d s %s listens on %s, not on port(s) %s%s%s" % (
                step, LISTEN_WAIT_SECONDS, what, ", ".join(addresses) or "nothing",
                ", ".join(str(port) for port in sorted(wanted_ports)),
                " without %s" % ", ".join(str(port) for port in sorted(gone_ports)) if gone_ports else "",
                " (it no longer listens on %s, as it did before)" % ", ".join(missing) if missing else ""))
        sleep(LISTEN_POLL_SECONDS)


def restart_commands(socket, service):
    """How to make sshd take a new configuration: argument lists, run in order."""
    if socket["active"]:
        if socket["accept"]:  # one sshd per connection: only the socket listens
            return [["systemctl", "daemon-reload"], ["systemctl", "restart", SOCKET_UNIT]]
        # systemd refuses to restart the socket while ssh.service runs: stop both, start both. The service's
        # KillMode=process keeps open sessions (this one included) alive.
        return [["systemctl", "daemon-reload"], ["systemctl", "stop", SOCKET_UNIT], ["systemctl", "stop", service],
                ["systemctl", "start", SOCKET_UNIT], ["systemctl", "start", service]]
    return [["systemctl", "reload", service]]


def rollback_restart_commands(socket, service):
    """Restart rather than reload on the way back: sshd may have died on the way forward."""
    if socket["active"]:
        return restart_commands(socket, service)
    return [["systemctl", "daemon-reload"], ["systemctl", "restart", service]]


def plan(host, params):
    """Read everything, change nothing: what moving sshd to params["port"] would do (the `plan` step)."""
    port = params["port"]
    warnings = []
    refuse_if_pending(KIND, host.run)
    layout = host.layout()
    host.test_config("plan (on the configuration as it is, before any change)")
    socket = host.socket()
    service = host.service()
    socket_ports = sorted(set(stream_port(address) for address, kind in socket["listens"] if kind == "Stream")
                          - {None}) if socket["active"] else []
    scanned = host.listeners()
    listening = host.sshd_listening(socket_ports, scanned)
    listening_ports = sorted(set(item_port for _address, item_port in listening))
    configured = socket_ports if socket["active"] else layout.ports()
    moved = sorted(set(configured + listening_ports) - {port})

    holders = host.port_holders(port, socket_ports, scanned)
    if holders:
        raise SshPortError("plan: port %d/tcp is already taken by %s; choose another port (nothing was changed)"
                           % (port, "; ".join(holders)))
    ephemeral = parse_port_range(host.read(EPHEMERAL_RANGE))
    if ephemeral and ephemeral[0] <= port <= ephemeral[1]:
        warnings.append("port %d is inside the kernel's ephemeral port range %d-%d "
                        "(net.ipv4.ip_local_port_range): an outgoing connection may hold it when sshd starts (at boot, "
                        "after a restart), and sshd could not listen there; choose a port below %d, or reserve it in "
                        "net.ipv4.ip_local_reserved_ports"
                        % ((port,) + ephemeral + (ephemeral[0],)))

    addresses = params.get("listen_addresses")
    final_edits = transition_edits = {}
    config_done = layout.ports() == [port] and (addresses is None or sorted(
        address for _line, address, _p, _r in layout.listen_addresses()) == sorted(str(a) for a in addresses))
    if not config_done:
        final_edits = plan_config(layout, [port], addresses, moved)
        transition_edits = plan_config(layout, sorted(set(layout.ports()) | {port}), addresses, moved)
        after = apply_edits(layout, final_edits)
        if after.ports() != [port]:
            raise SshPortError("plan: the edited configuration would set ports %s, not %d: %s" % (
                after.ports(), port, final_edits))

    socket_final = socket_transition = None
    if socket["active"] and (socket_ports != [port] or addresses is not None):
        current = host.read(SOCKET_DROP_IN)
        socket_final = socket_drop_in(socket_listens(socket["listens"], [port], moved, addresses))
        socket_transition = socket_drop_in(socket_listens(socket["listens"], sorted(set(moved) | {port}),
                                                          moved, addresses))
        if socket_final == current:
            socket_final = socket_transition = None

    firewall = plan_firewall(host, params, moved, port, warnings)
    selinux = host.selinux(port, params["selinux"])
    needs_restart = bool(final_edits or socket_final) or listening_ports != [port]
    changed = needs_restart or bool(firewall["final"]) or bool(selinux["apply"])

    diff = [file_diff(path, layout.texts.get(path), text) for path, text in sorted(final_edits.items())]
    if socket_final:
        diff.append(file_diff(SOCKET_DROP_IN, host.read(SOCKET_DROP_IN), socket_final))
    if firewall["final"]:
        diff.append(file_diff("nft list table inet portcullis", firewall["before"], firewall["final"]))
    for command in selinux["apply"]:
        diff.append(file_diff("SELinux port label", "%d/tcp: %s\n" % (port, selinux["type_before"] or "(none)"),
                              " ".join(command) + "\n"))
    return {
        "changed": changed,
        "port": port,
        "ports_before": listening_ports or configured,
        "moved_ports": moved,
        "socket_activated": socket["active"],
        "service": service,
        "listening_before": [address for address, _port in listening],
        "selinux": {"mode": selinux["mode"], "type_before": selinux["type_before"], "commands": selinux["apply"]},
        "firewall": {"managed": firewall["managed"], "rules_moved": firewall["moved"]},
        "warnings": warnings,
        "diff": diff,
        # What the later steps write, computed once here.
        "_plan": {"final_edits": final_edits, "transition_edits": transition_edits, "socket_final": socket_final,
                  "socket_transition": socket_transition, "firewall": firewall, "selinux": selinux,
                  "socket": socket, "service": service, "socket_ports": socket_ports},
    }


def plan_firewall(host, params, moved, port, warnings):
    """The Portcullis table with the new port opened (transition) and the old one closed (final)."""
    info = {"managed": False, "before": None, "transition": None, "final": None, "moved": 0}
    wanted = params.get("manage_firewall")
    if wanted is False:
        return info
    try:
        live_text, _normal = host.firewall.live_table()
    except FirewallError as exc:
        if wanted:
            raise SshPortError("plan: manage_firewall=true, but %s" % exc)
        return info
    if live_text is None:
        if wanted:
            warnings.append("manage_firewall=true, but the host has no Portcullis firewall table "
                            "(portcullis.hardening.firewall): there is no firewall rule to move")
        return info
    info.update(managed=True, before=live_text)
    if not moved and tcp_rules_opening(live_text, port):
        return info
    try:
        transition, info["moved"] = move_tcp_port(live_text, moved or [port], port, keep_old=True)
        final, _moved = move_tcp_port(live_text, moved or [port], port, keep_old=False)
    except ValueError as exc:
        raise SshPortError("plan: cannot open port %d in the Portcullis firewall: %s" % (port, exc))
    if final != live_text:
        info.update(transition=transition, final=final)
    for old in moved:
        for rule in tcp_rules_opening(final, old):
            warnings.append("the firewall still opens the old port %d/tcp after the move, through a rule this "
                            "module does not edit (%s); update the allowlist and run the firewall" % (old, rule))
    return info


def _touched_paths(steps):
    paths = set()
    for edits in (steps["final_edits"], steps["transition_edits"]):
        paths.update(edits)
    if steps["socket_final"]:
        paths.add(SOCKET_DROP_IN)
    if steps["firewall"]["final"]:
        paths.add(FIREWALL_STATE)
    return sorted(paths)


# How the two phases that reconfigure sshd name their steps: (ports, firewall action, where sshd then listens).
PHASES = {
    "transition": ("old and new port", "opening the new port", "the old and the new port"),
    "finalize": ("new port only", "closing the old port", "the new port only, on every address it listened on before"),
}


def _reconfigure(host, transaction, phase, edits, socket_text, firewall_text, firewall_before, restart, wait,
                 first=()):
    """One phase of the move, step by step: run `first` (SELinux labelling), write the sshd configuration and
    validate it, write the ssh.socket drop-in, set the firewall table, reload sshd, and return wait(step).

    When a step fails the host rolls back at once, and SshPortError names the step.
    """
    ports, firewall_action, listening = PHASES[phase]
    step = "%s: labelling the port for SELinux" % phase
    try:
        for command in first:
            host.check(command, step)
        step = "%s: writing the sshd configuration (%s)" % (phase, ports)
        write_edits(edits)
        host.test_config(step)
        if socket_text:
            step = "%s: writing the ssh.socket drop-in (%s)" % (phase, ports)
            write_file(SOCKET_DROP_IN, socket_text)
        step = "%s: %s in the Portcullis firewall" % (phase, firewall_action)
        if firewall_text is not None:
            apply_table(firewall_text, host.firewall, firewall_before, 0, transaction.token)
        step = "%s: reloading sshd" % phase
        for command in restart:
            host.check(command, step)
        step = "%s: waiting for sshd to listen on %s" % (phase, listening)
        return wait(step)
    except (SshPortError, FirewallError, TransactionError, OSError, SshdConfigError) as exc:
        raise SshPortError(transaction.failed(step, exc))


def transition(host, params, token):
    """Listen on the old and the new port, with the host's own rollback armed (the `transition` step)."""
    result = plan(host, params)
    steps = result.pop("_plan")
    if not result["changed"]:
        return result
    clear_stale(KIND, host.run)
    transaction = Transaction(KIND, token, host.run)
    firewall = steps["firewall"]
    commands = [["systemctl", "daemon-reload"]]
    commands.extend(steps["selinux"]["undo"])
    files = {}
    if firewall["final"]:
        files, restore = transaction.firewall_restore(firewall["before"])
        commands.append(restore)
    commands.extend(rollback_restart_commands(steps["socket"], steps["service"]))
    transaction.begin(_touched_paths(steps), commands, params["confirm_timeout"], files=files, data={
        "final_edits": steps["final_edits"], "socket_final": steps["socket_final"],
        "firewall_final": firewall["final"], "firewall_before": firewall["before"],
        "socket": steps["socket"], "service": steps["service"], "socket_ports": steps["socket_ports"],
        "moved": result["moved_ports"], "port": params["port"], "listening_before": result["listening_before"],
        "listen_addresses": None if params.get("listen_addresses") is None else list(params["listen_addresses"]),
    })
    socket_ports = sorted(set(steps["socket_ports"]) | {params["port"]}) if steps["socket"]["active"] else ()
    kept = expected_addresses(result["listening_before"], result["moved_ports"], params["port"],
                              params.get("listen_addresses"))
    result["listening_transition"] = _reconfigure(
        host, transaction, "transition", steps["transition_edits"], steps["socket_transition"],
        firewall["transition"], firewall["before"], restart_commands(steps["socket"], steps["service"]),
        lambda step: host.wait_listening([params["port"]], [], step, socket_ports, kept),
        first=steps["selinux"]["apply"])
    result["token"] = token
    return result


def finalize(host, params, token):
    """Listen on the new port only, and close the old one in the firewall (the `finalize` step).

    Runs over a connection to the new port; the rollback stays armed until commit.
    """
    transaction = Transaction(KIND, token, host.run)
    data = transaction.manifest()["data"]
    if not transaction.pending():
        raise SshPortError(transaction.failed("finalize: writing the sshd configuration (new port only)", SshPortError(
            "the rollback timer %s.timer already fired" % transaction.unit)))
    socket_ports = [data["port"]] if data["socket"]["active"] else ()
    wanted = expected_addresses(data["listening_before"], data["moved"], data["port"], data["listen_addresses"])
    after = _reconfigure(
        host, transaction, "finalize", data["final_edits"], data["socket_final"], data["firewall_final"],
        data["firewall_before"], restart_commands(data["socket"], data["service"]),
        lambda step: host.wait_listening([data["port"]], data["moved"], step, socket_ports, wanted))
    return {"changed": True, "listening_after": after}


def expected_addresses(before, moved, port, listen_addresses):
    """The addresses sshd must listen on with the new port: each address it listened on with a moved port
    (IPv4 and IPv6 alike), unless the operator chose the addresses (listen_addresses)."""
    if listen_addresses is not None:
        return []
    wanted = set()
    for address in before:
        host_part, _sep, old = address.rpartition(":")
        if old.isdigit() and int(old) in moved:
            wanted.add("%s:%d" % (host_part, port))
    return sorted(wanted)


def commit(host, token):
    """Cancel the rollback, persist the firewall table if it is persisted, forget the backups."""
    return commit_with_firewall(Transaction(KIND, token, host.run), host.firewall)


def rollback(host, token):
    transaction = Transaction(KIND, token, host.run)
    data = transaction.manifest()["data"]
    already = transaction.rolled_back()
    if not already:
        transaction.rollback_now()
    socket_ports = data["socket_ports"] if data["socket"]["active"] else ()
    listening = host.wait_listening(data["moved"] or [data["port"]], [], "rollback: waiting for sshd on the old "
                                    "port", socket_ports)
    transaction.forget()
    return {"changed": True, "rolled_back": True, "by_timer": already, "listening_after": listening}


def result_json(result):
    """The module result without the internal plan (the `_plan` key)."""
    return json.loads(json.dumps(dict((key, value) for key, value in result.items() if key != "_plan")))
