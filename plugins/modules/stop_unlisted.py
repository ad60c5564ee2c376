#!/usr/bin/python
# Copyright (c) Portcullis contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: stop_unlisted
short_description: Stop and disable the systemd units behind listeners the allowlist does not allow
version_added: 0.1.0
description:
  - Finds the listeners that no entry of O(allowlist) allows, exactly as M(portcullis.hardening.port_audit) reports
    them (C(unexpected_listener) findings; loopback-only listeners only with O(include_loopback)), and stops the
    systemd unit that holds each one. Under socket activation that is the socket unit and its service; sockets stop
    first, so that none starts its service again.
  - With O(disable) (default), units that are C(enabled) are disabled as well, so that they stay stopped after a
    reboot. Static units are stopped only.
  - Never stops a unit that matches O(protected_units) or the built-in patterns (C(ssh.service), C(ssh.socket),
    C(ssh@*.service), C(sshd.service), C(sshd.socket), C(sshd@*.service), C(systemd-*), C(dbus.service),
    C(dbus.socket), C(portcullis-rollback*)), nor a unit serving the connection the module runs over. Those listeners, and
    listeners with no unit (a program started by hand, a login session's scope, a kernel socket), are reported in
    RV(kept) and never killed.
  - The change goes through the collection's change engine. Under the host lock, and refused while another change
    is armed, it arms a rollback that starts (and enables) the units again, stops them, and waits up to
    O(settle_timeout) seconds for their sockets to close. The action plugin then confirms the change over a new
    connection from the controller. When no new connection gets in, the host's timer puts the units back after
    O(confirm_timeout) seconds; a reboot before the confirmation puts them back at boot.
author:
  - Portcullis contributors (@portcullis)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.flow
  - portcullis.hardening.allowlist
attributes:
  action:
    support: full
    details: The action plugin validates every argument on the controller first and confirms over a new connection.
  async:
    support: none
  bypass_host_loop:
    support: none
  check_mode:
    support: full
    details: Lists exactly which units would stop, and why; changes nothing.
  diff_mode:
    support: full
    details: Each unit's state (active, enabled) before and after.
  platform:
    platforms: posix
options:
  protected_units:
    description:
      - More unit name patterns (shell-style, such as V(postgresql*) or V(nginx.service)) never to stop, besides the
        built-in ones.
    type: list
    elements: str
    default: []
  include_loopback:
    description:
      - Stop the units of loopback-only listeners that no entry allows too. By default they are left alone, as the
        audit reports them as V(info) only.
    type: bool
    default: false
  disable:
    description:
      - Disable the units that are enabled, so that they stay stopped after a reboot.
    type: bool
    default: true
  settle_timeout:
    description:
      - Seconds to wait, after stopping, for the units' sockets to close (0-120). Listeners still there afterwards
        are reported in RV(still_listening) with a warning.
    type: int
    default: 10
  confirm_timeout:
    description:
      - Seconds after which the host puts the units back unless a new connection from the controller confirmed the
        change (10-3600); V(0) stops them without commit-confirm.
    type: int
    default: 60
  confirm:
    description:
      - Set by the action plugin to commit an armed change; do not set it.
    type: str
notes:
  - Runs as root (become).
  - What counts as allowed is the allowlist's whole meaning (ports, protocol, family, bind); a listener that an entry
    allows on another process or on loopback only is a finding of M(portcullis.hardening.port_audit), but it is not
    stopped.
seealso:
  - module: portcullis.hardening.port_audit
  - module: portcullis.hardening.firewall
"""

EXAMPLES = r"""
- name: Stop the services that listen without an allowlist entry
  portcullis.hardening.stop_unlisted:
    allowlist:
      - {port: 22, comment: SSH}
      - {port: 443, comment: HTTPS}
    protected_units: [postgresql*]
  become: true

- name: Show which units would stop (changes nothing)
  portcullis.hardening.stop_unlisted:
    allowlist: "{{ portcullis_allowlist }}"
  check_mode: true
  register: would_stop
"""

RETURN = r"""
stopped:
  description: The units stopped (or, in check mode, to stop), grouped with the listeners they held.
  returned: always
  type: list
  elements: dict
  contains:
    units:
      description: Socket units first, then the service.
      type: list
      elements: str
    listeners:
      description: The listeners (C(tcp 0.0.0.0:9999)) no entry allows.
      type: list
      elements: str
    before:
      description: Each unit's C(active) and C(enabled) state before the change.
      type: dict
kept:
  description: Unlisted listeners that were not stopped, each with the reason (protected, no unit, started by hand).
  returned: always
  type: list
  elements: dict
  sample: [{"listener": "tcp 0.0.0.0:5000", "reason": "it runs in session-3.scope, ...: reported, never killed"}]
still_listening:
  description: Listeners of the stopped units that were still open after O(settle_timeout).
  returned: when units were stopped
  type: list
  elements: str
rollback:
  description: The armed rollback (C(token), C(unit), C(timeout), C(expires_at)); removed once confirmed.
  returned: when units were stopped with commit-confirm but not confirmed
  type: dict
confirmed:
  description: Whether a new connection from the controller confirmed the change.
  returned: when units were stopped with commit-confirm
  type: bool
rolled_back:
  description: After a failure, whether the units were put back (V(null) when the host's state is unknown).
  returned: failure, when stopping or the confirmation failed, or another change is armed
  type: bool
host_state:
  description: What the host runs after a failure, in words.
  returned: failure, when stopping or the confirmation failed, or another change is armed
  type: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.portcullis.hardening.plugins.module_utils._allowlist import parse_allowlist
from ansible_collections.portcullis.hardening.plugins.module_utils._host import Host, PortcullisError
from ansible_collections.portcullis.hardening.plugins.module_utils._listeners import discover
from ansible_collections.portcullis.hardening.plugins.module_utils._specs import (
    ALWAYS_PROTECTED_UNITS,
    STOP_UNLISTED_SPEC,
)
from ansible_collections.portcullis.hardening.plugins.module_utils._stop_unlisted import (
    KIND,
    StopUnlistedError,
    listener_text,
    management_units,
    parse_list_sockets,
    plan_stops,
    state_text,
    stop_commands,
    undo_commands,
    unlisted,
)
from ansible_collections.portcullis.hardening.plugins.module_utils._systemd import SYSTEMCTL
from ansible_collections.portcullis.hardening.plugins.module_utils._transaction import (
    Engine,
    RolledBack,
    new_token,
)

ARGUMENT_SPEC = STOP_UNLISTED_SPEC
LIST_SOCKETS = [SYSTEMCTL, "list-sockets", "--all", "--full", "--no-legend", "--no-pager"]


def make_plan(host, params, proc_root="/proc"):
    rules = parse_allowlist(params["allowlist"])
    protected = list(ALWAYS_PROTECTED_UNITS) + params["protected_units"] + sorted(management_units(proc_root))
    targets = unlisted(discover(proc_root).listeners, rules, params["include_loopback"])
    rc, out, _err = host.run(LIST_SOCKETS)
    return plan_stops(host, targets, parse_list_sockets(out) if rc == 0 else [], protected)


def settle(host, plan, seconds, proc_root="/proc"):
    """Wait (bounded) until the stopped units' listeners are gone; the ones still there."""
    wanted = {text for group in plan.groups for text in group["listeners"]}
    deadline = host.clock() + seconds
    while True:
        remaining = sorted(wanted & {listener_text(item) for item in discover(proc_root).listeners})
        if not remaining or host.clock() >= deadline:
            return remaining
        host.sleep(0.5)


def stop(engine, host, params, result, warnings, proc_root="/proc"):
    """Under the host lock: refuse while another change is armed, plan again, arm, stop, settle."""
    with engine.locked("stop_unlisted"):
        warnings.extend(engine.refuse_if_pending("stop_unlisted"))
        plan = make_plan(host, params, proc_root)  # again, under the lock
        result.update(stopped=plan.summary(), kept=plan.kept)
        if not plan.groups:
            result["changed"] = False
            return result
        token = None
        if params["confirm_timeout"]:
            token = new_token()
            live, boot = undo_commands(plan, params["disable"])
            change = engine.arm(KIND, token, "stop " + ", ".join(plan.units), [], params["confirm_timeout"],
                                live_commands=live, boot_commands=boot, data={"units": plan.units})
            result.update(confirmed=False, rollback={"token": token, "unit": change.timer, "timeout":
                                                     params["confirm_timeout"], "expires_at": change.expires_at})
        try:
            for argv in stop_commands(plan, params["disable"]):
                host.check(argv, "stopping the unlisted listeners' units", StopUnlistedError)
        except (PortcullisError, OSError) as exc:
            if token is None:
                raise
            error = StopUnlistedError("%s; %s" % (exc, engine.rollback_now(token, KIND, "stop")))
            error.details = RolledBack.details
            raise error
        result["still_listening"] = settle(host, plan, params["settle_timeout"], proc_root)
    if result["still_listening"]:
        warnings.append("still listening %d s after their units stopped: %s (a process outside its unit's control "
                        "group, or KillMode=none?)" % (params["settle_timeout"], ", ".join(result["still_listening"])))
    return result


def run(module, proc_root="/proc"):
    params = module.params
    host = Host(module.run_command)
    engine = Engine(host)
    if params["confirm"]:
        with engine.locked("confirm"):
            engine.commit(params["confirm"], KIND, "confirm")
        return {"changed": True, "confirmed": True}
    if not 0 <= params["settle_timeout"] <= 120:
        raise StopUnlistedError("settle_timeout: %r must be within 0-120 seconds" % params["settle_timeout"])
    if params["confirm_timeout"] and not 10 <= params["confirm_timeout"] <= 3600:
        raise StopUnlistedError("confirm_timeout: %r must be 0 or within 10-3600 seconds" % params["confirm_timeout"])

    warnings = []
    plan = make_plan(host, params, proc_root)
    result = {"changed": bool(plan.groups), "stopped": plan.summary(), "kept": plan.kept, "warnings": warnings,
              "diff": {"before_header": "systemd units", "after_header": "systemd units",
                       "before": state_text(plan), "after": state_text(plan, after=True, disable=params["disable"])}}
    for item in plan.kept:
        warnings.append("%s is not allowed, but %s" % (item["listener"], item["reason"]))
    if module.check_mode:
        warnings.extend(engine.preview("stop_unlisted"))
        return result
    if not plan.groups:
        # The units may be stopped by an armed change, which its timer would still undo: say so, not "ok".
        with engine.locked("stop_unlisted"):
            warnings.extend(engine.refuse_if_pending("stop_unlisted"))
        return result
    return stop(engine, host, params, result, warnings, proc_root)


def main():
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    try:
        result = run(module)
    except (PortcullisError, ValueError, OSError) as exc:  # ValueError includes AllowlistError
        module.fail_json(msg=str(exc), **getattr(exc, "details", {}))
    for warning in result.pop("warnings", []):
        module.warn(warning)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
