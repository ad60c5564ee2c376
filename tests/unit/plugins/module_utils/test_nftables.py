# Copyright (c) Portcullis contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The nftables layer. The fixtures under fixtures/nft/ are real nft output: tables loaded into a
throw-away network namespace with nft 1.0.6 (Debian 12) and nft 1.1.3 (Debian 13), listed back with
`nft list table inet portcullis` and `nft -j list table inet portcullis`."""

from __future__ import annotations

import hashlib
import json
import os

import pytest

from ansible_collections.portcullis.hardening.plugins.module_utils._allowlist import parse_allowlist
from ansible_collections.portcullis.hardening.plugins.module_utils._nftables import (
    COMMENT_MAX,
    TABLE_FAMILY,
    TABLE_NAME,
    allowlist_rules,
    apply_script,
    comment_text,
    ensure_include,
    include_covers,
    normalise_listing,
    persist_include_line,
    published_allow_rules,
    remove_include,
    removal_script,
    render_table,
    rollback_script,
    table_absent,
)

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "nft")
HEAD = "add table inet portcullis\ndelete table inet portcullis\n"


def fixture(name):
    with open(os.path.join(FIXTURES, name), encoding="utf-8") as handle:
        return handle.read()


def one(entry):
    return allowlist_rules(parse_allowlist([entry])[0])


def test_table_identity():
    assert (TABLE_FAMILY, TABLE_NAME) == ("inet", "portcullis")


@pytest.mark.parametrize("entry, expected", [
    ({"port": 22}, ['tcp dport 22 accept comment "allowlist[0]: tcp/22 from anywhere"']),
    ({"port": "8000-8100", "protocol": "udp", "comment": "app"},
     ['udp dport 8000-8100 accept comment "allowlist[0]: app"']),
    ({"port": "443-443"}, ['tcp dport 443 accept comment "allowlist[0]: tcp/443 from anywhere"']),
    ({"port": 53, "protocol": "udp", "family": "ipv4", "comment": "dns"},
     ['meta nfproto ipv4 udp dport 53 accept comment "allowlist[0]: dns"']),
    ({"port": 443, "family": "ipv6", "comment": "web"},
     ['meta nfproto ipv6 tcp dport 443 accept comment "allowlist[0]: web"']),
    ({"port": 9100, "sources": ["10.0.0.0/8"], "comment": "m"},
     ['ip saddr 10.0.0.0/8 tcp dport 9100 accept comment "allowlist[0]: m"']),
    ({"port": 9100, "family": "ipv4", "sources": ["10.0.0.0/8", "192.0.2.0/24"], "comment": "m"},
     ['ip saddr { 10.0.0.0/8, 192.0.2.0/24 } tcp dport 9100 accept comment "allowlist[0]: m"']),
    ({"port": 9100, "family": "ipv6", "sources": ["2001:db8::/32"], "comment": "m"},
     ['ip6 saddr 2001:db8::/32 tcp dport 9100 accept comment "allowlist[0]: m"']),
    ({"port": "5000-5010", "protocol": "udp", "sources": ["2001:db8::/32", "192.0.2.0/24", "fd00::/8"],
      "comment": "m"},
     ['ip saddr 192.0.2.0/24 udp dport 5000-5010 accept comment "allowlist[0]: m"',
      'ip6 saddr { 2001:db8::/32, fd00::/8 } udp dport 5000-5010 accept comment "allowlist[0]: m"']),
    # hosts are printed without /32 or /128, as nft lists them
    ({"port": 22, "sources": ["192.0.2.7/32", "2001:db8::1/128"], "comment": "m"},
     ['ip saddr 192.0.2.7 tcp dport 22 accept comment "allowlist[0]: m"',
      'ip6 saddr 2001:db8::1 tcp dport 22 accept comment "allowlist[0]: m"']),
    # nft merges overlapping and adjacent elements of an interval set; so does the rendering
    ({"port": 22, "sources": ["10.1.0.0/16", "10.0.0.0/8", "10.0.0.0/8"], "comment": "m"},
     ['ip saddr 10.0.0.0/8 tcp dport 22 accept comment "allowlist[0]: m"']),
    ({"port": 22, "sources": ["10.0.0.0/9", "10.128.0.0/9", "192.0.2.0/24"], "comment": "m"},
     ['ip saddr { 10.0.0.0/8, 192.0.2.0/24 } tcp dport 22 accept comment "allowlist[0]: m"']),
    ({"port": 22, "sources": ["10.0.0.0/31", "10.0.0.2/32"], "comment": "m"},
     ['ip saddr 10.0.0.0-10.0.0.2 tcp dport 22 accept comment "allowlist[0]: m"']),
    ({"port": 22, "sources": ["2001:db8::/127", "2001:db8::2/128"], "comment": "m"},
     ['ip6 saddr 2001:db8::-2001:db8::2 tcp dport 22 accept comment "allowlist[0]: m"']),
    ({"port": 22, "sources": ["0.0.0.0/0"], "comment": "m"},
     ['ip saddr 0.0.0.0/0 tcp dport 22 accept comment "allowlist[0]: m"']),
    ({"port": 22, "sources": ["::/0"], "comment": "m"},
     ['ip6 saddr ::/0 tcp dport 22 accept comment "allowlist[0]: m"']),
    # loopback traffic is accepted as a whole: a loopback-only entry needs no rule
    ({"port": 5432, "bind": "loopback", "process": "postgres"}, []),
    ({"port": 5432, "bind": "loopback", "family": "ipv4"}, []),
])
def test_allowlist_rules(entry, expected):
    assert one(entry) == expected


def test_rule_comment_names_the_entry_index():
    rules = parse_allowlist([{"port": 1}, {"port": 2}, {"port": 3, "process": "sshd"}])
    assert [allowlist_rules(rule) for rule in rules] == [
        ['tcp dport 1 accept comment "allowlist[0]: tcp/1 from anywhere"'],
        ['tcp dport 2 accept comment "allowlist[1]: tcp/2 from anywhere"'],
        ['tcp dport 3 accept comment "allowlist[2]: tcp/3 from anywhere for sshd"'],
    ]


@pytest.mark.parametrize("text, expected", [
    ("SSH", "SSH"),
    ('the "main" site', "the 'main' site"),
    ("résolveur café", "resolveur cafe"),
    ("snow \u2603 man", "snow ? man"),
    ("tab\there\nnew  line\r\x00end\x7f", "tab here new line end"),
    ("  padded  ", "padded"),
    ("a\\b $x #y {z} ;w", "a\\b $x #y {z} ;w"),  # nft strings have no escapes: all kept
    ("\uff33\uff33\uff28", "SSH"),  # fullwidth letters: NFKD compatibility forms
    ("x" * COMMENT_MAX, "x" * COMMENT_MAX),
    ("x" * (COMMENT_MAX + 1), "x" * (COMMENT_MAX - 3) + "..."),
    ("x" * 124 + "   yyyyyy", "x" * 124 + "..."),
])
def test_comment_text(text, expected):
    assert comment_text(text) == expected


def test_long_and_unusual_comments_in_rules():
    rule_text = one({"port": 22, "comment": 'über "quoted" ' + "z" * 300})[0]
    comment = rule_text.split(" comment ", maxsplit=1)[1]
    assert comment.startswith('"allowlist[0]: uber \'quoted\' zzz') and comment.endswith('..."')
    assert len(comment) - 2 == COMMENT_MAX
    assert comment.count('"') == 2
    rule_text.encode("ascii")


BASE = [
    "table inet portcullis {",
    '\tcomment "managed by portcullis.hardening.firewall, changes here are overwritten"',
    "\tchain input {",
    "\t\ttype filter hook input priority filter; policy drop;",
    '\t\tct state established,related accept comment "portcullis: replies and related traffic"',
    '\t\tct state invalid drop comment "portcullis: invalid packets"',
    '\t\tiif "lo" accept comment "portcullis: loopback"',
    '\t\tip saddr 127.0.0.0/8 drop comment "portcullis: loopback address from the network"',
    '\t\tip6 saddr ::1 drop comment "portcullis: loopback address from the network"',
    '\t\ticmp type { destination-unreachable, time-exceeded, parameter-problem } accept'
    ' comment "portcullis: essential ICMP"',
    '\t\ticmp type echo-request limit rate 10/second burst 10 packets accept comment "portcullis: ping, rate-limited"',
    "\t\ticmpv6 type { destination-unreachable, packet-too-big, time-exceeded, parameter-problem,"
    " mld-listener-query, mld-listener-report, mld-listener-done, nd-router-solicit, nd-router-advert,"
    " nd-neighbor-solicit, nd-neighbor-advert, mld2-listener-report } accept"
    ' comment "portcullis: essential ICMPv6, neighbour discovery, MLD"',
    '\t\ticmpv6 type echo-request limit rate 10/second burst 10 packets accept'
    ' comment "portcullis: ping, rate-limited"',
]
DHCPV6 = '\t\tip6 daddr fe80::/64 udp dport 546 accept comment "portcullis: DHCPv6 client"'
MANAGEMENT_22 = '\t\ttcp dport 22 accept comment "portcullis: management port"'
END = ["\t}", "}"]
LOG = ('\t\tlimit rate 5/minute burst 10 packets log prefix "portcullis drop: " level info'
       ' comment "portcullis: log what the policy %ss"')
REJECT = ['\t\tmeta l4proto tcp reject with tcp reset comment "portcullis: policy reject"',
          '\t\treject with icmpx admin-prohibited comment "portcullis: policy reject"']


def text(lines):
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("kwargs, middle", [
    ({}, [DHCPV6, MANAGEMENT_22]),
    ({"management_ports": [22]}, [DHCPV6, MANAGEMENT_22]),
    ({"management_ports": (2222, 22, 2222)},
     [DHCPV6, '\t\ttcp dport { 22, 2222 } accept comment "portcullis: management ports"']),
    ({"management_ports": ()}, [DHCPV6]),
    ({"dhcpv6_client": False}, [MANAGEMENT_22]),
    ({"log_dropped": True}, [DHCPV6, MANAGEMENT_22, LOG % "drop"]),
    ({"policy": "reject"}, [DHCPV6, MANAGEMENT_22] + REJECT),
    ({"policy": "reject", "log_dropped": True}, [DHCPV6, MANAGEMENT_22, LOG % "reject"] + REJECT),
])
def test_render_empty_allowlist(kwargs, middle):
    assert render_table([], **kwargs) == text(BASE + middle + END)


@pytest.mark.parametrize("kwargs, message", [
    ({"policy": "accept"}, "policy 'accept' must be one of: drop, reject"),
    ({"management_ports": [0]}, "management port 0 is not a port number (1-65535)"),
    ({"management_ports": [65536]}, "management port 65536 is not a port number (1-65535)"),
    ({"management_ports": ["22"]}, "management port '22' is not a port number (1-65535)"),
    ({"management_ports": [True]}, "management port True is not a port number (1-65535)"),
])
def test_render_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError) as error:
        render_table([], **kwargs)
    assert str(error.value) == message


def test_allowlist_rules_come_after_management_and_before_the_end_in_allowlist_order():
    rules = parse_allowlist([{"port": 80, "comment": "b"}, {"port": 25, "comment": "a"}])
    lines = render_table(rules, policy="reject", log_dropped=True).splitlines()
    assert lines[-8:-2] == [
        MANAGEMENT_22,
        '\t\ttcp dport 80 accept comment "allowlist[0]: b"',
        '\t\ttcp dport 25 accept comment "allowlist[1]: a"',
        LOG % "reject",
    ] + REJECT


# The allowlist of docs/audit.md, with a few more shapes.
REALISTIC = [
    {"port": 22, "process": "sshd", "comment": "SSH"},
    {"port": 9100, "sources": ["10.0.0.0/8", "2001:db8:10::/48"], "comment": "node exporter, from the monitoring network"},
    {"port": 5432, "bind": "loopback", "process": "postgres"},
    {"port": "60000-61000", "protocol": "udp", "comment": "mosh"},
    {"port": 443, "family": "ipv6"},
]

# Loaded into nft 1.0.6 and 1.1.3, `nft list table inet portcullis` prints exactly this back.
GOLDEN = """\
table inet portcullis {
\tcomment "managed by portcullis.hardening.firewall, changes here are overwritten"
\tchain input {
\t\ttype filter hook input priority filter; policy drop;
\t\tct state established,related accept comment "portcullis: replies and related traffic"
\t\tct state invalid drop comment "portcullis: invalid packets"
\t\tiif "lo" accept comment "portcullis: loopback"
\t\tip saddr 127.0.0.0/8 drop comment "portcullis: loopback address from the network"
\t\tip6 saddr ::1 drop comment "portcullis: loopback address from the network"
\t\ticmp type { destination-unreachable, time-exceeded, parameter-problem } accept \
comment "portcullis: essential ICMP"
\t\ticmp type echo-request limit rate 10/second burst 10 packets accept comment "portcullis: ping, rate-limited"
\t\ticmpv6 type { destination-unreachable, packet-too-big, time-exceeded, parameter-problem, mld-listener-query, \
mld-listener-report, mld-listener-done, nd-router-solicit, nd-router-advert, nd-neighbor-solicit, nd-neighbor-advert, \
mld2-listener-report } accept comment "portcullis: essential ICMPv6, neighbour discovery, MLD"
\t\ticmpv6 type echo-request limit rate 10/second burst 10 packets accept comment "portcullis: ping, rate-limited"
\t\tip6 daddr fe80::/64 udp dport 546 accept comment "portcullis: DHCPv6 client"
\t\ttcp dport 22 accept comment "portcullis: management port"
\t\ttcp dport 22 accept comment "allowlist[0]: SSH"
\t\tip saddr 10.0.0.0/8 tcp dport 9100 accept comment "allowlist[1]: node exporter, from the monitoring network"
\t\tip6 saddr 2001:db8:10::/48 tcp dport 9100 accept comment "allowlist[1]: node exporter, from the monitoring network"
\t\tudp dport 60000-61000 accept comment "allowlist[3]: mosh"
\t\tmeta nfproto ipv6 tcp dport 443 accept comment "allowlist[4]: tcp/443 ipv6 from anywhere"
\t}
}
"""


def test_golden_realistic_allowlist():
    assert render_table(parse_allowlist(REALISTIC)) == GOLDEN


def test_render_is_deterministic():
    first = render_table(parse_allowlist(REALISTIC), policy="reject", management_ports=[2222, 22], log_dropped=True)
    again = render_table(parse_allowlist(REALISTIC), policy="reject", management_ports=(22, 2222), log_dropped=True)
    assert first == again
    first.encode("ascii")
    assert first.endswith("}\n") and "\n\n" not in first


# The allowlist behind the fixtures: every shape, including odd sources and comments.
EVERY_SHAPE = [
    {"port": 22, "process": "sshd", "comment": "SSH"},
    {"port": 9100, "sources": ["10.0.0.0/8", "192.168.1.0/24"], "comment": "node exporter, from the monitoring network"},
    {"port": 5432, "bind": "loopback", "process": "postgres"},
    {"port": "8000-8100", "protocol": "udp", "family": "ipv6", "sources": ["2001:db8::/32"]},
    {"port": 443, "family": "ipv4"},
    {"port": 53, "protocol": "udp", "sources": ["192.0.2.0/24", "2001:db8:1::/48", "192.0.2.7/32"],
     "comment": 'DNS "internal" r\u00e9solveur \u2603'},
    {"port": 8443, "family": "ipv6"},
    {"port": 10050, "sources": ["10.0.0.0/31", "10.0.0.2/32", "fd00::1/128"],
     "comment": "x" * 200},
]


@pytest.mark.parametrize("version", ["1.0.6", "1.1.3"])
@pytest.mark.parametrize("kwargs, name", [
    ({}, "drop"),
    ({"policy": "reject", "management_ports": (22, 2222), "log_dropped": True}, "reject"),
])
def test_render_is_what_real_nft_lists(version, kwargs, name):
    # The fixtures were listed by real nft with an IPv4-mapped source as well, which the allowlist now refuses.
    listed = fixture("%s-nft-%s.txt" % (name, version)).replace("{ ::ffff:192.0.2.0/120, fd00::1 }", "fd00::1")
    assert render_table(parse_allowlist(EVERY_SHAPE), **kwargs) == listed


# --- the forward and published chains (published container ports) --------------------------------------------

PUBLISHED_FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "published")
# The allowlist and container networks behind render-table-published-nft-1.0.6.nft, which nft 1.0.6 loaded into a
# network namespace and listed back byte for byte.
PUBLISHED_ALLOWLIST = [
    {"port": 22},
    {"port": 8082},
    {"port": "9000-9010", "published": True, "sources": ["10.0.0.0/8", "2001:db8::/32"]},
    {"port": 5300, "protocol": "udp", "family": "ipv6", "published": True},
    {"port": 443, "family": "ipv4"},
]
CONTAINER_NETWORKS = {"ipv4": ["172.17.0.0/16", "10.88.0.0/16"], "ipv6": ["fd17::/64"]}


def chain_lines(table_text, chain):
    """The rule lines (stripped) of one chain of a rendered table."""
    lines = table_text.splitlines()
    start = lines.index("\tchain %s {" % chain)
    end = lines.index("\t}", start)
    return [line.strip() for line in lines[start + 1:end]]


def test_render_with_published_is_what_real_nft_lists():
    with open(os.path.join(PUBLISHED_FIXTURES, "render-table-published-nft-1.0.6.nft"), encoding="utf-8") as handle:
        listed = handle.read()
    assert render_table(parse_allowlist(PUBLISHED_ALLOWLIST), log_dropped=True, published=CONTAINER_NETWORKS) == listed


def test_without_published_there_is_no_forward_chain():
    table = render_table(parse_allowlist(PUBLISHED_ALLOWLIST))
    assert "chain forward" not in table and "chain published" not in table and "ct original" not in table
    assert table == render_table(parse_allowlist(PUBLISHED_ALLOWLIST), published=None)


def test_published_only_entries_stay_out_of_the_input_chain():
    table = render_table(parse_allowlist(PUBLISHED_ALLOWLIST), published={})
    input_chain = chain_lines(table, "input")
    assert not [line for line in input_chain if "allowlist[2]" in line or "allowlist[3]" in line]
    assert 'tcp dport 8082 accept comment "allowlist[1]: tcp/8082 from anywhere"' in input_chain
    assert [line for line in chain_lines(table, "published") if "allowlist[" in line][2:4] == [
        'ip saddr 10.0.0.0/8 meta l4proto tcp ct original proto-dst 9000-9010 accept comment "allowlist[2]: '
        'tcp/9000-9010 from 10.0.0.0/8, 2001:db8::/32 (published container port only)"',
        'ip6 saddr 2001:db8::/32 meta l4proto tcp ct original proto-dst 9000-9010 accept comment "allowlist[2]: '
        'tcp/9000-9010 from 10.0.0.0/8, 2001:db8::/32 (published container port only)"',
    ]


def test_the_forward_chain_sends_new_dnat_connections_to_the_published_chain():
    table = render_table([], published={"ipv4": [], "ipv6": []})
    assert chain_lines(table, "forward") == [
        "type filter hook forward priority filter; policy accept;",
        'ct state new ct status dnat jump published comment "portcullis: new connections to published ports"',
    ]
    # No container network, no entry: the published chain drops every new connection to a published port.
    assert chain_lines(table, "published") == [
        'drop comment "portcullis: published ports the allowlist does not allow"']


@pytest.mark.parametrize("policy", ["drop", "reject"])
def test_log_dropped_logs_in_the_published_chain_before_its_drop(policy):
    rules = parse_allowlist([{"port": 8081}])
    quiet = chain_lines(render_table(rules, policy=policy, published=CONTAINER_NETWORKS), "published")
    logged = chain_lines(render_table(rules, policy=policy, log_dropped=True, published=CONTAINER_NETWORKS),
                         "published")
    # The published chain always drops (a reset after the DNAT would carry the container's address).
    assert logged == quiet[:-1] + [
        'limit rate 5/minute burst 10 packets log prefix "portcullis drop: " level info '
        'comment "portcullis: log what the policy drops"', quiet[-1]]
    assert quiet[-1] == 'drop comment "portcullis: published ports the allowlist does not allow"'


def test_container_networks_are_merged_and_split_by_family():
    table = render_table([], published={"ipv4": ["172.18.0.0/16", "172.17.0.0/16", "10.88.0.0/16"], "ipv6": []})
    assert chain_lines(table, "published")[:1] == [
        'ip saddr { 10.88.0.0/16, 172.17.0.0-172.18.255.255 } accept comment "portcullis: from the container networks"']
    only_v6 = render_table([], published={"ipv6": ["fd17::/64"]})
    assert chain_lines(only_v6, "published")[:1] == [
        'ip6 saddr fd17::/64 accept comment "portcullis: from the container networks"']


@pytest.mark.parametrize("entry, expected", [
    ({"port": 8081}, ['meta l4proto tcp ct original proto-dst 8081 accept comment "allowlist[0]: tcp/8081 from anywhere"']),
    ({"port": "9000-9010", "protocol": "udp", "family": "ipv6", "comment": "game"},
     ['meta nfproto ipv6 meta l4proto udp ct original proto-dst 9000-9010 accept comment "allowlist[0]: game"']),
    ({"port": 8081, "sources": ["10.0.0.0/8", "192.0.2.0/24", "2001:db8::/32"], "comment": "x"},
     ['ip saddr { 10.0.0.0/8, 192.0.2.0/24 } meta l4proto tcp ct original proto-dst 8081 accept comment '
      '"allowlist[0]: x"',
      'ip6 saddr 2001:db8::/32 meta l4proto tcp ct original proto-dst 8081 accept comment "allowlist[0]: x"']),
    ({"port": 8081, "family": "ipv4", "sources": ["10.0.0.0/8"], "comment": "x"},
     ['ip saddr 10.0.0.0/8 meta l4proto tcp ct original proto-dst 8081 accept comment "allowlist[0]: x"']),
    ({"port": 8081, "bind": "loopback"}, []),
])
def test_published_allow_rules(entry, expected):
    assert published_allow_rules(parse_allowlist([entry])[0]) == expected


def test_scripts():
    table = render_table([])
    assert apply_script(table) == HEAD + table
    assert apply_script(table.rstrip("\n")) == HEAD + table
    assert removal_script() == HEAD
    assert rollback_script(None) == HEAD
    assert rollback_script("") == HEAD
    listing = fixture("reject-nft-1.0.6.txt")
    assert rollback_script(listing) == HEAD + listing
    assert rollback_script(listing).startswith("add table inet portcullis\ndelete table inet portcullis\ntable inet")


def test_normalise_listing_ignores_handles_and_metainfo():
    original = normalise_listing(fixture("reject-nft-1.0.6.json"))
    rehandled = fixture("reject-nft-1.0.6-rehandled.json")
    assert rehandled != fixture("reject-nft-1.0.6.json")
    assert normalise_listing(rehandled) == original
    assert '"handle"' not in original and "metainfo" not in original and "1.0.6" not in original
    assert normalise_listing(json.dumps(json.loads(rehandled), indent=2)) == original  # layout does not matter
    document = json.loads(original)
    assert [next(iter(item)) for item in document["nftables"][:3]] == ["table", "chain", "rule"]
    assert document["nftables"][1]["chain"] == {"family": "inet", "table": "portcullis", "name": "input",
                                                "type": "filter", "hook": "input", "prio": 0, "policy": "drop"}
    assert original == json.dumps(document, sort_keys=True, separators=(",", ":"))  # canonical: sorted, compact


def test_normalise_listing_sees_changes():
    original = normalise_listing(fixture("reject-nft-1.0.6.json"))
    assert normalise_listing(fixture("reject-nft-1.0.6-added.json")) != original
    swapped = json.loads(fixture("reject-nft-1.0.6.json"))
    items = swapped["nftables"]
    items[5], items[6] = items[6], items[5]
    assert normalise_listing(json.dumps(swapped)) != original  # rule order matters


def test_normalise_listing_across_nft_versions():
    """nft 1.1.3 adds the table's comment to the JSON, 1.0.6 leaves it out; rules are the same."""
    old = json.loads(normalise_listing(fixture("reject-nft-1.0.6.json")))
    new = json.loads(normalise_listing(fixture("reject-nft-1.1.3.json")))
    assert new["nftables"][0]["table"].pop("comment").startswith("managed by portcullis")
    assert old == new


