# Copyright (c) Portcullis contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Moving sshd to another port, host side: the pure helpers, and the `plan` step on a fake host (commands
answered like Debian's, configuration files in memory, a fixture /proc with listening sockets)."""

from __future__ import annotations

import fnmatch
import os
import sys

import pytest

from ansible_collections.portcullis.hardening.plugins.module_utils import _ssh_port
from ansible_collections.portcullis.hardening.plugins.module_utils._allowlist import parse_allowlist
from ansible_collections.portcullis.hardening.plugins.module_utils._nftables import render_table
from ansible_collections.portcullis.hardening.plugins.module_utils._ssh_port import (
    EPHEMERAL_RANGE,
    SELINUX_ENFORCE,
    SSHD,
    SshHost,
    SshPortError,
    expected_addresses,
    plan,
    result_json,
    rollback_restart_commands,
    restart_commands,
)
from ansible_collections.portcullis.hardening.plugins.module_utils._sshd import (
    BLOCK_BEGIN,
    SOCKET_DROP_IN,
    SSHD_CONFIG,
    SshdConfigError,
    socket_drop_in,
)

from .fakeproc import FakeProc

OWN_DROP_IN = "/etc/ssh/sshd_config.d/portcullis-ssh-port.conf"
ABSENT = (1, "", "Error: No such file or directory\nlist table inet portcullis\n                ^^^^^^^^^^\n")
SOCKET_OFF = "ActiveState=inactive\nAccept=no\nListen=[::]:22 (Stream)\nLoadState=loaded\n"
SOCKET_ON = "ActiveState=active\nAccept=no\nListen=[::]:22 (Stream)\nLoadState=loaded\n"
DEBIAN_CONFIG = "Include /etc/ssh/sshd_config.d/*.conf\n#Port 22\nUsePAM yes\n"

SOCKET = {"active": True, "accept": False, "listens": [("[::]:22", "Stream")]}
SOCKET_PER_CONNECTION = {"active": True, "accept": True, "listens": [("[::]:22", "Stream")]}
NO_SOCKET = {"active": False, "accept": False, "listens": []}


# --- restart commands ----------------------------------------------------------------------------------

def test_restart_commands_plain_service_reloads():
    assert restart_commands(NO_SOCKET, "sshd.service") == [["systemctl", "reload", "sshd.service"]]


def test_restart_commands_socket_accept_no_stops_and_starts_both():
    assert restart_commands(SOCKET, "ssh.service") == [
        ["systemctl", "daemon-reload"],
        ["systemctl", "stop", "ssh.socket"],
        ["systemctl", "stop", "ssh.service"],
        ["systemctl", "start", "ssh.socket"],
        ["systemctl", "start", "ssh.service"],
    ]


def test_restart_commands_socket_accept_yes_restarts_the_socket():
    assert restart_commands(SOCKET_PER_CONNECTION, "ssh.service") == [
        ["systemctl", "daemon-reload"], ["systemctl", "restart", "ssh.socket"]]


def test_rollback_restart_commands_restart_a_plain_service():
    assert rollback_restart_commands(NO_SOCKET, "ssh.service") == [
        ["systemctl", "daemon-reload"], ["systemctl", "restart", "ssh.service"]]


@pytest.mark.parametrize("socket", [SOCKET, SOCKET_PER_CONNECTION])
def test_rollback_restart_commands_socket_same_as_forward(socket):
    assert rollback_restart_commands(socket, "ssh.service") == restart_commands(socket, "ssh.service")
    assert ["systemctl", "daemon-reload"] in rollback_restart_commands(socket, "ssh.service")


# --- expected addresses --------------------------------------------------------------------------------

def test_expected_addresses_every_address_of_a_moved_port_on_the_new_one():
    before = ["0.0.0.0:22", "[::]:22", "127.0.0.1:2200", "[2001:db8::10]:22"]
    assert expected_addresses(before, [22], 2222, None) == ["0.0.0.0:2222", "[2001:db8::10]:2222", "[::]:2222"]
    assert expected_addresses(before, [22, 2200], 2222, None) == [
        "0.0.0.0:2222", "127.0.0.1:2222", "[2001:db8::10]:2222", "[::]:2222"]


