#!/usr/bin/python
# Copyright (c) Portcullis contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: firewall
short_description: Default-deny nftables firewall from an allowlist, that keeps other rules and cannot lock you out
version_added: 0.1.0
description:
  - Enforces O(allow) at the network layer with nftables, in a table of its own (C(table inet portcullis)). It
    never flushes the ruleset and never touches another table, so Docker, libvirt or Debian's own rules stay
    as they are.
  - The input chain drops (or rejects, O(policy)) everything except established and related traffic, loopback,
    essential ICMP and ICMPv6 (neighbour discovery, router advertisements, packet-too-big, errors, rate-limited
    echo), the management port and the allowlist, for IPv4 and IPv6 alike. Outgoing traffic is not filtered.
  - "Ports published to containers (C(docker run -p), podman, a Kubernetes hostPort) never pass the input chain:
    the kernel rewrites their destination (DNAT) in C(prerouting) and forwards them. With O(close_published) the
    table also has a C(forward) chain: new connections whose destination a DNAT rewrote (C(ct status dnat)) go to a
    C(published) chain, which accepts the allowlisted ports by the original destination port (C(ct original
    proto-dst), the published port, never the container's), and those from the container networks (the sources the
    host masquerades), and drops the rest. Container egress, replies, traffic between containers and routing that
    is not DNAT pass untouched. Docker's and podman's own tables are never changed."
  - The whole table is rendered, validated with C(nft -c -f) and applied in one C(nft -f) transaction (the
    old own table is deleted and the new one created in the same transaction). A second run with the same
    input changes nothing; C(--diff) shows the rules before and after; check mode changes nothing.
  - "Commit-confirm, through the collection's change engine: under a host lock, the host backs up the files the
    change may write (in C(/var/lib/portcullis/armed)), then arms a systemd timer,
    C(portcullis-rollback-<token>.timer), that restores the previous own table after O(confirm_timeout)
    seconds, and only then applies the new table. The action plugin then opens a new connection from the
    controller and confirms over it. The host persists the rules (O(persist)) while the change is still
    armed, then stops the timer and commits. If persisting fails, the change is rolled back at once. If the
    new connection fails, the timer restores the previous rules and the task fails saying so."
  - "One change at a time: while a change (a firewall change, or a move by M(portcullis.hardening.ssh_port) or
    M(portcullis.hardening.service_port)) is armed on the host, the task fails naming it and when its timer
    expires, and changes nothing. When applying or the confirmation fails, or the task is refused that way,
    RV(rolled_back) and RV(host_state) say what the host runs."
  - A boot unit, C(portcullis-rollback.service), installed and enabled at the first change, restores the
    previous files before C(nftables.service) starts when the host restarts with a change still armed. It
    does nothing while no change is armed.
  - The port of the current connection is kept open unless O(allow) lets this connection in for its
    address family and for the controller's address as the host sees it (both read from the SSH session's
    TCP connection in C(/proc)). Otherwise the module keeps the port open for every address, and warns.
author:
  - Portcullis contributors (@portcullis)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.flow
  - portcullis.hardening.allowlist.allow
