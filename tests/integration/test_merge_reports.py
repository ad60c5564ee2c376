# Copyright (c) Portcullis contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""playbooks/merge-reports.yml as the last step of a sliced job runs it: the real ansible-playbook, on the controller
alone (no lab), on the JSON reports two slices wrote with the real audit_report filter.

What it writes must be what the role's report phase writes for the whole fleet at once, byte for byte, in every
format; and a bad or missing input must fail the play with a message naming it, before any report is written.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from harness import PLAYBOOK_TIMEOUT, ansible_env, collections_path

from ansible_collections.portcullis.hardening.plugins.filter.audit_report import audit_report

HERE = os.path.dirname(os.path.abspath(__file__))
COLLECTION = os.path.dirname(os.path.dirname(HERE))
PLAYBOOK = os.path.join(COLLECTION, "playbooks", "merge-reports.yml")
# Three hosts audited by port_audit's own logic: not compliant (every finding kind), unreachable, compliant.
FIXTURE = os.path.join(COLLECTION, "tests", "unit", "plugins", "plugin_utils", "fixtures", "audit_results.json")
APP, DB, WEB = "app-01.example.org", "db-01.example.org", "web-01.example.org"
FAILED = "fail-01.example.org"
FILES = {"json": "portcullis-report.json", "junit": "portcullis-report.junit.xml", "sarif": "portcullis-report.sarif",
         "html": "portcullis-report.html", "text": "portcullis-report.txt"}
EARLY, LATE = "2025-06-01T09:00:00Z", "2025-06-01T09:30:00Z"


@pytest.fixture
def fleet():
    with open(FIXTURE, encoding="utf-8") as source:
        results = json.load(source)
    results[FAILED] = {"failed": True, "msg": "sudo: a password is required"}
    return results


def write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as stream:
        stream.write(text)
    return path


def write_slice(path, fleet, hosts, generated_at):
    """The JSON report of one slice, as the role's report phase writes it for the slice's hosts."""
    return write(path, audit_report({host: fleet[host] for host in hosts}, "json", generated_at))


def read(path):
    with open(path, encoding="utf-8") as source:
        return source.read()


def merge(workdir, **variables):
    """Run the playbook in workdir (the current directory of relative paths) with these extra variables."""
    workdir = os.path.realpath(str(workdir))
    path = collections_path()
    if not path:
        pytest.fail("portcullis.hardening is not installed: set ANSIBLE_COLLECTIONS_PATH (or PYTHONPATH) to the "
                    "directory holding ansible_collections/portcullis/hardening", pytrace=False)
    inventory = write(os.path.join(workdir, "inventory.ini"),
                      "localhost ansible_connection=local ansible_python_interpreter=%s\n" % sys.executable)
    extra = write(os.path.join(workdir, "vars.json"), json.dumps(variables))
    completed = subprocess.run(
        [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", inventory, PLAYBOOK, "-e",
         "@" + extra], cwd=workdir, capture_output=True, text=True, timeout=PLAYBOOK_TIMEOUT, check=False,
        env=ansible_env(ANSIBLE_COLLECTIONS_PATH=path, PWD=workdir, ANSIBLE_NOCOLOR="1",
                        ANSIBLE_STDOUT_CALLBACK="default"))
    return completed, completed.stdout + completed.stderr


def assert_ran(completed, output):
    assert completed.returncode == 0, output[-4000:]


