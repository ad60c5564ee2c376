# Copyright (c) Portcullis contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import errno
import socket
import threading

import pytest

from ansible_collections.portcullis.hardening.plugins.plugin_utils._probe import (
    probe_tcp,
    resolve_addresses,
    try_connect,
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
