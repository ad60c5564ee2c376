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
  - "Plan (reads only): refuse a port another process listens on; find the line (or the socket's listen
    entries) that sets the port; find the port the service listens on now."
  - "Apply: arm a systemd timer that restores everything after O(confirm_timeout) seconds; write the line (or a
    socket drop-in that resets C(ListenStream) and lists the new port; the socket is never masked); run
    O(validate); move the port in the Portcullis firewall table (each rule that opened the old port opens the
    new one instead, with the same sources); restart (or reload) the service; wait until it listens on the new
    port and no longer on the old one."
  - Then the controller opens a new TCP connection to the new port. If it connects, the change is committed
    (the timer is disarmed, the firewall persisted); if not, the host rolls back at once and the task fails
    naming the step.
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
failed_step:
  description: The step that failed.
  returned: failure
  type: str
"""

import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.portcullis.hardening.plugins.module_utils._firewall import FirewallError
from ansible_collections.portcullis.hardening.plugins.module_utils._service_port import (
    STEPS,
    ServiceHost,
    ServicePortError,
    apply,
    commit,
    plan,
    rollback,
)
from ansible_collections.portcullis.hardening.plugins.module_utils._ssh_port import SshPortError
from ansible_collections.portcullis.hardening.plugins.module_utils._transaction import TransactionError

ARGUMENT_SPEC = {
    "service": {"type": "str", "required": True},
    "port": {"type": "int", "required": True},
    "previous_port": {"type": "int"},
    "path": {"type": "path"},
    "regexp": {"type": "str"},
    "line": {"type": "str"},
    "socket_unit": {"type": "str"},
    "validate": {"type": "list", "elements": "str"},
    "restart": {"type": "str", "choices": ["restarted", "reloaded"], "default": "restarted"},
    "manage_firewall": {"type": "bool"},
    "probe": {"type": "bool", "default": True},
    "probe_address": {"type": "str"},
    "confirm_timeout": {"type": "int", "default": 60},
    "step": {"type": "str", "choices": list(STEPS), "default": "plan"},
    "token": {"type": "str", "no_log": False},
}
MUTUALLY_EXCLUSIVE = [["path", "socket_unit"]]
REQUIRED_ONE_OF = [["path", "socket_unit"]]
REQUIRED_TOGETHER = [["path", "regexp", "line"]]


def run(module):
    host = ServiceHost(module.run_command)
    step = module.params["step"]
    if step == "plan":
        result = plan(host, module.params)
        result.pop("_plan")
        return result
    if step == "apply":
        return apply(host, module.params, os.urandom(6).hex())
    if step == "commit":
        return commit(host, module.params["token"])
    return rollback(host, module.params["token"])


def main():
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True,
                           mutually_exclusive=MUTUALLY_EXCLUSIVE, required_one_of=REQUIRED_ONE_OF,
                           required_together=REQUIRED_TOGETHER)
    if module.check_mode and module.params["step"] != "plan":
        module.fail_json(msg="step=%s changes the host; check mode runs step=plan only" % module.params["step"])
    try:
        result = run(module)
    except (ServicePortError, SshPortError, TransactionError, FirewallError, OSError) as exc:
        module.fail_json(msg=str(exc), failed_step=module.params["step"])
    module.exit_json(**result)


if __name__ == "__main__":
    main()
