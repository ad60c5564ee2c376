# Copyright (c) Portcullis contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Controller side of moving sshd: find it, then drive plan, transition, finalize and commit on the host,
proving each step with a new SSH connection (a reused ControlPersist master would prove nothing)."""

from __future__ import annotations

import time

from ansible.plugins.action import ActionBase

from ansible_collections.portcullis.hardening.plugins.module_utils._sshd import SshdConfigError, parse_addresses
from ansible_collections.portcullis.hardening.plugins.modules.ssh_port import ARGUMENT_SPEC
from ansible_collections.portcullis.hardening.plugins.plugin_utils._action import (
    NETWORK_CONNECTIONS,
    connection_port,
    on_a_new_connection,
    validated,
)
from ansible_collections.portcullis.hardening.plugins.plugin_utils._probe import resolve_addresses, try_connect

MODULE = "portcullis.hardening.ssh_port"
CONNECT_TIMEOUT = 10
# After the rollback timer's deadline: how long to wait for the old port to answer again.
REACHABLE_AGAIN_ATTEMPTS = 6
REACHABLE_AGAIN_PAUSE = 5
OLD_PORT_PROBE_TIMEOUT = 3


class MoveFailed(Exception):
    """A step failed; `details` go into the task result."""

    def __init__(self, msg, **details):
        super().__init__(msg)
        self.details = details


def _ports(name, values):
    for index, port in enumerate(values):
        if not 1 <= port <= 65535:
            raise ValueError("%s[%d]: %r is outside 1-65535" % (name, index, port))


class ActionModule(ActionBase):
    TRANSFERS_FILES = False

    def _validate(self, args):
        params = validated(args, ARGUMENT_SPEC)
        if params["step"] != "plan" or params["token"] is not None:
            raise ValueError("step and token: are set by the ssh_port action plugin itself; do not set them")
        if not 1 <= params["port"] <= 65535:
            raise ValueError("port: %r is outside 1-65535" % params["port"])
        _ports("previous_ports", params["previous_ports"])
        if not 10 <= params["confirm_timeout"] <= 3600:
            raise ValueError("confirm_timeout: %r must be within 10-3600 seconds" % params["confirm_timeout"])
        if params["listen_addresses"] is not None:
            if not params["listen_addresses"]:
                raise ValueError("listen_addresses: is empty; leave it out to keep the addresses sshd listens on")
            parse_addresses(params["listen_addresses"])
        return params

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        self._task_vars = task_vars
        args = dict(self._task.args)
        try:
            params = self._validate(args)
        except (ValueError, TypeError, SshdConfigError) as exc:
            result.update(failed=True, msg=str(exc))
            return result
        if self._connection.transport not in NETWORK_CONNECTIONS:
            result.update(failed=True, msg="ssh_port moves the port this task connects on, so it needs a network "
                          "connection (ssh or paramiko); this host uses %r" % self._connection.transport)
            return result
        self._args = args
        self._connect_timeout = max(3, min(CONNECT_TIMEOUT, params["confirm_timeout"] // 4))
        steps = result["steps"] = []
        try:
            found = self._find_sshd(params, steps)
            result["found_on"] = found
            result.update(self._move(params, found, steps))
        except MoveFailed as exc:
            result.update(exc.details)
            result.update(failed=True, msg=str(exc))
        # Whatever runs on this connection after the task (removing its temporary directory) uses the port
        # sshd answers on now.
        if result.get("ansible_port") or result.get("found_on"):
            self._connection.set_option("port", result.get("ansible_port") or result["found_on"])
        return result

    # --- talking to the host ---------------------------------------------------------------------

    def _module(self, step, port, fresh=True, **extra):
        """Run the module's `step` over a connection to `port` (a new one unless fresh=False)."""
        module_args = dict(self._args, step=step, **extra)

        def execute():
            return self._execute_module(module_name=MODULE, module_args=module_args, task_vars=self._task_vars)
        if not fresh:
            self._connection.set_option("port", port)
            return execute()
        return on_a_new_connection(self._connection, execute, self._connect_timeout, port=port)

    def _answers(self, port):
        """Whether a new SSH connection to `port` logs in and runs a command: (bool, error text)."""
        outcome = on_a_new_connection(self._connection, lambda: self._low_level_execute_command("true"),
                                      self._connect_timeout, port=port)
        if not outcome.get("failed") and outcome.get("rc") == 0:
            return True, ""
        return False, (outcome.get("msg") or outcome.get("stderr") or "rc=%s" % outcome.get("rc")).strip()

    def _find_sshd(self, params, steps):
        """The port sshd answers on: the connection's, else the wanted one, else a previous one."""
        candidates = []
        for port in [connection_port(self._connection), params["port"]] + params["previous_ports"]:
            if port not in candidates:
                candidates.append(port)
        errors = []
        for port in candidates:
            answers, error = self._answers(port)
            if answers:
                steps.append("found sshd on %d" % port)
                return port
            errors.append("%d: %s" % (port, error))
        raise MoveFailed("No new SSH connection to this host succeeded on any of the ports %s; nothing was "
                         "changed. %s" % (", ".join(str(port) for port in candidates), " | ".join(errors)),
                         failed_step="find sshd", unreachable_ports=candidates)

    def _host_address(self):
        return self._task_vars.get("ansible_host") or self._task_vars.get("inventory_hostname")

    # --- the move --------------------------------------------------------------------------------

    def _move(self, params, found, steps):
        new = params["port"]
        planned = self._module("plan", found, fresh=False)
        steps.append("plan")
        if planned.get("failed"):
            raise MoveFailed(planned.get("msg", "plan failed"), failed_step="plan",
                             **self._passthrough(planned))
        summary = self._summary(planned)
        if not planned["changed"]:
            summary.update(changed=False, ansible_port=new, listening_after=planned["listening_before"])
            return summary
        if self._play_context.check_mode:
            summary.update(changed=True, ansible_port=found, listening_after=planned["listening_before"])
            return summary

        self._armed_at = time.monotonic()
        moving = self._module("transition", found, fresh=False)
        steps.append("transition")
        if moving.get("failed"):
            raise MoveFailed(moving.get("msg", "transition failed"), failed_step="transition", rolled_back=True,
                             **self._passthrough(moving))
        token = moving["token"]

        answers, error = self._answers(new)
        steps.append("new connection on %d" % new)
        if not answers:
            self._give_up(found, token, "a new SSH connection on the new port %d failed: %s" % (new, error),
                          "new connection on %d" % new)

        finished = self._module("finalize", new, token=token)
        steps.append("finalize")
        if finished.get("failed"):
            if finished.get("unreachable"):
                self._give_up(found, token, "the connection on the new port %d failed during finalize: %s"
                              % (new, finished.get("msg", "")), "finalize")
            raise MoveFailed(finished.get("msg", "finalize failed"), failed_step="finalize", rolled_back=True,
                             ansible_port=found, **self._passthrough(finished))

        committed = self._module("commit", new, token=token)
        steps.append("commit")
        if committed.get("failed"):
            self._give_up(found, token, "the confirmation over a new connection on port %d failed: %s"
                          % (new, committed.get("msg", "")), "commit")

        closed = {}
        for old in planned["moved_ports"]:
            state, _seen = try_connect(self._probe_address(), old, OLD_PORT_PROBE_TIMEOUT)
            closed[str(old)] = state != "open"
        summary.update(changed=True, ansible_port=new, listening_after=finished["listening_after"],
                       listening_transition=moving.get("listening_transition"), old_port_closed=closed,
                       firewall_persistence=committed.get("firewall_persistence", {}))
        if not all(closed.values()):
            self._display.warning("ssh_port: a new TCP connection from the controller still reaches old port(s) %s"
                                  % ", ".join(port for port, done in closed.items() if not done))
        return summary

    def _probe_address(self):
        try:
            return resolve_addresses([self._host_address()])[0]
        except (ValueError, IndexError):
            return self._host_address()

    @staticmethod
    def _passthrough(module_result):
        keep = ("diff", "port", "ports_before", "listening_before", "moved_ports", "socket_activated", "selinux",
                "firewall", "warnings")
        return dict((key, module_result[key]) for key in keep if key in module_result)

    @staticmethod
    def _summary(planned):
        keep = ("diff", "port", "ports_before", "listening_before", "moved_ports", "socket_activated", "service",
                "selinux", "firewall", "warnings")
        return dict((key, planned[key]) for key in keep if key in planned)

    def _give_up(self, old_port, token, reason, step):
        """The new port cannot be proven: roll back over the old port now, or wait for the host's timer."""
        undone = self._module("rollback", old_port, token=token)
        if not undone.get("failed"):
            raise MoveFailed("%s. The previous configuration was restored and sshd listens on %s again "
                             "(checked over a new connection)." % (reason, ", ".join(undone["listening_after"])),
                             failed_step=step, rolled_back=True, ansible_port=old_port)
        # The old port does not take a new connection either: the host's timer restores the configuration.
        deadline = self._armed_at + validated(self._args, ARGUMENT_SPEC)["confirm_timeout"]
        time.sleep(max(0.0, deadline - time.monotonic()) + 2)
        for _attempt in range(REACHABLE_AGAIN_ATTEMPTS):
            answers, _error = self._answers(old_port)
            if answers:
                raise MoveFailed("%s. The rollback over port %d failed too (%s); the host's rollback timer restored "
                                 "the previous configuration, and a new connection on port %d works again."
                                 % (reason, old_port, undone.get("msg", "").strip(), old_port),
                                 failed_step=step, rolled_back=True, ansible_port=old_port)
            time.sleep(REACHABLE_AGAIN_PAUSE)
        raise MoveFailed("%s. The rollback over port %d failed too (%s), and the host still does not answer new "
                         "connections on port %d after its rollback timer's deadline."
                         % (reason, old_port, undone.get("msg", "").strip(), old_port),
                         failed_step=step, rolled_back=False)
