# Copyright (c) Portcullis contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import pytest

from ansible_collections.portcullis.hardening.plugins.module_utils._allowlist import parse_allowlist
from ansible_collections.portcullis.hardening.plugins.module_utils._audit import (
    CONTROL_TITLES,
    KIND_CONTROLS,
    audit_listeners,
    is_compliant,
    normalise_listeners,
    probe_findings,
    probe_ports,
    process_matches,
    sort_findings,
)


def proc(name, unit=None, pid=10, cmdline=None):
    return {"pid": pid, "name": name, "unit": unit, "cmdline": cmdline or name}


def listener(protocol, address, port, processes=(), family=None):
    return normalise_listeners([{"protocol": protocol, "address": address, "port": port,
                                 "processes": list(processes)} | ({"family": family} if family else {})])[0]


SSHD = proc("sshd", "ssh.service", 36, "sshd: /usr/sbin/sshd -D [listener] 0 of 10-100 startups")
WEB = proc("portcullis-rogu", "portcullis-rogue-web.service", 63,
           "/usr/bin/python3 /usr/local/bin/portcullis-rogue --proto tcp --address 0.0.0.0 --port 8080")
PG = proc("postgres", "postgresql@15-main.service", 70, "/usr/lib/postgresql/15/bin/postgres -D /var/lib/pg")


def kinds(findings):
    return [(item["kind"], item["severity"], item["protocol"], item["address"], item["port"], item["rule"])
            for item in findings]


def test_compliant_host_has_only_info():
    rules = parse_allowlist([{"port": 22, "process": "sshd"}, {"port": 8080, "process": "portcullis-rogue"}])
    findings = audit_listeners([listener("tcp", "0.0.0.0", 22, [SSHD]), listener("tcp", "::", 22, [SSHD]),
                                listener("tcp", "0.0.0.0", 8080, [WEB])], rules)
    assert findings == [] and is_compliant(findings)


def test_every_host_side_kind():
    rules = parse_allowlist([
        {"port": 22, "process": "sshd"},                       # 0: fine
        {"port": 5432, "bind": "loopback"},                     # 1: postgres listens on 0.0.0.0
        {"port": 80, "process": "nginx"},                       # 2: apache holds it
        {"port": "9000-9010", "protocol": "udp"},               # 3: nothing listens
        {"port": 3306, "bind": "loopback"},                     # 4: fine on loopback
    ])
    listeners = [
        listener("tcp", "0.0.0.0", 22, [SSHD]),
        listener("tcp", "0.0.0.0", 5432, [PG]),
        listener("tcp", "192.0.2.10", 80, [proc("apache2", "apache2.service")]),
        listener("tcp", "0.0.0.0", 8080, [WEB]),
        listener("tcp", "192.0.2.10", 8081),
        listener("tcp", "127.0.0.1", 6379, [proc("redis-server", "redis-server.service")]),
        listener("tcp", "127.0.0.1", 3306, [proc("mariadbd", "mariadb.service")]),
        listener("udp", "::", 5353, [proc("avahi-daemon", "avahi-daemon.service")]),
    ]
    findings = audit_listeners(listeners, rules)
    assert kinds(findings) == [
        ("unexpected_listener", "high", "tcp", "0.0.0.0", 8080, None),
        ("unexpected_listener", "high", "udp", "::", 5353, None),
        ("wider_bind_than_allowed", "high", "tcp", "0.0.0.0", 5432, 1),
        ("unexpected_listener", "medium", "tcp", "192.0.2.10", 8081, None),
        ("unexpected_process", "medium", "tcp", "192.0.2.10", 80, 2),
        ("allowed_not_listening", "info", "udp", None, "9000-9010", 3),
        ("unexpected_listener", "info", "tcp", "127.0.0.1", 6379, None),
    ]
    assert not is_compliant(findings)
    by_kind = {item["kind"]: item for item in findings}
    web = findings[0]
    assert web["message"] == ("tcp 0.0.0.0:8080 (portcullis-rogu, portcullis-rogue-web.service) listens, reachable "
                              "on every address, but no allowlist entry allows it")
    assert web["remediation"].startswith("If portcullis-rogue-web.service is not needed, stop and disable it "
                                         "(systemctl disable --now portcullis-rogue-web.service)")
    assert "{port: 8080, protocol: tcp}" in web["remediation"]
    assert by_kind["wider_bind_than_allowed"]["message"] == (
        "tcp 0.0.0.0:5432 (postgres, postgresql@15-main.service) listens on every address but allowlist[1] "
        "allows it on loopback only")
    assert "127.0.0.1 and ::1" in by_kind["wider_bind_than_allowed"]["remediation"]
    assert by_kind["unexpected_process"]["message"] == (
        "tcp 192.0.2.10:80 is allowed for nginx (allowlist[2]) but apache2, apache2.service listens there")
    assert findings[3]["message"].endswith("(no known process) listens, reachable on this address, but no "
                                           "allowlist entry allows it")
    for item in findings:
        assert [control["id"] for control in item["controls"]] == list(KIND_CONTROLS[item["kind"]])
        assert all(control["benchmark"] == "CIS Debian Linux 12 Benchmark" and control["version"] == "v1.1.0"
                   and control["title"] == CONTROL_TITLES[control["id"]] for control in item["controls"])
        assert item["source"] == "host" and item["remediation"]