def test_the_slices_merge_into_the_reports_the_role_writes_for_the_fleet(tmp_path, fleet):
    write_slice(str(tmp_path / "slices" / "41" / "portcullis-report.json"), fleet, [APP, FAILED], EARLY)
    write_slice(str(tmp_path / "slices" / "42" / "portcullis-report.json"), fleet, [DB, WEB], LATE)
    completed, output = merge(tmp_path, portcullis_slice_report_dir="slices", portcullis_report_dir="out")
    assert_ran(completed, output)
    for report_format, name in FILES.items():
        assert read(str(tmp_path / "out" / name)) == audit_report(fleet, report_format, LATE), report_format
    report = json.loads(read(str(tmp_path / "out" / FILES["json"])))
    assert list(report["hosts"]) == [APP, DB, FAILED, WEB] and "drift" not in report
    assert report["summary"] == {"hosts": 4, "compliant": 1, "noncompliant": 1, "unreachable": 2,
                                 "findings": {"high": 8, "medium": 2, "low": 1, "info": 5}}
    assert "%s: 2 hosts, generated at %s by portcullis.hardening 0.1.0" % (
        os.path.realpath(str(tmp_path / "slices" / "41" / "portcullis-report.json")), EARLY) in output
    assert "4 hosts: 1 compliant, 1 not compliant, 2 not audited" in output


def test_a_second_merge_says_what_changed_since_the_first(tmp_path, fleet):
    before = json.loads(json.dumps(fleet))
    before[WEB]["findings"].append(dict(before[APP]["findings"][0], port=4000, address="0.0.0.0", rule=None))
    before[WEB]["compliant"] = False
    write_slice(str(tmp_path / "slices" / "1" / "portcullis-report.json"), before, [APP, FAILED], EARLY)
    write_slice(str(tmp_path / "slices" / "2" / "portcullis-report.json"), before, [DB, WEB], EARLY)
    assert_ran(*merge(tmp_path, portcullis_slice_report_dir=str(tmp_path / "slices")))
    first = read(str(tmp_path / "reports" / FILES["json"]))  # the default portcullis_report_dir: ./reports
    assert first == audit_report(before, "json", EARLY)

    # The next run: the finding on 4000 is fixed; the slices' reports are overwritten with the new ones.
    write_slice(str(tmp_path / "slices" / "1" / "portcullis-report.json"), fleet, [APP, FAILED], LATE)
    write_slice(str(tmp_path / "slices" / "2" / "portcullis-report.json"), fleet, [DB, WEB], LATE)
    assert_ran(*merge(tmp_path, portcullis_slice_report_dir=str(tmp_path / "slices")))
    previous = json.loads(first)
    for report_format, name in FILES.items():
        assert read(str(tmp_path / "reports" / name)) == audit_report(fleet, report_format, LATE, previous=previous)
    drift = json.loads(read(str(tmp_path / "reports" / FILES["json"])))["drift"]
    assert drift["previous_generated_at"] == EARLY
    assert [(item["host"], item["finding"]["port"]) for item in drift["findings"]["resolved"]] == [(WEB, 4000)]
    assert drift["findings"]["new"] == []
    assert read(str(tmp_path / "reports" / FILES["text"])).startswith(
        "Since %s: 0 new findings, 1 resolved, " % EARLY)


def test_listed_slices_with_a_wildcard_and_a_time_of_ones_own(tmp_path, fleet):
    write_slice(str(tmp_path / "in" / "slice-1.json"), fleet, [APP], EARLY)
    write_slice(str(tmp_path / "in" / "slice-2.json"), fleet, [DB, FAILED], EARLY)
    write_slice(str(tmp_path / "elsewhere" / "web.json"), fleet, [WEB], EARLY)
    previous = write(str(tmp_path / "old.json"), audit_report({WEB: fleet[WEB]}, "json", "2025-05-31T09:30:00Z"))
    completed, output = merge(tmp_path, portcullis_slice_reports=["in/slice-*.json", str(tmp_path / "elsewhere/web.json")],
                              portcullis_merged_generated_at="2025-06-01T12:00:00+02:00", portcullis_report_dir="out",
                              portcullis_previous_report="old.json")
    assert_ran(completed, output)
    for report_format, name in FILES.items():
        assert read(str(tmp_path / "out" / name)) == audit_report(
            fleet, report_format, "2025-06-01T10:00:00Z", previous=json.loads(read(previous))), report_format


