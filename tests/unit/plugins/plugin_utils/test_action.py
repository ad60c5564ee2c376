# Copyright (c) Portcullis contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The action plugins: a task's arguments are checked with its module's spec before anything runs on the host, a
new connection shares nothing with the old one, and when a step cannot be proven the task says what the host is
in: the firewall's confirm paths and ssh_port's give-up paths, with the plugins' own steps stubbed out."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest

from ansible_collections.portcullis.hardening.plugins.action import firewall as firewall_action
from ansible_collections.portcullis.hardening.plugins.action import ssh_port as ssh_port_action
from ansible_collections.portcullis.hardening.plugins.module_utils._specs import (
    FIREWALL_SPEC,
    PORT_AUDIT_SPEC,
    SERVICE_PORT_SPEC,
    SSH_PORT_SPEC,
)
from ansible_collections.portcullis.hardening.plugins.modules import firewall, port_audit, service_port, ssh_port
from ansible_collections.portcullis.hardening.plugins.plugin_utils._action import (
    FRESH_SSH_ARGS,
    fresh_ssh_args,
    on_a_new_connection,
    validated,
)

TOKEN = "0123456789ab"
TASK_VARS = {"ansible_host": "192.0.2.10", "inventory_hostname": "web1"}


# --- validation --------------------------------------------------------------------------------------------------

def test_the_modules_use_the_specs_the_action_plugins_check():
    assert firewall.ARGUMENT_SPEC is FIREWALL_SPEC and port_audit.ARGUMENT_SPEC is PORT_AUDIT_SPEC
    assert ssh_port.ARGUMENT_SPEC is SSH_PORT_SPEC and service_port.ARGUMENT_SPEC is SERVICE_PORT_SPEC


def test_arguments_are_typed_and_defaulted_as_the_module_sees_them():
    params = validated({"probe": "yes", "probe_timeout": "2.5", "probe_ports": ["2222"]}, PORT_AUDIT_SPEC)
    assert (params["probe"], params["probe_timeout"], params["probe_ports"], params["probe_concurrency"]) == (
        True, 2.5, [2222], 32)
    params = validated({"port": "2222"}, SSH_PORT_SPEC)
    assert (params["port"], params["previous_ports"], params["step"], params["confirm_timeout"]) == (
        2222, [22], "plan", 120)


@pytest.mark.parametrize("spec, args, words", [
    (PORT_AUDIT_SPEC, {"probe_timeout": "soon"}, ["probe_timeout", "float"]),
    (PORT_AUDIT_SPEC, {"probe_ports": ["ssh"]}, ["probe_ports", "int"]),
    (FIREWALL_SPEC, {"policy": "accept"}, ["policy", "accept", "drop, reject"]),
    (FIREWALL_SPEC, {"confirm_timeout": "a minute"}, ["confirm_timeout", "int"]),
    (SSH_PORT_SPEC, {}, ["port"]),
    (SSH_PORT_SPEC, {"port": 2222, "selinux": "maybe"}, ["selinux", "maybe"]),
    (SERVICE_PORT_SPEC, {"service": "web.service", "port": 8081, "restart": "bounced"}, ["restart", "bounced"]),
])
def test_bad_arguments_fail_naming_the_option(spec, args, words):
    with pytest.raises(ValueError) as error:
        validated(args, spec)
    for word in words:
        assert word in str(error.value), str(error.value)


@pytest.mark.parametrize("operator, kept", [
    (None, ""),
    ("-C -o ControlMaster=auto -o ControlPersist=60s", "-C"),  # Ansible's default
    ("-o ProxyJump=bastion -o ControlPath=/tmp/cp-%h -o 'ControlPersist=yes'", "-o ProxyJump=bastion"),
    ("-o controlmaster=auto -oControlPersist=10m -o Ciphers=aes256-gcm@openssh.com",
     "-o Ciphers=aes256-gcm@openssh.com"),
])
def test_a_new_connection_keeps_the_operators_ssh_options_but_never_shares_one(operator, kept):
    args = fresh_ssh_args(operator)
    assert args.startswith(FRESH_SSH_ARGS)  # ssh takes the first value of an option
    assert args[len(FRESH_SSH_ARGS):].strip() == kept