attributes:
  action:
    support: full
    details: The action plugin validates every option on the controller and confirms over a new connection.
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
  policy:
    description: What happens to traffic nothing allows. V(reject) answers TCP with a reset and the rest with ICMP.
    type: str
    choices: [drop, reject]
    default: drop
  backend:
    description:
      - V(auto) uses nftables, unless ufw or firewalld is active on the host, in which case the task fails
        rather than fight them (their backends are not supported yet). V(ufw) and V(firewalld) fail likewise.
    type: str
    choices: [auto, nftables, ufw, firewalld]
    default: auto
  management_port:
    description:
      - TCP port kept open whatever O(allow) says, unless O(allow) lets this connection in. Default the port of
        the current connection (C(ansible_port), else what C(ssh -G) resolves for the connection, else 22; 22
        for connections that are not over the network).
      - When the SSH session reached the host on another port (a NAT, a port forward), that port stays open too.
    type: int
  keep_management_port:
    description:
      - Set to V(false) to let O(allow) alone decide about O(management_port). Refused before anything runs
        unless O(allow) opens the current connection's port to every source over IPv4 and IPv6, and refused
        on the host when O(allow) does not let this connection in.
    type: bool
    default: true
  persist:
    description:
      - Write the table to C(/etc/nftables.d/portcullis.nft), include it from the file C(nftables.service)
        really loads, read from its C(ExecStart) (C(/etc/nftables.conf) on Debian, C(/etc/sysconfig/nftables.conf)
        on RHEL and Fedora), adding an include line and keeping everything else, and enable
        C(nftables.service), so the rules survive a reboot.
      - With commit-confirm this happens at the confirmation, while the change is still armed, so a failure
        there rolls the change back.
      - When C(nftables.service) is not installed, or loads no file, the task fails before anything changes;
        set V(false) then.
    type: bool
    default: true
  confirm_timeout:
    description:
      - Seconds after which the host restores the previous rules unless a new connection from the controller
        confirmed the change. V(0) applies and persists at once, without commit-confirm.
    type: int
    default: 60
  state:
    description:
      - V(absent) deletes the own table, the persisted file and the include line, and nothing else. It removes
        the file that loads the table and C(/etc/nftables.d) only when Portcullis created them and nothing
        else is in them, and disables C(nftables.service) only when Portcullis enabled it.
      - V(absent) is refused while a change is armed on the host.
    type: str
    choices: [present, absent]
    default: present
  log_dropped:
    description: Log what the policy drops, rate-limited (5 a minute), with the prefix C(portcullis drop).
    type: bool
    default: false
  close_published:
    description:
      - Drop new connections to ports published to containers that O(allow) does not allow (the C(forward) and
        C(published) chains). An entry allows a published port by its published port number, with its sources and
        family; O(allow[].published=true) allows it on that path only.
      - Always a drop, whatever O(policy) says - a reset built after the DNAT would carry the container's address,
        which clients ignore.
      - V(false) leaves forwarded traffic alone, as the input chain alone would.
    type: bool
    default: true
    version_added: 0.1.0
  confirm:
    description:
      - Set by the action plugin when it confirms a change over a new connection (the token of the armed
        rollback). Do not set it yourself.
    type: str
notes:
  - The change engine, the boot unit and the fault matrix that tests them are described in
    C(docs/reliability.md) of the collection.
  - Debian's C(/etc/nftables.conf) starts with C(flush ruleset), as shipped. At boot that is harmless, but
    restarting C(nftables.service) by hand flushes the rules of other tools such as Docker; this module never
    restarts it.
seealso:
  - module: portcullis.hardening.port_audit
"""

EXAMPLES = r"""
- name: Allow SSH, HTTPS and monitoring; drop everything else
  portcullis.hardening.firewall:
    allow:
      - {port: 22, comment: SSH}
      - {port: 443}
      - {port: 9100, sources: [10.0.0.0/8], comment: node exporter}
      - {port: 51820, protocol: udp, comment: WireGuard}

- name: Preview the rules without touching the host
  portcullis.hardening.firewall:
    allow: "{{ portcullis_allowlist }}"
  check_mode: true
  diff: true

- name: Remove the Portcullis table and its persistence
  portcullis.hardening.firewall:
    state: absent
"""

RETURN = r"""
rules:
  description: The own table as rendered (what is live after the task, unless it failed).
  returned: state is present
  type: str
management_ports:
  description: Ports kept open besides O(allow) (empty when O(allow) opens the management port itself).
  returned: state is present
  type: list
  elements: int
closing:
  description:
    - The ports that listen on a network address but that the table does not open (it keeps them closed), each with
      C(protocol), C(port), its C(listeners) and the C(established) connections to it (their peers).
    - When the table changes, a warning names every closing port that has established connections. The table lets
      them finish (it accepts established traffic first) but refuses every new connection to the port.
    - "An entry limited to some sources or to one family opens the port (to them): such a port is not listed."
  returned: state is present
  type: list
  elements: dict
  sample: [{"protocol": "tcp", "port": 8080, "listeners": ["0.0.0.0:8080"], "established": ["192.0.2.7:51234"]}]
