# Copyright (c) Portcullis contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Count, per host, the task results that ran a module on the host, for bench/fleet.py.

A result counts when it is ok, changed, failed or unreachable (not skipped), its action runs a module on the
host (not set_fact, debug, assert, meta, include_*/import_*, fail, add_host, group_by, set_stats, pause, end_*),
and it was not delegated to the controller. Each item of a loop counts once (the loop's summary result does not).
An action plugin that runs several modules on the host in one task (the collection's ssh_port, firewall and
stop_unlisted drive several steps) still counts once here: bench/ssh-count counts the modules themselves.

Enable it with ANSIBLE_CALLBACK_PLUGINS=bench/callback_plugins ANSIBLE_CALLBACKS_ENABLED=portcullis_bench_count;
it writes {"hosts": {host: {"module_tasks": n, "tasks": {"task name (action)": n}}}, "skipped": {...},
"controller_only": {...}} to the file named by PORTCULLIS_BENCH_COUNT_FILE at the end of the playbook.
"""

from __future__ import annotations

import collections
import json
import os

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = r"""
name: portcullis_bench_count
type: aggregate
short_description: count the module executions per host (bench/fleet.py)
description:
  - Counts, per host, the task results (and loop items) that ran a module on the host, leaving out skipped
    results, actions that run only on the controller and tasks delegated to localhost.
  - Writes the counts as JSON to the file named by the environment variable E(PORTCULLIS_BENCH_COUNT_FILE).
requirements:
  - enable it in ANSIBLE_CALLBACKS_ENABLED
"""

# Actions that never run a module on the managed host.
CONTROLLER_ACTIONS = frozenset(
    ["set_fact", "debug", "assert", "meta", "fail", "add_host", "group_by", "set_stats", "pause",
     "include_tasks", "import_tasks", "include_role", "import_role", "include_vars", "import_playbook",
     "end_play", "end_host", "end_batch", "validate_argument_spec"])
LOCAL_NAMES = frozenset(["localhost", "127.0.0.1", "::1"])


def short_action(action):
    """ansible.builtin.set_fact -> set_fact; portcullis.hardening.port_audit stays as it is."""
    for prefix in ("ansible.builtin.", "ansible.legacy."):
        if action.startswith(prefix):
            return action[len(prefix):]
    return action


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "portcullis_bench_count"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self):
        super().__init__()
        self._hosts = collections.defaultdict(lambda: {"module_tasks": 0, "tasks": collections.Counter()})
        self._skipped = collections.Counter()
        self._controller_only = collections.Counter()

    @staticmethod
    def _delegated_to_controller(result):
        delegated = result._result.get("_ansible_delegated_vars") or {}
        target = delegated.get("ansible_delegated_host") or delegated.get("ansible_host")
        if target is None:
            target = result._task.delegate_to
        if not target:
            return False
        connection = delegated.get("ansible_connection")
        return str(target) in LOCAL_NAMES or connection == "local"

    def _record(self, result, item=False):
        host = result._host.get_name()
        action = short_action(result._task.action or "")
        label = "%s (%s)" % (result._task.get_name(), action)
        if not item and isinstance(result._result.get("results"), list):
            return  # a loop's summary: its items were counted one by one
        if action in CONTROLLER_ACTIONS or self._delegated_to_controller(result):
            self._controller_only[label] += 1
            return
        entry = self._hosts[host]
        entry["module_tasks"] += 1
        entry["tasks"][label] += 1

    def _record_skip(self, result):
        self._skipped["%s (%s)" % (result._task.get_name(), short_action(result._task.action or ""))] += 1

    def v2_runner_on_ok(self, result):
        self._record(result)

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._record(result)

    def v2_runner_on_unreachable(self, result):
        self._record(result)

    def v2_runner_on_skipped(self, result):
        if not isinstance(result._result.get("results"), list):
            self._record_skip(result)

    def v2_runner_item_on_ok(self, result):
        self._record(result, item=True)

    def v2_runner_item_on_failed(self, result):
        self._record(result, item=True)

    def v2_runner_item_on_skipped(self, result):
        self._record_skip(result)

    def v2_playbook_on_stats(self, stats):
        path = os.environ.get("PORTCULLIS_BENCH_COUNT_FILE")
        if not path:
            return
        document = {
            "hosts": {host: {"module_tasks": entry["module_tasks"], "tasks": dict(entry["tasks"])}
                      for host, entry in sorted(self._hosts.items())},
            "skipped": dict(self._skipped),
            "controller_only": dict(self._controller_only),
        }
        with open(path + ".tmp", "w") as handle:
            json.dump(document, handle, indent=2, sort_keys=True)
        os.replace(path + ".tmp", path)