@pytest.mark.parametrize("transport, stops_the_master", [("ssh", False), ("paramiko", True)])
def test_a_new_connection_bypasses_the_shared_ssh_master_and_puts_the_options_back(transport, stops_the_master):
    connection = Connection()
    connection.transport = transport
    connection.options.update(pipelining=False, reconnection_retries=3, timeout=10)
    original = dict(connection.options)
    seen = {}

    def function():
        seen.update(connection.options)
        return {"answered": True}
    assert on_a_new_connection(connection, function, 7, port=2222) == {"answered": True}
    assert seen["port"] == 2222
    if transport == "ssh":
        assert seen["ssh_args"].startswith(FRESH_SSH_ARGS) and seen["timeout"] == 7
        assert seen["reconnection_retries"] == 0 and seen["pipelining"] is True
    # ssh -O stop would make the play's next ordinary task log in again: only a session kept in the plugin goes.
    assert getattr(connection, "resets", 0) == (2 if stops_the_master else 0)
    assert connection.options == original


# --- the action plugins, with their steps stubbed out -------------------------------------------------------------

class Connection:
    """What the plugins use of an ssh connection plugin."""

    transport = "ssh"

    def __init__(self, port=22):
        self.options = {"port": port, "host": "192.0.2.10", "remote_user": "root", "ssh_args": "-C"}
        self._shell = SimpleNamespace(tmpdir=None)

    def get_option(self, name):
        return self.options.get(name)

    def set_option(self, name, value):
        self.options[name] = value

    def reset(self):
        self.resets = getattr(self, "resets", 0) + 1

    def close(self):
        self.closes = getattr(self, "closes", 0) + 1


class Host:
    """Stands in for the host behind the plugin's steps: each of _step, _answers, _wait_past and _reachable_again
    answers from a script and records how it was called."""

    def __init__(self, action, steps, answers=None, reachable_again=True):
        self.steps = {name: list(results) for name, results in steps.items()}
        self.answers = answers or {}
        self.reachable_again = reachable_again
        self.step_calls = []
        self.answer_calls = []
        self.waits = []
        self.reachability = []
        action._step = self.step
        action._answers = self.answer
        action._wait_past = self.wait_past
        action._reachable_again = self.reachable

    def step(self, step, port=None, fresh=True, task_vars=None, **extra):
        self.step_calls.append((step, port, fresh, extra))
        results = self.steps[step]
        return results.pop(0) if len(results) > 1 else results[0]

    def answer(self, port=None, timeout=None):
        self.answer_calls.append(port)
        return self.answers.get(port, (True, ""))

    def wait_past(self, deadline, margin=2):
        self.waits.append(deadline)

    def reachable(self, port=None):
        self.reachability.append(port)
        return self.reachable_again

    def ports(self, step):
        return [port for name, port, _fresh, _extra in self.step_calls if name == step]


def make_action(module, args, check_mode=False):
    task = SimpleNamespace(args=dict(args), async_val=0, check_mode=check_mode, action=module.ActionModule.MODULE)
    connection = Connection()
    action = module.ActionModule(task, connection, SimpleNamespace(check_mode=check_mode), None, None, None)
    return action, connection


UNREACHABLE = {"failed": True, "unreachable": True,
               "msg": "Failed to connect to the host via ssh: Connection timed out"}


# --- firewall: confirm -------------------------------------------------------------------------------------------

def applied(timeout=60):
    return {"changed": True, "rules": "table inet portcullis {}\n", "management_ports": [], "confirmed": False,
            "rollback": {"token": TOKEN, "unit": "portcullis-rollback-%s.timer" % TOKEN, "timeout": timeout,
                         "expires_at": 1700000060}}


