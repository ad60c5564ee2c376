# Copyright (c) Portcullis contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The firewalld backend's pure logic, on what a real firewall-cmd 1.3.3 (Debian 12) printed (fixtures/firewalld/)."""

from __future__ import annotations

import os

import pytest

from ansible_collections.portcullis.hardening.plugins.module_utils._allowlist import input_openings, parse_allowlist
from ansible_collections.portcullis.hardening.plugins.module_utils._firewalld import (
    FirewalldError,
    RichRule,
    element_covered,
    inverse,
    managed_zones,
    move_plan,
    opening_elements,
    parse_active_zones,
    parse_list_all,
    parse_service,
    plan,
    record_added,
    target_warnings,
    removal_plan,
    rich_rule_text,
    zone_elements,
)

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "firewalld")
SERVICES = ("cockpit", "ftp", "http", "ssh", "dhcpv6-client", "samba-client", "mdns", "netbios-ns")


def fixture(name):
    with open(os.path.join(FIXTURES, name)) as stream:
        return stream.read()


def services():
    return dict((name, parse_service(fixture("debian12-service-%s.txt" % name))) for name in SERVICES)


def state(public_permanent="debian12-public-permanent.txt"):
    """public (the default zone, bound to eth0) with one of each element in runtime; internal bound to a source;
    trusted (target ACCEPT) bound to an interface."""
    active = parse_active_zones(fixture("debian12-active-zones.txt"))
    zones = {
        "public": {"runtime": parse_list_all(fixture("debian12-public-runtime.txt")),
                   "permanent": parse_list_all(fixture(public_permanent)), "bindings": active["public"]},
        "internal": {"runtime": parse_list_all(fixture("debian12-internal-runtime.txt")),
                     "permanent": parse_list_all(fixture("debian12-internal-runtime.txt")),
                     "bindings": active["internal"]},
        "trusted": {"runtime": parse_list_all(fixture("debian12-trusted-runtime.txt")),
                    "permanent": parse_list_all(fixture("debian12-trusted-runtime.txt")),
                    "bindings": active["trusted"]},
    }
    return {"default": "public", "zones": zones, "services": services()}


def openings(allow, kept=(22,)):
    return input_openings(parse_allowlist(allow, name="allow"), kept)


def test_list_all_and_active_zones_parse():
    public = parse_list_all(fixture("debian12-public-runtime.txt"))
    assert public["zone"] == ["public"] and public["target"] == ["default"] and public["interfaces"] == ["eth0"]
    assert zone_elements(public) == {
        "port": ["6000-6010/udp", "9090/tcp"], "service": ["cockpit", "dhcpv6-client", "http", "ssh"],
        "protocol": ["gre"], "source-port": ["68/udp"],
        "rich-rule": ['rule service name="ftp" log prefix="ftp" level="info" accept',
                      'rule family="ipv6" source address="2001:db8::/32" port port="9100" protocol="tcp" accept',
                      'rule family="ipv4" source address="10.0.0.0/8" port port="9100" protocol="tcp" accept',
                      'rule family="ipv4" source address="198.51.100.0/24" port port="25" protocol="tcp" drop',
                      'rule family="ipv4" source address="192.0.2.7" accept']}
    assert parse_active_zones(fixture("debian12-active-zones.txt")) == {
        "internal": {"interfaces": [], "sources": ["10.200.0.0/16"]}, "public": {"interfaces": ["eth0"], "sources": []},
        "trusted": {"interfaces": ["lo2"], "sources": []}}
    assert services()["samba-client"]["includes"] == ["netbios-ns"]


def test_rich_rules_parse_into_what_the_allowlist_compares():
    rule = RichRule('rule family="ipv4" source address="10.0.0.0/8" port port="9100" protocol="tcp" accept')
    assert (rule.family, str(rule.source), rule.element, rule.element_args, rule.action) == (
        "ipv4", "10.0.0.0/8", "port", {"port": "9100", "protocol": "tcp"}, "accept")
    assert RichRule('rule family="ipv4" source NOT address="10.0.0.0/8" accept').source_other
    # Our own text is what firewalld prints back, and a host address compares equal to its /32.
    mine = rich_rule_text(openings([{"port": 9100, "sources": ["10.0.0.0/8"]}], kept=())[0])
    assert mine == rule.text
    assert RichRule('rule family="ipv4" source address="192.0.2.7" accept').key() == \
        RichRule('rule family="ipv4" source address="192.0.2.7/32" accept').key()


