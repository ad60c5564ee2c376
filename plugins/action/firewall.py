# Copyright (c) Portcullis contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Controller side of the firewall: validate, guard this connection's port, apply, confirm over a new connection,
and say what state the host is in when that fails."""

from __future__ import annotations

from ansible_collections.portcullis.hardening.plugins.module_utils._allowlist import (
    AllowlistError,
    management_gap,
    opens_port,
    parse_allowlist,
)
from ansible_collections.portcullis.hardening.plugins.module_utils._specs import FIREWALL_SPEC
from ansible_collections.portcullis.hardening.plugins.plugin_utils._action import StepAction, connection_port

# Seconds a new connection may take to open: half the confirm window, within these bounds.
MIN_CONNECT_TIMEOUT = 3
DEFAULT_CONNECT_TIMEOUT = 10


class ActionModule(StepAction):
    MODULE = "portcullis.hardening.firewall"

    def _validate(self):
        """Every problem with the input, found on the controller before anything runs on the host."""
        rules = parse_allowlist(self._task.args.get("allow") or [], name="allow")
        params = self._validated_args(FIREWALL_SPEC)
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
        self._task_vars = task_vars
        try:
            rules, params = self._validate()
        except (AllowlistError, ValueError, TypeError) as exc:
            result.update(failed=True, msg=str(exc))
            return result

        current = connection_port(self._connection, task_vars, self._display.warning)
        management = params["management_port"] or current or 22
        args = dict(self._task.args, management_port=management)
        if params["state"] == "present" and current and not params["keep_management_port"] \
                and not opens_port(rules, "tcp", current):
            # No entry opens it at all; entries limited by family or sources the host checks, against the family
            # and the address it sees this connection come from.
            result.update(failed=True, msg="This connection uses port %d/tcp and keep_management_port=false, but "
                          "%s: applying would cut it. Allow the port in allow, or keep the management port"
                          % (current, management_gap(rules, current)))
            return result
        self._connect_timeout = max(MIN_CONNECT_TIMEOUT, min(DEFAULT_CONNECT_TIMEOUT,
                                                             (params["confirm_timeout"] or 20) / 2))
        self._task.args = args
        result.update(self._step(None, fresh=False, task_vars=task_vars))
        rollback = result.get("rollback")
        if result.get("failed") or self._play_context.check_mode or not rollback:
            return result
        self._test_hold("apply")
        return self._confirm(result, rollback, task_vars, "The new rules were applied", "the previous rules")