def run_firewall(confirmations, reachable_again=True, check_mode=False):
    action, _connection = make_action(firewall_action, {"allow": [{"port": 22}]}, check_mode=check_mode)
    host = Host(action, {None: [applied()] + confirmations}, reachable_again=reachable_again)
    started = time.monotonic()
    result = action.run(task_vars=TASK_VARS)
    return result, host, started


def test_firewall_confirms_over_a_new_connection_with_the_token():
    result, host, _started = run_firewall([{"changed": True, "confirmed": True, "persistence": {"file": True}}])
    assert not result.get("failed") and result["confirmed"] is True and "rollback" not in result
    assert result["persistence"] == {"file": True}
    (first, _port, first_fresh, first_extra), (second, _port2, second_fresh, second_extra) = host.step_calls
    assert first_fresh is False and first_extra == {}  # applying runs over the task's connection
    assert second_fresh is True and second_extra == {"confirm": TOKEN}  # confirming over a new one
    assert host.waits == [] and host.reachability == []


def test_firewall_in_check_mode_confirms_nothing():
    result, host, _started = run_firewall([], check_mode=True)
    assert len(host.step_calls) == 1 and host.waits == []
    assert result["confirmed"] is False and result["rollback"]["token"] == TOKEN


def test_firewall_unreachable_then_the_host_says_rolled_back():
    too_late = {"failed": True, "rolled_back": True, "host_state": "the previous configuration",
                "msg": "confirm: too late: the firewall change %s (firewall table), armed at 2024-01-01 00:00:00 UTC, "
                       "so its rollback timer put the previous configuration back at 2024-01-01 00:01:00 UTC" % TOKEN}
    result, host, started = run_firewall([UNREACHABLE, too_late])
    assert result["failed"] is True and result["confirmed"] is False
    assert result["rolled_back"] is True and result["host_state"] == "the previous configuration"
    message = result["msg"]
    assert "no new connection from the controller could confirm them before the deadline" in message
    assert "Connection timed out" in message  # why the first confirmation failed
    assert "its rollback timer put the previous configuration back" in message  # what the host says it did
    assert "a new connection works again" in message
    assert len(host.waits) == 1 and started + 60 - 1 <= host.waits[0] <= time.monotonic() + 60  # the timer's deadline
    assert host.reachability == [None]
    assert [extra for _step, _port, _fresh, extra in host.step_calls[1:]] == [{"confirm": TOKEN}] * 2


@pytest.mark.parametrize("rolled_back, host_state", [
    (True, "the previous configuration"),  # persisting failed while armed: rolled back at once
    (False, "unchanged: another change is pending"),
])
def test_firewall_confirm_answered_by_the_host_is_reported_as_is(rolled_back, host_state):
    answered = {"failed": True, "rolled_back": rolled_back, "host_state": host_state,
                "msg": "confirm: enabling nftables.service for boot failed (systemctl enable nftables.service, rc=1): "
                       "Access denied; an immediate rollback put the previous configuration back at 12:00 UTC"}
    result, host, _started = run_firewall([answered])
    assert result["failed"] is True and result["confirmed"] is False
    assert (result["rolled_back"], result["host_state"]) == (rolled_back, host_state)
    assert result["msg"] == ("The new rules were applied, but the confirmation over a new connection failed: "
                             + answered["msg"])
    assert host.waits == [] and host.reachability == []  # the host answered: nothing to wait for
    assert len(host.step_calls) == 2


def test_firewall_host_that_never_answers_again_is_in_an_unknown_state():
    result, host, _started = run_firewall([UNREACHABLE], reachable_again=False)
    assert result["failed"] is True and result["confirmed"] is False
    assert result["rolled_back"] is None and result["host_state"] == "unknown"
    assert "its state is unknown" in result["msg"] and "portcullis-rollback-%s.timer" % TOKEN in result["msg"]
    assert len(host.step_calls) == 2 and len(host.waits) == 1  # no late confirmation to a host that does not answer


