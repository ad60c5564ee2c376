# Copyright (c) Portcullis contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The stop_unlisted module on a fake host (real files under a temporary root, the rollback script run for real
with stand-ins for systemctl), and its action plugin: validation on the controller, confirmation over a new
connection."""

from __future__ import annotations

from types import SimpleNamespace
from unittest import mock

import pytest

from ansible_collections.portcullis.hardening.plugins.action import stop_unlisted as stop_unlisted_action
from ansible_collections.portcullis.hardening.plugins.module_utils._host import PortcullisError
from ansible_collections.portcullis.hardening.plugins.module_utils._specs import STOP_UNLISTED_SPEC
from ansible_collections.portcullis.hardening.plugins.module_utils._stop_unlisted import StopUnlistedError
from ansible_collections.portcullis.hardening.plugins.module_utils._transaction import (
    ARMED,
    HISTORY,
    ChangePending,
    Engine,
    RolledBack,
)
from ansible_collections.portcullis.hardening.plugins.modules import stop_unlisted
from ansible_collections.portcullis.hardening.plugins.plugin_utils._action import validated

from ..module_utils.fakehost import fake_host, host_file, read_host_file

OTHER = "ba9876543210"
SHOW_PREFIX = ["systemctl", "show"]


def process(pid, name, unit, uid=0):
    return {"pid": pid, "name": name, "cmdline": "/usr/bin/" + name, "unit": unit, "uid": uid,
            "exe": "/usr/bin/" + name}


SYSTEMD = process(1, "systemd", "init.scope")


def listener(port, address="0.0.0.0", processes=()):
    return {"protocol": "tcp", "family": "ipv6" if ":" in address else "ipv4", "address": address, "port": port,
            "inode": 20000 + port, "uid": 0, "user": "root", "processes": list(processes),
            "loopback": address in ("127.0.0.1", "::1"), "wildcard": address in ("0.0.0.0", "::")}


LIST_SOCKETS = ("[::]:22 ssh.socket ssh.service\n"
                "0.0.0.0:9999 x.socket x.service\n"
                "/run/dbus/system_bus_socket dbus.socket dbus.service\n")
UNITS = {
    "ssh.service": {"UnitFileState": "enabled"},
    "x.socket": {"UnitFileState": "enabled", "Triggers": "x.service"},
    "x.service": {"UnitFileState": "static", "TriggeredBy": "x.socket"},
    "web.service": {"UnitFileState": "enabled"},
    "idle.service": {"UnitFileState": "enabled", "ActiveState": "inactive"},
}


class Machine:
    """The fake host with services: `systemctl show` answers from `units`, and discover() sees a listener until
    a systemctl stop or disable --now of one of its units ran."""

    def __init__(self, tmp_path, listeners, units=None):
        self.root = tmp_path
        self.host, self.system = fake_host(tmp_path)
        self.units = UNITS if units is None else units
        self.listeners = listeners
        self.linger = set()  # units whose sockets stay open after they stop
        self.system.hook(SHOW_PREFIX, self.show)
        self.system.respond(stop_unlisted.LIST_SOCKETS, out=LIST_SOCKETS)
        self.engine = Engine(self.host, lock_wait=0.5, rollback_wait=2)

    def show(self, argv):
        unit = argv[2]
        if unit not in self.units:
            return 0, "Id=%s\nLoadState=not-found\nActiveState=inactive\n" % unit, ""
        props = dict({"Id": unit, "LoadState": "loaded", "ActiveState": "active", "UnitFileState": "enabled",
                      "TriggeredBy": ""}, **self.units[unit])
        return 0, "".join("%s=%s\n" % item for item in props.items()), ""

    def stopped_units(self):
        return [argv[-1] for argv in self.unit_commands() if argv[1] == "stop" or argv[2] == "--now"]

    def unit_commands(self):
        """The module's own systemctl stop / disable calls for the services (not the engine's timers)."""
        return [argv for argv in self.system.calls if argv[:2] in (["systemctl", "stop"], ["systemctl", "disable"])
                and not argv[-1].startswith("portcullis-")]

    def discover(self, _proc_root="/proc"):
        gone = set(self.stopped_units()) - self.linger
        return SimpleNamespace(listeners=[
            item for item in self.listeners
            if not ({process["unit"] for process in item["processes"]} | self.socket_units(item)) & gone])

    def socket_units(self, item):
        return {"x.socket"} if item["port"] == 9999 else set()

    def token(self):
        change = self.engine.armed()
        return change.token if change else None

    def history(self):
        return self.host.listdir(HISTORY) if self.host.isdir(HISTORY) else []


class FakeModule:
    """What run() uses of an AnsibleModule."""

    def __init__(self, system, check_mode=False, **args):
        self.params = validated(dict({"allowlist": [{"port": 22}]}, **args), STOP_UNLISTED_SPEC)
        self.check_mode = check_mode
        self.run_command = system


@pytest.fixture
def machine(tmp_path, monkeypatch):
    """A host with ssh (allowed), a socket-activated x on 9999, web.service on 8080 and a program in a login
    session on 5000; the module runs over ssh.service / session-3.scope."""
    items = [listener(22, "::", [SYSTEMD, process(700, "sshd", "ssh.service")]),
             listener(9999, processes=[SYSTEMD, process(1400, "x", "x.service")]),
             listener(8080, processes=[process(1100, "web", "web.service")]),
             listener(5000, processes=[process(4242, "python3", "session-3.scope", uid=1000)])]
    fake = Machine(tmp_path, items)
    monkeypatch.setattr(stop_unlisted, "Host", lambda _run: fake.host)
    monkeypatch.setattr(stop_unlisted, "discover", fake.discover)
    management = {"ssh.service", "session-3.scope"}
    monkeypatch.setattr(stop_unlisted, "management_units", lambda _proc_root="/proc": management)
    return fake


def run(machine, check_mode=False, **args):
    return stop_unlisted.run(FakeModule(machine.system, check_mode=check_mode, **args))


EXPECTED_STOPS = [["systemctl", "disable", "--now", "x.socket"], ["systemctl", "stop", "x.service"],
                  ["systemctl", "disable", "--now", "web.service"]]


# --- stopping -----------------------------------------------------------------------------------------------------

def test_stop_arms_a_services_change_and_stops_sockets_first(machine):
    result = run(machine)
    assert result["changed"] is True and result["confirmed"] is False
    assert result["stopped"] == [
        {"units": ["x.socket", "x.service"], "listeners": ["tcp 0.0.0.0:9999"],
         "before": {"x.socket": {"active": "active", "enabled": "enabled"},
                    "x.service": {"active": "active", "enabled": "static"}}},
        {"units": ["web.service"], "listeners": ["tcp 0.0.0.0:8080"],
         "before": {"web.service": {"active": "active", "enabled": "enabled"}}}]
    assert [item["listener"] for item in result["kept"]] == ["tcp 0.0.0.0:5000"]
    assert any("tcp 0.0.0.0:5000 is not allowed, but it runs in session-3.scope" in warning
               for warning in result["warnings"])
    assert result["still_listening"] == []
    assert machine.unit_commands() == EXPECTED_STOPS  # ssh and the session scope untouched

    change = machine.engine.armed()
    assert change.kind == "services" and change.token == result["rollback"]["token"]
    assert change.data == {"units": ["x.socket", "x.service", "web.service"]}
    assert change.manifest["description"] == "stop x.socket, x.service, web.service"
    assert result["rollback"] == {"token": change.token, "unit": change.timer, "timeout": 60,
                                  "expires_at": change.expires_at}
    assert list(machine.system.timers) == [change.timer]
    # The arming came before the first stop.
    arming = next(index for index, argv in enumerate(machine.system.calls) if argv[0] == "systemd-run")
    assert arming < machine.system.calls.index(EXPECTED_STOPS[0])
    assert result["diff"] == {
        "before_header": "systemd units", "after_header": "systemd units",
        "before": "x.socket: active, enabled\nx.service: active, static\nweb.service: active, enabled\n",
        "after": "x.socket: inactive, disabled\nx.service: inactive, static\nweb.service: inactive, disabled\n"}


def test_the_rollback_timer_enables_and_starts_the_stopped_units_again(machine):
    result = run(machine)
    rc, _out, err = machine.system.fire()
    assert rc == 0, err
    assert machine.system.script_commands() == [
        "systemctl enable x.socket", "systemctl enable web.service",
        "systemctl start x.socket", "systemctl start x.service", "systemctl start web.service"]
    assert machine.engine.armed() is None
    done = machine.engine.finished(result["rollback"]["token"])
    assert (done.kind, done.claimed_by, done.status) == ("services", "timer", 0)
    # A confirmation that comes too late says so.
    with pytest.raises(RolledBack) as error:
        run(machine, confirm=result["rollback"]["token"])
    assert "too late" in str(error.value) and error.value.details["rolled_back"] is True


def test_at_boot_the_rollback_queues_the_starts(machine):
    result = run(machine)
    script = host_file(machine.root, ARMED + "/rollback.sh")
    rc, _out, err = machine.system.run_script(["/bin/sh", script, "boot"])
    assert rc == 0, err
    assert machine.system.script_commands() == [
        "systemctl enable x.socket", "systemctl enable web.service", "systemctl start --no-block x.socket",
        "systemctl start --no-block x.service", "systemctl start --no-block web.service"]
    assert machine.engine.finished(result["rollback"]["token"]).claimed_by == "boot"


def test_an_inactive_unit_is_enabled_again_but_not_started(tmp_path, monkeypatch):
    fake = Machine(tmp_path, [listener(7000, processes=[process(1800, "idle", "idle.service")])])
    monkeypatch.setattr(stop_unlisted, "Host", lambda _run: fake.host)
    monkeypatch.setattr(stop_unlisted, "discover", fake.discover)
    monkeypatch.setattr(stop_unlisted, "management_units", lambda _proc_root="/proc": set())
    run(fake)
    fake.system.fire()
    assert fake.system.script_commands() == ["systemctl enable idle.service"]


def test_without_disable_the_units_are_only_stopped_and_only_started_again(machine):
    run(machine, disable=False)
    assert machine.unit_commands() == [["systemctl", "stop", "x.socket"], ["systemctl", "stop", "x.service"],
                                       ["systemctl", "stop", "web.service"]]
    machine.system.fire()
    assert machine.system.script_commands() == [
        "systemctl start x.socket", "systemctl start x.service", "systemctl start web.service"]


def test_the_commit_with_the_token_ends_in_the_history(machine):
    token = run(machine)["rollback"]["token"]
    assert run(machine, confirm=token) == {"changed": True, "confirmed": True}
    assert machine.engine.armed() is None
    done = machine.engine.finished(token)
    assert (done.kind, done.claimed_by) == ("services", "commit")
    assert machine.history() == [token]
    assert "portcullis-rollback-%s.timer" % token in machine.system.stopped
    assert machine.system.script_commands() == []  # nothing put back
    # A second confirmation (an answer lost on the way) is told it was committed already.
    with pytest.raises(PortcullisError) as error:
        run(machine, confirm=token)
    assert error.value.details.get("committed") is True


def test_a_protected_unit_given_by_the_task_is_not_stopped(machine):
    result = run(machine, protected_units=["web*"])
    assert machine.unit_commands() == EXPECTED_STOPS[:2]
    assert {"listener": "tcp 0.0.0.0:8080", "reason": "its unit web.service is protected (web*): reported, not "
            "stopped"} in result["kept"]


def test_the_management_connections_units_are_never_stopped(machine, monkeypatch):
    monkeypatch.setattr(stop_unlisted, "management_units", lambda _proc_root="/proc": {"web.service"})
    result = run(machine)
    assert ["systemctl", "disable", "--now", "web.service"] not in machine.system.calls
    assert "its unit web.service is protected (web.service)" in result["kept"][0]["reason"]


def test_nothing_unlisted_changes_nothing(machine):
    result = run(machine, allowlist=[{"port": 22}, {"port": 9999}, {"port": 8080}, {"port": 5000}])
    assert result["changed"] is False and result["stopped"] == [] and result["kept"] == []
    assert machine.unit_commands() == [] and machine.engine.armed() is None
    assert not any(argv[0] == "systemd-run" for argv in machine.system.calls)


def test_without_commit_confirm_the_units_stop_and_nothing_is_armed(machine):
    result = run(machine, confirm_timeout=0)
    assert result["changed"] is True and "rollback" not in result and "confirmed" not in result
    assert machine.unit_commands() == EXPECTED_STOPS
    assert machine.engine.armed() is None and machine.system.timers == {}


def test_sockets_still_open_after_the_units_stopped_are_reported(machine):
    machine.linger.add("web.service")
    result = run(machine, settle_timeout=0)
    assert result["still_listening"] == ["tcp 0.0.0.0:8080"]
    assert any(warning.startswith("still listening 0 s after their units stopped: tcp 0.0.0.0:8080")
               for warning in result["warnings"])


# --- refusing and failing -----------------------------------------------------------------------------------------

def arm_other(machine):
    machine.engine.arm("firewall", OTHER, "firewall table", [], 60)


def test_another_armed_change_refuses_and_stops_nothing(machine):
    arm_other(machine)
    with pytest.raises(ChangePending) as error:
        run(machine)
    assert "the firewall change %s" % OTHER in str(error.value) and "Nothing was changed" in str(error.value)
    assert error.value.details == {"rolled_back": False, "host_state": "unchanged: another change is pending"}
    assert machine.unit_commands() == []
    assert machine.engine.armed().token == OTHER  # the other change is left alone


def test_check_mode_while_another_change_is_armed_warns(machine):
    arm_other(machine)
    result = run(machine, check_mode=True)
    assert result["changed"] is True
    assert any(warning.startswith("a real run would refuse now: stop_unlisted: the firewall change %s" % OTHER)
               for warning in result["warnings"])
    assert machine.unit_commands() == [] and machine.engine.armed().token == OTHER


def test_a_failing_disable_rolls_back_at_once(machine):
    machine.system.respond(["systemctl", "disable", "--now", "web.service"], rc=1,
                           err="Failed to disable unit: Access denied")
    with pytest.raises(StopUnlistedError) as error:
        run(machine)
    message = str(error.value)
    assert message.startswith("stopping the unlisted listeners' units failed (systemctl disable --now web.service, "
                              "rc=1): Failed to disable unit: Access denied; an immediate rollback put the previous "
                              "configuration back")
    assert error.value.details == {"rolled_back": True, "host_state": "the previous configuration"}
    # The units stopped so far were started again, by the script, at once.
    assert machine.system.script_commands() == [
        "systemctl enable x.socket", "systemctl enable web.service",
        "systemctl start x.socket", "systemctl start x.service", "systemctl start web.service"]
    assert machine.engine.armed() is None
    (token,) = machine.history()
    assert machine.engine.finished(token).claimed_by == "now"
    assert machine.system.timers == {}


def test_a_failing_stop_without_commit_confirm_fails_without_claiming_a_rollback(machine):
    machine.system.respond(["systemctl", "stop", "x.service"], rc=5, err="Unit x.service not loaded.")
    with pytest.raises(StopUnlistedError) as error:
        run(machine, confirm_timeout=0)
    assert "systemctl stop x.service, rc=5" in str(error.value)
    assert "rolled_back" not in error.value.details
    assert machine.history() == [] and machine.system.script_commands() == []


@pytest.mark.parametrize("args, words", [
    ({"settle_timeout": 500}, ["settle_timeout", "500", "0-120"]),
    ({"settle_timeout": -1}, ["settle_timeout", "-1"]),
    ({"confirm_timeout": 5}, ["confirm_timeout", "5", "10-3600"]),
    ({"confirm_timeout": 4000}, ["confirm_timeout", "4000"]),
])
def test_the_module_refuses_bad_timeouts_before_it_looks(machine, args, words):
    with pytest.raises(StopUnlistedError) as error:
        run(machine, **args)
    for word in words:
        assert word in str(error.value)
    assert machine.system.calls == []


# --- check mode ---------------------------------------------------------------------------------------------------

def test_check_mode_lists_the_units_and_changes_nothing(machine):
    before = sorted(p.name for p in machine.root.iterdir())
    result = run(machine, check_mode=True)
    assert result["changed"] is True
    assert [group["units"] for group in result["stopped"]] == [["x.socket", "x.service"], ["web.service"]]
    assert "x.socket: inactive, disabled" in result["diff"]["after"]
    assert machine.unit_commands() == []
    assert not any(argv[0] == "systemd-run" for argv in machine.system.calls)
    assert machine.engine.armed() is None and read_host_file(machine.root, ARMED + "/manifest.json") is None
    assert sorted(p.name for p in machine.root.iterdir()) == before  # not even the lock or the boot unit
    assert "rollback" not in result


# --- the action plugin --------------------------------------------------------------------------------------------

class Connection:
    transport = "ssh"

    def __init__(self):
        self.options = {"port": 22, "host": "192.0.2.10", "remote_user": "root", "ssh_args": "-C"}
        self._shell = SimpleNamespace(tmpdir=None)

    def get_option(self, name):
        return self.options.get(name)

    def set_option(self, name, value):
        self.options[name] = value

    def reset(self):
        pass

    def close(self):
        pass


TASK_VARS = {"ansible_host": "192.0.2.10", "inventory_hostname": "web1"}


def make_action(args, check_mode=False):
    task = SimpleNamespace(args=dict(args), async_val=0, check_mode=check_mode,
                           action=stop_unlisted_action.ActionModule.MODULE)
    action = stop_unlisted_action.ActionModule(task, Connection(), SimpleNamespace(check_mode=check_mode), None,
                                               None, None)
    action._execute_module = mock.Mock(side_effect=AssertionError("no module may run"))
    return action


@pytest.mark.parametrize("args, words", [
    ({"confirm": "0123456789ab"}, ["confirm", "set by the stop_unlisted action plugin"]),
    ({"confirm_timeout": 5}, ["confirm_timeout", "5", "10-3600"]),
    ({"settle_timeout": 500}, ["settle_timeout", "500", "0-120"]),
    ({"protected_units": ["nginx.service", "postgres ql*"]}, ["protected_units[1]", "'postgres ql*'"]),
    ({"protected_units": [""]}, ["protected_units[0]", "''"]),
    ({"allowlist": [{"port": 22}, {"port": 70000}]}, ["allowlist[1]", "port", "70000"]),
    ({"allowlist": [{"port": 22, "protocol": "sctp"}]}, ["allowlist[0]", "protocol", "sctp"]),
    ({"disable": "perhaps"}, ["disable", "perhaps"]),
    ({"settle_timeout": "soon"}, ["settle_timeout", "soon"]),
])
def test_the_action_plugin_refuses_bad_input_before_any_module_runs(args, words):
    action = make_action(dict({"allowlist": [{"port": 22}]}, **args))
    result = action.run(task_vars=TASK_VARS)
    assert result["failed"] is True
    for word in words:
        assert word in result["msg"], result["msg"]
    action._execute_module.assert_not_called()


def test_the_action_plugin_accepts_good_input_and_checks_nothing_more_in_check_mode():
    action = make_action({"allowlist": [{"port": 22}], "protected_units": ["postgresql*"], "confirm_timeout": 0,
                          "settle_timeout": 120}, check_mode=True)
    action._execute_module = mock.Mock(return_value={"changed": True, "stopped": [], "kept": []})
    result = action.run(task_vars=TASK_VARS)
    assert not result.get("failed") and result["changed"] is True
    assert action._execute_module.call_count == 1
    assert "confirm" not in action._execute_module.call_args.kwargs["module_args"]


def test_the_action_plugin_stops_then_confirms_over_a_new_connection_end_to_end(machine):
    """_execute_module runs the module for real on the fake host: the stop arms, the confirmation commits."""
    action = make_action({"allowlist": [{"port": 22}], "confirm_timeout": 30})

    def execute(module_name, module_args, task_vars):
        assert module_name == "portcullis.hardening.stop_unlisted"
        try:
            return stop_unlisted.run(FakeModule(machine.system, **module_args))
        except PortcullisError as exc:
            return dict(exc.details, failed=True, msg=str(exc))
    action._execute_module = mock.Mock(side_effect=execute)
    result = action.run(task_vars=TASK_VARS)
    assert not result.get("failed"), result
    assert result["confirmed"] is True and "rollback" not in result
    calls = [call.kwargs["module_args"] for call in action._execute_module.call_args_list]
    assert len(calls) == 2 and "confirm" not in calls[0]
    (token,) = machine.history()
    assert calls[1]["confirm"] == token
    assert machine.engine.finished(token).claimed_by == "commit"
    assert machine.unit_commands() == EXPECTED_STOPS
    assert action._connect_timeout == 10


def test_the_action_plugin_reports_a_confirmation_the_host_answered_rolled_back(machine):
    action = make_action({"allowlist": [{"port": 22}]})
    answers = [None, {"failed": True, "rolled_back": True, "host_state": "the previous configuration",
                      "msg": "confirm: too late: the services change ... its rollback timer put the previous "
                             "configuration back"}]

    def execute(module_name, module_args, task_vars):
        answer = answers.pop(0)
        return answer if answer else stop_unlisted.run(FakeModule(machine.system, **module_args))
    action._execute_module = mock.Mock(side_effect=execute)
    result = action.run(task_vars=TASK_VARS)
    assert result["failed"] is True and result["confirmed"] is False and result["rolled_back"] is True
    assert result["msg"].startswith("The units were stopped, but the confirmation over a new connection failed: "
                                    "confirm: too late")
