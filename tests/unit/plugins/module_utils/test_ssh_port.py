# Copyright (c) Portcullis contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Moving sshd to another port, host side: the pure helpers, then every step (plan, transition, finalize, commit,
rollback) on a fake Debian host: real files under a temporary root (fakehost.py), the rollback script run for
real, the nft model, and a fixture /proc where sshd listens on the ports its configuration sets once it was
reloaded (or, under socket activation, systemd on the ports of the ssh.socket drop-in)."""

from __future__ import annotations

import glob
import os
import re
import shutil
import sys

import pytest

from ansible_collections.portcullis.hardening.plugins.module_utils import _move
from ansible_collections.portcullis.hardening.plugins.module_utils._allowlist import parse_allowlist
from ansible_collections.portcullis.hardening.plugins.module_utils._firewall import PERSIST_FILE, STATE_FILE
from ansible_collections.portcullis.hardening.plugins.module_utils._move import MoveError
from ansible_collections.portcullis.hardening.plugins.module_utils._nftables import apply_script, render_table
from ansible_collections.portcullis.hardening.plugins.module_utils._ssh_port import (
    EPHEMERAL_RANGE,
    PRIVSEP_DIR,
    SELINUX_ENFORCE,
    SSHD,
    SshHost,
    SshPortError,
    commit,
    expected_addresses,
    finalize,
    plan,
    result_json,
    rollback,
    rollback_restart_commands,
    restart_commands,
    transition,
)
from ansible_collections.portcullis.hardening.plugins.module_utils._sshd import (
    BLOCK_BEGIN,
    SOCKET_DROP_IN,
    SSHD_CONFIG,
    SshdConfigError,
    socket_drop_in,
)
from ansible_collections.portcullis.hardening.plugins.module_utils._transaction import (
    ARMED,
    BOOT_UNIT_PATH,
    RUN_DIR,
    STATE_DIR,
    ChangePending,
    RolledBack,
    TransactionError,
)

from .fakehost import fake_host, host_file, read_host_file, tree, write_host_file
from .fakeproc import FakeProc

OWN_DROP_IN = "/etc/ssh/sshd_config.d/portcullis-ssh-port.conf"
OWN_DROP_IN_TEXT = ("# Managed by portcullis.hardening.ssh_port: the port(s) sshd listens on. "
                    "Changes here are overwritten.\nPort 2222\n")
SOCKET_OFF = "ActiveState=inactive\nAccept=no\nListen=[::]:22 (Stream)\nLoadState=loaded\n"
SOCKET_ON = "ActiveState=active\nAccept=no\nListen=[::]:22 (Stream)\nLoadState=loaded\n"
DEBIAN_CONFIG = "Include /etc/ssh/sshd_config.d/*.conf\n#Port 22\nUsePAM yes\n"
NFTABLES_UNIT = ("LoadState=loaded\nExecStart={ path=/usr/sbin/nft ; argv[]=/usr/sbin/nft -f /etc/nftables.conf ; "
                 "ignore_errors=no }\n")
NFTABLES_CONF = "#!/usr/sbin/nft -f\nflush ruleset\n"
TOKEN = "0123456789ab"
RULES = parse_allowlist([{"port": 80}])
TABLE_22 = render_table(RULES, management_ports=[22])
TABLE_BOTH = render_table(RULES, management_ports=[22, 2222])
TABLE_2222 = render_table(RULES, management_ports=[2222])
# What a move leaves on the host whatever happens: the engine's state and lock, its boot unit; /run/sshd.
ENGINE_PATHS = (STATE_DIR, RUN_DIR, BOOT_UNIT_PATH)
SEMANAGE = ("ssh_port_t                     tcp      22\n"
            "http_port_t                    tcp      80, 81, 443, 488, 8008, 8009, 8443, 9000\n")

SOCKET = {"active": True, "accept": False, "listens": [("[::]:22", "Stream")]}
SOCKET_PER_CONNECTION = {"active": True, "accept": True, "listens": [("[::]:22", "Stream")]}
NO_SOCKET = {"active": False, "accept": False, "listens": []}

little_endian = pytest.mark.skipif(sys.byteorder != "little", reason="fixture /proc is little-endian kernel output")


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


# --- the fake host -------------------------------------------------------------------------------------

class Sshd:
    """A Debian host: sshd run by ssh.service (or, socket_activated, ssh.socket), its configuration files under
    a temporary root, and a /proc beside it where sshd listens on 0.0.0.0 and [::] on each port it was last
    reloaded with. `others` are (name, pid, port, process options) listening on 0.0.0.0:port."""

    def __init__(self, root, files=None, table=None, sshd_ports=(22,), others=(), socket_activated=False,
                 check_mode=False, semanage=None, privsep=True, persisted=False):
        self.root = str(root / "host")
        self.proc_root = str(root / "proc")
        self.host, self.system = fake_host(self.root)
        files = dict({SSHD_CONFIG: DEBIAN_CONFIG, EPHEMERAL_RANGE: "32768\t60999\n"}, **(files or {}))
        for path, text in files.items():
            if text is not None:
                write_host_file(self.root, path, text)
        os.makedirs(host_file(self.root, "/etc/ssh/sshd_config.d"), exist_ok=True)  # as openssh-server ships it
        if privsep:
            os.makedirs(host_file(self.root, PRIVSEP_DIR))
        if persisted:
            write_host_file(self.root, PERSIST_FILE, apply_script(table))
            write_host_file(self.root, "/etc/nftables.conf", NFTABLES_CONF + 'include "%s"\n' % PERSIST_FILE)
        self.system.with_nft(table)
        self.socket_activated = socket_activated
        self.others = list(others)
        self.stuck = False  # True: sshd does not take a new configuration
        for unit, text in (("ssh.socket", SOCKET_ON if socket_activated else SOCKET_OFF),
                           ("ssh.service", "LoadState=loaded\nId=ssh.service\n"),
                           ("sshd.service", "LoadState=not-found\nId=sshd.service\n"),
                           ("nftables.service", NFTABLES_UNIT)):
            self.system.respond(["systemctl", "show", unit], out=text)
        if semanage is None:
            self.system.respond(["semanage", "port", "-l"], rc=127, err="semanage: command not found")
        else:
            self.system.respond(["semanage", "port", "-l"], out=semanage)
        for command in (["systemctl", "reload", "ssh.service"], ["systemctl", "start", "ssh.service"]):
            self.system.hook(command, self.reloaded)
        self.system.hook(["systemd-run"], self.rollback_now)
        self.listen(sshd_ports)
        self.sshd = self.ssh_host(check_mode)

    def ssh_host(self, check_mode=False):
        sshd = SshHost(self.host, expand=self.expand, proc_root=self.proc_root, sleep=self.poll,
                       check_mode=check_mode)
        sshd.move.engine.lock_wait = sshd.move.engine.rollback_wait = 1
        return sshd

    def expand(self, pattern):
        """Glob on the host's side of the root."""
        return sorted("/" + os.path.relpath(path, self.root) for path in glob.glob(self.host.path(pattern)))

    def listen(self, ports):
        """Rebuild /proc: sshd (or systemd, under socket activation) listens on `ports`."""
        shutil.rmtree(self.proc_root, ignore_errors=True)
        proc = FakeProc(self.proc_root)
        inodes = []
        for number, port in enumerate(sorted(ports)):
            proc.socket("tcp", "00000000:%04X" % port, "0A", inode=100 + 2 * number)
            proc.socket("tcp6", "00000000000000000000000000000000:%04X" % port, "0A", inode=101 + 2 * number)
            inodes.extend([100 + 2 * number, 101 + 2 * number])
        if self.socket_activated:
            proc.process(1, "systemd", inodes, cgroup="0::/init.scope\n")
        else:
            proc.process(1, "systemd", [], cgroup="0::/init.scope\n")
            proc.process(400, "sshd", inodes, cgroup="0::/system.slice/ssh.service\n")
        for number, (name, pid, port, options) in enumerate(self.others):
            proc.socket("tcp", "00000000:%04X" % port, "0A", inode=500 + number, uid=options.get("uid", 0) or 0)
            proc.process(pid, name, [500 + number], **options)
        proc.flush()
        self.ports = sorted(ports)

    def configured_ports(self):
        if self.socket_activated:
            text = read_host_file(self.root, SOCKET_DROP_IN)
            if text is None:
                return [22]
            return sorted(int(port) for port in re.findall(r"^ListenStream=.*:(\d+)$", text, re.M))
        return self.sshd.layout().ports()

    def reloaded(self, _argv):
        """systemctl reload/start: sshd takes its configuration (unless stuck); the command succeeds."""
        if not self.stuck:
            self.listen(self.configured_ports())
        return None

    def rollback_now(self, argv):
        """systemd-run --wait of the rollback script: it restarts sshd before it ends."""
        if "--wait" not in argv:
            return None
        answer = self.system.run_script(argv[argv.index("/bin/sh"):])
        self.reloaded(None)
        return answer

    def fire(self):
        """The rollback timer elapses: the script runs, sshd restarts with what it restored."""
        answer = self.system.fire()
        self.reloaded(None)
        return answer

    def poll(self, _seconds):
        """While a step waits: sshd catches up with its configuration (after the rollback script restarted it)."""
        self.reloaded(None)

    def read(self, path):
        return read_host_file(self.root, path)

    def tree(self, *ignore):
        return tree(self.root, ignore=ENGINE_PATHS + ignore)

    def script_log(self):
        return self.system.script_commands()


