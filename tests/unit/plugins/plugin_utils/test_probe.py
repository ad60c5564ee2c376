# Copyright (c) Portcullis contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import errno
import socket
import threading
import time

import pytest

from ansible_collections.portcullis.hardening.plugins.plugin_utils._probe import (
    UDP_PAYLOADS,
    probe_tcp,
    probe_udp,
    resolve_addresses,
    try_connect,
    try_udp,
)


class FakeConnection:
    def __init__(self, local):
        self.local = local
        self.closed = False

    def getsockname(self):
        return (self.local, 40000)

    def close(self):
        self.closed = True


class FakeNetwork:
    """Answers like a host behind a firewall: 22 open, 23 refused, 25 dropped, 26 rejected with ICMP."""

    def __init__(self):
        self.lock = threading.Lock()
        self.active = 0
        self.most_active = 0
        self.calls = []
        self.connections = []

    def connect(self, address, timeout):
        with self.lock:
            self.active += 1
            self.most_active = max(self.most_active, self.active)
            self.calls.append((address, timeout))
        try:
            port = address[1]
            if port == 22:
                connection = FakeConnection("192.0.2.1")
                self.connections.append(connection)
                return connection
            if port == 23:
                raise ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused")
            if port == 25:
                raise socket.timeout("timed out")
            if port == 26:
                raise OSError(errno.EHOSTUNREACH, "No route to host")
            raise OSError(errno.EBADF, "Bad file descriptor")
        finally:
            with self.lock:
                self.active -= 1


@pytest.mark.parametrize("port, outcome", [
    (22, ("open", "192.0.2.1")), (23, ("closed", None)), (25, ("filtered", None)), (26, ("filtered", None)),
])
def test_try_connect_classifies(port, outcome):
    network = FakeNetwork()
    assert try_connect("192.0.2.5", port, 0.5, network.connect) == outcome
    assert network.calls == [(("192.0.2.5", port), 0.5)]
    assert all(connection.closed for connection in network.connections)


def test_unexpected_errors_are_raised_not_hidden():
    with pytest.raises(OSError):
        try_connect("192.0.2.5", 99, 0.5, FakeNetwork().connect)


def test_probe_every_address_and_port_within_the_concurrency_bound():
    network = FakeNetwork()
    result = probe_tcp(["192.0.2.5", "2001:db8::5"], [22, 23, 25, 26] * 10, timeout=0.2, concurrency=3,
                       connect=network.connect)
    assert result["192.0.2.5"] == {22: ("open", "192.0.2.1"), 23: ("closed", None), 25: ("filtered", None),
                                   26: ("filtered", None)}
    assert result["2001:db8::5"] == result["192.0.2.5"]
    assert len(network.calls) == 80 and network.most_active <= 3


def test_nothing_to_probe():
    assert probe_tcp(["192.0.2.5"], [], connect=FakeNetwork().connect) == {"192.0.2.5": {}}


def test_resolve_literal_addresses_and_reject_unknown_names():
    assert resolve_addresses(["192.0.2.5", "2001:db8::5", "127.0.0.1"]) == ["192.0.2.5", "2001:db8::5", "127.0.0.1"]
    with pytest.raises(ValueError, match="probe address 'no-such-host.invalid' cannot be resolved"):
        resolve_addresses(["no-such-host.invalid"])


# --- UDP, against real sockets on loopback ----------------------------------------------------------

class Responder:
    """A UDP socket on 127.0.0.1 that answers every datagram (or, silent, answers none) and counts them."""

    def __init__(self, silent=False):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.05)
        self.port = self.sock.getsockname()[1]
        self.silent = silent
        self.received = []
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.serve, daemon=True)

    def serve(self):
        while not self.stopping.is_set():
            try:
                data, peer = self.sock.recvfrom(65535)
            except socket.timeout:
                continue
            self.received.append((data, peer))
            if not self.silent:
                self.sock.sendto(b"pong", peer)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc_info):
        self.stopping.set()
        self.thread.join()
        self.sock.close()


