# Copyright (c) Portcullis contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Compare what listens (and what answers from outside) with the allowlist, into findings.

Private to the collection: pure functions, used by the port_audit module on the host and by its
action plugin on the controller (probe findings).
"""

from __future__ import annotations

import ipaddress
import os

from ansible_collections.portcullis.hardening.plugins.module_utils._allowlist import covering_published, input_openings
from ansible_collections.portcullis.hardening.plugins.module_utils._filters import (
    closed_port,
    nft_filters,
    probe_packets,
    ufw_filter,
)
from ansible_collections.portcullis.hardening.plugins.module_utils._published import (
    container_text,
    describe as describe_published,
    port_range,
    publish_flag,
)
from ansible_collections.portcullis.hardening.plugins.module_utils._procnet import (
    endpoint_text,
    is_loopback,
    is_wildcard,
)

BENCHMARK = "CIS Debian Linux 12 Benchmark"
BENCHMARK_VERSION = "v1.1.0"
CONTROL_TITLES = {
    "2.1.22": "Ensure only approved services are listening on a network interface",
    "4.1.1": "Ensure a single firewall configuration utility is in use",
    "4.2.6": "Ensure ufw firewall rules exist for all open ports",
    "4.3.8": "Ensure nftables default deny firewall policy",
    "4.4.2.4": "Ensure iptables firewall rules exist for all open ports",
    "4.4.3.4": "Ensure ip6tables firewall rules exist for all open ports",
}
OPEN_PORT_RULES = ("4.2.6", "4.4.2.4", "4.4.3.4")
KIND_CONTROLS = {
    "unexpected_listener": ("2.1.22", "4.3.8"),
    "wider_bind_than_allowed": ("2.1.22",),
    "unexpected_process": ("2.1.22",),
    "allowed_not_listening": ("2.1.22",) + OPEN_PORT_RULES,
    "reachable_not_allowed": ("4.3.8",) + OPEN_PORT_RULES,
    "listening_but_filtered": ("4.3.8",) + OPEN_PORT_RULES,
    "udp_open_or_filtered": ("4.3.8",) + OPEN_PORT_RULES,
    "unexpected_published_port": ("2.1.22", "4.3.8"),
    "allowed_but_filtered": ("4.3.8",) + OPEN_PORT_RULES,
    "firewall_inactive": ("4.1.1", "4.3.8"),
}
SEVERITIES = ("high", "medium", "low", "info")


def controls(kind):
    return [{"id": control, "title": CONTROL_TITLES[control], "benchmark": BENCHMARK,
             "version": BENCHMARK_VERSION} for control in KIND_CONTROLS[kind]]


def effective_family(listener):
    """An IPv6 socket bound to an IPv4-mapped address (::ffff:a.b.c.d) serves IPv4 only."""
    if listener["family"] == "ipv6" and listener["address"].startswith("::ffff:") and "." in listener["address"]:
        return "ipv4"
    return listener["family"]


def endpoint(protocol, address, port):
    return "%s %s" % (protocol, endpoint_text(address, port))


def _who(processes):
    if not processes:
        return "no known process"
    parts = []
    for process in processes:
        text = process["name"] + (", " + process["unit"] if process.get("unit") else "")
        if text not in parts:
            parts.append(text)
    return "; ".join(parts)


def _units(processes):
    return sorted({process["unit"] for process in processes if process.get("unit")})


def process_matches(wanted, processes):
    """A rule's `process` names the process (as the kernel shows it, 15 characters), its program file or its unit."""
    for process in processes:
        program = os.path.basename(process.get("cmdline", "").split(" ")[0])
        if wanted in (process["name"], program, process.get("unit")) or wanted[:15] == process["name"]:
            return True
    return False


def finding(kind, severity, protocol, family, address, port, processes, message, remediation, rule=None,
            source="host"):
    return {"kind": kind, "severity": severity, "protocol": protocol, "family": family, "address": address,
            "port": port, "processes": list(processes), "rule": rule, "message": message,
            "remediation": remediation, "controls": controls(kind), "source": source}


def _stop_advice(processes):
    units = _units(processes)
    if units:
        return "if %s is not needed, stop and disable it (systemctl disable --now %s)" % (
            " and ".join(units), " ".join(units))
    return "if the program is not needed, stop it and remove it from start-up"