def test_expected_addresses_none_when_the_operator_chose_them():
    assert expected_addresses(["0.0.0.0:22", "[::]:22"], [22], 2222, ["192.0.2.10"]) == []


def test_expected_addresses_nothing_moved():
    assert expected_addresses(["0.0.0.0:2222"], [], 2222, None) == []
    assert expected_addresses([], [22], 2222, None) == []


# --- plan on a fake host -------------------------------------------------------------------------------

little_endian = pytest.mark.skipif(sys.byteorder != "little", reason="fixture /proc is little-endian kernel output")


class FakeHost:
    """Answers the commands plan() runs; fails the test on any other command (plan changes nothing)."""

    def __init__(self, socket=SOCKET_OFF, sshd_t=(0, "", ""), table=None, semanage=None):
        self.calls = []
        self.socket = socket
        self.sshd_t = sshd_t
        self.table = table
        self.semanage = semanage

    def __call__(self, argv):
        argv = list(argv)
        self.calls.append(argv)
        if argv[:2] == ["systemctl", "show"]:
            if argv[2] == "ssh.socket":
                return 0, self.socket, ""
            if argv[2] == "ssh.service":
                return 0, "LoadState=loaded\nId=ssh.service\n", ""
            return 0, "LoadState=not-found\nId=%s\n" % argv[2], ""
        if argv[0] == SSHD and "-t" in argv:
            return self.sshd_t
        if argv[:5] == ["nft", "-j", "list", "table", "inet"]:
            return (0, '{"nftables": []}', "") if self.table else ABSENT
        if argv[:4] == ["nft", "list", "table", "inet"]:
            return (0, self.table, "") if self.table else ABSENT
        if argv[:2] == ["semanage", "port"]:
            return (0, self.semanage, "") if self.semanage is not None else (127, "", "semanage: command not found")
        raise AssertionError("plan ran an unexpected command: %r" % argv)


@pytest.fixture(autouse=True)
def no_run_sshd(monkeypatch):
    """test_config() creates /run/sshd when it is missing: not on the machine that runs the tests."""
    made = []
    real = os.makedirs

    def makedirs(path, *args, **kwargs):
        if path == "/run/sshd":
            made.append(path)
            return None
        return real(path, *args, **kwargs)

    monkeypatch.setattr(os, "makedirs", makedirs)
    return made


def proc_tree(tmp_path, sshd_ports=(22,), others=(), socket_activated=False):
    """A /proc where sshd (or systemd, under socket activation) listens on 0.0.0.0 and [::] on each port,
    and each (name, pid, port) of `others` listens on 0.0.0.0:port."""
    proc = FakeProc(tmp_path / "proc")
    inodes = []
    for number, port in enumerate(sshd_ports):
        proc.socket("tcp", "00000000:%04X" % port, "0A", inode=100 + 2 * number)
        proc.socket("tcp6", "00000000000000000000000000000000:%04X" % port, "0A", inode=101 + 2 * number)
        inodes.extend([100 + 2 * number, 101 + 2 * number])
    if socket_activated:
        proc.process(1, "systemd", inodes, cgroup="0::/init.scope\n")
    else:
        proc.process(1, "systemd", [], cgroup="0::/init.scope\n")
        proc.process(400, "sshd", inodes, cgroup="0::/system.slice/ssh.service\n")
    for number, (name, pid, port) in enumerate(others):
        proc.socket("tcp", "00000000:%04X" % port, "0A", inode=500 + number)
        proc.process(pid, name, [500 + number])
    return proc.flush()


def make_host(tmp_path, files=None, run=None, **proc):
    files = dict({SSHD_CONFIG: DEBIAN_CONFIG, EPHEMERAL_RANGE: "32768\t60999\n"}, **(files or {}))
    run = run or FakeHost()

    def expand(pattern):
        directory, _sep, name = pattern.rpartition("/")
        return sorted(path for path in files if files[path] is not None and path.rpartition("/")[0] == directory
                      and fnmatch.fnmatchcase(path.rpartition("/")[2], name))

    host = SshHost(run, read=files.get, expand=expand, proc_root=proc_tree(tmp_path, **proc),
                   sleep=lambda seconds: None)
    return host, run


def params(**overrides):
    return dict({"port": 2222, "listen_addresses": None, "manage_firewall": None, "selinux": "auto",
                 "confirm_timeout": 120}, **overrides)


