# Copyright (c) Portcullis contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Ports published to containers. The fixtures under fixtures/published/netns-debian12-* are real captures from a
network namespace on Debian 12 (nft 1.0.6, iptables-nft 1.8.9): Docker-style rules written with iptables-nft
(`nft -j list ruleset` shows their DNAT only as an xt target) and a native `table inet netavark`."""

from __future__ import annotations

import copy
import json
import os

import pytest

from ansible_collections.portcullis.hardening.plugins.module_utils._published import (
    NFT_RULESET,
    container_networks,
    container_text,
    describe,
    docker_containers,
    docker_data_root,
    link_proxies,
    parse_iptables_save,
    parse_nft_ruleset,
    port_range,
    publish_flag,
    published_ports,
    read_published,
)

from .fakehost import fake_host, write_host_file

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "published")
RULESET = "netns-debian12-ruleset.json"
SAVE_V4 = "netns-debian12-iptables-nft-save-nat.txt"
SAVE_V6 = "netns-debian12-ip6tables-nft-save-nat.txt"
WEB_ID = "3f4e9a1c" * 8
PODMAN_ID = "3c5e0b7d" * 8


def fixture(name):
    with open(os.path.join(FIXTURES, name), encoding="utf-8") as handle:
        return handle.read()


def docker_config(name="web", container_id=WEB_ID, running=True, ipv4="172.17.0.2", ipv6="fd17::2"):
    """A Docker config.v2.json, reduced to the fields Docker writes and the reader uses."""
    return json.dumps({
        "ID": container_id, "Name": "/" + name, "Config": {"Image": "nginx:1.27"},
        "State": {"Running": running, "Pid": 4242 if running else 0},
        "NetworkSettings": {"Networks": {"bridge": {"IPAddress": ipv4, "GlobalIPv6Address": ipv6,
                                                    "Gateway": "172.17.0.1"}}},
    })


def capture_host(tmp_path, config=None, data_root="/var/lib/docker", ruleset=None):
    """A host whose nft and iptables-nft-save answer with the captures, with one Docker container config."""
    host, system = fake_host(tmp_path)
    system.respond(NFT_RULESET, out=ruleset if ruleset is not None else fixture(RULESET))
    system.respond(["iptables-nft-save", "-t", "nat"], out=fixture(SAVE_V4))
    system.respond(["ip6tables-nft-save", "-t", "nat"], out=fixture(SAVE_V6))
    write_host_file(tmp_path, "%s/containers/%s/config.v2.json" % (data_root, WEB_ID),
                    docker_config() if config is None else config)
    return host, system


WEB = {"runtime": "docker", "id": WEB_ID, "name": "web", "image": "nginx:1.27"}
DOCKER_WEB = "the docker container web"  # a default argument standing for WEB (a dict cannot be one)


def expected_ports(container=DOCKER_WEB):
    container = WEB if container is DOCKER_WEB else container
    docker = {"table": "ip nat", "chain": "DOCKER", "origin": "iptables-nft", "from_interfaces_except": ["docker0"],
              "container": container, "proxy": []}
    return [
        {"protocol": "tcp", "family": "ipv4", "address": "0.0.0.0", "port": 3001, "wildcard": True,
         "target_address": "10.88.0.4", "target_port": 8080, "table": "inet netavark",
         "chain": "nv_2f259bab_10_88_0_0_nm16_dnat", "origin": "nft", "from_interfaces_except": [],
         "container": None, "proxy": []},
        dict(docker, protocol="tcp", family="ipv4", address="0.0.0.0", port=8081, wildcard=True,
             target_address="172.17.0.2", target_port=80),
        dict(docker, protocol="tcp", family="ipv6", address="::", port=8081, wildcard=True,
             target_address="fd17::2", target_port=80, table="ip6 nat"),
        dict(docker, protocol="udp", family="ipv4", address="127.0.0.1", port=5300, wildcard=False,
             target_address="172.17.0.2", target_port=53),
    ]


# --- the real captures ------------------------------------------------------------------------------------------

def test_read_published_from_the_real_captures(tmp_path):
    host, system = capture_host(tmp_path)
    publication = read_published(host)
    assert publication.ports == expected_ports()
    assert publication.container_networks == {"ipv4": ["10.88.0.0/16", "172.17.0.0/16"], "ipv6": []}
    assert publication.notes == []
    assert system.calls == [NFT_RULESET, ["iptables-nft-save", "-t", "nat"], ["ip6tables-nft-save", "-t", "nat"]]


def test_the_nft_json_shows_dockers_tables_only_as_xt_expressions():
    nat_rules, xt_tables, notes = parse_nft_ruleset(json.loads(fixture(RULESET)))
    assert xt_tables == {("ip", "nat"), ("ip6", "nat")}
    assert notes == []
    assert [(rule.kind, rule.family, rule.table, rule.chain, rule.target_address, rule.target_port, rule.origin)
            for rule in nat_rules] == [
        ("masquerade", None, "inet netavark", "nv_2f259bab_10_88_0_0_nm16", None, None, "nft"),
        ("dnat", "ipv4", "inet netavark", "nv_2f259bab_10_88_0_0_nm16_dnat", "10.88.0.4", 8080, "nft"),
    ]
    assert [str(network) for network in nat_rules[0].path.saddr] == ["10.88.0.0/16"]
    # The `ip saddr 10.88.0.0/16 ... jump NETAVARK-HOSTPORT-SETMARK` rule narrows nothing: the DNAT takes everyone.
    assert (nat_rules[1].path.saddr, nat_rules[1].path.ports) == (None, ((3001, 3001),))


def test_a_table_written_by_iptables_nft_is_read_once_even_with_a_native_dnat(tmp_path):
    # Should a newer iptables-nft write a DNAT natively beside its xt expressions, the table is still read from
    # iptables-nft-save alone: its ports are not listed a second time from the JSON.
    document = json.loads(fixture(RULESET))
    native = copy.deepcopy([item for item in document["nftables"]
                            if "rule" in item and item["rule"]["table"] == "nat" and item["rule"]["family"] == "ip"
                            and item["rule"]["chain"] == "DOCKER" and "8081" in json.dumps(item)][0])
    native["rule"]["expr"][-1] = {"dnat": {"addr": "172.17.0.2", "port": 80}}
    document["nftables"].append(native)
    host, _system = capture_host(tmp_path, ruleset=json.dumps(document))
    ports = read_published(host).ports
    assert ports == expected_ports()
    assert len([item for item in ports if (item["protocol"], item["family"], item["port"]) == ("tcp", "ipv4", 8081)]) == 1


def test_a_container_that_is_not_running_owns_no_port(tmp_path):
    host, _system = capture_host(tmp_path, config=docker_config(running=False))
    assert read_published(host).ports == expected_ports(container=None)


def test_docker_data_root_from_daemon_json_is_honoured(tmp_path):
    host, system = capture_host(tmp_path, data_root="/srv/docker")
    write_host_file(tmp_path, "/etc/docker/daemon.json", '{"data-root": "/srv/docker", "ipv6": true}\n')
    assert read_published(host).ports == expected_ports()
    # The default root holds nothing here: without daemon.json the container is not found.
    other, _system = capture_host(tmp_path / "other", data_root="/srv/docker")
    assert [item["container"] for item in read_published(other).ports] == [None] * 4
    assert system.calls[0] == NFT_RULESET


@pytest.mark.parametrize("daemon_json, root", [
    (None, "/var/lib/docker"),
    ("", "/var/lib/docker"),
    ('{"data-root": "/srv/docker"}', "/srv/docker"),
    ('{"data-root": "relative/docker"}', "/var/lib/docker"),
    ('{"data-root": 7}', "/var/lib/docker"),
    ('["not", "an", "object"]', "/var/lib/docker"),
    ("{not json", "/var/lib/docker"),
])
def test_docker_data_root(daemon_json, root):
    assert docker_data_root(daemon_json) == root


def test_docker_containers_by_address_of_running_containers_only():
    configs = [docker_config(), docker_config("stopped", "ab" * 32, running=False, ipv4="172.17.0.3", ipv6=""),
               "{broken", json.dumps(["not", "a", "config"])]
    assert docker_containers(configs) == {"172.17.0.2": WEB, "fd17::2": WEB}


# --- what read_published cannot read ----------------------------------------------------------------------------

def test_nft_failing_gives_no_ports_and_a_note(tmp_path):
    host, system = fake_host(tmp_path)
    system.respond(NFT_RULESET, rc=1, err="Error: Operation not permitted\n")
    publication = read_published(host)
    assert (publication.ports, publication.container_networks) == ([], {"ipv4": [], "ipv6": []})
    assert publication.notes == ["published ports were not read: nft -j list ruleset failed (rc=1): "
                                 "Error: Operation not permitted"]
    assert system.calls == [NFT_RULESET]


def test_nft_failing_still_marks_every_listener_not_published(tmp_path):
    host, system = fake_host(tmp_path)
    system.respond(NFT_RULESET, rc=1, err="Error: Operation not permitted\n")
    listeners = [host_listener("tcp", "0.0.0.0", 8081, [DOCKER_PROXY])]
    read_published(host, listeners)
    assert listeners[0].get("published") is False


def test_nft_output_that_is_not_json_gives_a_note(tmp_path):
    host, system = fake_host(tmp_path)
    system.respond(NFT_RULESET, out="table ip nat {\n")
    publication = read_published(host)
    assert publication.ports == []
    assert len(publication.notes) == 1 and publication.notes[0].startswith(
        "published ports were not read: nft -j output is not JSON: ")


def test_iptables_nft_save_failing_gives_a_note_naming_the_table(tmp_path):
    host, system = capture_host(tmp_path)
    system.respond(["ip6tables-nft-save", "-t", "nat"], rc=1, err="ip6tables-nft-save: Permission denied\n")
    publication = read_published(host)
    assert publication.notes == ["table ip6 nat: ip6tables-nft-save -t nat failed (rc=1): ip6tables-nft-save: "
                                 "Permission denied; its DNAT rules are not listed"]
    assert publication.ports == [item for item in expected_ports() if item["family"] == "ipv4"]


def nat_table(family, name, rules, hook="prerouting"):
    """An `nft -j list ruleset` document of one native table with one base chain holding `rules` (expr lists)."""
    items = [{"metainfo": {"version": "1.0.6", "json_schema_version": 1}},
             {"table": {"family": family, "name": name, "handle": 1}},
             {"chain": {"family": family, "table": name, "name": hook, "handle": 1, "type": "nat", "hook": hook,
                        "prio": -100, "policy": "accept"}}]
    items += [{"rule": {"family": family, "table": name, "chain": hook, "handle": 2 + number, "expr": expr}}
              for number, expr in enumerate(rules)]
    return {"nftables": items}


TCP_DPORT = {"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}}, "right": 8443}}


def test_a_dnat_through_a_map_gives_a_note(tmp_path):
    by_port = {"map": {"key": {"payload": {"protocol": "tcp", "field": "dport"}}, "data": "@targets"}}
    document = nat_table("inet", "edge", [[TCP_DPORT, {"dnat": {"family": "ip", "addr": by_port}}]])
    host, system = fake_host(tmp_path)
    system.respond(NFT_RULESET, out=json.dumps(document))
    publication = read_published(host)
    assert publication.ports == []
    assert publication.notes == ["inet edge chain prerouting: a DNAT whose target Portcullis cannot read (a map of "
                                 "addresses or ports); its ports are not listed"]


def test_native_nft_matches_narrow_the_published_port():
    document = nat_table("ip", "hand", [
        [{"match": {"op": "==", "left": {"meta": {"key": "l4proto"}}, "right": {"set": ["tcp", "udp"]}}},
         {"match": {"op": "==", "left": {"payload": {"protocol": "th", "field": "dport"}},
                    "right": {"set": [53, {"range": [5000, 5010]}]}}},
         {"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "daddr"}},
                    "right": {"prefix": {"addr": "192.0.2.0", "len": 24}}}},
         {"match": {"op": "!=", "left": {"meta": {"key": "iifname"}}, "right": "br0"}},
         {"dnat": {"addr": "10.1.0.5", "port": 5353}}],
    ])
    nat_rules, xt_tables, notes = parse_nft_ruleset(document)
    assert (xt_tables, notes) == (set(), [])
    ports = published_ports(nat_rules)
    assert [(item["protocol"], item["address"], item["port"], item["wildcard"], item["from_interfaces_except"])
            for item in ports] == [
        ("tcp", "192.0.2.0/24", 53, False, ["br0"]),
        ("tcp", "192.0.2.0/24", "5000-5010", False, ["br0"]),
        ("udp", "192.0.2.0/24", 53, False, ["br0"]),
        ("udp", "192.0.2.0/24", "5000-5010", False, ["br0"]),
    ]
    assert {(item["target_address"], item["target_port"], item["table"], item["chain"]) for item in ports} == {
        ("10.1.0.5", 5353, "ip hand", "prerouting")}


@pytest.mark.parametrize("port, target_port", [
    ({"map": {"key": {"payload": {"protocol": "tcp", "field": "dport"}}, "data": {"set": [[8443, 443], [8080, 80]]}}},
     "note"),
    ({"range": [8000, 8100]}, 8000),  # a port range: its first port, as for iptables' --to-destination
])
def test_a_dnat_whose_port_is_a_map_gives_a_note_not_a_port(port, target_port):
    document = nat_table("ip", "edge", [[TCP_DPORT, {"dnat": {"addr": "10.0.0.5", "port": port}}]])
    nat_rules, xt_tables, notes = parse_nft_ruleset(document)
    ports = published_ports(nat_rules)
    if target_port == "note":
        assert ports == []  # never a port with target_port None: that would say "the same port"
        assert notes == ["ip edge chain prerouting: a DNAT whose target Portcullis cannot read (a map of addresses "
                         "or ports); its ports are not listed"]
    else:
        assert notes == []
        assert [(item["protocol"], item["port"], item["target_address"], item["target_port"]) for item in ports] == [
            ("tcp", 8443, "10.0.0.5", target_port)]


# --- verdict maps (Docker 28's nftables backend) ------------------------------------------------------------------

def with_chains(document, family, table, chains):
    """`document` with regular chains added to `table`: {chain name: [expr lists of its rules]}."""
    for number, (name, rules) in enumerate(sorted(chains.items())):
        document["nftables"].append({"chain": {"family": family, "table": table, "name": name, "handle": 50 + number}})
        document["nftables"] += [{"rule": {"family": family, "table": table, "chain": name, "handle": 100 + position,
                                           "expr": expr}} for position, expr in enumerate(rules)]
    return document


def masquerade_from(network, bridge):
    """Docker 28: oifname != "BRIDGE" ip saddr NETWORK counter masquerade."""
    address, _sep, length = network.partition("/")
    return [{"match": {"op": "!=", "left": {"meta": {"key": "oifname"}}, "right": bridge}},
            {"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "saddr"}},
                       "right": {"prefix": {"addr": address, "len": int(length)}}}},
            {"counter": {"packets": 0, "bytes": 0}}, {"masquerade": None}]


def jump(target):
    return {"jump": {"target": target}}


def docker_bridges(data, maps=()):
    """Docker 28's `table ip docker-bridges`, reduced to its NAT postrouting: `iifname vmap DATA` leading to a chain
    per bridge that masquerades the bridge's network."""
    document = nat_table("ip", "docker-bridges", [[{"vmap": {"key": {"meta": {"key": "iifname"}}, "data": data}}]],
                         hook="postrouting")
    document["nftables"] += list(maps)
    return with_chains(document, "ip", "docker-bridges", {
        "nat-postrouting-out__docker0": [masquerade_from("172.17.0.0/16", "docker0")],
        "nat-postrouting-out__br-5a1": [masquerade_from("172.18.0.0/16", "br-5a1")],
    })


