# Copyright (c) Portcullis contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations


class ModuleDocFragment:
    # The allowlist entry (plugins/module_utils/_allowlist.py), for port_audit's `allowlist` option.
    # Plain literals (ansible-test reads them without running Python): ALLOW repeats DOCUMENTATION under the
    # firewall's option name, and tests/unit/plugins/test_doc_fragments.py keeps the two identical.
    DOCUMENTATION = r"""
options:
  allowlist:
    description:
      - What may listen. Every entry allows one port or port range for one protocol.
      - Validated as a whole before anything runs; an error names the entry index, the field and the value,
        for example that C(allowlist[2].sources[0]) V(10.0.0.1/8) has host bits set. Duplicated entries and
        entries that contradict each other for the same port (different O(allowlist[].bind), or different
        O(allowlist[].process)) are errors.
    type: list
    elements: dict
    default: []
    suboptions:
      port:
        description:
          - A port (V(22)) or an inclusive range written V("LOW-HIGH") (V("60000-61000")), within 1-65535.
        type: raw
        required: true
      protocol:
        description: Transport protocol.
        type: str
        choices: [tcp, udp]
        default: tcp
      family:
        description: Address family the entry applies to.
        type: str
        choices: [ipv4, ipv6, any]
        default: any
      bind:
        description:
          - V(any) allows the port on every address; V(loopback) only on 127.0.0.1 and ::1, so that a
            service listening more widely (say a database on 0.0.0.0) is a finding.
        type: str
        choices: [any, loopback]
        default: any
      sources:
        description:
          - Networks (CIDR) whose clients may connect; empty means from anywhere. Each must match
            O(allowlist[].family) when that is not V(any), and none may be given with O(allowlist[].bind=loopback).
        type: list
        elements: str
        default: []
      process:
        description:
          - The program expected on the port, matched against the process name (as the kernel shows it, at most
            15 characters), the program file's name, or its systemd unit (V(nginx), V(sshd), V(ssh.service)).
            Another program on the port is a finding.
        type: str
      published:
        description:
          - V(true) allows the port only on the container path - a port published to a container (C(docker run -p
            8081:80)) reaches the container by DNAT and the firewall's forward chain - and never as a socket of the
            host itself - the input chain does not open it, and a host socket on it is a finding.
          - V(false) (the default) allows both - an entry allows a published port with the same port number,
            protocol, family and sources as a socket of the host.
          - Not with O(allowlist[].bind=loopback) nor with O(allowlist[].process).
        type: bool
        default: false
        version_added: 0.1.0
      comment:
        description: Free text carried into the reports.
        type: str
"""

    # The same entries under the name the firewall module uses for them.
    ALLOW = r"""
options:
  allow:
    description:
      - What may listen. Every entry allows one port or port range for one protocol.
      - Validated as a whole before anything runs; an error names the entry index, the field and the value,
        for example that C(allowlist[2].sources[0]) V(10.0.0.1/8) has host bits set. Duplicated entries and
        entries that contradict each other for the same port (different O(allow[].bind), or different
        O(allow[].process)) are errors.
    type: list
    elements: dict
    default: []
    suboptions:
      port:
        description:
          - A port (V(22)) or an inclusive range written V("LOW-HIGH") (V("60000-61000")), within 1-65535.
        type: raw
        required: true
      protocol:
        description: Transport protocol.
        type: str
        choices: [tcp, udp]
        default: tcp
      family:
        description: Address family the entry applies to.
        type: str
        choices: [ipv4, ipv6, any]
        default: any
      bind:
        description:
          - V(any) allows the port on every address; V(loopback) only on 127.0.0.1 and ::1, so that a
            service listening more widely (say a database on 0.0.0.0) is a finding.
        type: str
        choices: [any, loopback]
        default: any
      sources:
        description:
          - Networks (CIDR) whose clients may connect; empty means from anywhere. Each must match
            O(allow[].family) when that is not V(any), and none may be given with O(allow[].bind=loopback).
        type: list
        elements: str
        default: []
      process:
        description:
          - The program expected on the port, matched against the process name (as the kernel shows it, at most
            15 characters), the program file's name, or its systemd unit (V(nginx), V(sshd), V(ssh.service)).
            Another program on the port is a finding.
        type: str
      published:
        description:
          - V(true) allows the port only on the container path - a port published to a container (C(docker run -p
            8081:80)) reaches the container by DNAT and the firewall's forward chain - and never as a socket of the
            host itself - the input chain does not open it, and a host socket on it is a finding.
          - V(false) (the default) allows both - an entry allows a published port with the same port number,
            protocol, family and sources as a socket of the host.
          - Not with O(allow[].bind=loopback) nor with O(allow[].process).
        type: bool
        default: false
        version_added: 0.1.0
      comment:
        description: Free text carried into the reports.
        type: str
"""
