# Copyright (c) Portcullis contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import ipaddress

import pytest

from ansible_collections.portcullis.hardening.plugins.module_utils._allowlist import (
    AllowlistError,
    covering_published,
    management_gap,
    opens_port,
    parse_allowlist,
)


def test_defaults_and_normal_form():
    rules = parse_allowlist([
        {"port": 22},
        {"port": "8000-8100", "protocol": "udp", "family": "ipv6", "sources": ["2001:db8::/32"], "comment": "x"},
        {"port": " 5432 ", "bind": "loopback", "process": "postgres"},
        {"port": "443-443"},
    ])
    assert [rule.as_dict() for rule in rules] == [
        {"index": 0, "port": 22, "protocol": "tcp", "family": "any", "bind": "any", "sources": [],
         "process": None, "published": False, "comment": None},
        {"index": 1, "port": "8000-8100", "protocol": "udp", "family": "ipv6", "bind": "any",
         "sources": ["2001:db8::/32"], "process": None, "published": False, "comment": "x"},
        {"index": 2, "port": 5432, "protocol": "tcp", "family": "any", "bind": "loopback", "sources": [],
         "process": "postgres", "published": False, "comment": None},
        {"index": 3, "port": 443, "protocol": "tcp", "family": "any", "bind": "any", "sources": [],
         "process": None, "published": False, "comment": None},
    ]
    assert rules[1].covers_port(8050) and not rules[1].covers_port(8101)
    assert rules[1].describe() == "udp/8000-8100 ipv6 from 2001:db8::/32"


def test_module_defaults_as_ansible_fills_them():
    """AnsibleModule fills absent suboptions with None or their defaults; that is the same allowlist."""
    filled = {"port": 22, "protocol": "tcp", "family": "any", "bind": "any", "sources": [], "process": None,
              "comment": None}
    assert parse_allowlist([filled])[0].as_dict() == parse_allowlist([{"port": 22}])[0].as_dict()


@pytest.mark.parametrize("entries, message", [
    ("22", "allowlist: '22' must be a list of entries"),
    ([22], "allowlist[0]: 22 must be a mapping with at least a port"),
    ([{}], "allowlist[0].port: is required"),
    ([{"protocol": "tcp"}], "allowlist[0].port: is required"),
    ([{"port": 0}], "allowlist[0].port: 0 is outside 1-65535"),
    ([{"port": 65536}], "allowlist[0].port: 65536 is outside 1-65535"),
    ([{"port": -1}], "allowlist[0].port: -1 is outside 1-65535"),
    ([{"port": True}], "allowlist[0].port: True must be a number or a \"LOW-HIGH\" range"),
    ([{"port": 22.5}], "allowlist[0].port: 22.5 must be a number or a \"LOW-HIGH\" range"),
    ([{"port": "ssh"}], "allowlist[0].port: 'ssh' is not a port number or a LOW-HIGH range"),
    ([{"port": "100-90"}], "allowlist[0].port: '100-90' is a range whose start is above its end"),
    ([{"port": "1-70000"}], "allowlist[0].port: '1-70000' is outside 1-65535"),
    ([{"port": "8000-"}], "allowlist[0].port: '8000-' is not a port number or a LOW-HIGH range"),
    ([{"port": 22}, {"port": 80, "protocol": "icmp"}], "allowlist[1].protocol: 'icmp' must be one of: tcp, udp"),
    ([{"port": 22, "family": "ipv5"}], "allowlist[0].family: 'ipv5' must be one of: ipv4, ipv6, any"),
    ([{"port": 22, "bind": "public"}], "allowlist[0].bind: 'public' must be one of: any, loopback"),
    ([{"port": 22, "prot": "tcp"}], "allowlist[0].prot: 'tcp' is not an allowlist field"),
    ([{"port": 22, "sources": "10.0.0.0/8"}], "allowlist[0].sources: '10.0.0.0/8' must be a list of CIDRs"),
    ([{"port": 22, "sources": ["10.0.0.0/33"]}], "allowlist[0].sources[0]: '10.0.0.0/33' is not a valid address"),
    ([{"port": 22, "sources": ["10.0.0.1/8"]}],
     "allowlist[0].sources[0]: '10.0.0.1/8' has host bits set; the network is 10.0.0.0/8"),
    ([{"port": 22, "sources": ["example.org"]}], "allowlist[0].sources[0]: 'example.org' is not a valid address"),
    ([{"port": 22, "sources": [10]}], "allowlist[0].sources[0]: 10 must be a CIDR"),
    ([{"port": 22, "family": "ipv4", "sources": ["192.0.2.0/24", "2001:db8::/32"]}],
     "allowlist[0].sources[1]: '2001:db8::/32' is IPv6 but the entry's family is ipv4"),
    ([{"port": 22, "family": "ipv6", "sources": ["192.0.2.0/24"]}],
     "allowlist[0].sources[0]: '192.0.2.0/24' is IPv4 but the entry's family is ipv6"),
    ([{"port": 5432, "bind": "loopback", "sources": ["10.0.0.0/8"]}],
     "allowlist[0].sources: ['10.0.0.0/8'] contradicts bind: loopback"),
    ([{"port": 22, "process": ""}], "allowlist[0].process: '' must be a non-empty text"),
    ([{"port": 22, "comment": 5}], "allowlist[0].comment: 5 must be a non-empty text"),
    ([{"port": 22}, {"port": 80}, {"port": 22, "comment": "again"}],
     "allowlist[2]: duplicates allowlist[0] (tcp/22 from anywhere)"),
    ([{"port": 5432, "bind": "loopback"}, {"port": "5000-6000"}],
     "allowlist[1].bind: 'any' contradicts allowlist[0].bind 'loopback' for the same port"),
    ([{"port": 80, "process": "nginx"}, {"port": 80, "family": "ipv6", "process": "apache2"}],
     "allowlist[1].process: 'apache2' contradicts allowlist[0].process 'nginx' for the same port"),
])
def test_every_bad_input_names_index_field_and_value(entries, message):
    with pytest.raises(AllowlistError) as error:
        parse_allowlist(entries)
    assert str(error.value).startswith(message), str(error.value)


