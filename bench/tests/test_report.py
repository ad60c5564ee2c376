# Copyright (c) Portcullis contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""bench/report.py: docs/performance.md says what the committed results say, and a missing result is said to be
missing, never made up.

bench/ is not part of the built collection: `make units` runs these tests from the source tree.
"""

from __future__ import annotations

import os
import sys

BENCH_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, os.path.abspath(BENCH_DIR))

import report  # noqa: E402  pylint: disable=wrong-import-position


def test_performance_doc_is_what_the_results_give():
    with open(report.DOC) as handle:
        text = handle.read()
    assert report.updated_doc(text, report.tables()) == text, "run make bench-report"


def test_every_committed_result_is_in_the_doc():
    tables = report.tables()
    for name, heading in (("discovery", "### Discovery at scale"), ("profile", "### Profile of listening_ports"),
                          ("fleet", "### Fleet")):
        assert report.load(name) is not None, "bench/results/%s.json is missing" % name
        assert heading in tables
    assert "No result yet" not in tables


def test_missing_results_are_said_to_be_missing(monkeypatch):
    monkeypatch.setattr(report, "load", lambda name: None)
    tables = report.tables()
    assert tables.count("No result yet: run `make bench`.") == 2
    assert "No before/after result yet" in tables
    assert "|" not in tables  # no table made of nothing


def test_goal_lines_follow_the_results():
    result = report.load("discovery")
    lines = "\n".join(report.discovery_section(result))
    bare = result["goals"]["module_vs_bare_ss"]
    assert ("%.2f×" % bare["ratio"]) in lines
    assert ("**met**" if bare["met"] else "**not met**") in lines.split("bare `ss`")[1].splitlines()[0]