def test_firewall_a_late_confirmation_that_gets_through_commits():
    result, host, _started = run_firewall([UNREACHABLE, {"changed": True, "confirmed": True, "persistence": {}}])
    assert not result.get("failed") and result["confirmed"] is True and "rollback" not in result
    assert len(host.step_calls) == 3


def test_firewall_a_late_confirmation_of_a_change_already_committed_is_not_reported_rolled_back():
    committed = {"failed": True, "msg": "confirm: the firewall change %s (firewall table), armed at 2024-01-01 "
                                        "00:00:00 UTC: it was committed at 2024-01-01 00:00:05 UTC; nothing more to do"
                                        % TOKEN}
    result, _host, _started = run_firewall([UNREACHABLE, committed])
    assert result.get("rolled_back") is not True
    assert result.get("host_state") != "previous rules restored"


# --- ssh_port: giving up -----------------------------------------------------------------------------------------

PLANNED = {"changed": True, "port": 2222, "ports_before": [22], "moved_ports": [22],
           "listening_before": ["0.0.0.0:22", "[::]:22"], "socket_activated": False, "service": "ssh.service",
           "warnings": []}
MOVING = {"changed": True, "token": TOKEN, "listening_transition": ["0.0.0.0:22", "0.0.0.0:2222"]}
FINISHED = {"changed": True, "listening_after": ["0.0.0.0:2222", "[::]:2222"]}
COMMITTED = {"changed": True, "committed": True, "firewall_persistence": {}}
UNDONE = {"changed": True, "rolled_back": True, "listening_after": ["0.0.0.0:22", "[::]:22"],
          "outcome": "an immediate rollback put the previous configuration back at 2024-01-01 00:00:09 UTC"}


@pytest.fixture
def ssh_move(monkeypatch):
    """Run the ssh_port action from 22 to 2222 against scripted step results; the host keys match unless told."""
    def run(steps, answers=None, reachable_again=True, same_key=(True, "the same ed25519 host key")):
        keys = []

        def same_host_key(address, old_port, new_port, timeout, key_types=None):
            keys.append((address, old_port, new_port))
            return same_key

        monkeypatch.setattr(ssh_port_action, "same_host_key", same_host_key)
        monkeypatch.setattr(ssh_port_action, "try_connect", lambda address, port, timeout: ("closed", None))
        action, connection = make_action(ssh_port_action, {"port": 2222})
        host = Host(action, dict({"plan": [PLANNED], "transition": [MOVING], "finalize": [FINISHED],
                                  "commit": [COMMITTED]}, **steps), answers=answers,
                    reachable_again=reachable_again)
        result = action.run(task_vars=TASK_VARS)
        host.keys = keys
        return result, host, connection
    return run


def test_ssh_port_moves_proving_each_step_over_the_new_port(ssh_move):
    result, host, connection = ssh_move({})
    assert not result.get("failed") and result["changed"] is True and result["ansible_port"] == 2222
    assert [(step, port) for step, port, _fresh, _extra in host.step_calls] == [
        ("plan", 22), ("transition", 22), ("finalize", 2222), ("commit", 2222)]
    assert host.keys == [("192.0.2.10", 22, 2222)]
    assert result["old_port_closed"] == {"22": True}
    assert connection.options["port"] == 2222  # what runs after the task uses the port sshd answers on


