# Copyright (c) Portcullis contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The ufw backend's pure logic, on files a real ufw 0.36.2 (Debian 12) wrote (fixtures/ufw/)."""

from __future__ import annotations

import os

import pytest

from ansible_collections.portcullis.hardening.plugins.module_utils._allowlist import input_openings, parse_allowlist
from ansible_collections.portcullis.hardening.plugins.module_utils._ufw import (
    UfwError,
    UfwState,
    Ufw,
    move_plan,
    opening_rules,
    parse_defaults,
    parse_rules,
    parse_status,
    plan,
    removal_plan,
    rule_covered,
    wanted_rules,
)

from .fakehost import fake_host, write_host_file

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "ufw")


def fixture(name):
    with open(os.path.join(FIXTURES, name)) as stream:
        return stream.read()


def debian12_rules():
    """Every kind of rule a user makes: plain, limit, sources with a comment, an interface, deny, an application
    profile, routed, outgoing, logged, a whole source; v6 has one of Portcullis's own."""
    return parse_rules(fixture("debian12-user.rules"), "ipv4") + parse_rules(fixture("debian12-user6.rules"), "ipv6")


def state(rules=None, active=True, policy="DROP"):
    defaults = parse_defaults(fixture("debian12-default-ufw"))
    defaults["DEFAULT_INPUT_POLICY"] = policy
    return UfwState(active, defaults, {"ENABLED": "yes" if active else "no"},
                    debian12_rules() if rules is None else rules)


def openings(allow, kept=(22,)):
    return input_openings(parse_allowlist(allow, name="allow"), kept)


def test_parse_reads_every_field_ufw_writes():
    rules = debian12_rules()
    assert [rule.text() for rule in rules] == [
        "ufw allow proto tcp from 0.0.0.0/0 to 0.0.0.0/0 port 22",
        "ufw limit proto tcp from 0.0.0.0/0 to 0.0.0.0/0 port 2222",
        "ufw allow proto udp from 10.0.0.0/8 to 0.0.0.0/0 port 6000:6010 comment monitoring",
        "ufw allow in on eth0 proto tcp from 0.0.0.0/0 to 0.0.0.0/0 port 80,443",
        "ufw deny from 0.0.0.0/0 to 0.0.0.0/0 port 25",
        "ufw allow from 0.0.0.0/0 to 0.0.0.0/0 app OpenSSH",
        "ufw route allow in on eth0 out on eth1 proto tcp from 0.0.0.0/0 to 0.0.0.0/0 port 8080",
        "ufw allow out proto udp from 0.0.0.0/0 to 0.0.0.0/0 port 53",
        "ufw allow log proto tcp from 0.0.0.0/0 to 0.0.0.0/0 port 8443",
        "ufw allow from 192.0.2.7 to 0.0.0.0/0",
        "ufw allow proto tcp from ::/0 to ::/0 port 22",
        "ufw limit proto tcp from ::/0 to ::/0 port 2222",
        "ufw allow in on eth0 proto tcp from ::/0 to ::/0 port 80,443",
        "ufw deny from ::/0 to ::/0 port 25",
        "ufw allow from ::/0 to ::/0 app OpenSSH",
        "ufw allow proto tcp from 2001:db8::/32 to ::/0 port 9100 comment 'portcullis: node exporter'",
        "ufw route allow in on eth0 out on eth1 proto tcp from ::/0 to ::/0 port 8080",
        "ufw allow out proto udp from ::/0 to ::/0 port 53",
        "ufw allow log proto tcp from ::/0 to ::/0 port 8443",
    ]
    assert [rule.ours for rule in rules].count(True) == 1
    assert [rule.incoming for rule in rules].count(False) == 4  # the routed and outgoing ones
    app = rules[5]
    assert app.dapp == "OpenSSH" and app.port_ranges() == [(22, 22)]  # ufw writes the profile's port
    assert rules[3].port_ranges() == [(80, 80), (443, 443)] and rules[2].port_ranges() == [(6000, 6010)]
    assert rules[9].port_ranges() == [(1, 65535)] and rules[9].protocol == "any"


def test_status_and_defaults():
    assert parse_status(fixture("debian12-status.txt")) is True
    assert parse_status("Status: inactive\n") is False
    defaults = parse_defaults(fixture("debian12-default-ufw"))
    assert defaults["IPV6"] == "yes" and defaults["DEFAULT_INPUT_POLICY"] == "DROP"


