# Copyright (c) Portcullis contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Probe a host's TCP and UDP ports from the controller: what a network client sees.

Private to the collection: used by the port_audit action plugin. Bounded: at most `concurrency`
probes at once, each given up after `timeout` seconds.

UDP is probed the way nmap does it: a reply means open, an ICMP port unreachable closed, and silence
"open|filtered" (a firewall dropping the datagram and a service ignoring it look the same).
"""

from __future__ import annotations

import errno
import socket
from concurrent.futures import ThreadPoolExecutor

# An ICMP "unreachable" or "prohibited" answer comes from a firewall's reject or a router: filtered.
FILTERED_ERRNOS = {errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EACCES, errno.EPERM, errno.ETIMEDOUT}


def try_connect(address, port, timeout, connect=socket.create_connection):
    """("open", the controller's own address on that connection) | ("closed", None) | ("filtered", None)."""
    try:
        connection = connect((address, port), timeout=timeout)
    except ConnectionRefusedError:
        return "closed", None
    except socket.timeout:
        return "filtered", None
    except OSError as exc:
        if exc.errno in FILTERED_ERRNOS:
            return "filtered", None
        raise
    try:
        return "open", connection.getsockname()[0]
    finally:
        connection.close()


def _probe_all(addresses, ports, concurrency, try_one):
    """{address: {port: try_one(address, port)}}, at most `concurrency` at once."""
    jobs = [(address, port) for address in addresses for port in ports]
    results = {address: {} for address in addresses}
    if not jobs:
        return results
    with ThreadPoolExecutor(max_workers=max(1, min(concurrency, len(jobs)))) as pool:
        outcomes = pool.map(lambda job: try_one(job[0], job[1]), jobs)
        for (address, port), outcome in zip(jobs, outcomes):
            results[address][port] = outcome
    return results


def probe_tcp(addresses, ports, timeout=1.0, concurrency=32, connect=socket.create_connection):
    """{address: {port: (state, controller_address)}} for every address × port."""
    return _probe_all(addresses, ports, concurrency, lambda address, port: try_connect(address, port, timeout, connect))


# What to send so that a service answers, as nmap's payloads do; other ports get an empty datagram.
UDP_PAYLOADS = {
    # DNS: a query for version.bind, class CHAOS, type TXT (id 6, recursion desired).
    53: b"\x00\x06\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x07version\x04bind\x00\x00\x10\x00\x03",
    # NTP: a version 4 client request (LI 0, VN 4, mode 3), 48 bytes.
    123: b"\x23" + b"\x00" * 47,
    # SNMPv1: get-request of sysDescr.0 (1.3.6.1.2.1.1.1.0) with the community "public", request id 1.
    161: (b"\x30\x29\x02\x01\x00\x04\x06public\xa0\x1c\x02\x04\x00\x00\x00\x01\x02\x01\x00\x02\x01\x00"
          b"\x30\x0e\x30\x0c\x06\x08\x2b\x06\x01\x02\x01\x01\x01\x00\x05\x00"),
}


def try_udp(address, port, timeout, attempts=2, make_socket=socket.socket):
    """("open", the controller's own address) on a reply | ("closed", None) on an ICMP port unreachable |
    ("open|filtered", None) on silence after `attempts` datagrams within `timeout` | ("filtered", None) on
    another ICMP error (host unreachable, prohibited)."""
    payload = UDP_PAYLOADS.get(port, b"")
    sock = make_socket(socket.AF_INET6 if ":" in address else socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.settimeout(timeout / attempts)
        # Connected, so that the kernel hands this socket the ICMP errors about its datagrams.
        sock.connect((address, port))
        for _attempt in range(attempts):
            try:
                sock.send(payload)
                sock.recv(65535)
            except socket.timeout:
                continue  # lost, dropped or ignored: send again
            return "open", sock.getsockname()[0]
        return "open|filtered", None
    except ConnectionRefusedError:
        return "closed", None
    except OSError as exc:
        if exc.errno in FILTERED_ERRNOS:
            return "filtered", None
        raise
    finally:
        sock.close()


def probe_udp(addresses, ports, timeout=1.0, concurrency=32, attempts=2, make_socket=socket.socket):
    """{address: {port: (state, controller_address)}} for every address × port; states as try_udp's."""
    return _probe_all(addresses, ports, concurrency,
                      lambda address, port: try_udp(address, port, timeout, attempts, make_socket))


def resolve_addresses(names):
    """IP addresses to probe for each name: literal addresses as they are, host names resolved (IPv4 and IPv6)."""
    addresses = []
    for name in names:
        try:
            infos = socket.getaddrinfo(name, None, proto=socket.IPPROTO_TCP)
        except socket.gaierror as exc:
            raise ValueError("probe address %r cannot be resolved: %s" % (name, exc))
        seen_families = set()
        for family, _type, _proto, _name, sockaddr in infos:
            if family in seen_families:
                continue
            seen_families.add(family)
            if sockaddr[0] not in addresses:
                addresses.append(sockaddr[0])
    return addresses