@pytest.mark.parametrize("kind, value, allow, covered", [
    ("port", "9090/tcp", [{"port": 9090}], True),
    ("port", "6000-6010/udp", [{"port": "6000-6005", "protocol": "udp"}], False),
    ("service", "ssh", [], True),                                   # the kept management port 22
    ("service", "dhcpv6-client", [], True),                         # always kept, as the nftables backend does
    ("service", "samba-client", [{"port": 138, "protocol": "udp"}], False),  # it includes netbios-ns (137/udp)
    ("service", "samba-client", [{"port": "137-138", "protocol": "udp"}], True),
    ("service", "mdns", [{"port": 5353, "protocol": "udp", "family": "ipv4"}], False),  # mdns is both families
    ("rich-rule", 'rule family="ipv4" source address="10.0.0.0/8" port port="9100" protocol="tcp" accept',
     [{"port": 9100, "sources": ["10.0.0.0/8"]}], True),
    ("rich-rule", 'rule family="ipv4" source address="10.0.0.0/8" port port="9100" protocol="tcp" accept',
     [{"port": 9100, "sources": ["10.1.0.0/16"]}], False),
    ("rich-rule", 'rule family="ipv4" source address="198.51.100.0/24" port port="25" protocol="tcp" drop',
     [], True),                                                     # a drop opens nothing: it stays
    ("rich-rule", 'rule family="ipv4" source address="192.0.2.7" accept', [{"port": "1-65535"}], False),
    ("rich-rule", 'rule service name="ftp" log prefix="ftp" level="info" accept', [{"port": 21}], True),
    ("protocol", "gre", [{"port": "1-65535"}], False),
    ("source-port", "68/udp", [{"port": "1-65535", "protocol": "udp"}], False),
])
def test_element_covered(kind, value, allow, covered):
    assert element_covered(kind, value, services(), openings(allow)) is covered


def test_plan_manages_the_default_and_active_zones_runtime_and_permanent():
    planned = plan(state(), openings([{"port": 443}, {"port": 9100, "sources": ["10.0.0.0/8"]}]), persist=True)
    assert planned["zones"] == ["public", "internal"]  # the default zone first
    assert any("zone trusted (target ACCEPT) lets everything in from lo2" in warning
               for warning in planned["warnings"])
    assert [" ".join(argv) for argv in planned["commands"]] == [
        "firewall-cmd --zone=public --add-port=443/tcp",
        "firewall-cmd --zone=public --remove-port=6000-6010/udp --remove-port=9090/tcp",
        "firewall-cmd --zone=public --remove-service=cockpit --remove-service=http",
        'firewall-cmd --zone=public --remove-rich-rule=rule service name="ftp" log prefix="ftp" level="info" accept '
        '--remove-rich-rule=rule family="ipv6" source address="2001:db8::/32" port port="9100" protocol="tcp" accept '
        '--remove-rich-rule=rule family="ipv4" source address="192.0.2.7" accept',
        "firewall-cmd --zone=public --remove-protocol=gre",
        "firewall-cmd --zone=public --remove-source-port=68/udp",
        "firewall-cmd --permanent --zone=public --add-port=443/tcp",
        'firewall-cmd --permanent --zone=public --add-rich-rule=rule family="ipv4" source address="10.0.0.0/8" '
        'port port="9100" protocol="tcp" accept',
        "firewall-cmd --permanent --zone=public --remove-port=6000-6010/udp",
        "firewall-cmd --zone=internal --add-port=443/tcp",
        'firewall-cmd --zone=internal --add-rich-rule=rule family="ipv4" source address="10.0.0.0/8" port port="9100" '
        'protocol="tcp" accept',
        "firewall-cmd --zone=internal --remove-service=mdns --remove-service=samba-client",
        "firewall-cmd --permanent --zone=internal --add-port=443/tcp",
        'firewall-cmd --permanent --zone=internal --add-rich-rule=rule family="ipv4" source address="10.0.0.0/8" '
        'port port="9100" protocol="tcp" accept',
        "firewall-cmd --permanent --zone=internal --remove-service=mdns --remove-service=samba-client",
    ]
    # ssh (22/tcp, the management port) and dhcpv6-client stay; the drop rich rule too.
    assert "services: dhcpv6-client ssh\n" in planned["after"]
    assert 'port="25" protocol="tcp" drop' in planned["after"]
    # The undo is the runtime part, inverted and in reverse order.
    assert planned["undo"][0] == ["firewall-cmd", "--zone=internal", "--add-service=mdns", "--add-service=samba-client"]
    assert planned["undo"][-1] == ["firewall-cmd", "--zone=public", "--remove-port=443/tcp"]
    assert all("--permanent" not in argv for argv in planned["undo"])
    assert planned["added"]["public"] == [["port", "443/tcp"]]


