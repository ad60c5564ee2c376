# Copyright (c) Portcullis contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import os
import sys

import pytest

from ansible_collections.portcullis.hardening.plugins.module_utils._listeners import (
    discover,
    discover_with_published,
    user_name,
)
from ansible_collections.portcullis.hardening.plugins.module_utils._sshd import sshd_listener

from .fakeproc import FakeProc
from .test_published import NFT_RULESET, capture_host

pytestmark = pytest.mark.skipif(sys.byteorder != "little", reason="fixtures are little-endian kernel output")

USERS = {0: "root", 33: "www-data", 65534: "nobody"}


def lookup(uid):
    return USERS.get(uid, str(uid))


def summary(listener):
    return (listener["protocol"], listener["family"], listener["address"], listener["port"],
            listener["user"], [(p["pid"], p["name"], p["unit"]) for p in listener["processes"]],
            listener["loopback"], listener["wildcard"])


@pytest.fixture
def host(tmp_path):
    """A host like the lab's: sshd dual stack, a pre-forked web server, UDP, v6-only, loopback, kernel."""
    proc = FakeProc(tmp_path)
    proc.socket("tcp", "00000000:0016", "0A", inode=11)                                   # sshd 0.0.0.0:22
    proc.socket("tcp6", "00000000000000000000000000000000:0016", "0A", inode=12)          # sshd [::]:22
    proc.socket("tcp", "00000000:1F90", "0A", uid=33, inode=21)                           # web 0.0.0.0:8080
    proc.socket("tcp", "0F02000A:0016", "01", inode=13, remote="0102000A:D431")           # a session
    proc.socket("tcp6", "00000000000000000000000000000000:20FB", "0A", inode=31)          # v6-only :8443
    proc.socket("tcp", "0100007F:18EB", "0A", inode=41)                                   # 127.0.0.1:6379
    proc.socket("tcp6", "0000000000000000FFFF00000100007F:1F40", "0A", inode=42)          # ::ffff:127.0.0.1
    proc.socket("tcp6", "000080FE00000000FF0042021E0000FE:0050", "0A", inode=43)          # link-local :80
    proc.socket("udp", "00000000:270F", "07", uid=65534, inode=51)                        # udp *:9999
    proc.socket("udp", "0F02000A:C350", "01", inode=52, remote="08080808:0035")           # connected udp
    proc.socket("udp6", "00000000000000000000000000000000:0801", "07", inode=0)           # kernel nfs
    proc.process(1, "systemd", [], cgroup="0::/init.scope\n")
    proc.process(400, "sshd", [11, 12, 13])
    proc.process(500, "python3", [21], cgroup="0::/system.slice/portcullis-rogue-web.service\n")
    proc.process(501, "python3", [21], cgroup="0::/system.slice/portcullis-rogue-web.service\n")
    proc.process(600, "v6only", [31])
    proc.process(700, "redis-server", [41])
    proc.process(701, "devserver", [42], cgroup="0::/user.slice/user-0.slice/session-1.scope\n")
    proc.process(702, "linklocal", [43])
    proc.process(800, "udpd", [51, 52])
    proc.write("net/if_inet6", "fe80000000000000024200fffe00001e 02 40 20 80     eth0\n")
    return proc


def test_discovers_every_hard_case(host):
    found = discover(host.flush(), user_lookup=lookup)
    assert [summary(item) for item in found.listeners] == [
        ("tcp", "ipv4", "0.0.0.0", 22, "root", [(400, "sshd", "sshd.service")], False, True),
        ("tcp", "ipv4", "127.0.0.1", 6379, "root", [(700, "redis-server", "redis-server.service")], True, False),
        ("tcp", "ipv4", "0.0.0.0", 8080, "www-data",
         [(500, "python3", "portcullis-rogue-web.service"), (501, "python3", "portcullis-rogue-web.service")],
         False, True),
        ("tcp", "ipv6", "::", 22, "root", [(400, "sshd", "sshd.service")], False, True),
        ("tcp", "ipv6", "fe80::242:ff:fe00:1e", 80, "root", [(702, "linklocal", "linklocal.service")], False, False),
        ("tcp", "ipv6", "::ffff:127.0.0.1", 8000, "root", [(701, "devserver", "session-1.scope")], True, False),
        ("tcp", "ipv6", "::", 8443, "root", [(600, "v6only", "v6only.service")], False, True),
        ("udp", "ipv4", "0.0.0.0", 9999, "nobody", [(800, "udpd", "udpd.service")], False, True),
        ("udp", "ipv6", "::", 2049, "root", [], False, True),
    ]
    link_local = [item for item in found.listeners if item["port"] == 80][0]
    assert link_local["interface"] == "eth0"
    assert all(item["interface"] is None for item in found.listeners if item["port"] != 80)
    assert found.scan_summary() == {"processes_scanned": 9, "unreadable_pids": [], "complete": True,
                                    "missing_tables": [], "published_notes": []}


@pytest.mark.parametrize("protocols, families, expected", [
    (["tcp"], ["ipv4"], [22, 6379, 8080]),
    (["udp"], ["ipv4", "ipv6"], [9999, 2049]),
    (["tcp", "udp"], ["ipv6"], [22, 80, 8000, 8443, 2049]),
])
def test_filters_by_protocol_and_family(host, protocols, families, expected):
    found = discover(host.flush(), protocols=protocols, families=families, user_lookup=lookup)
    assert [item["port"] for item in found.listeners] == expected


