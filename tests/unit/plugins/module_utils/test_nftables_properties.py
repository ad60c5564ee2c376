# Copyright (c) Portcullis contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Properties of the nft rendering: every allowed port and the management port are in the table, the text is
deterministic, and what the module reads back from its own text (tcp_rules_opening, _dport_items, the source
sets) is what the allowlist says."""

from __future__ import annotations

import ipaddress
import re

from hypothesis import given, settings
from hypothesis import strategies as st

from ansible_collections.portcullis.hardening.plugins.module_utils._allowlist import parse_allowlist
from ansible_collections.portcullis.hardening.plugins.module_utils._nftables import (
    COMMENT_MAX,
    _dport_items,
    allowlist_rules,
    render_table,
    tcp_rules_opening,
)

from .test_allowlist_properties import SLOT, allowlists, as_entry

PROPERTY = settings(max_examples=200, deadline=None, derandomize=True)
DPORT = re.compile(r"(?:^|\s)(tcp|udp) dport (\{ [0-9, -]+ \}|[0-9]+(?:-[0-9]+)?) ")
SADDR = re.compile(r"^(ip6?) saddr (\{ [^}]+ \}|\S+) ")
COMMENT = re.compile(r' comment "([^"]*)"$')


@st.composite
def tables(draw):
    """(rules, render_table keyword arguments)."""
    rules = parse_allowlist(draw(allowlists())[0])
    kwargs = {
        "policy": draw(st.sampled_from(["drop", "reject"])),
        "management_ports": draw(st.lists(st.integers(1, 65535), max_size=3)),
        "log_dropped": draw(st.booleans()),
        "dhcpv6_client": draw(st.booleans()),
    }
    return rules, kwargs


def rule_lines(text):
    """The chain's rules, as render_table writes them (two tabs in)."""
    return [line[2:] for line in text.splitlines() if line.startswith("\t\t")]


def intervals(networks):
    """Merged [first, last] integer intervals of some networks (or ranges)."""
    merged = []
    for first, last in sorted(networks):
        if merged and first <= merged[-1][1] + 1:
            merged[-1][1] = max(merged[-1][1], last)
        else:
            merged.append([first, last])
    return merged


def read_elements(match):
    """nft set elements (10.0.0.0/8, 10.0.0.1, 10.0.0.0-10.0.0.2) as (first, last) integers."""
    items = []
    for element in match.strip("{} ").split(", "):
        if "-" in element:
            first, last = element.split("-")
            items.append((int(ipaddress.ip_address(first)), int(ipaddress.ip_address(last))))
        else:
            network = ipaddress.ip_network(element)
            items.append((int(network.network_address), int(network.broadcast_address)))
    return items


@PROPERTY
@given(tables())
def test_rendering_is_deterministic_and_well_formed(table):
    rules, kwargs = table
    text = render_table(rules, **kwargs)
    assert render_table(rules, **kwargs) == text
    assert render_table(parse_allowlist([as_entry(rule) for rule in rules]), **kwargs) == text  # parsed again
    bare = re.sub(r'"[^"]*"', '""', text)  # braces in comments are text
    assert bare.count("{") == bare.count("}") and text.endswith("}\n")
    for line in rule_lines(text)[1:]:  # the first is the chain's type and policy
        [comment] = COMMENT.findall(line)
        assert len(comment.encode("utf-8")) <= COMMENT_MAX
        assert all(32 <= ord(char) < 127 for char in comment) and '"' not in comment


@PROPERTY
@given(tables())
def test_every_allowed_port_and_the_management_ports_are_in_the_table(table):
    rules, kwargs = table
    lines = rule_lines(render_table(rules, **kwargs))
    for rule in rules:
        own = allowlist_rules(rule)
        tag = re.compile(r' comment "allowlist\[%d\]:[ "]' % rule.index)
        assert [line for line in lines if tag.search(line)] == own  # in the table, and nowhere else
        if rule.bind == "loopback":
            assert own == []  # loopback passes as a whole (iif "lo")
            continue
        assert own
        for line in own:
            [(protocol, ports)] = DPORT.findall(line.split(' comment "')[0])
            assert protocol == rule.protocol and _dport_items(ports) == [(rule.low, rule.high)]
            if not rule.sources:
                assert line.startswith("" if rule.family == "any" else "meta nfproto %s " % rule.family)
    ports = sorted(set(kwargs["management_ports"]))
    found = [line for line in lines if "portcullis: management port" in line]
    if ports:
        [line] = found
        assert line.startswith("tcp dport ") and " saddr " not in line and "nfproto" not in line
        assert _dport_items(DPORT.search(line).group(2)) == [(port, port) for port in ports]
    else:
        assert found == []


@PROPERTY
@given(tables())
def test_what_the_module_reads_back_is_the_allowlist(table):
    rules, kwargs = table
    text = render_table(rules, **kwargs)
    # tcp_rules_opening: the management rule, then exactly the rules of the entries that open the port
    management = set(kwargs["management_ports"])
    ports = management | {rule.low for rule in rules} | {rule.high for rule in rules} | {1, SLOT}
    for port in sorted(ports | {(rule.low + rule.high) // 2 for rule in rules} | {rule.high + 1 for rule in rules}):
        expected = [line for rule in rules if rule.protocol == "tcp" and rule.low <= port <= rule.high
                    for line in allowlist_rules(rule)]
        found = tcp_rules_opening(text, port)
        if port in management:
            assert "portcullis: management port" in found.pop(0)  # it comes before the allowlist's rules
        assert found == expected
    # the source sets: the entry's networks, merged the way nft merges an interval set
    for rule in rules:
        lines = allowlist_rules(rule)
        if rule.sources:
            assert len(lines) == len({network.version for network in rule.sources})
        for line in lines:
            match = SADDR.match(line)
            if not rule.sources:
                assert match is None
                continue
            version = 4 if match.group(1) == "ip" else 6
            wanted = intervals((int(network.network_address), int(network.broadcast_address))
                               for network in rule.sources if network.version == version)
            assert read_elements(match.group(2)) == [tuple(item) for item in wanted]