def _covering_rules(listener, rules):
    """The entries about this listener's protocol, port and (effective) family (published-only ones allow no
    socket of the host)."""
    family = effective_family(listener)
    return [rule for rule in rules if rule.protocol == listener["protocol"] and rule.on_host
            and rule.covers_port(listener["port"]) and rule.covers_family(family)]


def _listener_finding(listener, candidates, include_loopback):
    """The finding for one listener, given the entries about it, or None when they allow it as it is."""
    protocol, port, processes = listener["protocol"], listener["port"], listener["processes"]
    family = effective_family(listener)
    where = endpoint(protocol, listener["address"], port)

    def make(kind, severity, message, remediation, rule=None):
        return finding(kind, severity, protocol, family, listener["address"], port, processes,
                       message, remediation, rule)

    if not candidates:
        if listener["loopback"]:
            severity = "low" if include_loopback else "info"
            reach = "only local clients can connect"
        else:
            severity = "high" if listener["wildcard"] else "medium"
            reach = "reachable on every address" if listener["wildcard"] else "reachable on this address"
        return make("unexpected_listener", severity,
                    "%s (%s) listens, %s, but no allowlist entry allows it" % (where, _who(processes), reach),
                    "%s; if it is needed, add {port: %s, protocol: %s} to the allowlist; until then a "
                    "default-deny firewall keeps it closed" % (_stop_advice(processes).capitalize(), port, protocol))
    if not listener["loopback"]:
        wide = [rule for rule in candidates if rule.bind == "any"]
        if not wide:
            rule = candidates[0]
            return make("wider_bind_than_allowed", "high" if listener["wildcard"] else "medium",
                        "%s (%s) listens on %s but allowlist[%d] allows it on loopback only" % (
                            where, _who(processes), "every address" if listener["wildcard"] else "a network address",
                            rule.index),
                        "Make %s listen on 127.0.0.1 and ::1 only (its bind or listen address setting), or set "
                        "bind: any in allowlist[%d] if remote clients need it" % (_who(processes), rule.index),
                        rule.index)
        candidates = wide
    constrained = [rule for rule in candidates if rule.process]
    if processes and len(constrained) == len(candidates) and not any(
            process_matches(rule.process, processes) for rule in constrained):
        rule = constrained[0]
        return make("unexpected_process", "medium",
                    "%s is allowed for %s (allowlist[%d]) but %s listens there" % (
                        where, rule.process, rule.index, _who(processes)),
                    "Check why %s holds the port instead of %s; %s, or correct allowlist[%d].process" % (
                        _who(processes), rule.process, _stop_advice(processes), rule.index),
                    rule.index)
    return None


def _published_finding(item):
    """The finding for a published container port that no entry allows."""
    low, _high = port_range(item)
    container = item.get("container")
    if container:
        who = container_text(container)
        recreate = "re-create %s without %s" % (who, publish_flag(item))
    else:
        who = "the container (or host) at %s" % item["target_address"]
        recreate = "remove %s from the runtime that publishes %s" % (publish_flag(item), who)
    loopback = not item["wildcard"] and is_loopback(ipaddress.ip_network(item["address"], strict=False)
                                                    .network_address)
    severity = "info" if loopback else "high" if item["wildcard"] else "medium"
    proxy = "; its userland proxy listens on %s" % ", ".join(item["proxy"]) if item.get("proxy") else ""
    return finding(
        "unexpected_published_port", severity, item["protocol"], item["family"], item["address"], item["port"], [],
        "%s is published to a container, %s, but no allowlist entry allows it%s" % (
            describe_published(item), "only local clients can connect" if loopback else
            "reachable without passing the host's input chain", proxy),
        "If it is not needed, %s; if it is, add {port: %s, protocol: %s, published: true} to the allowlist; until "
        "then the Portcullis firewall's forward chain drops new connections to it" % (recreate, low, item["protocol"]))


