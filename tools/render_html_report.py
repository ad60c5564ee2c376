#!/usr/bin/env python
# Copyright (c) Portcullis contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Render a Portcullis compliance report as HTML, to read it or to take screenshots of it.

    tools/render_html_report.py SOURCE.json OUT.html

SOURCE.json is a JSON report (audit_report(..., 'json')), or the audit results it is made from
({host: port_audit result}, like the unit tests' fixture), which are stamped with the current time.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def import_reports(packages):
    """The report modules of this checkout, whose root is the collection root, importable under `packages`."""
    os.makedirs(os.path.join(packages, "ansible_collections", "portcullis"))
    os.symlink(ROOT, os.path.join(packages, "ansible_collections", "portcullis", "hardening"))
    sys.path.insert(0, packages)
    from ansible_collections.portcullis.hardening.plugins.plugin_utils import _report_html, _reports
    return _reports, _report_html


def collection_version():
    with open(os.path.join(ROOT, "galaxy.yml"), encoding="utf-8") as galaxy:
        for line in galaxy:
            if line.startswith("version:"):
                return line.split(":", 1)[1].strip()
    raise SystemExit("galaxy.yml has no version")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", help="JSON report, or audit results by host")
    parser.add_argument("output", help="HTML file to write")
    args = parser.parse_args()
    with open(args.source, encoding="utf-8") as source:
        data = json.load(source)
    with tempfile.TemporaryDirectory(prefix="portcullis-render-") as packages:
        reports, report_html = import_reports(packages)
        if "schema_version" not in data:
            data = reports.build_report(data, datetime.datetime.now(datetime.timezone.utc), collection_version())
        page = report_html.render_html(data)
    with open(args.output, "w", encoding="utf-8") as output:
        output.write(page)


if __name__ == "__main__":
    main()
