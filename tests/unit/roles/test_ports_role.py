# Copyright (c) Portcullis contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The role's README, argument specs, defaults and task files tell the same story."""

from __future__ import annotations

import os
import re

import pytest
import yaml

ROLE = os.path.join(os.path.dirname(__file__), "..", "..", "..", "roles", "ports")
PHASES = ["discover", "audit", "move", "firewall", "services", "verify", "report"]
ALWAYS = ["validate", "connect"]
# Set by the role's own tasks (register, set_fact, facts), not variables a user sets.
RESULTS = {"portcullis_audit_result", "portcullis_ssh_result", "portcullis_service_port_results",
           "portcullis_firewall_result", "portcullis_services_result", "portcullis_verify_result",
           "portcullis_report_result", "portcullis_listeners"}


def _load(*path):
    with open(os.path.join(ROLE, *path)) as stream:
        return yaml.safe_load(stream)


@pytest.fixture(scope="module")
def specs():
    return _load("meta", "argument_specs.yml")["argument_specs"]


@pytest.fixture(scope="module")
def readme():
    with open(os.path.join(ROLE, "README.md")) as stream:
        return stream.read()


def _table(readme, header):
    """{first column: [other columns]} of the markdown table whose header row starts with `header`."""
    lines = readme.splitlines()
    start = next(index for index, line in enumerate(lines) if line.startswith("| " + header))
    rows = {}
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        cells = [cell.strip() for cell in re.split(r"(?<!\\)\|", line)[1:-1]]
        rows[cells[0].strip("`")] = cells[1:]
    return rows


def _shown(value):
    if isinstance(value, bool):
        return "`%s`" % str(value).lower()
    if isinstance(value, list):
        return "`[%s]`" % ", ".join(str(item) for item in value)
    return "`%s`" % value


def test_every_task_file_is_an_entry_point_and_documented(specs, readme):
    files = sorted(name[:-4] for name in os.listdir(os.path.join(ROLE, "tasks")) if name.endswith(".yml"))
    assert files == sorted(["main"] + PHASES + ALWAYS)
    assert sorted(specs) == files
    entries = _table(readme, "entry point")
    assert list(entries) == ALWAYS + PHASES
    for phase in PHASES:
        assert entries[phase][0] == "`portcullis_%s`" % phase
    for name in ALWAYS:
        assert entries[name][0] == "`always`"


def test_main_runs_the_phases_in_order_each_tagged_and_toggled():
    tasks = _load("tasks", "main.yml")
    imported = [task["ansible.builtin.import_tasks"][:-4] for task in tasks]
    assert imported == ALWAYS + PHASES
    for task in tasks:
        name = task["ansible.builtin.import_tasks"][:-4]
        if name in ALWAYS:
            assert task["tags"] == ["always"] and "when" not in task
        else:
            assert task["tags"] == ["portcullis_%s" % name]
            assert task["when"] == "portcullis_%s | bool" % name


def test_every_variable_is_documented_with_its_default(specs, readme):
    main = specs["main"]["options"]
    rows = _table(readme, "variable")
    assert list(rows) == list(main)
    for name, option in main.items():
        assert rows[name][0] == (_shown(option["default"]) if "default" in option else "(unset)"), name


def test_every_phase_has_a_toggle_default():
    defaults = _load("defaults", "main.yml")
    for phase in PHASES:
        assert isinstance(defaults["portcullis_%s" % phase], bool), phase


def test_entry_points_use_only_documented_variables(specs):
    main = specs["main"]["options"]
    for entry, spec in specs.items():
        for name, option in spec.get("options", {}).items():
            assert main[name] == option, "%s.%s differs from main's" % (entry, name)
        if entry == "main":
            continue
        with open(os.path.join(ROLE, "tasks", entry + ".yml")) as stream:
            text = stream.read()
        used = set(re.findall(r"\b(portcullis_[a-z_]+)\b", text)) - RESULTS
        assert used <= set(main), "%s uses undocumented %s" % (entry, sorted(used - set(main)))
        # A tasks_from run validates what its tasks use (the phase toggles belong to main).
        assert used - {"portcullis_%s" % phase for phase in PHASES} <= set(spec["options"]), \
            "%s.yml uses %s outside its entry point's spec" % (entry, sorted(used - set(spec["options"])))