def test_loopback_listeners_become_violations_on_request():
    redis = [listener("tcp", "::1", 6379)]
    assert kinds(audit_listeners(redis, [])) == [("unexpected_listener", "info", "tcp", "::1", 6379, None)]
    strict = audit_listeners(redis, [], include_loopback=True)
    assert kinds(strict) == [("unexpected_listener", "low", "tcp", "::1", 6379, None)]
    assert not is_compliant(strict)


@pytest.mark.parametrize("entry, address, family, allowed", [
    ({"port": 8000, "family": "ipv4"}, "::ffff:127.0.0.1", None, True),   # IPv4-mapped serves IPv4
    ({"port": 8000, "family": "ipv6"}, "::ffff:127.0.0.1", None, False),
    ({"port": 8000, "family": "ipv6"}, "::", None, True),
    ({"port": 8000, "family": "ipv4"}, "::", None, False),
    ({"port": "7990-8010"}, "0.0.0.0", None, True),
    ({"port": 8000, "protocol": "udp"}, "0.0.0.0", None, False),
])
def test_family_range_and_protocol_matching(entry, address, family, allowed):
    findings = audit_listeners([listener("tcp", address, 8000, family=family)], parse_allowlist([entry]))
    unexpected = [item for item in findings if item["kind"] == "unexpected_listener"]
    assert (not unexpected) == allowed


@pytest.mark.parametrize("wanted, matches", [
    ("portcullis-rogue", True),                # full program name, kernel keeps 15 characters
    ("portcullis-rogu", True),
    ("portcullis-rogue-web.service", True),    # the unit
    ("python3", True),                         # the program file of the command line
    ("nginx", False),
])
def test_process_matching(wanted, matches):
    assert process_matches(wanted, [WEB]) is matches


def test_unknown_processes_are_not_blamed():
    """A socket whose owner could not be read is not reported as the wrong program."""
    findings = audit_listeners([listener("tcp", "0.0.0.0", 80)], parse_allowlist([{"port": 80, "process": "nginx"}]))
    assert findings == []