def params(**overrides):
    return dict({"port": 2222, "listen_addresses": None, "manage_firewall": None, "selinux": "auto",
                 "confirm_timeout": 120}, **overrides)


@pytest.fixture
def fast(monkeypatch):
    """A wait for sshd that cannot succeed gives up at once."""
    monkeypatch.setattr(_move, "LISTEN_WAIT_SECONDS", 0)


# --- plan ----------------------------------------------------------------------------------------------

@little_endian
def test_plan_debian_from_22_to_2222(tmp_path):
    fake = Sshd(tmp_path)
    result = plan(fake.sshd, params())
    assert result["changed"] is True
    assert (result["port"], result["ports_before"], result["moved_ports"]) == (2222, [22], [22])
    assert result["socket_activated"] is False
    assert result["service"] == "ssh.service"
    assert result["listening_before"] == ["0.0.0.0:22", "[::]:22"]
    assert result["warnings"] == []
    assert result["firewall"] == {"managed": False, "rules_moved": 0, "backend": None}
    assert result["selinux"] == {"mode": "disabled", "type_before": None, "commands": []}
    steps = result["_plan"]
    assert sorted(steps["final_edits"]) == [OWN_DROP_IN]
    assert steps["final_edits"][OWN_DROP_IN].endswith("\nPort 2222\n")
    assert steps["transition_edits"][OWN_DROP_IN].endswith("\nPort 22\nPort 2222\n")
    assert steps["socket_final"] is None
    assert [item["before_header"] for item in result["diff"]] == [OWN_DROP_IN]
    assert [SSHD, "-t", "-f", SSHD_CONFIG] in fake.system.calls
    assert "_plan" not in result_json(result)
    assert result_json(result)["moved_ports"] == [22]