def test_wanted_rules_are_one_per_family_with_explicit_addresses():
    wanted = wanted_rules(openings([{"port": 443}, {"port": "6000-6010", "protocol": "udp", "family": "ipv6"},
                                    {"port": 9100, "sources": ["10.0.0.0/8", "2001:db8::/32"]}], kept=()))
    assert [rule.text() for rule in wanted] == [
        "ufw allow proto tcp from 0.0.0.0/0 to 0.0.0.0/0 port 443 comment 'portcullis: tcp/443 from anywhere'",
        "ufw allow proto tcp from ::/0 to ::/0 port 443 comment 'portcullis: tcp/443 from anywhere'",
        "ufw allow proto udp from ::/0 to ::/0 port 6000:6010 comment 'portcullis: udp/6000-6010 ipv6 from anywhere'",
        "ufw allow proto tcp from 10.0.0.0/8 to 0.0.0.0/0 port 9100 comment "
        "'portcullis: tcp/9100 from 10.0.0.0/8, 2001:db8::/32'",
        "ufw allow proto tcp from 2001:db8::/32 to ::/0 port 9100 comment "
        "'portcullis: tcp/9100 from 10.0.0.0/8, 2001:db8::/32'",
    ]


@pytest.mark.parametrize("allow, index, covered", [
    ([{"port": 22}], 0, True),                               # allow 22/tcp, both families: the allowlist has it
    ([{"port": 22, "family": "ipv6"}], 0, False),            # the v4 rule is not covered by a v6 entry
    ([{"port": "6000-6010", "protocol": "udp"}], 2, True),   # from 10.0.0.0/8 is narrower than from anywhere
    ([{"port": 6000, "protocol": "udp"}], 2, False),         # a range is covered by a range only
    ([{"port": 6000, "protocol": "udp", "sources": ["10.0.0.0/16"]}], 2, False),
    ([{"port": 80}, {"port": 443}], 3, True),                # a multiport rule, port by port
    ([{"port": 80}], 3, False),
    ([{"port": 22}], 5, True),                               # the OpenSSH profile is 22/tcp
    ([{"port": 22}, {"port": 22, "protocol": "udp"}], 9, False),  # every port from one address: not in any list
])
def test_rule_covered(allow, index, covered):
    assert rule_covered(debian12_rules()[index], openings(allow, kept=())) is covered


def test_plan_closes_foreign_allows_keeps_covered_ones_denies_and_other_directions():
    planned = plan(state(), openings([{"port": 22}, {"port": 443}]), "drop")
    assert [" ".join(argv) for argv in planned["commands"]] == [
        "ufw allow proto tcp from 0.0.0.0/0 to 0.0.0.0/0 port 443 comment portcullis: tcp/443 from anywhere",
        "ufw allow proto tcp from ::/0 to ::/0 port 443 comment portcullis: tcp/443 from anywhere",
        "ufw delete limit proto tcp from 0.0.0.0/0 to 0.0.0.0/0 port 2222",
        "ufw delete allow proto udp from 10.0.0.0/8 to 0.0.0.0/0 port 6000:6010",
        "ufw delete allow in on eth0 proto tcp from 0.0.0.0/0 to 0.0.0.0/0 port 80,443",
        "ufw delete allow log proto tcp from 0.0.0.0/0 to 0.0.0.0/0 port 8443",
        "ufw delete allow from 192.0.2.7 to 0.0.0.0/0",
        "ufw delete limit proto tcp from ::/0 to ::/0 port 2222",
        "ufw delete allow in on eth0 proto tcp from ::/0 to ::/0 port 80,443",
        "ufw delete allow proto tcp from 2001:db8::/32 to ::/0 port 9100",  # Portcullis's own, no longer wanted
        "ufw delete allow log proto tcp from ::/0 to ::/0 port 8443",
    ]
    # The operator's 22/tcp and OpenSSH rules stay (the allowlist covers them): nothing of ours is added for 22.
    assert [rule.text() for rule in planned["kept"]] == [
        "ufw allow proto tcp from 0.0.0.0/0 to 0.0.0.0/0 port 22",
        "ufw allow from 0.0.0.0/0 to 0.0.0.0/0 app OpenSSH",
        "ufw allow proto tcp from ::/0 to ::/0 port 22",
        "ufw allow from ::/0 to ::/0 app OpenSSH"]
    after = planned["after"].listing()
    assert "deny from 0.0.0.0/0 to 0.0.0.0/0 port 25" in after  # deny rules stay
    assert "ufw route allow" not in after and "allow out" not in after  # routed and outgoing: not listed, not touched
    assert after.splitlines()[:2] == ["ufw enable", "ufw default deny incoming"]
    again = plan(UfwState(True, planned["after"].defaults, {},
                          planned["after"].rules + [rule for rule in debian12_rules() if not rule.incoming]),
                 openings([{"port": 22}, {"port": 443}]), "drop")
    assert again["commands"] == []  # idempotent


