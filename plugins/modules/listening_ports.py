#!/usr/bin/python
# Copyright (c) Portcullis contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: listening_ports
short_description: Discover every listening TCP and UDP socket from /proc
version_added: 0.1.0
description:
  - Lists the listening sockets of the managed host with protocol, family, address, port, the
    owning user, and every process that holds the socket with its name, command line and systemd unit.
  - Reads C(/proc/net/{tcp,tcp6,udp,udp6}) and maps socket inodes to processes in one pass over
    C(/proc/<pid>/fd). Needs no C(ss), C(netstat), C(lsof) or C(ps) on the host.
  - A TCP socket listens when it is in state LISTEN. A UDP socket counts as listening when it is
    bound to a port and not connected to a peer.
  - Processes whose file descriptors cannot be read (another user's processes, without
    privileges) are counted in RV(scan.unreadable_pids) and reported in a warning; their sockets
    are still listed, with an empty or partial RV(listeners[].processes).
  - With O(as_facts=true), returns the list as the fact C(portcullis_listeners) instead of in
    RV(listeners). The list is returned once either way, because on a host with thousands of sockets
    most of the module's time goes into serializing its result.
  - Also lists the ports published to containers (RV(published)), which often have no socket on the host
    - C(docker run -p), C(podman run -p), a Kubernetes hostPort. They are read from the DNAT rules that
    C(prerouting) reaches - C(nft -j list ruleset) for native nftables tables (podman's netavark), and
    C(iptables-nft-save) for the tables iptables-nft wrote (Docker), whose DNAT targets C(nft -j) does not
    print. The owning container comes from Docker's C(config.v2.json) files and netavark's rule comments.
    Nothing is changed.
  - A userland proxy's socket (C(docker-proxy), podman's C(conmon) or C(rootlessport)) for a published port is
    linked to it - RV(listeners[].published) is V(true) and RV(published[].proxy) names the socket - so the port
    is not counted twice.
author:
  - Portcullis contributors (@portcullis)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.facts
attributes:
  check_mode:
    support: full
    details: The module only reads; check mode returns the same answer.
  diff_mode:
    support: none
  facts:
    support: full
    details: With O(as_facts=true).
  platform:
    platforms: linux
options:
  protocols:
    description: Transport protocols to list.
    type: list
    elements: str
    choices: [tcp, udp]
    default: [tcp, udp]
  families:
    description: Address families to list.
    type: list
    elements: str
    choices: [ipv4, ipv6]
    default: [ipv4, ipv6]
  as_facts:
    description:
      - Return the listeners as the fact C(portcullis_listeners), for later tasks and the fact cache,
        instead of in RV(listeners).
    type: bool
    default: false
    version_added: 0.1.0
  include_published:
    description:
      - List the ports published to containers (RV(published)). Needs C(nft) on the host (read only); without
        it RV(published) is empty and RV(scan.published_notes) says why.
    type: bool
    default: true
    version_added: 0.1.0
notes:
  - An IPv6 socket bound to V(::) may also accept IPv4 connections (dual stack) unless the program
    set C(IPV6_V6ONLY); C(/proc) does not say which, so it is listed once, as RV(listeners[].family=ipv6).
  - Link-local IPv6 addresses carry no scope in C(/proc/net); RV(listeners[].interface) names the
    interface when exactly one interface has that address.
  - Sockets opened by the kernel itself (for example C(nfsd)) have no owning process.
seealso:
  - module: community.general.listen_ports_facts
"""

EXAMPLES = r"""
- name: Discover what listens on the host
  portcullis.hardening.listening_ports:
  register: discovery

- name: Show who listens on port 22
  ansible.builtin.debug:
    msg: "{{ discovery.listeners | selectattr('port', 'equalto', 22) | list }}"

- name: Only TCP over IPv6
  portcullis.hardening.listening_ports:
    protocols: [tcp]
    families: [ipv6]

- name: Gather as facts for later tasks
  portcullis.hardening.listening_ports:
    as_facts: true

