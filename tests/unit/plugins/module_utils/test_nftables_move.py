# Copyright (c) Portcullis contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Moving a TCP port in a live Portcullis table (ssh_port): which rules open a port, and the table once moved.

The key property: moving the management port of a table render_table() wrote gives exactly the table
render_table() writes for the new port, so the firewall role, run afterwards with the new port, changes
nothing. The fixtures under fixtures/nft/ are real `nft list table inet portcullis` output.
"""

from __future__ import annotations

import itertools
import os

import pytest

from ansible_collections.portcullis.hardening.plugins.module_utils._allowlist import parse_allowlist
from ansible_collections.portcullis.hardening.plugins.module_utils._nftables import (
    move_tcp_port,
    render_table,
    tcp_rules_opening,
)

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "nft")


def fixture(name):
    with open(os.path.join(FIXTURES, name), encoding="utf-8") as handle:
        return handle.read()


# Allowlists that do not open 22/tcp themselves: only the management rule does.
ALLOWLISTS = {
    "empty": [],
    "web": [{"port": 80}, {"port": 443, "sources": ["10.0.0.0/8", "2001:db8::/32"], "comment": "web"}],
    "mixed": [
        {"port": 9100, "sources": ["10.0.0.0/8", "192.168.1.0/24"], "comment": "node exporter"},
        {"port": 5432, "bind": "loopback", "process": "postgres"},
        {"port": "60000-61000", "protocol": "udp", "comment": "mosh"},
        {"port": 22, "protocol": "udp", "comment": "not ssh"},
        {"port": 8443, "family": "ipv6"},
        {"port": 2200, "family": "ipv4"},
    ],
    "loopback-22": [{"port": 22, "bind": "loopback", "comment": "ssh, local only"}],
}
OPTIONS = [dict(zip(("policy", "log_dropped", "dhcpv6_client"), values))
           for values in itertools.product(("drop", "reject"), (False, True), (True, False))]


def options_id(options):
    return "-".join("%s=%s" % item for item in sorted(options.items()))


def management_rule(ports):
    ports = sorted(ports)
    text = str(ports[0]) if len(ports) == 1 else "{ %s }" % ", ".join(str(port) for port in ports)
    return 'tcp dport %s accept comment "portcullis: management port%s"' % (text, "s" if len(ports) > 1 else "")


# --- the key property --------------------------------------------------------------------------------

@pytest.mark.parametrize("options", OPTIONS, ids=options_id)
@pytest.mark.parametrize("name", sorted(ALLOWLISTS))
def test_move_is_render_table_with_the_new_management_port(name, options):
    rules = parse_allowlist(ALLOWLISTS[name])
    table = render_table(rules, management_ports=[22], **options)
    moved_text, moved = move_tcp_port(table, [22], 2222, keep_old=False)
    assert moved_text == render_table(rules, management_ports=[2222], **options)
    assert moved == 1


@pytest.mark.parametrize("options", OPTIONS, ids=options_id)
@pytest.mark.parametrize("name", sorted(ALLOWLISTS))
def test_move_keeping_the_old_port_is_render_table_with_both(name, options):
    rules = parse_allowlist(ALLOWLISTS[name])
    table = render_table(rules, management_ports=[22], **options)
    moved_text, moved = move_tcp_port(table, [22], 2222, keep_old=True)
    assert moved_text == render_table(rules, management_ports=[22, 2222], **options)
    assert moved == 1


@pytest.mark.parametrize("management, old, keep_old, expected", [
    ([22, 80], [22], False, [80, 2222]),
    ([22, 80], [22], True, [22, 80, 2222]),
    ([22, 2200], [22, 2200], False, [2222]),
    ([22, 2200], [22, 2200], True, [22, 2200, 2222]),
    ([22, 2222], [22], False, [2222]),  # the transition's table, finalized
    ([22, 2222], [22], True, [22, 2222]),
    ([22], [22, 2200], False, [2222]),  # an old port no rule opens is no trouble
])
def test_move_with_several_management_ports(management, old, keep_old, expected):
    rules = parse_allowlist(ALLOWLISTS["web"])
    table = render_table(rules, management_ports=management)
    moved_text, moved = move_tcp_port(table, old, 2222, keep_old)
    assert moved_text == render_table(rules, management_ports=expected)
    assert moved == 1


def test_transition_then_final_gives_the_final_table():
    rules = parse_allowlist(ALLOWLISTS["mixed"])
    table = render_table(rules, policy="reject", management_ports=[22], log_dropped=True)
    transition, _moved = move_tcp_port(table, [22], 2222, keep_old=True)
    final, moved = move_tcp_port(transition, [22], 2222, keep_old=False)
    assert final == move_tcp_port(table, [22], 2222, keep_old=False)[0]
    assert final == render_table(rules, policy="reject", management_ports=[2222], log_dropped=True)
    assert moved == 1


# --- allowlist rules that open the old port ---------------------------------------------------------------

def test_allowlist_rule_keeps_its_sources_when_moved():
    rules = parse_allowlist([{"port": 22, "sources": ["10.0.0.0/8"], "comment": "admin"}, {"port": 80}])
    table = render_table(rules, management_ports=[])
    moved_text, moved = move_tcp_port(table, [22], 2222, keep_old=False)
    assert moved == 1
    assert '\t\tip saddr 10.0.0.0/8 tcp dport 2222 accept comment "allowlist[0]: admin"' in moved_text.splitlines()
    assert "management port" not in moved_text  # the rule that opened the old port opens the new one: no new rule
    renamed = parse_allowlist([{"port": 2222, "sources": ["10.0.0.0/8"], "comment": "admin"}, {"port": 80}])
    assert moved_text == render_table(renamed, management_ports=[])
    assert tcp_rules_opening(moved_text, 22) == []
    assert tcp_rules_opening(moved_text, 2222) == [
        'ip saddr 10.0.0.0/8 tcp dport 2222 accept comment "allowlist[0]: admin"']


def test_allowlist_rule_with_both_families_moves_both_rules():
    rules = parse_allowlist([{"port": 22, "sources": ["10.0.0.0/8", "2001:db8::/32"], "comment": "admin"}])
    table = render_table(rules, management_ports=[])
    kept, moved = move_tcp_port(table, [22], 2222, keep_old=True)
    assert moved == 2
    assert tcp_rules_opening(kept, 22) == tcp_rules_opening(kept, 2222) == [
        'ip saddr 10.0.0.0/8 tcp dport { 22, 2222 } accept comment "allowlist[0]: admin"',
        'ip6 saddr 2001:db8::/32 tcp dport { 22, 2222 } accept comment "allowlist[0]: admin"',
    ]


def test_allowlist_rule_family_and_comment_stay():
    rules = parse_allowlist([{"port": 22, "family": "ipv6"}])
    table = render_table(rules, management_ports=[22])
    moved_text, moved = move_tcp_port(table, [22], 2222, keep_old=False)
    assert moved == 2
    # The comment said tcp/22 and still does: only the match changes.
    assert tcp_rules_opening(moved_text, 2222) == [
        'tcp dport 2222 accept comment "portcullis: management port"',
        'meta nfproto ipv6 tcp dport 2222 accept comment "allowlist[0]: tcp/22 ipv6 from anywhere"',
    ]


@pytest.mark.parametrize("name", ["drop-nft-1.0.6.txt", "drop-nft-1.1.3.txt"])
def test_move_in_a_real_nft_listing(name):
    listing = fixture(name)
    moved_text, moved = move_tcp_port(listing, [22], 2222, keep_old=False)
    assert moved == 2  # the management rule and allowlist[0]
    assert tcp_rules_opening(moved_text, 22) == []
    assert tcp_rules_opening(moved_text, 2222) == [
        'tcp dport 2222 accept comment "portcullis: management port"',
        'tcp dport 2222 accept comment "allowlist[0]: SSH"',
    ]
    changed = [(before, after) for before, after in zip(listing.splitlines(), moved_text.splitlines())
               if before != after]
    assert [(before.strip(), after.strip()) for before, after in changed] == [
        ('tcp dport 22 accept comment "portcullis: management port"',
         'tcp dport 2222 accept comment "portcullis: management port"'),
        ('tcp dport 22 accept comment "allowlist[0]: SSH"', 'tcp dport 2222 accept comment "allowlist[0]: SSH"'),
    ]
    assert len(moved_text.splitlines()) == len(listing.splitlines())


@pytest.mark.parametrize("name", ["reject-nft-1.0.6.txt", "reject-nft-1.1.3.txt"])
def test_move_in_a_real_nft_listing_with_a_management_set(name):
    listing = fixture(name)
    assert '\t\ttcp dport { 22, 2222 } accept comment "portcullis: management ports"' in listing.splitlines()
    moved_text, moved = move_tcp_port(listing, [22], 2222, keep_old=False)
    assert moved == 2
    lines = moved_text.splitlines()
    assert '\t\ttcp dport 2222 accept comment "portcullis: management port"' in lines
    assert '\t\ttcp dport 2222 accept comment "allowlist[0]: SSH"' in lines
    assert tcp_rules_opening(moved_text, 22) == []


# --- rules that are not edited ---------------------------------------------------------------------------

def test_range_rule_is_not_edited_and_is_reported():
    rules = parse_allowlist([{"port": "20-30", "comment": "legacy"}])
    table = render_table(rules, management_ports=[22])
    moved_text, moved = move_tcp_port(table, [22], 2222, keep_old=False)
    assert moved == 1  # the management rule only
    assert '\t\ttcp dport 20-30 accept comment "allowlist[0]: legacy"' in moved_text.splitlines()
    assert moved_text == render_table(rules, management_ports=[2222])
    assert tcp_rules_opening(moved_text, 22) == ['tcp dport 20-30 accept comment "allowlist[0]: legacy"']


def test_range_rule_alone_means_a_management_rule_is_inserted():
    rules = parse_allowlist([{"port": "20-30", "comment": "legacy"}])
    table = render_table(rules, management_ports=[])
    moved_text, moved = move_tcp_port(table, [22], 2222, keep_old=False)
    assert moved == 0
    assert moved_text == render_table(rules, management_ports=[2222])
    assert tcp_rules_opening(moved_text, 22) == ['tcp dport 20-30 accept comment "allowlist[0]: legacy"']


def test_set_with_a_range_is_not_edited():
    table = render_table([], management_ports=[]).replace(
        '"portcullis: DHCPv6 client"\n', '"portcullis: DHCPv6 client"\n\t\ttcp dport { 20-30, 80 } accept\n')
    moved_text, moved = move_tcp_port(table, [22], 2222, keep_old=False)
    assert moved == 0
    assert "\t\ttcp dport { 20-30, 80 } accept" in moved_text.splitlines()
    assert tcp_rules_opening(moved_text, 22) == ["tcp dport { 20-30, 80 } accept"]


def test_udp_and_drop_rules_are_not_edited():
    table = render_table(parse_allowlist([{"port": 22, "protocol": "udp", "comment": "u"}]), management_ports=[22])
    table = table.replace('"allowlist[0]: u"\n', '"allowlist[0]: u"\n\t\ttcp dport 22 drop comment "hand-made"\n')
    moved_text, moved = move_tcp_port(table, [22], 2222, keep_old=False)
    assert moved == 1
    lines = moved_text.splitlines()
    assert '\t\tudp dport 22 accept comment "allowlist[0]: u"' in lines
    assert '\t\ttcp dport 22 drop comment "hand-made"' in lines
    assert '\t\ttcp dport 2222 accept comment "portcullis: management port"' in lines


def test_a_comment_that_mentions_the_port_is_not_a_rule():
    """Regression: "tcp dport 22" inside a comment was edited and counted as a rule that opens the port."""
    entries = [{"port": 53, "protocol": "udp", "comment": "see tcp dport 22 here"}]
    rules = parse_allowlist(entries)
    table = render_table(rules, management_ports=[])
    assert tcp_rules_opening(table, 22) == []
    moved_text, moved = move_tcp_port(table, [22], 2222, keep_old=False)
    assert moved == 0
    assert moved_text == render_table(rules, management_ports=[2222])
    assert '"allowlist[0]: see tcp dport 22 here"' in moved_text


def test_a_tcp_rule_whose_comment_mentions_another_port_moves_only_its_match():
    rules = parse_allowlist([{"port": 22, "comment": "was tcp dport 2200 before"}])
    table = render_table(rules, management_ports=[])
    moved_text, moved = move_tcp_port(table, [22], 2222, keep_old=False)
    assert moved == 1
    assert '\t\ttcp dport 2222 accept comment "allowlist[0]: was tcp dport 2200 before"' in moved_text.splitlines()


def test_hand_written_set_of_single_ports():
    table = render_table([], management_ports=[]).replace(
        '"portcullis: DHCPv6 client"\n', '"portcullis: DHCPv6 client"\n\t\ttcp dport { 22, 80 } accept\n')
    assert move_tcp_port(table, [22], 2222, keep_old=False)[0].splitlines()[-3] == "\t\ttcp dport { 80, 2222 } accept"
    assert move_tcp_port(table, [22], 2222, keep_old=True)[0].splitlines()[-3] == (
        "\t\ttcp dport { 22, 80, 2222 } accept")


# --- no rule opens the old port ------------------------------------------------------------------------

@pytest.mark.parametrize("options", OPTIONS, ids=options_id)
@pytest.mark.parametrize("name", sorted(ALLOWLISTS))
def test_no_rule_opens_the_old_port_inserts_a_management_rule_where_render_table_puts_it(name, options):
    rules = parse_allowlist(ALLOWLISTS[name])
    table = render_table(rules, management_ports=[], **options)
    assert management_rule([22]) not in table
    moved_text, moved = move_tcp_port(table, [22], 2222, keep_old=True)
    assert moved == 0
    assert moved_text == render_table(rules, management_ports=[2222], **options)
    assert move_tcp_port(table, [22], 2222, keep_old=False)[0] == moved_text


def test_no_rule_and_no_place_for_one_raises():
    table = ("table inet portcullis {\n\tchain input {\n\t\ttype filter hook input priority filter; policy drop;\n"
             "\t}\n}\n")
    with pytest.raises(ValueError, match="no rule that opens 22, 2200/tcp"):
        move_tcp_port(table, [2200, 22], 2222, keep_old=False)


# --- tcp_rules_opening --------------------------------------------------------------------------------

def test_tcp_rules_opening_in_a_real_listing():
    listing = fixture("reject-nft-1.1.3.txt")
    assert tcp_rules_opening(listing, 22) == [
        'tcp dport { 22, 2222 } accept comment "portcullis: management ports"',
        'tcp dport 22 accept comment "allowlist[0]: SSH"',
    ]
    assert tcp_rules_opening(listing, 2222) == ['tcp dport { 22, 2222 } accept comment "portcullis: management ports"']
    assert tcp_rules_opening(listing, 9100) == [
        'ip saddr { 10.0.0.0/8, 192.168.1.0/24 } tcp dport 9100 accept comment '
        '"allowlist[1]: node exporter, from the monitoring network"']
    assert tcp_rules_opening(listing, 443) == ['meta nfproto ipv4 tcp dport 443 accept comment '
                                               '"allowlist[4]: tcp/443 ipv4 from anywhere"']
    assert tcp_rules_opening(listing, 53) == []  # UDP only
    assert tcp_rules_opening(listing, 8050) == []  # the 8000-8100 range is UDP
    assert tcp_rules_opening(listing, 5432) == []  # loopback-only entries have no rule
    assert tcp_rules_opening(listing, 546) == []


@pytest.mark.parametrize("port, count", [(19, 0), (20, 1), (25, 1), (30, 1), (31, 0)])
def test_tcp_rules_opening_ranges(port, count):
    table = render_table(parse_allowlist([{"port": "20-30"}]), management_ports=[])
    assert len(tcp_rules_opening(table, port)) == count


def test_tcp_rules_opening_without_comment_and_not_accept():
    table = ("\t\ttcp dport 22 accept\n"
             "\t\ttcp dport 22 drop\n"
             '\t\ttcp dport 22 reject comment "x"\n'
             "\t\tudp dport 22 accept\n"
             '\t\tct state established,related accept comment "portcullis: replies and related traffic"\n')
    assert tcp_rules_opening(table, 22) == ["tcp dport 22 accept"]