@little_endian
def test_plan_debian_from_22_to_2222(tmp_path, no_run_sshd):
    host, run = make_host(tmp_path)
    result = plan(host, params())
    assert result["changed"] is True
    assert (result["port"], result["ports_before"], result["moved_ports"]) == (2222, [22], [22])
    assert result["socket_activated"] is False
    assert result["service"] == "ssh.service"
    assert result["listening_before"] == ["0.0.0.0:22", "[::]:22"]
    assert result["warnings"] == []
    assert result["firewall"] == {"managed": False, "rules_moved": 0}
    assert result["selinux"] == {"mode": "disabled", "type_before": None, "commands": []}
    steps = result["_plan"]
    assert sorted(steps["final_edits"]) == [OWN_DROP_IN]
    assert steps["final_edits"][OWN_DROP_IN].endswith("\nPort 2222\n")
    assert steps["transition_edits"][OWN_DROP_IN].endswith("\nPort 22\nPort 2222\n")
    assert steps["socket_final"] is None
    assert [item["before_header"] for item in result["diff"]] == [OWN_DROP_IN]
    assert [SSHD, "-t", "-f", SSHD_CONFIG] in run.calls
    assert no_run_sshd == ([] if os.path.isdir("/run/sshd") else ["/run/sshd"])
    assert "_plan" not in result_json(result)
    assert result_json(result)["moved_ports"] == [22]


@little_endian
def test_plan_port_taken_by_another_process_names_it(tmp_path):
    host, _run = make_host(tmp_path, others=[("python3", 500, 2222)])
    with pytest.raises(SshPortError) as error:
        plan(host, params())
    assert str(error.value) == ("plan: port 2222/tcp is already taken by python3[500] on 0.0.0.0:2222; "
                                "choose another port (nothing was changed)")


@little_endian
def test_plan_port_held_by_sshd_itself_is_no_conflict(tmp_path):
    host, _run = make_host(tmp_path, sshd_ports=(22, 2222))
    result = plan(host, params())
    assert result["moved_ports"] == [22]
    assert result["ports_before"] == [22, 2222]


@little_endian
def test_plan_port_in_the_ephemeral_range_warns(tmp_path):
    host, _run = make_host(tmp_path)
    result = plan(host, params(port=40000))
    assert len(result["warnings"]) == 1
    assert result["warnings"][0].startswith("port 40000 is inside the kernel's ephemeral port range 32768-60999")


@little_endian
def test_plan_port_outside_the_ephemeral_range_or_range_unreadable_does_not_warn(tmp_path):
    host, _run = make_host(tmp_path, files={EPHEMERAL_RANGE: None})
    assert plan(host, params(port=40000))["warnings"] == []
    host, _run = make_host(tmp_path / "other")
    assert plan(host, params(port=61000))["warnings"] == []


@little_endian
def test_plan_nothing_to_do_when_already_moved(tmp_path):
    files = {OWN_DROP_IN: "# Managed by portcullis.hardening.ssh_port: the port(s) sshd listens on. "
                          "Changes here are overwritten.\nPort 2222\n"}
    host, _run = make_host(tmp_path, files=files, sshd_ports=(2222,))
    result = plan(host, params())
    assert result["changed"] is False
    assert result["moved_ports"] == []
    assert result["_plan"]["final_edits"] == {} and result["diff"] == []


@little_endian
def test_plan_config_moved_but_sshd_not_reloaded_yet_needs_a_restart(tmp_path):
    files = {OWN_DROP_IN: "# Managed by portcullis.hardening.ssh_port: the port(s) sshd listens on. "
                          "Changes here are overwritten.\nPort 2222\n"}
    host, _run = make_host(tmp_path, files=files)
    result = plan(host, params())
    assert result["changed"] is True
    assert result["_plan"]["final_edits"] == {}
    assert result["moved_ports"] == [22]


@little_endian
def test_plan_without_include_uses_the_block(tmp_path):
    host, _run = make_host(tmp_path, files={SSHD_CONFIG: "Port 22\nUsePAM yes\n"})
    result = plan(host, params())
    final = result["_plan"]["final_edits"]
    assert list(final) == [SSHD_CONFIG]
    assert BLOCK_BEGIN + "\nPort 2222\n" in final[SSHD_CONFIG]