@little_endian
def test_plan_changes_nothing_on_the_host(tmp_path):
    fake = Sshd(tmp_path, table=TABLE_22)
    before = tree(fake.root)
    plan(fake.sshd, params())
    assert tree(fake.root) == before
    assert fake.system.live_table() == TABLE_22
    assert not any(argv[0] == "systemd-run" or argv[:2] == ["nft", "-f"] for argv in fake.system.calls)


@little_endian
def test_check_mode_plan_creates_nothing_not_even_run_sshd(tmp_path):
    # Regression "check mode writes": sshd -t needs /run/sshd, and check mode created it to run the test.
    fake = Sshd(tmp_path, privsep=False, check_mode=True)
    before = tree(fake.root)
    result = plan(fake.sshd, params())
    assert result["changed"] is True
    assert tree(fake.root) == before
    assert not os.path.exists(host_file(fake.root, PRIVSEP_DIR))
    assert [argv for argv in fake.system.calls if argv[0] == SSHD] == []
    assert any(warning.startswith("sshd -t was not run in check mode: /run/sshd does not exist yet")
               for warning in result["warnings"])


@little_endian
def test_a_real_plan_creates_run_sshd_to_validate(tmp_path):
    fake = Sshd(tmp_path, privsep=False)
    result = plan(fake.sshd, params())
    assert os.path.isdir(host_file(fake.root, PRIVSEP_DIR))
    assert [SSHD, "-t", "-f", SSHD_CONFIG] in fake.system.calls
    assert not any("sshd -t was not run" in warning for warning in result["warnings"])


@little_endian
def test_plan_port_taken_by_another_process_names_it(tmp_path):
    fake = Sshd(tmp_path, others=[("python3", 500, 2222, {})])
    with pytest.raises(SshPortError) as error:
        plan(fake.sshd, params())
    assert str(error.value) == ("plan: port 2222/tcp is already taken by python3[500] on 0.0.0.0:2222; "
                                "choose another port (nothing was changed)")


USER_SESSION = "0::/user.slice/user-1000.slice/session-3.scope\n"


@little_endian
@pytest.mark.parametrize("impostor", [
    {"uid": 1000, "cgroup": USER_SESSION, "exe": "/home/mallory/sshd"},  # a user's program called sshd
    {"uid": 1000, "cgroup": "0::/system.slice/ssh.service\n"},  # the real binary and unit, but not root
    {"uid": 0, "cgroup": "0::/system.slice/ssh.service\n", "exe": "/tmp/sshd"},  # not the sshd binary
    {"uid": 0, "cgroup": USER_SESSION},  # sshd started by hand from a login session
    {"uid": None, "cgroup": "0::/system.slice/ssh.service\n"},  # uid not readable: not proven root
])
def test_a_process_that_only_calls_itself_sshd_is_a_holder_not_sshd(tmp_path, impostor):
    # Regression "sshd identified by name": any process named sshd on the new port passed for sshd itself, so the
    # move went ahead and the controller's next login went to it.
    fake = Sshd(tmp_path, others=[("sshd", 700, 2222, impostor)])
    assert fake.sshd.sshd_listening() == [("0.0.0.0:22", 22), ("[::]:22", 22)]
    assert fake.sshd.port_holders(2222) == ["sshd[700] on 0.0.0.0:2222"]
    with pytest.raises(SshPortError) as error:
        plan(fake.sshd, params())
    assert str(error.value) == ("plan: port 2222/tcp is already taken by sshd[700] on 0.0.0.0:2222; "
                                "choose another port (nothing was changed)")


