#!/usr/bin/python
# Copyright (c) Portcullis contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: ssh_port
short_description: Move sshd to another port over the very connection being moved, without locking anyone out
version_added: 0.1.0
description:
  - Moves sshd to O(port) in steps, each verified before the next, with the host's own rollback armed
    throughout. The steps are driven by the action plugin on the controller.
  - The move is one change of the collection's change engine. Every step that changes the host runs under a
    host lock; the transition backs up every file the move may write in C(/var/lib/portcullis/armed) and
    arms the timer C(portcullis-rollback-<token>.timer). While any change (this move, a firewall change,
    another move) is armed, every other change on the host is refused, naming it and when its timer expires.
  - A boot unit, C(portcullis-rollback.service), installed and enabled at the first change, restores the
    previous configuration before C(ssh.socket), C(ssh.service), C(sshd.service) and C(nftables.service)
    start when the host restarts with the move still armed. It does nothing while no change is armed.
  - "Plan (reads only): find sshd (on the inventory's port, else on O(port), else on O(previous_ports)); refuse
    while another change is armed; refuse a port another process listens on (sshd is a root process run from
    C(/usr/sbin/sshd) or C(/usr/bin/sshd) in C(ssh.service) or C(sshd.service), whatever its name); warn when
    the port is inside the kernel's ephemeral range; check that C(sshd -t) accepts the configuration as it is."
  - "Transition: arm the rollback (backups and a systemd timer) that restores everything after
    O(confirm_timeout) seconds; label the port C(ssh_port_t) where SELinux is enabled (C(semanage port), only
    when needed); make sshd listen on the old and the new port - a drop-in of its own in
    C(/etc/ssh/sshd_config.d) when C(sshd_config) includes that directory, else a marked block in
    C(sshd_config) before the first C(Match) - with every other C(Port) line commented out, so no port is
    listed twice or lingers; validate with C(sshd -t); under C(ssh.socket) activation override the socket's
    C(ListenStream) with a drop-in (the socket is never masked); open the new port in the Portcullis
    firewall; reload sshd (or restart the socket) and wait until it listens."
  - "Then the controller reads, with paramiko and without logging in, the host key the server on the new port
    presents, which must be the old port's (not compared when the connection goes through a ProxyJump or a
    ProxyCommand; the step says so). Only then does it open a new SSH session on the new port (no
    ControlMaster, same credentials) and run the next step over it: sshd listens on the new port only, the
    old port is closed in the firewall, and sshd must listen on every address it listened on before (IPv4
    and IPv6 alike). A last new connection on the new port confirms the change. The host persists the moved
    firewall rules (when the table was persisted) while the change is still armed, then stops the timer and
    commits."
  - Any failure rolls back to the previous configuration at once and names the step that failed. A commit
    that fails after the finalize is rolled back over the new port first, then over the old one. If the
    controller loses the host midway, the host's timer rolls back by itself.
  - The task returns the port to connect to in RV(ansible_port); set it as the host's C(ansible_port) (see
    the examples) so that the rest of the play uses it. A re-run with the inventory still saying the old
    port finds sshd on the new port, changes nothing and returns the same RV(ansible_port).
author:
  - Portcullis contributors (@portcullis)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.flow
attributes:
  action:
    support: full
    details: The action plugin finds sshd, validates the options and opens the new connections that confirm each step.
  async:
    support: none
  bypass_host_loop:
    support: none
  check_mode:
    support: full
    details:
      - Reports the planned sshd, socket, SELinux and firewall changes (with C(--diff)) and writes nothing, not
        even C(/run/sshd). When that directory does not exist yet, C(sshd -t) is skipped with a warning.
  diff_mode:
    support: full
  platform:
    platforms: linux
    details: sshd run by systemd (C(ssh.service) or C(sshd.service), optionally C(ssh.socket)).