@pytest.mark.parametrize("entries", [
    [{"port": 22, "sources": ["10.0.0.0/8"]}, {"port": 22, "sources": ["192.168.0.0/16"]}],  # sources differ
    [{"port": 53, "protocol": "udp"}, {"port": 53, "protocol": "tcp"}],                        # protocols differ
    [{"port": 80, "family": "ipv4", "process": "nginx"}, {"port": 80, "family": "ipv6", "process": "apache2"}],
    [{"port": 80, "process": "nginx"}, {"port": 80, "sources": ["10.0.0.0/8"]}],
])
def test_overlaps_that_are_not_contradictions(entries):
    assert len(parse_allowlist(entries)) == len(entries)


def test_errors_name_the_option_the_entries_came_in():
    with pytest.raises(AllowlistError) as error:
        parse_allowlist([{"port": 22}, {"port": 22}], name="allow")
    assert str(error.value) == "allow[1]: duplicates allow[0] (tcp/22 from anywhere)"
    with pytest.raises(AllowlistError) as error:
        parse_allowlist([{"port": 0}], name="portcullis_allowlist")
    assert str(error.value) == "portcullis_allowlist[0].port: 0 is outside 1-65535"


@pytest.mark.parametrize("entry, message", [
    ({"port": 22, "sources": ["::ffff:192.0.2.0/120"]},
     "allow[1].sources[0]: '::ffff:192.0.2.0/120' is an IPv4-mapped IPv6 address, which no packet has as its "
     "source; write it as IPv4: 192.0.2.0/24"),
    ({"port": 22, "sources": ["10.0.0.0/8", "::ffff:10.0.0.1"]},
     "allow[1].sources[1]: '::ffff:10.0.0.1' is an IPv4-mapped IPv6 address, which no packet has as its source; "
     "write it as IPv4: 10.0.0.1"),
    ({"port": 22, "sources": ["::ffff:10.0.0.1/128"]}, "write it as IPv4: 10.0.0.1/32"),
    ({"port": 22, "sources": ["::ffff:0:0/96"]}, "write it as IPv4: 0.0.0.0/0"),
    ({"port": 22, "sources": ["::ffff:10.0.0.0/104"]}, "write it as IPv4: 10.0.0.0/8"),
    ({"port": 22, "sources": [" ::FFFF:C000:0200/120 "]}, "write it as IPv4: 192.0.2.0/24"),
    ({"port": 22, "sources": ["::ffff:192.0.2.1/120"]}, "write it as IPv4: 192.0.2.0/24"),  # host bits too
    ({"port": 22, "family": "ipv6", "sources": ["::ffff:192.0.2.0/120"]},
     "write it as IPv4: 192.0.2.0/24 (with family: ipv4 or any)"),
    ({"port": 22, "family": "ipv4", "sources": ["::ffff:192.0.2.0/120"]}, "write it as IPv4: 192.0.2.0/24"),
])
def test_ipv4_mapped_sources_are_refused_with_their_ipv4_spelling(entry, message):
    """An IPv4 client reaches the host as IPv4: an `ip6 saddr ::ffff:...` rule would never match."""
    with pytest.raises(AllowlistError) as error:
        parse_allowlist([{"port": 80}, entry], name="allow")
    text = str(error.value)
    assert text.startswith("allow[1].sources[") and message in text, text