@little_endian
def test_plan_port_held_by_sshd_itself_is_no_conflict(tmp_path):
    fake = Sshd(tmp_path, sshd_ports=(22, 2222))
    result = plan(fake.sshd, params())
    assert result["moved_ports"] == [22]
    assert result["ports_before"] == [22, 2222]


@little_endian
@pytest.mark.parametrize("port, ephemeral, warned", [
    (40000, "32768\t60999\n", True),
    (40000, None, False),  # the range cannot be read
    (61000, "32768\t60999\n", False),
    (2222, "32768\t60999\n", False),
    (2222, "1024 65535\n", True),
])
def test_plan_warns_about_a_port_in_the_ephemeral_range(tmp_path, port, ephemeral, warned):
    fake = Sshd(tmp_path, files={EPHEMERAL_RANGE: ephemeral})
    warnings = plan(fake.sshd, params(port=port))["warnings"]
    assert len(warnings) == int(warned)
    if warned:
        low, high = ephemeral.split()
        assert warnings[0].startswith("port %d is inside the kernel's ephemeral port range %s-%s" % (port, low, high))
        assert "net.ipv4.ip_local_reserved_ports" in warnings[0]


@little_endian
def test_plan_nothing_to_do_when_already_moved(tmp_path):
    fake = Sshd(tmp_path, files={OWN_DROP_IN: OWN_DROP_IN_TEXT}, sshd_ports=(2222,))
    result = plan(fake.sshd, params())
    assert result["changed"] is False
    assert result["moved_ports"] == []
    assert result["_plan"]["final_edits"] == {} and result["diff"] == []


@little_endian
def test_plan_config_moved_but_sshd_not_reloaded_yet_needs_a_restart(tmp_path):
    fake = Sshd(tmp_path, files={OWN_DROP_IN: OWN_DROP_IN_TEXT})
    result = plan(fake.sshd, params())
    assert result["changed"] is True
    assert result["_plan"]["final_edits"] == {}
    assert result["moved_ports"] == [22]


@little_endian
def test_plan_without_include_uses_the_block(tmp_path):
    fake = Sshd(tmp_path, files={SSHD_CONFIG: "Port 22\nUsePAM yes\n"})
    final = plan(fake.sshd, params())["_plan"]["final_edits"]
    assert list(final) == [SSHD_CONFIG]
    assert BLOCK_BEGIN + "\nPort 2222\n" in final[SSHD_CONFIG]


@little_endian
def test_plan_sshd_t_failure_stops_it(tmp_path):
    fake = Sshd(tmp_path)
    fake.system.respond([SSHD, "-t"], rc=255, err="/etc/ssh/sshd_config line 3: bad\r\n")
    with pytest.raises(SshPortError, match=r"sshd -t rejects the configuration \(rc=255\): "
                                           r"/etc/ssh/sshd_config line 3: bad$"):
        plan(fake.sshd, params())


@little_endian
def test_plan_bad_port_line_is_an_error(tmp_path):
    fake = Sshd(tmp_path, files={SSHD_CONFIG: "Port twenty-two\n"})
    with pytest.raises(SshdConfigError, match="^/etc/ssh/sshd_config:1: Port 'twenty-two'"):
        plan(fake.sshd, params())


@little_endian
def test_plan_moves_the_firewall_management_port(tmp_path):
    fake = Sshd(tmp_path, table=TABLE_22)
    result = plan(fake.sshd, params())
    assert result["firewall"] == {"managed": True, "rules_moved": 1, "backend": "nftables"}
    firewall = result["_plan"]["firewall"]
    assert firewall["final"] == TABLE_2222
    assert firewall["transition"] == TABLE_BOTH
    assert "nft list table inet portcullis" in [item["before_header"] for item in result["diff"]]
    assert result["warnings"] == []


@little_endian
def test_plan_warns_about_a_range_rule_that_keeps_the_old_port_open(tmp_path):
    rules = parse_allowlist([{"port": "20-30", "comment": "legacy"}])
    fake = Sshd(tmp_path, table=render_table(rules, management_ports=[22]))
    result = plan(fake.sshd, params())
    assert len(result["warnings"]) == 1
    assert "still opens the old port 22/tcp" in result["warnings"][0]
    assert 'tcp dport 20-30 accept comment "allowlist[0]: legacy"' in result["warnings"][0]


