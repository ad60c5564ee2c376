# Copyright (c) Portcullis contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Host side of moving sshd to another port: plan, transition (old and new port), finalize, commit, rollback.

The controller (the ssh_port action plugin) drives the steps; between them it opens new SSH connections to
prove the new port works. Every step that changes the host runs under one armed change of the change engine
(module_utils/_transaction.py, through module_utils/_move.py), whose timer - or, after a reboot, whose boot unit - restores
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
    SOCKET_DROP_IN,
    SSHD_CONFIG,
    SSHD_SERVICE_UNITS,
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
    sshd_listener,
    stream_port,
)
from ansible_collections.portcullis.hardening.plugins.module_utils._systemd import (
    DAEMON_RELOAD,
    restart_sequence,
    unit_properties,
)
from ansible_collections.portcullis.hardening.plugins.module_utils._transaction import (
    ChangePending,
    file_diff,
    write_edits,
)

KIND = "ssh-port"
SSHD = "/usr/sbin/sshd"
SOCKET_UNIT = "ssh.socket"
SELINUX_ENFORCE = "/sys/fs/selinux/enforce"
EPHEMERAL_RANGE = "/proc/sys/net/ipv4/ip_local_port_range"
PRIVSEP_DIR = "/run/sshd"


class SshPortError(MoveError):
    """A step of moving sshd that failed; the message names the step and what the host looks like now."""


class SshHost:
    """sshd, ssh.socket, SELinux and the firewall table as this module sees them, through one Host."""

    def __init__(self, host, expand=None, proc_root="/proc", sleep=time.sleep, check_mode=False):
        self.host = host
        self.run = host.run
        self.read = host.read
        self.expand = expand or self._expand
        self.proc_root = proc_root
        self.sleep = sleep
        self.check_mode = check_mode
        self.move = Move(host, KIND, SshPortError)

    def check(self, argv, step):
        return self.host.check(argv, step, SshPortError)

    def _expand(self, pattern):
        """A glob on the host: host paths (without the test root) back, sorted."""
        found = glob.glob(self.host.path(pattern))
        if self.host.root not in ("/", ""):
            found = ["/" + os.path.relpath(path, self.host.root) for path in found]
        return sorted(found)

    def layout(self):
        return read_layout(SSHD_CONFIG, self.read, self.expand)

    def test_config(self, step):
        """`sshd -t` on the configuration as written. sshd refuses to run without /run/sshd, which a socket-activated
        sshd that has not run yet lacks: a changing step creates it; check mode creates nothing, so it skips the test
        and says so (None) - the transition step validates before any reload."""
        if not self.host.isdir(PRIVSEP_DIR):
            if self.check_mode:
                return "sshd -t was not run in check mode: %s does not exist yet (sshd has not run since boot); a " \
                    "real run creates it and validates before any reload" % PRIVSEP_DIR
            self.host.makedirs(PRIVSEP_DIR, mode=0o755)
        rc, out, err = self.run([SSHD, "-t", "-f", SSHD_CONFIG])
        if rc != 0:
            raise SshPortError("%s: sshd -t rejects the configuration (rc=%d): %s"
                               % (step, rc, (err or out).replace("\r", "").strip()))
        return None

    def unit_property(self, unit, names):
        return unit_properties(self.host, unit, names)

    def socket(self):
        """{active, accept, listens} of ssh.socket; active False when it is not in use."""
        props = self.unit_property(SOCKET_UNIT, ["ActiveState", "Accept", "Listen", "LoadState"])
        active = props.get("ActiveState", [""])[0] == "active" and props.get("LoadState", [""])[0] == "loaded"
        listens = parse_listen_property("\n".join("Listen=" + value for value in props.get("Listen", [])))
        return {"active": active, "accept": props.get("Accept", ["no"])[0] == "yes", "listens": listens}

    def service(self):
        """The unit that runs sshd: ssh.service (Debian, Ubuntu) or sshd.service (Fedora, RHEL, Arch)."""
        for unit in SSHD_SERVICE_UNITS:
            props = self.unit_property(unit, ["LoadState", "Id"])
            if props.get("LoadState", [""])[0] == "loaded":
                return props.get("Id", [unit])[0] or unit
        raise SshPortError("plan: neither ssh.service nor sshd.service is loaded: is sshd run by systemd?")

    def listeners(self):
        return tcp_listeners(self.proc_root)

    @staticmethod
    def is_sshd(listener, socket_ports=()):
        return sshd_listener(listener, socket_ports)

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