def test_host_without_ipv6_tables(tmp_path):
    proc = FakeProc(tmp_path)
    proc.socket("tcp", "00000000:0016", "0A", inode=11)
    found = discover(proc.flush(skip=("tcp6", "udp6")), user_lookup=lookup)
    assert [(item["address"], item["port"], item["processes"]) for item in found.listeners] == [("0.0.0.0", 22, [])]
    assert found.scan_summary()["missing_tables"] == ["tcp6", "udp6"]


def test_process_exits_between_scan_and_describe(host, monkeypatch):
    root = host.flush()
    from ansible_collections.portcullis.hardening.plugins.module_utils import _listeners
    real_scan = _listeners.scan_socket_owners

    def scan_then_exit(proc_root, inodes):
        result = real_scan(proc_root, inodes)
        for name in ("comm", "cmdline", "cgroup"):
            os.remove(os.path.join(proc_root, "501", name))  # pid 501 exits after the fd pass
        return result

    monkeypatch.setattr(_listeners, "scan_socket_owners", scan_then_exit)
    found = discover(root, user_lookup=lookup)
    web = [item for item in found.listeners if item["port"] == 8080][0]
    assert [p["pid"] for p in web["processes"]] == [500]


def test_user_name_falls_back_to_the_number():
    assert user_name(0) == "root"
    assert user_name(2 ** 31 - 7) == str(2 ** 31 - 7)


def test_processes_carry_their_uid_and_executable_so_a_fake_sshd_is_told_apart(tmp_path):
    proc = FakeProc(tmp_path)
    proc.socket("tcp", "00000000:0016", "0A", inode=11)                                   # sshd 0.0.0.0:22
    proc.socket("tcp", "00000000:08AE", "0A", uid=1000, inode=21)                         # "sshd" 0.0.0.0:2222
    proc.process(400, "sshd", [11], cgroup="0::/system.slice/ssh.service\n")
    proc.process(900, "sshd", [21], cgroup="0::/user.slice/user-1000.slice/session-3.scope\n", uid=1000,
                 exe="/home/mallory/.cache/sshd")
    found = discover(proc.flush(), user_lookup=lookup)
    assert [(item["port"], [(p["name"], p["uid"], p["exe"]) for p in item["processes"]])
            for item in found.listeners] == [
        (22, [("sshd", 0, "/usr/sbin/sshd")]),
        (2222, [("sshd", 1000, "/home/mallory/.cache/sshd")]),
    ]
    assert [sshd_listener(item) for item in found.listeners] == [True, False]


DOCKER_PROXY_ARGV = ["/usr/bin/docker-proxy", "-proto", "tcp", "-host-ip", "0.0.0.0", "-host-port", "8081",
                     "-container-ip", "172.17.0.2", "-container-port", "80"]


def docker_host(root):
    """docker-proxy holding 0.0.0.0:8081 for a published port, nginx on 0.0.0.0:80 and 0.0.0.0:8082."""
    proc = FakeProc(root)
    proc.socket("tcp", "00000000:1F91", "0A", inode=61)
    proc.socket("tcp", "00000000:0050", "0A", inode=62)
    proc.socket("tcp", "00000000:1F92", "0A", inode=63)
    proc.process(900, "docker-proxy", [61], cgroup="0::/system.slice/docker.service\n", cmdline=DOCKER_PROXY_ARGV)
    proc.process(901, "nginx", [62, 63])
    return proc.flush()


def test_discover_with_published_links_the_proxies(tmp_path):
    host, system = capture_host(tmp_path / "host")
    found = discover_with_published(host, proc_root=docker_host(tmp_path / "proc"), user_lookup=lookup)
    assert [(item["port"], item["processes"][0]["name"], item["published"]) for item in found.listeners] == [
        (80, "nginx", False), (8081, "docker-proxy", True), (8082, "nginx", False)]
    assert [(item["protocol"], item["family"], item["port"], item["container"]["name"] if item["container"] else None)
            for item in found.published] == [("tcp", "ipv4", 3001, None), ("tcp", "ipv4", 8081, "web"),
                                             ("tcp", "ipv6", 8081, "web"), ("udp", "ipv4", 5300, "web")]
    assert found.published[1]["proxy"] == ["0.0.0.0:8081"] and found.published[3]["proxy"] == []
    assert found.container_networks == {"ipv4": ["10.88.0.0/16", "172.17.0.0/16"], "ipv6": []}
    assert found.scan_summary()["published_notes"] == [] and system.calls[0] == NFT_RULESET


def test_discover_with_published_passes_on_the_notes(tmp_path):
    host, system = capture_host(tmp_path / "host")
    system.respond(NFT_RULESET, rc=127, err="nft: not found\n")
    found = discover_with_published(host, proc_root=docker_host(tmp_path / "proc"), user_lookup=lookup)
    assert found.published == [] and found.container_networks == {"ipv4": [], "ipv6": []}
    assert found.scan_summary()["published_notes"] == [
        "published ports were not read: nft -j list ruleset failed (rc=127): nft: not found"]


def test_discover_without_published_reads_no_ruleset(tmp_path):
    host, system = capture_host(tmp_path / "host")
    found = discover_with_published(host, False, proc_root=docker_host(tmp_path / "proc"), user_lookup=lookup)
    assert system.calls == []
    assert found.published == [] and found.published_notes == []
    assert [item["published"] for item in found.listeners] == [False, False, False]
