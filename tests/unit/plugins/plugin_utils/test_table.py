# Copyright (c) Portcullis contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

from ansible_collections.portcullis.hardening.plugins.plugin_utils._table import render_table


def listener(protocol, family, address, port, user="root", processes=(), loopback=False, wildcard=False,
             interface=None):
    return {"protocol": protocol, "family": family, "address": address, "port": port, "user": user,
            "processes": list(processes), "loopback": loopback, "wildcard": wildcard, "interface": interface}


def proc(pid, name, unit):
    return {"pid": pid, "name": name, "unit": unit, "cmdline": name}


def test_renders_aligned_rows_for_each_host():
    table = render_table({
        "web1": [
            listener("tcp", "ipv4", "0.0.0.0", 22, processes=[proc(10, "sshd", "ssh.service")], wildcard=True),
            listener("tcp", "ipv6", "::", 22, processes=[proc(10, "sshd", "ssh.service")], wildcard=True),
            listener("tcp", "ipv4", "0.0.0.0", 8080, user="www-data", wildcard=True,
                     processes=[proc(20, "nginx", "nginx.service"), proc(21, "nginx", "nginx.service")]),
            listener("tcp", "ipv4", "127.0.0.1", 6379, loopback=True),
            listener("udp", "ipv6", "fe80::1", 546, interface="eth0", processes=[proc(5, "dhclient", None)]),
        ],
        "db1": "unreachable or failed",
        "idle": [],
    })
    lines = table.splitlines()
    assert lines[0].split() == ["HOST", "PROTO", "ADDRESS", "PORT", "REACH", "USER", "PROCESS", "UNIT"]
    assert lines[1].split() == ["web1", "tcp", "0.0.0.0", "22", "all", "IPv4", "root", "sshd", "(10)", "ssh.service"]
    assert lines[2].split() == ["web1", "tcp", "[::]", "22", "all", "IPv6", "root", "sshd", "(10)", "ssh.service"]
    assert lines[3].split()[-3:] == ["nginx", "(20,21)", "nginx.service"]
    assert lines[4].split() == ["web1", "tcp", "127.0.0.1", "6379", "local", "only", "root", "-", "-"]
    assert lines[5].split() == ["web1", "udp", "[fe80::1]%eth0", "546", "this", "address", "root",
                                "dhclient", "(5)", "-"]
    # Columns line up: every row's PORT starts where the header's does.
    column = lines[0].index("PORT")
    assert all(line[column - 2:column] == "  " and line[column] != " " for line in lines[1:6])
    assert lines[7:] == ["5 listening sockets on 2 hosts", "db1: not discovered (unreachable or failed)",
                         "idle: nothing listens"]


def test_empty_fleet():
    assert render_table({}).splitlines()[-1] == "0 listening sockets on 0 hosts"
