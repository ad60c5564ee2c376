# Copyright (c) Portcullis contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The compliance report as one self-contained HTML page: inline CSS, no script, no external reference.

Private to the collection: used by the audit_report filter. Every text from a host (names, command
lines, messages) is escaped.
"""

from __future__ import annotations

from html import escape

from ansible_collections.portcullis.hardening.plugins.plugin_utils._reports import (
    KINDS,
    SEVERITIES,
    found_by,
    printable_report,
    probed,
    processes_text,
    where,
)
from ansible_collections.portcullis.hardening.plugins.plugin_utils._table import COLUMNS, listener_rows

STATUS_LABELS = {"compliant": "Compliant", "noncompliant": "Not compliant", "unreachable": "Unreachable",
                 "failed": "Audit failed"}
FLEET_COLUMNS = ("Host", "Severity", "Finding", "Where", "Processes", "Controls", "Remediation")
HOST_FINDING_COLUMNS = FLEET_COLUMNS[1:]
ALLOWLIST_COLUMNS = ("Entry", "Port", "Protocol", "Family", "Bind", "Sources", "Process", "Comment")
PROBE_STATES = ("open", "closed", "filtered")
UDP_PROBE_STATES = PROBE_STATES + ("open|filtered",)

CSS = """
:root { --ink: #1d2433; --muted: #5b6475; --line: #dde2ea; --soft: #f5f7fa; --accent: #2f4b7c;
  --high: #b42318; --high-bg: #fef3f2; --medium: #b54708; --medium-bg: #fffaeb;
  --low: #175cd3; --low-bg: #eff8ff; --info: #475467; --info-bg: #f2f4f7;
  --ok: #067647; --ok-bg: #ecfdf3; --down: #5925dc; --down-bg: #f4f3ff; }
* { box-sizing: border-box; }
body { margin: 0; color: var(--ink); background: #fff; font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto,
  "Helvetica Neue", Arial, "Noto Sans", "Liberation Sans", sans-serif; }
main { max-width: 1320px; margin: 0 auto; padding: 32px 28px 48px; }
header { border-bottom: 3px solid var(--accent); padding-bottom: 18px; margin-bottom: 24px; }
.eyebrow { text-transform: uppercase; letter-spacing: .08em; font-size: 12px; font-weight: 600; color: var(--accent); }
h1 { font-size: 28px; margin: 4px 0 6px; }
h2 { font-size: 20px; margin: 36px 0 12px; }
h3 { font-size: 15px; margin: 22px 0 8px; color: var(--muted); text-transform: uppercase; letter-spacing: .05em; }
.meta { color: var(--muted); margin: 0; }
.verdict { display: inline-block; margin-top: 12px; padding: 6px 12px; border-radius: 6px; font-weight: 600; }
.verdict.bad { color: var(--high); background: var(--high-bg); }
.verdict.good { color: var(--ok); background: var(--ok-bg); }
.cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(140px, 1fr)); gap: 12px; margin: 12px 0; }
.card { border: 1px solid var(--line); border-radius: 10px; padding: 12px 16px; border-top-width: 4px; }
.card .n { font-size: 30px; font-weight: 700; line-height: 1.1; }
.card .l { color: var(--muted); font-size: 13px; }
.card.total { border-top-color: var(--accent); } .card.compliant { border-top-color: var(--ok); }
.card.noncompliant, .card.high { border-top-color: var(--high); } .card.unreachable { border-top-color: var(--down); }
.card.medium { border-top-color: var(--medium); } .card.low { border-top-color: var(--low); }
.card.info { border-top-color: var(--info); }
.group-label { font-size: 13px; font-weight: 600; color: var(--muted); margin: 18px 0 0; }
.table-wrap { overflow-x: auto; border: 1px solid var(--line); border-radius: 8px; }
table { border-collapse: collapse; width: 100%; font-size: 14px; }
th { text-align: left; background: var(--soft); color: var(--muted); font-size: 12px; text-transform: uppercase;
  letter-spacing: .04em; padding: 8px 10px; border-bottom: 1px solid var(--line); white-space: nowrap; }
td { padding: 8px 10px; border-top: 1px solid var(--line); vertical-align: top; }
tr:first-child td { border-top: 0; }
tr.sev-high td:first-child { box-shadow: inset 3px 0 var(--high); }
tr.sev-medium td:first-child { box-shadow: inset 3px 0 var(--medium); }
tr.sev-low td:first-child { box-shadow: inset 3px 0 var(--low); }
code, .mono { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, "Liberation Mono", monospace;
  font-size: 13px; }
.cmd { display: block; color: var(--muted); font-size: 12px; word-break: break-all; }
.sub { display: block; color: var(--muted); font-size: 13px; }
.kind { font-weight: 600; display: block; }
.nowrap { white-space: nowrap; }
.badge { display: inline-block; padding: 1px 8px; border-radius: 999px; font-size: 12px; font-weight: 600;
  white-space: nowrap; border: 1px solid currentColor; }