@little_endian
def test_plan_manage_firewall_true_without_a_table_warns(tmp_path):
    fake = Sshd(tmp_path)
    result = plan(fake.sshd, params(manage_firewall=True))
    assert result["firewall"] == {"managed": False, "rules_moved": 0, "backend": None}
    assert any("no Portcullis firewall table" in warning for warning in result["warnings"])


@little_endian
def test_plan_manage_firewall_false_does_not_read_the_table(tmp_path):
    fake = Sshd(tmp_path, table=TABLE_22)
    result = plan(fake.sshd, params(manage_firewall=False))
    assert result["firewall"] == {"managed": False, "rules_moved": 0, "backend": None}
    assert not [argv for argv in fake.system.calls if argv[0] == "nft"]


@little_endian
def test_plan_socket_activated(tmp_path):
    fake = Sshd(tmp_path, socket_activated=True)
    result = plan(fake.sshd, params())
    assert result["socket_activated"] is True
    assert result["listening_before"] == ["0.0.0.0:22", "[::]:22"]  # systemd holds the socket for sshd
    assert result["moved_ports"] == [22]
    steps = result["_plan"]
    assert steps["socket_final"] == socket_drop_in([("[::]:2222", "Stream")])
    assert steps["socket_transition"] == socket_drop_in([("[::]:22", "Stream"), ("[::]:2222", "Stream")])
    assert SOCKET_DROP_IN in [item["before_header"] for item in result["diff"]]


@little_endian
@pytest.mark.parametrize("port, semanage, type_before, commands, undo", [
    (2222, SEMANAGE, None, [["semanage", "port", "-a", "-t", "ssh_port_t", "-p", "tcp", "2222"]],
     [["semanage", "port", "-d", "-t", "ssh_port_t", "-p", "tcp", "2222"]]),
    # A port with its own record of another type is modified, and modified back.
    (8008, SEMANAGE, "http_port_t", [["semanage", "port", "-m", "-t", "ssh_port_t", "-p", "tcp", "8008"]],
     [["semanage", "port", "-m", "-t", "http_port_t", "-p", "tcp", "8008"]]),
    # A port inside a policy range gets a record of its own (semanage refuses -m there).
    (2222, SEMANAGE + "unreserved_port_t              tcp      61000-65535, 1024-32767\n", "unreserved_port_t",
     [["semanage", "port", "-a", "-t", "ssh_port_t", "-p", "tcp", "2222"]],
     [["semanage", "port", "-d", "-t", "ssh_port_t", "-p", "tcp", "2222"]]),
    (22, SEMANAGE, "ssh_port_t", [], []),
])
def test_plan_selinux_enforcing_labels_the_port(tmp_path, port, semanage, type_before, commands, undo):
    fake = Sshd(tmp_path, files={SELINUX_ENFORCE: "1\n"}, semanage=semanage, sshd_ports=(2200,))
    result = plan(fake.sshd, params(port=port))
    assert result["selinux"] == {"mode": "enforcing", "type_before": type_before, "commands": commands}
    assert result["_plan"]["selinux"]["undo"] == undo


@little_endian
def test_plan_selinux_disabled_runs_no_semanage(tmp_path):
    fake = Sshd(tmp_path)
    assert plan(fake.sshd, params(selinux="auto"))["selinux"]["commands"] == []
    assert not [argv for argv in fake.system.calls if argv[0] == "semanage"]


@little_endian
def test_plan_selinux_true_without_semanage_fails(tmp_path):
    fake = Sshd(tmp_path)
    with pytest.raises(SshPortError, match=r"selinux=true but `semanage port -l` failed \(rc=127\): semanage: "
                                           "command not found. Install policycoreutils-python-utils"):
        plan(fake.sshd, params(selinux="true"))


@little_endian
def test_plan_refuses_while_a_change_is_armed_and_check_mode_warns(tmp_path):
    fake = Sshd(tmp_path)
    transition(fake.sshd, params())
    with pytest.raises(ChangePending):
        plan(fake.sshd, params(port=2200))
    before = tree(fake.root)
    warnings = plan(fake.ssh_host(check_mode=True), params(port=2200))["warnings"]
    assert any(warning.startswith("a real run would refuse now: plan: the ssh-port change") for warning in warnings)
    assert tree(fake.root) == before


@little_endian
def test_the_default_glob_reads_included_files_under_the_hosts_root(tmp_path):
    fake = Sshd(tmp_path, files={OWN_DROP_IN: OWN_DROP_IN_TEXT}, sshd_ports=(2222,))
    assert SshHost(fake.host, proc_root=fake.proc_root).layout().ports() == [2222]


# --- what sshd listens on ------------------------------------------------------------------------------

