# Copyright (c) Portcullis contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import ipaddress

import pytest

from ansible_collections.portcullis.hardening.plugins.module_utils._allowlist import (
    AllowlistError,
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
         "process": None, "comment": None},
        {"index": 1, "port": "8000-8100", "protocol": "udp", "family": "ipv6", "bind": "any",
         "sources": ["2001:db8::/32"], "process": None, "comment": "x"},
        {"index": 2, "port": 5432, "protocol": "tcp", "family": "any", "bind": "loopback", "sources": [],
         "process": "postgres", "comment": None},
        {"index": 3, "port": 443, "protocol": "tcp", "family": "any", "bind": "any", "sources": [],
         "process": None, "comment": None},
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


def test_mapped_sources_read_the_same_on_every_python():
    rule = parse_allowlist([{"port": 22, "family": "ipv6", "sources": ["::ffff:10.0.0.0/104"]}])[0]
    assert rule.as_dict()["sources"] == ["::ffff:10.0.0.0/104"]
    assert rule.describe() == "tcp/22 ipv6 from ::ffff:10.0.0.0/104"


def test_sources_membership_by_family():
    rule = parse_allowlist([{"port": 22, "sources": ["10.0.0.0/8", "2001:db8::/32"]}])[0]
    assert rule.allows_source(ipaddress.ip_address("10.1.2.3"))
    assert rule.allows_source(ipaddress.ip_address("2001:db8::7"))
    assert not rule.allows_source(ipaddress.ip_address("192.0.2.1"))
    assert parse_allowlist([{"port": 22}])[0].allows_source(ipaddress.ip_address("192.0.2.1"))
