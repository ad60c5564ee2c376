# Copyright (c) Portcullis contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Probe a host's TCP ports from the controller: what a network client sees.

Private to the collection: used by the port_audit action plugin. Bounded: at most `concurrency`
connections at once, each given up after `timeout` seconds.
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


def probe_tcp(addresses, ports, timeout=1.0, concurrency=32, connect=socket.create_connection):
    """{address: {port: (state, controller_address)}} for every address × port."""
    jobs = [(address, port) for address in addresses for port in ports]
    results = {address: {} for address in addresses}
    if not jobs:
        return results
    with ThreadPoolExecutor(max_workers=max(1, min(concurrency, len(jobs)))) as pool:
        outcomes = pool.map(lambda job: try_connect(job[0], job[1], timeout, connect), jobs)
        for (address, port), outcome in zip(jobs, outcomes):
            results[address][port] = outcome
    return results


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