def test_plan_sets_the_policy_and_enables_ufw_last():
    planned = plan(state(rules=[], active=False, policy="ACCEPT"), openings([], kept=(2222,)), "reject")
    assert [" ".join(argv) for argv in planned["commands"]] == [
        "ufw allow proto tcp from 0.0.0.0/0 to 0.0.0.0/0 port 2222 comment portcullis: management port",
        "ufw allow proto tcp from ::/0 to ::/0 port 2222 comment portcullis: management port",
        "ufw default reject incoming",
        "ufw --force enable"]


def test_an_operators_limit_rule_satisfies_the_allowlist():
    limited = [rule for rule in debian12_rules() if rule.action == "limit"]
    planned = plan(state(rules=limited), openings([{"port": 2222}], kept=()), "drop")
    assert planned["commands"] == [] and len(planned["kept"]) == 2


def test_removal_deletes_only_portcullis_rules_and_restores_what_it_changed():
    rules = debian12_rules()
    removed = removal_plan(state(rules=rules), {"input_policy_before": "ACCEPT", "enabled_ufw": True})
    assert [" ".join(argv) for argv in removed["commands"]] == [
        "ufw delete allow proto tcp from 2001:db8::/32 to ::/0 port 9100",
        "ufw default allow incoming",
        "ufw --force disable"]
    assert removal_plan(state(rules=rules), {})["commands"] == [removed["commands"][0]]


def test_removal_keeps_portcullis_rule_that_lets_this_connection_in():
    mine = wanted_rules(openings([], kept=(2222,)))
    removed = removal_plan(state(rules=mine), {"enabled_ufw": False}, session_port=2222)
    assert removed["commands"] == [] and [rule.text() for rule in removed["kept"]] == [rule.text() for rule in mine]
    # Unless Portcullis enabled ufw: state=absent disables it again, and nothing filters the port.
    removed = removal_plan(state(rules=mine), {"enabled_ufw": True}, session_port=2222)
    assert removed["kept"] == [] and removed["commands"][-1] == ["ufw", "--force", "disable"]


def test_move_copies_every_allow_of_the_old_port_first_and_deletes_the_old_ones_last():
    transition, final, moved = move_plan(state(), [22], 2200)
    assert [" ".join(argv) for argv in transition] == [
        # The operator's rules: their copies are the operator's too (no portcullis comment).
        "ufw allow proto tcp from 0.0.0.0/0 to 0.0.0.0/0 port 2200",
        "ufw allow proto tcp from ::/0 to ::/0 port 2200"]
    assert [" ".join(argv) for argv in final] == [
        "ufw delete allow proto tcp from 0.0.0.0/0 to 0.0.0.0/0 port 22",
        "ufw delete allow proto tcp from ::/0 to ::/0 port 22"]
    assert [rule.text() for rule in moved] == [
        "ufw allow proto tcp from 0.0.0.0/0 to 0.0.0.0/0 port 22", "ufw allow proto tcp from ::/0 to ::/0 port 22"]
    assert [rule.text() for rule in opening_rules(state(), 22)] == [
        "ufw allow proto tcp from 0.0.0.0/0 to 0.0.0.0/0 port 22", "ufw allow from 0.0.0.0/0 to 0.0.0.0/0 app OpenSSH",
        "ufw allow from 192.0.2.7 to 0.0.0.0/0", "ufw allow proto tcp from ::/0 to ::/0 port 22",
        "ufw allow from ::/0 to ::/0 app OpenSSH"]


def test_host_reads_the_files_and_refuses_without_ipv6(tmp_path):
    host, system = fake_host(tmp_path)
    ufw = Ufw(host)
    with pytest.raises(UfwError, match="ufw is not installed"):
        ufw.read()
    write_host_file(tmp_path, "/usr/sbin/ufw", "")
    write_host_file(tmp_path, "/etc/ufw/user.rules", fixture("debian12-user.rules"))
    write_host_file(tmp_path, "/etc/ufw/user6.rules", fixture("debian12-user6.rules"))
    write_host_file(tmp_path, "/etc/default/ufw", fixture("debian12-default-ufw").replace("IPV6=yes", "IPV6=no"))
    system.respond(["ufw", "status"], out=fixture("debian12-status.txt"))
    read = ufw.read()
    assert read.active and len(read.rules) == 19
    with pytest.raises(UfwError, match="IPV6=no in /etc/default/ufw"):
        ufw.check_ipv6(read)
    assert ufw.undo_commands(read) == [["ufw", "reload"]]
    assert ufw.undo_commands(state(active=False)) == [["ufw", "--force", "disable"]]