def restart_commands(socket, service):
    """How to make sshd take a new configuration: argument lists, run in order."""
    if socket["active"]:
        return restart_sequence(service, SOCKET_UNIT, socket["accept"])
    return [[DAEMON_RELOAD[0], "reload", service]]


def rollback_restart_commands(socket, service):
    """Restart rather than reload on the way back: sshd may have died on the way forward."""
    if socket["active"]:
        return restart_commands(socket, service)
    return restart_sequence(service)


def plan(host, params):
    """Read everything, change nothing: what moving sshd to params["port"] would do (the `plan` step)."""
    port = params["port"]
    warnings = []
    try:
        warnings.extend(host.move.engine.refuse_if_pending("plan", check_mode=True))
    except ChangePending as exc:
        if not host.check_mode:
            raise
        warnings.append("a real run would refuse now: %s" % exc)
    layout = host.layout()
    skipped = host.test_config("plan (on the configuration as it is, before any change)")
    if skipped:
        warnings.append(skipped)
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

    firewall = plan_firewall(host.move.nft, moved, port, params.get("manage_firewall"), warnings)
    selinux = host.selinux(port, params["selinux"])
    needs_restart = bool(final_edits or socket_final) or listening_ports != [port]
    changed = needs_restart or bool(firewall["final"]) or bool(selinux["apply"])

    diff = [file_diff(path, layout.texts.get(path), text) for path, text in sorted(final_edits.items())]
    if socket_final:
        diff.append(file_diff(SOCKET_DROP_IN, host.read(SOCKET_DROP_IN), socket_final))
    if firewall["final"]:
        diff.append(firewall_diff(firewall))
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
        "firewall": {"managed": firewall["managed"], "rules_moved": firewall["moved"],
                     "backend": firewall.get("backend") or ("nftables" if firewall["managed"] else None)},
        "warnings": warnings,
        "diff": diff,
        # What the later steps write, computed once here.
        "_plan": {"final_edits": final_edits, "transition_edits": transition_edits, "socket_final": socket_final,
                  "socket_transition": socket_transition, "firewall": firewall, "selinux": selinux,
                  "socket": socket, "service": service, "socket_ports": socket_ports},
    }


def _touched_paths(steps):
    paths = set()
    for edits in (steps["final_edits"], steps["transition_edits"]):
        paths.update(edits)
    if steps["socket_final"]:
        paths.add(SOCKET_DROP_IN)
    return sorted(paths)


# How the two phases that reconfigure sshd name their steps: (ports, firewall action, where sshd then listens).
PHASES = {
    "transition": ("old and new port", "opening the new port", "the old and the new port"),
    "finalize": ("new port only", "closing the old port", "the new port only, on every address it listened on before"),
}


