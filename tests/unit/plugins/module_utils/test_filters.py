# Copyright (c) Portcullis contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""What the host's filters do to a new connection, on rulesets real nft 1.0.6 printed: the Portcullis table,
firewalld 1.3.3's table (zone public: ssh, dhcpv6-client, 443/tcp), and ufw's own rules."""

from __future__ import annotations

import json
import os

import pytest

from ansible_collections.portcullis.hardening.plugins.module_utils._allowlist import input_openings, parse_allowlist
from ansible_collections.portcullis.hardening.plugins.module_utils._audit import filter_findings
from ansible_collections.portcullis.hardening.plugins.module_utils._filters import (
    closed_port,
    nft_filters,
    probe_packets,
    ufw_filter,
)
from ansible_collections.portcullis.hardening.plugins.module_utils._ufw import UfwState, parse_rules

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")


def load(*path):
    with open(os.path.join(FIXTURES, *path)) as stream:
        return stream.read()


PORTCULLIS = json.loads(load("nft", "reject-nft-1.0.6.json"))
FIREWALLD = json.loads(load("firewalld", "debian12-nft-ruleset.json"))


def packet(port, protocol="tcp", family="ipv4"):
    return {"protocol": protocol, "port": port, "family": family}


@pytest.mark.parametrize("document, probe, verdict, where", [
    (PORTCULLIS, packet(22), "accept", "inet portcullis chain input (rule handle 15)"),
    (PORTCULLIS, packet(443), "accept", "inet portcullis chain input (rule handle 20)"),
    (PORTCULLIS, packet(443, family="ipv6"), "drop", "inet portcullis chain input (rule handle 28)"),  # ipv4 only
    (PORTCULLIS, packet(9100), "drop", "inet portcullis chain input (rule handle 28)"),  # from some sources only
    (PORTCULLIS, packet(51820, "udp", "ipv6"), "drop", "inet portcullis chain input (rule handle 29)"),
    (FIREWALLD, packet(22), "accept", "inet firewalld chain filter_IN_public_allow (rule handle 73)"),
    (FIREWALLD, packet(443, family="ipv6"), "accept", "inet firewalld chain filter_IN_public_allow (rule handle 75)"),
    (FIREWALLD, packet(8080), "drop", "inet firewalld chain filter_IN_public (rule handle 72)"),
])
def test_nft_chains_are_walked_through_jumps_gotos_and_sets(document, probe, verdict, where):
    results, notes = nft_filters(document, probe)
    assert notes == [] and len(results) == 1
    assert (results[0]["verdict"], results[0]["where"]) == (verdict, where)


def test_every_table_of_the_hook_is_asked_and_xt_tables_are_not_judged():
    both = {"nftables": PORTCULLIS["nftables"] + FIREWALLD["nftables"] + [
        {"chain": {"family": "ip", "table": "filter", "name": "INPUT", "handle": 1, "type": "filter",
                   "hook": "input", "prio": 0, "policy": "accept"}},
        {"rule": {"family": "ip", "table": "filter", "chain": "INPUT", "handle": 2,
                  "expr": [{"xt": {"type": "match", "name": "conntrack"}}, {"accept": None}]}}]}
    results, notes = nft_filters(both, packet(443))
    # By hook priority: the Portcullis table (filter, 0) before firewalld's (10).
    assert [(item["filter"], item["verdict"]) for item in results] == [
        ("nftables table inet portcullis", "accept"), ("nftables table inet firewalld", "accept")]
    assert notes == ["table ip filter has iptables-nft rules (xt): what it does to a port is not judged here"]
    assert nft_filters(both, packet(443), skip_tables=[("ip", "filter")])[1] == []


def test_ufw_by_its_rules_and_default_policy():
    rules = parse_rules(load("ufw", "debian12-user.rules"), "ipv4") + parse_rules(load("ufw", "debian12-user6.rules"),
                                                                                  "ipv6")
    state = UfwState(True, {"DEFAULT_INPUT_POLICY": "DROP"}, {}, rules)
    assert ufw_filter(state, packet(22))["verdict"] == "accept"
    assert ufw_filter(state, packet(25, "udp"))["where"] == "ufw rule `ufw deny from 0.0.0.0/0 to 0.0.0.0/0 port 25`"
    # From 10.0.0.0/8 only, or on eth0 only: not for every client; then the default policy decides.
    assert ufw_filter(state, packet(6000, "udp"))["where"] == "ufw's default incoming policy (DROP)"
    assert ufw_filter(state, packet(80))["verdict"] == "drop"
    assert ufw_filter(UfwState(True, {"DEFAULT_INPUT_POLICY": "ACCEPT"}, {}, []), packet(80))["verdict"] == "accept"
    without_ipv6 = UfwState(True, {"DEFAULT_INPUT_POLICY": "DROP", "IPV6": "no"}, {}, rules)
    assert ufw_filter(without_ipv6, packet(80, family="ipv6"))["verdict"] == "accept"
    assert ufw_filter(without_ipv6, packet(80))["verdict"] == "drop"


def test_probe_packets_and_the_closed_port():
    openings = input_openings(parse_allowlist([{"port": 22}, {"port": 9100, "sources": ["10.0.0.0/8"]},
                                               {"port": "60000-65535", "family": "ipv6"}]), ())
    assert probe_packets(openings) == [(packet(22), 0), (packet(22, family="ipv6"), 0),
                                       (packet(60000, family="ipv6"), 2)]
    assert closed_port(openings, "tcp", "ipv4") == 65535 and closed_port(openings, "tcp", "ipv6") == 59999


def test_findings_name_the_filter_that_drops_an_allowed_port_and_a_family_left_open():
    rules = parse_allowlist([{"port": 22}, {"port": 443}, {"port": 8080}])
    findings, notes = filter_findings(rules, PORTCULLIS, None, expect_default_deny=True)
    assert notes == []
    assert sorted((item["kind"], item["family"], item["port"], item["rule"]) for item in findings) == [
        ("allowed_but_filtered", "ipv4", 8080, 2), ("allowed_but_filtered", "ipv6", 443, 1),
        ("allowed_but_filtered", "ipv6", 8080, 2)]
    [ipv6_443] = [item for item in findings if item["port"] == 443]
    assert ipv6_443["severity"] == "medium" and "nftables table inet portcullis drops new ipv6 connections" in \
        ipv6_443["message"]
    # No filter at all: the allowed ports get in, but nothing denies by default.
    findings, _notes = filter_findings(rules, {"nftables": []}, None, expect_default_deny=True)
    assert [(item["kind"], item["family"], item["port"]) for item in findings] == [
        ("firewall_inactive", "ipv4", 65535), ("firewall_inactive", "ipv6", 65535)]
    assert filter_findings(rules, {"nftables": []}, None)[0] == []
