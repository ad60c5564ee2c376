# Copyright (c) Portcullis contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Moving a service's port, host side: the config line edit, the restart commands, then plan, apply, commit and
rollback through the change engine on a fake host: real files under a temporary root (fakehost.py), the rollback
script run for real, the nft model, and a fixture /proc where the service listens on the port its configuration
(or its socket drop-in) sets once it was restarted."""

from __future__ import annotations

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
from ansible_collections.portcullis.hardening.plugins.module_utils._service_port import (
    ServiceHost,
    ServicePortError,
    apply,
    commit,
    edit_config,
    plan,
    restart_commands,
    rollback,
    socket_drop_in_path,
)
from ansible_collections.portcullis.hardening.plugins.module_utils._specs import SERVICE_PORT_SPEC
from ansible_collections.portcullis.hardening.plugins.module_utils._transaction import (
    ARMED,
    BOOT_UNIT_PATH,
    RUN_DIR,
    STATE_DIR,
    ChangePending,
    RolledBack,
)
from ansible_collections.portcullis.hardening.plugins.plugin_utils._action import validated

from .fakehost import fake_host, host_file, read_host_file, tree, write_host_file
from .fakeproc import FakeProc

little_endian = pytest.mark.skipif(sys.byteorder != "little", reason="fixture /proc is little-endian kernel output")
CONFIG = "/etc/default/web"
WEB = "web.service"
SOCKET_UNIT = "web.socket"
DROP_IN = socket_drop_in_path(SOCKET_UNIT)
NFTABLES_UNIT = ("LoadState=loaded\nExecStart={ path=/usr/sbin/nft ; argv[]=/usr/sbin/nft -f /etc/nftables.conf ; "
                 "ignore_errors=no }\n")
RULES = parse_allowlist([{"port": 22}, {"port": 8080, "sources": ["10.0.0.0/8"]}])
TABLE_8080 = render_table(RULES, "drop", [])
# The rule moves with its sources; its comment (the allowlist entry it came from) stays as it was.
TABLE_8081 = TABLE_8080.replace(" tcp dport 8080 accept ", " tcp dport 8081 accept ")
ENGINE_PATHS = (STATE_DIR, RUN_DIR, BOOT_UNIT_PATH)


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
    assert restart_commands(dict(base, socket_unit=SOCKET_UNIT)) == [
        ["systemctl", "daemon-reload"], ["systemctl", "stop", SOCKET_UNIT], ["systemctl", "stop", WEB],
        ["systemctl", "start", SOCKET_UNIT], ["systemctl", "start", WEB]]
    assert DROP_IN == "/etc/systemd/system/web.socket.d/portcullis-service-port.conf"


class Web:
    """A host where web.service (pid 300) listens on 0.0.0.0 on the port its configuration sets: PORT= in
    /etc/default/web, or with socket_unit the last ListenStream of web.socket's drop-in. It takes a new
    configuration when restarted (or when the rollback script restarts it). `others` are (name, pid, port)."""

    def __init__(self, root, port=8080, others=(), files=None, table=None, persisted=False, socket=False,
                 check_mode=False):
        self.root = str(root / "host")
        self.proc_root = str(root / "proc")
        self.host, self.system = fake_host(self.root)
        for path, text in dict({CONFIG: "PORT=%d\n" % port}, **(files or {})).items():
            write_host_file(self.root, path, text)
        if persisted:
            write_host_file(self.root, PERSIST_FILE, apply_script(table))
            write_host_file(self.root, "/etc/nftables.conf", '#!/usr/sbin/nft -f\ninclude "%s"\n' % PERSIST_FILE)
        self.system.with_nft(table)
        self.socket = socket
        self.others = list(others)
        self.stuck = False
        self.system.respond(["systemctl", "show", SOCKET_UNIT],
                            out="Listen=[::]:%d (Stream)\nLoadState=loaded\n" % port)
        self.system.respond(["systemctl", "show", "nftables.service"], out=NFTABLES_UNIT)
        for verb in ("restart", "reload", "start"):
            self.system.hook(["systemctl", verb, WEB], self.restarted)
        self.system.hook(["systemd-run"], self.rollback_now)
        self.listen(port)
        self.web = self.service_host(check_mode)

    def service_host(self, check_mode=False):
        web = ServiceHost(self.host, proc_root=self.proc_root, check_mode=check_mode)
        web.move.engine.lock_wait = web.move.engine.rollback_wait = 1
        return web

    def listen(self, port):
        shutil.rmtree(self.proc_root, ignore_errors=True)
        proc = FakeProc(self.proc_root)
        proc.socket("tcp", "00000000:%04X" % port, "0A", inode=100)
        proc.process(300, "web", [100], cgroup="0::/system.slice/web.service\n")
        for number, (name, pid, other) in enumerate(self.others):
            proc.socket("tcp", "00000000:%04X" % other, "0A", inode=500 + number)
            proc.process(pid, name, [500 + number])
        proc.flush()

    def configured_port(self):
        if self.socket:
            text = read_host_file(self.root, DROP_IN)
            return int(re.findall(r"^ListenStream=.*:(\d+)$", text, re.M)[-1]) if text else 8080
        return int(re.search(r"^PORT=(\d+)", read_host_file(self.root, CONFIG), re.M).group(1))

    def restarted(self, _argv):
        if not self.stuck:
            self.listen(self.configured_port())
        return None

    def rollback_now(self, argv):
        if "--wait" not in argv:
            return None
        answer = self.system.run_script(argv[argv.index("/bin/sh"):])
        self.restarted(None)
        return answer

    def fire(self):
        answer = self.system.fire()
        self.restarted(None)
        return answer

    def read(self, path):
        return read_host_file(self.root, path)

    def tree(self):
        return tree(self.root, ignore=ENGINE_PATHS)


def params(**overrides):
    return validated(dict({"service": WEB, "port": 8081, "path": CONFIG, "regexp": "^PORT=", "line": "PORT=8081"},
                          **overrides), SERVICE_PORT_SPEC)


def socket_params(**overrides):
    return params(path=None, regexp=None, line=None, socket_unit=SOCKET_UNIT, **overrides)


@pytest.fixture
def fast(monkeypatch):
    monkeypatch.setattr(_move, "LISTEN_WAIT_SECONDS", 0)


# --- plan --------------------------------------------------------------------------------------------------

@little_endian
def test_plan_finds_the_old_port_and_shows_the_edit(tmp_path):
    fake = Web(tmp_path)
    before = tree(fake.root)
    result = plan(fake.web, params())
    assert result["changed"] and result["previous_port"] == 8080
    assert result["listening_before"] == ["0.0.0.0:8080"]
    assert result["diff"] == [{"before_header": CONFIG, "after_header": CONFIG, "before": "PORT=8080\n",
                               "after": "PORT=8081\n"}]
    assert result["_plan"]["edits"] == {CONFIG: "PORT=8081\n"}
    assert result["firewall"]["managed"] is False
    assert tree(fake.root) == before  # plan reads only


@little_endian
def test_plan_done_already_changes_nothing(tmp_path):
    result = plan(Web(tmp_path, port=8081).web, params())
    assert not result["changed"] and result["diff"] == []


@little_endian
def test_plan_refuses_a_port_another_process_holds(tmp_path):
    with pytest.raises(ServicePortError, match=r"port 8081/tcp is already taken by cache\[77\] on 0\.0\.0\.0:8081 "
                                               r"\(nothing was changed\)"):
        plan(Web(tmp_path, others=[("cache", 77, 8081)]).web, params())


@little_endian
def test_plan_moves_the_allowlist_rule_with_its_sources(tmp_path):
    result = plan(Web(tmp_path, table=TABLE_8080).web, params())
    final = result["_plan"]["firewall"]["final"]
    assert result["firewall"] == {"managed": True, "rules_moved": 1, "backend": "nftables"}
    assert "ip saddr 10.0.0.0/8 tcp dport 8081 accept" in final and "dport 8080" not in final
    assert final == TABLE_8081


@little_endian
def test_plan_leaves_the_firewall_when_no_rule_opened_the_old_port(tmp_path):
    table = render_table(parse_allowlist([{"port": 22}]), "drop", [])
    result = plan(Web(tmp_path, table=table).web, params())
    assert result["_plan"]["firewall"]["final"] is None


@little_endian
def test_plan_manage_firewall_true_without_a_table_fails(tmp_path):
    with pytest.raises(ServicePortError, match="manage_firewall: true, but the host has no Portcullis firewall table"):
        plan(Web(tmp_path).web, params(manage_firewall=True))


@little_endian
def test_plan_socket_unit_writes_a_listen_stream_drop_in(tmp_path):
    result = plan(Web(tmp_path, socket=True).web, socket_params())
    drop_in = result["_plan"]["edits"][DROP_IN]
    assert drop_in.splitlines()[2:] == ["[Socket]", "ListenStream=", "ListenStream=[::]:8081"]


@little_endian
def test_plan_missing_file_names_the_path(tmp_path):
    with pytest.raises(ServicePortError, match="path: /etc/default/missing does not exist on the host"):
        plan(Web(tmp_path).web, params(path="/etc/default/missing"))


@little_endian
def test_plan_refuses_while_a_change_is_armed_and_check_mode_warns(tmp_path):
    fake = Web(tmp_path)
    apply(fake.web, params())
    with pytest.raises(ChangePending):
        plan(fake.web, params(port=8082, line="PORT=8082"))
    before = tree(fake.root)
    warnings = plan(fake.service_host(check_mode=True), params(port=8082, line="PORT=8082"))["warnings"]
    assert any(warning.startswith("a real run would refuse now: plan: the service-port change") for warning in warnings)
    assert tree(fake.root) == before


# --- apply -------------------------------------------------------------------------------------------------

@little_endian
def test_apply_arms_then_writes_moves_the_rule_restarts_and_waits(tmp_path):
    fake = Web(tmp_path, table=TABLE_8080)
    result = apply(fake.web, params())
    token = result["token"]
    assert "_plan" not in result and result["listening_after"] == ["0.0.0.0:8081"]
    change = fake.web.move.engine.armed()
    assert (change.token, change.kind, change.claimed_by) == (token, "service-port", None)
    assert [path for path, _backup in change.manifest["restores"]] == [CONFIG, STATE_FILE]
    assert fake.read(ARMED + "/file-0") == "PORT=8080\n"
    assert fake.read(CONFIG) == "PORT=8081\n" and fake.system.live_table() == TABLE_8081
    calls = fake.system.calls
    armed = next(n for n, argv in enumerate(calls) if argv[0] == "systemd-run")
    loaded = next(n for n, argv in enumerate(calls) if argv[:2] == ["nft", "-f"])
    assert armed < loaded < calls.index(["systemctl", "restart", WEB])
    script = fake.read(ARMED + "/rollback.sh")
    assert "  systemctl restart web.service || status=1" in script
    assert "  nft -f %s || status=1" % host_file(fake.root, ARMED + "/firewall-rollback.nft") in script


@little_endian
def test_apply_with_a_socket_unit_writes_the_drop_in_and_restarts_both(tmp_path):
    fake = Web(tmp_path, socket=True)
    result = apply(fake.web, socket_params())
    assert result["listening_after"] == ["0.0.0.0:8081"]
    assert fake.read(DROP_IN).endswith("[Socket]\nListenStream=\nListenStream=[::]:8081\n")
    assert fake.read(CONFIG) == "PORT=8080\n"
    assert ["systemctl", "start", SOCKET_UNIT] in fake.system.calls
    rollback(fake.web, result["token"])
    assert fake.read(DROP_IN) is None


@little_endian
def test_apply_with_nothing_to_do_arms_nothing(tmp_path):
    fake = Web(tmp_path, port=8081)
    before = fake.tree()
    assert apply(fake.web, params())["changed"] is False
    assert fake.web.move.engine.armed() is None and fake.tree() == before


def _validation_fails(fake):
    fake.system.respond(["/usr/sbin/web", "--check"], rc=2, err="web: PORT=8081: permission denied")


def _nft_fails(fake):
    fake.system.respond(["nft", "-f"], rc=1, err="Error: Could not process rule: Operation not permitted")


def _restart_fails(fake):
    fake.system.respond(["systemctl", "restart", WEB], rc=1, err="Job for web.service failed")


def _never_listens(fake):
    fake.stuck = True


@little_endian
@pytest.mark.parametrize("sabotage, step", [
    (_validation_fails, "apply: validating the new configuration"),
    (_nft_fails, "apply: opening port 8081 in the Portcullis firewall"),
    (_restart_fails, "apply: restarting web.service"),
    (_never_listens, "apply: waiting for web.service to listen on port 8081"),
])
def test_a_failed_apply_step_rolls_back_everything(tmp_path, fast, sabotage, step):
    fake = Web(tmp_path, table=TABLE_8080)
    before = fake.tree()
    sabotage(fake)
    with pytest.raises(MoveError) as error:
        apply(fake.web, params(validate=["/usr/sbin/web", "--check"]))
    message = str(error.value)
    assert message.startswith(step + " failed: ")
    assert "an immediate rollback put the previous configuration back" in message
    assert error.value.details == {"rolled_back": True, "host_state": "the previous configuration"}
    assert fake.web.move.engine.armed() is None and fake.system.timers == {}
    assert fake.tree() == before and fake.system.live_table() == TABLE_8080
    assert "systemctl restart web.service" in fake.system.script_commands()


# --- commit, rollback --------------------------------------------------------------------------------------

@little_endian
@pytest.mark.parametrize("persisted", [True, False])
def test_commit_persists_the_moved_rule_only_where_it_was_persisted(tmp_path, persisted):
    fake = Web(tmp_path, table=TABLE_8080, persisted=persisted)
    token = apply(fake.web, params())["token"]
    result = commit(fake.web, token)
    assert result["committed"] is True
    engine = fake.web.move.engine
    assert engine.armed() is None and engine.finished(token).claimed_by == "commit"
    assert fake.system.timers == {} and fake.system.live_table() == TABLE_8081
    assert fake.read(CONFIG) == "PORT=8081\n"
    if persisted:
        assert result["firewall_persistence"]["file"] is True
        assert fake.read(PERSIST_FILE) == apply_script(TABLE_8081)
    else:
        assert result["firewall_persistence"] == {} and fake.read(PERSIST_FILE) is None


@little_endian
def test_commit_after_the_timer_fired_says_rolled_back(tmp_path):
    fake = Web(tmp_path, table=TABLE_8080)
    before = fake.tree()
    token = apply(fake.web, params())["token"]
    fake.fire()
    with pytest.raises(RolledBack, match="commit: too late: .* its rollback timer put the previous configuration"):
        commit(fake.web, token)
    assert fake.tree() == before and fake.system.live_table() == TABLE_8080


@little_endian
def test_rollback_restores_and_waits_for_the_previous_port(tmp_path):
    fake = Web(tmp_path, table=TABLE_8080)
    before = fake.tree()
    token = apply(fake.web, params())["token"]
    result = rollback(fake.web, token)
    assert result["rolled_back"] is True and result["listening_after"] == ["0.0.0.0:8080"]
    assert result["outcome"].startswith("an immediate rollback put the previous configuration back")
    assert fake.tree() == before and fake.system.live_table() == TABLE_8080
    assert fake.web.move.engine.finished(token).claimed_by == "now"


@little_endian
def test_rollback_of_a_committed_move_says_it_was_committed(tmp_path, fast):
    fake = Web(tmp_path)
    token = apply(fake.web, params())["token"]
    commit(fake.web, token)
    try:
        result = rollback(fake.web, token)
    except MoveError as exc:
        outcome, rolled_back = str(exc), exc.details.get("rolled_back")
    else:
        outcome, rolled_back = result["outcome"], result["rolled_back"]
    assert "committed" in outcome and rolled_back is not True
    assert os.path.exists(host_file(fake.root, CONFIG))
