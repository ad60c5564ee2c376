# Copyright (c) Portcullis contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The scale-out path: the collection in an execution environment, run by ansible-runner as AWX and Ansible
Automation Platform run it (docs/scale-out.md).

- `ansible-builder create` renders the build context of execution-environment.yml (no image is built). The
  context's galaxy and introspection steps are then run here as the build runs them: the collection installed
  from the copied tarball with the context's requirements.yml, and the context's introspect.py over it, which
  must find the collection's own Python and system requirements (meta/execution-environment.yml).
- `ansible_runner.run()` runs playbooks/audit.yml in check mode on the shared lab from a private_data_dir laid out
  as AWX lays one out (project/, inventory/, env/): it must succeed, write the reports naming every host, leave
  per-host runner_on_ok events of port_audit in artifacts/<ident>/job_events/, and change nothing on the hosts.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import ansible_runner
import pytest
import yaml
from bindep.depends import Depends

from harness import FRESH_SSH, PLAYBOOK_TIMEOUT, collection_tarball, collections_path

# The collection's root: this file is tests/integration/test_scale_out.py in it.
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
IDENT = "portcullis-audit"
REPORTS = ("portcullis-report.json", "portcullis-report.html", "portcullis-report.junit.xml",
           "portcullis-report.sarif", "portcullis-report.txt")


def _version():
    """The collection's version: MANIFEST.json in an installed collection, galaxy.yml in a checkout."""
    manifest = os.path.join(ROOT, "MANIFEST.json")
    if os.path.isfile(manifest):
        with open(manifest, encoding="utf-8") as stream:
            return json.load(stream)["collection_info"]["version"]
    with open(os.path.join(ROOT, "galaxy.yml"), encoding="utf-8") as stream:
        return yaml.safe_load(stream)["version"]


def _run(argv, cwd, timeout=300, unset=(), **env):
    """Run argv in cwd with more environment variables `env`, and without those named in `unset`; it must pass."""
    environment = {key: value for key, value in os.environ.items() if key not in unset}
    completed = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                               env=dict(environment, **env), check=False)
    assert completed.returncode == 0, "%s failed (rc=%d): %s%s" % (
        " ".join(argv), completed.returncode, completed.stdout[-3000:], completed.stderr[-3000:])
    return completed


def _requirement_lines(path):
    """A pip or bindep file's requirements, without comments or blank lines."""
    with open(path, encoding="utf-8") as stream:
        return [line.split("#", 1)[0].strip() for line in stream if line.split("#", 1)[0].strip()]