def _reconfigure(host, token, phase, edits, socket_text, firewall_text, restart, wait, first_commands=()):
    """One phase of the move, step by step: run `first_commands` (SELinux labelling), write the sshd configuration
    and validate it, write the ssh.socket drop-in, set the firewall table, reload sshd, and return wait(step).

    When a step fails the host rolls back at once, and SshPortError names the step and the outcome.
    """
    ports, firewall_action, listening = PHASES[phase]
    step = "%s: labelling the port for SELinux" % phase
    try:
        for command in first_commands:
            host.check(command, step)
        step = "%s: writing the sshd configuration (%s)" % (phase, ports)
        write_edits(host.host, edits)
        host.test_config(step)
        if socket_text:
            step = "%s: writing the ssh.socket drop-in (%s)" % (phase, ports)
            host.host.write(SOCKET_DROP_IN, socket_text)
        step = "%s: %s in the Portcullis firewall" % (phase, firewall_action)
        if firewall_text is not None:
            host.move.set_firewall(firewall_text)
        step = "%s: reloading sshd" % phase
        for command in restart:
            host.check(command, step)
        step = "%s: waiting for sshd to listen on %s" % (phase, listening)
        return wait(step)
    except (PortcullisError, OSError) as exc:
        raise host.move.failed(token, step, exc)


def transition(host, params):
    """Listen on the old and the new port, with the host's own rollback armed (the `transition` step)."""
    with host.move.starting("transition") as token:
        result = plan(host, params)
        steps = result.pop("_plan")
        if not result["changed"]:
            return result
        firewall = steps["firewall"]
        undo = [DAEMON_RELOAD] + steps["selinux"]["undo"] + rollback_restart_commands(steps["socket"],
                                                                                      steps["service"])
        # At boot the files are back before sshd starts: only systemd's view of the drop-in and SELinux remain.
        boot = [DAEMON_RELOAD] + steps["selinux"]["undo"]
        host.move.arm(token, "sshd to port %d" % params["port"], _touched_paths(steps), params["confirm_timeout"],
                      firewall, undo, boot, data={
                          "final_edits": steps["final_edits"], "socket_final": steps["socket_final"],
                          "socket": steps["socket"], "service": steps["service"],
                          "socket_ports": steps["socket_ports"], "moved": result["moved_ports"],
                          "port": params["port"], "listening_before": result["listening_before"],
                          "listen_addresses": None if params.get("listen_addresses") is None
                          else list(params["listen_addresses"])})
        socket_ports = sorted(set(steps["socket_ports"]) | {params["port"]}) if steps["socket"]["active"] else ()
        kept = expected_addresses(result["listening_before"], result["moved_ports"], params["port"],
                                  params.get("listen_addresses"))
        result["listening_transition"] = _reconfigure(
            host, token, "transition", steps["transition_edits"], steps["socket_transition"],
            firewall["transition"], restart_commands(steps["socket"], steps["service"]),
            lambda step: host.wait_listening([params["port"]], [], step, socket_ports, kept),
            first_commands=steps["selinux"]["apply"])
        result["token"] = token
        return result


def finalize(host, token):
    """Listen on the new port only, and close the old one in the firewall (the `finalize` step).

    Runs over a connection to the new port; the rollback stays armed until commit.
    """
    with host.move.locked("finalize"):
        data = host.move.require(token, "finalize").data
        socket_ports = [data["port"]] if data["socket"]["active"] else ()
        wanted = expected_addresses(data["listening_before"], data["moved"], data["port"], data["listen_addresses"])
        after = _reconfigure(
            host, token, "finalize", data["final_edits"], data["socket_final"], data.get("firewall_final"),
            restart_commands(data["socket"], data["service"]),
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
    """Persist the moved firewall rules while still armed, then commit: the move is permanent."""
    return host.move.commit(token)


def rollback(host, token):
    """Undo the move now (the controller could not prove the new port), and wait for sshd on the old port."""
    data, ended = host.move.rollback(token)
    if ended["committed"]:
        return ended
    socket_ports = data["socket_ports"] if data["socket"]["active"] else ()
    listening = host.wait_listening(data["moved"] or [data["port"]], [], "rollback: waiting for sshd on the old "
                                    "port", socket_ports)
    return dict(ended, listening_after=listening)


def result_json(result):
    """The module result without the internal plan (the `_plan` key)."""
    return json.loads(json.dumps(dict((key, value) for key, value in result.items() if key != "_plan")))