JUMPS = [["docker0", jump("nat-postrouting-out__docker0")], ["br-5a1", jump("nat-postrouting-out__br-5a1")]]


def jumps_map(table="docker-bridges", elements=None):
    elements = JUMPS if elements is None else elements
    return {"map": {"family": "ip", "table": table, "name": "nat-postrouting-out-jumps", "handle": 3, "type": "ifname",
                    "map": "verdict", "elem": elements}}


@pytest.mark.parametrize("document", [
    pytest.param(docker_bridges({"set": JUMPS}), id="anonymous vmap"),
    pytest.param(docker_bridges("@nat-postrouting-out-jumps", [jumps_map()]), id="named vmap"),
])
def test_a_verdict_map_leads_to_the_container_networks(document):
    nat_rules, xt_tables, notes = parse_nft_ruleset(document)
    assert (xt_tables, notes) == (set(), [])
    assert container_networks(nat_rules) == {"ipv4": ["172.17.0.0/16", "172.18.0.0/16"], "ipv6": []}
    # The vmap's key narrows each branch: the packets that come in from that bridge.
    assert sorted((rule.kind, rule.chain, rule.path.in_interfaces, rule.table) for rule in nat_rules) == [
        ("masquerade", "nat-postrouting-out__br-5a1", ("br-5a1",), "ip docker-bridges"),
        ("masquerade", "nat-postrouting-out__docker0", ("docker0",), "ip docker-bridges"),
    ]


