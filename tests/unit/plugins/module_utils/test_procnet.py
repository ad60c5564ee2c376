# Copyright (c) Portcullis contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import ipaddress
import sys

import pytest

from ansible_collections.portcullis.hardening.plugins.module_utils._procnet import (
    ProcNetFormatError,
    decode_address,
    format_address,
    is_loopback,
    is_wildcard,
    parse_if_inet6,
    parse_table,
)

from .fakeproc import TCP_HEADER, UDP_HEADER, ZERO4, ZERO6, row

# The fixtures are the kernel's text on a little-endian host (x86, arm64).
pytestmark = pytest.mark.skipif(sys.byteorder != "little", reason="fixtures are little-endian kernel output")


@pytest.mark.parametrize("hex_address, family, expected", [
    ("00000000", "ipv4", "0.0.0.0"),
    ("0100007F", "ipv4", "127.0.0.1"),
    ("0F02000A", "ipv4", "10.0.2.15"),
    ("00000000000000000000000000000000", "ipv6", "::"),
    ("00000000000000000000000001000000", "ipv6", "::1"),
    ("0000000000000000FFFF00000100007F", "ipv6", "::ffff:127.0.0.1"),
    ("000080FE00000000FF0042021E0000FE", "ipv6", "fe80::242:ff:fe00:1e"),
    ("B80D0120000000000000000001000000", "ipv6", "2001:db8::1"),
])
def test_decode_address(hex_address, family, expected):
    assert format_address(decode_address(hex_address, family)) == expected


@pytest.mark.parametrize("hex_address, family", [("0100007", "ipv4"), ("0000", "ipv6"), ("XYZ00000", "ipv4")])
def test_decode_address_rejects_malformed(hex_address, family):
    with pytest.raises(ValueError):
        decode_address(hex_address, family)


@pytest.mark.parametrize("text, loopback, wildcard", [
    ("0.0.0.0", False, True),
    ("::", False, True),
    ("127.0.0.1", True, False),
    ("127.0.0.53", True, False),
    ("::1", True, False),
    ("::ffff:127.0.0.1", True, False),
    ("::ffff:0.0.0.0", False, True),
    ("::ffff:192.0.2.7", False, False),
    ("192.0.2.7", False, False),
    ("fe80::1", False, False),
])
def test_address_classes(text, loopback, wildcard):
    address = ipaddress.ip_address(text)
    assert (is_loopback(address), is_wildcard(address)) == (loopback, wildcard)


def _table(header, *rows):
    return "\n".join((header,) + rows) + "\n"


def test_tcp_keeps_only_listen_state():
    text = _table(
        TCP_HEADER,
        row(0, "00000000:0016", ZERO4, "0A", 0, 101),                 # LISTEN 0.0.0.0:22
        row(1, "0F02000A:0016", "0102000A:D431", "01", 0, 102),       # ESTABLISHED
        row(2, "0100007F:1F90", "0100007F:9C40", "06", 0, 0),         # TIME_WAIT, no inode
        row(3, "0100007F:18EB", ZERO4, "0A", 33, 104),                # LISTEN 127.0.0.1:6379
    )
    sockets = parse_table(text, "tcp", "ipv4")
    assert [(str(s.address), s.port, s.uid, s.inode) for s in sockets] == [
        ("0.0.0.0", 22, 0, 101), ("127.0.0.1", 6379, 33, 104)]


def test_udp_listening_means_bound_and_unconnected():
    text = _table(
        UDP_HEADER,
        row(0, "00000000:270F", ZERO4, "07", 65534, 201),             # bound *:9999, unconnected
        row(1, "0F02000A:C350", "08080808:0035", "01", 0, 202),       # connected to a resolver
        row(2, "3500007F:0035", ZERO4, "07", 101, 203),               # 127.0.0.53:53
    )
    sockets = parse_table(text, "udp", "ipv4")
    assert [(str(s.address), s.port, s.uid) for s in sockets] == [("0.0.0.0", 9999, 65534), ("127.0.0.53", 53, 101)]


def test_tcp6_dual_stack_and_mapped():
    text = _table(
        TCP_HEADER,
        row(0, "00000000000000000000000000000000:0016", ZERO6, "0A", 0, 301),
        row(1, "0000000000000000FFFF00000100007F:1F40", ZERO6, "0A", 0, 302),
        row(2, "00000000000000000000000001000000:0CEA", ZERO6, "0A", 0, 303),
    )
    sockets = parse_table(text, "tcp", "ipv6")
    assert [(format_address(s.address), s.port) for s in sockets] == [
        ("::", 22), ("::ffff:127.0.0.1", 8000), ("::1", 3306)]


@pytest.mark.parametrize("line", [
    "   0: 00000000:0016 00000000:0000 0A",                                 # truncated
    row(0, "00000000-0016", ZERO4, "0A", 0, 1),                              # no colon
    "   0: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 x 1",  # inode
])
def test_malformed_line_names_the_line(line):
    with pytest.raises(ProcNetFormatError, match="line 2"):
        parse_table(_table(TCP_HEADER, line), "tcp", "ipv4")


def test_if_inet6_maps_addresses_to_interfaces():
    text = ("fe800000000000000242acfffe110002 02 40 20 80     eth0\n"
            "00000000000000000000000000000001 01 80 10 80       lo\n"
            "fe800000000000000000000000000001 03 40 20 80     wg0\n"
            "fe800000000000000000000000000001 04 40 20 80     wg1\n")
    interfaces = parse_if_inet6(text)
    assert interfaces[ipaddress.IPv6Address("fe80::242:acff:fe11:2")] == ["eth0"]
    assert interfaces[ipaddress.IPv6Address("::1")] == ["lo"]
    assert interfaces[ipaddress.IPv6Address("fe80::1")] == ["wg0", "wg1"]
