# Copyright (c) Portcullis contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The role as a new user meets it: the built tarball installed with ansible-galaxy into a directory of its own, an
inventory of one's own, a play with just the role and an allowlist, run with --check on the shared lab.

It must run clean (no template error, no warning about one), print a summary per host, write the reports next to
the play, list the units the services phase would stop, and change nothing.
"""

from __future__ import annotations

import json
import subprocess

import yaml

from harness import ansible_env, collection_tarball

ALLOWLIST = [{"port": 22, "process": "sshd", "comment": "SSH"},
             {"port": 8080, "process": "portcullis-rogue", "comment": "the lab's web server"}]


def _state(host):
    """What a check-mode run must leave alone."""
    return host.ssh("nft list ruleset; systemctl list-units --no-legend --plain --no-pager 'portcullis-*' "
                    "'ssh*'; systemctl list-unit-files --no-legend --no-pager 'portcullis-*'; "
                    "ls /var/lib/portcullis 2>/dev/null; sshd -T | sort").stdout


def test_a_new_user_runs_the_installed_role_in_check_mode(lab_hosts, tmp_path):
    collections = tmp_path / "collections"
    subprocess.run(["ansible-galaxy", "collection", "install", "--no-deps", "-p", str(collections), collection_tarball()],
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


def test_serial_batches_report_the_fleet_once_against_the_report_before_the_play(lab_hosts, tmp_path):
    """Under `serial: 1`, every batch rewrites the reports: they list the batches so far (never a host still to
    come as failed), and every batch compares with the report that was there before the play, not the last batch's."""
    assert len(lab_hosts) >= 2, "the shared lab has a host per release"
    names = sorted(host.name for host in lab_hosts)
    inventory = {"all": {"hosts": {host.name: {key: host.hostvars[key] for key in (
        "ansible_host", "ansible_user", "ansible_ssh_private_key_file", "ansible_ssh_common_args",
        "ansible_python_interpreter")} for host in lab_hosts}}}
    (tmp_path / "inventory.yml").write_text(yaml.safe_dump(inventory))
    role_vars = {"portcullis_allowlist": ALLOWLIST, "portcullis_move": False, "portcullis_services": False,
                 "portcullis_report_dir": str(tmp_path / "reports")}
    env = ansible_env(ANSIBLE_STDOUT_CALLBACK="default", ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0")
    reports = []
    for serial in (None, 1):  # every host at once, the report before; then one host per batch
        play = {"name": "Audit", "hosts": "all", "gather_facts": False, **({"serial": serial} if serial else {}),
                "roles": [{"role": "portcullis.hardening.ports", "vars": role_vars}],
                "tasks": [{"name": "Keep this batch's JSON report", "run_once": True, "delegate_to": "localhost",
                           "check_mode": False,
                           "ansible.builtin.copy": {
                               "src": str(tmp_path / "reports" / "portcullis-report.json"),
                               "dest": str(tmp_path) + "/batch-{{ ansible_play_batch | join(',') }}.json",
                               "mode": "0644"}}]}
        (tmp_path / "play.yml").write_text(yaml.safe_dump([play], sort_keys=False))
        completed = subprocess.run(["ansible-playbook", "-i", "inventory.yml", "play.yml", "--check"],
                                   cwd=str(tmp_path), capture_output=True, text=True, timeout=600, env=env,
                                   check=False)
        assert completed.returncode == 0, (completed.stdout + completed.stderr)[-4000:]
        reports.append(json.loads((tmp_path / "reports" / "portcullis-report.json").read_text()))

    before, after = reports
    assert sorted(after["hosts"]) == names
    assert all(entry["status"] != "failed" for entry in after["hosts"].values()), after["hosts"]
    # The last batch compared with the report of the run before: no host appeared, nothing new.
    assert after["generated_at"] != before["generated_at"]  # the runs are seconds apart
    assert after["drift"]["previous_generated_at"] == before["generated_at"]
    assert after["drift"]["hosts"] == {"appeared": [], "disappeared": []}
    first_batch = json.loads((tmp_path / ("batch-%s.json" % names[0])).read_text())
    assert sorted(first_batch["hosts"]) == [names[0]], "a host still to come was reported"
    assert first_batch["drift"]["previous_generated_at"] == before["generated_at"]
    assert first_batch["generated_at"] == after["generated_at"]