@pytest.mark.parametrize("maps", [
    pytest.param([], id="the map is not in the ruleset"),
    pytest.param([jumps_map(table="other")], id="a map of that name in another table"),
    pytest.param([jumps_map(elements=[["docker0", {"accept": None}], ["br-5a1", jump("no-such-chain")], ["lone"],
                                      "docker0"])], id="elements that jump nowhere"),
])
def test_a_named_verdict_map_is_followed_only_to_its_own_tables_chains(maps):
    nat_rules, xt_tables, notes = parse_nft_ruleset(docker_bridges("@nat-postrouting-out-jumps", maps))
    assert (nat_rules, xt_tables, notes) == ([], set(), [])


def test_a_dnat_reached_through_a_verdict_map_is_found_and_the_key_narrows_its_port():
    by_port = {"vmap": {"key": {"payload": {"protocol": "tcp", "field": "dport"}}, "data": {"set": [
        [8081, jump("web")], [{"range": [9000, 9010]}, {"goto": {"target": "range"}}], [8443, {"accept": None}]]}}}
    document = with_chains(nat_table("ip", "hand", [[by_port]]), "ip", "hand", {
        "web": [[{"dnat": {"addr": "172.18.0.2", "port": 80}}]],
        "range": [[{"dnat": {"addr": "172.18.0.3"}}]],
    })
    nat_rules, xt_tables, notes = parse_nft_ruleset(document)
    assert (xt_tables, notes) == (set(), [])
    assert [(item["protocol"], item["family"], item["address"], item["port"], item["target_address"],
             item["target_port"], item["chain"]) for item in published_ports(nat_rules)] == [
        ("tcp", "ipv4", "0.0.0.0", 8081, "172.18.0.2", 80, "web"),  # not tcp and udp 1-65535: the key says
        ("tcp", "ipv4", "0.0.0.0", "9000-9010", "172.18.0.3", None, "range"),
    ]


