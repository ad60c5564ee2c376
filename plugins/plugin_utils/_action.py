# Copyright (c) Portcullis contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""What the collection's action plugins share: which connections reach a host over the network,
validating a task's arguments against its module's spec on the controller, and the step driver (StepAction):
run a module step over a new connection, wait for a deadline, poll reachability, find the host's address.

Private to the collection.
"""

from __future__ import annotations

import os
import re
import time

from ansible.errors import AnsibleActionFail, AnsibleError
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.plugins.action import ActionBase

from ansible_collections.portcullis.hardening.plugins.plugin_utils._probe import resolve_addresses
from ansible_collections.portcullis.hardening.plugins.plugin_utils._ssh_target import SshTargetError, ssh_config

SSH_CONNECTIONS = ("ssh", "ansible.builtin.ssh")
# Connections whose target is a network address: the controller can probe it and open new connections to it.
NETWORK_CONNECTIONS = SSH_CONNECTIONS + ("paramiko", "paramiko_ssh", "ansible.builtin.paramiko_ssh",
                                         "ansible.netcommon.libssh")


def validated(args, argument_spec):
    """The task's arguments as the module will see them (types converted, defaults filled).

    Raises ValueError naming every bad argument, so that nothing runs on the host with bad input.
    """
    result = ArgumentSpecValidator(argument_spec).validate(args)
    if result.error_messages:
        raise ValueError("; ".join(result.error_messages))
    return result.validated_parameters


# ssh arguments for a connection of its own: no ControlMaster to reuse, none to leave behind.
FRESH_SSH_ARGS = "-o ControlMaster=no -o ControlPath=none"
_CONTROL_OPTIONS = re.compile(r"(?i)-o\s*['\"]?Control(?:Master|Persist|Path)\s*=?\s*[^\s'\"]*['\"]?")


def fresh_ssh_args(ssh_args):
    """`ssh_args` for a connection of its own: the operator's options (a ProxyJump, ciphers...) without their
    connection sharing, after FRESH_SSH_ARGS (ssh takes the first value of an option)."""
    kept = " ".join(_CONTROL_OPTIONS.sub(" ", ssh_args or "").split())
    return (FRESH_SSH_ARGS + " " + kept).strip()


def connection_port(connection, task_vars=None, warn=None):
    """The TCP port a connection really uses, or None when it does not go over the network.

    ansible_port when set; else, for ssh, what OpenSSH itself resolves (`ssh -G`: ~/.ssh/config, -o Port= in the
    ssh args); else 22, with a warning through `warn` saying why.
    """
    if connection.transport not in NETWORK_CONNECTIONS:
        return None
    try:
        port = connection.get_option("port")
    except (AnsibleError, KeyError):
        port = None
    if port:
        return int(port)
    if connection.transport in SSH_CONNECTIONS:
        try:
            resolved = ssh_target(connection, task_vars)
        except SshTargetError as exc:
            if warn:
                warn("ansible_port is not set and %s: assuming port 22" % exc)
            return 22
        if resolved.fallback and warn:
            warn(resolved.fallback)
        return resolved.port
    return 22


def ssh_target(connection, task_vars=None):
    """Where an ssh connection really goes (SshTarget: hostname, port, proxies), as `ssh -G` resolves it with the
    connection's settings."""
    options = {}
    for name in ("ssh_args", "ssh_common_args", "ssh_extra_args", "host", "remote_user", "port", "ssh_executable"):
        try:
            options[name] = connection.get_option(name) or ""
        except (AnsibleError, KeyError):
            options[name] = ""
    host = options["host"] or (task_vars or {}).get("ansible_host") or (task_vars or {}).get("inventory_hostname")
    return ssh_config(host, user=options["remote_user"] or None, port=options["port"] or None,
                      ssh_args=options["ssh_args"], ssh_common_args=options["ssh_common_args"],
                      ssh_extra_args=options["ssh_extra_args"], ssh_executable=options["ssh_executable"] or "ssh")


