# Copyright (c) Portcullis contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Parse the kernel's socket tables in /proc/net into listening sockets.

Private to the collection: pure functions, no AnsibleModule, unit-tested on fixture text.
"""

from __future__ import annotations

import ipaddress
import re
import struct

from ansible_collections.portcullis.hardening.plugins.module_utils._host import PortcullisError

PROTOCOLS = ("tcp", "udp")
FAMILIES = ("ipv4", "ipv6")

# /proc/net/<file> for each (protocol, family).
TABLE_FILES = {
    ("tcp", "ipv4"): "tcp",
    ("tcp", "ipv6"): "tcp6",
    ("udp", "ipv4"): "udp",
    ("udp", "ipv6"): "udp6",
}

TCP_LISTEN = 0x0A
# An unconnected UDP socket sits in TCP_CLOSE (7); a connect()ed one is ESTABLISHED (1).
UDP_UNCONNECTED = 0x07


class ProcNetFormatError(PortcullisError, ValueError):
    """A /proc/net table line that cannot be parsed."""


class Socket:
    """One listening socket as the kernel lists it."""

    __slots__ = ("protocol", "family", "address", "port", "uid", "inode")

    def __init__(self, protocol, family, address, port, uid, inode):
        self.protocol = protocol
        self.family = family
        self.address = address  # an ipaddress.IPv4Address or IPv6Address
        self.port = port
        self.uid = uid
        self.inode = inode

    def __repr__(self):
        return "Socket(%s/%s %s:%d uid=%d inode=%d)" % (
            self.protocol, self.family, self.address, self.port, self.uid, self.inode)


_HEX = re.compile(r"[0-9A-Fa-f]+")


def _is_hex(text):
    return _HEX.fullmatch(text) is not None


def _decimal(text, what):
    if not text.isdigit() or not text.isascii():
        raise ProcNetFormatError("bad %s %r" % (what, text))
    return int(text)


def decode_address(hex_address, family):
    """Decode the kernel's hex address.

    The kernel prints the address as 32-bit words in host byte order, so packing them back
    natively restores the network-order bytes, on little- and big-endian hosts alike.
    """
    if family == "ipv4":
        if len(hex_address) != 8 or not _is_hex(hex_address):
            raise ProcNetFormatError("bad IPv4 address %r" % hex_address)
        return ipaddress.IPv4Address(struct.pack("=I", int(hex_address, 16)))
    if len(hex_address) != 32 or not _is_hex(hex_address):
        raise ProcNetFormatError("bad IPv6 address %r" % hex_address)
    words = [int(hex_address[i:i + 8], 16) for i in range(0, 32, 8)]
    return ipaddress.IPv6Address(struct.pack("=4I", *words))


def split_endpoint(endpoint, family):
    """(address, port) of a /proc/net endpoint such as 0100007F:0016."""
    address, sep, port = endpoint.partition(":")
    if not sep or len(port) != 4 or not _is_hex(port):
        raise ProcNetFormatError("bad endpoint %r" % endpoint)
    return decode_address(address, family), int(port, 16)


def is_listening(protocol, state, remote_address, remote_port, local_port):
    """TCP: state LISTEN. UDP: bound to a port and not connected to a peer."""
    if protocol == "tcp":
        return state == TCP_LISTEN
    return (state == UDP_UNCONNECTED and local_port != 0
            and remote_port == 0 and not int(remote_address))


def parse_table(text, protocol, family):
    """Return the listening sockets of one /proc/net table (tcp, tcp6, udp or udp6)."""
    sockets = []
    for number, line in enumerate(text.splitlines()):
        fields = line.split()
        if number == 0 or not fields:
            continue  # header line
        if len(fields) < 10:
            raise ProcNetFormatError("line %d has %d fields: %r" % (number + 1, len(fields), line))
        try:
            address, port = split_endpoint(fields[1], family)
            remote_address, remote_port = split_endpoint(fields[2], family)
            if not _is_hex(fields[3]):
                raise ProcNetFormatError("bad state %r" % fields[3])
            state = int(fields[3], 16)
            uid = _decimal(fields[7], "uid")
            inode = _decimal(fields[9], "inode")
        except ValueError as exc:
            raise ProcNetFormatError("line %d: %s: %r" % (number + 1, exc, line))
        if is_listening(protocol, state, remote_address, remote_port, port):
            sockets.append(Socket(protocol, family, address, port, uid, inode))
    return sockets


def parse_if_inet6(text):
    """Map each IPv6 address in /proc/net/if_inet6 to the interfaces that carry it."""
    interfaces = {}
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 6 or len(fields[0]) != 32 or not _is_hex(fields[0]):
            continue
        address = ipaddress.IPv6Address(bytes.fromhex(fields[0]))  # already network order
        interfaces.setdefault(address, []).append(fields[5])
    return interfaces


def format_address(address):
    """Text form without brackets; IPv4-mapped IPv6 keeps its dotted quad (::ffff:127.0.0.1)."""
    if address.version == 6 and address.ipv4_mapped is not None:
        return "::ffff:%s" % address.ipv4_mapped
    return str(address)


def _effective_address(address):
    if address.version == 6 and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def is_loopback(address):
    return _effective_address(address).is_loopback


def is_wildcard(address):
    return _effective_address(address).is_unspecified


def endpoint_text(address, port):
    """How the collection writes an address and port: 192.0.2.1:22, [2001:db8::1]:22."""
    address = str(address)
    return "[%s]:%s" % (address, port) if ":" in address else "%s:%s" % (address, port)