def test_an_interface_vmap_narrows_what_follows_it_to_that_interface():
    by_interface = {"vmap": {"key": {"meta": {"key": "iifname"}}, "data": {"set": [["eth0", jump("outside")]]}}}
    document = with_chains(nat_table("ip", "hand", [[TCP_DPORT, by_interface]]), "ip", "hand", {
        "outside": [[{"dnat": {"addr": "172.18.0.2", "port": 443}}]]})
    [rule] = parse_nft_ruleset(document)[0]
    assert (rule.path.in_interfaces, rule.path.protocols, rule.path.ports) == (("eth0",), ("tcp",), ((8443, 8443),))


# --- iptables-save text -----------------------------------------------------------------------------------------

HAND_WRITTEN = """\
# Generated by iptables-nft-save v1.8.9 (nf_tables)
*nat
:PREROUTING ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:APP - [0:0]
:ORPHAN - [0:0]
:NETAVARK-HOSTPORT-DNAT - [0:0]
:NETAVARK-HOSTPORT-SETMARK - [0:0]
:NETAVARK-DN-1D8721804F16F - [0:0]
-A PREROUTING -m addrtype --dst-type LOCAL -j APP
-A PREROUTING -m addrtype --dst-type LOCAL -j NETAVARK-HOSTPORT-DNAT
-A POSTROUTING -s 172.18.0.0/16 ! -o br-5a1 -j MASQUERADE
-A POSTROUTING -s 127.0.0.0/8 -j MASQUERADE
-A APP ! -i br-5a1 -p tcp -m tcp --dport 8000:8100 -j DNAT --to-destination 172.18.0.5:9000-9100
-A APP -p tcp -m multiport --dports 80,443 -j DNAT --to-destination 172.18.0.6
-A APP -d 127.0.0.1/32 -p udp -m udp --dport 5353 -j DNAT --to-destination 172.18.0.7:53
-A APP ! -d 127.0.0.0/8 -p tcp -j DNAT --to-destination 172.18.0.8:7
-A APP -p tcp -m tcp --dport 6000 -j DNAT
-A APP -p tcp -m tcp --dport 6001 -m comment --comment "unbalanced -j DNAT --to-destination 172.18.0.9
-A ORPHAN -p tcp -m tcp --dport 9999 -j DNAT --to-destination 172.18.0.10:1
-A NETAVARK-HOSTPORT-SETMARK -j MARK --set-xmark 0x2000/0x2000
-A NETAVARK-HOSTPORT-DNAT -p tcp -m multiport --dports 8080 -m comment --comment "dnat name: podman id: %s" \
-j NETAVARK-DN-1D8721804F16F
-A NETAVARK-DN-1D8721804F16F -s 10.88.0.0/16 -p tcp -m tcp --dport 8080 -j NETAVARK-HOSTPORT-SETMARK
-A NETAVARK-DN-1D8721804F16F -p tcp -m tcp --dport 8080 -j DNAT --to-destination 10.88.0.2:80
COMMIT
""" % PODMAN_ID


