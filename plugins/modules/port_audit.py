#!/usr/bin/python
# Copyright (c) Portcullis contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: port_audit
short_description: Compare what listens, and what answers from outside, with an allowlist
version_added: 0.1.0
description:
  - Discovers the host's listening sockets (as M(portcullis.hardening.listening_ports) does, in the same
    execution) or takes them from O(listeners), and compares them with O(allowlist).
  - Returns findings, each with a severity, the CIS controls it concerns (CIS Debian Linux 12 Benchmark
    v1.1.0) and a concrete remediation. The host is compliant when no finding is worse than V(info).
  - Finding kinds. V(unexpected_listener) nothing allows the socket (V(high) on every address, V(medium) on
    one address, V(info) on loopback unless O(include_loopback)). V(wider_bind_than_allowed) the allowlist
    allows the port on loopback only but it listens on a network address. V(unexpected_process) the port is
    allowed for another program. V(allowed_not_listening) (V(info)) an entry nothing uses.
    V(unexpected_published_port) a port published to a container by DNAT (C(docker run -p)) that no entry allows
    (V(high) on every address, V(medium) on one, V(info) on loopback); its remediation names the container and the
    C(-p) to change. A userland proxy's socket for a published port (C(docker-proxy)) counts as that port, once.
    V(allowed_but_filtered) (V(medium)) an active filter of the input path (a nftables table, ufw, a firewalld
    zone) drops new connections to an allowlisted port. V(firewall_inactive) (V(high), with
    O(expect_default_deny)) no active filter denies by default, for IPv4 or for IPv6.
  - With O(probe) the action plugin then probes, from the controller, the host's TCP ports (allowlisted,
    listening on a network address, and O(probe_ports)) and UDP ports (allowlisted and listening on a network
    address), as O(probe_protocols) says, and adds V(reachable_not_allowed) (a port answers that the allowlist
    does not allow, or not from the controller's address) and V(listening_but_filtered) (a service listens but
    the controller's connection is refused or dropped, or its datagram rejected with an ICMP error). A port that
    answers through a DNAT to a container says so, naming the rule and the container.
  - UDP is probed as nmap does it. A reply means open, an ICMP port unreachable closed, and silence (after two
    datagrams) V(open|filtered), which proves nothing either way. Where a UDP service listens, silence gives
    V(udp_open_or_filtered), always V(info).
  - Never changes the host; check mode gives the same answer.
author:
  - Portcullis contributors (@portcullis)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.flow
  - portcullis.hardening.allowlist
attributes:
  action:
    support: full
    details: The action plugin validates the allowlist before the module runs and probes from the controller.
  async:
    support: none
  bypass_host_loop:
    support: none
  check_mode:
    support: full
    details: The audit only reads; check mode gives the same answer.
  diff_mode:
    support: none
  platform:
    platforms: linux
options:
  listeners:
    description:
      - Listeners to audit, as RV(portcullis.hardening.listening_ports#module:listeners) returns them. When
        omitted, the module discovers them itself, so one module execution per host does the whole audit.
    type: list
    elements: dict
  include_loopback:
    description:
      - Treat loopback-only listeners that no entry allows as violations (severity V(low)) instead of
        informational findings. By default a service only local clients can reach does not make the host
        non-compliant, but it is still reported.
    type: bool
    default: false
  include_published:
    description:
      - Read the ports published to containers (the host's DNAT rules, with C(nft) and C(iptables-nft-save), read
        only) and audit them as M(portcullis.hardening.listening_ports) lists them in its RV(portcullis.hardening.listening_ports#module:published).
    type: bool
    default: true
    version_added: 0.1.0
  expect_default_deny:
    description:
      - The allowlist is meant to be enforced with default deny (a firewall built from it). When no active filter
        of the input path drops a port the allowlist does not have, for IPv4 or for IPv6, that is a
        C(firewall_inactive) finding (ufw inactive, firewalld stopped, IPv6 left open).
      - Whatever this says, an allowlisted port that an active filter drops (a foreign nftables table, a ufw deny,
        ufw's or a firewalld zone's default deny) is an C(allowed_but_filtered) finding. The filters are judged from
        C(nft -j list ruleset) and ufw's own rules; tables of iptables-nft (C(xt) matches) that ufw does not own are
        not judged, and a warning says so.
    type: bool
    default: false
    version_added: 0.1.0
  probe:
    description:
      - Probe the host's TCP ports from the controller and add what a network client sees to the findings.
      - Skipped, with a warning, for connections that do not reach the host over the network (V(local),
        V(podman), ...) unless O(probe_addresses) is given.
    type: bool
    default: true
  probe_addresses:
    description:
      - Addresses or names to probe. Default the host's C(ansible_host) (or its inventory name), resolved to
        its IPv4 and IPv6 addresses. List an IPv6 address here to check that family too.
    type: list
    elements: str
    default: []
  probe_ports:
    description: TCP ports probed in addition to the allowlisted ones and those listening on a network address.
    type: list
    elements: int
    default: []
  probe_timeout:
    description:
      - Seconds to wait for each TCP connection before calling the port filtered, and for an answer to a UDP
        port's datagrams before calling it V(open|filtered).
    type: float
    default: 1.0
  probe_concurrency:
    description: Ports probed at once.
    type: int
    default: 32
  probe_max_ports:
    description:
      - Upper bound on ports probed per address, for each protocol; a larger set fails before anything is probed.
    type: int
    default: 1024
  probe_protocols:
    description:
      - Protocols to probe. V(udp) sends each UDP port a datagram (a DNS, NTP or SNMP request on ports 53, 123
        and 161; empty elsewhere), twice at most within O(probe_timeout).
      - An empty list probes nothing, as O(probe=false) does.
    type: list
    elements: str
    choices: [tcp, udp]
    default: [tcp, udp]
notes:
  - Validation of O(allowlist) happens on the controller before the module runs, so a bad entry fails the task
    before anything is read on the host.
seealso:
  - module: portcullis.hardening.listening_ports
"""

EXAMPLES = r"""
- name: Audit the host against its allowlist
  portcullis.hardening.port_audit:
    allowlist:
      - {port: 22, comment: SSH}
      - {port: 443, process: nginx}
      - {port: 5432, bind: loopback, process: postgres}
      - {port: 51820, protocol: udp, sources: [192.0.2.0/24]}
  register: audit

- name: Fail when the host is not compliant
  ansible.builtin.assert:
    that: audit.compliant
    fail_msg: "{{ audit.findings | rejectattr('severity', 'equalto', 'info') | map(attribute='message') | list }}"

- name: Audit listeners gathered earlier, without probing
  portcullis.hardening.port_audit:
    listeners: "{{ ansible_facts.portcullis_listeners }}"
    allowlist: "{{ portcullis_allowlist }}"
    probe: false
"""

RETURN = r"""
compliant:
  description: Whether no finding is worse than V(info).
  returned: success
  type: bool
findings:
  description: Findings, most severe first.
  returned: success
  type: list
  elements: dict
  contains:
    kind:
      description: >-
        V(unexpected_listener), V(wider_bind_than_allowed), V(unexpected_process), V(allowed_not_listening),
        V(unexpected_published_port), V(allowed_but_filtered), V(firewall_inactive), V(reachable_not_allowed),
        V(listening_but_filtered) or V(udp_open_or_filtered).
      type: str
    severity:
      description: V(high), V(medium), V(low) or V(info).
      type: str
    protocol:
      description: V(tcp) or V(udp).
      type: str
    family:
      description: V(ipv4), V(ipv6), or V(any) for an allowlist entry.
      type: str
    address:
      description: Local address of the listener, or the probed address; null for an allowlist entry.
      type: str
    port:
      description: Port, or V("LOW-HIGH") for an allowlist range.
      type: raw
    processes:
      description: Processes behind the socket, as in RV(portcullis.hardening.listening_ports#module:listeners[].processes).
      type: list
      elements: dict
    rule:
      description: Index of the allowlist entry concerned, if any.
      type: int
    message:
      description: What was found, in one sentence.
      type: str
    remediation:
      description: What to do about it.
      type: str
    controls:
      description: CIS controls concerned, each with C(id), C(title), C(benchmark) and C(version).
      type: list
      elements: dict
    source:
      description: V(host) (from discovery) or V(probe) (from the controller).
      type: str
listeners:
  description: The listeners audited (discovered, or given in O(listeners)).
  returned: success
  type: list
  elements: dict
published:
  description:
    - The ports published to containers, as RV(portcullis.hardening.listening_ports#module:published) lists them;
      empty with O(include_published=false).
  returned: success
  type: list
  elements: dict
  version_added: 0.1.0
allowlist:
  description: The validated allowlist, each entry with its C(index) and defaults filled in.
  returned: success
  type: list
  elements: dict
probe:
  description: What the controller probed, or null when it did not.
  returned: success
  type: dict
  contains:
    addresses:
      description: Probed addresses.
      type: list
      elements: str
    ports:
      description: "TCP: C({address: {port: open|closed|filtered}}); empty when TCP was not probed."
      type: dict
    udp_ports:
      description:
        - "UDP: C({address: {port: state}}); empty when UDP was not probed."
        - The state is V(open) (a reply came), V(closed) (an ICMP port unreachable), V(filtered) (another ICMP
          error, host unreachable or prohibited) or V(open|filtered) (no answer at all; a firewall dropping the
          datagrams and a service ignoring them look the same).
      type: dict
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.portcullis.hardening.plugins.module_utils._allowlist import parse_allowlist
from ansible_collections.portcullis.hardening.plugins.module_utils._audit import (
    audit_listeners,
    filter_findings,
    is_compliant,
    normalise_listeners,
    sort_findings,
)
from ansible_collections.portcullis.hardening.plugins.module_utils._host import Host, PortcullisError
from ansible_collections.portcullis.hardening.plugins.module_utils._listeners import discover_with_published
from ansible_collections.portcullis.hardening.plugins.module_utils._published import (
    link_proxies,
    read_published,
    read_ruleset,
)
from ansible_collections.portcullis.hardening.plugins.module_utils._specs import PORT_AUDIT_SPEC
from ansible_collections.portcullis.hardening.plugins.module_utils._ufw import Ufw

ARGUMENT_SPEC = PORT_AUDIT_SPEC


def active_ufw(host):
    """ufw's state when ufw is active, else None."""
    ufw = Ufw(host)
    if not (ufw.installed() and ufw.active()):
        return None
    return ufw.read()


def run(params, host):
    rules = parse_allowlist(params["allowlist"])
    published, notes = [], []
    ruleset = read_ruleset(host)  # once, for the published ports and the filters
    if params["listeners"] is None:
        found = discover_with_published(host, params["include_published"], ruleset)
        listeners, published, notes = found.listeners, found.published, found.published_notes
    else:
        listeners = normalise_listeners(params["listeners"])
        if params["include_published"]:
            publication = read_published(host, listeners, ruleset)
            published, notes = publication.ports, publication.notes
        else:
            link_proxies(listeners, [])
    document, problem = ruleset
    if problem and not params["include_published"]:  # else the published ports' note says it already
        notes.append("the filters were not judged: %s" % problem)
    findings = audit_listeners(listeners, rules, params["include_loopback"], published)
    filtered, filter_notes = filter_findings(rules, document or {}, active_ufw(host), params["expect_default_deny"])
    findings = sort_findings(findings + filtered)
    notes = notes + filter_notes
    return {
        "changed": False,
        "compliant": is_compliant(findings),
        "findings": findings,
        "listeners": listeners,
        "published": published,
        "allowlist": [rule.as_dict() for rule in rules],
        "probe": None,
    }, notes


def main():
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    try:
        result, notes = run(module.params, Host(module.run_command))
    except (PortcullisError, ValueError) as exc:  # ValueError includes AllowlistError
        module.fail_json(msg=str(exc))
    for note in notes:
        module.warn(note)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