.b-high, .b-noncompliant { color: var(--high); background: var(--high-bg); }
.b-medium { color: var(--medium); background: var(--medium-bg); }
.b-low { color: var(--low); background: var(--low-bg); }
.b-info { color: var(--info); background: var(--info-bg); }
.b-compliant { color: var(--ok); background: var(--ok-bg); }
.b-unreachable, .b-failed { color: var(--down); background: var(--down-bg); }
.ctl { display: block; white-space: nowrap; }
th.col-finding { width: 26%; } th.col-remediation { width: 25%; } th.col-processes { width: 15%; }
.host { border-top: 1px solid var(--line); margin-top: 40px; }
.host h2 { display: flex; flex-wrap: wrap; align-items: center; gap: 10px; }
.host-counts { color: var(--muted); font-size: 14px; font-weight: 400; }
.callout { border: 1px solid var(--down); background: var(--down-bg); border-radius: 8px; padding: 12px 16px; }
.empty { color: var(--muted); font-style: italic; }
a { color: var(--accent); }
footer { margin-top: 48px; color: var(--muted); font-size: 13px; border-top: 1px solid var(--line); padding-top: 12px; }
@media screen and (max-width: 760px) {
  main { padding: 20px 14px 32px; }
  h1 { font-size: 23px; }
  table.stack thead { display: none; }
  table.stack tr { display: block; border-top: 1px solid var(--line); padding: 6px 0; }
  table.stack td { display: block; border: 0; padding: 3px 12px; }
  .ctl { display: inline-block; margin-right: 8px; }
  table.stack td[data-label]::before { content: attr(data-label); display: block; font-size: 11px;
    text-transform: uppercase; letter-spacing: .04em; color: var(--muted); }
}
@page { margin: 12mm; }
@media print {
  body, table { font-size: 10px; } main { max-width: none; padding: 0; }
  code, .mono, .sub, .cmd, .badge, th { font-size: 9px; }
  td, th { padding: 4px 6px; }
  .nowrap { white-space: normal; }
  .card { padding: 6px 10px; } .card .n { font-size: 20px; }
  * { -webkit-print-color-adjust: exact; print-color-adjust: exact; }
  .table-wrap { overflow: visible; border: 0; }
  tr, .card, .callout { break-inside: avoid; }
  .host { break-before: page; border-top: 0; }
  h2, h3 { break-after: avoid; }
  a { color: inherit; text-decoration: none; }
}
"""


def _badge(css, text):
    return '<span class="badge b-%s">%s</span>' % (css, escape(text))


def _table(columns, rows, stack=True):
    """rows: [(row css class, [cell HTML])]; cells are already escaped."""
    # th.col-<first word>: the CSS sizes the wordy columns by it.
    head = "".join('<th class="col-%s">%s</th>' % (escape(column.split()[0].lower()), escape(column))
                   for column in columns)
    body = "".join('<tr class="%s">%s</tr>' % (css, "".join(
        '<td data-label="%s">%s</td>' % (escape(column), cell) for column, cell in zip(columns, cells)))
        for css, cells in rows)
    return '<div class="table-wrap"><table%s><thead><tr>%s</tr></thead><tbody>%s</tbody></table></div>' % (
        ' class="stack"' if stack else "", head, body)


def _processes_cell(processes, with_commands):
    html = escape(processes_text(processes))
    if with_commands:
        commands = []
        for process in processes:
            if process.get("cmdline") and process["cmdline"] not in commands:
                commands.append(process["cmdline"])
        html += "".join('<code class="cmd">%s</code>' % escape(command) for command in commands)
    return html


def _controls_cell(controls):
    return "".join('<span class="ctl mono" title="%s">%s</span>' % (
        escape("%s %s: %s" % (control["benchmark"], control["version"], control["title"])), escape(control["id"]))
        for control in controls) or "-"


def _finding_cells(finding, with_commands):
    return [_badge(finding["severity"], finding["severity"]),
            '<span class="kind">%s</span>%s' % (escape(KINDS[finding["kind"]].title), escape(finding["message"])),
            '<span class="mono nowrap">%s</span><span class="sub">%s, %s</span>' % (
                escape(where(finding)), escape(finding["family"]), escape(found_by(finding))),
            _processes_cell(finding["processes"], with_commands),
            _controls_cell(finding["controls"]),
            escape(finding["remediation"])]


def _verdict(report):
    summary = report["summary"]
    if summary["noncompliant"] + summary["unreachable"] == 0:
        return '<p class="verdict good">All %d hosts compliant</p>' % summary["hosts"]
    return '<p class="verdict bad">%d of %d hosts not compliant, %d not audited</p>' % (
        summary["noncompliant"], summary["hosts"], summary["unreachable"])


def _cards(items):
    return '<div class="cards">%s</div>' % "".join(
        '<div class="card %s"><div class="n">%d</div><div class="l">%s</div></div>' % (css, count, escape(label))
        for css, count, label in items)


def _summary(report):
    summary = report["summary"]
    hosts = [("total", summary["hosts"], "Hosts"), ("compliant", summary["compliant"], "Compliant"),
             ("noncompliant", summary["noncompliant"], "Not compliant"),
             ("unreachable", summary["unreachable"], "Unreachable or failed")]
    findings = [(severity, summary["findings"][severity], severity.capitalize()) for severity in SEVERITIES]
    return ('<section aria-label="Summary"><p class="group-label">Hosts</p>%s'
            '<p class="group-label">Findings by severity</p>%s</section>') % (_cards(hosts), _cards(findings))


def _counts(entry):
    """6 high, 1 medium, 0 low, 4 info; a dash for a host not audited."""
    if entry["error"] is not None:
        return "-"
    return ", ".join("%d %s" % (sum(1 for item in entry["findings"] if item["severity"] == severity), severity)
                     for severity in SEVERITIES)


def _host_index(report, anchors):
    rows = [("", ['<a href="#%s">%s</a>' % (anchors[host], escape(host)),
                  _badge(entry["status"], STATUS_LABELS[entry["status"]]), _counts(entry)])
            for host, entry in report["hosts"].items()]
    return "<h2>Hosts</h2>" + _table(("Host", "Status", "Findings"), rows, stack=False)


def _fleet_findings(report, anchors):
    found = [(SEVERITIES.index(item["severity"]), host, item) for host, entry in report["hosts"].items()
             for item in entry["findings"] if item["severity"] != "info"]
    found.sort(key=lambda found_item: found_item[:2])
    html = "<h2 id=\"findings\">Findings to fix (%d)</h2>" % len(found)
    if not found:
        return html + '<p class="empty">No finding above info on any audited host.</p>'
    rows = [("sev-" + item["severity"], ['<a class="nowrap" href="#%s">%s</a>' % (anchors[host], escape(host))]
             + _finding_cells(item, with_commands=False)) for _rank, host, item in found]
    return html + _table(FLEET_COLUMNS, rows)


def _drift_section(drift):
    """What changed since the previous report: counts, new and resolved findings, listeners, hosts."""
    findings, listeners, hosts = drift["findings"], drift["listeners"], drift["hosts"]
    since = drift["previous_generated_at"].replace("T", " ").replace("Z", " UTC")
    html = '<section id="drift" aria-label="Drift"><h2>What changed since %s</h2>' % escape(since)
    html += _cards([("high", len(findings["new"]), "New findings"),
                    ("compliant", len(findings["resolved"]), "Resolved findings"),
                    ("info", findings["unchanged"], "Unchanged findings"),
                    ("medium", len(listeners["appeared"]), "Listeners appeared"),
                    ("low", len(listeners["disappeared"]), "Listeners disappeared"),
                    ("total", len(hosts["appeared"]), "Hosts appeared"),
                    ("unreachable", len(hosts["disappeared"]), "Hosts disappeared")])
    for title, changed in (("New findings", findings["new"]), ("Resolved findings", findings["resolved"])):
        rows = [("sev-" + item["finding"]["severity"], [escape(item["host"])]
                 + _finding_cells(item["finding"], with_commands=False)) for item in changed]
        html += "<h3>%s (%d)</h3>" % (title, len(rows)) + (
            _table(FLEET_COLUMNS, rows) if rows else '<p class="empty">None.</p>')
    rows = [("", [escape(change), escape(item["host"]),
                  '<span class="mono nowrap">%s</span>' % escape(where(item["listener"])),
                  escape(item["listener"]["family"]), _processes_cell(item["listener"]["processes"], False)])
            for change in ("appeared", "disappeared") for item in listeners[change]]
    html += "<h3>Listening sockets (%d changed)</h3>" % len(rows) + (
        _table(("Change", "Host", "Where", "Family", "Processes"), rows) if rows else '<p class="empty">None.</p>')
    rows = [("", [escape(change), escape(host)]) for change in ("appeared", "disappeared") for host in hosts[change]]
    html += "<h3>Hosts (%d changed)</h3>" % len(rows) + (
        _table(("Change", "Host"), rows, stack=False) if rows else '<p class="empty">None.</p>')
    return html + "</section>"


def _sources(rule):
    if rule["bind"] == "loopback":
        return "this host only"
    return ", ".join(rule["sources"]) or "anywhere"


def _allowlist_rows(allowlist):
    return [("", ["#%d" % rule["index"], escape(str(rule["port"])), escape(rule["protocol"]), escape(rule["family"]),
                  escape(rule["bind"]), escape(_sources(rule)), escape(rule["process"] or "-"),
                  escape(rule["comment"] or "")]) for rule in allowlist]


def _probe_section(probe):
    """One row per probed address and protocol: its ports by state (UDP silence is open|filtered: not proof)."""
    if not probed(probe):
        return '<h3>Probe from the controller</h3><p class="empty">Not probed.</p>'
    rows = []
    for protocol, key, states in (("tcp", "ports", PROBE_STATES), ("udp", "udp_ports", UDP_PROBE_STATES)):
        for address, ports in sorted((probe.get(key) or {}).items()):
            by_state = {state: [] for state in states}
            for port in sorted(ports, key=int):
                by_state.setdefault(ports[port], []).append(str(port))
            cells = [", ".join(by_state[state]) for state in PROBE_STATES]
            if protocol == "udp":
                cells[2] = ", ".join(by_state["filtered"] + ["%s (open|filtered)" % port
                                                             for port in by_state["open|filtered"]])
            rows.append(("", ['<span class="mono">%s %s</span>' % (protocol, escape(address))]
                         + [escape(cell or "-") for cell in cells]))
    if not rows:
        return '<h3>Probe from the controller</h3><p class="empty">No port probed.</p>'
    columns = ("Protocol and address", "Open (accepted, answered)", "Closed (refused)",
               "Filtered (no answer; UDP silence is open|filtered)")
    return "<h3>Probe from the controller</h3>" + _table(columns, rows)


def _host_section(host, entry, anchor):
    badge = _badge(entry["status"], STATUS_LABELS[entry["status"]])
    html = '<section class="host" id="%s"><h2>%s %s' % (anchor, escape(host), badge)
    if entry["error"] is not None:
        return html + '</h2><p class="callout"><strong>Not audited.</strong> %s</p></section>' % escape(entry["error"])
    html += '<span class="host-counts">%s</span></h2>' % _counts(entry)
    rows = [("sev-" + item["severity"], _finding_cells(item, with_commands=True)) for item in entry["findings"]]
    html += "<h3>Findings</h3>" + (_table(HOST_FINDING_COLUMNS, rows) if rows else '<p class="empty">None.</p>')
    listeners = [("", [escape(cell) for cell in row[1:]]) for row in listener_rows(host, entry["listeners"])]
    html += "<h3>Listening sockets (%d)</h3>" % len(listeners) + (
        _table(COLUMNS[1:], listeners, stack=False) if listeners else '<p class="empty">Nothing listens.</p>')
    html += "<h3>Allowlist</h3>" + (_table(ALLOWLIST_COLUMNS, _allowlist_rows(entry["allowlist"]), stack=False)
                                    if entry["allowlist"] else '<p class="empty">Empty: nothing is allowed.</p>')
    return html + _probe_section(entry["probe"]) + "</section>"


def _controls_legend(report):
    controls = {}
    for entry in report["hosts"].values():
        for item in entry["findings"]:
            for control in item["controls"]:
                controls.setdefault((control["benchmark"], control["version"], control["id"]), control["title"])
    if not controls:
        return ""
    rows = [("", [escape(key[2]), escape(title), escape("%s %s" % key[:2])]) for key, title in sorted(controls.items())]
    return "<h2>Controls referenced</h2>" + _table(("Control", "Title", "Benchmark"), rows)


def render_html(report):
    """The report as one HTML document: what changed (with a drift) and the findings first, then each host (host
    text with control characters escaped: html.escape leaves them, and bidi controls could reorder what the page
    shows)."""
    report = printable_report(report)
    anchors = {host: "host-%d" % number for number, host in enumerate(report["hosts"], 1)}
    generated = report["generated_at"].replace("T", " ").replace("Z", " UTC")
    tool = "%s %s" % (report["tool"]["name"], report["tool"]["version"])
    parts = [
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        "<title>Portcullis compliance report, %s</title><style>%s</style></head><body><main>" % (
            escape(generated), CSS),
        '<header><div class="eyebrow">Portcullis compliance report</div><h1>Listening ports against the allowlist</h1>',
        '<p class="meta">Generated %s by %s</p>' % (escape(generated), escape(tool)),
        _verdict(report) + "</header>",
        *([_drift_section(report["drift"])] if "drift" in report else []),
        _summary(report),
        _fleet_findings(report, anchors),
        _host_index(report, anchors),
    ]
    parts.extend(_host_section(host, entry, anchors[host]) for host, entry in report["hosts"].items())
    parts.append(_controls_legend(report))
    parts.append("<footer>%s, report schema version %d. Severities: high and medium need action, low should be "
                 "looked at, info is for the record.</footer></main></body></html>\n"
                 % (escape(tool), report["schema_version"]))
    return "\n".join(parts)