def summary(ports):
    return [(item["protocol"], item["address"], item["port"], item["target_address"], item["target_port"],
             item["chain"], item["from_interfaces_except"]) for item in ports]


def test_parse_iptables_save_hand_written_lines():
    nat_rules, notes = parse_iptables_save(HAND_WRITTEN, "ipv4", "ip nat")
    ports = published_ports(nat_rules)
    assert summary(ports) == [
        ("tcp", "0.0.0.0", "1-65535", "172.18.0.8", 7, "APP", []),  # no port match: every port
        ("tcp", "0.0.0.0", 80, "172.18.0.6", None, "APP", []),  # no port in the target: the same port
        ("tcp", "0.0.0.0", 443, "172.18.0.6", None, "APP", []),
        ("tcp", "0.0.0.0", "8000-8100", "172.18.0.5", 9000, "APP", ["br-5a1"]),
        ("tcp", "0.0.0.0", 8080, "10.88.0.2", 80, "NETAVARK-DN-1D8721804F16F", []),
        ("udp", "127.0.0.1", 5353, "172.18.0.7", 53, "APP", []),
    ]
    assert all(item["origin"] == "iptables-nft" and item["table"] == "ip nat" for item in ports)
    assert [port_range(item) for item in ports][:4] == [(1, 65535), (80, 80), (443, 443), (8000, 8100)]
    assert notes == ["ip nat chain APP: a DNAT without --to-destination; not listed"]
    # The chain that PREROUTING never reaches publishes nothing; loopback sources are no container network.
    assert not [item for item in ports if item["port"] == 9999]
    assert container_networks(nat_rules) == {"ipv4": ["172.18.0.0/16"], "ipv6": []}