published:
  description:
    - The ports published to containers, as RV(portcullis.hardening.listening_ports#module:published) lists them.
  returned: state is present and O(close_published)
  type: list
  elements: dict
  version_added: 0.1.0
closing_published:
  description:
    - The published ports the forward chain closes (no entry allows them), each with C(protocol), C(family),
      C(address), C(port), C(to) (the DNAT and the container, in words) and C(container) (its name, or null).
  returned: state is present and O(close_published)
  type: list
  elements: dict
  version_added: 0.1.0
  sample: [{"protocol": "tcp", "family": "ipv4", "address": "0.0.0.0", "port": 8081, "container": "web",
            "to": "tcp 0.0.0.0:8081 -> 172.17.0.2:80 (DNAT in ip nat chain DOCKER, docker container web)"}]
persistence:
  description:
    - What persisting changed (or would change) - C(file), C(include), C(service), and C(config), the file
      C(nftables.service) loads.
  returned: state is present and O(persist)
  type: dict
  sample: {"file": true, "include": true, "service": true, "config": "/etc/nftables.conf"}
rollback:
  description:
    - The armed rollback - C(token), C(unit) (the timer), C(timeout) and C(expires_at) (seconds since the
      epoch, when the timer restores the previous rules).
    - The action plugin removes it from the result once the change is confirmed.
  returned: when a change was applied with commit-confirm but not confirmed
  type: dict
confirmed:
  description: Whether a new connection from the controller confirmed the change.
  returned: when a change was applied with commit-confirm
  type: bool
rolled_back:
  description:
    - After a failure, whether the previous rules are back - V(true) when the change was rolled back (by the
      timer, at boot, or at once), V(false) when nothing was changed because another change is armed, V(null)
      when the host does not answer and its state is unknown.
  returned: failure, when applying or the confirmation failed, or another change is armed
  type: bool
host_state:
  description: What the host runs after a failure, in words (V(unknown) when the host did not say).
  returned: failure, when applying or the confirmation failed, or another change is armed
  type: str
  sample: the previous configuration
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.portcullis.hardening.plugins.module_utils._allowlist import (
    management_gap,
    parse_allowlist,
)
from ansible_collections.portcullis.hardening.plugins.module_utils._firewall import (
    KIND,
    FirewallError,
    Nftables,
    closing_ports,
    closing_published,
    closing_warnings,
    persist,
    persisted_paths,
    persistence_plan,
    persistence_summary,
    plan,
    record_live,
    remove,
    rollback_files,
    undo_commands,
)
from ansible_collections.portcullis.hardening.plugins.module_utils._host import Host, PortcullisError
from ansible_collections.portcullis.hardening.plugins.module_utils._listeners import discover
from ansible_collections.portcullis.hardening.plugins.module_utils._nftables import apply_script, render_table
from ansible_collections.portcullis.hardening.plugins.module_utils._published import link_proxies, read_published
from ansible_collections.portcullis.hardening.plugins.module_utils._session import (
    established_connections,
    management_session,
)
from ansible_collections.portcullis.hardening.plugins.module_utils._specs import FIREWALL_SPEC
from ansible_collections.portcullis.hardening.plugins.module_utils._transaction import ChangePending, Engine, RolledBack, new_token

ARGUMENT_SPEC = FIREWALL_SPEC


def management(rules, params, session, warnings):
    """The ports kept open besides the allowlist: this connection's, unless the allowlist lets it in for the family
    and the address the controller really uses (then that entry, with its sources, decides)."""
    port = params["management_port"] or 22
    family = source = None
    if session:
        if params["management_port"] and session["port"] != params["management_port"]:
            warnings.append("management_port is %d, but this connection came in on port %d/tcp: both stay open"
                            % (params["management_port"], session["port"]))
        port, family, source = session["port"], session["family"], session["peer_address"]
    ports = sorted(set([port] + ([params["management_port"]] if params["management_port"] else [])))
    kept = []
    for item in ports:
        gap = management_gap(rules, item, family=family if item == port else None,
                             source=source if item == port else None)
        if gap is None:
            continue
        if not params["keep_management_port"]:
            if session and item == session["port"]:
                raise FirewallError("keep_management_port: false, but %s: applying would cut this connection "
                                    "(nothing was changed)" % gap)
            continue
        warnings.append("%s: the firewall keeps %d/tcp open for every address anyway (set keep_management_port=false "
                        "to let allow decide)" % (gap, item))
        kept.append(item)
    return kept


def check_backend(module, nft):
    backend = module.params["backend"]
    if backend in ("ufw", "firewalld"):
        raise FirewallError("backend: %r is not supported yet; use nftables (auto)" % backend)
    if not module.get_bin_path("nft"):
        raise FirewallError("nft was not found on the host: install the nftables package")
    others = nft.active_managers()
    if others:
        raise FirewallError("%s is active on this host; Portcullis will not fight it with a second firewall. "
                            "Disable it, or wait for the %s backend" % (" and ".join(others), others[0]))


def confirm(engine, nft, params, desired):
    """Over a new connection: persist while still armed, then commit (stop the timer, claim the change)."""
    def finish(_change):
        if not params["persist"]:
            return {}
        persistence = persistence_plan(desired, nft)
        persist(desired, nft, persistence)
        return persistence_summary(persistence)

    with engine.locked("confirm"):
        persistence = engine.commit(params["confirm"], KIND, "confirm", finish)
    return {"changed": True, "confirmed": True, "rules": desired, "persistence": persistence}


def apply(engine, nft, params, desired, result, warnings):
    """Under the host lock: refuse while another change is armed, arm the rollback, apply, record."""
    with engine.locked("firewall"):
        warnings.extend(engine.refuse_if_pending("firewall"))
        current = plan(desired, nft)  # again, under the lock: another run may have changed it meanwhile
        nft.load(apply_script(desired), "validating the new rules (nothing was changed)", check_only=True)
        if not current["table_changed"]:
            if params["persist"]:
                persistence = persistence_plan(desired, nft)
                persist(desired, nft, persistence)
            return result
        if not params["confirm_timeout"]:  # the operator chose no commit-confirm
            nft.load(apply_script(desired), "applying the new rules (nft applies all or nothing)")
            record_live(desired, nft)
            if params["persist"]:
                persist(desired, nft, persistence_plan(desired, nft))
            return result
        token = new_token()
        live, boot = undo_commands(nft, engine.armed_file("firewall-rollback.nft"))
        change = engine.arm(KIND, token, "firewall table", persisted_paths(nft, params["persist"]),
                            params["confirm_timeout"], live_commands=live, boot_commands=boot,
                            files=rollback_files(current["live_text"]))
        try:
            nft.load(apply_script(desired), "applying the new rules (nft applies all or nothing)")
            record_live(desired, nft)
        except (PortcullisError, OSError) as exc:
            error = FirewallError("%s; %s" % (exc, engine.rollback_now(token, KIND, "apply")))
            error.details = RolledBack.details
            raise error
        result.update(confirmed=False, rollback={"token": token, "unit": change.timer, "timeout":
                                                 params["confirm_timeout"], "expires_at": change.expires_at})
    return result


def run(module):
    params = module.params
    host = Host(module.run_command)
    nft = Nftables(host)
    engine = Engine(host)
    check_backend(module, nft)
    warnings = []
    if params["state"] == "absent":
        if module.check_mode:
            return remove(nft, True)
        with engine.locked("firewall state=absent"):
            warnings.extend(engine.refuse_if_pending("firewall state=absent"))
            result = remove(nft, False)
        result["warnings"] = warnings
        return result

    rules = parse_allowlist(params["allow"], name="allow")
    kept = management(rules, params, management_session(), warnings)
    # The table depends on the NAT rules only (the container networks); the listeners matter for the result.
    publication = read_published(host) if params["close_published"] else None
    desired = render_table(rules, params["policy"], kept, params["log_dropped"],
                           published=publication.container_networks if publication else None)
    if params["confirm"]:
        return confirm(engine, nft, params, desired)
    warnings.extend(publication.notes if publication else [])
    listeners = discover().listeners
    link_proxies(listeners, publication.ports if publication else [])

    current = plan(desired, nft)
    persistence = persistence_plan(desired, nft) if params["persist"] else {}
    persisting = any(persistence.get(key) for key in ("file", "include", "service"))
    closing = closing_ports([item for item in listeners if not item["published"]], rules, kept,
                            established_connections())
    if current["table_changed"]:
        warnings.extend(closing_warnings(closing))
    result = {"changed": current["table_changed"] or persisting,
              "rules": desired, "management_ports": kept, "persistence": persistence_summary(persistence),
              "closing": closing,
              "diff": {"before": current["live_text"] or "", "after": desired}, "warnings": warnings}
    if params["close_published"]:
        result.update(published=publication.ports, closing_published=closing_published(publication.ports, rules))
    if module.check_mode:
        try:
            warnings.extend(engine.refuse_if_pending("firewall", check_mode=True))
        except ChangePending as exc:
            warnings.append("a real run would refuse now: %s" % exc)
        return result
    if not result["changed"]:
        # The live table may be an armed change's, which its timer would still take back: say so, not "ok".
        with engine.locked("firewall"):
            warnings.extend(engine.refuse_if_pending("firewall"))
        return result
    return apply(engine, nft, params, desired, result, warnings)


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