@pytest.mark.parametrize("bad", ["", "not json", "[]", '{"nftables": {}}', '{"nftables": [1]}'])
def test_normalise_listing_refuses_other_text(bad):
    with pytest.raises(ValueError):
        normalise_listing(bad)


# Real stderr of `nft -j list table inet portcullis`, the same in nft 1.0.6 and 1.1.3.
ABSENT = ("Error: No such file or directory\n"
          "list table inet portcullis\n"
          "                ^^^^^^^^^^\n")


@pytest.mark.parametrize("rc, stderr, expected", [
    (1, ABSENT, True),
    (1, "Error: No such file or directory; did you mean table 'portcullis' in family ip?\n"
        "list table inet portcullis\n", True),
    (0, "", False),
    (0, ABSENT, False),
    (1, "Operation not permitted (you must be root)\n"
        "netlink: Error: cache initialization failed: Operation not permitted\n", False),
    (1, "netlink: Error: cache initialization failed: Protocol not supported\n", False),
    (1, "Error: Could not process rule: No such file or directory\n", False),
    (127, "/bin/sh: 1: nft: not found\n", False),
    (1, "", False),
    (1, None, False),
])
def test_table_absent(rc, stderr, expected):
    assert table_absent(rc, stderr) is expected


def test_persist_include_line():
    assert persist_include_line() == 'include "/etc/nftables.d/portcullis.nft"'
    assert persist_include_line("/etc/x.nft") == 'include "/etc/x.nft"'