def test_netavarks_iptables_comment_names_a_podman_container():
    ports = published_ports(parse_iptables_save(HAND_WRITTEN, "ipv4", "ip nat")[0])
    [podman] = [item["container"] for item in ports if item["port"] == 8080]
    # netavark's "name" is the network's (podman), not the container's: the container has no name here.
    assert podman == {"runtime": "podman", "id": PODMAN_ID, "name": None, "image": None}
    assert container_text(podman) == "podman container %s" % PODMAN_ID[:12]
    assert [item["container"] for item in ports if item["port"] != 8080] == [None] * 5


@pytest.mark.parametrize("container, words", [
    (WEB, "docker container web"),
    ({"runtime": "podman", "id": PODMAN_ID, "name": None, "image": None}, "podman container 3c5e0b7d3c5e"),
    ({"runtime": "podman", "id": PODMAN_ID, "name": "", "image": None}, "podman container 3c5e0b7d3c5e"),
    ({"runtime": "podman", "id": PODMAN_ID, "name": "cache", "image": None}, "podman container cache"),
    ({"runtime": "docker", "id": None, "name": None, "image": None}, "docker container ?"),
])
def test_container_text(container, words):
    assert container_text(container) == words


def test_a_known_container_address_wins_over_the_comment():
    ports = published_ports(parse_iptables_save(HAND_WRITTEN, "ipv4", "ip nat")[0], {"172.18.0.6": WEB})
    assert [item["port"] for item in ports if item["container"] == WEB] == [80, 443]


@pytest.mark.parametrize("destination, address, port", [
    ("[fd17::2]:80", "fd17::2", 80),
    ("fd17::3", "fd17::3", None),
    ("[fd17::4]:8000-8100", "fd17::4", 8000),
    ("fd17::5-fd17::9", "fd17::5", None),
])
def test_ip6tables_destinations(destination, address, port):
    text = "*nat\n-A PREROUTING -p tcp -m tcp --dport 8081 -j DNAT --to-destination %s\nCOMMIT\n" % destination
    nat_rules, notes = parse_iptables_save(text, "ipv6", "ip6 nat")
    assert notes == []
    assert [(item["family"], item["address"], item["target_address"], item["target_port"])
            for item in published_ports(nat_rules)] == [("ipv6", "::", address, port)]


