# Copyright (c) Portcullis contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Ports published to containers, end to end, on a lab of its own (one Debian 12 and one Debian 13 host).

Each host publishes ports the way dockerd does (lab/image/usr/local/sbin/portcullis-lab-publish): a network
namespace as container `web` behind the bridge docker0 (172.17.0.2, fd17:ac11::2), Docker's iptables-nft rules for
`docker run --name web -p 8081:80 -p 8082:80 -p 5300:53/udp`, a docker-proxy for 8081 and Docker's config.v2.json,
and a second container `db` on the same bridge (172.17.0.3, fd17:ac11::3, tcp 5432) that publishes nothing.
The connections from the controller to 8081 and 8082 are DNATed in prerouting and forwarded: they never pass the
input chain. One test switches the host to podman's netavark nftables table instead.

Every reachability check is a new connection: raw sockets from this process, ssh with ControlMaster=no.
"""

from __future__ import annotations

import contextlib
import json
import shlex
import socket
import tempfile
import threading

import pytest

from harness import BLOCK_NEW_SSH, own_lab, stop_masters, wait_for

PUBLISH = "/usr/local/sbin/portcullis-lab-publish"
CONTAINER = {"ipv4": "172.17.0.2", "ipv6": "fd17:ac11::2"}
CONTAINER_ID = "72d3524d58e9e98162baad534cc3d209edd2de5cd84851ad336cae8d27c5e97a"
DB = {"ipv4": "172.17.0.3", "ipv6": "fd17:ac11::3", "port": 5432}
FOREIGN_TABLES = ("ip nat", "ip filter", "ip6 nat", "ip6 filter")
# Only 8082 of the published ports is allowed, and only on the container path.
ALLOW = [{"port": 22, "comment": "SSH"}, {"port": 8082, "published": True, "comment": "web"}]
# What the controller sees of the published ports, by (protocol, IP version, port).
BEFORE = {("tcp", 4, 8081): "open", ("tcp", 4, 8082): "open", ("udp", 4, 5300): "answered",
          ("tcp", 6, 8081): "open", ("tcp", 6, 8082): "open", ("udp", 6, 5300): "answered"}
CLOSED = {("tcp", 4, 8081): "filtered", ("tcp", 4, 8082): "open", ("udp", 4, 5300): "silent",
          ("tcp", 6, 8081): "filtered", ("tcp", 6, 8082): "open", ("udp", 6, 5300): "silent"}

# Every table but Portcullis's, without counters (traffic changes those), in one SSH connection.
FOREIGN = r"""
import json, subprocess
tables = {}
for line in subprocess.run(["nft", "list", "tables"], stdout=subprocess.PIPE, universal_newlines=True,
                           check=True).stdout.splitlines():
    family, name = line.split()[1:3]
    if (family, name) != ("inet", "portcullis"):
        tables["%s %s" % (family, name)] = subprocess.run(["nft", "-s", "list", "table", family, name],
                                                          stdout=subprocess.PIPE, universal_newlines=True,
                                                          check=True).stdout
print(json.dumps(tables, sort_keys=True))
"""


def foreign(host):
    return json.loads(host.ssh("python3 -c %s" % shlex.quote(FOREIGN)).stdout)


def _prepare_lab(lab):
    for host in lab.hosts:
        host.ssh("systemctl start portcullis-lab-published.service")
        status = json.loads(host.ssh([PUBLISH, "status"]).stdout)
        assert status["up"] and status["runtime"] == "docker", status


@pytest.fixture(scope="module")
def lab():
    """A lab of this module's own (harness.own_lab): up at the start, down at the end, whatever happened."""
    with own_lab(_prepare_lab, prefix="portcullis-pub-lab-") as the_lab:
        yield the_lab


def run(lab, module, args, check_mode=False, control_dir=None, warm_up=()):
    """Run one module on every host; return (rc, {host: result})."""
    tasks = list(warm_up) + [{"name": "under test", module: args}]
    completed, results = lab.playbook(tasks, extra_args=["--check", "--diff"] if check_mode else [],
                                      fresh=control_dir is None, control_dir=control_dir)
    assert sorted(results.get("under test", {})) == sorted(host.name for host in lab.hosts), (
        completed.stdout[-3000:], completed.stderr[-3000:])
    return completed.returncode, results["under test"]


def failures(results):
    """What went wrong on each host that failed, for assertion messages."""
    return {name: {key: result.get(key) for key in ("msg", "exception", "module_stderr", "stderr") if result.get(key)}
            for name, result in results.items() if result.get("failed") or result.get("unreachable")}


