# Copyright (c) Portcullis contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Controller side of moving a service: validate, plan, apply, prove the new port with a TCP connection from
the controller, then commit - or roll back."""

from __future__ import annotations

import time

from ansible_collections.portcullis.hardening.plugins.module_utils._specs import (
    SERVICE_PORT_MUTUALLY_EXCLUSIVE,
    SERVICE_PORT_REQUIRED_ONE_OF,
    SERVICE_PORT_REQUIRED_TOGETHER,
    SERVICE_PORT_SPEC,
)
from ansible_collections.portcullis.hardening.plugins.plugin_utils._action import StepAction
from ansible_collections.portcullis.hardening.plugins.plugin_utils._probe import resolve_addresses, try_connect

PROBE_TIMEOUT = 3
PROBE_ATTEMPTS = 5
PROBE_PAUSE = 1


class ActionModule(StepAction):
    MODULE = "portcullis.hardening.service_port"

    def _validate(self, args):
        params = self._validated_args(SERVICE_PORT_SPEC, mutually_exclusive=SERVICE_PORT_MUTUALLY_EXCLUSIVE,
                                      required_one_of=SERVICE_PORT_REQUIRED_ONE_OF,
                                      required_together=SERVICE_PORT_REQUIRED_TOGETHER)
        if params["step"] != "plan" or params["token"] is not None:
            raise ValueError("step and token: are set by the service_port action plugin itself; do not set them")
        for name in ("port", "previous_port"):
            if params[name] is not None and not 1 <= params[name] <= 65535:
                raise ValueError("%s: %r is outside 1-65535" % (name, params[name]))
        if not 10 <= params["confirm_timeout"] <= 3600:
            raise ValueError("confirm_timeout: %r must be within 10-3600 seconds" % params["confirm_timeout"])
        if params["validate"] is not None and not params["validate"]:
            raise ValueError("validate: is an empty command")
        return params

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        args = dict(self._task.args)
        try:
            params = self._validate(args)
        except (ValueError, TypeError) as exc:
            result.update(failed=True, msg=str(exc))
            return result
        address = target = None
        if params["probe"]:  # resolved now: a name that does not resolve fails before anything changes
            address = params["probe_address"] or task_vars.get("ansible_host") or task_vars.get("inventory_hostname")
            try:
                target = resolve_addresses([address])[0]
            except (ValueError, IndexError) as exc:
                result.update(failed=True, msg="%s: %s" % (
                    "probe_address" if params["probe_address"] else "the host's address (ansible_host)", exc))
                return result
        steps = result["steps"] = []

        self._task_vars = task_vars

        def module(step, **extra):
            steps.append(step)
            return self._step(step, fresh=False, task_vars=task_vars, **extra)

        planned = module("plan")
        if planned.get("failed") or not planned.get("changed") or self._play_context.check_mode:
            result.update(planned)
            return result
        applied = module("apply")
        if applied.get("failed"):
            result.update(applied)
            return result
        result.update(applied)
        token = applied.pop("token")
        result.pop("token", None)
        if params["probe"]:
            state = self._probe(target, params["port"])
            result["probe"] = state
            steps.append("probe %s port %d from the controller: %s" % (address, params["port"], state))
            if state != "open":
                undone = module("rollback", token=token)
                result.update(failed=True, failed_step="probe", rolled_back=not undone.get("failed"), msg=(
                    "A TCP connection from the controller to %s port %d got %s, not open. %s" % (
                        address, params["port"], state,
                        "The previous configuration was restored (%s listens on %s again)." % (
                            params["service"], ", ".join(undone.get("listening_after", [])))
                        if not undone.get("failed") else "Rolling back failed too: %s" % undone.get("msg"))))
                return result
        committed = module("commit", token=token)
        if committed.get("failed"):
            result.update(failed=True, failed_step="commit", msg=committed.get("msg"),
                          rolled_back=committed.get("rolled_back"), host_state=committed.get("host_state"))
            return result
        result["firewall_persistence"] = committed.get("firewall_persistence", {})
        return result

    @staticmethod
    def _probe(target, port):
        state = "filtered"
        for _attempt in range(PROBE_ATTEMPTS):
            state, _seen = try_connect(target, port, PROBE_TIMEOUT)
            if state == "open":
                break
            time.sleep(PROBE_PAUSE)
        return state