- name: List the systemd units that listen on a non-loopback address
  ansible.builtin.debug:
    msg: >-
      {{ ansible_facts.portcullis_listeners | rejectattr('loopback')
         | map(attribute='processes') | flatten | map(attribute='unit') | unique | list }}
"""

RETURN = r"""
listeners:
  description: Every listening socket, sorted by protocol, family, port and address.
  returned: unless O(as_facts=true)
  type: list
  elements: dict
  contains:
    protocol:
      description: Transport protocol.
      type: str
      sample: tcp
    family:
      description: Address family of the socket (V(ipv4) or V(ipv6)).
      type: str
      sample: ipv6
    address:
      description: >-
        Local address, without brackets. IPv4-mapped IPv6 addresses keep their dotted form
        (V(::ffff:127.0.0.1)).
      type: str
      sample: "::"
    interface:
      description: Interface of a link-local IPv6 address, when it is unambiguous; otherwise null.
      type: str
      sample: eth0
    port:
      description: Local port.
      type: int
      sample: 22
    inode:
      description: Socket inode number (V(0) for some kernel-owned sockets).
      type: int
      sample: 18364
    uid:
      description: User id that owns the socket.
      type: int
      sample: 0
    user:
      description: Login name of RV(listeners[].uid), or the number as text when it has no entry.
      type: str
      sample: root
    processes:
      description: Processes holding the socket, by pid; several for pre-forking servers, none for kernel sockets.
      type: list
      elements: dict
      contains:
        pid:
          description: Process id.
          type: int
        name:
          description: Process name (C(/proc/<pid>/comm)).
          type: str
          sample: sshd
        cmdline:
          description: Command line, arguments separated by spaces.
          type: str
          sample: "sshd: /usr/sbin/sshd -D [listener] 0 of 10-100 startups"
        unit:
          description: Systemd unit the process runs in, or null outside systemd.
          type: str
          sample: ssh.service
        uid:
          description: Real user id of the process (C(/proc/<pid>/status)), or null when it cannot be read.
          type: int
          sample: 0
        exe:
          description: >-
            Program the process runs (C(/proc/<pid>/exe), symlinks resolved). Null when it cannot be read:
            another user's process without privileges, or a kernel thread.
          type: str
          sample: /usr/sbin/sshd
        exe_deleted:
          description: >-
            Whether the program's file was removed or replaced (for example by a package upgrade) after the
            process started; RV(listeners[].processes[].exe) is then the path it had.
          type: bool
          sample: false
    loopback:
      description: Whether the address is a loopback address (only local clients can reach it).
      type: bool
    wildcard:
      description: Whether the address is V(0.0.0.0) or V(::) (every address of the host).
      type: bool
    published:
      description:
        - Whether a userland proxy (C(docker-proxy), C(conmon), C(rootlessport)) holds this socket for a port in
          RV(published). Such a socket is that published port, not a service of its own.
      type: bool
      version_added: 0.1.0
