# Copyright (c) Portcullis contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Discover listening sockets with their processes, users and units, from /proc alone.

Private to the collection: the listening_ports module is a thin wrapper around discover().
"""

from __future__ import annotations

import os
import pwd

from ansible_collections.portcullis.hardening.plugins.module_utils._procnet import (
    FAMILIES,
    PROTOCOLS,
    TABLE_FILES,
    format_address,
    is_loopback,
    is_wildcard,
    parse_if_inet6,
    parse_table,
)
from ansible_collections.portcullis.hardening.plugins.module_utils._published import link_proxies, read_published
from ansible_collections.portcullis.hardening.plugins.module_utils._procscan import (
    describe_process,
    scan_socket_owners,
)


class Discovery:
    """What discover() found: the listeners, and notes on how complete the view is; discover_with_published()
    adds the ports published to containers."""

    def __init__(self, listeners, processes_scanned, unreadable_pids, missing_tables):
        self.listeners = listeners
        self.processes_scanned = processes_scanned
        self.unreadable_pids = unreadable_pids
        self.missing_tables = missing_tables
        self.published = []
        self.published_notes = []
        self.container_networks = {"ipv4": [], "ipv6": []}

    def scan_summary(self):
        return {
            "processes_scanned": self.processes_scanned,
            "unreadable_pids": self.unreadable_pids,
            "complete": not self.unreadable_pids,
            "missing_tables": self.missing_tables,
            "published_notes": self.published_notes,
        }


def user_name(uid):
    """Login name for a uid through NSS, or the number as text when the uid has no entry."""
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _read_table(proc_root, file_name):
    try:
        with open(os.path.join(proc_root, "net", file_name), "r") as handle:
            return handle.read()
    except FileNotFoundError:  # e.g. IPv6 disabled: no tcp6/udp6
        return None


def _interface_of(address, interfaces):
    """Name the interface of a link-local address (only the address's owner knows its scope)."""
    if address.version != 6 or not address.is_link_local:
        return None
    names = interfaces.get(address, [])
    return names[0] if len(names) == 1 else None


def discover(proc_root="/proc", protocols=PROTOCOLS, families=FAMILIES, user_lookup=user_name):
    """Every listening TCP socket and bound, unconnected UDP socket of the given kinds."""
    sockets = []
    missing_tables = []
    for protocol in PROTOCOLS:
        for family in FAMILIES:
            if protocol not in protocols or family not in families:
                continue
            file_name = TABLE_FILES[(protocol, family)]
            text = _read_table(proc_root, file_name)
            if text is None:
                missing_tables.append(file_name)
                continue
            sockets.extend(parse_table(text, protocol, family))

    interfaces = {}
    if any(s.family == "ipv6" and s.address.is_link_local for s in sockets):
        interfaces = parse_if_inet6(_read_table(proc_root, "if_inet6") or "")

    scan = scan_socket_owners(proc_root, {s.inode for s in sockets})
    described = {}
    users = {}
    listeners = []
    for sock in sockets:
        processes = []
        for pid in scan.pids_by_inode.get(sock.inode, []):
            if pid not in described:
                described[pid] = describe_process(proc_root, pid)
            if described[pid] is not None:
                processes.append(described[pid])
        if sock.uid not in users:
            users[sock.uid] = user_lookup(sock.uid)
        listeners.append({
            "protocol": sock.protocol,
            "family": sock.family,
            "address": format_address(sock.address),
            "interface": _interface_of(sock.address, interfaces),
            "port": sock.port,
            "inode": sock.inode,
            "uid": sock.uid,
            "user": users[sock.uid],
            "processes": processes,
            "loopback": is_loopback(sock.address),
            "wildcard": is_wildcard(sock.address),
        })
    listeners.sort(key=lambda item: (item["protocol"], item["family"], item["port"],
                                     item["address"], item["inode"]))
    return Discovery(listeners, scan.scanned, scan.unreadable, missing_tables)


def discover_with_published(host, include_published=True, ruleset=None, **options):
    """discover(**options), and the ports published to containers read through `host` (_published; from `ruleset`
    when the caller read it already), with the userland proxies' listeners linked to them (listener["published"])."""
    found = discover(**options)
    if include_published:
        publication = read_published(host, found.listeners, ruleset)
        found.published, found.published_notes = publication.ports, publication.notes
        found.container_networks = publication.container_networks
    else:
        link_proxies(found.listeners, [])
    return found
