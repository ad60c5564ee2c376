# Copyright (c) Portcullis contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Every task name of the role renders, whatever is set: with the defaults alone (no portcullis_ssh_port), and with
every optional variable set. A name that does not render prints as `<< error 1 - ... is undefined >>`."""

from __future__ import annotations

import os

import pytest
import yaml
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar, trust_as_template

ROLE = os.path.join(os.path.dirname(__file__), "..", "..", "..", "roles", "ports")
RUN_VARS = {"inventory_hostname": "web1", "ansible_check_mode": False, "playbook_dir": "/srv/play"}
OPTIONAL = {"portcullis_ssh_port": 2222, "portcullis_ssh_manage_firewall": True, "portcullis_management_port": 22}


def _names(tasks):
    for task in tasks:
        if "name" in task:
            yield task["name"]
        for key in ("block", "rescue", "always"):
            yield from _names(task.get(key, []))


def _task_names():
    names = []
    for file_name in sorted(os.listdir(os.path.join(ROLE, "tasks"))):
        with open(os.path.join(ROLE, "tasks", file_name)) as stream:
            names.extend((file_name, name) for name in _names(yaml.safe_load(stream)))
    return names


@pytest.fixture(scope="module")
def defaults():
    with open(os.path.join(ROLE, "defaults", "main.yml")) as stream:
        return yaml.safe_load(stream)


@pytest.mark.parametrize("optional", [{}, OPTIONAL], ids=["defaults only", "every optional variable"])
def test_every_task_name_renders(defaults, optional):
    templar = Templar(loader=DataLoader(), variables=dict(defaults, **RUN_VARS, **optional))
    rendered = {}
    for file_name, name in _task_names():
        text = templar.template(trust_as_template(name))
        assert "{{" not in text and "<<" not in text, (file_name, name, text)
        rendered[name] = text
    assert len(rendered) > 20
    if optional:
        assert any("2222" in text for text in rendered.values())