# /etc/nftables.conf of Debian 12 and 13 as installed (the same bytes on both lab hosts)
DEBIAN_NFTABLES_CONF = (
    "#!/usr/sbin/nft -f\n"
    "\n"
    "flush ruleset\n"
    "\n"
    "table inet filter {\n"
    "\tchain input {\n"
    "\t\ttype filter hook input priority filter;\n"
    "\t}\n"
    "\tchain forward {\n"
    "\t\ttype filter hook forward priority filter;\n"
    "\t}\n"
    "\tchain output {\n"
    "\t\ttype filter hook output priority filter;\n"
    "\t}\n"
    "}\n"
)
DEBIAN_NFTABLES_CONF_SHA256 = "60dac93ffe0ea440fc4a8941a080b6fb8d2c8655d47baf856e97182a0d1ca29a"

ADDED = ("\n# Added by portcullis.hardening.firewall: loads its table (inet portcullis) at boot.\n"
         'include "/etc/nftables.d/portcullis.nft"\n')


def test_ensure_include_on_debian_default():
    debian = DEBIAN_NFTABLES_CONF
    assert hashlib.sha256(debian.encode()).hexdigest() == DEBIAN_NFTABLES_CONF_SHA256  # sha256sum on both hosts
    assert debian.startswith("#!/usr/sbin/nft -f\n\nflush ruleset\n")
    new, changed = ensure_include(debian)
    assert changed and new == debian + ADDED
    assert new.index('include "/etc/nftables.d/portcullis.nft"') > new.index("flush ruleset")
    assert ensure_include(new) == (new, False)


