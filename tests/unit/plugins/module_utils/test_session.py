# Copyright (c) Portcullis contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The SSH session a module runs over, found from a fixture /proc: the module's ancestors and their sockets."""

from __future__ import annotations

import ipaddress
import os
import struct

import pytest

from ansible_collections.portcullis.hardening.plugins.module_utils._session import (
    established_connections,
    management_session,
    parent_pid,
    parse_established,
)

HEADER = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
# 10.213.204.2:22 <- 10.213.204.1:51234, ESTABLISHED, inode 5001; and a listener (inode 4000), not a session.
TCP = HEADER + (
    "   0: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4000 1\n"
    "   1: 02CCD50A:0016 01CCD50A:C822 01 00000000:00000000 02:00000000 00000000     0        0 5001 4\n")
# [fd00::2]:2222 <- [fd00::1]:40000, ESTABLISHED, inode 6001; and an IPv4-mapped session, inode 7001.
TCP6 = HEADER + (
    "   0: 000000FD000000000000000002000000:08AE 000000FD000000000000000001000000:9C40 01 "
    "00000000:00000000 00:00000000 00000000     0        0 6001 1\n"
    "   1: 0000000000000000FFFF00000200A8C0:0016 0000000000000000FFFF00000100A8C0:9C41 01 "
    "00000000:00000000 00:00000000 00000000     0        0 7001 1\n")


def build(tmp_path, chain, sockets):
    """A /proc with processes `chain` ([(pid, ppid, comm)]) and `sockets` ({pid: [inode]})."""
    root = tmp_path / "proc"
    (root / "net").mkdir(parents=True)
    (root / "net" / "tcp").write_text(TCP)
    (root / "net" / "tcp6").write_text(TCP6)
    for pid, ppid, comm in chain:
        (root / str(pid) / "fd").mkdir(parents=True)
        (root / str(pid) / "stat").write_text("%d (%s) S %d 1 1 0 -1\n" % (pid, comm, ppid))
        for number, inode in enumerate(sockets.get(pid, [])):
            os.symlink("socket:[%d]" % inode, str(root / str(pid) / "fd" / str(number + 3)))
        os.symlink("/dev/null", str(root / str(pid) / "fd" / "0"))
    return str(root)


def test_the_nearest_ancestor_holding_an_established_socket_is_the_session(tmp_path):
    # python (module) <- sh <- sshd: root@notty (holds the session) <- sshd (listener) <- systemd
    proc = build(tmp_path, [(900, 800, "python3"), (800, 700, "sh"), (700, 600, "sshd"), (600, 1, "sshd")],
                 {700: [5001], 600: [4000]})
    assert management_session(proc, pid=900) == {"port": 22, "family": "ipv4", "local_address": "10.213.204.2",
                                                 "peer_address": "10.213.204.1"}


def test_ipv6_and_ipv4_mapped_sessions(tmp_path):
    proc = build(tmp_path, [(900, 700, "python3"), (700, 1, "sshd")], {700: [6001]})
    assert management_session(proc, pid=900) == {"port": 2222, "family": "ipv6", "local_address": "fd00::2",
                                                 "peer_address": "fd00::1"}
    proc = build(tmp_path / "mapped", [(900, 700, "python3"), (700, 1, "sshd")], {700: [7001]})
    session = management_session(proc, pid=900)
    assert (session["family"], session["peer_address"], session["port"]) == ("ipv4", "192.168.0.1", 22)


def test_no_session_without_a_network_connection(tmp_path):
    # A local or container connection: no ancestor holds an established TCP socket; a listener is not one.
    proc = build(tmp_path, [(900, 600, "python3"), (600, 1, "sshd")], {600: [4000]})
    assert management_session(proc, pid=900) is None


def test_process_names_with_spaces_and_parentheses(tmp_path):
    proc = build(tmp_path, [(900, 800, "a) b (c")], {})
    assert parent_pid(proc, 900) == 800


def test_only_established_sockets_count():
    found = parse_established(TCP, "ipv4")
    assert sorted(found) == [5001]
    assert parse_established("header\nnot a socket line\n", "ipv4") == {}


# --- every established connection (the ones a closing port would cut) -----------------------------------------

ESTABLISHED, LISTEN, TIME_WAIT = 0x01, 0x0A, 0x06


