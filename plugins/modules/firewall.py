#!/usr/bin/python
# Copyright (c) Portcullis contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: firewall
short_description: Default-deny firewall from an allowlist (nftables, ufw or firewalld) that cannot lock you out
version_added: 0.1.0
description:
  - Enforces O(allow) at the network layer in the firewall the host runs (O(backend)) - an active ufw, a running
    firewalld, or else nftables, in a table of its own (C(table inet portcullis)). It never flushes a ruleset and
    never touches another table, so Docker, libvirt or Debian's own rules stay as they are.
  - "With ufw and firewalld the allowlist has the same meaning: ports and ranges, tcp/udp, family, sources,
    O(allow[].bind=loopback) opens nothing, the management port is kept, default deny incoming, and every allow the
    allowlist does not have is removed. ufw: the incoming rules of every interface (routed and outgoing rules stay)
    and the default incoming policy, with ufw's own commands; Portcullis's rules carry a C(portcullis) comment.
    firewalld: the default zone and every active zone except those with target ACCEPT, runtime and permanent alike
    (O(persist)), with C(firewall-cmd); ports, services, protocols, source ports and accepting rich rules the
    allowlist does not cover are removed, the zone's target, ICMP handling, C(dhcpv6-client), forward ports and
    masquerading stay. Their ICMP and ICMPv6 defaults stay as the backend has them."
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
    description:
      - What happens to traffic nothing allows. V(reject) answers TCP with a reset and the rest with ICMP.
      - ufw - its default incoming policy (C(ufw default deny|reject incoming)).
      - firewalld - the zones keep their target (C(default) rejects with ICMP, C(DROP) drops); changing one takes a
        C(--reload), which would drop other tools' runtime rules, so a warning names each managed zone whose target
        answers otherwise than O(policy) says.
    type: str
    choices: [drop, reject]
    default: drop
  backend:
    description:
      - V(auto) uses ufw when it is active, firewalld when it is running, and nftables otherwise; RV(backend) and
        RV(backend_reason) say which and why. One host needs one authority (an accept in one netfilter table never
        overrides a drop in another), so an explicit backend fails, before anything changes, when another of them
        is active, and the task fails when ufw and firewalld are both active.
      - V(ufw) on a host where ufw is installed but inactive enables it, once the allowlist's rules are in.
        V(firewalld) needs firewalld running.
      - With ufw or firewalld, a Portcullis nftables table left from V(nftables) makes the task fail until
        O(state=absent) with O(backend=nftables) removes it.
      - O(log_dropped) and O(close_published) work with nftables only; with the others a warning names every
        published port the allowlist does not allow.
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
      - firewalld - V(true) changes the permanent configuration as well as the runtime one; V(false) the runtime
        only. ufw writes every rule to C(/etc/ufw) itself, so V(false) fails with it.
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
      - With ufw it deletes the rules with a C(portcullis) comment, puts back the default incoming policy it
        replaced and disables ufw when Portcullis enabled it; with firewalld it removes the elements Portcullis
        added (kept in C(/var/lib/portcullis/firewall.json)), runtime and permanent. What it removed from other
        tools stays removed.
      - With O(backend=auto) it cleans every backend that has something of Portcullis's.
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

- name: Remove what Portcullis added (its table, its ufw rules, its firewalld elements)
  portcullis.hardening.firewall:
    state: absent

- name: Enforce the allowlist with the host's ufw, and fail if ufw is not what runs there
  portcullis.hardening.firewall:
    backend: ufw
    allow:
      - {port: 22}
      - {port: 443}
"""

RETURN = r"""
backend:
  description: The firewall that enforces the allowlist - V(nftables), V(ufw) or V(firewalld).
  returned: always
  type: str
  version_added: 0.1.0
backend_reason:
  description: Why that backend, in words (what O(backend=auto) found active, or that it was asked for).
  returned: state is present
  type: str
  sample: "ufw is active on this host (backend: auto)"
  version_added: 0.1.0
rules:
  description:
    - The own table as rendered (what is live after the task, unless it failed). With ufw, its default incoming
      policy and incoming rules, as ufw commands; with firewalld, the managed elements of each managed zone, runtime
      and permanent, as C(firewall-cmd --list-all) prints them.
  returned: state is present
  type: str
commands:
  description: The ufw or firewall-cmd commands the task ran (in check mode, would run), in order.
  returned: state is present and the backend is ufw or firewalld
  type: list
  elements: str
  version_added: 0.1.0
removed_rules:
  description: The allows of ufw or firewalld that the allowlist does not have, which the task removed (would remove).
  returned: the backend is ufw or firewalld
  type: list
  elements: str
  version_added: 0.1.0
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

