# Copyright (c) Portcullis contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The filters of a host's input path, and what each does to a new connection to a port.

netfilter runs every base chain of the input hook, and a packet gets in only when none of them drops it: an accept
in one table never overrides a drop in another. This module asks each filter what it does to a new connection
from a network address (not loopback) to a port: the native nftables chains (the Portcullis table, firewalld's,
any other) by walking their rules from the `nft -j list ruleset` document, ufw by its own rules and default
policy. A rule it cannot judge (a source address, an interface, an iptables-nft `xt` match) is passed over: the
answer is what the rest of the chain does. Pure functions; private to the collection.
"""

from __future__ import annotations

from ansible_collections.portcullis.hardening.plugins.module_utils._ufw import ANY as UFW_ANY

FAMILIES_OF_TABLE = {"ip": ("ipv4",), "ip6": ("ipv6",), "inet": ("ipv4", "ipv6")}
NFPROTO = {"ipv4": "ipv4", "ipv6": "ipv6"}
MAX_DEPTH = 16
UNKNOWN = object()


def _objects(document):
    return [item for item in (document or {}).get("nftables", []) if isinstance(item, dict)]


class Ruleset:
    """The chains, rules and sets of a `nft -j list ruleset` document."""

    def __init__(self, document):
        self.chains = {}
        self.rules = {}
        self.sets = {}
        self.xt_tables = set()
        for item in _objects(document):
            if "chain" in item:
                chain = item["chain"]
                self.chains[(chain["family"], chain["table"], chain["name"])] = chain
            elif "rule" in item:
                rule = item["rule"]
                key = (rule["family"], rule["table"], rule["chain"])
                self.rules.setdefault(key, []).append(rule)
                if any(isinstance(expression, dict) and "xt" in expression for expression in rule.get("expr", [])):
                    self.xt_tables.add((rule["family"], rule["table"]))
            elif "set" in item or "map" in item:
                value = item.get("set") or item.get("map")
                self.sets[(value["family"], value["table"], value["name"])] = value

    def input_chains(self):
        """The base chains of the input hook, as (family, table, name, policy), by priority."""
        found = []
        for (family, table, name), chain in self.chains.items():
            if chain.get("hook") == "input" and chain.get("type", "filter") == "filter":
                found.append((chain.get("prio", 0), family, table, name, chain.get("policy", "accept")))
        return [item[1:] for item in sorted(found, key=lambda item: (item[0], item[1:4]))]


def _value_matches(value, wanted, ruleset, family, table):
    """Whether `wanted` (an int or a word) is in `value` (a literal, a range, a set, or @named); UNKNOWN when the
    value is not one of those."""
    if isinstance(value, (int, str)) and not (isinstance(value, str) and value.startswith("@")):
        return value == wanted
    if isinstance(value, str):
        named = ruleset.sets.get((family, table, value[1:]))
        if named is None:
            return UNKNOWN
        elements = named.get("elem", [])
        return _in_elements(elements, wanted, ruleset, family, table)
    if isinstance(value, dict):
        if "range" in value:
            low, high = value["range"]
            return isinstance(wanted, int) and low <= wanted <= high
        if "set" in value:
            return _in_elements(value["set"], wanted, ruleset, family, table)
    if isinstance(value, list):
        return _in_elements(value, wanted, ruleset, family, table)
    return UNKNOWN


def _in_elements(elements, wanted, ruleset, family, table):
    unknown = False
    for element in elements if isinstance(elements, list) else [elements]:
        if isinstance(element, dict) and "elem" in element:
            element = element["elem"].get("val")
        found = _value_matches(element, wanted, ruleset, family, table)
        if found is True:
            return True
        unknown = unknown or found is UNKNOWN
    return UNKNOWN if unknown else False


def _match(expression, packet, ruleset, family, table):
    """True, False or UNKNOWN: what one `match` expression says of a new connection `packet`."""
    left, right, op = expression.get("left"), expression.get("right"), expression.get("op", "==")
    negate = op == "!="
    if op not in ("==", "!=", "in"):
        return UNKNOWN
    value = UNKNOWN
    if isinstance(left, dict) and "payload" in left:
        payload = left["payload"]
        if payload.get("field") == "dport" and payload.get("protocol") in ("tcp", "udp", "th"):
            if payload["protocol"] != "th" and payload["protocol"] != packet["protocol"]:
                return negate is True  # a tcp match never matches a udp packet
            value = _value_matches(right, packet["port"], ruleset, family, table)
        elif payload.get("protocol") in ("icmp", "icmpv6"):
            return negate
        else:
            return UNKNOWN  # addresses, source ports: depends on the client
    elif isinstance(left, dict) and "meta" in left:
        key = left["meta"].get("key")
        if key == "l4proto":
            value = _value_matches(right, packet["protocol"], ruleset, family, table)
            if value is False and isinstance(right, str) and right in ("icmp", "ipv6-icmp", "icmpv6"):
                value = False
        elif key == "nfproto":
            value = _value_matches(right, NFPROTO[packet["family"]], ruleset, family, table)
        elif key in ("iifname", "iif", "iiftype"):
            # Only loopback can be told: the client is on some other interface.
            if right in ("lo", "loopback") or right == 772:
                value = False
            else:
                return UNKNOWN
        else:
            return UNKNOWN
    elif isinstance(left, dict) and "ct" in left and left["ct"].get("key") == "state":
        value = _value_matches(right, "new", ruleset, family, table)
        if value is UNKNOWN:
            return UNKNOWN
    else:
        return UNKNOWN
    if value is UNKNOWN:
        return UNKNOWN
    return (not value) if negate else value


def _verdict(statement):
    for key in ("accept", "drop", "reject", "return", "jump", "goto"):
        if key in statement:
            return key, statement[key]
    return None, None


def walk(ruleset, family, table, chain, packet, depth=0):
    """(verdict, where) of a new connection through one chain: "accept", "drop" (a drop or a reject) or
    "continue" (nothing decided; the caller's next rule, or the base chain's policy), and the rule or chain that
    decided it, in words."""
    if depth > MAX_DEPTH:
        return "continue", None
    for rule in ruleset.rules.get((family, table, chain), []):
        matched = True
        verdict = None
        for statement in rule.get("expr", []):
            if "match" in statement:
                result = _match(statement["match"], packet, ruleset, family, table)
                if result is UNKNOWN:
                    matched = UNKNOWN
                elif result is False:
                    matched = False
                    break
                continue
            kind, target = _verdict(statement)
            if kind:
                verdict = (kind, target)
                break
            if "vmap" in statement or "xt" in statement:
                matched = UNKNOWN
        if matched is not True or verdict is None:
            continue
        kind, target = verdict
        where = "%s %s chain %s (rule handle %s)" % (family, table, chain, rule.get("handle"))
        if kind == "accept":
            return "accept", where
        if kind in ("drop", "reject"):
            return "drop", where
        if kind == "return":
            return "continue", None
        inner, inner_where = walk(ruleset, family, table, target["target"], packet, depth + 1)
        if kind == "goto":
            return inner, inner_where
        if inner != "continue":
            return inner, inner_where
    return "continue", None


def nft_filters(document, packet, skip_tables=()):
    """What every native nftables base chain of the input hook does to `packet`, as
    [{"filter", "verdict", "where"}], and notes on the tables it could not judge (iptables-nft ones)."""
    ruleset = Ruleset(document)
    results, notes = [], []
    for family, table, name, policy in ruleset.input_chains():
        if packet["family"] not in FAMILIES_OF_TABLE.get(family, ()) or (family, table) in skip_tables:
            continue
        if (family, table) in ruleset.xt_tables:
            notes.append("table %s %s has iptables-nft rules (xt): what it does to a port is not judged here"
                         % (family, table))
            continue
        verdict, where = walk(ruleset, family, table, name, packet)
        if verdict == "continue":
            verdict = "drop" if policy == "drop" else "accept"
            where = "%s %s chain %s (policy %s)" % (family, table, name, policy)
        results.append({"filter": "nftables table %s %s" % (family, table), "verdict": verdict, "where": where})
    return results, notes


def ufw_filter(state, packet):
    """What an active ufw does to `packet`: its first incoming rule for the port and family (every address), or
    its default incoming policy. With IPV6=no ufw does not filter IPv6 at all."""
    if packet["family"] == "ipv6" and state.defaults.get("IPV6", "yes").lower() != "yes":
        return {"filter": "ufw", "verdict": "accept", "where": "ufw does not filter IPv6 (IPV6=no in /etc/default/ufw)"}
    for rule in state.rules:
        if rule.family != packet["family"] or not rule.incoming or rule.interface_in or rule.sport != "any":
            continue
        if rule.source_network() is not None or rule.dst != UFW_ANY[rule.family]:
            continue
        if rule.protocol not in (packet["protocol"], "any"):
            continue
        if not any(low <= packet["port"] <= high for low, high in rule.port_ranges()):
            continue
        verdict = "accept" if rule.opens else "drop"
        return {"filter": "ufw", "verdict": verdict, "where": "ufw rule `%s`" % rule.text()}
    policy = state.input_policy
    return {"filter": "ufw", "verdict": "accept" if policy == "ACCEPT" else "drop",
            "where": "ufw's default incoming policy (%s)" % policy}


def probe_packets(openings):
    """The new connections that test the allowlist's openings to every address: one per family and port range
    (its first port), each with the index of the entry it tests: [(packet, rule)]."""
    packets = []
    for opening in openings:
        if opening.source is not None:
            continue
        for family in opening.families():
            packet = {"protocol": opening.protocol, "port": opening.low, "family": family}
            if packet not in [known for known, _rule in packets]:
                packets.append((packet, opening.rule))
    return packets


def closed_port(openings, protocol="tcp", family="ipv4"):
    """A port the openings do not let in for `family` (to test whether anything denies by default)."""
    for port in range(65535, 1024, -1):
        if not any(opening.protocol == protocol and opening.low <= port <= opening.high
                   and opening.family in ("any", family) for opening in openings):
            return port
    return None
