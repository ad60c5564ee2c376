# Copyright (c) Portcullis contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import json
import sys

import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.portcullis.hardening.plugins.module_utils import _listeners
from ansible_collections.portcullis.hardening.plugins.modules import listening_ports

from ..module_utils.test_listeners import docker_host as proc_with_docker_proxy
from ..module_utils.test_published import capture_host


def run_module(capsys, args):
    with patch_module_args(args):
        with pytest.raises(SystemExit) as exit_info:
            listening_ports.main()
    return exit_info.value.code, json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("args, words", [
    ({"protocols": ["icmp"]}, ["protocols", "icmp"]),
    ({"families": ["ipv5"]}, ["families", "ipv5"]),
    ({"protocols": []}, ["protocols must name at least one of: tcp, udp"]),
    ({"families": []}, ["families must name at least one of: ipv4, ipv6"]),
    ({"protocol": ["tcp"]}, ["protocol"]),
])
def test_bad_options_fail_naming_the_option(capsys, args, words):
    code, result = run_module(capsys, args)
    assert code == 1 and result["failed"] is True
    for word in words:
        assert word in result["msg"]


def test_reads_this_machine_and_returns_the_list_once(capsys):
    code, result = run_module(capsys, {"protocols": ["tcp"], "_ansible_check_mode": True})
    assert code == 0 and result["changed"] is False
    assert "ansible_facts" not in result
    assert all(item["protocol"] == "tcp" for item in result["listeners"])
    assert result["scan"]["processes_scanned"] > 0


def test_as_facts_returns_the_same_list_as_the_fact_only(capsys):
    _code, plain = run_module(capsys, {"protocols": ["tcp"], "_ansible_check_mode": True})
    code, result = run_module(capsys, {"protocols": ["tcp"], "as_facts": True, "_ansible_check_mode": True})
    assert code == 0 and result["changed"] is False
    assert "listeners" not in result

    def ports(listeners):
        return sorted((item["family"], item["address"], item["port"], item["inode"]) for item in listeners)
    # The test process's own sockets do not change between the two runs.
    assert ports(result["ansible_facts"]["portcullis_listeners"]) == ports(plain["listeners"])


class FakeModule:
    """What run() uses of an AnsibleModule."""

    def __init__(self, run_command, **params):
        self.params = dict({"protocols": ["tcp", "udp"], "families": ["ipv4", "ipv6"], "as_facts": False,
                            "include_published": True}, **params)
        self.run_command = run_command
        self.warnings = []

    def warn(self, text):
        self.warnings.append(text)


@pytest.fixture
def docker_host(tmp_path, monkeypatch):
    """run() on a fake host with the published-port captures, its /proc a docker-proxy and an nginx."""
    if sys.byteorder != "little":
        pytest.skip("the /proc fixtures are little-endian kernel output")
    host, system = capture_host(tmp_path / "host")
    proc_root = proc_with_docker_proxy(tmp_path / "proc")
    real_discover = _listeners.discover
    monkeypatch.setattr(_listeners, "discover", lambda **options: real_discover(proc_root, **options))
    monkeypatch.setattr(listening_ports, "Host", lambda _run: host)
    return system


def test_returns_the_published_ports_and_the_listeners_flags(docker_host):
    result = listening_ports.run(FakeModule(docker_host))
    assert "ansible_facts" not in result
    assert [(item["port"], item["published"]) for item in result["listeners"]] == [
        (80, False), (8081, True), (8082, False)]
    assert [(item["protocol"], item["family"], item["port"]) for item in result["published"]] == [
        ("tcp", "ipv4", 3001), ("tcp", "ipv4", 8081), ("tcp", "ipv6", 8081), ("udp", "ipv4", 5300)]
    assert (result["published"][1]["proxy"], result["published"][3]["proxy"]) == (["0.0.0.0:8081"], [])
    assert result["published"][1]["container"]["name"] == "web"
    assert result["scan"]["published_notes"] == []


def test_as_facts_sets_portcullis_published(docker_host):
    plain = listening_ports.run(FakeModule(docker_host))
    result = listening_ports.run(FakeModule(docker_host, as_facts=True))
    assert "listeners" not in result and "published" not in result
    assert result["ansible_facts"] == {"portcullis_listeners": plain["listeners"],
                                       "portcullis_published": plain["published"]}


def test_include_published_false_reads_no_ruleset(docker_host):
    result = listening_ports.run(FakeModule(docker_host, include_published=False))
    assert result["published"] == [] and docker_host.calls == []
    assert [item["published"] for item in result["listeners"]] == [False, False, False]
