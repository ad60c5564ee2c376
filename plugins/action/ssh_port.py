# Copyright (c) Portcullis contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Controller side of moving sshd: find it, then drive plan, transition, finalize and commit on the host,
proving each step with a new SSH connection (a reused ControlPersist master would prove nothing)."""

from __future__ import annotations

import time

from ansible_collections.portcullis.hardening.plugins.module_utils._specs import SSH_PORT_SPEC as ARGUMENT_SPEC
from ansible_collections.portcullis.hardening.plugins.module_utils._sshd import SshdConfigError, parse_addresses
from ansible_collections.portcullis.hardening.plugins.plugin_utils._action import (
    NETWORK_CONNECTIONS,
    StepAction,
    connection_port,
)
from ansible_collections.portcullis.hardening.plugins.plugin_utils._probe import try_connect
from ansible_collections.portcullis.hardening.plugins.plugin_utils._ssh_target import SshTargetError, same_host_key

CONNECT_TIMEOUT = 10
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


class ActionModule(StepAction):
    MODULE = "portcullis.hardening.ssh_port"

    def _validate(self, args):
        params = self._validated_args(ARGUMENT_SPEC)
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
        self._confirm_timeout = params["confirm_timeout"]
        self._connect_timeout = max(3, min(CONNECT_TIMEOUT, params["confirm_timeout"] // 4))
        steps = result["steps"] = []
        try:
            found = self._find_sshd(params, steps)
            result["found_on"] = found
            if params["locate_only"]:
                result.update(changed=False, ansible_port=found)
            else:
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
        return self._step(step, port=port, fresh=fresh, **extra)

    def _find_sshd(self, params, steps):
        """The port sshd answers on: the connection's, else the wanted one, else a previous one."""
        candidates = []
        for port in [connection_port(self._connection, self._task_vars, self._display.warning),
                     params["port"]] + params["previous_ports"]:
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

    # --- the move --------------------------------------------------------------------------------

    def _move(self, params, found, steps):
        new = params["port"]
        self._found = found
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
            raise MoveFailed(moving.get("msg", "transition failed"), failed_step="transition",
                             rolled_back=moving.get("rolled_back"), host_state=moving.get("host_state"),
                             **self._passthrough(moving))
        token = moving["token"]
        self._test_hold("transition")

        # Before anything logs in there: the server on the new port must hold this host's key.
        same, detail = self._same_host_key(found, new)
        steps.append("host key on %d: %s" % (new, detail))
        if not same:
            self._give_up([found], token, "the new port %d could not be proven from the controller: %s (the server "
                          "there must present the host key of the one on port %d, or another process may answer "
                          "there)" % (new, detail, found),
                          "host key on %d" % new)
        answers, error = self._answers(new)
        steps.append("new connection on %d" % new)
        if not answers:
            self._give_up([found, new], token, "a new SSH connection on the new port %d failed: %s" % (new, error),
                          "new connection on %d" % new)

        finished = self._module("finalize", new, token=token)
        steps.append("finalize")
        if finished.get("failed"):
            if finished.get("unreachable"):
                self._give_up([new, found], token, "the connection on the new port %d failed during finalize: %s"
                              % (new, finished.get("msg", "")), "finalize")
            raise MoveFailed(finished.get("msg", "finalize failed"), failed_step="finalize",
                             rolled_back=finished.get("rolled_back"), host_state=finished.get("host_state"),
                             ansible_port=found, **self._passthrough(finished))

        self._test_hold("finalize")
        committed = self._module("commit", new, token=token)
        steps.append("commit")
        if committed.get("failed"):
            if committed.get("rolled_back"):  # the host answered: the timer won, or persisting failed and it undid
                raise MoveFailed("the commit over a new connection on port %d failed: %s" % (
                    new, committed.get("msg", "")), failed_step="commit", rolled_back=True, ansible_port=found,
                    host_state=committed.get("host_state"))
            # After finalize only the new port is open, unless the timer already put the old one back.
            self._give_up([new, found], token, "the confirmation over a new connection on port %d failed: %s"
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

    def _same_host_key(self, old, new):
        """Whether the server on the new port holds this host's key, read from the controller without logging in:
        with host key checking off it is the only proof that sshd, not a local user's process, answers there."""
        target = self._ssh_target()
        if target is not None and (target.proxyjump or target.proxycommand):
            return True, "not compared: the controller reaches the host through %s, and ssh checks the key there " \
                "when host key checking is on" % ("ProxyJump " + target.proxyjump if target.proxyjump else "a ProxyCommand")
        try:
            return same_host_key(target.hostname if target else self._probe_address(), old, new, self._connect_timeout)
        except SshTargetError as exc:
            return False, str(exc)

    @staticmethod
    def _passthrough(module_result):
        keep = ("diff", "port", "ports_before", "listening_before", "moved_ports", "socket_activated", "selinux",
                "firewall", "warnings", "rolled_back", "host_state")
        return dict((key, module_result[key]) for key in keep if key in module_result)

    @staticmethod
    def _summary(planned):
        keep = ("diff", "port", "ports_before", "listening_before", "moved_ports", "socket_activated", "service",
                "selinux", "firewall", "warnings")
        return dict((key, planned[key]) for key in keep if key in planned)

    def _give_up(self, ports, token, reason, step):
        """The move cannot be proven: roll back now over the first of `ports` that takes a new connection, or wait
        for the host's own timer; MoveFailed says which happened and where sshd answers. Returns only when the host
        says the move had been committed already."""
        old_port = self._found
        errors = []
        for port in ports:
            undone = self._module("rollback", port, token=token)
            if not undone.get("failed") and undone.get("committed"):
                return  # the commit had gone through and only its answer was lost: the move stands
            if not undone.get("failed"):
                raise MoveFailed("%s. The previous configuration was restored (%s) and sshd listens on %s again."
                                 % (reason, undone.get("outcome", "rolled back"),
                                    ", ".join(undone["listening_after"])),
                                 failed_step=step, rolled_back=True, ansible_port=old_port)
            errors.append("over port %d: %s" % (port, undone.get("msg", "").strip()))
        # No new connection works: the host's timer restores the previous configuration.
        deadline = self._armed_at + self._confirm_timeout
        self._wait_past(deadline)
        if self._reachable_again(old_port):
            raise MoveFailed("%s. The rollback failed too (%s); the host's rollback timer restored the previous "
                             "configuration, and a new connection on port %d works again."
                             % (reason, "; ".join(errors), old_port),
                             failed_step=step, rolled_back=True, ansible_port=old_port)
        raise MoveFailed("%s. The rollback failed too (%s), and the host still does not answer new connections on "
                         "port %d after its rollback timer's deadline: its state is unknown."
                         % (reason, "; ".join(errors), old_port),
                         failed_step=step, rolled_back=None, host_state="unknown")