@pytest.mark.parametrize("source", ["::ffff:0:0:0/96", "64:ff9b::/96", "::/0", "::/96", "2001:db8::/32"])
def test_ipv6_networks_that_are_not_ipv4_mapped_stay_allowed(source):
    assert parse_allowlist([{"port": 22, "sources": [source]}])[0].as_dict()["sources"] == [source]


@pytest.mark.parametrize("entries, message", [
    ([{"port": "+22"}], "allowlist[0].port: '+22' is not a port number or a LOW-HIGH range"),
    ([{"port": "2_2"}], "allowlist[0].port: '2_2' is not a port number or a LOW-HIGH range"),
    ([{"port": "\uff12\uff12"}], "is not a port number or a LOW-HIGH range"),  # fullwidth digits
    ([{"port": "20-+30"}], "allowlist[0].port: '20-+30' is not a port number or a LOW-HIGH range"),
    ([{"port": 22, "sources": ["fe80::%eth0/64"]}],
     "allowlist[0].sources[0]: 'fe80::%eth0/64' names a zone (%eth0): a source is a network, not an interface"),
    ([{"port": 22, "sources": ["fe80::1%2"]}], "allowlist[0].sources[0]: 'fe80::1%2' names a zone (%2)"),
    ([{"port": 22, 1: "x", "b": 2}], "allowlist[0].1: 'x' is not an allowlist field"),  # keys of two types
])
def test_input_python_would_take_but_nft_or_people_would_not(entries, message):
    with pytest.raises(AllowlistError) as error:
        parse_allowlist(entries)
    assert message in str(error.value), str(error.value)


def test_sources_membership_by_family():
    rule = parse_allowlist([{"port": 22, "sources": ["10.0.0.0/8", "2001:db8::/32"]}])[0]
    assert rule.allows_source(ipaddress.ip_address("10.1.2.3"))
    assert rule.allows_source(ipaddress.ip_address("2001:db8::7"))
    assert not rule.allows_source(ipaddress.ip_address("192.0.2.1"))
    assert parse_allowlist([{"port": 22}])[0].allows_source(ipaddress.ip_address("192.0.2.1"))
    assert rule.allows_source(ipaddress.ip_address("::ffff:10.1.2.3"))  # the IPv4 client 10.1.2.3
    assert not rule.allows_source(ipaddress.ip_address("::ffff:192.0.2.1"))


@pytest.mark.parametrize("entry, families", [
    ({"port": 22}, ("ipv4", "ipv6")),
    ({"port": 22, "family": "ipv6"}, ("ipv6",)),
    ({"port": 22, "sources": ["10.0.0.0/8"]}, ("ipv4",)),
    ({"port": 22, "sources": ["10.0.0.0/8", "2001:db8::/32"]}, ("ipv4", "ipv6")),
    ({"port": 22, "family": "ipv4", "sources": ["10.0.0.0/8"]}, ("ipv4",)),
    ({"port": 22, "bind": "loopback"}, ()),
])
def test_families_an_entry_opens_to_the_network(entry, families):
    assert parse_allowlist([entry])[0].families() == families


SSH_FROM_10 = {"port": 22, "sources": ["10.0.0.0/8"], "comment": "SSH from the admin network"}


