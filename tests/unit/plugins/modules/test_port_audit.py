# Copyright (c) Portcullis contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import json
import os
import socket

import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.portcullis.hardening.plugins.module_utils._specs import PORT_AUDIT_SPEC
from ansible_collections.portcullis.hardening.plugins.modules import port_audit
from ansible_collections.portcullis.hardening.plugins.plugin_utils._action import validated

from ..module_utils.fakehost import fake_host
from ..module_utils.test_published import NFT_RULESET, capture_host

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
                                      "bind": "loopback", "sources": [], "process": None, "published": False,
                                      "comment": None}
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


DOCKER_PROXY = {"pid": 900, "name": "docker-proxy", "unit": "docker.service", "cmdline": (
    "/usr/bin/docker-proxy -proto tcp -host-ip 0.0.0.0 -host-port 8081 -container-ip 172.17.0.2 -container-port 80")}
HOST_LISTENERS = [LISTENERS[0], {"protocol": "tcp", "address": "0.0.0.0", "port": 8081, "processes": [DOCKER_PROXY]}]


def audit(host, **args):
    return port_audit.run(validated(dict({"listeners": HOST_LISTENERS}, **args), PORT_AUDIT_SPEC), host)


def test_run_audits_the_published_ports(tmp_path):
    host, _system = capture_host(tmp_path)
    result, notes = audit(host, allowlist=[{"port": 22}])
    assert notes == [] and result["compliant"] is False
    assert [(item["protocol"], item["family"], item["port"]) for item in result["published"]] == [
        ("tcp", "ipv4", 3001), ("tcp", "ipv4", 8081), ("tcp", "ipv6", 8081), ("udp", "ipv4", 5300)]
    # The docker-proxy socket is the published port 8081, not an unexpected listener of its own.
    assert [item["published"] for item in result["listeners"]] == [False, True]
    assert [(item["kind"], item["severity"], item["family"], item["port"]) for item in result["findings"]] == [
        ("unexpected_published_port", "high", "ipv4", 3001),
        ("unexpected_published_port", "high", "ipv4", 8081),
        ("unexpected_published_port", "high", "ipv6", 8081),
        ("unexpected_published_port", "info", "ipv4", 5300),
    ]
    assert "re-create docker container web without -p 8081:80" in result["findings"][1]["remediation"]


def test_run_with_the_published_ports_allowed_is_compliant(tmp_path):
    host, _system = capture_host(tmp_path)
    result, _notes = audit(host, allowlist=[{"port": 22}, {"port": 3001, "published": True}, {"port": 8081}])
    assert result["compliant"] is True
    assert [(item["kind"], item["port"]) for item in result["findings"]] == [("unexpected_published_port", 5300)]
    assert result["allowlist"][1]["published"] is True


def test_run_returns_the_notes_of_what_it_could_not_read(tmp_path):
    host, system = fake_host(tmp_path)
    system.respond(NFT_RULESET, rc=1, err="Error: Operation not permitted\n")
    result, notes = audit(host, allowlist=[{"port": 22}])
    assert notes == ["published ports were not read: nft -j list ruleset failed (rc=1): Error: Operation not permitted"]
    assert result["published"] == []
    assert [(item["kind"], item["port"]) for item in result["findings"]] == [("unexpected_listener", 8081)]


def test_run_reads_the_ruleset_once_for_the_published_ports_and_the_filters(tmp_path):
    host, system = capture_host(tmp_path)
    audit(host, allowlist=[{"port": 22}])
    assert system.calls.count(["nft", "-j", "list", "ruleset"]) == 1


def test_run_without_published_says_when_the_filters_were_not_judged(tmp_path):
    host, system = fake_host(tmp_path)
    system.respond(NFT_RULESET, rc=1, err="Error: Operation not permitted\n")
    _result, notes = audit(host, allowlist=[{"port": 22}], include_published=False)
    assert notes == ["the filters were not judged: nft -j list ruleset failed (rc=1): Error: Operation not permitted"]


def test_run_without_published_reads_the_ruleset_for_the_filters_only(tmp_path):
    host, system = capture_host(tmp_path)
    result, notes = audit(host, allowlist=[{"port": 22}], include_published=False)
    assert (result["published"], notes, system.calls) == ([], [], [["nft", "-j", "list", "ruleset"]])
    assert [item["published"] for item in result["listeners"]] == [False, False]
    assert [(item["kind"], item["port"]) for item in result["findings"]] == [("unexpected_listener", 8081)]