def test_the_real_ip6tables_capture():
    nat_rules, notes = parse_iptables_save(fixture(SAVE_V6), "ipv6", "ip6 nat")
    assert notes == []
    assert published_ports(nat_rules) == [expected_ports(container=None)[2]]


def test_a_dnat_to_text_that_cannot_be_read_gives_a_note():
    text = "*nat\n-A PREROUTING -p tcp --dport 81 -j DNAT --to-destination 172.17.0.2:http\nCOMMIT\n"
    nat_rules, notes = parse_iptables_save(text, "ipv4", "ip nat")
    assert nat_rules == []
    assert notes == ["ip nat chain PREROUTING: DNAT to '172.17.0.2:http' cannot be read"]


# --- userland proxies -------------------------------------------------------------------------------------------

DOCKER_PROXY = {"pid": 900, "name": "docker-proxy", "unit": "docker.service", "cmdline": (
    "/usr/bin/docker-proxy -proto tcp -host-ip 0.0.0.0 -host-port 8081 -container-ip 172.17.0.2 -container-port 80")}
NGINX = {"pid": 901, "name": "nginx", "unit": "nginx.service", "cmdline": "nginx: master process /usr/sbin/nginx"}


def host_listener(protocol, address, port, processes):
    return {"protocol": protocol, "family": "ipv6" if ":" in address else "ipv4", "address": address, "port": port,
            "processes": list(processes), "loopback": address.startswith("127."), "wildcard": address in ("0.0.0.0", "::")}


def test_link_proxies_marks_the_docker_proxy_listener_only():
    ports = published_ports(parse_iptables_save(fixture(SAVE_V4), "ipv4", "ip nat")[0])
    other_proxy = dict(DOCKER_PROXY, pid=902, cmdline=DOCKER_PROXY["cmdline"].replace("8081", "8082"))
    listeners = [host_listener("tcp", "0.0.0.0", 8081, [DOCKER_PROXY]),
                 host_listener("tcp", "::", 8081, [NGINX]),
                 host_listener("udp", "0.0.0.0", 8081, [dict(DOCKER_PROXY, pid=903)]),  # no udp 8081 is published
                 host_listener("tcp", "0.0.0.0", 5300, [other_proxy]),  # says it serves 8082: not 5300's proxy
                 host_listener("tcp", "0.0.0.0", 22, [])]
    link_proxies(listeners, ports)
    assert [item["published"] for item in listeners] == [True, False, False, False, False]
    assert [(item["protocol"], item["port"], item["proxy"]) for item in ports] == [
        ("tcp", 8081, ["0.0.0.0:8081"]), ("udp", 5300, [])]
    link_proxies(listeners, ports)  # again: the proxy is listed once
    assert ports[0]["proxy"] == ["0.0.0.0:8081"]


def v6_proxy(pid=910):
    return dict(DOCKER_PROXY, pid=pid, cmdline=DOCKER_PROXY["cmdline"].replace(
        "-host-ip 0.0.0.0", "-host-ip ::").replace("172.17.0.2", "fd17::2"))


@pytest.mark.parametrize("address, proxy, family, ipv4_proxy, ipv6_proxy", [
    ("0.0.0.0", DOCKER_PROXY, "ipv4", ["0.0.0.0:8081"], []),
    ("::", v6_proxy(), "ipv6", [], ["[::]:8081"]),
])
def test_link_proxies_compares_families(address, proxy, family, ipv4_proxy, ipv6_proxy):
    ports = published_ports(parse_iptables_save(fixture(SAVE_V4), "ipv4", "ip nat")[0]
                            + parse_iptables_save(fixture(SAVE_V6), "ipv6", "ip6 nat")[0])
    listeners = [host_listener("tcp", address, 8081, [proxy])]
    assert listeners[0]["family"] == family
    link_proxies(listeners, ports)
    assert listeners[0]["published"] is True
    assert [(item["family"], item["port"], item["proxy"]) for item in ports if item["protocol"] == "tcp"] == [
        ("ipv4", 8081, ipv4_proxy), ("ipv6", 8081, ipv6_proxy)]


