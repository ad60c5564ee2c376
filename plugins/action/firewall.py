# Copyright (c) Portcullis contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Controller side of the firewall: validate, guard this connection's port, apply, confirm over a new connection."""

from __future__ import annotations

import time

from ansible.plugins.action import ActionBase

from ansible_collections.portcullis.hardening.plugins.module_utils._allowlist import (
    AllowlistError,
    opens_port,
    parse_allowlist,
)
from ansible_collections.portcullis.hardening.plugins.modules.firewall import ARGUMENT_SPEC
from ansible_collections.portcullis.hardening.plugins.plugin_utils._action import (
    connection_port,
    on_a_new_connection,
    validated,
)

MODULE = "portcullis.hardening.firewall"
# Seconds a new connection may take to open: half the confirm window, within these bounds.
MIN_CONNECT_TIMEOUT = 3
DEFAULT_CONNECT_TIMEOUT = 10
# After the rollback timer's deadline: how long to wait for the host to answer again.
REACHABLE_AGAIN_ATTEMPTS = 6
REACHABLE_AGAIN_PAUSE = 5


class ActionModule(ActionBase):
    TRANSFERS_FILES = False

    def _validate(self, args):
        """Every problem with the input, found on the controller before anything runs on the host.

        Returns the allowlist's rules and the arguments as the module will see them.
        """
        rules = parse_allowlist(args.get("allow") or [], name="allow")
        params = validated(args, ARGUMENT_SPEC)
        if params["confirm"]:
            raise ValueError("confirm: is set by the firewall action plugin itself; do not set it")
        if not 0 <= params["confirm_timeout"] <= 3600:
            raise ValueError("confirm_timeout: %r must be within 0-3600 seconds" % params["confirm_timeout"])
        port = params["management_port"]
        if port is not None and not 1 <= port <= 65535:
            raise ValueError("management_port: %r is outside 1-65535" % port)
        return rules, params

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        args = dict(self._task.args)
        try:
            rules, params = self._validate(args)
        except (AllowlistError, ValueError, TypeError) as exc:
            result.update(failed=True, msg=str(exc))
            return result

        current = connection_port(self._connection)
        management = params["management_port"] or current or 22
        args["management_port"] = management
        if params["state"] == "present" and current and not opens_port(rules, "tcp", current):
            if current != management or not params["keep_management_port"]:
                result.update(failed=True, msg=(
                    "This connection uses port %d/tcp, which allow does not open and %s: applying would cut it. "
                    "Allow the port in allow, or keep the management port" % (
                        current, "the management port is %d" % management if current != management
                        else "keep_management_port=false would close")))
                return result

        result.update(self._execute_module(module_name=MODULE, module_args=args, task_vars=task_vars))
        rollback = result.get("rollback")
        if result.get("failed") or self._play_context.check_mode or not rollback:
            return result
        return self._confirm(result, args, rollback, task_vars)

    def _on_a_new_connection(self, function, connect_timeout):
        return on_a_new_connection(self._connection, function, connect_timeout)

    def _confirm(self, result, args, rollback, task_vars):
        deadline = time.monotonic() + rollback["timeout"]
        connect_timeout = max(MIN_CONNECT_TIMEOUT, min(DEFAULT_CONNECT_TIMEOUT, rollback["timeout"] / 2))
        confirmation = self._on_a_new_connection(lambda: self._execute_module(
            module_name=MODULE, module_args=dict(args, confirm=rollback["token"]), task_vars=task_vars),
            connect_timeout)
        if not confirmation.get("failed"):
            result.update(confirmed=True, persistence=confirmation.get("persistence", {}))
            result.pop("rollback", None)
            return result

        # The new connection failed: the host restores the previous rules when its timer fires. Wait for
        # that (bounded), then check that a new connection works again, and fail saying what happened.
        time.sleep(max(0.0, deadline - time.monotonic()) + 2)
        reachable = None
        for _attempt in range(REACHABLE_AGAIN_ATTEMPTS):
            probe = self._on_a_new_connection(lambda: self._low_level_execute_command("true"), DEFAULT_CONNECT_TIMEOUT)
            if not probe.get("failed") and probe.get("rc") == 0:
                reachable = True
                break
            reachable = False
            time.sleep(REACHABLE_AGAIN_PAUSE)
        result.update(failed=True, confirmed=False, rolled_back=True, msg=(
            "The new rules were applied, but no new connection from the controller could confirm them before the "
            "deadline (%s). The host's rollback timer %s restored the previous rules after %d s; %s." % (
                confirmation.get("msg", "no answer").strip(), rollback["unit"], rollback["timeout"],
                "a new connection works again" if reachable else "the host still does not answer new connections")))
        return result