def test_probe_findings():
    rules = parse_allowlist([
        {"port": 22},                                            # 0
        {"port": 443, "sources": ["10.0.0.0/8"]},                # 1
        {"port": 8443},                                          # 2: allowed, but filtered
    ])
    listeners = [listener("tcp", "0.0.0.0", 22, [SSHD]), listener("tcp", "0.0.0.0", 443),
                 listener("tcp", "0.0.0.0", 8080, [WEB]), listener("tcp", "::", 8443),
                 listener("tcp", "0.0.0.0", 9090), listener("tcp", "::", 7000)]
    probe = {"192.0.2.5": {22: ("open", "192.0.2.1"), 443: ("open", "192.0.2.1"), 8080: ("open", "192.0.2.1"),
                           8443: ("filtered", None), 9090: ("closed", None), 7000: ("closed", None),
                           25: ("closed", None)},
             "2001:db8::5": {8443: ("closed", None)}}
    findings = probe_findings(listeners, rules, probe)
    assert kinds(findings) == [
        ("reachable_not_allowed", "high", "tcp", "192.0.2.5", 443, 1),
        ("reachable_not_allowed", "high", "tcp", "192.0.2.5", 8080, None),
        ("listening_but_filtered", "low", "tcp", "192.0.2.5", 8443, 2),
        ("listening_but_filtered", "info", "tcp", "192.0.2.5", 9090, None),
        ("listening_but_filtered", "low", "tcp", "2001:db8::5", 8443, 2),
    ]
    assert findings[0]["message"] == ("tcp 192.0.2.5:443 accepted a connection from 192.0.2.1, which allowlist[1] "
                                      "does not list in its sources")
    assert findings[1]["processes"] == [WEB] and findings[1]["source"] == "probe"
    assert findings[1]["message"] == ("tcp 192.0.2.5:8080 (portcullis-rogu, portcullis-rogue-web.service) accepted a "
                                      "connection from the controller, but no allowlist entry allows it")
    # [::]:7000 refused over IPv4 is no evidence of a firewall (the socket may be IPv6-only): no finding.
    assert not [item for item in findings if item["port"] == 7000]


def test_probe_finding_lists_a_process_once_when_it_holds_the_ipv4_and_ipv6_sockets():
    listeners = [listener("tcp", "0.0.0.0", 22, [SSHD]), listener("tcp", "::", 22, [SSHD])]
    findings = probe_findings(listeners, parse_allowlist([{"port": 2222}]), {"192.0.2.5": {22: ("open", "192.0.2.1")}})
    assert kinds(findings) == [("reachable_not_allowed", "high", "tcp", "192.0.2.5", 22, None)]
    assert findings[0]["processes"] == [SSHD]


def test_probe_ports_are_bounded():
    rules = parse_allowlist([{"port": 22}, {"port": "8000-8002"}, {"port": 53, "protocol": "udp"}])
    listeners = [listener("tcp", "0.0.0.0", 9000), listener("tcp", "127.0.0.1", 6379), listener("udp", "::", 5353)]
    assert probe_ports(listeners, rules, [2222], 10) == [22, 2222, 8000, 8001, 8002, 9000]
    with pytest.raises(ValueError, match="the probe would try 6 ports, more than probe_max_ports=5"):
        probe_ports(listeners, rules, [2222], 5)


NAMED = proc("named", "named.service", 80)
AVAHI = proc("avahi-daemon", "avahi-daemon.service", 81)
CHRONY = proc("chronyd", "chrony.service", 82)
ROGUE_UDP = proc("portcullis-rogu", "portcullis-rogue-udp.service", 66)