@pytest.mark.parametrize("entries, port, family, source, expected", [
    # open to everyone: whatever is known of the connection
    ([{"port": 22}], 22, None, None, None),
    ([{"port": 22}], 22, "ipv6", None, None),
    ([{"port": 22}], 22, None, "192.0.2.10", None),
    ([{"port": "20-30"}], 22, None, None, None),
    ([{"port": 22, "family": "ipv4"}, {"port": 22, "family": "ipv6"}], 22, None, None, None),  # two halves
    ([{"port": 22, "family": "ipv6"}], 22, "ipv6", None, None),
    ([{"port": 22, "family": "ipv6"}], 22, None, "2001:db8::5", None),
    ([{"port": 22, "family": "ipv6"}], 22, "ipv6", "fe80::1%eth0", None),
    ([{"port": 80}, SSH_FROM_10], 22, None, "10.1.2.3", None),
    ([SSH_FROM_10], 22, "ipv6", "::ffff:10.1.2.3", None),  # an IPv4 client as a dual-stack sshd sees it
    ([{"port": 22, "sources": ["10.0.0.0/8", "2001:db8::/32"]}], 22, None, "2001:db8::1", None),
    ([{"port": 2222}], 2222, "ipv4", "192.0.2.10", None),
    # a client on the host itself: loopback passes as a whole
    ([], 22, None, "127.0.0.1", None),
    ([{"port": 22, "bind": "loopback"}], 22, "ipv6", "::1", None),
    # nothing opens the port
    ([], 22, None, None, "no allow entry opens 22/tcp"),
    ([{"port": 22, "protocol": "udp"}, {"port": 2222}], 22, "ipv4", "192.0.2.10", "no allow entry opens 22/tcp"),
    # the family falls short
    ([{"port": 22, "family": "ipv6"}], 22, "ipv4", None,
     "allow[0] opens 22/tcp for IPv6 only, but this connection uses IPv4"),
    ([{"port": 22, "family": "ipv6"}], 22, None, "192.0.2.10",
     "allow[0] opens 22/tcp for IPv6 only, but this connection uses IPv4"),
    ([{"port": 22, "family": "ipv6"}], 22, "ipv6", "::ffff:192.0.2.10",
     "allow[0] opens 22/tcp for IPv6 only, but this connection uses IPv4"),
    ([{"port": 22, "family": "ipv6"}], 22, None, None,
     "allow[0] opens 22/tcp for IPv6 only, and this connection's family is not known (it may use IPv4)"),
    ([{"port": 22, "family": "ipv4"}], 22, None, None,
     "allow[0] opens 22/tcp for IPv4 only, and this connection's family is not known (it may use IPv6)"),
    ([{"port": 22, "sources": ["2001:db8::/32"]}], 22, None, "192.0.2.10",
     "allow[0] opens 22/tcp for IPv6 only, but this connection uses IPv4"),
    # the sources fall short
    ([{"port": 80}, {"port": 443}, SSH_FROM_10], 22, None, "192.0.2.10",
     "allow[2] opens 22/tcp only from 10.0.0.0/8, which does not include the controller's address 192.0.2.10"),
    ([SSH_FROM_10], 22, "ipv4", None,
     "allow[0] opens 22/tcp only from 10.0.0.0/8, and the controller's address is not known"),
    ([{"port": 22, "sources": ["10.0.0.0/8", "192.168.0.0/16", "2001:db8::/32"]}], 22, None, "192.0.2.10",
     "allow[0] opens 22/tcp only from 10.0.0.0/8, 192.168.0.0/16, which do not include the controller's "
     "address 192.0.2.10"),
    ([{"port": 22, "sources": ["10.0.0.0/8", "2001:db8::/32"]}], 22, None, None,
     "allow[0] opens 22/tcp only from 10.0.0.0/8, and the controller's address is not known"),
    # loopback-only entries open nothing to the network
    ([{"port": 22, "bind": "loopback"}], 22, None, "192.0.2.10",
     "allow[0] opens 22/tcp to local clients only (bind: loopback)"),
    # every entry that falls short, each with its reason
    ([{"port": 22, "family": "ipv6"}, {"port": 22, "family": "ipv4", "sources": ["10.0.0.0/8"]}], 22, None,
     "192.0.2.10", "allow[0] opens 22/tcp for IPv6 only, but this connection uses IPv4; allow[1] opens 22/tcp "
     "only from 10.0.0.0/8, which does not include the controller's address 192.0.2.10"),
])
def test_management_gap(entries, port, family, source, expected):
    assert management_gap(parse_allowlist(entries), port, family, source) == expected


def test_management_gap_protocol_and_option_name():
    rules = parse_allowlist([{"port": 53, "protocol": "udp", "family": "ipv4"}])
    assert management_gap(rules, 53, "ipv4", protocol="udp") is None
    assert management_gap(rules, 53, "ipv6", protocol="udp", name="portcullis_allowlist") == (
        "portcullis_allowlist[0] opens 53/udp for IPv4 only, but this connection uses IPv6")
    assert opens_port(rules, "udp", 53) and not opens_port(rules, "tcp", 53)