@little_endian
def test_sshd_listening_and_port_holders(tmp_path):
    fake = Sshd(tmp_path, others=[("nginx", 600, 8080, {}), ("python3", 601, 22, {})])
    assert fake.sshd.sshd_listening() == [("0.0.0.0:22", 22), ("[::]:22", 22)]
    assert fake.sshd.port_holders(8080) == ["nginx[600] on 0.0.0.0:8080"]
    assert fake.sshd.port_holders(2222) == []


@little_endian
def test_socket_held_by_systemd_counts_as_sshd_only_on_the_socket_ports(tmp_path):
    fake = Sshd(tmp_path, socket_activated=True)
    assert fake.sshd.sshd_listening() == []
    assert fake.sshd.sshd_listening([22]) == [("0.0.0.0:22", 22), ("[::]:22", 22)]
    assert fake.sshd.port_holders(22, [22]) == []
    assert fake.sshd.port_holders(22) == ["systemd[1] on 0.0.0.0:22", "systemd[1] on [::]:22"]


@little_endian
def test_wait_listening_returns_the_addresses(tmp_path):
    fake = Sshd(tmp_path, sshd_ports=(22, 2222))
    assert fake.sshd.wait_listening([2222], [], "step") == ["0.0.0.0:22", "0.0.0.0:2222", "[::]:22", "[::]:2222"]


@little_endian
def test_wait_listening_gives_up_and_says_what_it_sees(tmp_path, fast):
    fake = Sshd(tmp_path)
    with pytest.raises(MoveError, match=r"^finalize: after 0 s sshd listens on 0.0.0.0:22, \[::\]:22, "
                                        r"not on port\(s\) 2222 without 22"):
        fake.sshd.wait_listening([2222], [22], "finalize")


@little_endian
def test_wait_listening_waits_for_every_address_it_listened_on_before(tmp_path, fast):
    fake = Sshd(tmp_path, sshd_ports=(2222,))
    assert fake.sshd.wait_listening([2222], [22], "finalize", wanted_addresses=["0.0.0.0:2222", "[::]:2222"]) == [
        "0.0.0.0:2222", "[::]:2222"]
    with pytest.raises(MoveError, match=r"\(it no longer listens on \[2001:db8::10\]:2222, as it did before\)$"):
        fake.sshd.wait_listening([2222], [22], "finalize", wanted_addresses=["0.0.0.0:2222", "[2001:db8::10]:2222"])


# --- transition ----------------------------------------------------------------------------------------

@little_endian
def test_transition_arms_then_writes_opens_the_new_port_and_reloads(tmp_path):
    fake = Sshd(tmp_path, table=TABLE_22)
    result = transition(fake.sshd, params())
    token = result["token"]
    assert "_plan" not in result and result["changed"] is True
    assert result["listening_transition"] == ["0.0.0.0:22", "0.0.0.0:2222", "[::]:22", "[::]:2222"]
    change = fake.sshd.move.engine.armed()
    assert (change.token, change.kind, change.claimed_by) == (token, "ssh-port", None)
    assert list(fake.system.timers) == ["portcullis-rollback-%s.timer" % token]
    assert fake.read(OWN_DROP_IN).endswith("\nPort 22\nPort 2222\n")
    assert fake.system.live_table() == TABLE_BOTH
    assert change.data["firewall_final"] == TABLE_2222 and change.data["firewall_persisted"] is False
    assert [path for path, _backup in change.manifest["restores"]] == sorted([OWN_DROP_IN, STATE_FILE])
    calls = fake.system.calls
    armed = next(n for n, argv in enumerate(calls) if argv[0] == "systemd-run")
    loaded = next(n for n, argv in enumerate(calls) if argv[:2] == ["nft", "-f"])
    reloaded = calls.index(["systemctl", "reload", "ssh.service"])
    assert armed < loaded < reloaded
    script = fake.read(ARMED + "/rollback.sh")
    for command in ("nft -f %s" % host_file(fake.root, ARMED + "/firewall-rollback.nft"),
                    "systemctl daemon-reload", "systemctl restart ssh.service"):
        assert "  %s || status=1" % command in script


@little_endian
def test_transition_under_socket_activation_writes_the_drop_in_and_restarts_socket_and_service(tmp_path):
    fake = Sshd(tmp_path, socket_activated=True)
    result = transition(fake.sshd, params())
    assert fake.read(SOCKET_DROP_IN) == socket_drop_in([("[::]:22", "Stream"), ("[::]:2222", "Stream")])
    assert result["listening_transition"] == ["0.0.0.0:22", "0.0.0.0:2222", "[::]:22", "[::]:2222"]
    restart = [argv for argv in fake.system.calls if argv[:2] in (["systemctl", "stop"], ["systemctl", "start"])
               and argv[2] in ("ssh.socket", "ssh.service")]
    assert restart == [["systemctl", "stop", "ssh.socket"], ["systemctl", "stop", "ssh.service"],
                       ["systemctl", "start", "ssh.socket"], ["systemctl", "start", "ssh.service"]]
    assert SOCKET_DROP_IN in [path for path, _backup in fake.sshd.move.engine.armed().manifest["restores"]]