def audit_listeners(listeners, rules, include_loopback=False, published=()):
    """Findings for the listeners on the host, the ports published to containers, and for allowlist entries that
    nothing uses. A listener that a userland proxy holds for a published port (`published: true`, from
    _published.link_proxies()) is audited as the published port, not a second time."""
    findings = []
    used = set()
    for item in published:
        low, high = port_range(item)
        candidates = covering_published(rules, item["protocol"], item["family"], low, high)
        used.update(rule.index for rule in candidates)
        if not candidates:
            findings.append(_published_finding(item))
    for listener in listeners:
        if listener.get("published"):
            continue
        candidates = _covering_rules(listener, rules)
        used.update(rule.index for rule in candidates)
        result = _listener_finding(listener, candidates, include_loopback)
        if result:
            findings.append(result)
    for rule in rules:
        if rule.index not in used:
            findings.append(finding(
                "allowed_not_listening", "info", rule.protocol, rule.family, None, rule.port, [],
                "allowlist[%d] (%s) allows a port on which nothing listens" % (rule.index, rule.describe()),
                "Remove allowlist[%d] if the service was retired (a firewall built from the allowlist opens "
                "the port for nothing), or start the service" % rule.index, rule.index))
    return sort_findings(findings)


def _verdicts(document, ufw_state, packet):
    """What every active filter of the input path does to a new connection: [{"filter", "verdict", "where"}], notes.
    With ufw active, its own tables (ip filter, ip6 filter) are judged by its rules, not walked."""
    skip = (("ip", "filter"), ("ip6", "filter")) if ufw_state is not None else ()
    results, notes = nft_filters(document, packet, skip)
    if ufw_state is not None:
        results.append(ufw_filter(ufw_state, packet))
    return results, notes


def filter_findings(rules, document, ufw_state=None, expect_default_deny=False):
    """(findings, notes) on the host's filters: an allowlisted port that an active filter drops
    (allowed_but_filtered), and, when the allowlist is meant to be enforced with default deny, a family for which
    no filter denies anything (firewall_inactive). `document`: `nft -j list ruleset`; `ufw_state`: an active ufw."""
    findings, notes = [], []
    openings = input_openings(rules)
    for packet, index in probe_packets(openings):
        verdicts, found_notes = _verdicts(document, ufw_state, packet)
        notes += [note for note in found_notes if note not in notes]
        for verdict in verdicts:
            if verdict["verdict"] != "drop":
                continue
            findings.append(finding(
                "allowed_but_filtered", "medium", packet["protocol"], packet["family"], None, packet["port"], [],
                "%d/%s is allowed (allowlist[%s]) but %s drops new %s connections to it: %s" % (
                    packet["port"], packet["protocol"], index, verdict["filter"], packet["family"], verdict["where"]),
                "Apply the allowlist with portcullis.hardening.firewall (it uses the active ufw or firewalld), or "
                "change what drops it (%s); an accept in one table never overrides a drop in another" % verdict["where"],
                index))
    if expect_default_deny:
        for family in ("ipv4", "ipv6"):
            port = closed_port(openings, "tcp", family)
            if port is None:
                continue
            verdicts, found_notes = _verdicts(document, ufw_state, {"protocol": "tcp", "port": port, "family": family})
            notes += [note for note in found_notes if note not in notes]
            if not any(verdict["verdict"] == "drop" for verdict in verdicts):
                seen = ", ".join("%s accepts (%s)" % (item["filter"], item["where"]) for item in verdicts)
                findings.append(finding(
                    "firewall_inactive", "high", "tcp", family, None, port, [],
                    "no active firewall denies new %s connections by default: a port the allowlist does not have "
                    "(%d/tcp) gets in (%s)" % (family, port, seen or "no input filter at all"),
                    "Enforce the allowlist with portcullis.hardening.firewall (backend auto: the active ufw or "
                    "firewalld, else a nftables table of its own); with ufw, make sure IPV6=yes"))
    return sort_findings(findings), notes


WILDCARD_V4 = (ipaddress.ip_address(0), ipaddress.ip_address("::ffff:0:0"))