@pytest.mark.parametrize("conf, expected", [
    ("", ADDED.lstrip("\n")),
    ("flush ruleset", "flush ruleset\n" + ADDED),
    ("flush ruleset\n", "flush ruleset\n" + ADDED),
    ("flush ruleset\n\n", "flush ruleset\n\n" + ADDED.lstrip("\n")),
    # an include before `flush ruleset` is flushed away: add one after it
    ('include "/etc/nftables.d/portcullis.nft"\nflush ruleset\n',
     'include "/etc/nftables.d/portcullis.nft"\nflush ruleset\n' + ADDED),
    # commented out, or another file: not loaded
    ('flush ruleset\n# include "/etc/nftables.d/portcullis.nft"\n',
     'flush ruleset\n# include "/etc/nftables.d/portcullis.nft"\n' + ADDED),
    ('flush ruleset\ninclude "/etc/nftables.d/other.nft"\n',
     'flush ruleset\ninclude "/etc/nftables.d/other.nft"\n' + ADDED),
    ('include "/etc/nftables.d/*.conf"\n', 'include "/etc/nftables.d/*.conf"\n' + ADDED),
    ('include "/etc/*.nft"\n', 'include "/etc/*.nft"\n' + ADDED),
])
def test_ensure_include_appends(conf, expected):
    assert ensure_include(conf) == (expected, True)


