# Copyright (c) Portcullis contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

from ansible_collections.portcullis.hardening.plugins.filter.listener_table import listener_table
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


def test_host_text_is_shown_escaped():
    """Names, command lines, users and units come from the host: none of them may drive the terminal."""
    table = render_table({
        "web1\x1b[2J": [
            listener("tcp", "ipv4", "0.0.0.0", 8080, user="www\u202edata", wildcard=True,
                     processes=[proc(20, "\x1b]0;pwned\x07", "evil\r\x1b[K.service")]),
            listener("udp", "ipv6", "fe80::1", 546, interface="eth0\x9b31m",
                     processes=[proc(5, "dh\u2066client", None)]),
        ],
        "db1": "ssh: \x1b[31mfailed\n",
    })
    assert not any(char in table for char in "\x1b\x07\r\x9b\u202e\u2066")
    lines = table.splitlines()
    assert lines[1].split() == ["web1\\x1b[2J", "tcp", "0.0.0.0", "8080", "all", "IPv4", "www\\u202edata",
                                "\\x1b]0;pwned\\x07", "(20)", "evil\\r\\x1b[K.service"]
    assert lines[2].split()[2] == "[fe80::1]%eth0\\x9b31m" and lines[2].split()[-3] == "dh\\u2066client"
    column = lines[0].index("PORT")  # the escapes are what is aligned
    assert all(line[column - 2:column] == "  " and line[column] != " " for line in lines[1:3])
    assert lines[-1] == "db1: not discovered (ssh: \\x1b[31mfailed\\n)"


def test_listener_table_filter_escapes_too():
    table = listener_table({"h": [listener("tcp", "ipv4", "0.0.0.0", 22, processes=[proc(1, "a\x1bb", None)])]})
    assert "a\\x1bb (1)" in table and "\x1b" not in table