def test_udp_probe_findings():
    rules = parse_allowlist([
        {"port": 53, "protocol": "udp"},                                # 0: allowed, but rejected
        {"port": 51820, "protocol": "udp", "sources": ["10.0.0.0/8"]},  # 1: answers the controller too
        {"port": 5353, "protocol": "udp"},                              # 2: allowed, silent
        {"port": 8000},                                                 # 3: TCP only
    ])
    listeners = [listener("udp", "0.0.0.0", 53, [NAMED]), listener("tcp", "0.0.0.0", 53, [proc("unbound")]),
                 listener("udp", "0.0.0.0", 51820), listener("udp", "::", 5353, [AVAHI]),
                 listener("udp", "0.0.0.0", 9999, [ROGUE_UDP]), listener("udp", "0.0.0.0", 123, [CHRONY]),
                 listener("udp", "127.0.0.1", 323, [CHRONY]), listener("tcp", "0.0.0.0", 8000),
                 listener("udp", "::", 1900)]
    probe = {"192.0.2.5": {
        53: ("closed", None),            # named listens: an ICMP port unreachable is a firewall's reject
        51820: ("open", "192.0.2.1"),    # answered, but the controller is not an allowed source
        5353: ("open|filtered", None),   # [::] may serve IPv4: silence recorded, info
        9999: ("open|filtered", None),   # not allowed: info too (the host-side audit reports the listener)
        123: ("filtered", None),         # ICMP administratively prohibited
        323: ("open|filtered", None),    # loopback only: the probe says nothing about it
        8000: ("open|filtered", None),   # only TCP listens there
        7000: ("open|filtered", None),   # nothing listens
        1900: ("closed", None),          # [::] rejected over IPv4 is no evidence (it may be IPv6-only)
        6000: ("open", "192.0.2.1"),     # answered, and nothing allows it
    }}
    findings = sort_findings(probe_findings(listeners, rules, probe, "udp"))
    assert kinds(findings) == [
        ("reachable_not_allowed", "high", "udp", "192.0.2.5", 6000, None),
        ("reachable_not_allowed", "high", "udp", "192.0.2.5", 51820, 1),
        ("listening_but_filtered", "low", "udp", "192.0.2.5", 53, 0),
        ("listening_but_filtered", "info", "udp", "192.0.2.5", 123, None),
        ("udp_open_or_filtered", "info", "udp", "192.0.2.5", 5353, 2),
        ("udp_open_or_filtered", "info", "udp", "192.0.2.5", 9999, None),
    ]
    by_port = {item["port"]: item for item in findings}
    assert by_port[6000]["message"] == ("udp 192.0.2.5:6000 answered a datagram from the controller, but no "
                                        "allowlist entry allows it")
    assert by_port[51820]["message"] == ("udp 192.0.2.5:51820 answered a datagram from 192.0.2.1, which "
                                         "allowlist[1] does not list in its sources")
    assert by_port[53]["message"] == ("udp 192.0.2.5:53 listens (named, named.service) but the controller's datagram "
                                      "was rejected with an ICMP port unreachable; allowlist[0] allows it")
    assert by_port[53]["processes"] == [NAMED]  # the TCP socket on 53 is another matter
    assert by_port[123]["message"] == (
        "udp 192.0.2.5:123 listens (chronyd, chrony.service) but the controller's datagram was rejected with an "
        "ICMP unreachable or prohibited error; a firewall keeps it closed")
    assert by_port[5353]["message"] == (
        "udp 192.0.2.5:5353 listens (avahi-daemon, avahi-daemon.service) but neither a reply nor an ICMP port "
        "unreachable came back to the controller's datagrams: a firewall may drop them, or the service ignores the "
        "probe; not proof either way; allowlist[2] allows it")
    assert "client of the service's own protocol" in by_port[5353]["remediation"]
    assert by_port[9999]["message"].endswith("not proof either way")
    assert "systemctl disable --now portcullis-rogue-udp.service" in by_port[9999]["remediation"]
    assert "Nothing to do if a firewall drops it" in by_port[9999]["remediation"]
    for item in findings:
        assert item["source"] == "probe" and item["family"] == "ipv4"
        assert [control["id"] for control in item["controls"]] == list(KIND_CONTROLS[item["kind"]])
    # Silence is never a violation, whatever listens and whatever the allowlist says.
    assert is_compliant([item for item in findings if item["kind"] == "udp_open_or_filtered"])
    assert not is_compliant(findings)
    assert KIND_CONTROLS["udp_open_or_filtered"] == ("4.3.8", "4.2.6", "4.4.2.4", "4.4.3.4")


def test_udp_silence_over_ipv6_and_from_an_ipv4_only_socket():
    listeners = [listener("udp", "0.0.0.0", 9999, [ROGUE_UDP]), listener("udp", "2001:db8::5", 5353, [AVAHI])]
    probe = {"2001:db8::5": {9999: ("open|filtered", None), 5353: ("open|filtered", None)},
             "192.0.2.5": {5353: ("open|filtered", None)}}
    # 0.0.0.0 does not serve IPv6, nor 2001:db8::5 IPv4: no listener, no finding.
    assert kinds(probe_findings(listeners, [], probe, "udp")) == [
        ("udp_open_or_filtered", "info", "udp", "2001:db8::5", 5353, None)]


def test_tcp_probe_ignores_udp_listeners_and_rules():
    listeners = [listener("udp", "0.0.0.0", 8080, [WEB])]
    rules = parse_allowlist([{"port": 8080, "protocol": "udp"}])
    assert probe_findings(listeners, rules, {"192.0.2.5": {8080: ("closed", None)}}) == []  # no TCP listener
    findings = probe_findings(listeners, rules, {"192.0.2.5": {8080: ("open", "192.0.2.1")}})
    assert kinds(findings) == [("reachable_not_allowed", "high", "tcp", "192.0.2.5", 8080, None)]
    assert findings[0]["processes"] == []