def test_ansible_builder_create_renders_the_execution_environment(tmp_path):
    tarball, version = collection_tarball(), _version()
    name = "portcullis-hardening-%s.tar.gz" % version
    assert os.path.basename(tarball) == name, "the tarball is not of the version the collection says"
    # The definition shipped in the collection, next to the tarball where `make collection` puts it (build/).
    shutil.copy(os.path.join(ROOT, "execution-environment.yml"), tmp_path)
    (tmp_path / "build").mkdir()
    shutil.copy(tarball, tmp_path / "build")
    _run(["ansible-builder", "create", "-f", "execution-environment.yml", "-c", "context", "--output-filename",
          "Containerfile"], cwd=str(tmp_path))

    context = tmp_path / "context"
    build = context / "_build"
    containerfile = (context / "Containerfile").read_text()
    lines = containerfile.splitlines()

    # The definition's base image and Python, and ansible-core and ansible-runner at the versions the collection is
    # tested with.
    definition = yaml.safe_load((tmp_path / "execution-environment.yml").read_text())
    with open(os.path.join(ROOT, "requirements", "controller.txt"), encoding="utf-8") as stream:
        pins = dict(line.strip().split("==", 1) for line in stream if "==" in line and not line.startswith("#"))
    assert lines[0] == 'ARG EE_BASE_IMAGE="%s"' % definition["images"]["base_image"]["name"], containerfile
    assert 'ARG PYCMD="%s"' % definition["dependencies"]["python_interpreter"]["python_path"] in lines
    assert ('ARG ANSIBLE_INSTALL_REFS="ansible-core==%s ansible-runner==%s"'
            % (pins["ansible-core"], pins["ansible-runner"])) in lines
    assert "RUN $PYCMD -m pip install --no-cache-dir $ANSIBLE_INSTALL_REFS" in lines

    # The tarball is in the context, byte for byte, and the galaxy stage installs the collection from it.
    copied = build / "collections" / name
    assert hashlib.sha256(copied.read_bytes()).digest() == hashlib.sha256(Path(tarball).read_bytes()).digest()
    requirements = yaml.safe_load((build / "requirements.yml").read_text())
    assert requirements == {"collections": [{"name": "collections/" + name, "type": "file"}]}
    galaxy = lines.index("FROM base AS galaxy")
    assert lines.index("COPY _build /build") > galaxy and lines.index("WORKDIR /build") > galaxy
    install = [line for line in lines if "ansible-galaxy collection install" in line]
    assert install == ['RUN ANSIBLE_GALAXY_DISABLE_GPG_VERIFY=1 ansible-galaxy collection install '
                       '$ANSIBLE_GALAXY_CLI_COLLECTION_OPTS -r requirements.yml '
                       '--collections-path "/usr/share/ansible/collections"'], containerfile

    # The builder stage introspects the installed collections (for their requirements.txt and bindep.txt),
    # and the final stage installs what it found and carries the collections over.
    builder, final = lines.index("FROM base AS builder"), lines.index("FROM base AS final")
    introspect = ("RUN $PYCMD /output/scripts/introspect.py introspect --write-bindep=/tmp/src/bindep.txt "
                  "--write-pip=/tmp/src/requirements.txt")
    assert builder < lines.index("COPY --from=galaxy /usr/share/ansible /usr/share/ansible") < lines.index(introspect)
    assert lines.index(introspect) < lines.index("RUN /output/scripts/assemble") < final
    assert "RUN /output/scripts/install-from-bindep && rm -rf /output/wheels" in lines[final:]
    assert "COPY --from=galaxy /usr/share/ansible /usr/share/ansible" in lines[final:]
    # No requirements of the EE's own: the collection's come through introspection only, listed once.
    assert not (build / "requirements.txt").exists() and not (build / "bindep.txt").exists()
    assert (build / "scripts" / "introspect.py").is_file()

    # The galaxy stage, as the build runs it (in _build/, the image's /build), into a directory of our own that
    # is, as in the image, the only place with collections (else ansible-galaxy finds this one installed already,
    # through ANSIBLE_COLLECTIONS_PATH or PYTHONPATH, and installs nothing)...
    collections = tmp_path / "usr-share-ansible-collections"
    _run(["ansible-galaxy", "collection", "install", "-r", "requirements.yml", "--collections-path",
          str(collections)], cwd=str(build), unset=("PYTHONPATH",), ANSIBLE_GALAXY_DISABLE_GPG_VERIFY="1",
         ANSIBLE_COLLECTIONS_PATH=str(collections))
    installed = collections / "ansible_collections" / "portcullis" / "hardening"
    assert json.loads((installed / "MANIFEST.json").read_text())["collection_info"]["version"] == version
    # ...then the builder stage's introspection of it, with the context's own script.
    src = tmp_path / "tmp-src"
    _run([sys.executable, str(build / "scripts" / "introspect.py"), "introspect", str(collections),
          "--write-bindep=%s" % (src / "bindep.txt"), "--write-pip=%s" % (src / "requirements.txt")], cwd=str(build))
    python = (src / "requirements.txt").read_text().splitlines()
    system = (src / "bindep.txt").read_text().splitlines()
    assert python == ["%s  # from collection portcullis.hardening" % line
                      for line in _requirement_lines(os.path.join(ROOT, "requirements.txt"))]
    assert any(line.startswith("paramiko") for line in python), python
    assert system == ["%s  # from collection portcullis.hardening" % line
                      for line in _requirement_lines(os.path.join(ROOT, "bindep.txt"))]
    # What install-from-bindep installs on the RPM-based base image, and what a Debian-based one would.
    rules = Depends((src / "bindep.txt").read_text())
    assert [rule[0] for rule in rules.active_rules(["platform:rpm", "platform:redhat", "default"])] == [
        "openssh-clients"]
    assert [rule[0] for rule in rules.active_rules(["platform:dpkg", "platform:debian", "default"])] == [
        "openssh-client"]


def _state(host):
    """What an audit must leave alone on a host."""
    return host.ssh("nft list ruleset; systemctl list-units --no-legend --plain --no-pager 'portcullis-*' "
                    "'ssh*'; systemctl list-unit-files --no-legend --no-pager 'portcullis-*'; "
                    "ls /var/lib/portcullis 2>/dev/null; sshd -T | sort").stdout