def on_a_new_connection(connection, function, connect_timeout, port=None):
    """Run `function` over a new connection (to `port` when given): a cached one may outlive a lockout.

    For SSH: no ControlMaster to reuse, pipelining (one connection, not sftp, then scp, then piped, each
    waiting out the connect timeout) and no reconnection retries, so an answer comes within
    `connect_timeout`. The shared master the play's ordinary tasks use is bypassed (ControlPath=none), not
    stopped: stopping it would make the next task log in again, for no proof. Other connections (paramiko)
    keep their session in the plugin, so it is dropped before and after. Returns what `function` returns, or
    a failed, unreachable result when the connection fails. The connection's options are put back afterwards.
    """
    ssh = connection.transport in SSH_CONNECTIONS
    _forget_session(connection, ssh)
    fresh = {}
    if ssh:
        fresh = {"ssh_args": fresh_ssh_args(connection.get_option("ssh_args")), "pipelining": True,
                 "reconnection_retries": 0,
                 "timeout": int(connect_timeout)}
    if port is not None:
        fresh["port"] = port
    saved = {}
    for option, value in fresh.items():
        saved[option] = connection.get_option(option)
        connection.set_option(option, value)
    try:
        return function()
    except AnsibleError as exc:  # unreachable, or refused: the new connection failed
        return {"failed": True, "unreachable": True, "msg": str(exc)}
    finally:
        for option, value in saved.items():
            connection.set_option(option, value)
        _forget_session(connection, ssh)


def _forget_session(connection, ssh):
    """Make the connection plugin connect anew: for SSH, every command is a new ssh process already."""
    if ssh:
        connection.close()
    else:
        connection.reset()


def _confirmed_extras(confirmation):
    """What a confirming step adds to the result (the firewall's persistence)."""
    return {key: confirmation[key] for key in ("persistence",) if key in confirmation}