def kernel_endpoint(address, port):
    """How /proc/net/tcp{,6} writes an endpoint: the address as 32-bit words in host byte order, then the port."""
    packed = ipaddress.ip_address(address).packed
    words = struct.unpack("=%dI" % (len(packed) // 4), packed)
    return "%s:%04X" % ("".join("%08X" % word for word in words), port)


def proc_net(tmp_path, tcp=(), tcp6=()):
    """A /proc with net/tcp and net/tcp6 holding the sockets [(local, local port, peer, peer port, state)]."""
    root = tmp_path / "proc"
    (root / "net").mkdir(parents=True)
    for name, sockets in (("tcp", tcp), ("tcp6", tcp6)):
        lines = [HEADER]
        for number, (local, local_port, peer, peer_port, state) in enumerate(sockets):
            lines.append("  %2d: %s %s %02X 00000000:00000000 00:00000000 00000000     0        0 %d 1\n" % (
                number, kernel_endpoint(local, local_port), kernel_endpoint(peer, peer_port), state, 9000 + number))
        (root / "net" / name).write_text("".join(lines))
    return str(root)


@pytest.mark.skipif(struct.pack("=I", 1) != struct.pack("<I", 1), reason="the fixture lines are little-endian")
def test_kernel_endpoint_matches_the_kernels_format():
    # The fixture lines above, as a little-endian kernel writes them.
    assert kernel_endpoint("10.213.204.2", 22) == "02CCD50A:0016"
    assert kernel_endpoint("fd00::2", 2222) == "000000FD000000000000000002000000:08AE"
    assert kernel_endpoint("::ffff:192.168.0.2", 22) == "0000000000000000FFFF00000200A8C0:0016"


def test_established_connections_of_both_tables(tmp_path):
    proc = proc_net(tmp_path, tcp=[
        ("0.0.0.0", 8080, "0.0.0.0", 0, LISTEN),
        ("10.0.0.2", 8080, "192.0.2.7", 51234, ESTABLISHED),
        ("10.0.0.2", 8080, "192.0.2.8", 51235, TIME_WAIT),
        ("127.0.0.1", 6379, "127.0.0.1", 40000, ESTABLISHED),
    ], tcp6=[
        ("::", 8080, "::", 0, LISTEN),
        ("2001:db8::2", 8080, "2001:db8::7", 40001, ESTABLISHED),
        ("::ffff:10.0.0.2", 8080, "::ffff:198.51.100.9", 40002, ESTABLISHED),
    ])
    assert sorted(established_connections(proc), key=str) == sorted([
        (ipaddress.ip_address("10.0.0.2"), 8080, ipaddress.ip_address("192.0.2.7"), 51234),
        (ipaddress.ip_address("127.0.0.1"), 6379, ipaddress.ip_address("127.0.0.1"), 40000),
        (ipaddress.ip_address("2001:db8::2"), 8080, ipaddress.ip_address("2001:db8::7"), 40001),
        # IPv4-mapped: the IPv4 client (and local address) it is.
        (ipaddress.IPv4Address("10.0.0.2"), 8080, ipaddress.IPv4Address("198.51.100.9"), 40002),
    ], key=str)


def test_established_connections_from_the_session_fixture(tmp_path):
    # Listeners are not connections; the IPv4-mapped session is shown as IPv4.
    assert sorted(established_connections(build(tmp_path, [], {})), key=str) == sorted([
        (ipaddress.ip_address("10.213.204.2"), 22, ipaddress.ip_address("10.213.204.1"), 51234),
        (ipaddress.ip_address("fd00::2"), 2222, ipaddress.ip_address("fd00::1"), 40000),
        (ipaddress.ip_address("192.168.0.2"), 22, ipaddress.ip_address("192.168.0.1"), 40001),
    ], key=str)


def test_established_connections_without_tables_or_with_bad_lines(tmp_path):
    assert established_connections(str(tmp_path / "no-proc")) == []
    root = tmp_path / "proc"
    (root / "net").mkdir(parents=True)
    (root / "net" / "tcp").write_text(HEADER + "   0: garbage\n   1: ZZ:0016 01CCD50A:C822 01 0 0 0 0 0 1 1\n"
                                      + TCP.splitlines(True)[2])
    # No tcp6 (IPv6 disabled): the IPv4 table alone; the lines it cannot read are skipped.
    assert established_connections(str(root)) == [
        (ipaddress.ip_address("10.213.204.2"), 22, ipaddress.ip_address("10.213.204.1"), 51234)]