def _job_events(artifacts):
    events = []
    for path in glob.glob(os.path.join(artifacts, "job_events", "*.json")):
        with open(path, encoding="utf-8") as stream:
            events.append(json.load(stream))
    return sorted(events, key=lambda event: event["counter"])


def test_ansible_runner_runs_the_audit_playbook_on_the_lab(lab_hosts, tmp_path):
    found = collections_path()
    if not found:
        pytest.fail("set ANSIBLE_COLLECTIONS_PATH (or PYTHONPATH) to the collections dir holding "
                    "portcullis.hardening", pytrace=False)
    names = sorted(host.name for host in lab_hosts)
    # A private_data_dir as AWX lays one out: the project, the inventory, the environment and the extra vars.
    private = tmp_path / "private"
    for sub in ("project", "inventory", "env"):
        (private / sub).mkdir(parents=True)
    shutil.copy(os.path.join(ROOT, "playbooks", "audit.yml"), private / "project" / "audit.yml")
    shutil.copy(lab_hosts[0].inventory, private / "inventory" / "hosts.yml")
    envvars = {"ANSIBLE_COLLECTIONS_PATH": found, "ANSIBLE_SSH_ARGS": FRESH_SSH, "ANSIBLE_HOST_KEY_CHECKING": "True",
               "ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORCE_COLOR": "0"}
    (private / "env" / "envvars").write_text(yaml.safe_dump(envvars))
    with open(os.path.join(ROOT, "demo", "lab-allowlist.yml"), encoding="utf-8") as stream:
        extravars = yaml.safe_load(stream)
    reports = tmp_path / "reports"
    extravars.update(portcullis_report_dir=str(reports), portcullis_fail_on_findings=False)
    (private / "env" / "extravars").write_text(yaml.safe_dump(extravars))
    before = {host.name: _state(host) for host in lab_hosts}

    runner = ansible_runner.run(private_data_dir=str(private), playbook="audit.yml", ident=IDENT, cmdline="--check",
                                quiet=True, timeout=PLAYBOOK_TIMEOUT)
    artifacts = private / "artifacts" / IDENT
    stdout = (artifacts / "stdout").read_text() if (artifacts / "stdout").exists() else ""
    assert (runner.status, runner.rc) == ("successful", 0), stdout[-4000:]
    assert sorted(runner.stats["ok"]) == names and not runner.stats["failures"] and not runner.stats["dark"], \
        runner.stats
    assert (artifacts / "rc").read_text().strip() == "0" and (artifacts / "status").read_text() == "successful"
    assert "--check" in json.loads((artifacts / "command").read_text())["command"]

    # The reports, naming every lab host, each audited (the demo's allowlist: not compliant).
    for name in REPORTS:
        assert (reports / name).stat().st_size > 0, name
    report = json.loads((reports / "portcullis-report.json").read_text())
    assert sorted(report["hosts"]) == names
    assert {entry["status"] for entry in report["hosts"].values()} == {"noncompliant"}, report["hosts"]
    text = (reports / "portcullis-report.txt").read_text()
    assert all(name in text for name in names), text

    # The job events AWX would stream: the playbook's start and end, and the audit phase's port_audit result on
    # every host (the verify phase's port_audit task is off in audit.yml: skipped).
    events = _job_events(str(artifacts))
    assert events and events[0]["event"] == "playbook_on_start" and events[-1]["event"] == "playbook_on_stats"
    audits, phases = {}, set()
    for event in events:
        data = event.get("event_data", {})
        if not event["event"].startswith("runner_on_") or data.get("resolved_action") != "portcullis.hardening.port_audit":
            continue
        phase = os.path.basename(data["task_path"].rsplit(":", 1)[0])
        phases.add(phase)
        expected = {"audit.yml": ("runner_on_start", "runner_on_ok")}.get(phase, ("runner_on_start", "runner_on_skipped"))
        assert event["event"] in expected, (phase, event["event"], data["host"], data.get("res"))
        if event["event"] == "runner_on_ok":
            assert data["host"] not in audits, "two results for %s" % data["host"]
            audits[data["host"]] = data["res"]
    assert "audit.yml" in phases, phases
    assert sorted(audits) == names, sorted(audits)
    for name, result in audits.items():
        assert result["compliant"] is False and result["findings"] and not result.get("changed"), (name, result)
        # The event's findings are the report's for the host.
        assert len(result["findings"]) == len(report["hosts"][name]["findings"]), name

    assert {host.name: _state(host) for host in lab_hosts} == before, "an audit in check mode changed a host"
