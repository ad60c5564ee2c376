# Copyright (c) Portcullis contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Controller side of stop_unlisted: validate, stop the units on the host, confirm over a new connection (a stopped
unit that the management connection needed is put back by the host), and say what state the host is in."""

from __future__ import annotations

from ansible_collections.portcullis.hardening.plugins.module_utils._allowlist import AllowlistError, parse_allowlist
from ansible_collections.portcullis.hardening.plugins.module_utils._specs import STOP_UNLISTED_SPEC
from ansible_collections.portcullis.hardening.plugins.plugin_utils._action import StepAction

CONNECT_TIMEOUT = 10


class ActionModule(StepAction):
    MODULE = "portcullis.hardening.stop_unlisted"

    def _validate(self):
        """Every problem with the input, found on the controller before anything runs on the host."""
        parse_allowlist(self._task.args.get("allowlist") or [])
        params = self._validated_args(STOP_UNLISTED_SPEC)
        if params["confirm"]:
            raise ValueError("confirm: is set by the stop_unlisted action plugin itself; do not set it")
        if params["confirm_timeout"] and not 10 <= params["confirm_timeout"] <= 3600:
            raise ValueError("confirm_timeout: %r must be 0 or within 10-3600 seconds" % params["confirm_timeout"])
        if not 0 <= params["settle_timeout"] <= 120:
            raise ValueError("settle_timeout: %r must be within 0-120 seconds" % params["settle_timeout"])
        for index, pattern in enumerate(params["protected_units"]):
            if not pattern.strip() or any(char.isspace() for char in pattern):
                raise ValueError("protected_units[%d]: %r is not a unit name pattern" % (index, pattern))
        return params

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        self._task_vars = task_vars
        try:
            params = self._validate()
        except (AllowlistError, ValueError, TypeError) as exc:
            result.update(failed=True, msg=str(exc))
            return result
        self._connect_timeout = min(CONNECT_TIMEOUT, max(3, params["confirm_timeout"] / 2))
        result.update(self._step(None, fresh=False, task_vars=task_vars))
        rollback = result.get("rollback")
        if result.get("failed") or self._play_context.check_mode or not rollback:
            return result
        self._test_hold("stop")
        return self._confirm(result, rollback, task_vars, "The units were stopped", "the units")
