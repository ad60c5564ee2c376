#!/usr/bin/python
# Copyright (c) Portcullis contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: service_port
short_description: Move a service to another TCP port, prove it from the controller, or roll back
version_added: 0.1.0
description:
  - Moves a systemd service whose port is set by a line of a configuration file (O(path), O(regexp), O(line)) or
    by a socket unit (O(socket_unit)) to O(port), the way M(portcullis.hardening.ssh_port) moves sshd.
  - The move is one change of the collection's change engine, as for M(portcullis.hardening.ssh_port). The
    apply, commit and rollback steps run under a host lock. While any change (this move, a firewall change,
    another move) is armed, every other change on the host is refused, naming it and when its timer expires.
  - A boot unit, C(portcullis-rollback.service), installed and enabled at the first change, restores the
    previous files (and runs C(systemctl daemon-reload)) before the services start when the host restarts
    with the move still armed. It does nothing while no change is armed.
  - "Plan (reads only): refuse while another change is armed; refuse a port another process listens on (a
    listener is the service's when one of its processes runs in O(service) or O(socket_unit)); find the line
    (or the socket's listen entries) that sets the port; find the port the service listens on now."
  - "Apply: back up the files it writes in C(/var/lib/portcullis/armed) and arm a systemd timer,
    C(portcullis-rollback-<token>.timer), that restores everything after O(confirm_timeout) seconds; write
    the line (or a socket drop-in that resets C(ListenStream) and lists the new port; the socket is never
    masked); run O(validate); move the port in the Portcullis firewall table (each rule that opened the old
    port opens the new one instead, with the same sources); restart (or reload) the service; wait until it
    listens on the new port and no longer on the old one."
  - Then the controller opens a new TCP connection to the new port. If it connects, the change is committed
    (a moved firewall rule is persisted while the change is still armed, when the table was persisted; then
    the timer is stopped); if not, the host rolls back at once and the task fails naming the step. A step
    that fails after the rollback was armed rolls back at once too.
author:
  - Portcullis contributors (@portcullis)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.flow
attributes:
  action:
    support: full
    details: The action plugin validates the options and probes the new port from the controller.
  async:
    support: none
  bypass_host_loop:
    support: none
  check_mode:
    support: full
  diff_mode:
    support: full
  platform:
    platforms: linux
options:
  service:
    description: The systemd service unit, for example V(nginx.service). Its processes are the ones whose ports count.
    type: str
    required: true
  port:
    description: The TCP port the service is to listen on.
    type: int
    required: true
  previous_port:
    description: The port it listens on now. By default, found from what the service listens on (one port).
    type: int
  path:
    description: The configuration file that sets the port. Use with O(regexp) and O(line); or use O(socket_unit).
    type: path
  regexp:
    description: A Python regular expression; every line of O(path) it matches is replaced by O(line).
    type: str
  line:
    description: The line that sets the new port, for example V(Listen 8443).
    type: str
  socket_unit:
    description: A systemd socket unit that holds the port (for example V(myapp.socket)), instead of O(path).
    type: str
  validate:
    description: A command (argument list, no shell) that checks the new configuration, for example V([nginx, -t]).
    type: list
    elements: str
  restart:
    description: How the service takes the new port.
    type: str
    choices: [restarted, reloaded]
    default: restarted
  manage_firewall:
    description: Move the port in the Portcullis firewall table too; by default whenever the table exists.
    type: bool
  probe:
    description: Prove the new port with a TCP connection from the controller before committing.
    type: bool
    default: true
  probe_address:
    description: The address the controller probes; by default the host's C(ansible_host).
    type: str
  confirm_timeout:
    description: Seconds before the host restores the previous configuration unless the change is committed (10-3600).
    type: int
    default: 60
  step:
    description: Set by the action plugin; do not set it.
    type: str
    choices: [plan, apply, commit, rollback]
    default: plan
  token:
    description: Set by the action plugin; do not set it.
    type: str
seealso:
  - module: portcullis.hardening.ssh_port
  - module: portcullis.hardening.firewall
"""

EXAMPLES = r"""
- name: Move the lab's web server from 8080 to 8081 (its port is PORT= in an environment file)
  portcullis.hardening.service_port:
    service: portcullis-rogue-web.service
    path: /etc/default/portcullis-rogue-web
    regexp: '^PORT='
    line: PORT=8081
    port: 8081

- name: Move nginx to 8443, checking the configuration first
  portcullis.hardening.service_port:
    service: nginx.service
    path: /etc/nginx/sites-available/default
    regexp: '^\s*listen\s+8080'
    line: "    listen 8443;"
    port: 8443
    validate: [nginx, -t]
    restart: reloaded

- name: Move a socket-activated service
  portcullis.hardening.service_port:
    service: myapp.service
    socket_unit: myapp.socket
    port: 9443
"""

RETURN = r"""
port:
  description: The port the service listens on afterwards.
  returned: success
  type: int
previous_port:
  description: The port it listened on before.
  returned: success
  type: int
listening_before:
  description: Addresses and ports the service listened on before.
  returned: success
  type: list
  elements: str
listening_after:
  description: Addresses and ports it listens on afterwards.
  returned: when changed
  type: list
  elements: str
probe:
  description: What a TCP connection from the controller got on the new port (V(open), V(closed), V(filtered)).
  returned: when probed
  type: str
firewall:
  description: Whether the Portcullis firewall table was managed and how many rules moved.
  returned: success
  type: dict
steps:
  description: The steps that ran.
  returned: always
  type: list
  elements: str
firewall_persistence:
  description:
    - What committing persisted of the moved firewall rule (C(file), C(include), C(service), C(config));
      empty when the table was not persisted or not moved.
  returned: when changed
  type: dict
failed_step:
  description: The step that failed.
  returned: failure
  type: str
rolled_back:
  description: Whether the previous configuration was restored after a failure.
  returned: failure after the plan
  type: bool
host_state:
  description: What the host runs after a failed commit, as the host says.
  returned: when the commit failed
  type: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.portcullis.hardening.plugins.module_utils._host import Host, PortcullisError
from ansible_collections.portcullis.hardening.plugins.module_utils._service_port import (
    ServiceHost,
    apply,
    commit,
    plan,
    rollback,
)
from ansible_collections.portcullis.hardening.plugins.module_utils._specs import (
    SERVICE_PORT_MUTUALLY_EXCLUSIVE as MUTUALLY_EXCLUSIVE,
    SERVICE_PORT_REQUIRED_ONE_OF as REQUIRED_ONE_OF,
    SERVICE_PORT_REQUIRED_TOGETHER as REQUIRED_TOGETHER,
    SERVICE_PORT_SPEC,
)

ARGUMENT_SPEC = SERVICE_PORT_SPEC


def run(module):
    host = ServiceHost(Host(module.run_command), check_mode=module.check_mode)
    step = module.params["step"]
    if step == "plan":
        result = plan(host, module.params)
        result.pop("_plan")
    elif step == "apply":
        result = apply(host, module.params)
    elif step == "commit":
        result = commit(host, module.params["token"])
    else:
        result = rollback(host, module.params["token"])
    for warning in result.pop("warnings", []):
        module.warn(warning)
    return result


def main():
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True,
                           mutually_exclusive=MUTUALLY_EXCLUSIVE, required_one_of=REQUIRED_ONE_OF,
                           required_together=REQUIRED_TOGETHER)
    if module.check_mode and module.params["step"] != "plan":
        module.fail_json(msg="step=%s changes the host; check mode runs step=plan only" % module.params["step"])
    try:
        result = run(module)
    except (PortcullisError, OSError) as exc:
        module.fail_json(msg=str(exc), failed_step=module.params["step"], **getattr(exc, "details", {}))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
