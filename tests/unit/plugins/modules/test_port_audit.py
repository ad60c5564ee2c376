# Copyright (c) Portcullis contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import json
import os
import socket

import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.portcullis.hardening.plugins.modules import port_audit

LISTENERS = [
    {"protocol": "tcp", "family": "ipv4", "address": "0.0.0.0", "port": 22, "loopback": False, "wildcard": True,
     "processes": [{"pid": 1, "name": "sshd", "unit": "ssh.service", "cmdline": "sshd"}]},
    {"protocol": "tcp", "address": "0.0.0.0", "port": 3306},
]


def run_module(capsys, args):
    with patch_module_args(args):
        with pytest.raises(SystemExit) as exit_info:
            port_audit.main()
    return exit_info.value.code, json.loads(capsys.readouterr().out)


def test_audits_given_listeners(capsys):
    allowlist = [{"port": 22, "process": "sshd"}, {"port": 3306, "bind": "loopback"}]
    code, result = run_module(capsys, {"allowlist": allowlist, "listeners": LISTENERS, "_ansible_check_mode": True})
    assert code == 0 and result["changed"] is False and result["compliant"] is False
    assert [(f["kind"], f["port"], f["rule"]) for f in result["findings"]] == [("wider_bind_than_allowed", 3306, 1)]
    assert result["allowlist"][1] == {"index": 1, "port": 3306, "protocol": "tcp", "family": "any",
                                      "bind": "loopback", "sources": [], "process": None, "comment": None}
    assert result["listeners"][1]["wildcard"] is True and result["probe"] is None


def test_discovers_when_no_listeners_are_given(capsys):
    with socket.socket() as server:  # a listener of this test's own, so the audit always has one to find
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        code, result = run_module(capsys, {"allowlist": [], "include_loopback": True})
    assert code == 0
    assert len(result["findings"]) == len(result["listeners"])  # nothing is allowed: every listener is a finding
    assert all(f["kind"] == "unexpected_listener" and f["severity"] != "info" for f in result["findings"])
    own = [f for f in result["findings"] if f["port"] == port and f["address"] == "127.0.0.1"]
    assert [(f["severity"], f["processes"][0]["pid"]) for f in own] == [("low", os.getpid())]


@pytest.mark.parametrize("args, message", [
    ({"allowlist": [{"port": "100-90"}]}, "allowlist[0].port: '100-90' is a range whose start is above its end"),
    ({"allowlist": [{"port": 22, "sources": ["10.0.0.1/8"]}]},
     "allowlist[0].sources[0]: '10.0.0.1/8' has host bits set; the network is 10.0.0.0/8"),
    ({"listeners": [{"protocol": "tcp", "port": 1}]}, "listeners[0].address: is required"),
])
def test_bad_input_fails_naming_the_field(capsys, args, message):
    code, result = run_module(capsys, args)
    assert code == 1 and result["msg"] == message