@pytest.mark.parametrize("conf", [
    'flush ruleset\ninclude "/etc/nftables.d/portcullis.nft"\n',
    'flush ruleset\n\tinclude   "/etc/nftables.d/portcullis.nft"  # ours\ntable inet filter {\n}\n',
    'flush ruleset\ninclude "/etc/nftables.d/*.nft"\n',
    'flush ruleset\ninclude "/etc/nftables.d/*"\n',
    'flush ruleset\ninclude "/etc/nftables.d/port?ullis.[mn]ft"\n',
    'flush ruleset\ninclude "nftables.d/*.nft"\n',
    'flush ruleset\ninclude "/etc/nftables.d/../nftables.d/portcullis.nft"\n',
    'include "/etc/nftables.d/*.nft"',
])
def test_ensure_include_already_there(conf):
    assert ensure_include(conf) == (conf, False)


def test_ensure_include_moves_nothing():
    conf = ("#!/usr/sbin/nft -f\n# local rules\nflush ruleset\n\ninclude \"/etc/local/*.nft\"\n"
            "table inet filter {\n\tchain input {\n\t\ttype filter hook input priority filter;\n\t}\n}\n"
            "define x = 1\n")
    new, changed = ensure_include(conf, "/etc/nftables.d/portcullis.nft")
    assert changed and new.startswith(conf) and new[len(conf):] == ADDED
    new, changed = ensure_include(conf.rstrip("\n"), "/srv/pc.nft")
    assert changed and new == conf + ADDED.replace("/etc/nftables.d/portcullis.nft", "/srv/pc.nft")