@little_endian
def test_transition_with_nothing_to_do_arms_nothing(tmp_path):
    fake = Sshd(tmp_path, files={OWN_DROP_IN: OWN_DROP_IN_TEXT}, sshd_ports=(2222,))
    before = fake.tree()
    result = transition(fake.sshd, params())
    assert result["changed"] is False and "token" not in result
    assert fake.sshd.move.engine.armed() is None and fake.tree() == before


def _selinux_label_fails(fake):
    fake.system.respond(["semanage", "port", "-a"], rc=1, err="ValueError: Port tcp/2222 already defined")
    return {}


def _sshd_t_fails_on_the_new_configuration(fake):
    runs = []

    def sshd_t(_argv):
        runs.append(1)
        return (255, "", "/etc/ssh/sshd_config.d/portcullis-ssh-port.conf line 2: bad\n") if len(runs) > 1 else None
    fake.system.hook([SSHD, "-t"], sshd_t)
    return {}


def _socket_drop_in_cannot_be_written(fake):
    runs = []

    def sshd_t(_argv):  # right before the drop-in is written, its directory turns into a file
        runs.append(1)
        if len(runs) > 1:
            write_host_file(fake.root, os.path.dirname(SOCKET_DROP_IN), "not a directory\n")
        return None
    fake.system.hook([SSHD, "-t"], sshd_t)
    return {os.path.dirname(SOCKET_DROP_IN): b"not a directory\n"}


def _nft_fails(fake):
    fake.system.respond(["nft", "-f"], rc=1, err="Error: Could not process rule: Operation not permitted")
    return {}


def _reload_fails(fake):
    fake.system.respond(["systemctl", "reload", "ssh.service"], rc=1, err="Job for ssh.service failed")
    return {}


def _sshd_never_listens_on_the_new_port(fake):
    fake.stuck = True
    return {}


@little_endian
@pytest.mark.parametrize("sabotage, step, socket_activated", [
    (_selinux_label_fails, "transition: labelling the port for SELinux", False),
    (_sshd_t_fails_on_the_new_configuration, "transition: writing the sshd configuration (old and new port)", False),
    (_socket_drop_in_cannot_be_written, "transition: writing the ssh.socket drop-in (old and new port)", True),
    (_nft_fails, "transition: opening the new port in the Portcullis firewall", False),
    (_reload_fails, "transition: reloading sshd", False),
    (_sshd_never_listens_on_the_new_port, "transition: waiting for sshd to listen on the old and the new port", False),
])
def test_a_failed_transition_step_rolls_back_everything(tmp_path, fast, sabotage, step, socket_activated):
    fake = Sshd(tmp_path, table=TABLE_22, files={SELINUX_ENFORCE: "1\n"}, semanage=SEMANAGE,
                socket_activated=socket_activated)
    before = fake.tree()
    before.update(sabotage(fake))
    with pytest.raises(MoveError) as error:
        transition(fake.sshd, params())
    message = str(error.value)
    assert message.startswith(step + " failed: ")
    assert "an immediate rollback put the previous configuration back" in message
    assert error.value.details == {"rolled_back": True, "host_state": "the previous configuration"}
    engine = fake.sshd.move.engine
    assert engine.armed() is None and fake.system.timers == {}
    assert fake.tree() == before  # every file byte for byte as it was
    assert fake.system.live_table() == TABLE_22
    log = fake.script_log()
    assert "semanage port -d -t ssh_port_t -p tcp 2222" in log and "systemctl daemon-reload" in log
    assert ("systemctl start ssh.service" if socket_activated else "systemctl restart ssh.service") in log


# --- finalize, commit, rollback ------------------------------------------------------------------------

@pytest.fixture
def moving(tmp_path):
    """A host where transition ran: sshd on 22 and 2222, the firewall opening both, the move armed."""
    fake = Sshd(tmp_path, table=TABLE_22)
    fake.before = fake.tree()
    fake.token = transition(fake.sshd, params())["token"]
    return fake


@little_endian
def test_finalize_listens_on_the_new_port_only_and_closes_the_old_one(moving):
    result = finalize(moving.sshd, moving.token)
    assert result == {"changed": True, "listening_after": ["0.0.0.0:2222", "[::]:2222"]}
    assert moving.read(OWN_DROP_IN).endswith("\nPort 2222\n") and "Port 22\n" not in moving.read(OWN_DROP_IN)
    assert moving.system.live_table() == TABLE_2222
    change = moving.sshd.move.engine.armed()
    assert change.token == moving.token and not change.claimed_by  # still armed until commit


