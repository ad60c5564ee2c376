# Copyright (c) Portcullis contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Properties of the /proc/net parsers: sockets written the way the kernel writes them parse back to themselves,
and no text makes them raise anything but ProcNetFormatError."""

from __future__ import annotations

import ipaddress
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ansible_collections.portcullis.hardening.plugins.module_utils._procnet import (
    TABLE_FILES,
    ProcNetFormatError,
    Socket,
    decode_address,
    format_address,
    is_loopback,
    is_wildcard,
    parse_if_inet6,
    parse_table,
)

PROPERTY = settings(max_examples=200, deadline=None, derandomize=True)

TCP_LISTEN, TCP_CLOSE, TCP_ESTABLISHED, TCP_TIME_WAIT, TCP_SYN_RECV = 0x0A, 0x07, 0x01, 0x06, 0x03
HEADERS = {
    "tcp": "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode",
    "tcp6": "  sl  local_address                         remote_address                        st tx_queue rx_queue"
            " tr tm->when retrnsmt   uid  timeout inode",
    "udp": "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref"
           " pointer drops",
    "udp6": "  sl  local_address                         remote_address                        st tx_queue rx_queue"
            " tr tm->when retrnsmt   uid  timeout inode ref pointer drops",
}
TABLES = sorted(TABLE_FILES)  # (protocol, family)


# --- the kernel's side: net/ipv4/tcp_ipv4.c, net/ipv6/tcp_ipv6.c, net/ipv4/udp.c, net/ipv6/datagram.c ------------

def kernel_hex(address):
    """%08X of each 32-bit word of the address as the CPU holds it (the kernel prints __be32 words as u32)."""
    words = struct.unpack("=%dI" % (len(address.packed) // 4), address.packed)
    return "".join("%08X" % word for word in words)


def kernel_line(slot, protocol, local, local_port, remote, remote_port, state, uid, inode):
    head = "%4d: %s:%04X %s:%04X %02X %08X:%08X %02X:%08X %08X" % (
        slot, kernel_hex(local), local_port, kernel_hex(remote), remote_port, state, 0, 0, 0, 0, 0)
    if protocol == "udp":
        return "%s %5u %8d %u %d %016x %u" % (head, uid, 0, inode, 2, 0, 0)
    if state in (TCP_TIME_WAIT, TCP_SYN_RECV):  # time-wait and request sockets: no uid, no inode
        return "%s %5d %8d %d %d %016x" % (head, 0, 0, 0, 3, 0)
    return "%s %5u %8d %u %d %016x %u %u %u %u %d" % (head, uid, 0, inode, 1, 0, 100, 0, 0, 10, -1)


def addresses(family):
    return st.ip_addresses(v=4 if family == "ipv4" else 6)


@st.composite
def table_of_sockets(draw):
    """(protocol, family, kernel text, [(protocol, family, address, port, uid, inode)] that listen)."""
    protocol, family = draw(st.sampled_from(TABLES))
    lines, listening = [HEADERS[TABLE_FILES[protocol, family]]], []
    for slot in range(draw(st.integers(0, 8))):
        local, remote = draw(addresses(family)), draw(st.one_of(st.just(ipaddress.ip_address(
            "0.0.0.0" if family == "ipv4" else "::")), addresses(family)))
        local_port, remote_port = draw(st.integers(0, 65535)), draw(st.sampled_from([0]) | st.integers(0, 65535))
        state = draw(st.sampled_from([TCP_LISTEN, TCP_CLOSE, TCP_ESTABLISHED, TCP_TIME_WAIT]) | st.integers(0, 255))
        uid, inode = draw(st.integers(0, 2 ** 32 - 1)), draw(st.integers(0, 2 ** 64 - 1))
        lines.append(kernel_line(slot, protocol, local, local_port, remote, remote_port, state, uid, inode))
        if protocol == "tcp":
            listens = state == TCP_LISTEN
        else:  # bound to a port, connected to no peer
            listens = state == TCP_CLOSE and local_port != 0 and remote_port == 0 and remote.is_unspecified
        if listens:
            listening.append((protocol, family, local, local_port, uid, inode))
    return protocol, family, "\n".join(lines) + "\n", listening


def as_tuple(socket):
    return socket.protocol, socket.family, socket.address, socket.port, socket.uid, socket.inode


@PROPERTY
@given(table_of_sockets())
def test_kernel_tables_parse_back_to_their_listening_sockets(table):
    protocol, family, text, listening = table
    sockets = parse_table(text, protocol, family)
    assert [as_tuple(socket) for socket in sockets] == listening
    assert all(isinstance(socket, Socket) for socket in sockets)


@PROPERTY
@given(st.sampled_from(["ipv4", "ipv6"]).flatmap(lambda family: st.tuples(st.just(family), addresses(family))))
def test_addresses_round_trip(family_address):
    family, address = family_address
    assert decode_address(kernel_hex(address), family) == address
    assert ipaddress.ip_address(format_address(address)) == address
    plain = address.ipv4_mapped if address.version == 6 and address.ipv4_mapped is not None else address
    assert (is_loopback(address), is_wildcard(address)) == (plain.is_loopback, plain.is_unspecified)


INTERFACE = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789._-@", min_size=1, max_size=15)


@PROPERTY
@given(st.lists(st.tuples(st.ip_addresses(v=6), INTERFACE), max_size=12))
def test_if_inet6_parses_back(entries):
    # net/ipv6/addrconf.c: "%pi6 %02x %02x %02x %02x %8s\n" (ifindex, prefix length, scope, flags, name)
    text = "".join("%s %02x %02x %02x %02x %8s\n" % (address.packed.hex(), index + 1, 64, 0x20, 0x80, name)
                   for index, (address, name) in enumerate(entries))
    expected = {}
    for address, name in entries:
        expected.setdefault(address, []).append(name)
    assert parse_if_inet6(text) == expected


# --- text the kernel never writes ----------------------------------------------------------------------------

def hex_text(min_size=0, max_size=34):
    return st.text(alphabet="0123456789ABCDEFabcdefx_+-", min_size=min_size, max_size=max_size)


def signed_hex(number, width=0):
    return "%s%0*X" % ("-" if number < 0 else "", width, abs(number))


def mutant(position, width, wild):
    """A field for `position` that is not what the kernel writes there; `wild`: signed or too wide numbers too."""
    if position in (1, 2):  # an endpoint, ADDRESS:PORT
        address = st.integers(0, 16 ** width - 1).map(lambda number: signed_hex(number, width))
        port = st.integers(0, 0xFFFF).map(lambda number: signed_hex(number, 4))
        if wild:
            address |= st.integers(-16 ** (width - 1) + 1, -1).map(lambda number: signed_hex(number, width - 1))
            port |= st.integers(-0xFFFFF, 0xFFFFFF).map(signed_hex)
        odd = st.builds("{}:{}".format, address, port)
    elif position == 3:  # the state
        odd = st.integers(-0xFF if wild else 0, 0xFFFF if wild else 0xFF).map(signed_hex)
    else:  # uid, inode and the rest: decimal
        odd = st.integers(-2 ** 70 if wild else 0, 2 ** 70).map(str)
    return st.one_of(odd, odd, odd, hex_text(1), st.builds("{}:{}".format, hex_text(), hex_text()),
                     st.text(min_size=1, max_size=12))


@st.composite
def near_kernel_tables(draw, wild):
    """(protocol, family, text): kernel lines with a few fields changed, cut short or made longer."""
    protocol, family = draw(st.sampled_from(TABLES))
    width = 8 if family == "ipv4" else 32
    lines = [draw(st.text(max_size=40))]  # the header line is not read
    for slot in range(draw(st.integers(1, 2))):
        state = draw(st.sampled_from([TCP_LISTEN, TCP_CLOSE]))
        fields = kernel_line(slot, protocol, draw(addresses(family)), draw(st.integers(1, 65535)),
                             ipaddress.ip_address("0.0.0.0" if family == "ipv4" else "::"), 0, state, 0, 1).split()
        for _change in range(draw(st.integers(0, 2))):
            # mostly a field the parser reads: local and remote endpoint, state, uid, inode
            position = draw(st.sampled_from([1, 1, 2, 3, 7, 9]) | st.integers(0, len(fields)))
            fields[position:position + 1] = [draw(mutant(position, width, wild))]
        if draw(st.integers(0, 9)) == 0:
            fields = fields[:draw(st.integers(0, len(fields)))]
        lines.append(" ".join(fields))
    return protocol, family, "\n".join(lines)


def check_contract(text, protocol, family):
    """Sockets in range, or ProcNetFormatError: nothing else."""
    try:
        sockets = parse_table(text, protocol, family)
    except ProcNetFormatError:
        return
    for socket in sockets:
        assert 0 <= socket.port <= 65535 and socket.uid >= 0 and socket.inode >= 0, socket
        assert "ipv%d" % socket.address.version == family


@PROPERTY
@given(st.text(), st.sampled_from(TABLES))
def test_any_text_parses_or_raises_the_format_error(text, table):
    check_contract(text, *table)


@PROPERTY
@given(near_kernel_tables(wild=False))
def test_near_kernel_text_parses_or_raises_the_format_error(table):
    protocol, family, text = table
    check_contract(text, protocol, family)


# Bugs of _procnet.py that these properties found, fixed: each stays as a regression test.
SIGNED_ADDRESS = "  sl\n   0: -0000001:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0  0 7 1\n"
SIGNED_PORT = "  sl\n   0: 00000000:-016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0  0 7 1\n"
WIDE_PORT = "  sl\n   0: 00000000:10016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0  0 7 1\n"
SIGNED_UID = "  sl\n   0: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000    -5  0 -7 1\n"


@settings(PROPERTY)
@given(near_kernel_tables(wild=True))
def test_signed_and_wide_fields_parse_or_raise_the_format_error(table):
    protocol, family, text = table
    check_contract(text, protocol, family)


def test_signed_address_is_a_format_error():
    with pytest.raises(ProcNetFormatError):
        parse_table(SIGNED_ADDRESS, "tcp", "ipv4")


@pytest.mark.parametrize("text", [SIGNED_PORT, WIDE_PORT, SIGNED_UID])
def test_numbers_out_of_range_are_format_errors(text):
    with pytest.raises(ProcNetFormatError):
        parse_table(text, "tcp", "ipv4")


def test_if_inet6_skips_a_line_that_is_not_hex():
    assert parse_if_inet6("zz" * 16 + " 02 40 20 80 eth0\n") == {}
