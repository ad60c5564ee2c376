# Copyright (c) Portcullis contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""A host's result in a few lines for the console: compliance, findings by severity, what the run changed; and the
message that fails a host that is not compliant, naming every remaining finding.

Private to the collection: the host_summary and noncompliance filters.
"""

from __future__ import annotations

from ansible_collections.portcullis.hardening.plugins.module_utils._audit import SEVERITIES
from ansible_collections.portcullis.hardening.plugins.module_utils._text import printable

SHOWN_FINDINGS = 10


def _ran(result):
    return isinstance(result, dict) and not result.get("skipped") and not result.get("failed")


def _audited(result):
    return isinstance(result, dict) and isinstance(result.get("findings"), list) and "compliant" in result


def compliance_line(result):
    if not _audited(result):
        return "not audited: %s" % printable(str((result or {}).get("msg") or "no audit result"))
    counts = {severity: 0 for severity in SEVERITIES}
    for item in result["findings"]:
        counts[item["severity"]] = counts.get(item["severity"], 0) + 1
    above = ", ".join("%d %s" % (counts[severity], severity) for severity in SEVERITIES[:-1] if counts[severity])
    info = " (%d info)" % counts["info"] if counts["info"] else ""
    if result["compliant"]:
        return "compliant%s" % (": no finding above info" + info if info else "")
    return "NOT compliant: %s%s" % (above, info)


def _changes(ssh, service_ports, firewall, services, check_mode, stop_unlisted):
    """What the run changed, or in check mode would change."""
    would = "would " if check_mode else ""
    lines = []
    if _ran(ssh) and ssh.get("port") is not None:
        if ssh.get("changed"):
            lines.append("sshd: %s from %s to %s" % ("would move" if check_mode else "moved", ssh.get("found_on"),
                                                     ssh.get("port")))
        else:
            lines.append("sshd: on %s already" % ssh.get("port"))
    for item in (service_ports or {}).get("results", []) if isinstance(service_ports, dict) else []:
        if _ran(item):
            name = (item.get("item") or {}).get("service", "a service")
            if item.get("changed"):
                lines.append("%s: %s port %s" % (name, "would move to" if check_mode else "moved to",
                                                 item.get("port")))
            else:
                lines.append("%s: on port %s already" % (name, item.get("port")))
    if _ran(firewall):
        if firewall.get("confirmed"):
            lines.append("firewall: rules applied and confirmed over a new connection")
        else:
            lines.append("firewall: %s" % ((would + "change the rules") if firewall.get("changed") else "unchanged"))
    if _ran(services):
        units = [unit for group in services.get("stopped", []) for unit in group.get("units", [])]
        if units and stop_unlisted:
            lines.append("services: %s %s" % ("would stop and disable" if check_mode else "stopped and disabled",
                                              ", ".join(units)))
        elif units:
            lines.append("services: would stop %s (set portcullis_stop_unlisted to stop them)" % ", ".join(units))
        for item in services.get("kept", []):
            lines.append("services: kept %s: %s" % (printable(item["listener"]), printable(item["reason"])))
    return lines


def host_summary(result, ssh=None, service_ports=None, firewall=None, services=None, check_mode=False,
                 stop_unlisted=False):
    """[line]: compliance, the findings above info (at most SHOWN_FINDINGS), then what the run changed (or would)."""
    lines = [compliance_line(result)]
    if _audited(result):
        above = [item for item in result["findings"] if item["severity"] != "info"]
        for item in above[:SHOWN_FINDINGS]:
            lines.append("[%s] %s" % (item["severity"], printable(item["message"])))
        if len(above) > SHOWN_FINDINGS:
            lines.append("... and %d more (see the reports)" % (len(above) - SHOWN_FINDINGS))
    return lines + _changes(ssh, service_ports, firewall, services, check_mode, stop_unlisted)


def noncompliance(result, host):
    """Why `host` is not compliant, naming every remaining finding above info with its remediation."""
    if not _audited(result):
        return "%s: %s" % (host, compliance_line(result))
    above = [item for item in result["findings"] if item["severity"] != "info"]
    if not above:
        return "%s is compliant" % host
    one = len(above) == 1
    lines = ["%s is not compliant: %d finding%s remain%s:" % (host, len(above), "" if one else "s", "s" if one else "")]
    for item in above:
        lines.append("- [%s] %s. Remediation: %s" % (
            item["severity"], printable(item["message"]), printable(item["remediation"])))
    return "\n".join(lines)