def test_plan_without_persist_changes_the_runtime_only():
    planned = plan(state(), openings([{"port": 22}]), persist=False)
    assert planned["commands"] and all("--permanent" not in argv for argv in planned["commands"])


def test_a_default_zone_that_accepts_everything_is_refused():
    accepting = state()
    accepting["default"] = "trusted"
    with pytest.raises(FirewalldError, match="default zone trusted has target ACCEPT"):
        managed_zones(accepting)


def test_inverse_flips_adds_and_removes_in_reverse_order():
    done = [["firewall-cmd", "--zone=a", "--add-port=1/tcp"], ["firewall-cmd", "--zone=a", "--remove-service=x"]]
    assert inverse(done) == [
        ["firewall-cmd", "--zone=a", "--add-service=x"], ["firewall-cmd", "--zone=a", "--remove-port=1/tcp"]]


def test_record_and_removal_touch_only_what_portcullis_added():
    planned = plan(state(), openings([{"port": 443}]), persist=True)
    record = record_added({"public": [["port", "8443/tcp"], ["port", "6000-6010/udp"]]}, planned)
    # 6000-6010/udp is removed by this plan: no longer Portcullis's; 8443/tcp stays recorded.
    assert record["public"] == [["port", "8443/tcp"], ["port", "443/tcp"]]
    removed = removal_plan(state(), {"public": [["port", "9090/tcp"], ["port", "443/tcp"]]})
    assert [" ".join(argv) for argv in removed["commands"]] == ["firewall-cmd --zone=public --remove-port=9090/tcp"]
    assert removed["removed"] == ["zone public: port 9090/tcp"]
    # The port of this connection stays, though Portcullis added it.
    kept = removal_plan(state(), {"public": [["port", "9090/tcp"]]}, session_port=9090)
    assert kept["commands"] == [] and kept["kept"] == ["zone public: port 9090/tcp"]


def test_move_opens_the_new_port_before_closing_the_old_one_and_its_service():
    moving = move_plan(state(), [22], 2200)
    transition, final, undo = moving["transition"], moving["final"], moving["undo"]
    assert [" ".join(argv) for argv in transition] == [
        "firewall-cmd --zone=public --add-port=2200/tcp", "firewall-cmd --permanent --zone=public --add-port=2200/tcp",
        "firewall-cmd --zone=internal --add-port=2200/tcp", "firewall-cmd --permanent --zone=internal --add-port=2200/tcp"]
    assert [" ".join(argv) for argv in final] == [
        "firewall-cmd --zone=public --remove-service=ssh", "firewall-cmd --permanent --zone=public --remove-service=ssh",
        "firewall-cmd --zone=internal --remove-service=ssh", "firewall-cmd --permanent --zone=internal --remove-service=ssh"]
    assert moving["moved"] == [("public", "service", "ssh"), ("internal", "service", "ssh")]
    assert all("--permanent" not in argv for argv in undo)
    assert moving["before"].startswith("public (runtime)\n") and "internal (runtime)\n" in moving["before"]
    assert opening_elements(state(), 22) == [("public", "service", "ssh"), ("internal", "service", "ssh")]


def test_a_zone_target_that_answers_otherwise_than_the_policy_is_named():
    assert target_warnings(state(), ["public", "internal"], "reject") == []
    [public, internal] = target_warnings(state(), ["public", "internal"], "drop")
    assert public.startswith("policy: drop, but firewalld zone public has target default, which rejects")
    assert "--zone=internal --set-target=DROP" in internal