import contextlib

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.portcullis.hardening.plugins.module_utils._allowlist import (
    input_openings,
    management_gap,
    parse_allowlist,
)
from ansible_collections.portcullis.hardening.plugins.module_utils._backends import (
    backend_for,
    choose,
    detect,
    enforce,
    save_record,
    text_of,
)
from ansible_collections.portcullis.hardening.plugins.module_utils._firewall import (
    KIND,
    FirewallError,
    Nftables,
    apply_armed,
    armed_result,
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
from ansible_collections.portcullis.hardening.plugins.module_utils._transaction import Engine, new_token
from ansible_collections.portcullis.hardening.plugins.module_utils._ufw import Ufw

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


def check_nft(module):
    if not module.get_bin_path("nft"):
        raise FirewallError("nft was not found on the host: install the nftables package")


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

        def apply_change():
            nft.load(apply_script(desired), "applying the new rules (nft applies all or nothing)")
            record_live(desired, nft)

        apply_armed(engine, token, KIND, apply_change)
        result.update(confirmed=False, rollback=armed_result(change, params["confirm_timeout"]))
    return result


def nothing_to_apply(module, engine, result, warnings):
    """Whether the result is final without applying: check mode (saying whether a real run would refuse), or no
    change - then still refused while a change is armed, as the live rules may be that change's, which its timer
    would take back: say so, not "ok"."""
    if module.check_mode:
        warnings.extend(engine.preview("firewall"))
        return True
    if not result["changed"]:
        with engine.locked("firewall"):
            warnings.extend(engine.refuse_if_pending("firewall"))
        return True
    return False


def remove_everywhere(module, host, engine, nft, requested, warnings):
    """state=absent: what Portcullis added, removed from the backend asked for; with auto, from every backend that
    has some (its nftables table, its ufw rules, its firewalld elements), and nothing else."""
    names = [requested] if requested != "auto" else [
        name for name, present in (("nftables", bool(module.get_bin_path("nft"))), ("ufw", Ufw(host).installed()),
                                   ("firewalld", detect(host)["firewalld"])) if present]
    result = {"changed": False, "diff": [], "backend": requested, "removed_rules": []}
    with contextlib.ExitStack() as stack:
        if not module.check_mode:
            stack.enter_context(engine.locked("firewall state=absent"))
            warnings.extend(engine.refuse_if_pending("firewall state=absent"))
        for name in names:
            if name == "nftables":
                check_nft(module)
                removed = remove(nft, module.check_mode)
                result["diff"].append(removed["diff"])
                result["changed"] = result["changed"] or removed["changed"]
                continue
            choose(host, name, absent=True)
            backend = backend_for(name, host)
            session = management_session()
            change = backend.removal(session["port"] if session else None)
            warnings.extend(change["warnings"])
            result["diff"].append({"before_header": name, "after_header": name, "before": change["before"],
                                   "after": change["after"]})
            result["removed_rules"] += change["removed"]
            if change["changed"]:
                result["changed"] = True
                if not module.check_mode:
                    backend.apply(change, "removing Portcullis's %s rules" % name)
            if not module.check_mode:
                save_record(nft, name, None)
    if len(result["diff"]) == 1:
        result["diff"] = result["diff"][0]
    result["warnings"] = warnings
    return result


def run_backend(module, host, engine, backend, why, rules, kept, publication, warnings):
    """The allowlist in ufw or firewalld: plan in its words, then through the change engine."""
    params = module.params
    if params["confirm"]:
        with engine.locked("confirm"):
            engine.commit(params["confirm"], KIND, "confirm")
        return {"changed": True, "confirmed": True, "backend": backend.name}
    openings = input_openings(rules, kept)
    change = backend.plan(openings, params["policy"], params["persist"])
    warnings.extend(change["warnings"])
    listeners = discover().listeners
    link_proxies(listeners, publication.ports if publication else [])
    closing = closing_ports([item for item in listeners if not item["published"]], rules, kept,
                            established_connections())
    if change["changed"]:
        warnings.extend(closing_warnings(closing))
    if publication:
        warnings.extend(publication.notes)
        for item in closing_published(publication.ports, rules):
            warnings.append("%s is published to a container and not allowed, but the %s backend does not filter "
                            "forwarded traffic: it stays reachable (close_published works with the nftables "
                            "backend)" % (item["to"], backend.name))
    result = {"changed": change["changed"], "backend": backend.name, "backend_reason": why,
              "rules": change["after"], "commands": text_of(change["commands"]), "removed_rules": change["removed"],
              "management_ports": kept, "closing": closing, "persistence": {},
              "diff": {"before_header": backend.name, "after_header": backend.name, "before": change["before"],
                       "after": change["after"]}, "warnings": warnings}
    if nothing_to_apply(module, engine, result, warnings):
        return result
    return enforce(engine, backend, openings, params, result, warnings, KIND)


def run(module):
    params = module.params
    host = Host(module.run_command)
    nft = Nftables(host)
    engine = Engine(host)
    warnings = []
    if params["state"] == "absent":
        return remove_everywhere(module, host, engine, nft, params["backend"], warnings)
    name, why = choose(host, params["backend"])
    rules = parse_allowlist(params["allow"], name="allow")
    kept = management(rules, params, management_session(), warnings)
    # The table depends on the NAT rules only (the container networks); the listeners matter for the result.
    publication = read_published(host) if params["close_published"] else None
    if name != "nftables":
        if nft.live_table()[0] is not None and module.get_bin_path("nft"):
            raise FirewallError("%s is the firewall here (%s), but the Portcullis nftables table (table inet "
                                "portcullis, from backend: nftables) is still live and would drop what %s allows; "
                                "remove it first with state: absent, backend: nftables (nothing was changed)"
                                % (name, why, name))
        return run_backend(module, host, engine, backend_for(name, host), why, rules, kept, publication, warnings)
    check_nft(module)
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
    result = {"changed": current["table_changed"] or persisting, "backend": "nftables", "backend_reason": why,
              "rules": desired, "management_ports": kept, "persistence": persistence_summary(persistence),
              "closing": closing,
              "diff": {"before": current["live_text"] or "", "after": desired}, "warnings": warnings}
    if params["close_published"]:
        result.update(published=publication.ports, closing_published=closing_published(publication.ports, rules))
    if nothing_to_apply(module, engine, result, warnings):
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