@pytest.mark.parametrize("family, source, message", [
    ("any", None, "family: 'any' must be ipv4, ipv6 or None (not known)"),
    (None, "controller.example.org", "source: 'controller.example.org' is not an IP address"),
    (None, 3232235786, "source: 3232235786 is not an IP address"),
    ("ipv6", "192.0.2.10", "source: '192.0.2.10' is IPv4 but family is ipv6"),
    ("ipv4", "2001:db8::1", "source: '2001:db8::1' is IPv6 but family is ipv4"),
])
def test_management_gap_refuses_what_it_cannot_read(family, source, message):
    with pytest.raises(AllowlistError) as error:
        management_gap([], 22, family, source)
    assert str(error.value) == message


# --- published: the container path ----------------------------------------------------------------------------

@pytest.mark.parametrize("entry, message", [
    ({"port": 8081, "published": "yes"}, "allow[1].published: 'yes' must be true or false"),
    ({"port": 8081, "published": 1}, "allow[1].published: 1 must be true or false"),
    ({"port": 8081, "published": True, "bind": "loopback"},
     "allow[1].published: True contradicts bind: loopback (a published port is reached from the network; publish it "
     "on 127.0.0.1 instead and leave published out)"),
    ({"port": 8081, "published": True, "process": "docker-proxy"},
     "allow[1].process: 'docker-proxy' cannot be checked for a published container port (no socket of the host "
     "serves it); leave process out or published: false"),
])
def test_published_errors_name_the_field_and_value(entry, message):
    with pytest.raises(AllowlistError) as error:
        parse_allowlist([{"port": 22}, entry], name="allow")
    assert str(error.value) == message


@pytest.mark.parametrize("entry", [
    {"port": 8081, "published": False, "bind": "loopback"},
    {"port": 8081, "published": False, "process": "nginx"},
    {"port": 8081, "published": None},
])
def test_published_false_or_null_takes_every_other_field(entry):
    rule = parse_allowlist([entry])[0]
    assert rule.published is False and rule.on_host is True


def test_a_published_only_entry_is_not_on_the_host():
    plain, published = parse_allowlist([{"port": 8081}, {"port": 8081, "published": True, "comment": "web"}])
    assert (plain.on_host, published.on_host) == (True, False)
    assert published.as_dict()["published"] is True
    assert published.describe() == "tcp/8081 from anywhere (published container port only)"
    assert plain.identity() != published.identity()  # not duplicates of each other


@pytest.mark.parametrize("protocol, family, low, high, expected", [
    ("tcp", "ipv4", 8081, 8081, [0, 3]),
    ("tcp", "ipv6", 8081, 8081, [0]),  # allow[3] is IPv4 only
    ("tcp", "ipv4", 9000, 9010, [1]),  # the whole range of the published port, published-only or not
    ("tcp", "ipv4", 9005, 9005, [1]),
    ("tcp", "ipv4", 8990, 9005, []),  # partly outside every entry
    ("udp", "ipv4", 5300, 5300, []),  # allow[2] is loopback only: it allows no published port
    ("udp", "ipv4", 8081, 8081, []),
])
def test_covering_published(protocol, family, low, high, expected):
    rules = parse_allowlist([
        {"port": 8081},
        {"port": "9000-9010", "published": True, "sources": ["10.0.0.0/8"]},
        {"port": 5300, "protocol": "udp", "bind": "loopback"},
        {"port": "8000-8100", "family": "ipv4", "sources": ["192.0.2.0/24"]},
    ])
    assert [rule.index for rule in covering_published(rules, protocol, family, low, high)] == expected


def test_opens_port_and_management_gap_ignore_published_only_entries():
    rules = parse_allowlist([{"port": 22, "published": True}, {"port": 8081, "published": True}, {"port": 443}],
                            name="allow")
    assert not opens_port(rules, "tcp", 22) and not opens_port(rules, "tcp", 8081)
    assert opens_port(rules, "tcp", 443)
    assert management_gap(rules, 22, "ipv4", "192.0.2.10") == "no allow entry opens 22/tcp"
    both = parse_allowlist([{"port": 22, "published": True}, {"port": 22, "sources": ["192.0.2.0/24"]}])
    assert management_gap(both, 22, "ipv4", "192.0.2.10") is None
    assert management_gap(both, 22, "ipv4", "198.51.100.7") == (
        "allow[1] opens 22/tcp only from 192.0.2.0/24, which does not include the controller's address 198.51.100.7")