def test_udp_probe_ports_are_bounded_too():
    rules = parse_allowlist([{"port": 22}, {"port": "9000-9002", "protocol": "udp"}, {"port": 53, "protocol": "udp"}])
    listeners = [listener("tcp", "0.0.0.0", 8080), listener("udp", "127.0.0.1", 323), listener("udp", "::", 5353),
                 listener("udp", "0.0.0.0", 53)]
    # probe_ports (the extra ports) are TCP ports; loopback listeners are not probed.
    assert probe_ports(listeners, rules, [2222], 10, "udp") == [53, 5353, 9000, 9001, 9002]
    assert probe_ports(listeners, rules, [2222], 10) == [22, 2222, 8080]
    with pytest.raises(ValueError, match=r"^the probe would try 5 UDP ports, more than probe_max_ports=4: "):
        probe_ports(listeners, rules, [2222], 4, "udp")
    assert probe_ports(listeners, rules, [2222], 3) == [22, 2222, 8080]  # each protocol has its own bound


@pytest.mark.parametrize("given, message", [
    ([{"protocol": "tcp", "port": 22}], "listeners[0].address: is required"),
    ([{"protocol": "sctp", "address": "::", "port": 22}], "listeners[0].protocol: 'sctp' must be tcp or udp"),
    ([{"protocol": "tcp", "address": "nowhere", "port": 22}], "listeners[0]: "),
    (["tcp/22"], "listeners[0]: 'tcp/22' must be a mapping"),
])
def test_normalise_listeners_rejects_bad_input(given, message):
    with pytest.raises(ValueError) as error:
        normalise_listeners(given)
    assert str(error.value).startswith(message)


def test_normalise_listeners_fills_the_flags():
    item = normalise_listeners([{"protocol": "tcp", "address": "::ffff:127.0.0.1", "port": "8000"}])[0]
    assert (item["family"], item["loopback"], item["wildcard"], item["port"], item["processes"]) == (
        "ipv6", True, False, 8000, [])


# --- ports published to containers ------------------------------------------------------------------------------

WEB_CONTAINER = {"runtime": "docker", "id": "3f4e9a1c" * 8, "name": "web", "image": "nginx:1.27"}
DOCKER_PROXY = proc("docker-proxy", "docker.service", 900, "/usr/bin/docker-proxy -proto tcp -host-ip 0.0.0.0 "
                    "-host-port 8081 -container-ip 172.17.0.2 -container-port 80")


def published(protocol="tcp", address="0.0.0.0", port=8081, target_port=80, container="web", proxy=()):
    """A published port as _published.published_ports() returns it ("web": WEB_CONTAINER)."""
    container = WEB_CONTAINER if container == "web" else container
    family = "ipv6" if ":" in address else "ipv4"
    return {"protocol": protocol, "family": family, "address": address, "port": port,
            "wildcard": address in ("0.0.0.0", "::"), "target_address": "fd17::2" if family == "ipv6" else "172.17.0.2",
            "target_port": target_port, "table": "ip6 nat" if family == "ipv6" else "ip nat", "chain": "DOCKER",
            "origin": "iptables-nft", "from_interfaces_except": ["docker0"], "container": container,
            "proxy": list(proxy)}