@pytest.mark.parametrize("rollbacks, reachable_again, tried, rolled_back, words", [
    ({2222: UNDONE}, True, [2222], True,
     ["The previous configuration was restored (an immediate rollback", "sshd listens on 0.0.0.0:22, [::]:22 again"]),
    ({2222: UNREACHABLE, 22: UNDONE}, True, [2222, 22], True, ["The previous configuration was restored"]),
    ({2222: UNREACHABLE, 22: UNREACHABLE}, True, [2222, 22], True,
     ["The rollback failed too", "the host's rollback timer restored the previous configuration, and a new "
      "connection on port 22 works again"]),
    ({2222: UNREACHABLE, 22: UNREACHABLE}, False, [2222, 22], None, ["its state is unknown"]),
])
def test_ssh_port_a_failed_commit_rolls_back_over_the_new_port_first(ssh_move, rollbacks, reachable_again, tried,
                                                                     rolled_back, words):
    # Regression "a failed commit makes _give_up try the old, now closed, port": after finalize only the new port
    # is open, so the rollback must go there first.
    result, host, connection = ssh_move({"commit": [UNREACHABLE], "rollback": [rollbacks[port] for port in tried]},
                                        reachable_again=reachable_again)
    assert host.ports("rollback") == tried and tried[0] == 2222
    assert all(extra == {"token": TOKEN} for step, _port, _fresh, extra in host.step_calls if step == "rollback")
    assert result["failed"] is True and result["failed_step"] == "commit"
    assert result["rolled_back"] is rolled_back
    assert result["msg"].startswith("the confirmation over a new connection on port 2222 failed: Failed to connect")
    for word in words:
        assert word in result["msg"]
    if rolled_back is None:
        assert result["host_state"] == "unknown" and host.reachability == [22]
    else:
        assert result["ansible_port"] == 22 and connection.options["port"] == 22
    assert bool(host.waits) is (len(tried) == 2 and rollbacks[22] is UNREACHABLE)  # the timer waited for, not guessed


def test_ssh_port_a_commit_the_host_answered_rolled_back_is_reported_without_another_rollback(ssh_move):
    refused = {"failed": True, "rolled_back": True, "host_state": "the previous configuration",
               "msg": "commit: too late: the ssh-port change %s ... its rollback timer put the previous configuration "
                      "back" % TOKEN}
    result, host, connection = ssh_move({"commit": [refused]})
    assert result["failed"] is True and result["failed_step"] == "commit" and result["rolled_back"] is True
    assert result["host_state"] == "the previous configuration" and result["ansible_port"] == 22
    assert "its rollback timer put the previous configuration back" in result["msg"]
    assert host.ports("rollback") == [] and host.waits == []
    assert connection.options["port"] == 22


def test_ssh_port_a_host_key_mismatch_on_the_new_port_rolls_back_before_any_login_there(ssh_move):
    mismatch = (False, "192.0.2.10:22 presents the ssh-ed25519 host key SHA256:aaa, 192.0.2.10:2222 another one, "
                       "ssh-ed25519 SHA256:bbb: not the same server")
    result, host, connection = ssh_move({"rollback": [UNDONE]}, same_key=mismatch)
    assert result["failed"] is True and result["failed_step"] == "host key on 2222"
    assert result["rolled_back"] is True and result["ansible_port"] == 22
    assert "the server there must present the host key of the one on port 22" in result["msg"]
    assert "not the same server" in result["msg"]
    assert "The previous configuration was restored" in result["msg"]
    assert host.ports("rollback") == [22]  # over the old port: it is still open during the transition
    assert host.ports("finalize") == [] and host.ports("commit") == []
    assert 2222 not in host.answer_calls  # nothing logs in on a port another server may hold
    assert connection.options["port"] == 22


def test_ssh_port_a_new_port_that_does_not_answer_rolls_back_over_the_old_one(ssh_move):
    result, host, _connection = ssh_move({"rollback": [UNDONE]}, answers={2222: (False, "Connection refused")})
    assert result["failed_step"] == "new connection on 2222" and result["rolled_back"] is True
    assert "Connection refused" in result["msg"]
    assert host.ports("rollback") == [22] and host.ports("finalize") == []