def firewall(lab, check_mode=False, **args):
    """The firewall with ALLOW (or what `args` says instead) and commit-confirm."""
    return run(lab, "portcullis.hardening.firewall", dict({"allow": ALLOW, "confirm_timeout": 30}, **args),
               check_mode=check_mode)


def assert_reach(lab, expected):
    for host in lab.hosts:
        assert host.probe(expected) == host.expected(expected), host.name


def published_ports(result):
    return sorted((item["protocol"], item["family"], item["address"], item["port"], item["target_address"],
                   item["target_port"], item["table"], item["chain"]) for item in result["published"])


@contextlib.contextmanager
def listener_on_the_controller(host, ipv6=False):
    """A TCP listener on the controller's address on the lab network (what the host routes to): yields (address,
    port, received) and stops at the end; `received` fills with what clients sent."""
    family = socket.AF_INET6 if ipv6 else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as route:
        route.connect((host.ipv6 if ipv6 else host.address, 9))  # no packet: only the route's source address
        address = route.getsockname()[0]
    server = socket.socket(family, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind((address, 0))
    server.listen(4)
    server.settimeout(1)
    received, stop = [], threading.Event()

    def serve():
        while not stop.is_set():
            try:
                client, _peer = server.accept()
            except OSError:
                continue
            with client:
                client.settimeout(5)
                received.append(client.recv(100))
                client.sendall(b"controller\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield address, server.getsockname()[1], received
    finally:
        stop.set()
        thread.join(5)
        server.close()


EGRESS = """\
import socket, sys
with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5) as connection:
    connection.sendall(b"from the container")
    print(connection.recv(100).decode().strip())
"""


def assert_container_egress(host):
    """The container reaches the controller (forwarded and masqueraded by the host), over IPv4 and IPv6."""
    for ipv6 in (False, True) if host.ipv6 else (False,):
        with listener_on_the_controller(host, ipv6) as (address, port, received):
            completed = host.ssh([PUBLISH, "exec", "--", "python3", "-c", EGRESS, address, str(port)], check=False)
            assert completed.returncode == 0 and completed.stdout.strip() == "controller", (host.name, completed)
            assert received == [b"from the container"], host.name


# An HTTP request to argv[1]:argv[2]; prints the whole answer (the container's rogue closes the connection).
HTTP_GET = """\
import socket, sys
with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5) as connection:
    connection.sendall(b"GET / HTTP/1.0\\r\\n\\r\\n")
    answer = b""
    while True:
        data = connection.recv(4096)
        if not data:
            break
        answer += data
print(answer.decode())
"""


def assert_between_containers(host):
    """Container db reaches container web on its container address (bridged on docker0, no DNAT): a new TCP
    connection to 172.17.0.2:80, and to [fd17:ac11::2]:80 when the host has IPv6, gets web's HTTP answer."""
    for family in ("ipv4", "ipv6") if host.ipv6 else ("ipv4",):
        completed = host.ssh([PUBLISH, "exec", "--container", "db", "--", "python3", "-c", HTTP_GET,
                              CONTAINER[family], "80"], check=False)
        assert completed.returncode == 0, (host.name, family, completed)
        assert completed.stdout.splitlines()[:1] == ["HTTP/1.0 200 OK"], (host.name, family, completed.stdout)
        assert "portcullis-rogue tcp/80 pid" in completed.stdout, (host.name, family, completed.stdout)


def about_db(items):
    """The items (published ports, listeners, findings) that mention container db, its addresses or its port."""
    return [item for item in items
            if item.get("port") in (DB["port"], str(DB["port"])) or item.get("target_port") == DB["port"]
            or item.get("target_address") in (DB["ipv4"], DB["ipv6"])
            or (item.get("container") or {}).get("name") == "db"
            or any(text in json.dumps(item) for text in ("container db", DB["ipv4"], DB["ipv6"], "postgres"))]


def test_discovery_lists_the_published_ports_and_their_targets(lab):
    rc, results = run(lab, "portcullis.hardening.listening_ports", {})
    assert rc == 0, failures(results)
    for host in lab.hosts:
        result = results[host.name]
        expected = [("tcp", "ipv4", "0.0.0.0", port, CONTAINER["ipv4"], 80, "ip nat", "DOCKER") for port in (8081, 8082)]
        expected.append(("udp", "ipv4", "0.0.0.0", 5300, CONTAINER["ipv4"], 53, "ip nat", "DOCKER"))
        if host.ipv6:
            expected += [("tcp", "ipv6", "::", port, CONTAINER["ipv6"], 80, "ip6 nat", "DOCKER") for port in (8081, 8082)]
            expected.append(("udp", "ipv6", "::", 5300, CONTAINER["ipv6"], 53, "ip6 nat", "DOCKER"))
        assert published_ports(result) == sorted(expected), host.name  # db publishes nothing: the same ports
        assert about_db(result["published"]) == [] and about_db(result["listeners"]) == [], host.name
        for item in result["published"]:
            assert item["origin"] == "iptables-nft" and item["from_interfaces_except"] == ["docker0"], item
            assert item["container"] == {"runtime": "docker", "id": CONTAINER_ID, "name": "web",
                                         "image": "nginx:1.27"}, item
        # docker-proxy's sockets on 8081 are the published port, linked both ways.
        proxied = [item for item in result["listeners"] if item["published"]]
        assert sorted((item["address"], item["port"]) for item in proxied) == sorted(
            [("0.0.0.0", 8081)] + ([("::", 8081)] if host.ipv6 else [])), host.name
        assert all(process["name"] == "docker-proxy" for item in proxied for process in item["processes"])
        by_port = {(item["family"], item["port"]): item for item in result["published"]}
        assert by_port[("ipv4", 8081)]["proxy"] == ["0.0.0.0:8081"] and by_port[("ipv4", 8082)]["proxy"] == []
        assert result["scan"]["published_notes"] == []


def test_the_audit_reports_published_ports_nothing_allows(lab):
    rc, results = run(lab, "portcullis.hardening.port_audit", {"allowlist": ALLOW})
    assert rc == 0, failures(results)
    for host in lab.hosts:
        result = results[host.name]
        published = [item for item in result["findings"] if item["kind"] == "unexpected_published_port"]
        assert sorted((item["protocol"], item["family"], item["port"]) for item in published) == sorted(
            [("tcp", "ipv4", 8081), ("udp", "ipv4", 5300)] + (
                [("tcp", "ipv6", 8081), ("udp", "ipv6", 5300)] if host.ipv6 else [])), host.name
        finding = next(item for item in published if item["port"] == 8081 and item["family"] == "ipv4")
        assert finding["severity"] == "high" and "docker container web" in finding["message"], finding
        assert "re-create docker container web without -p 8081:80" in finding["remediation"], finding
        assert [control["id"] for control in finding["controls"]] == ["2.1.22", "4.3.8"]
        # 8082 is allowed (published: true), and docker-proxy's 8081 is that published port, not a listener.
        assert not [item for item in result["findings"] if item["port"] in (8082, "8082")], result["findings"]
        assert not [item for item in result["findings"] if item["kind"] == "unexpected_listener"
                    and item["port"] == 8081], result["findings"]
        # The controller reached 8081: the finding says it went through the DNAT to the container.
        reached = [item for item in result["findings"] if item["kind"] == "reachable_not_allowed"
                   and item["port"] == 8081 and item["address"] == host.address]
        assert len(reached) == 1 and "published: tcp 0.0.0.0:8081 -> 172.17.0.2:80" in reached[0]["message"], \
            result["findings"]
        assert result["compliant"] is False
        # Container db publishes nothing and its listener is in its own network namespace: nothing about it.
        assert about_db(result["findings"]) == [], result["findings"]


def test_the_firewall_closes_unallowed_published_ports_and_keeps_the_rest(lab):
    assert_reach(lab, BEFORE)
    assert_container_egress(lab.hosts[0])
    for host in lab.hosts:
        assert_between_containers(host)
    before = {host.name: foreign(host) for host in lab.hosts}

    rc, results = firewall(lab, check_mode=True)
    assert rc == 0, failures(results)
    for host in lab.hosts:
        assert results[host.name]["changed"] is True
        assert "ct state new ct status dnat jump published" in results[host.name]["diff"]["after"]
        assert host.ssh("nft list table inet portcullis", check=False).returncode != 0, host.name  # check mode
    assert_reach(lab, BEFORE)

    rc, results = firewall(lab)
    assert rc == 0, failures(results)
    for host in lab.hosts:
        result = results[host.name]
        assert result["changed"] is True and result["confirmed"] is True, result
        live = host.ssh("nft list table inet portcullis").stdout
        assert live == result["rules"], host.name  # what nft lists back, on nft 1.0.6 and 1.1.3 alike
        assert 'ip saddr 172.17.0.0/16 accept comment "portcullis: from the container networks"' in live
        assert "meta l4proto tcp ct original proto-dst 8082 accept" in live
        assert "tcp dport 8082" not in live  # published: true opens the container path only
        closing = sorted((item["protocol"], item["family"], item["port"], item["container"])
                         for item in result["closing_published"])
        assert closing == sorted([("tcp", "ipv4", 8081, "web"), ("udp", "ipv4", 5300, "web")] + (
            [("tcp", "ipv6", 8081, "web"), ("udp", "ipv6", 5300, "web")] if host.ipv6 else [])), host.name
        assert foreign(host) == before[host.name], host.name  # Docker's tables, byte for byte
    assert_reach(lab, CLOSED)
    for host in lab.hosts:
        assert_container_egress(host)
        assert_between_containers(host)  # not DNATed: the published chain never sees it
        assert host.reachable(), host.name

    rc, results = firewall(lab)  # idempotent
    assert rc == 0 and not any(result["changed"] for result in results.values()), failures(results)

    # Allowed from the lab network only: the controller is on it, so 8081 opens for it.
    lab_net = "{{ (ansible_host.split('.')[:3] + ['0']) | join('.') }}/24"
    rc, results = firewall(lab, allow=ALLOW + [{"port": 8081, "sources": [lab_net], "family": "ipv4"}])
    assert rc == 0, failures(results)
    assert_reach(lab, {**CLOSED, ("tcp", 4, 8081): "open"})


def test_a_blocked_confirm_and_state_absent_leave_dockers_tables_as_they_were(lab):
    rc, results = firewall(lab)
    assert rc == 0, failures(results)
    before = {host.name: foreign(host) for host in lab.hosts}
    control_dir = tempfile.mkdtemp(prefix="ppub-cp-")  # short: it holds unix sockets
    try:
        rc, results = run(lab, "portcullis.hardening.firewall", {"allow": [{"port": 22}], "confirm_timeout": 20},
                          control_dir=control_dir, warm_up=[
                              {"name": "warm up", "ansible.builtin.ping": {}},
                              {"name": "block new connections",
                               "ansible.builtin.command": {"argv": ["sh", "-c", BLOCK_NEW_SSH]}}])
    finally:
        stop_masters(control_dir)
    assert rc != 0, results
    for host in lab.hosts:
        assert results[host.name]["rolled_back"] is True, results[host.name]
        wait_for(lambda host=host: host.ssh("nft list table inet portcullis_test_blocker", check=False).returncode
                 != 0, 60, "the blocker to remove itself on %s" % host.name)
        assert foreign(host) == before[host.name], host.name
    assert_reach(lab, CLOSED)  # the previous table is back: 8082 allowed, 8081 closed

    rc, results = firewall(lab, state="absent")
    assert rc == 0, failures(results)
    for host in lab.hosts:
        assert results[host.name]["changed"] is True
        assert host.ssh("nft list table inet portcullis", check=False).returncode != 0, host.name
        assert foreign(host) == before[host.name], host.name
    assert_reach(lab, BEFORE)


def test_netavark_published_ports_are_found_and_closed(lab):
    for host in lab.hosts:
        host.ssh("systemctl stop portcullis-lab-published.service && %s up --runtime netavark" % PUBLISH)
    try:
        rc, results = run(lab, "portcullis.hardening.listening_ports", {})
        assert rc == 0, failures(results)
        for host in lab.hosts:
            ports = published_ports(results[host.name])
            assert ("tcp", "ipv4", "0.0.0.0", 8081, "10.88.0.2", 80, "inet netavark",
                    "nv_246feb6e_10_88_0_0_nm16_dnat") in ports, ports
            assert all(item["origin"] == "nft" and item["container"] is None for item in results[host.name]["published"])
        before = {host.name: foreign(host) for host in lab.hosts}
        assert all("inet netavark" in tables for tables in before.values())
        rc, results = firewall(lab)
        assert rc == 0, failures(results)
        for host in lab.hosts:
            assert 'ip saddr 10.88.0.0/16 accept comment "portcullis: from the container networks"' in \
                results[host.name]["rules"]
            assert foreign(host) == before[host.name], host.name
        assert_reach(lab, CLOSED)
        rc, results = firewall(lab, state="absent")
        assert rc == 0, failures(results)
        assert_reach(lab, BEFORE)
    finally:
        for host in lab.hosts:
            host.ssh("%s down --runtime netavark && systemctl start portcullis-lab-published.service" % PUBLISH,
                     check=False)