def test_link_proxies_without_published_ports_marks_every_listener_false():
    listeners = [host_listener("tcp", "0.0.0.0", 8081, [DOCKER_PROXY]), host_listener("tcp", "0.0.0.0", 22, [])]
    link_proxies(listeners, [])
    assert [item["published"] for item in listeners] == [False, False]


def test_read_published_links_the_proxies_of_the_listeners_it_is_given(tmp_path):
    host, _system = capture_host(tmp_path)
    listeners = [host_listener("tcp", "0.0.0.0", 8081, [DOCKER_PROXY]), host_listener("tcp", "0.0.0.0", 80, [NGINX])]
    ports = read_published(host, listeners).ports
    assert [item["published"] for item in listeners] == [True, False]
    assert [item["proxy"] for item in ports if item["family"] == "ipv4"] == [[], ["0.0.0.0:8081"], []]


# --- in words ---------------------------------------------------------------------------------------------------

def published(protocol="tcp", address="0.0.0.0", port=8081, target_address="172.17.0.2", target_port=80,
              container=DOCKER_WEB, family=None, table="ip nat", chain="DOCKER"):
    container = WEB if container is DOCKER_WEB else container
    family = family or ("ipv6" if ":" in address else "ipv4")
    return {"protocol": protocol, "family": family, "address": address, "port": port,
            "wildcard": address in ("0.0.0.0", "::"), "target_address": target_address, "target_port": target_port,
            "table": table, "chain": chain, "origin": "iptables-nft", "from_interfaces_except": ["docker0"],
            "container": container, "proxy": []}


@pytest.mark.parametrize("item, words, flag", [
    (published(), "tcp 0.0.0.0:8081 -> 172.17.0.2:80 (DNAT in ip nat chain DOCKER, docker container web)",
     "-p 8081:80"),
    (published("udp", "127.0.0.1", 5300, target_port=53),
     "udp 127.0.0.1:5300 -> 172.17.0.2:53 (DNAT in ip nat chain DOCKER, docker container web)",
     "-p 127.0.0.1:5300:53/udp"),
    (published(address="192.0.2.10", port=8443, target_port=443, container=None),
     "tcp 192.0.2.10:8443 -> 172.17.0.2:443 (DNAT in ip nat chain DOCKER)", "-p 192.0.2.10:8443:443"),
    (published(port="8000-8100", target_port=9000),
     "tcp 0.0.0.0:8000-8100 -> 172.17.0.2:9000 (DNAT in ip nat chain DOCKER, docker container web)",
     "-p 8000-8100:9000-9100"),
    (published("udp", port="6000-6002", target_port=6000),
     "udp 0.0.0.0:6000-6002 -> 172.17.0.2:6000 (DNAT in ip nat chain DOCKER, docker container web)",
     "-p 6000-6002:6000-6002/udp"),
    (published(address="::", target_address="fd17::2", table="ip6 nat"),
     "tcp [::]:8081 -> [fd17::2]:80 (DNAT in ip6 nat chain DOCKER, docker container web)", "-p 8081:80"),
    (published(address="fd00::1", target_address="fd17::2", table="ip6 nat"),
     "tcp [fd00::1]:8081 -> [fd17::2]:80 (DNAT in ip6 nat chain DOCKER, docker container web)",
     "-p [fd00::1]:8081:80"),
    (published(address="::", port=53, target_address="fd17::3", target_port=None, table="ip6 nat"),
     "tcp [::]:53 -> fd17::3 (DNAT in ip6 nat chain DOCKER, docker container web)", "-p 53:53"),
    (published(port=3001, target_address="10.88.0.4", target_port=8080, table="inet netavark", chain="nv_dnat",
               container={"runtime": "podman", "id": PODMAN_ID, "name": None, "image": None}),
     "tcp 0.0.0.0:3001 -> 10.88.0.4:8080 (DNAT in inet netavark chain nv_dnat, podman container %s)" % PODMAN_ID[:12],
     "-p 3001:8080"),
])
def test_describe_and_publish_flag(item, words, flag):
    assert (describe(item), publish_flag(item)) == (words, flag)


def test_publish_flag_of_a_range_that_keeps_its_ports():
    assert publish_flag(published(port="8000-8100", target_port=None)) == "-p 8000-8100:8000-8100"
