# Copyright (c) Portcullis contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The role as a new user meets it: the built tarball installed with ansible-galaxy into a directory of its own, an
inventory of one's own, a play with just the role and an allowlist, run with --check on the shared lab.

It must run clean (no template error, no warning about one), print a summary per host, write the reports next to
the play, list the units the services phase would stop, and change nothing.
"""

from __future__ import annotations

import glob
import json
import os
import subprocess

import pytest
import yaml

from harness import ansible_env, collections_path

ALLOWLIST = [{"port": 22, "process": "sshd", "comment": "SSH"},
             {"port": 8080, "process": "portcullis-rogue", "comment": "the lab's web server"}]


def _tarball():
    """The tarball `make collection` built: $PORTCULLIS_TARBALL (the Makefile sets it), else next to the install."""
    path = os.environ.get("PORTCULLIS_TARBALL")
    if not path:
        found = sorted(glob.glob(os.path.join(collections_path() or ".", "..", "portcullis-hardening-*.tar.gz")))
        path = found[-1] if found else ""
    if not os.path.isfile(path):
        pytest.fail("no collection tarball: set PORTCULLIS_TARBALL to build/portcullis-hardening-*.tar.gz "
                    "(`make integration` does)", pytrace=False)
    return path


def _state(host):
    """What a check-mode run must leave alone."""
    return host.ssh("nft list ruleset; systemctl list-units --no-legend --plain --no-pager 'portcullis-*' "
                    "'ssh*'; systemctl list-unit-files --no-legend --no-pager 'portcullis-*'; "
                    "ls /var/lib/portcullis 2>/dev/null; sshd -T | sort").stdout


def test_a_new_user_runs_the_installed_role_in_check_mode(lab_hosts, tmp_path):
    collections = tmp_path / "collections"
    subprocess.run(["ansible-galaxy", "collection", "install", "--no-deps", "-p", str(collections), _tarball()],
                   capture_output=True, text=True, timeout=300, check=True)
    inventory = {"all": {"hosts": {}}}
    for host in lab_hosts:
        inventory["all"]["hosts"][host.name] = {key: host.hostvars[key] for key in (
            "ansible_host", "ansible_user", "ansible_ssh_private_key_file", "ansible_ssh_common_args",
            "ansible_python_interpreter")}
    (tmp_path / "inventory.yml").write_text(yaml.safe_dump(inventory))
    (tmp_path / "play.yml").write_text(yaml.safe_dump([{
        "name": "Harden my hosts", "hosts": "all", "gather_facts": False,
        "roles": [{"role": "portcullis.hardening.ports", "vars": {"portcullis_allowlist": ALLOWLIST}}]}],
        sort_keys=False))
    before = {host.name: _state(host) for host in lab_hosts}

    env = ansible_env(ANSIBLE_COLLECTIONS_PATH=str(collections), ANSIBLE_STDOUT_CALLBACK="default",
                      ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0", ANSIBLE_CALLBACK_RESULT_FORMAT="yaml")
    completed = subprocess.run(["ansible-playbook", "-i", "inventory.yml", "play.yml", "--check"], cwd=str(tmp_path),
                               capture_output=True, text=True, timeout=600, env=env, check=False)
    output = completed.stdout + completed.stderr
    assert completed.returncode == 0, output[-4000:]
    for bad in ("template error", "<< error", "is undefined", "[ERROR]"):
        assert bad not in output, output[-4000:]
    assert "[WARNING]" not in output, [line for line in output.splitlines() if "WARNING" in line]

    # A summary per host: compliance first, then the units the services phase would stop (the YAML callback wraps
    # long lines).
    flat = " ".join(output.split())
    assert flat.count("NOT compliant: ") == len(lab_hosts)
    would_stop = ("services: would stop portcullis-rogue-v6.service, portcullis-rogue-udp.service (set "
                  "portcullis_stop_unlisted to stop them)")
    assert flat.count(would_stop) == len(lab_hosts), output[-4000:]
    report = json.loads((tmp_path / "reports" / "portcullis-report.json").read_text())
    assert sorted(report["hosts"]) == sorted(host.name for host in lab_hosts)
    assert all(entry["status"] == "noncompliant" for entry in report["hosts"].values())
    for name in ("portcullis-report.html", "portcullis-report.junit.xml", "portcullis-report.sarif",
                 "portcullis-report.txt"):
        assert (tmp_path / "reports" / name).stat().st_size > 0, name

    assert {host.name: _state(host) for host in lab_hosts} == before, "a check-mode run changed a host"