class StepAction(ActionBase):
    """The step driver of the changing modules' action plugins: every step that proves something runs over a new
    connection, and every wait is bounded."""

    TRANSFERS_FILES = False
    MODULE = None
    # After a rollback timer's deadline: how long to wait for the host to answer again.
    REACHABLE_AGAIN_ATTEMPTS = 6
    REACHABLE_AGAIN_PAUSE = 5

    def _validated_args(self, argument_spec, **constraints):
        """The task's arguments as the module will see them, checked by ansible-core's own validator; ValueError
        naming every bad argument, before anything runs on the host."""
        try:
            _result, params = self.validate_argument_spec(argument_spec=argument_spec, **constraints)
        except AnsibleActionFail as exc:
            raise ValueError(str(exc.message if hasattr(exc, "message") else exc))
        return params

    def _step(self, step, port=None, fresh=True, task_vars=None, **extra):
        """Run the module's `step` (over a new connection to `port` unless fresh=False)."""
        module_args = dict(self._task.args, step=step, **extra) if step else dict(self._task.args, **extra)

        def execute():
            return self._execute_module(module_name=self.MODULE, module_args=module_args,
                                        task_vars=task_vars or self._task_vars)
        if not fresh:
            if port is not None:
                self._connection.set_option("port", port)
            return execute()
        return on_a_new_connection(self._connection, execute, self._connect_timeout, port=port)

    def _answers(self, port=None, timeout=None):
        """Whether a new connection (to `port`) logs in and runs a command: (bool, error text)."""
        outcome = on_a_new_connection(self._connection, lambda: self._low_level_execute_command("true"),
                                      timeout or self._connect_timeout, port=port)
        if not outcome.get("failed") and outcome.get("rc") == 0:
            return True, ""
        return False, (outcome.get("msg") or outcome.get("stderr") or "rc=%s" % outcome.get("rc")).strip()

    def _test_hold(self, step):
        """Test hook for the fault matrix: PORTCULLIS_TEST_HOLD_AFTER=step:seconds makes the controller stall after
        `step` (as a lost or slow controller would), so a test can restart the host or let the timer fire then."""
        wanted, _sep, seconds = os.environ.get("PORTCULLIS_TEST_HOLD_AFTER", "").partition(":")
        if wanted == step and seconds.isdigit():
            time.sleep(min(int(seconds), 600))

    def _wait_past(self, deadline, margin=2):
        """Sleep until `deadline` (time.monotonic()) plus a margin."""
        time.sleep(max(0.0, deadline - time.monotonic()) + margin)

    def _reachable_again(self, port=None):
        """Poll with new connections (bounded) until the host answers; True when it did."""
        for attempt in range(self.REACHABLE_AGAIN_ATTEMPTS):
            answers, _error = self._answers(port)
            if answers:
                return True
            if attempt + 1 < self.REACHABLE_AGAIN_ATTEMPTS:
                time.sleep(self.REACHABLE_AGAIN_PAUSE)
        return False

    def _ssh_target(self):
        """SshTarget of this host's ssh connection, or None (not ssh, or ssh -G failed)."""
        if self._connection.transport not in SSH_CONNECTIONS:
            return None
        try:
            return ssh_target(self._connection, self._task_vars)
        except SshTargetError:
            return None

    def _host_address(self):
        return self._task_vars.get("ansible_host") or self._task_vars.get("inventory_hostname")

    def _probe_address(self):
        try:
            return resolve_addresses([self._host_address()])[0]
        except (ValueError, IndexError):
            return self._host_address()

    def _confirm(self, result, rollback, task_vars, done, previous):
        """Commit the armed change over a new connection; when that fails, wait out the host's timer and find out
        what it did. `done` says what was applied (such as "The new rules were applied"), `previous` what the
        timer puts back ("the previous rules")."""
        deadline = time.monotonic() + rollback["timeout"]
        confirmation = self._step(None, task_vars=task_vars, confirm=rollback["token"])
        if not confirmation.get("failed"):
            result.update(confirmed=True, **_confirmed_extras(confirmation))
            result.pop("rollback", None)
            return result
        if not confirmation.get("unreachable"):
            if confirmation.get("committed"):  # committed already, by a confirmation whose answer was lost
                result.update(confirmed=True)
                result.pop("rollback", None)
                return result
            # The host answered, and said what it did instead (the timer fired, persisting failed and it rolled back).
            result.update(failed=True, confirmed=False, rolled_back=confirmation.get("rolled_back"),
                          host_state=confirmation.get("host_state", "unknown"),
                          msg="%s, but the confirmation over a new connection failed: %s"
                          % (done, confirmation.get("msg", "").strip()))
            return result

        # No new connection: the host puts the previous state back when its timer fires. Wait for that (bounded),
        # then ask the host, over a new connection, what became of the change.
        self._wait_past(deadline)
        if not self._reachable_again():
            result.update(failed=True, confirmed=False, rolled_back=None, host_state="unknown", msg=(
                "%s, but no new connection from the controller could confirm them (%s). The host's rollback timer "
                "%s was due to put back %s after %d s, but the host still does not answer new connections: its "
                "state is unknown" % (done, confirmation.get("msg", "no answer").strip(), rollback["unit"], previous,
                                      rollback["timeout"])))
            return result
        late = self._step(None, task_vars=task_vars, confirm=rollback["token"])
        if not late.get("failed") or late.get("committed"):  # still armed (the timer had not fired) and reachable now: committed, late
            result.update(confirmed=True, **_confirmed_extras(late))
            result.pop("rollback", None)
            self._display.warning("%s: the first confirmation failed (%s); a later new connection confirmed the "
                                  "change" % (self.MODULE, confirmation.get("msg", "").strip()))
            return result
        result.update(failed=True, confirmed=False, rolled_back=late.get("rolled_back"),
                      host_state=late.get("host_state", "unknown"), msg=(
                          "%s, but no new connection from the controller could confirm them before the deadline "
                          "(%s). %s; a new connection works again." % (
                              done, confirmation.get("msg", "no answer").strip(), late.get("msg", "").strip())))
        return result