def overlapping(tmp_path, fleet):
    """The same host in two slices, once audited, once unreachable: a stale report next to this run's."""
    write_slice(str(tmp_path / "slices" / "1" / "portcullis-report.json"), fleet, [APP, WEB], LATE)
    stale = dict(fleet, **{WEB: {"unreachable": True, "msg": "timed out"}})
    write_slice(str(tmp_path / "slices" / "2" / "portcullis-report.json"), stale, [DB, WEB], EARLY)
    return {"portcullis_slice_report_dir": "slices"}


def other_schema(tmp_path, fleet):
    write_slice(str(tmp_path / "slices" / "1" / "portcullis-report.json"), fleet, [APP], LATE)
    report = json.loads(audit_report({WEB: fleet[WEB]}, "json", LATE))
    write(str(tmp_path / "slices" / "2" / "portcullis-report.json"), json.dumps(dict(report, schema_version=2)))
    return {"portcullis_slice_report_dir": "slices"}


def own_output(tmp_path, fleet):
    write_slice(str(tmp_path / "slices" / "1" / "portcullis-report.json"), fleet, [APP], LATE)
    write_slice(str(tmp_path / "slices" / "merged" / "portcullis-report.json"), fleet, [APP, WEB], EARLY)
    return {"portcullis_slice_report_dir": "slices", "portcullis_report_dir": "slices/merged"}


def empty_file(tmp_path, fleet):
    write_slice(str(tmp_path / "slices" / "1" / "portcullis-report.json"), fleet, [APP], LATE)
    write(str(tmp_path / "slices" / "2" / "portcullis-report.json"), "")
    return {"portcullis_slice_report_dir": "slices"}


def empty_dir(tmp_path, fleet):
    write_slice(str(tmp_path / "slices" / "portcullis-report.json"), fleet, [APP], LATE)  # not one level below
    return {"portcullis_slice_report_dir": "slices"}


@pytest.mark.parametrize("given, message", [
    pytest.param(lambda tmp_path, fleet: {}, "Nothing to merge: set portcullis_slice_report_dir", id="no input"),
    pytest.param(lambda tmp_path, fleet: {"portcullis_slice_report_dir": "nowhere"},
                 "portcullis_slice_report_dir: nowhere is not a directory", id="no such directory"),
    pytest.param(empty_dir, "No slice report: no {tmp}/slices/*/portcullis-report.json", id="nothing in the directory"),
    pytest.param(lambda tmp_path, fleet: {"portcullis_slice_reports": ["missing.json"]},
                 "No such slice report: {tmp}/missing.json", id="missing file"),
    pytest.param(lambda tmp_path, fleet: {"portcullis_slice_reports": ["in/*.json"]},
                 "portcullis_slice_reports: in/*.json matches no file", id="wildcard matching nothing"),
    pytest.param(empty_file, "merge_reports: reports[1] ({tmp}/slices/2/portcullis-report.json): the text is empty",
                 id="empty file"),
    pytest.param(other_schema, "merge_reports: reports[1] ({tmp}/slices/2/portcullis-report.json): schema_version: 2 "
                 "is not 1", id="other schema_version"),
    pytest.param(overlapping, "merge_reports: host %s is in reports[0] ({tmp}/slices/1/portcullis-report.json) and "
                 "in reports[1] ({tmp}/slices/2/portcullis-report.json), with different entries" % WEB,
                 id="a host in two slices"),
    pytest.param(own_output, "{tmp}/slices/merged/portcullis-report.json is this merge's own output",
                 id="its own output as a slice"),
])
def test_bad_input_fails_naming_it_before_any_report_is_written(tmp_path, fleet, given, message):
    variables = dict({"portcullis_report_dir": "out"}, **given(tmp_path, fleet))
    completed, output = merge(tmp_path, **variables)
    assert completed.returncode != 0
    assert message.format(tmp=os.path.realpath(str(tmp_path))) in " ".join(output.split()), output[-4000:]
    if variables["portcullis_report_dir"] == "out":
        assert not (tmp_path / "out").exists()
    else:  # its own output, left as it was
        assert json.loads(read(str(tmp_path / "slices" / "merged" / FILES["json"])))["generated_at"] == EARLY
