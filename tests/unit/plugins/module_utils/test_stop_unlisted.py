# Copyright (c) Portcullis contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""stop_unlisted's planning: which listeners count, which unit holds each one, what is never stopped, and the
commands that stop the units and put them back."""

from __future__ import annotations

import os

import pytest

from ansible_collections.portcullis.hardening.plugins.module_utils._allowlist import parse_allowlist
from ansible_collections.portcullis.hardening.plugins.module_utils._specs import ALWAYS_PROTECTED_UNITS
from ansible_collections.portcullis.hardening.plugins.module_utils._stop_unlisted import (
    Plan,
    listener_text,
    management_units,
    parse_list_sockets,
    plan_stops,
    protected_by,
    socket_units_for,
    state_text,
    stop_commands,
    undo_commands,
    unlisted,
)

LIST_SOCKETS = """\
/run/dbus/system_bus_socket          dbus.socket                     dbus.service
/run/systemd/journal/stdout          systemd-journald.socket         systemd-journald.service
[::]:22                              ssh.socket                      ssh.service
0.0.0.0:9999                         x.socket                        x.service
[::]:9999                            x.socket                        x.service
kobject-uevent 1                     systemd-udevd-kernel.socket     systemd-udevd.service
127.0.0.1:6379                       r.socket                        -
/run/snapd.socket                    snapd.socket                    snapd.service
/run/lvm/lvmpolld.socket             lvm2-lvmpolld.socket            lvm2-lvmpolld.service
"""


def process(pid, name, unit, uid=0):
    return {"pid": pid, "name": name, "cmdline": "/usr/bin/%s --serve" % name, "unit": unit, "uid": uid,
            "exe": "/usr/bin/" + name}


SYSTEMD = process(1, "systemd", "init.scope")


def listener(port, address="0.0.0.0", protocol="tcp", processes=(), inode=None):
    family = "ipv6" if ":" in address else "ipv4"
    loopback = address in ("127.0.0.1", "::1")
    return {"protocol": protocol, "family": family, "address": address, "port": port,
            "inode": inode or 10000 + port, "uid": 0, "user": "root", "processes": list(processes),
            "loopback": loopback, "wildcard": address in ("0.0.0.0", "::")}


# --- systemctl list-sockets ---------------------------------------------------------------------------------------

def test_list_sockets_are_parsed_with_listen_columns_that_hold_spaces():
    sockets = parse_list_sockets(LIST_SOCKETS)
    assert sockets == [
        ("/run/dbus/system_bus_socket", "dbus.socket", ["dbus.service"]),
        ("/run/systemd/journal/stdout", "systemd-journald.socket", ["systemd-journald.service"]),
        ("[::]:22", "ssh.socket", ["ssh.service"]),
        ("0.0.0.0:9999", "x.socket", ["x.service"]),
        ("[::]:9999", "x.socket", ["x.service"]),
        ("kobject-uevent 1", "systemd-udevd-kernel.socket", ["systemd-udevd.service"]),
        ("127.0.0.1:6379", "r.socket", ["-"]),
        # A LISTEN path that itself ends in .socket is not the unit (a unit name holds no "/").
        ("/run/snapd.socket", "snapd.socket", ["snapd.service"]),
        ("/run/lvm/lvmpolld.socket", "lvm2-lvmpolld.socket", ["lvm2-lvmpolld.service"]),
    ]


def test_list_sockets_without_a_socket_unit_on_a_line_give_nothing():
    assert parse_list_sockets("") == []
    assert parse_list_sockets("\n   \n0 sockets listed.\n") == []


@pytest.mark.parametrize("item, units", [
    (listener(22, "::"), ["ssh.socket"]),
    (listener(9999), ["x.socket"]),
    (listener(9999, "::"), ["x.socket"]),
    (listener(6379, "127.0.0.1"), ["r.socket"]),
    (listener(22), []),  # 0.0.0.0:22 is not [::]:22
    (listener(6380, "127.0.0.1"), []),
])
def test_socket_units_are_found_by_address_and_port(item, units):
    assert socket_units_for(item, parse_list_sockets(LIST_SOCKETS)) == units


# --- which listeners: the audit's findings ----------------------------------------------------------------------

def test_unlisted_takes_exactly_the_audits_unexpected_listener_findings():
    rules = parse_allowlist([{"port": 22}, {"port": 80, "bind": "loopback"}, {"port": 443, "process": "nginx"}])
    items = [
        listener(22, processes=[process(700, "sshd", "ssh.service")]),  # allowed
        listener(80, processes=[process(800, "httpd", "httpd.service")]),  # wider than allowed: not unlisted
        listener(443, processes=[process(900, "caddy", "caddy.service")]),  # unexpected process: not unlisted
        listener(9999, processes=[process(1000, "x", "x.service")]),  # wildcard, no entry: high
        listener(8080, "192.0.2.1", processes=[process(1100, "y", "y.service")]),  # one address: medium
        listener(6379, "127.0.0.1", processes=[process(1200, "redis", "redis.service")]),  # loopback: info
        listener(5353, protocol="udp", processes=[process(1300, "avahi", "avahi-daemon.service")]),
    ]
    picked = unlisted(items, rules)
    assert [(item["port"], found["kind"], found["severity"]) for item, found in picked] == [
        (9999, "unexpected_listener", "high"), (8080, "unexpected_listener", "medium"),
        (5353, "unexpected_listener", "high")]
    assert all(item is items[index] for (item, _found), index in zip(picked, (3, 4, 6)))
    assert "tcp 0.0.0.0:9999 (x, x.service)" in picked[0][1]["message"]

    with_loopback = unlisted(items, rules, include_loopback=True)
    assert [(item["port"], found["severity"]) for item, found in with_loopback] == [
        (9999, "high"), (8080, "medium"), (6379, "low"), (5353, "high")]


def test_unlisted_is_empty_when_the_allowlist_allows_everything():
    rules = parse_allowlist([{"port": "1-65535"}, {"port": "1-65535", "protocol": "udp"}])
    assert unlisted([listener(9999), listener(6379, "127.0.0.1"), listener(53, protocol="udp")], rules, True) == []


@pytest.mark.parametrize("name", ["docker-proxy", "conmon", "rootlessport"])
def test_unlisted_never_takes_a_userland_proxy_of_a_published_port(name):
    proxy = dict(process(1400, name, "docker.service"), cmdline="/usr/bin/%s -proto tcp -host-ip 0.0.0.0 "
                 "-host-port 8081 -container-ip 172.17.0.2 -container-port 80" % name)
    items = [listener(8081, processes=[proxy]),  # no `published` key: unlisted() goes by the process name alone
             dict(listener(8081, "::", processes=[proxy]), published=True),
             listener(9999, processes=[process(1000, "x", "x.service")])]
    assert [(item["port"], item["address"]) for item, _found in unlisted(items, [])] == [(9999, "0.0.0.0")]


def test_listener_text_brackets_ipv6():
    assert listener_text(listener(22, "::")) == "tcp [::]:22"
    assert listener_text(listener(53, "192.0.2.1", protocol="udp")) == "udp 192.0.2.1:53"


# --- protected units ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("unit, patterns, pattern", [
    ("ssh.service", ALWAYS_PROTECTED_UNITS, "ssh.service"),
    ("sshd@3-192.0.2.1:22-192.0.2.10:50000.service", ALWAYS_PROTECTED_UNITS, "sshd@*.service"),
    ("systemd-resolved.service", ALWAYS_PROTECTED_UNITS, "systemd-*"),
    ("portcullis-rollback-0123456789ab.service", ["x.service", "portcullis-*"], "portcullis-*"),
    ("postgresql@15-main.service", ["nginx.service", "postgresql*", "postgresql@15-main.service"], "postgresql*"),
    ("nginx.service", ["postgresql*", "nginx.service"], "nginx.service"),
    ("x.service", ALWAYS_PROTECTED_UNITS, None),
    ("SSH.service", ALWAYS_PROTECTED_UNITS, None),  # case matters, as in unit names
    ("nginx.socket", ["nginx.service"], None),
    ("redis.service", ["redis?service"], "redis?service"),
    ("redis.service", [], None),
])
def test_protected_by_names_the_first_pattern_that_matches(unit, patterns, pattern):
    assert protected_by(unit, patterns) == pattern


@pytest.mark.parametrize("unit", ["ssh.service", "ssh.socket", "sshd.service", "dbus.service", "dbus.socket",
                                  "systemd-networkd.service", "portcullis-rollback.service"])
def test_the_built_in_patterns_protect_the_management_path(unit):
    assert protected_by(unit, ALWAYS_PROTECTED_UNITS) is not None


# --- the plan, with systemctl show answered by a fake host --------------------------------------------------------

class ShowHost:
    """What plan_stops uses of a Host: run(), answering `systemctl show UNIT --property=...` from `units`."""

    def __init__(self, units):
        self.units = units
        self.calls = []

    def run(self, argv):
        self.calls.append(list(argv))
        assert argv[:2] == ["systemctl", "show"], argv
        assert all(arg.startswith("--property=") for arg in argv[3:]), argv
        unit = argv[2]
        if unit not in self.units:
            return 0, "Id=%s\nLoadState=not-found\nActiveState=inactive\nUnitFileState=\nTriggeredBy=\n" % unit, ""
        props = dict({"Id": unit, "LoadState": "loaded", "ActiveState": "active", "UnitFileState": "enabled",
                      "TriggeredBy": ""}, **self.units[unit])
        return 0, "".join("%s=%s\n" % item for item in props.items()), ""


PROTECTED = tuple(ALWAYS_PROTECTED_UNITS)


def plan_for(items, units, rules=(), protected=PROTECTED, sockets=LIST_SOCKETS, include_loopback=False):
    host = ShowHost(units)
    targets = unlisted(items, parse_allowlist(list(rules)), include_loopback)
    return plan_stops(host, targets, parse_list_sockets(sockets), protected), host


def test_a_plain_service_is_planned_with_its_state():
    plan, host = plan_for([listener(8080, processes=[process(1100, "web", "web.service")])],
                          {"web.service": {"UnitFileState": "enabled"}})
    assert plan.groups == [{"units": ["web.service"], "listeners": ["tcp 0.0.0.0:8080"],
                            "reasons": [plan.groups[0]["reasons"][0]]}]
    assert "tcp 0.0.0.0:8080 (web, web.service) listens" in plan.groups[0]["reasons"][0]
    assert plan.kept == []
    assert plan.states == {"web.service": {"active": "active", "enabled": "enabled"}}
    assert plan.units == ["web.service"]
    assert plan.summary() == [{"units": ["web.service"], "listeners": ["tcp 0.0.0.0:8080"],
                               "before": {"web.service": {"active": "active", "enabled": "enabled"}}}]
    assert host.calls == [["systemctl", "show", "web.service", "--property=Id", "--property=LoadState",
                           "--property=ActiveState", "--property=UnitFileState", "--property=TriggeredBy",
                           "--property=Triggers"]]


def test_a_socket_activated_service_stops_its_socket_first():
    # systemd (pid 1, init.scope) holds the socket; the running service has it too and is TriggeredBy the socket.
    items = [listener(9999, processes=[SYSTEMD, process(1400, "x", "x.service")]),
             listener(9999, "::", processes=[SYSTEMD, process(1400, "x", "x.service")])]
    plan, _host = plan_for(items, {"x.socket": {"UnitFileState": "enabled", "Triggers": "x.service"},
                                   "x.service": {"UnitFileState": "static", "TriggeredBy": "x.socket"}})
    assert [group["units"] for group in plan.groups] == [["x.socket", "x.service"]]  # one group for both listeners
    assert plan.groups[0]["listeners"] == ["tcp 0.0.0.0:9999", "tcp [::]:9999"]
    assert len(plan.groups[0]["reasons"]) == 2
    assert plan.states == {"x.socket": {"active": "active", "enabled": "enabled"},
                           "x.service": {"active": "active", "enabled": "static"}}
    assert stop_commands(plan, True) == [["systemctl", "disable", "--now", "x.socket"],
                                         ["systemctl", "stop", "x.service"]]


def test_a_socket_held_by_systemd_alone_is_its_socket_unit():
    plan, _host = plan_for([listener(9999, processes=[SYSTEMD])], {"x.socket": {}})
    assert plan.units == ["x.socket"] and plan.kept == []


def test_a_sockets_idle_service_is_disabled_too_so_that_it_does_not_start_the_socket_at_boot():
    # Only systemd holds the socket (the service exited when idle), but the enabled service would start at boot
    # and pull its socket in again.
    plan, _host = plan_for([listener(9999, processes=[SYSTEMD])], {
        "x.socket": {"Triggers": "x.service"},
        "x.service": {"ActiveState": "inactive", "UnitFileState": "enabled", "TriggeredBy": "x.socket"}})
    assert plan.units == ["x.socket", "x.service"]
    assert stop_commands(plan, True) == [["systemctl", "disable", "--now", "x.socket"],
                                         ["systemctl", "disable", "--now", "x.service"]]
    live, _boot = undo_commands(plan, True)
    assert live == [["systemctl", "enable", "x.socket"], ["systemctl", "enable", "x.service"],
                    ["systemctl", "start", "x.socket"]]  # the service was not running: it is not started


def test_a_per_connection_sockets_template_and_an_unknown_service_are_not_stopped():
    plan, host = plan_for([listener(9999, processes=[SYSTEMD])], {"x.socket": {"Triggers": "x@.service gone.service"}})
    assert plan.units == ["x.socket"]
    assert [call[2] for call in host.calls] == ["x.socket", "gone.service"]


def test_a_protected_service_behind_a_socket_keeps_the_socket():
    plan, _host = plan_for([listener(22, "::", processes=[SYSTEMD])],
                           {"ssh.socket": {"Triggers": "ssh.service"}, "ssh.service": {}},
                           protected=["ssh.service"])
    assert plan.groups == []
    assert plan.kept == [{"listener": "tcp [::]:22",
                          "reason": "its unit ssh.service is protected (ssh.service): reported, not stopped"}]


def test_a_service_triggered_by_its_socket_brings_the_socket_even_when_systemd_is_not_seen():
    # Without become only the service's own process may be readable: TriggeredBy still names the socket.
    plan, _host = plan_for([listener(9999, processes=[process(1400, "x", "x.service")])],
                           {"x.socket": {}, "x.service": {"TriggeredBy": "x.socket other.timer"}})
    assert plan.units == ["x.socket", "x.service"]


def test_two_listeners_of_one_service_are_grouped_once():
    web = process(1100, "web", "web.service")
    items = [listener(8080, processes=[web]), listener(8443, processes=[web]),
             listener(9000, processes=[process(1500, "metrics", "metrics.service")])]
    plan, host = plan_for(items, {"web.service": {}, "metrics.service": {"UnitFileState": "static"}})
    assert [(group["units"], group["listeners"]) for group in plan.groups] == [
        (["web.service"], ["tcp 0.0.0.0:8080", "tcp 0.0.0.0:8443"]),
        (["metrics.service"], ["tcp 0.0.0.0:9000"])]
    assert plan.units == ["web.service", "metrics.service"]
    assert sum(1 for call in host.calls if call[2] == "web.service") == 1  # each unit is read once


def test_a_protected_unit_is_kept_naming_the_pattern():
    items = [listener(5432, processes=[process(1600, "postgres", "postgresql@15-main.service")]),
             listener(53, processes=[process(1700, "systemd-resolve", "systemd-resolved.service")])]
    plan, _host = plan_for(items, {"postgresql@15-main.service": {}, "systemd-resolved.service": {}},
                           protected=PROTECTED + ("postgresql*",))
    assert plan.groups == [] and plan.states == {}
    assert plan.kept == [  # in the order of the listeners
        {"listener": "tcp 0.0.0.0:5432", "reason": "its unit postgresql@15-main.service is protected "
                                                   "(postgresql*): reported, not stopped"},
        {"listener": "tcp 0.0.0.0:53", "reason": "its unit systemd-resolved.service is protected (systemd-*): "
                                                 "reported, not stopped"}]


def test_a_protected_socket_keeps_its_service_too():
    items = [listener(9999, processes=[SYSTEMD, process(1400, "x", "x.service")])]
    plan, _host = plan_for(items, {"x.socket": {}, "x.service": {"TriggeredBy": "x.socket"}},
                           protected=PROTECTED + ("x.socket",))
    assert plan.groups == []
    assert plan.kept == [{"listener": "tcp 0.0.0.0:9999",
                          "reason": "its unit x.socket is protected (x.socket): reported, not stopped"}]


def test_a_program_in_a_login_session_is_reported_never_killed():
    plan, host = plan_for([listener(5000, processes=[process(4242, "python3", "session-3.scope", uid=1000)])], {})
    assert plan.groups == [] and host.calls == []  # a scope is not even looked up
    assert plan.kept == [{"listener": "tcp 0.0.0.0:5000", "reason": (
        "it runs in session-3.scope, not in a service or socket unit of the system (a program started by hand or "
        "in a login session): reported, never killed")}]


def test_a_process_outside_systemd_is_reported_never_killed():
    plan, _host = plan_for([listener(5000, processes=[process(4242, "nc", None)])], {})
    assert plan.groups == []
    assert "it runs in no systemd unit" in plan.kept[0]["reason"] and "never killed" in plan.kept[0]["reason"]


def test_a_listener_without_readable_processes_is_kept():
    plan, host = plan_for([listener(7777)], {})
    assert plan.groups == [] and host.calls == []
    assert plan.kept == [{"listener": "tcp 0.0.0.0:7777", "reason": (
        "no process holds it that could be read (a kernel socket, or run with become to see its owner): "
        "reported, not stopped")}]


def test_a_users_unit_that_the_system_manager_does_not_know_is_kept():
    # /user.slice/user-1000.slice/user@1000.service/app.slice/devserver.service: not a unit of the system manager.
    plan, host = plan_for([listener(3000, processes=[process(5000, "node", "devserver.service", uid=1000)])], {})
    assert [call[2] for call in host.calls] == ["devserver.service"]
    assert plan.groups == []
    assert plan.kept[0]["listener"] == "tcp 0.0.0.0:3000"
    assert "it runs in devserver.service, not in a service or socket unit of the system" in plan.kept[0]["reason"]


def test_a_failing_systemctl_show_keeps_the_listener():
    class Failing(ShowHost):
        def run(self, argv):
            self.calls.append(list(argv))
            return 1, "", "System has not been booted with systemd as init system (PID 1). Can't operate."
    host = Failing({})
    targets = unlisted([listener(8080, processes=[process(1100, "web", "web.service")])], [])
    plan = plan_stops(host, targets, [], PROTECTED)
    assert plan.groups == [] and len(plan.kept) == 1


def test_loopback_listeners_are_planned_only_with_include_loopback():
    items = [listener(6379, "127.0.0.1", processes=[SYSTEMD])]
    plan, _host = plan_for(items, {"r.socket": {}})
    assert plan.groups == [] and plan.kept == []  # not a finding that counts: not even reported
    plan, _host = plan_for(items, {"r.socket": {}}, include_loopback=True)
    assert plan.units == ["r.socket"]


# --- commands and states ------------------------------------------------------------------------------------------

def a_plan(states):
    plan = Plan()
    plan.groups = [{"units": list(states), "listeners": ["tcp 0.0.0.0:9999"], "reasons": ["no entry"]}]
    plan.states = {unit: {"active": active, "enabled": enabled} for unit, (active, enabled) in states.items()}
    return plan


MIXED = {"x.socket": ("active", "enabled"), "x.service": ("active", "static"),
         "idle.service": ("inactive", "enabled"), "rt.service": ("activating", "enabled-runtime")}


def test_stop_commands_disable_what_is_enabled_and_stop_the_rest():
    assert stop_commands(a_plan(MIXED), True) == [
        ["systemctl", "disable", "--now", "x.socket"], ["systemctl", "stop", "x.service"],
        ["systemctl", "disable", "--now", "idle.service"], ["systemctl", "stop", "rt.service"]]


def test_stop_commands_without_disable_only_stop():
    assert stop_commands(a_plan(MIXED), False) == [
        ["systemctl", "stop", "x.socket"], ["systemctl", "stop", "x.service"],
        ["systemctl", "stop", "idle.service"], ["systemctl", "stop", "rt.service"]]


def test_undo_enables_again_then_starts_what_was_active():
    live, boot = undo_commands(a_plan(MIXED), True)
    assert live == [["systemctl", "enable", "x.socket"], ["systemctl", "enable", "idle.service"],
                    ["systemctl", "start", "x.socket"], ["systemctl", "start", "x.service"],
                    ["systemctl", "start", "rt.service"]]
    assert boot == [["systemctl", "enable", "x.socket"], ["systemctl", "enable", "idle.service"],
                    ["systemctl", "start", "--no-block", "x.socket"], ["systemctl", "start", "--no-block", "x.service"],
                    ["systemctl", "start", "--no-block", "rt.service"]]


def test_undo_without_disable_only_starts():
    live, boot = undo_commands(a_plan(MIXED), False)
    assert live == [["systemctl", "start", "x.socket"], ["systemctl", "start", "x.service"],
                    ["systemctl", "start", "rt.service"]]
    assert all(argv[1] == "start" and argv[2] == "--no-block" for argv in boot) and len(boot) == 3


def test_state_text_before_and_after():
    plan = a_plan(MIXED)
    assert state_text(plan) == ("x.socket: active, enabled\nx.service: active, static\n"
                                "idle.service: inactive, enabled\nrt.service: activating, enabled-runtime\n")
    assert state_text(plan, after=True) == ("x.socket: inactive, disabled\nx.service: inactive, static\n"
                                            "idle.service: inactive, disabled\nrt.service: inactive, enabled-runtime\n")
    assert state_text(plan, after=True, disable=False) == (
        "x.socket: inactive, enabled\nx.service: inactive, static\nidle.service: inactive, enabled\n"
        "rt.service: inactive, enabled-runtime\n")
    assert state_text(Plan()) == "" and state_text(Plan(), after=True) == ""


# --- management units: this process's ancestors ------------------------------------------------------------------

def proc_entry(root, pid, name, ppid, cgroup):
    base = os.path.join(str(root), str(pid))
    os.makedirs(base)
    with open(os.path.join(base, "stat"), "w") as stream:
        stream.write("%d (%s) S %d %d %d 0 -1 4194560 1234 0 0 0 5 3 0 0 20 0 1 0 100 10000000 2000\n"
                     % (pid, name, ppid, pid, pid))
    with open(os.path.join(base, "cgroup"), "w") as stream:
        stream.write(cgroup)


def test_management_units_are_the_units_of_every_ancestor(tmp_path):
    proc_entry(tmp_path, 900, "sshd", 1, "0::/system.slice/ssh.service\n")
    proc_entry(tmp_path, 4000, "sshd", 900, "0::/user.slice/user-1000.slice/session-3.scope\n")
    proc_entry(tmp_path, 4001, "sshd: admin@pts/0", 4000, "0::/user.slice/user-1000.slice/session-3.scope\n")
    proc_entry(tmp_path, 4100, "sudo (x) y", 4001, "0::/user.slice/user-1000.slice/session-3.scope\n")
    proc_entry(tmp_path, 4200, "python3", 4100, "0::/user.slice/user-1000.slice/session-3.scope\n")
    proc_entry(tmp_path, 1, "systemd", 0, "0::/init.scope\n")
    proc_entry(tmp_path, 5000, "other", 1, "0::/system.slice/other.service\n")  # not an ancestor
    assert management_units(str(tmp_path), pid=4200) == {"session-3.scope", "ssh.service"}


def test_management_units_on_cgroup_v1_and_with_a_vanished_parent(tmp_path):
    proc_entry(tmp_path, 900, "sshd", 1, "12:pids:/system.slice/sshd.service\n1:name=systemd:/system.slice/"
                                         "sshd.service\n")
    proc_entry(tmp_path, 4200, "python3", 4100, "0::/user.slice/user-0.slice/session-7.scope\n")  # 4100 is gone
    assert management_units(str(tmp_path), pid=900) == {"sshd.service"}
    assert management_units(str(tmp_path), pid=4200) == {"session-7.scope"}
    assert management_units(str(tmp_path), pid=31337) == set()


def test_management_units_stop_on_a_parent_loop(tmp_path):
    proc_entry(tmp_path, 10, "a", 11, "0::/system.slice/a.service\n")
    proc_entry(tmp_path, 11, "b", 10, "0::/system.slice/b.service\n")
    assert management_units(str(tmp_path), pid=10) == {"a.service", "b.service"}