@pytest.mark.parametrize("include, path, expected", [
    ("/etc/nftables.d/portcullis.nft", "/etc/nftables.d/portcullis.nft", True),
    ("/etc/nftables.d/*.nft", "/etc/nftables.d/portcullis.nft", True),
    ("/etc/*.nft", "/etc/nftables.d/portcullis.nft", False),  # a glob's * does not cross "/"
    ("/etc/*/portcullis.nft", "/etc/nftables.d/portcullis.nft", True),
    ("/etc/nftables.d/[!p]*.nft", "/etc/nftables.d/portcullis.nft", False),
    ("/etc/nftables.d/[a-q]*.nft", "/etc/nftables.d/portcullis.nft", True),
    ("/etc/nftables.d/[", "/etc/nftables.d/portcullis.nft", False),
    ("nftables.d/portcullis.nft", "/etc/nftables.d/portcullis.nft", True),
    ("/etc/nftables.d/portcullis.nft.bak", "/etc/nftables.d/portcullis.nft", False),
])
def test_include_covers(include, path, expected):
    assert include_covers(include, path) is expected


def test_remove_include_undoes_ensure_include():
    debian = DEBIAN_NFTABLES_CONF
    added, _changed = ensure_include(debian)
    assert remove_include(added) == (debian, True)
    assert remove_include(debian) == (debian, False)
    conf = "flush ruleset\n"
    assert remove_include(ensure_include(conf)[0]) == (conf, True)
    assert remove_include(ensure_include("")[0]) == ("", True)


@pytest.mark.parametrize("conf, expected", [
    # a hand-written include of the file goes too: nft fails on an include of a missing file
    ('flush ruleset\ninclude "/etc/nftables.d/portcullis.nft"\ntable inet filter {\n}\n',
     "flush ruleset\ntable inet filter {\n}\n"),
    ('flush ruleset\ninclude "nftables.d/portcullis.nft"\n', "flush ruleset\n"),
    ('include "/etc/nftables.d/portcullis.nft"\nflush ruleset\n' + ADDED, "flush ruleset\n"),
    # globs, other files and comments stay
    ('flush ruleset\ninclude "/etc/nftables.d/*.nft"\n', 'flush ruleset\ninclude "/etc/nftables.d/*.nft"\n'),
    ('flush ruleset\n# include "/etc/nftables.d/portcullis.nft"\n',
     'flush ruleset\n# include "/etc/nftables.d/portcullis.nft"\n'),
    ('include "/etc/nftables.d/portcullis.nft.bak"\n', 'include "/etc/nftables.d/portcullis.nft.bak"\n'),
])
def test_remove_include(conf, expected):
    assert remove_include(conf) == (expected, conf != expected)