def _serves(listener, target, protocol="tcp"):
    """Whether `listener` surely answers `protocol` on the probed address, and whether it may (dual-stack [::])."""
    if listener["protocol"] != protocol or listener["loopback"]:
        return False, False
    if target.version == 4:
        if ipaddress.ip_address(listener["address"]) in WILDCARD_V4 or listener["address"] in (
                str(target), "::ffff:%s" % target):
            return True, True
        return False, listener["address"] == "::"  # [::] accepts IPv4 unless IPV6_V6ONLY
    serves = listener["address"] == "::" or ipaddress.ip_address(listener["address"]) == target
    return serves, serves


# How the controller's probe was answered, in the words of each protocol.
PROBE_WORDS = {
    "tcp": {"open": "accepted a connection", "closed": "connection was refused", "filtered": "connection was dropped"},
    "udp": {"open": "answered a datagram", "closed": "datagram was rejected with an ICMP port unreachable",
            "filtered": "datagram was rejected with an ICMP unreachable or prohibited error"},
}


def _reaching(rules, protocol, family, port, host_only):
    """The entries that let a network client reach `port` (a host socket's only with host_only)."""
    return [rule for rule in rules if rule.protocol == protocol and rule.covers_port(port)
            and rule.covers_family(family) and rule.bind == "any" and (rule.on_host or not host_only)]


def _published_behind(published, protocol, target, port):
    """The published ports (in words) a connection to `target`:`port` reaches by DNAT, for the probe's explanation."""
    return [describe_published(item) for item in published if item["protocol"] == protocol
            and item["family"] == "ipv%d" % target.version and port_range(item)[0] <= port <= port_range(item)[1]
            and (item["wildcard"] or target in ipaddress.ip_network(item["address"], strict=False))]


def probe_findings(listeners, rules, probe, protocol="tcp", published=()):
    """Findings from the controller's view: {address: {port: (state, controller_address)}}.

    TCP: state is "open" (a connection was accepted), "closed" (refused) or "filtered" (no answer, or an ICMP
    error). UDP: "open" (a reply came), "closed" (ICMP port unreachable), "filtered" (another ICMP error) or
    "open|filtered" (silence: a firewall dropped the datagrams, or the service ignored them).
    """
    words = PROBE_WORDS[protocol]
    findings = []
    for target_text in sorted(probe):
        target = ipaddress.ip_address(target_text)
        family = "ipv%d" % target.version
        for port in sorted(probe[target_text]):
            state, seen_from = probe[target_text][port]
            where = endpoint(protocol, target_text, port)
            covering = _reaching(rules, protocol, family, port, host_only=True)
            serving = [item for item in listeners if item["port"] == port and _serves(item, target, protocol)[1]]
            processes = []
            for item in serving:  # 0.0.0.0 and [::] sockets of one program: each process once
                processes.extend(process for process in item["processes"] if process not in processes)
            index = covering[0].index if covering else None
            if state == "open":
                source = ipaddress.ip_address(seen_from) if seen_from else None
                if covering and (source is None or any(rule.allows_source(source) for rule in covering)):
                    continue
                behind = _published_behind(published, protocol, target, port)
                if behind:
                    covering = _reaching(rules, protocol, family, port, host_only=False)
                    index = covering[0].index if covering else None
                    if covering and (source is None or any(rule.allows_source(source) for rule in covering)):
                        continue
                    where = "%s (published: %s)" % (where, "; ".join(behind))
                elif processes:
                    where = "%s (%s)" % (where, _who(processes))
                if covering:
                    message = "%s %s from %s, which allowlist[%d] does not list in its sources" % (
                        where, words["open"], seen_from, index)
                else:
                    message = "%s %s from the controller, but no allowlist entry allows it" % (where, words["open"])
                if behind:
                    remediation = ("Apply the Portcullis firewall (its forward chain drops new connections to published "
                                   "ports the allowlist does not allow), or stop publishing the port (see the "
                                   "unexpected_published_port finding)")
                else:
                    remediation = ("Apply a default-deny firewall built from the allowlist (only allowed ports and "
                                   "sources pass); %s" % _stop_advice(processes))
                findings.append(finding(
                    "reachable_not_allowed", "high", protocol, family, target_text, port, processes, message,
                    remediation, index, "probe"))
                continue
            if state == "open|filtered":
                # Silence proves nothing either way: recorded (info) where something listens, never a violation.
                if not serving:
                    continue
                if covering:
                    remediation = ("Try it from an allowed source with a client of the service's own protocol; if "
                                   "that gets no answer either, open udp/%d in the firewall for the allowed sources"
                                   % port)
                else:
                    remediation = ("Nothing to do if a firewall drops it (the host's firewall ruleset shows whether "
                                   "one does); otherwise it is reachable, so %s" % _stop_advice(processes))
                findings.append(finding(
                    "udp_open_or_filtered", "info", protocol, family, target_text, port, processes,
                    "%s listens (%s) but neither a reply nor an ICMP port unreachable came back to the controller's "
                    "datagrams: a firewall may drop them, or the service ignores the probe; not proof either way%s"
                    % (where, _who(processes), "; allowlist[%d] allows it" % index if covering else ""),
                    remediation, index, "probe"))
                continue
            sure = [item for item in serving if _serves(item, target, protocol)[0]]
            if not (sure if state == "closed" else serving):
                continue
            allowed = bool(covering)
            findings.append(finding(
                "listening_but_filtered", "low" if allowed else "info", protocol, family, target_text, port, processes,
                "%s listens (%s) but the controller's %s%s" % (
                    where, _who(processes), words[state],
                    "; allowlist[%d] allows it" % index if allowed else "; a firewall keeps it closed"),
                ("Open it in the firewall for the allowed sources, or check the network path from the controller"
                 if allowed else "Nothing to do for exposure; %s" % _stop_advice(processes)),
                index, "probe"))
    return findings