@little_endian
def test_plan_sshd_t_failure_stops_it(tmp_path):
    host, _run = make_host(tmp_path, run=FakeHost(sshd_t=(255, "", "/etc/ssh/sshd_config line 3: bad\r\n")))
    with pytest.raises(SshPortError, match=r"sshd -t rejects the configuration \(rc=255\): "
                                           r"/etc/ssh/sshd_config line 3: bad$"):
        plan(host, params())


@little_endian
def test_plan_bad_port_line_is_an_error(tmp_path):
    host, _run = make_host(tmp_path, files={SSHD_CONFIG: "Port twenty-two\n"})
    with pytest.raises(SshdConfigError, match="^/etc/ssh/sshd_config:1: Port 'twenty-two'"):
        plan(host, params())


@little_endian
def test_plan_moves_the_firewall_management_port(tmp_path):
    rules = parse_allowlist([{"port": 80}])
    host, _run = make_host(tmp_path, run=FakeHost(table=render_table(rules, management_ports=[22])))
    result = plan(host, params())
    assert result["firewall"] == {"managed": True, "rules_moved": 1}
    firewall = result["_plan"]["firewall"]
    assert firewall["final"] == render_table(rules, management_ports=[2222])
    assert firewall["transition"] == render_table(rules, management_ports=[22, 2222])
    assert "nft list table inet portcullis" in [item["before_header"] for item in result["diff"]]
    assert result["warnings"] == []


@little_endian
def test_plan_warns_about_a_range_rule_that_keeps_the_old_port_open(tmp_path):
    rules = parse_allowlist([{"port": "20-30", "comment": "legacy"}])
    host, _run = make_host(tmp_path, run=FakeHost(table=render_table(rules, management_ports=[22])))
    result = plan(host, params())
    assert len(result["warnings"]) == 1
    assert "still opens the old port 22/tcp" in result["warnings"][0]
    assert 'tcp dport 20-30 accept comment "allowlist[0]: legacy"' in result["warnings"][0]


@little_endian
def test_plan_manage_firewall_true_without_a_table_warns(tmp_path):
    host, _run = make_host(tmp_path)
    result = plan(host, params(manage_firewall=True))
    assert result["firewall"] == {"managed": False, "rules_moved": 0}
    assert any("no Portcullis firewall table" in warning for warning in result["warnings"])


@little_endian
def test_plan_manage_firewall_false_does_not_read_the_table(tmp_path):
    host, run = make_host(tmp_path, run=FakeHost(table=render_table([], management_ports=[22])))
    result = plan(host, params(manage_firewall=False))
    assert result["firewall"] == {"managed": False, "rules_moved": 0}
    assert not [argv for argv in run.calls if argv[0] == "nft"]


@little_endian
def test_plan_socket_activated(tmp_path):
    host, _run = make_host(tmp_path, run=FakeHost(socket=SOCKET_ON), socket_activated=True)
    result = plan(host, params())
    assert result["socket_activated"] is True
    assert result["listening_before"] == ["0.0.0.0:22", "[::]:22"]  # systemd holds the socket for sshd
    assert result["moved_ports"] == [22]
    steps = result["_plan"]
    assert steps["socket_final"] == socket_drop_in([("[::]:2222", "Stream")])
    assert steps["socket_transition"] == socket_drop_in([("[::]:22", "Stream"), ("[::]:2222", "Stream")])
    assert SOCKET_DROP_IN in [item["before_header"] for item in result["diff"]]


SEMANAGE = ("ssh_port_t                     tcp      22\n"
            "http_port_t                    tcp      80, 81, 443, 488, 8008, 8009, 8443, 9000\n")


@little_endian
def test_plan_selinux_enforcing_labels_the_port(tmp_path):
    host, _run = make_host(tmp_path, files={SELINUX_ENFORCE: "1\n"}, run=FakeHost(semanage=SEMANAGE))
    result = plan(host, params())
    assert result["selinux"] == {"mode": "enforcing", "type_before": None, "commands": [
        ["semanage", "port", "-a", "-t", "ssh_port_t", "-p", "tcp", "2222"]]}
    assert result["_plan"]["selinux"]["undo"] == [["semanage", "port", "-d", "-t", "ssh_port_t", "-p", "tcp", "2222"]]