@little_endian
def test_finalize_requires_the_armed_token(moving):
    before = moving.tree()
    with pytest.raises(TransactionError, match="finalize: no ssh-port change %s is armed on this host; armed is "
                                               "the ssh-port change %s" % (TOKEN, moving.token)):
        finalize(moving.sshd, TOKEN)
    with pytest.raises(TransactionError, match="is not a change token"):
        finalize(moving.sshd, "../../etc")
    assert moving.tree() == before and moving.system.live_table() == TABLE_BOTH


@little_endian
def test_finalize_after_the_timer_fired_is_too_late(moving):
    moving.fire()
    with pytest.raises(RolledBack, match="finalize: too late: .* its rollback timer put the previous configuration"):
        finalize(moving.sshd, moving.token)
    assert moving.tree() == moving.before and moving.system.live_table() == TABLE_22


@little_endian
def test_a_failed_finalize_rolls_back(moving, fast):
    moving.stuck = True
    with pytest.raises(MoveError) as error:
        finalize(moving.sshd, moving.token)
    assert str(error.value).startswith("finalize: waiting for sshd to listen on the new port only")
    assert error.value.details["rolled_back"] is True
    assert moving.tree() == moving.before and moving.system.live_table() == TABLE_22


@little_endian
@pytest.mark.parametrize("persisted", [True, False])
def test_commit_persists_the_moved_firewall_only_where_it_was_persisted(tmp_path, persisted):
    fake = Sshd(tmp_path, table=TABLE_22, persisted=persisted)
    conf = fake.read("/etc/nftables.conf")
    token = transition(fake.sshd, params())["token"]
    finalize(fake.sshd, token)
    result = commit(fake.sshd, token)
    assert result["committed"] is True
    engine = fake.sshd.move.engine
    assert engine.armed() is None and engine.finished(token).claimed_by == "commit"
    assert fake.system.timers == {} and fake.system.live_table() == TABLE_2222
    if persisted:
        assert result["firewall_persistence"] == {"file": True, "include": False, "service": False,
                                                  "config": "/etc/nftables.conf"}
        assert fake.read(PERSIST_FILE) == apply_script(TABLE_2222)
    else:
        assert result["firewall_persistence"] == {}
        assert fake.read(PERSIST_FILE) is None
    assert fake.read("/etc/nftables.conf") == conf
    assert not any(argv[:2] == ["systemctl", "enable"] and argv[-1] == "nftables.service"
                   for argv in fake.system.calls)  # a move enables nothing


@little_endian
def test_a_persist_failure_at_commit_rolls_the_move_back(tmp_path):
    fake = Sshd(tmp_path, table=TABLE_22, persisted=True)
    before = fake.tree()
    token = transition(fake.sshd, params())["token"]
    finalize(fake.sshd, token)
    fake.system.respond(["systemctl", "show", "nftables.service"], out="LoadState=not-found\n")  # removed meanwhile
    with pytest.raises(RolledBack) as error:
        commit(fake.sshd, token)
    assert "commit: persist: nftables.service is not installed" in str(error.value)
    assert "an immediate rollback put the previous configuration back" in str(error.value)
    assert fake.tree() == before and fake.system.live_table() == TABLE_22


@little_endian
@pytest.mark.parametrize("finalized", [False, True])
def test_rollback_restores_everything_and_waits_for_sshd_on_the_old_port(moving, finalized):
    if finalized:
        finalize(moving.sshd, moving.token)
    result = rollback(moving.sshd, moving.token)
    assert result["changed"] is True and result["rolled_back"] is True
    assert result["outcome"].startswith("an immediate rollback put the previous configuration back")
    assert result["listening_after"] == ["0.0.0.0:22", "[::]:22"]
    assert moving.tree() == moving.before and moving.system.live_table() == TABLE_22
    assert moving.sshd.move.engine.finished(moving.token).claimed_by == "now"
    # The controller retrying over another port finds it done, and says so.
    assert rollback(moving.sshd, moving.token)["outcome"].startswith("an immediate rollback put the previous")


@little_endian
def test_rollback_of_an_unknown_change_says_so(tmp_path):
    fake = Sshd(tmp_path)
    with pytest.raises(SshPortError, match="rollback: change %s is unknown on this host" % TOKEN):
        rollback(fake.sshd, TOKEN)


@little_endian
def test_rollback_of_a_committed_move_says_it_was_committed(moving, fast):
    finalize(moving.sshd, moving.token)
    commit(moving.sshd, moving.token)
    try:
        result = rollback(moving.sshd, moving.token)
    except MoveError as exc:
        outcome, rolled_back = str(exc), exc.details.get("rolled_back")
    else:
        outcome, rolled_back = result["outcome"], result["rolled_back"]
    assert "committed" in outcome and rolled_back is not True
