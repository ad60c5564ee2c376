# Copyright (c) Portcullis contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Ports published to containers: the DNAT rules of the host's NAT tables, and who owns their targets.

A port published with `docker run -p 8081:80`, `podman run -p` or a Kubernetes hostPort often has no socket on
the host: the kernel rewrites the destination in `prerouting` (DNAT) and the connection travels through
`forward`, never through `input`. This module reads those rules, read-only:

- native nftables tables (podman's netavark, firewalld, hand-written) from `nft -j list ruleset`;
- tables that iptables-nft wrote (Docker, netavark's iptables driver, kube-proxy): `nft -j` shows their DNAT only as
  an opaque `xt target "DNAT"`, so such a table is read again with `iptables-nft-save -t nat` (or ip6tables);
- what the runtime knows of the target: Docker's `config.v2.json` files, netavark's rule comments.

From the same rules come the container networks: the sources that `postrouting` masquerades (containers reaching
the outside world), which the firewall's forward chain lets reach published ports (traffic between containers).

Pure parsing, except read_published(), which goes through a Host. Private to the collection.
"""

from __future__ import annotations

import ipaddress
import json
import re
import shlex

from ansible_collections.portcullis.hardening.plugins.module_utils._procnet import endpoint_text

NFT_RULESET = ["nft", "-j", "list", "ruleset"]
# Family of an nft table -> (the family of its addresses, the iptables-nft-save command for it).
IPTABLES_SAVE = {"ip": "iptables-nft-save", "ip6": "ip6tables-nft-save"}
FAMILY_OF_TABLE = {"ip": "ipv4", "ip6": "ipv6"}
# The text of "every address" of each family (0.0.0.0 and ::), as listeners write it.
WILDCARD = {"ipv4": str(ipaddress.IPv4Address(0)), "ipv6": str(ipaddress.IPv6Address(0))}
DOCKER_ROOT = "/var/lib/docker"
DOCKER_DAEMON_JSON = "/etc/docker/daemon.json"
# Programs that hold a published port's socket on the host besides the DNAT rule (userland proxies, podman's
# port reservation): their sockets are the published port, not a second service.
PROXY_PROGRAMS = ("docker-proxy", "rootlessport", "conmon")
MAX_DEPTH = 16  # nft forbids loops between chains; this bounds the walk all the same
# netavark's iptables driver: -m comment --comment "dnat name: podman id: 3c5e..." (the network, the container)
_NETAVARK_COMMENT = re.compile(r"dnat name: (?P<name>\S+) id: (?P<id>[0-9a-f]{12,64})")


class Path:
    """What the matches on the way to a NAT statement require: from a base chain through jumps to the rule."""

    __slots__ = ("protocols", "ports", "daddr", "saddr", "in_interfaces", "not_in_interfaces", "comment")

    def __init__(self):
        self.protocols = None  # None: any; else a tuple of "tcp"/"udp"
        self.ports = None  # None: every port; else a tuple of (low, high)
        self.daddr = None  # None: any local address; else a tuple of networks
        self.saddr = None
        self.in_interfaces = None
        self.not_in_interfaces = ()
        self.comment = None

    def copy(self):
        other = Path()
        for name in self.__slots__:
            setattr(other, name, getattr(self, name))
        return other


class NatRule:
    """One NAT statement with what leads to it: `kind` is dnat or masquerade (snat counts as masquerade)."""

    def __init__(self, kind, family, table, chain, path, target_address=None, target_port=None, origin="nft"):
        self.kind = kind
        self.family = family
        self.table = table
        self.chain = chain
        self.path = path
        self.target_address = target_address
        self.target_port = target_port
        self.origin = origin


class Publication:
    """What read_published() found: the published ports, the container networks and what it could not read."""

    def __init__(self, ports, container_networks, notes):
        self.ports = ports
        self.container_networks = container_networks
        self.notes = notes


# --- nft JSON ------------------------------------------------------------------------------------------------

def _ports_of(right):
    """(low, high) pairs from the right side of a dport match: 80, {"range": [a, b]}, {"set": [...]}."""
    if isinstance(right, bool):
        return None
    if isinstance(right, int):
        return ((right, right),)
    if isinstance(right, dict) and "range" in right:
        low, high = right["range"]
        return ((int(low), int(high)),) if isinstance(low, int) and isinstance(high, int) else None
    if isinstance(right, dict) and "set" in right:
        pairs = []
        for item in right["set"]:
            found = _ports_of(item)
            if found is None:
                return None
            pairs.extend(found)
        return tuple(pairs)
    return None


def _networks_of(right):
    """Networks from the right side of an address match: "10.0.0.1", {"prefix": ...}, {"set": [...]}, or None."""
    try:
        if isinstance(right, str):
            return (ipaddress.ip_network(right, strict=False),)
        if isinstance(right, dict) and "prefix" in right:
            return (ipaddress.ip_network("%s/%d" % (right["prefix"]["addr"], right["prefix"]["len"]), strict=False),)
        if isinstance(right, dict) and "range" in right:
            low, high = (ipaddress.ip_address(item) for item in right["range"])
            return tuple(ipaddress.summarize_address_range(low, high))
        if isinstance(right, dict) and "set" in right:
            networks = []
            for item in right["set"]:
                found = _networks_of(item)
                if found is None:
                    return None
                networks.extend(found)
            return tuple(networks)
    except (KeyError, TypeError, ValueError):
        return None
    return None


def _names_of(right):
    if isinstance(right, str):
        return (right,)
    if isinstance(right, dict) and isinstance(right.get("set"), list):
        return tuple(item for item in right["set"] if isinstance(item, str))
    return None


def _protocols_of(right):
    names = _names_of(right)
    return tuple(name for name in names if name in ("tcp", "udp")) if names is not None else None


def _narrow(path, match):
    """`path` narrowed by one nft JSON match expression (an unknown match narrows nothing: the walk stays wide)."""
    left, right, operator = match.get("left"), match.get("right"), match.get("op", "==")
    if not isinstance(left, dict):
        return path
    payload, meta = left.get("payload"), left.get("meta")
    if isinstance(payload, dict):
        protocol, field = payload.get("protocol"), payload.get("field")
        if field == "dport" and protocol in ("tcp", "udp", "th") and operator in ("==", "in"):
            if protocol != "th":
                path.protocols = (protocol,)
            ports = _ports_of(right)
            if ports is not None:
                path.ports = ports
        elif field in ("daddr", "saddr") and protocol in ("ip", "ip6") and operator in ("==", "in"):
            networks = _networks_of(right)
            if networks is not None:
                setattr(path, field, networks)
    elif isinstance(meta, dict):
        key = meta.get("key")
        if key == "l4proto" and operator in ("==", "in"):
            protocols = _protocols_of(right)
            if protocols:
                path.protocols = protocols
        elif key in ("iifname", "iif"):
            names = _names_of(right)
            if names is not None and operator == "!=":
                path.not_in_interfaces = path.not_in_interfaces + names
            elif names is not None:
                path.in_interfaces = names
    return path


def _dnat_target(statement):
    """(address, port) of an nft JSON dnat statement, or None when it is not a plain address (a map)."""
    address, port = statement.get("addr"), statement.get("port")
    if not isinstance(address, str):
        return None
    if port is not None and not isinstance(port, int):
        if not (isinstance(port, dict) and isinstance(port.get("range"), list)):
            return None  # a port map: the target port depends on the packet
        port = port["range"][0]
    return address, port


def _vmap_elements(vmap, named_maps):
    """[(key, verdict)] of a verdict map: an anonymous one ({"set": [[key, verdict], ...]}) or a named one ("@name",
    whose elements the ruleset lists with the map). Elements that are not a pair with a verdict are left out."""
    data = vmap.get("data")
    if isinstance(data, str) and data.startswith("@"):
        elements = named_maps.get(data[1:], [])
    elif isinstance(data, dict):
        elements = data.get("set") or []
    else:
        elements = []
    return [(element[0], element[1]) for element in elements
            if isinstance(element, list) and len(element) == 2 and isinstance(element[1], dict)]


def _nft_chains(items):
    chains, rules = {}, {}
    for item in items:
        if "chain" in item:
            chain = item["chain"]
            chains[(chain.get("family"), chain.get("table"), chain.get("name"))] = chain
        elif "rule" in item:
            rule = item["rule"]
            rules.setdefault((rule.get("family"), rule.get("table"), rule.get("chain")), []).append(rule)
    return chains, rules


def parse_nft_ruleset(document):
    """(NAT rules, names of the tables that use iptables-nft's xt expressions, notes) from `nft -j list ruleset`."""
    items = [item for item in document.get("nftables", []) if isinstance(item, dict)]
    chains, rules = _nft_chains(items)
    maps = {}
    for item in items:
        named = item.get("map")
        if isinstance(named, dict) and named.get("map") == "verdict":
            maps.setdefault((named.get("family"), named.get("table")), {})[named.get("name")] = named.get("elem") or []
    found, xt_tables, notes = [], set(), []

    def walk(key, path, depth):
        family, table = key[0], key[1]
        if depth > MAX_DEPTH:
            notes.append("%s %s: chain %s is more than %d jumps deep; not followed" % (family, table, key[2], MAX_DEPTH))
            return
        for rule in rules.get(key, []):
            narrowed = path.copy()
            for expression in rule.get("expr") or []:
                if not isinstance(expression, dict):
                    continue
                if "match" in expression and isinstance(expression["match"], dict):
                    narrowed = _narrow(narrowed, expression["match"])
                elif "xt" in expression:
                    xt_tables.add((family, table))
                elif "jump" in expression or "goto" in expression:
                    target = (expression.get("jump") or expression.get("goto") or {}).get("target")
                    if (family, table, target) in chains:
                        walk((family, table, target), narrowed, depth + 1)
                elif "vmap" in expression and isinstance(expression["vmap"], dict):
                    for element, verdict in _vmap_elements(expression["vmap"], maps.get((family, table), {})):
                        target = (verdict.get("jump") or verdict.get("goto") or {}).get("target")
                        if (family, table, target) in chains:
                            branch = _narrow(narrowed.copy(), {"left": expression["vmap"].get("key"), "right": element,
                                                               "op": "=="})
                            walk((family, table, target), branch, depth + 1)
                elif "dnat" in expression:
                    statement = expression["dnat"] or {}
                    target = _dnat_target(statement)
                    if target is None:
                        notes.append("%s %s chain %s: a DNAT whose target Portcullis cannot read (a map of addresses "
                                     "or ports); its ports are not listed" % (family, table, key[2]))
                        continue
                    address_family = {"ip": "ipv4", "ip6": "ipv6"}.get(statement.get("family"), FAMILY_OF_TABLE.get(
                        family) or ("ipv6" if ":" in target[0] else "ipv4"))
                    found.append(NatRule("dnat", address_family, "%s %s" % (family, table), key[2], narrowed,
                                         target[0], target[1]))
                elif "masquerade" in expression or "snat" in expression:
                    found.append(NatRule("masquerade", FAMILY_OF_TABLE.get(family), "%s %s" % (family, table),
                                         key[2], narrowed))

    for key, chain in sorted(chains.items(), key=lambda pair: tuple(str(part) for part in pair[0])):
        if chain.get("type") == "nat" and chain.get("hook") in ("prerouting", "postrouting"):
            walk(key, Path(), 0)
    return found, xt_tables, notes


# --- iptables-save -------------------------------------------------------------------------------------------

def _save_ports(text):
    pairs = []
    for part in text.split(","):
        low, _sep, high = part.partition(":")
        pairs.append((int(low), int(high or low)))
    return tuple(pairs)


def _to_destination(text, family):
    """(address, port) from --to-destination: 172.17.0.2:80, 172.17.0.2, [fd17::2]:80, fd17::2, a-b ranges."""
    port = None
    if text.startswith("["):
        address, _sep, rest = text[1:].partition("]")
        port = rest[1:] or None
    elif family == "ipv4" and ":" in text:
        address, _sep, port = text.partition(":")
    else:
        address = text
    address = address.split("-", maxsplit=1)[0]
    if port:
        port = int(port.split("-", maxsplit=1)[0])
    return address, port


def _save_rule(words):
    """(chain, Path, verdict, the verdict's --options) of one `-A CHAIN ...` line of iptables-save, split into words.

    Every option takes one value, except the few flags that take none (--random, --syn, ...): a word after an option
    that starts with "-" is the next option.
    """
    path = Path()
    chain = words[1]
    verdict, arguments = None, {}
    negate = False
    position = 2
    while position < len(words):
        word = words[position]
        if word == "!":
            negate = True
            position += 1
            continue
        value = None
        if position + 1 < len(words) and not words[position + 1].startswith("-") and words[position + 1] != "!":
            value = words[position + 1]
        position += 2 if value is not None else 1
        if value is None:
            negate = False
            continue
        if word in ("-p", "--protocol"):
            if not negate and value in ("tcp", "udp"):
                path.protocols = (value,)
        elif word in ("--dport", "--dports", "--destination-port", "--destination-ports"):
            if not negate:
                path.ports = _save_ports(value)
        elif word in ("-d", "--destination", "-s", "--source"):
            if not negate:
                networks = tuple(ipaddress.ip_network(item, strict=False) for item in value.split(","))
                setattr(path, "daddr" if word in ("-d", "--destination") else "saddr", networks)
        elif word in ("-i", "--in-interface"):
            if negate:
                path.not_in_interfaces = path.not_in_interfaces + (value,)
            else:
                path.in_interfaces = (value,)
        elif word == "--comment":
            path.comment = value
        elif word in ("-j", "-g", "--jump", "--goto"):
            verdict = value
        elif verdict is not None:
            arguments[word] = value
        negate = False
    return chain, path, verdict, arguments


def parse_iptables_save(text, family, table_name):
    """(NAT rules, notes) from `iptables-save -t nat` text (or ip6tables-save: `family` ipv6)."""
    rules = {}
    for line in text.splitlines():
        if not line.startswith("-A "):
            continue
        try:
            words = shlex.split(line)
            chain, path, verdict, arguments = _save_rule(words)
        except (ValueError, IndexError):
            continue
        rules.setdefault(chain, []).append((path, verdict, arguments))
    found, notes = [], []

    def merge(outer, inner):
        merged = outer.copy()
        for name in ("protocols", "ports", "daddr", "saddr", "in_interfaces", "comment"):
            if getattr(inner, name) is not None:
                setattr(merged, name, getattr(inner, name))
        merged.not_in_interfaces = outer.not_in_interfaces + inner.not_in_interfaces
        return merged

    def walk(chain, path, depth):
        if depth > MAX_DEPTH:
            notes.append("%s: chain %s is more than %d jumps deep; not followed" % (table_name, chain, MAX_DEPTH))
            return
        for rule_path, verdict, arguments in rules.get(chain, []):
            here = merge(path, rule_path)
            if verdict == "DNAT":
                destination = arguments.get("--to-destination")
                if not destination:
                    notes.append("%s chain %s: a DNAT without --to-destination; not listed" % (table_name, chain))
                    continue
                try:
                    address, port = _to_destination(destination, family)
                except ValueError:
                    notes.append("%s chain %s: DNAT to %r cannot be read" % (table_name, chain, destination))
                    continue
                found.append(NatRule("dnat", family, table_name, chain, here, address, port, origin="iptables-nft"))
            elif verdict in ("MASQUERADE", "SNAT"):
                found.append(NatRule("masquerade", family, table_name, chain, here, origin="iptables-nft"))
            elif verdict in rules:
                walk(verdict, here, depth + 1)

    for base in ("PREROUTING", "POSTROUTING"):
        walk(base, Path(), 0)
    return found, notes


# --- the runtimes' own state ---------------------------------------------------------------------------------

def docker_containers(configs):
    """{target address: container} from the texts of Docker's config.v2.json files (running containers only)."""
    by_address = {}
    for text in configs:
        try:
            config = json.loads(text)
        except ValueError:
            continue
        if not isinstance(config, dict) or not (config.get("State") or {}).get("Running"):
            continue
        container = {"runtime": "docker", "id": config.get("ID"), "name": (config.get("Name") or "").lstrip("/"),
                     "image": (config.get("Config") or {}).get("Image")}
        networks = (config.get("NetworkSettings") or {}).get("Networks") or {}
        for network in networks.values():
            for field in ("IPAddress", "GlobalIPv6Address"):
                address = (network or {}).get(field)
                if address:
                    by_address[address] = container
    return by_address


def docker_data_root(daemon_json):
    """Docker's data-root from /etc/docker/daemon.json (its text, or None), default /var/lib/docker."""
    try:
        root = json.loads(daemon_json).get("data-root") if daemon_json else None
    except (ValueError, AttributeError):
        root = None
    return root if isinstance(root, str) and root.startswith("/") else DOCKER_ROOT


# --- published ports -----------------------------------------------------------------------------------------

def _port_text(low, high):
    return low if low == high else "%d-%d" % (low, high)


def published_ports(nat_rules, containers=None):
    """The published ports of DNAT rules reached from prerouting, one per protocol, port (range) and address.

    Each: protocol, family, address (the published address; the family's wildcard when the rule takes every local
    address), port (an int, or "LOW-HIGH"), wildcard, target_address, target_port (null: the same port), table,
    chain, origin (nft or iptables-nft), container (runtime, id, name, image; null when not known), proxy (the
    host sockets of a userland proxy for it; filled by link_proxies()). A DNAT without a port match publishes
    every port: port is "1-65535".
    """
    containers = containers or {}
    ports = []
    seen = set()
    for rule in nat_rules:
        if rule.kind != "dnat":
            continue
        path = rule.path
        addresses = [str(network.network_address) if network.prefixlen == network.max_prefixlen else str(network)
                     for network in path.daddr or () if "ipv%d" % network.version == rule.family]
        for protocol in path.protocols or ("tcp", "udp"):
            for low, high in path.ports or ((1, 65535),):
                for address in addresses or [WILDCARD[rule.family]]:
                    key = (protocol, rule.family, address, low, high, rule.target_address, rule.target_port)
                    if key in seen:
                        continue
                    seen.add(key)
                    container = containers.get(rule.target_address)
                    if container is None and path.comment:
                        found = _NETAVARK_COMMENT.search(path.comment)
                        if found:  # netavark's "name" is the network's; the id is the container's
                            container = {"runtime": "podman", "id": found.group("id"), "name": None, "image": None}
                    ports.append({
                        "protocol": protocol, "family": rule.family, "address": address, "port": _port_text(low, high),
                        "wildcard": address == WILDCARD[rule.family], "target_address": rule.target_address,
                        "target_port": rule.target_port, "table": rule.table, "chain": rule.chain,
                        "origin": rule.origin, "from_interfaces_except": list(path.not_in_interfaces),
                        "container": container, "proxy": [],
                    })
    ports.sort(key=lambda item: (item["protocol"], item["family"], port_range(item)[0], item["address"]))
    return ports


def port_range(published):
    """(low, high) of a published port's port (an int or "LOW-HIGH")."""
    if isinstance(published["port"], int):
        return published["port"], published["port"]
    low, _sep, high = str(published["port"]).partition("-")
    return int(low), int(high or low)


def container_networks(nat_rules):
    """The source networks that postrouting masquerades, by family: {"ipv4": [...], "ipv6": [...]} (sorted texts)."""
    networks = {"ipv4": set(), "ipv6": set()}
    for rule in nat_rules:
        if rule.kind != "masquerade" or not rule.path.saddr:
            continue
        for network in rule.path.saddr:
            family = "ipv%d" % network.version
            if network.prefixlen and not network.is_loopback:
                networks[family].add(network)
    return dict((family, [str(network) for network in ipaddress.collapse_addresses(sorted(found))])
                for family, found in networks.items())


def _proxied_port(listener, process):
    """The host port a userland proxy process says it serves (docker-proxy -host-port N), or the listener's own."""
    words = (process.get("cmdline") or "").split()
    for position, word in enumerate(words[:-1]):
        if word in ("-host-port", "--host-port"):
            try:
                return int(words[position + 1])
            except ValueError:
                return None
    return listener["port"]


def proxy_processes(listener):
    """The processes of a listener that are userland proxies of published ports (PROXY_PROGRAMS)."""
    return [process for process in listener.get("processes") or [] if process.get("name") in PROXY_PROGRAMS]


def link_proxies(listeners, published):
    """Mark the listeners that a userland proxy (docker-proxy, podman's conmon, rootlessport) holds for a published
    port: the listener gets `published: true` and the published port lists it in `proxy`, so that the port counts
    once. Every other listener gets `published: false`. Changes both lists in place."""
    for listener in listeners:
        listener["published"] = False
        proxies = proxy_processes(listener)
        if not proxies:
            continue
        for item in published:
            low, high = port_range(item)
            if item["protocol"] != listener["protocol"] or item["family"] != listener["family"] \
                    or not low <= listener["port"] <= high:
                continue
            if any(_proxied_port(listener, process) == listener["port"] for process in proxies):
                listener["published"] = True
                text = endpoint_text(listener["address"], listener["port"])
                if text not in item["proxy"]:
                    item["proxy"].append(text)


def container_text(container):
    """A container in words: "docker container web", "podman container 3c5e1a2b4d6f" (its short id, without a name)."""
    return "%s container %s" % (container["runtime"], container.get("name") or (container.get("id") or "?")[:12])


def describe(published):
    """A published port in words: "tcp 0.0.0.0:8081 -> 172.17.0.2:80 (DNAT in ip nat chain DOCKER, docker container
    web)"."""
    target = published["target_address"] + (":%s" % published["target_port"] if published["target_port"] else "")
    if ":" in published["target_address"] and published["target_port"]:
        target = "[%s]:%s" % (published["target_address"], published["target_port"])
    container = published.get("container")
    owner = ", " + container_text(container) if container else ""
    return "%s %s -> %s (DNAT in %s chain %s%s)" % (
        published["protocol"], endpoint_text(published["address"], published["port"]), target, published["table"],
        published["chain"], owner)


def publish_flag(published):
    """The `-p` that publishes the port, as the container's runtime writes it: -p 8081:80, -p 127.0.0.1:53:53/udp."""
    low, high = port_range(published)
    host_port = str(low) if low == high else "%d-%d" % (low, high)
    target = published["target_port"] or low
    target_text = str(target) if low == high else "%d-%d" % (target, target + high - low)
    address = "" if published["wildcard"] else (
        "[%s]:" % published["address"] if ":" in published["address"] else "%s:" % published["address"])
    return "-p %s%s:%s%s" % (address, host_port, target_text, "/udp" if published["protocol"] == "udp" else "")


# --- reading the host ----------------------------------------------------------------------------------------

def read_ruleset(host):
    """`nft -j list ruleset` through `host`: (document, None), or (None, what went wrong)."""
    rc, out, err = host.run(NFT_RULESET)
    if rc != 0:
        return None, "nft -j list ruleset failed (rc=%d): %s" % (rc, (err or out).strip()[:200])
    try:
        return json.loads(out or "{}"), None
    except ValueError as exc:
        return None, "nft -j output is not JSON: %s" % exc


def read_published(host, listeners=None, ruleset=None):
    """Publication of the host: reads `nft -j list ruleset` (unless `ruleset`, what read_ruleset() gave, is
    passed), iptables-nft-save for the tables iptables-nft wrote, and Docker's container configs; never changes
    anything. Without nft (or without the privilege to read the ruleset) the result is empty and a note says why."""
    document, problem = ruleset if ruleset is not None else read_ruleset(host)
    if problem:
        if listeners is not None:
            link_proxies(listeners, [])
        return Publication([], {"ipv4": [], "ipv6": []}, ["published ports were not read: %s" % problem])
    nat_rules, xt_tables, notes = parse_nft_ruleset(document)
    # Tables iptables-nft wrote: their DNAT targets only iptables-nft-save can print.
    nat_rules = [rule for rule in nat_rules if tuple(rule.table.split(" ", maxsplit=1)) not in xt_tables]
    for family, table in sorted(xt_tables):
        command = IPTABLES_SAVE.get(family)
        if command is None:
            notes.append("table %s %s uses iptables-nft expressions but no save command reads its family; its DNAT "
                         "rules are not listed" % (family, table))
            continue
        rc, out, err = host.run([command, "-t", table])
        if rc != 0:
            notes.append("table %s %s: %s -t %s failed (rc=%d): %s; its DNAT rules are not listed"
                         % (family, table, command, table, rc, (err or out).strip()[:200]))
            continue
        found, save_notes = parse_iptables_save(out, FAMILY_OF_TABLE[family], "%s %s" % (family, table))
        nat_rules.extend(found)
        notes.extend(save_notes)
    root = docker_data_root(host.read(DOCKER_DAEMON_JSON))
    configs = []
    for name in host.listdir(root + "/containers"):
        text = host.read("%s/containers/%s/config.v2.json" % (root, name))
        if text:
            configs.append(text)
    ports = published_ports(nat_rules, docker_containers(configs))
    if listeners is not None:
        link_proxies(listeners, ports)
    return Publication(ports, container_networks(nat_rules), notes)
