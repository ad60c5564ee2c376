# Copyright (c) Portcullis contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The connection this module runs over, as the host sees it: the SSH session's TCP endpoints.

The module's ancestors (sh, sudo, the session's sshd) hold the session's socket; its established entry in
/proc/net/tcp{,6} gives the port the controller really came in on, the address family and the controller's
address as the host sees it (after any NAT), which the firewall keeps open. Read-only, from /proc.

Private to the collection.
"""

from __future__ import annotations

import ipaddress
import os

from ansible_collections.portcullis.hardening.plugins.module_utils._procnet import split_endpoint

TCP_ESTABLISHED = 0x01
MAX_ANCESTORS = 32


def parse_established(text, family):
    """{inode: (local address, local port, remote address, remote port)} of the ESTABLISHED sockets of one table."""
    found = {}
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 10:
            continue
        try:
            if int(fields[3], 16) != TCP_ESTABLISHED:
                continue
            found[int(fields[9])] = split_endpoint(fields[1], family) + split_endpoint(fields[2], family)
        except ValueError:  # ProcNetFormatError included
            continue
    return found


def _read(path):
    try:
        with open(path) as stream:
            return stream.read()
    except OSError:
        return None


def parent_pid(proc_root, pid):
    stat = _read(os.path.join(proc_root, str(pid), "stat"))
    if not stat:
        return None
    # "pid (comm) state ppid ...": comm may hold spaces and parentheses, so split after the last ")".
    fields = stat.rpartition(")")[2].split()
    return int(fields[1]) if len(fields) > 1 and fields[1].isdigit() else None


def socket_inodes(proc_root, pid):
    inodes = set()
    fd_dir = os.path.join(proc_root, str(pid), "fd")
    try:
        fds = os.listdir(fd_dir)
    except OSError:
        return inodes
    for fd in fds:
        try:
            link = os.readlink(os.path.join(fd_dir, fd))
        except OSError:
            continue
        if link.startswith("socket:[") and link.endswith("]"):
            inodes.add(int(link[8:-1]))
    return inodes


def _plain(address):
    """IPv4-mapped IPv6 addresses as the IPv4 address they are."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped
    return address


def established_connections(proc_root="/proc"):
    """[(local address, local port, peer address, peer port)] of every ESTABLISHED TCP connection (IPv4 and IPv6)."""
    found = []
    for name, family in (("tcp", "ipv4"), ("tcp6", "ipv6")):
        text = _read(os.path.join(proc_root, "net", name))
        if text:
            found.extend(tuple(_plain(part) if index % 2 == 0 else part for index, part in enumerate(connection))
                         for connection in parse_established(text, family).values())
    return found


def management_session(proc_root="/proc", pid=None):
    """{port, family, local_address, peer_address} of the TCP connection the nearest ancestor of `pid` holds (the
    SSH session), or None when there is none (a local or container connection, or /proc not readable)."""
    established = {}
    for name, family in (("tcp", "ipv4"), ("tcp6", "ipv6")):
        text = _read(os.path.join(proc_root, "net", name))
        if text:
            established.update(parse_established(text, family))
    if not established:
        return None
    current = os.getpid() if pid is None else pid
    for _hop in range(MAX_ANCESTORS):
        current = parent_pid(proc_root, current)
        if not current or current <= 1:
            return None
        for inode in sorted(socket_inodes(proc_root, current)):
            if inode in established:
                local, local_port, peer, _peer_port = established[inode]
                local, peer = _plain(local), _plain(peer)
                return {"port": local_port, "family": "ipv%d" % peer.version, "local_address": str(local),
                        "peer_address": str(peer)}
    return None