@little_endian
def test_plan_selinux_port_with_its_own_record_of_another_type_is_modified(tmp_path):
    host, _run = make_host(tmp_path, files={SELINUX_ENFORCE: "1\n"}, run=FakeHost(semanage=SEMANAGE))
    result = plan(host, params(port=8008))
    assert result["selinux"]["type_before"] == "http_port_t"
    assert result["selinux"]["commands"] == [["semanage", "port", "-m", "-t", "ssh_port_t", "-p", "tcp", "8008"]]


@little_endian
def test_plan_selinux_port_inside_a_policy_range_is_added(tmp_path):
    semanage = SEMANAGE + "unreserved_port_t              tcp      61000-65535, 1024-32767\n"
    host, _run = make_host(tmp_path, files={SELINUX_ENFORCE: "1\n"}, run=FakeHost(semanage=semanage))
    result = plan(host, params())
    assert result["selinux"]["commands"] == [["semanage", "port", "-a", "-t", "ssh_port_t", "-p", "tcp", "2222"]]


@little_endian
def test_plan_selinux_disabled_runs_no_semanage(tmp_path):
    host, run = make_host(tmp_path)
    assert plan(host, params(selinux="auto"))["selinux"]["commands"] == []
    assert not [argv for argv in run.calls if argv[0] == "semanage"]


@little_endian
def test_plan_selinux_true_without_semanage_fails(tmp_path):
    host, _run = make_host(tmp_path)
    with pytest.raises(SshPortError, match=r"selinux=true but `semanage port -l` failed \(rc=127\): semanage: "
                                           "command not found. Install policycoreutils-python-utils"):
        plan(host, params(selinux="true"))


# --- what sshd listens on ------------------------------------------------------------------------------

@little_endian
def test_sshd_listening_and_port_holders(tmp_path):
    host, _run = make_host(tmp_path, others=[("nginx", 600, 8080), ("python3", 601, 22)])
    assert host.sshd_listening() == [("0.0.0.0:22", 22), ("[::]:22", 22)]
    assert host.port_holders(8080) == ["nginx[600] on 0.0.0.0:8080"]
    assert host.port_holders(2222) == []


@little_endian
def test_socket_held_by_systemd_counts_as_sshd_only_on_the_socket_ports(tmp_path):
    host, _run = make_host(tmp_path, socket_activated=True)
    assert host.sshd_listening() == []
    assert host.sshd_listening([22]) == [("0.0.0.0:22", 22), ("[::]:22", 22)]
    assert host.port_holders(22, [22]) == []
    assert host.port_holders(22) == ["systemd[1] on 0.0.0.0:22", "systemd[1] on [::]:22"]


@little_endian
def test_wait_listening_returns_the_addresses(tmp_path):
    host, _run = make_host(tmp_path, sshd_ports=(22, 2222))
    assert host.wait_listening([2222], [], "step") == ["0.0.0.0:22", "0.0.0.0:2222", "[::]:22", "[::]:2222"]


@little_endian
def test_wait_listening_gives_up_and_says_what_it_sees(tmp_path, monkeypatch):
    monkeypatch.setattr(_ssh_port, "LISTEN_WAIT_SECONDS", 0)
    host, _run = make_host(tmp_path, sshd_ports=(22,))
    with pytest.raises(SshPortError, match=r"^finalize: after 0 s sshd listens on 0.0.0.0:22, \[::\]:22, "
                                           r"not on port\(s\) 2222 without 22"):
        host.wait_listening([2222], [22], "finalize")


@little_endian
def test_wait_listening_waits_for_every_address_it_listened_on_before(tmp_path, monkeypatch):
    monkeypatch.setattr(_ssh_port, "LISTEN_WAIT_SECONDS", 0)
    host, _run = make_host(tmp_path, sshd_ports=(2222,))
    assert host.wait_listening([2222], [22], "finalize", wanted_addresses=["0.0.0.0:2222", "[::]:2222"]) == [
        "0.0.0.0:2222", "[::]:2222"]
    with pytest.raises(SshPortError, match=r"\(it no longer listens on \[2001:db8::10\]:2222, as it did before\)$"):
        host.wait_listening([2222], [22], "finalize", wanted_addresses=["0.0.0.0:2222", "[2001:db8::10]:2222"])