def test_unexpected_published_port_severity_by_where_it_is_published():
    ports = [published(), published(address="192.0.2.10", port=8443, target_port=443),
             published("udp", "127.0.0.1", 5300, 53)]
    findings = audit_listeners([], [], published=ports)
    assert kinds(findings) == [
        ("unexpected_published_port", "high", "tcp", "0.0.0.0", 8081, None),
        ("unexpected_published_port", "medium", "tcp", "192.0.2.10", 8443, None),
        ("unexpected_published_port", "info", "udp", "127.0.0.1", 5300, None),
    ]
    assert [item["remediation"].split(";", maxsplit=1)[0] for item in findings] == [
        "If it is not needed, re-create docker container web without -p 8081:80",
        "If it is not needed, re-create docker container web without -p 192.0.2.10:8443:443",
        "If it is not needed, re-create docker container web without -p 127.0.0.1:5300:53/udp",
    ]
    assert findings[0]["remediation"].endswith(
        "if it is, add {port: 8081, protocol: tcp, published: true} to the allowlist; until then the Portcullis "
        "firewall's forward chain drops new connections to it")
    assert findings[0]["message"] == (
        "tcp 0.0.0.0:8081 -> 172.17.0.2:80 (DNAT in ip nat chain DOCKER, docker container web) is published to a "
        "container, reachable without passing the host's input chain, but no allowlist entry allows it")
    assert "only local clients can connect" in findings[2]["message"]
    assert [control["id"] for control in findings[0]["controls"]] == ["2.1.22", "4.3.8"]
    assert findings[0]["source"] == "host" and findings[0]["processes"] == []
    assert is_compliant(findings[2:]) and not is_compliant(findings)


def test_unexpected_published_port_of_an_unknown_container_names_its_target():
    item = published(container=None, proxy=["0.0.0.0:8081"])
    finding = audit_listeners([], [], published=[item])[0]
    assert finding["remediation"].startswith(
        "If it is not needed, remove -p 8081:80 from the runtime that publishes the container (or host) at 172.17.0.2")
    assert finding["message"].endswith("no allowlist entry allows it; its userland proxy listens on 0.0.0.0:8081")


@pytest.mark.parametrize("entry", [{"port": 8081}, {"port": 8081, "published": True}, {"port": "8000-8100"},
                                   {"port": 8081, "family": "ipv4", "sources": ["10.0.0.0/8"]}])
def test_an_allowed_published_port_gives_no_finding_and_uses_the_entry(entry):
    assert audit_listeners([], parse_allowlist([entry]), published=[published()]) == []


@pytest.mark.parametrize("entry", [{"port": 8081, "bind": "loopback"}, {"port": 8081, "family": "ipv6"},
                                   {"port": 8081, "protocol": "udp"}])
def test_entries_that_do_not_allow_the_published_port(entry):
    findings = audit_listeners([], parse_allowlist([entry]), published=[published()])
    assert [item["kind"] for item in findings] == ["unexpected_published_port", "allowed_not_listening"]


def test_a_proxied_listener_is_the_published_port_not_an_unexpected_listener():
    proxied = dict(listener("tcp", "0.0.0.0", 8081, [DOCKER_PROXY]), published=True)
    ports = [published(proxy=["0.0.0.0:8081"])]
    assert kinds(audit_listeners([proxied], [], published=ports)) == [
        ("unexpected_published_port", "high", "tcp", "0.0.0.0", 8081, None)]
    assert audit_listeners([proxied], parse_allowlist([{"port": 8081, "published": True}]), published=ports) == []


def test_a_published_only_entry_does_not_allow_a_host_socket():
    nginx = listener("tcp", "0.0.0.0", 8081, [proc("nginx", "nginx.service")])
    findings = audit_listeners([nginx], parse_allowlist([{"port": 8081, "published": True}]))
    assert kinds(findings) == [("unexpected_listener", "high", "tcp", "0.0.0.0", 8081, None),
                               ("allowed_not_listening", "info", "tcp", None, 8081, 0)]
    # With the port also published, the entry is used by the published port; the host socket is still a finding.
    both = audit_listeners([nginx], parse_allowlist([{"port": 8081, "published": True}]), published=[published()])
    assert kinds(both) == [("unexpected_listener", "high", "tcp", "0.0.0.0", 8081, None)]


