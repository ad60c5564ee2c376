# Copyright (c) Portcullis contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Reach the lab's hosts for integration tests: over real SSH, each call on a fresh connection.

The lab is started by `make integration` (state dir in PORTCULLIS_LAB_DIR); these tests only use it.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import tempfile

import pytest

LAB_DIR = os.environ.get("PORTCULLIS_LAB_DIR", "")
# A fresh SSH connection for every call: a reused ControlPersist master would hide a lockout.
FRESH_SSH = "-o ControlMaster=no -o ControlPath=none"


def ansible_env(**extra):
    """Environment for ansible commands: fresh SSH connections, the lab's host keys checked."""
    return dict(os.environ, ANSIBLE_SSH_ARGS=FRESH_SSH, ANSIBLE_HOST_KEY_CHECKING="True",
                ANSIBLE_CALLBACK_RESULT_FORMAT="json", **extra)


def run_play(inventory, tasks, hosts, extra_args=(), fresh=True, control_dir=None, timeout=600, **env):
    """Run one play of `tasks` on `hosts` with the JSON callback; return (CompletedProcess, {task name: {host:
    result}}). Fresh SSH connections, unless fresh=False (then Ansible's default, a ControlPersist master reused by
    every task, in control_dir). `env`: more environment variables."""
    workdir = tempfile.mkdtemp(prefix="portcullis-play-")
    try:
        playbook = os.path.join(workdir, "play.yml")
        with open(playbook, "w", encoding="utf-8") as stream:  # JSON is YAML
            json.dump([{"name": "Portcullis test", "hosts": hosts, "gather_facts": False, "tasks": tasks}], stream,
                      indent=1)
        play_env = ansible_env(ANSIBLE_STDOUT_CALLBACK="ansible.posix.json", ANSIBLE_LOAD_CALLBACK_PLUGINS="1",
                               ANSIBLE_SSH_CONTROL_PATH_DIR=control_dir or os.path.join(workdir, "cp"), **env)
        if not fresh:
            play_env.pop("ANSIBLE_SSH_ARGS", None)
        completed = subprocess.run(["ansible-playbook", "-i", inventory, playbook] + list(extra_args),
                                   capture_output=True, text=True, timeout=timeout, env=play_env, check=False)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    try:
        output = json.loads(completed.stdout)
    except ValueError:
        raise AssertionError("ansible-playbook printed no JSON (rc=%d): %s %s" % (
            completed.returncode, completed.stdout[-3000:], completed.stderr[-3000:])) from None
    results = {}
    for play in output["plays"]:
        for task in play["tasks"]:
            results[task["task"]["name"]] = task["hosts"]
    return completed, results


class LabHost:
    def __init__(self, name, lab_dir, hostvars):
        self.name = name
        self.lab_dir = lab_dir
        self.inventory = os.path.join(lab_dir, "inventory.yml")
        self.hostvars = hostvars

    def ssh(self, *command, check=True):
        """Run a command (argument list, quoted for the remote shell) on a new SSH connection; return stdout."""
        completed = subprocess.run(
            ["ssh", "-F", os.path.join(self.lab_dir, "ssh_config"), "-o", "ControlMaster=no",
             "-o", "BatchMode=yes", self.name, "--", shlex.join(command)],
            capture_output=True, text=True, timeout=120, check=False)
        if check and completed.returncode != 0:
            raise AssertionError("ssh %s %s failed (%d): %s"
                                 % (self.name, command, completed.returncode, completed.stderr))
        return completed.stdout

    def module(self, name, args="", become_user=None, extra=()):
        """Run a module on the host through ansible (SSH connection); return its result dict.

        extra: more ansible arguments, such as ["--check", "--diff"].
        """
        command = ["ansible", self.name, "-i", self.inventory, "-m", name] + list(extra)
        if args:
            command += ["-a", args]
        if become_user:
            command += ["--become", "--become-user", become_user]
        env = ansible_env(ANSIBLE_LOAD_CALLBACK_PLUGINS="1", ANSIBLE_STDOUT_CALLBACK="ansible.posix.json",
                          ANSIBLE_PIPELINING="1")
        completed = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env, check=False)
        try:
            output = json.loads(completed.stdout)
        except ValueError:
            raise AssertionError("ansible %s on %s printed no JSON (rc=%d): %s %s" % (
                name, self.name, completed.returncode, completed.stdout[-2000:], completed.stderr[-2000:]))
        return output["plays"][0]["tasks"][0]["hosts"][self.name]


def _lab_hosts():
    if not LAB_DIR or not os.path.exists(os.path.join(LAB_DIR, "inventory.yml")):
        raise pytest.UsageError("no lab: run `make integration` (or set PORTCULLIS_LAB_DIR to a lab's state dir "
                                "with an inventory.yml)")
    listing = subprocess.run(["ansible-inventory", "-i", os.path.join(LAB_DIR, "inventory.yml"), "--list"],
                             capture_output=True, text=True, timeout=120, check=True)
    hostvars = json.loads(listing.stdout)["_meta"]["hostvars"]
    return [LabHost(name, LAB_DIR, hostvars[name]) for name in sorted(hostvars)]


def pytest_generate_tests(metafunc):
    if "lab_host" in metafunc.fixturenames:
        hosts = _lab_hosts()
        metafunc.parametrize("lab_host", hosts, ids=[host.name for host in hosts])


@pytest.fixture(scope="session")
def lab_hosts():
    """Every host of the lab, for tests that act on the whole fleet at once."""
    return _lab_hosts()
