# Copyright (c) Portcullis contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Render discovered listeners of a fleet as a plain-text table for people.

Private to the collection: pure functions, used by the listener_table filter. Every cell is printable
(_text.printable): names, command lines and units come from the host.
"""

from __future__ import annotations

from ansible_collections.portcullis.hardening.plugins.module_utils._text import printable

COLUMNS = ("HOST", "PROTO", "ADDRESS", "PORT", "REACH", "USER", "PROCESS", "UNIT")


def align(header, rows):
    """Lines of left-aligned columns two spaces apart, the header first."""
    widths = [max([len(column)] + [len(row[index]) for row in rows]) for index, column in enumerate(header)]
    return ["  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip() for line in [header] + rows]


def reach(listener):
    """Who can connect, in words: only this host, every address of a family, or one address."""
    if listener.get("loopback"):
        return "local only"
    if listener.get("wildcard"):
        return "all %s" % ("IPv6" if listener["family"] == "ipv6" else "IPv4")
    return "this address"


def _bracketed(listener):
    address = listener["address"]
    if listener["family"] == "ipv6":
        address = "[%s]" % address
        if listener.get("interface"):
            address += "%" + listener["interface"]
    return address


def _processes(listener):
    processes = listener.get("processes") or []
    if not processes:
        return "-", "-"
    names = []
    for process in processes:
        if process["name"] not in names:
            names.append(process["name"])
    pids = ",".join(str(process["pid"]) for process in processes)
    units = sorted({process["unit"] for process in processes if process.get("unit")})
    return "%s (%s)" % ("/".join(names), pids), ",".join(units) or "-"


def listener_rows(host, listeners):
    """A row of printable cells per listener."""
    rows = []
    for listener in listeners:
        process, unit = _processes(listener)
        rows.append(tuple(printable(cell) for cell in (
            host, listener["protocol"], _bracketed(listener), listener["port"], reach(listener),
            listener.get("user") or "-", process, unit)))
    return rows


def render_table(listeners_by_host):
    """One table for the fleet; a host whose value is not a list is shown as not discovered."""
    rows = []
    notes = []
    for host in sorted(listeners_by_host):
        listeners = listeners_by_host[host]
        if isinstance(listeners, list):
            rows.extend(listener_rows(host, listeners))
            if not listeners:
                notes.append("%s: nothing listens" % printable(host))
        else:
            notes.append("%s: not discovered (%s)" % (printable(host), printable(listeners or "unreachable or failed")))
    lines = align(COLUMNS, rows)
    hosts = sum(1 for value in listeners_by_host.values() if isinstance(value, list))
    lines.append("")
    lines.append("%d listening sockets on %d hosts" % (len(rows), hosts))
    lines.extend(notes)
    return "\n".join(lines) + "\n"