def sort_findings(findings):
    def key(item):
        port = item["port"] if isinstance(item["port"], int) else int(str(item["port"]).split("-", maxsplit=1)[0])
        return (SEVERITIES.index(item["severity"]), item["kind"], item["protocol"], port, item["address"] or "")
    return sorted(findings, key=key)


def is_compliant(findings):
    return all(item["severity"] == "info" for item in findings)


def probe_ports(listeners, rules, extra_ports, limit, protocol="tcp", published=()):
    """Ports of `protocol` worth probing: allowlisted, listening on a network address, published to a container
    on a network address, and asked for (TCP only)."""
    ports = set(extra_ports) if protocol == "tcp" else set()
    ports.update(item["port"] for item in listeners if item["protocol"] == protocol and not item["loopback"])
    for item in published:
        low, high = port_range(item)
        if item["protocol"] == protocol and high - low < limit and (
                item["wildcard"] or not is_loopback(ipaddress.ip_network(item["address"], strict=False).network_address)):
            ports.update(range(low, high + 1))
    for rule in rules:
        if rule.protocol == protocol:
            ports.update(range(rule.low, rule.high + 1))
    if len(ports) > limit:
        if protocol == "tcp":
            raise ValueError("the probe would try %d ports, more than probe_max_ports=%d: narrow the allowlist's "
                             "TCP ranges or probe_ports, or raise probe_max_ports" % (len(ports), limit))
        raise ValueError("the probe would try %d UDP ports, more than probe_max_ports=%d: narrow the allowlist's "
                         "UDP ranges, leave udp out of probe_protocols, or raise probe_max_ports" % (len(ports), limit))
    return sorted(ports)


def normalise_listeners(listeners):
    """Accept listeners as listening_ports returns them; fill family/loopback/wildcard from the address if absent."""
    normalised = []
    for index, item in enumerate(listeners):
        if not isinstance(item, dict):
            raise ValueError("listeners[%d]: %r must be a mapping as listening_ports returns" % (index, item))
        for field in ("protocol", "address", "port"):
            if field not in item:
                raise ValueError("listeners[%d].%s: is required" % (index, field))
        if item["protocol"] not in ("tcp", "udp"):
            raise ValueError("listeners[%d].protocol: %r must be tcp or udp" % (index, item["protocol"]))
        try:
            address = ipaddress.ip_address(item["address"])
            port = int(item["port"])
        except ValueError as exc:
            raise ValueError("listeners[%d]: %s" % (index, exc))
        listener = dict(item)
        listener.setdefault("family", "ipv%d" % address.version)
        listener.setdefault("loopback", is_loopback(address))
        listener.setdefault("wildcard", is_wildcard(address))
        listener.setdefault("processes", [])
        listener["port"] = port
        normalised.append(listener)
    return normalised