published:
  description:
    - The ports published to containers by DNAT in C(prerouting), one per protocol, family, address and port.
    - Empty when O(include_published=false), or when the ruleset could not be read (RV(scan.published_notes)).
  returned: always
  type: list
  elements: dict
  version_added: 0.1.0
  sample:
    - {"protocol": "tcp", "family": "ipv4", "address": "0.0.0.0", "port": 8081, "wildcard": true,
       "target_address": "172.17.0.2", "target_port": 80, "table": "ip nat", "chain": "DOCKER",
       "origin": "iptables-nft", "from_interfaces_except": ["docker0"],
       "container": {"runtime": "docker", "id": "3f4e...", "name": "web", "image": "nginx:1.27"},
       "proxy": ["0.0.0.0:8081"]}
  contains:
    protocol:
      description: V(tcp) or V(udp).
      type: str
    family:
      description: V(ipv4) or V(ipv6).
      type: str
    address:
      description:
        - The published address - the rule's destination address match, or V(0.0.0.0) / V(::) when it takes every
          local address. A network when the rule matches one (V(10.0.0.0/8)).
      type: str
    port:
      description: The published port, or V("LOW-HIGH") for a range (V("1-65535") when the rule matches no port).
      type: raw
    wildcard:
      description: Whether it is published on every address of the family.
      type: bool
    target_address:
      description: The DNAT target address (the container's).
      type: str
    target_port:
      description: The DNAT target port, or null when the DNAT keeps the port.
      type: int
    table:
      description: The table of the DNAT rule (V(ip nat), V(inet netavark)).
      type: str
    chain:
      description: The chain of the DNAT rule (V(DOCKER), V(nv_..._dnat)).
      type: str
    origin:
      description: V(nft) (read from C(nft -j)) or V(iptables-nft) (read with C(iptables-nft-save)).
      type: str
    from_interfaces_except:
      description: Interfaces the rule does not take traffic from (Docker's own bridge, V(docker0)).
      type: list
      elements: str
    container:
      description: The owning container (C(runtime), C(id), C(name), C(image)), or null when not known.
      type: dict
    proxy:
      description: The host sockets a userland proxy holds for this port (see RV(listeners[].published)).
      type: list
      elements: str
scan:
  description: How complete the process view was.
  returned: always
  type: dict
  contains:
    processes_scanned:
      description: Number of processes whose file descriptors were read.
      type: int
    unreadable_pids:
      description: Processes whose file descriptors could not be read (run with privileges to see them).
      type: list
      elements: int
    complete:
      description: Whether every process could be read.
      type: bool
    missing_tables:
      description: C(/proc/net) tables that do not exist on the host, such as V(tcp6) where IPv6 is disabled.
      type: list
      elements: str
    published_notes:
      description: What could not be read of the published ports (no nft, a DNAT through a map), in words.
      type: list
      elements: str
      version_added: 0.1.0
ansible_facts:
  description: Facts set by the module.
  returned: when O(as_facts=true)
  type: dict
  contains:
    portcullis_listeners:
      description: The list RV(listeners) would be.
      type: list
      elements: dict
    portcullis_published:
      description: The list RV(published) would be.
      type: list
      elements: dict
      version_added: 0.1.0
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.portcullis.hardening.plugins.module_utils._host import Host, PortcullisError
from ansible_collections.portcullis.hardening.plugins.module_utils._listeners import discover_with_published
from ansible_collections.portcullis.hardening.plugins.module_utils._procnet import (
    FAMILIES,
    PROTOCOLS,
)


def run(module):
    for option in ("protocols", "families"):
        if not module.params[option]:
            raise ValueError("%s must name at least one of: %s" % (
                option, ", ".join(PROTOCOLS if option == "protocols" else FAMILIES)))
    found = discover_with_published(Host(module.run_command), module.params["include_published"],
                                    protocols=module.params["protocols"], families=module.params["families"])
    if found.unreadable_pids:
        module.warn("The file descriptors of %d processes could not be read, so their sockets may "
                    "be listed without their processes; run with become to see every owner."
                    % len(found.unreadable_pids))
    result = {"changed": False, "scan": found.scan_summary()}
    # Once, never in both places: serializing the result costs more than discovering it.
    if module.params["as_facts"]:
        result["ansible_facts"] = {"portcullis_listeners": found.listeners, "portcullis_published": found.published}
    else:
        result.update(listeners=found.listeners, published=found.published)
    return result


def main():
    module = AnsibleModule(
        argument_spec={
            "protocols": {"type": "list", "elements": "str", "choices": list(PROTOCOLS),
                          "default": list(PROTOCOLS)},
            "families": {"type": "list", "elements": "str", "choices": list(FAMILIES),
                         "default": list(FAMILIES)},
            "as_facts": {"type": "bool", "default": False},
            "include_published": {"type": "bool", "default": True},
        },
        supports_check_mode=True,
    )
    try:
        result = run(module)
    except (PortcullisError, ValueError) as exc:  # includes ProcNetFormatError
        module.fail_json(msg=str(exc))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
