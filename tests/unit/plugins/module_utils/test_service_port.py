# Copyright (c) Portcullis contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Moving a service's port, host side: the config line edit, the restart commands, and `plan` on a fake host
(commands answered like Debian's, files in memory, a fixture /proc with the service's listening socket)."""

from __future__ import annotations

import sys

import pytest

from ansible_collections.portcullis.hardening.plugins.module_utils._allowlist import parse_allowlist
from ansible_collections.portcullis.hardening.plugins.module_utils._nftables import render_table
from ansible_collections.portcullis.hardening.plugins.module_utils._service_port import (
    ServiceHost,
    ServicePortError,
    edit_config,
    plan,
    restart_commands,
    socket_drop_in_path,
)

from .fakeproc import FakeProc

little_endian = pytest.mark.skipif(sys.byteorder != "little", reason="fixture /proc is little-endian kernel output")
ABSENT = (1, "", "Error: No such file or directory\nlist table inet portcullis\n                ^^^^^^^^^^\n")
CONFIG = "/etc/default/web"
WEB = "web.service"


def test_edit_config_replaces_every_matching_line_and_keeps_the_rest():
    text = "# web\nPORT=8080\nWORKERS=2\nPORT=8080 # again\n"
    new, count = edit_config(text, r"^PORT=", "PORT=8081", CONFIG)
    assert (new, count) == ("# web\nPORT=8081\nWORKERS=2\nPORT=8081\n", 2)
    assert edit_config("PORT=8080", r"^PORT=", "PORT=8081", CONFIG) == ("PORT=8081", 1)  # no newline added


def test_edit_config_names_the_regexp_and_the_file_when_nothing_matches():
    with pytest.raises(ServicePortError, match=r"regexp: '\^LISTEN' matches no line of /etc/default/web"):
        edit_config("PORT=8080\n", r"^LISTEN", "LISTEN 8081", CONFIG)
    with pytest.raises(ServicePortError, match=r"regexp: '\(' is not a valid regular expression"):
        edit_config("PORT=8080\n", r"(", "x", CONFIG)


def test_restart_commands():
    base = {"service": WEB, "socket_unit": None, "restart": "restarted"}
    assert restart_commands(base) == [["systemctl", "daemon-reload"], ["systemctl", "restart", WEB]]
    assert restart_commands(dict(base, restart="reloaded"))[-1] == ["systemctl", "reload", WEB]
    assert restart_commands(dict(base, socket_unit="web.socket")) == [
        ["systemctl", "daemon-reload"], ["systemctl", "stop", "web.socket"], ["systemctl", "stop", WEB],
        ["systemctl", "start", "web.socket"], ["systemctl", "start", WEB]]
    assert socket_drop_in_path("web.socket") == "/etc/systemd/system/web.socket.d/portcullis-service-port.conf"


class Commands:
    """Answers what plan() runs; any other command fails the test (plan changes nothing)."""

    def __init__(self, table=None, listen="Listen=[::]:8080 (Stream)\n"):
        self.table = table
        self.listen = listen

    def __call__(self, argv):
        if argv[:2] == ["systemctl", "show"]:
            return 0, self.listen + "LoadState=loaded\n", ""
        if argv[:5] == ["nft", "-j", "list", "table", "inet"]:
            return (0, '{"nftables": []}', "") if self.table else ABSENT
        if argv[:4] == ["nft", "list", "table", "inet"]:
            return (0, self.table, "") if self.table else ABSENT
        raise AssertionError("plan ran an unexpected command: %r" % argv)


def make_host(tmp_path, web_port=8080, others=(), files=None, commands=None):
    proc = FakeProc(tmp_path / "proc")
    proc.socket("tcp", "00000000:%04X" % web_port, "0A", inode=100)
    proc.process(300, "web", [100], cgroup="0::/system.slice/web.service\n")
    for number, (name, pid, port) in enumerate(others):
        proc.socket("tcp", "00000000:%04X" % port, "0A", inode=500 + number)
        proc.process(pid, name, [500 + number])
    files = dict({CONFIG: "PORT=%d\n" % web_port}, **(files or {}))
    return ServiceHost(commands or Commands(), read=files.get, proc_root=proc.flush())


def params(**overrides):
    return dict({"service": WEB, "port": 8081, "previous_port": None, "path": CONFIG, "regexp": "^PORT=",
                 "line": "PORT=8081", "socket_unit": None, "manage_firewall": None, "restart": "restarted"},
                **overrides)


@little_endian
def test_plan_finds_the_old_port_and_shows_the_edit(tmp_path):
    result = plan(make_host(tmp_path), params())
    assert result["changed"] and result["previous_port"] == 8080
    assert result["listening_before"] == ["0.0.0.0:8080"]
    assert result["diff"] == [{"before_header": CONFIG, "after_header": CONFIG, "before": "PORT=8080\n",
                               "after": "PORT=8081\n"}]
    assert result["_plan"]["edits"] == {CONFIG: "PORT=8081\n"}
    assert result["firewall"]["managed"] is False


@little_endian
def test_plan_done_already_changes_nothing(tmp_path):
    result = plan(make_host(tmp_path, web_port=8081, files={CONFIG: "PORT=8081\n"}), params())
    assert not result["changed"] and result["diff"] == []


@little_endian
def test_plan_refuses_a_port_another_process_holds(tmp_path):
    with pytest.raises(ServicePortError, match=r"port 8081/tcp is already taken by cache\[77\] on 0\.0\.0\.0:8081 "
                                               r"\(nothing was changed\)"):
        plan(make_host(tmp_path, others=[("cache", 77, 8081)]), params())


@little_endian
def test_plan_moves_the_allowlist_rule_with_its_sources(tmp_path):
    rules = parse_allowlist([{"port": 22}, {"port": 8080, "sources": ["10.0.0.0/8"]}])
    table = render_table(rules, "drop", [])
    result = plan(make_host(tmp_path, commands=Commands(table=table)), params())
    final = result["_plan"]["firewall"]["final"]
    assert result["firewall"] == {"managed": True, "rules_moved": 1}
    assert "ip saddr 10.0.0.0/8 tcp dport 8081 accept" in final and "dport 8080" not in final


@little_endian
def test_plan_leaves_the_firewall_when_no_rule_opened_the_old_port(tmp_path):
    table = render_table(parse_allowlist([{"port": 22}]), "drop", [])
    result = plan(make_host(tmp_path, commands=Commands(table=table)), params())
    assert result["_plan"]["firewall"]["final"] is None


@little_endian
def test_plan_socket_unit_writes_a_listen_stream_drop_in(tmp_path):
    result = plan(make_host(tmp_path), params(path=None, regexp=None, line=None, socket_unit="web.socket"))
    drop_in = result["_plan"]["edits"][socket_drop_in_path("web.socket")]
    assert drop_in.splitlines()[2:] == ["[Socket]", "ListenStream=", "ListenStream=[::]:8081"]


@little_endian
def test_plan_missing_file_names_the_path(tmp_path):
    with pytest.raises(ServicePortError, match="path: /etc/default/missing does not exist on the host"):
        plan(make_host(tmp_path), params(path="/etc/default/missing"))