def test_probe_explains_an_open_port_by_its_dnat():
    probe = {"192.0.2.5": {8081: ("open", "192.0.2.1")}, "2001:db8::5": {8081: ("open", "2001:db8::1")}}
    ports = [published(), published(address="::")]
    findings = probe_findings([], [], probe, published=ports)
    assert kinds(findings) == [("reachable_not_allowed", "high", "tcp", "192.0.2.5", 8081, None),
                               ("reachable_not_allowed", "high", "tcp", "2001:db8::5", 8081, None)]
    assert findings[0]["message"] == (
        "tcp 192.0.2.5:8081 (published: tcp 0.0.0.0:8081 -> 172.17.0.2:80 (DNAT in ip nat chain DOCKER, docker "
        "container web)) accepted a connection from the controller, but no allowlist entry allows it")
    assert "[fd17::2]:80" in findings[1]["message"] and "docker container web" in findings[1]["message"]
    assert findings[0]["remediation"].startswith("Apply the Portcullis firewall (its forward chain drops")
    # Published on IPv4 only: an IPv6 connection to the port is not explained by it.
    alone = probe_findings([], [], {"2001:db8::5": {8081: ("open", None)}}, published=ports[:1])
    assert "published:" not in alone[0]["message"]


@pytest.mark.parametrize("address, explained", [
    ("0.0.0.0", True),  # every local address
    ("192.0.2.10", True),  # the probed address itself
    ("192.0.2.0/24", True),  # a network of local addresses (an nft `ip daddr 192.0.2.0/24` match)
    ("127.0.0.1", False),  # `-p 127.0.0.1:8081:80`: no DNAT for connections to 192.0.2.10
    ("192.0.2.11", False),  # another of the host's addresses
    ("::", False),  # the other family
])
def test_probe_explains_an_open_port_only_by_a_port_published_on_the_probed_address(address, explained):
    probe = {"192.0.2.10": {8081: ("open", "192.0.2.1")}}
    [finding] = probe_findings([], [], probe, published=[published(address=address)])
    assert kinds([finding]) == [("reachable_not_allowed", "high", "tcp", "192.0.2.10", 8081, None)]
    assert ("(published: tcp " in finding["message"]) is explained
    assert finding["remediation"].startswith(
        "Apply the Portcullis firewall (its forward chain" if explained else "Apply a default-deny firewall built")


def test_a_published_only_entry_does_not_allow_an_open_port_the_container_is_not_published_on():
    rules = parse_allowlist([{"port": 8081, "published": True}])
    probe = {"192.0.2.10": {8081: ("open", "192.0.2.1")}}
    assert probe_findings([], rules, probe, published=[published(address="192.0.2.10")]) == []
    # Published on loopback only: what answered on 192.0.2.10 is no published port, and the entry allows no other.
    [finding] = probe_findings([], rules, probe, published=[published("tcp", "127.0.0.1")])
    assert kinds([finding]) == [("reachable_not_allowed", "high", "tcp", "192.0.2.10", 8081, None)]
    assert finding["message"] == ("tcp 192.0.2.10:8081 accepted a connection from the controller, but no allowlist "
                                  "entry allows it")


@pytest.mark.parametrize("entry", [{"port": 8081}, {"port": 8081, "published": True},
                                   {"port": 8081, "published": True, "sources": ["192.0.2.0/24"]}])
def test_probe_is_silent_when_an_entry_allows_the_published_port(entry):
    probe = {"192.0.2.5": {8081: ("open", "192.0.2.1")}}
    assert probe_findings([], parse_allowlist([entry]), probe, published=[published()]) == []


def test_probe_names_the_published_only_entry_whose_sources_leave_the_controller_out():
    rules = parse_allowlist([{"port": 22}, {"port": 8081, "published": True, "sources": ["10.0.0.0/8"]}])
    findings = probe_findings([], rules, {"192.0.2.5": {8081: ("open", "192.0.2.1")}}, published=[published()])
    assert kinds(findings) == [("reachable_not_allowed", "high", "tcp", "192.0.2.5", 8081, 1)]
    assert findings[0]["message"].endswith("accepted a connection from 192.0.2.1, which allowlist[1] does not list "
                                           "in its sources")


def test_probe_ports_include_published_ports_on_network_addresses_only():
    ports = [published(), published(address="192.0.2.10", port=8443), published("udp", "127.0.0.1", 5300, 53),
             published("udp", "0.0.0.0", "6000-6002", 6000), published(port="1-65535", target_port=None)]
    assert probe_ports([], [], [], 10, published=ports) == [8081, 8443]
    assert probe_ports([], [], [], 10, protocol="udp", published=ports) == [6000, 6001, 6002]
    assert probe_ports([], [], [], 10, protocol="udp", published=ports[2:3]) == []  # 127.0.0.1 only