def unused_udp_port():
    """A loopback UDP port nothing is bound to (Linux answers it with an ICMP port unreachable)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_try_udp_a_reply_is_open_and_names_the_controller_address():
    with Responder() as responder:
        assert try_udp("127.0.0.1", responder.port, 1.0) == ("open", "127.0.0.1")
    [(data, peer)] = responder.received  # answered at the first datagram: no second one
    assert data == b"" and peer[0] == "127.0.0.1"


def test_try_udp_an_icmp_port_unreachable_is_closed():
    started = time.monotonic()
    assert try_udp("127.0.0.1", unused_udp_port(), 1.0) == ("closed", None)
    assert time.monotonic() - started < 0.5  # the ICMP error ends the wait, the timeout does not


def test_try_udp_silence_is_open_or_filtered_after_every_attempt_within_the_timeout():
    with Responder(silent=True) as responder:
        started = time.monotonic()
        assert try_udp("127.0.0.1", responder.port, 0.3) == ("open|filtered", None)
        elapsed = time.monotonic() - started
        time.sleep(0.1)  # let the responder's thread take the last datagram
    assert 0.25 <= elapsed < 1.0
    assert [data for data, _peer in responder.received] == [b"", b""]


def test_probe_udp_classifies_each_port_on_loopback():
    closed = unused_udp_port()
    with Responder() as answering, Responder(silent=True) as silent:
        result = probe_udp(["127.0.0.1"], [answering.port, closed, silent.port], timeout=0.3, concurrency=2)
    assert result == {"127.0.0.1": {answering.port: ("open", "127.0.0.1"), closed: ("closed", None),
                                    silent.port: ("open|filtered", None)}}


# --- UDP, with a fake socket ------------------------------------------------------------------------

class FakeUdpSocket:
    """A connected UDP socket whose connect, send and recv answer from a script: a result or an exception each."""

    def __init__(self, family, kind, script, log):
        self.family, self.kind, self.script, self.log = family, kind, list(script), log
        self.closed = False
        log.append(self)
        self.sent = []

    def settimeout(self, timeout):
        self.timeout = timeout

    def _next(self):
        if not self.script:
            return None
        outcome = self.script.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    def connect(self, address):
        self.address = address
        return self._next()

    def send(self, data):
        self.sent.append(data)
        self._next()
        return len(data)

    def recv(self, size):
        return self._next()

    def getsockname(self):
        return ("2001:db8::1", 40000, 0, 0) if self.family == socket.AF_INET6 else ("192.0.2.1", 40000)

    def close(self):
        self.closed = True


def factory(script, log):
    return lambda family, kind: FakeUdpSocket(family, kind, script, log)


TIMEOUT = socket.timeout("timed out")


@pytest.mark.parametrize("script", [
    [OSError(errno.EHOSTUNREACH, "No route to host")],                         # connect: no route
    [None, OSError(errno.EACCES, "Permission denied")],                        # send: a local firewall
    [None, None, OSError(errno.EHOSTUNREACH, "No route to host")],             # recv: ICMP host unreachable
    [None, None, TIMEOUT, OSError(errno.ENETUNREACH, "Network is unreachable")],  # the second send
    [None, None, OSError(errno.EPERM, "Operation not permitted")],
])
def test_try_udp_other_icmp_errors_are_filtered(script):
    log = []
    assert try_udp("192.0.2.5", 5000, 0.5, make_socket=factory(script, log)) == ("filtered", None)
    [sock] = log
    assert sock.closed
    assert (sock.family, sock.kind, sock.address) == (socket.AF_INET, socket.SOCK_DGRAM, ("192.0.2.5", 5000))


@pytest.mark.parametrize("script, outcome", [
    ([None, None, TIMEOUT, None, b"late"], ("open", "192.0.2.1")),                 # the second datagram answered
    ([None, None, TIMEOUT, ConnectionRefusedError(errno.ECONNREFUSED, "refused")], ("closed", None)),  # late ICMP
    ([None, None, TIMEOUT, None, TIMEOUT, None, TIMEOUT], ("open|filtered", None)),  # a third attempt
])
def test_try_udp_sends_again_after_silence(script, outcome):
    log = []
    assert try_udp("192.0.2.5", 5000, 0.6, attempts=3, make_socket=factory(script, log)) == outcome
    [sock] = log
    assert sock.closed and sock.timeout == pytest.approx(0.2)  # the timeout is shared by the attempts
    assert len(sock.sent) == {"open": 2, "closed": 2, "open|filtered": 3}[outcome[0]]


def test_try_udp_uses_the_address_family_and_the_port_payload():
    log = []
    assert try_udp("2001:db8::5", 53, 0.5, make_socket=factory([None, None, b"answer"], log)) == (
        "open", "2001:db8::1")
    assert log[0].family == socket.AF_INET6 and log[0].sent == [UDP_PAYLOADS[53]]


def test_try_udp_raises_unexpected_errors():
    with pytest.raises(OSError):
        try_udp("192.0.2.5", 5000, 0.5, make_socket=factory([OSError(errno.EBADF, "Bad file descriptor")], []))


def test_probe_udp_every_address_and_port_within_the_concurrency_bound():
    lock, active, most = threading.Lock(), [0], [0]

    class Counting(FakeUdpSocket):
        def recv(self, size):
            with lock:
                active[0] += 1
                most[0] = max(most[0], active[0])
            time.sleep(0.01)
            with lock:
                active[0] -= 1
            return b"x"

    log = []
    result = probe_udp(["192.0.2.5", "2001:db8::5"], list(range(1000, 1020)), timeout=0.2, concurrency=3,
                       make_socket=lambda family, kind: Counting(family, kind, [], log))
    assert result["192.0.2.5"] == dict.fromkeys(range(1000, 1020), ("open", "192.0.2.1"))
    assert result["2001:db8::5"] == dict.fromkeys(range(1000, 1020), ("open", "2001:db8::1"))
    assert len(log) == 40 and all(sock.closed for sock in log) and most[0] <= 3
    assert probe_udp(["192.0.2.5"], [], make_socket=factory([], [])) == {"192.0.2.5": {}}


def ber(data):
    """(tag, content, rest) of the first BER element; short lengths only, as SNMP requests this small use."""
    tag, length = data[0], data[1]
    assert length < 0x80 and len(data) >= 2 + length
    return tag, data[2:2 + length], data[2 + length:]


def test_udp_payloads_are_the_requests_they_claim():
    dns = UDP_PAYLOADS[53]
    assert dns[2:12] == b"\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00"  # a query, recursion desired, 1 question
    assert dns[12:] == b"\x07version\x04bind\x00" + b"\x00\x10" + b"\x00\x03"  # version.bind TXT CH
    ntp = UDP_PAYLOADS[123]
    assert len(ntp) == 48 and ntp[0] >> 6 == 0 and (ntp[0] >> 3) & 7 == 4 and ntp[0] & 7 == 3  # LI 0, v4, client
    tag, message, rest = ber(UDP_PAYLOADS[161])
    assert (tag, rest) == (0x30, b"")
    tag, version, message = ber(message)
    tag2, community, message = ber(message)
    assert (tag, version, tag2, community) == (0x02, b"\x00", 0x04, b"public")  # SNMPv1, community public
    tag, pdu, rest = ber(message)
    assert (tag, rest) == (0xa0, b"")  # GetRequest-PDU
    _tag, _request_id, pdu = ber(pdu)
    _tag, error_status, pdu = ber(pdu)
    _tag, error_index, pdu = ber(pdu)
    _tag, bindings, rest = ber(pdu)
    _tag, binding, _rest = ber(bindings)
    tag, oid, value = ber(binding)
    assert (error_status, error_index, rest, tag, oid, value) == (
        b"\x00", b"\x00", b"", 0x06, bytes([0x2b, 6, 1, 2, 1, 1, 1, 0]), b"\x05\x00")  # sysDescr.0 = NULL
