# Copyright (c) Portcullis contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import json

import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.portcullis.hardening.plugins.modules import listening_ports


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