options:
  port:
    description: The TCP port sshd is to listen on (and only that one, once the move is done).
    type: int
    required: true
  previous_ports:
    description:
      - Ports to look for sshd on when it does not answer on the connection's port (the inventory may still say
        the old one). O(port) is always tried right after the connection's port.
    type: list
    elements: int
    default: [22]
  listen_addresses:
    description:
      - IP addresses (no ports) sshd listens on; they replace every C(ListenAddress) line. By default the
        addresses stay as they are, and only a C(ListenAddress) that pins a moved port is rewritten without it.
    type: list
    elements: str
  manage_firewall:
    description:
      - Move the port in the Portcullis firewall table (M(portcullis.hardening.firewall)) too, keeping each
        rule's sources. By default, whenever that table exists on the host.
    type: bool
  selinux:
    description:
      - Label the port C(ssh_port_t) with C(semanage). V(auto) does so when SELinux is enabled, enforcing or
        permissive (a permissive host switched to enforcing later would lock sshd out otherwise).
    type: str
    choices: [auto, 'true', 'false']
    default: auto
  confirm_timeout:
    description:
      - Seconds the host waits for the controller to confirm the whole move before it restores the previous
        configuration by itself (10-3600).
    type: int
    default: 120
  locate_only:
    description:
      - Only find the port sshd answers on (the connection's, then O(port), then O(previous_ports)), each tried with
        a new SSH connection, and return it in RV(ansible_port). Nothing runs on the host and nothing changes. The
        role uses this first, so that a run limited by tags still connects where an earlier run moved sshd.
    type: bool
    default: false
  step:
    description: Set by the action plugin; do not set it.
    type: str
    choices: [plan, transition, finalize, commit, rollback]
    default: plan
  token:
    description: Set by the action plugin; do not set it.
    type: str
requirements:
  - paramiko on the controller, to read the host keys the old and the new port present
notes:
  - Existing sessions survive every step (C(KillMode=process) in Debian's C(ssh.service)).
  - Files are written through symlinks, keeping owner, group, mode and SELinux context, fsynced and renamed
    into place. The edits of C(sshd_config) and its includes rewrite only the lines they change.
  - The change engine, the boot unit and the fault matrix that tests them are described in
    C(docs/reliability.md) of the collection.
  - Update the allowlist (and the inventory) afterwards; until then a firewall run keeps the new port open as the
    management port, because the play connects on it.
seealso:
  - module: portcullis.hardening.firewall
  - module: portcullis.hardening.service_port
"""

EXAMPLES = r"""
- name: Move SSH to port 2222
  portcullis.hardening.ssh_port:
    port: 2222
  register: ssh_move

- name: Use the new port for the rest of the play
  ansible.builtin.set_fact:
    ansible_port: "{{ ssh_move.ansible_port }}"

- name: Move SSH on hosts whose inventory may say 22 or 2200, listening on one IPv4 and one IPv6 address
  portcullis.hardening.ssh_port:
    port: 2222
    previous_ports: [22, 2200]
    listen_addresses: [192.0.2.10, "2001:db8::10"]
    confirm_timeout: 180
"""

RETURN = r"""
ansible_port:
  description:
    - The port to connect to from now on (O(port) after a move, and when sshd was already there).
    - With O(locate_only), the port sshd answers on.
  returned: success
  type: int
  sample: 2222
port:
  description: The port sshd listens on once the task is done.
  returned: success
  type: int
  sample: 2222
found_on:
  description: The port the controller found sshd on at the start.
  returned: always
  type: int
  sample: 22
ports_before:
  description: The ports sshd listened on before.
  returned: success
  type: list
  elements: int
  sample: [22]
listening_before:
  description: The addresses and ports sshd listened on before.
  returned: success
  type: list
  elements: str
  sample: ["0.0.0.0:22", "[::]:22"]
listening_after:
  description: The addresses and ports sshd listens on afterwards (in check mode, what it listens on now).
  returned: success
  type: list
  elements: str
  sample: ["0.0.0.0:2222", "[::]:2222"]
socket_activated:
  description: Whether sshd is started by C(ssh.socket) (its C(ListenStream) is then what moves).
  returned: success
  type: bool
selinux:
  description: SELinux mode, the port's type before, and the C(semanage) commands run (or planned).
  returned: success
  type: dict
firewall:
  description: Whether the Portcullis firewall table was managed, and how many of its rules were moved.
  returned: success
  type: dict
steps:
  description: The steps that ran, in order.
  returned: always
  type: list
  elements: str
  sample: [found sshd on 22, plan, transition, new connection on 2222, finalize, commit]
old_port_closed:
  description: Whether a TCP connection from the controller to each old port now fails.
  returned: when the port moved
  type: dict
  sample: {"22": true}
failed_step:
  description: The step that failed.
  returned: failure
  type: str
rolled_back:
  description:
    - Whether the previous configuration was restored after a failure; V(null) when the host does not answer
      and its state is unknown.
  returned: failure after the host was changed
  type: bool
host_state:
  description: What the host runs after a failure, as the host says, or V(unknown).
  returned: failure, when the commit failed or the host does not answer
  type: str
firewall_persistence:
  description:
    - What committing persisted of the moved firewall rules (C(file), C(include), C(service), C(config));
      empty when the table was not persisted or not moved.
  returned: when the port moved
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.portcullis.hardening.plugins.module_utils._host import Host, PortcullisError
from ansible_collections.portcullis.hardening.plugins.module_utils._specs import SSH_PORT_SPEC
from ansible_collections.portcullis.hardening.plugins.module_utils._ssh_port import (
    SshHost,
    commit,
    finalize,
    plan,
    result_json,
    rollback,
    transition,
)
from ansible_collections.portcullis.hardening.plugins.module_utils._sshd import parse_addresses

ARGUMENT_SPEC = SSH_PORT_SPEC


def run(module):
    params = dict(module.params)
    if params["listen_addresses"] is not None:
        # One spelling per address ("[2001:db8::1]", "2001:DB8::1" -> "2001:db8::1"), so re-runs compare equal.
        params["listen_addresses"] = [str(address) for address in parse_addresses(params["listen_addresses"])]
    host = SshHost(Host(module.run_command), check_mode=module.check_mode)
    step = params["step"]
    if step == "plan":
        result = result_json(plan(host, params))
    elif step == "transition":
        result = result_json(transition(host, params))
    elif step == "finalize":
        result = finalize(host, params["token"])
    elif step == "commit":
        result = commit(host, params["token"])
    else:
        result = rollback(host, params["token"])
    for warning in result.pop("warnings", []):
        module.warn(warning)
    return result


def main():
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    if module.check_mode and module.params["step"] != "plan":
        module.fail_json(msg="step=%s changes the host; check mode runs step=plan only" % module.params["step"])
    try:
        result = run(module)
    except (PortcullisError, ValueError, OSError) as exc:  # ValueError: SshdConfigError
        module.fail_json(msg=str(exc), failed_step=module.params["step"], **getattr(exc, "details", {}))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
