# Copyright (c) Portcullis contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The firewall's host side on the change engine: plan, apply under an armed rollback, confirm (persist while armed,
then commit), persistence where nftables.service loads it, state=absent, check mode, the management port guard.

Real files under a temporary root and the rollback script run for real (fakehost.py), with the nft model: the
live table is what the last `nft -f` created, whether the module or the rollback script loaded it.
"""

from __future__ import annotations

import ipaddress
import json
import os

import pytest

from ansible_collections.portcullis.hardening.plugins.module_utils._allowlist import parse_allowlist
from ansible_collections.portcullis.hardening.plugins.module_utils._backends import detect
from ansible_collections.portcullis.hardening.plugins.module_utils._firewall import (
    NEW_CONF,
    PERSIST_FILE,
    STATE_FILE,
    FirewallError,
    Nftables,
    closing_ports,
    closing_published,
    closing_warnings,
    exec_start_config,
    persisted_paths,
    persistence_plan,
    plan,
    remove,
    sha256,
)
from ansible_collections.portcullis.hardening.plugins.module_utils._nftables import (
    INCLUDE_MARKER,
    apply_script,
    normalise_listing,
    removal_script,
    render_table,
)
from ansible_collections.portcullis.hardening.plugins.module_utils._session import established_connections
from ansible_collections.portcullis.hardening.plugins.module_utils._specs import FIREWALL_SPEC
from ansible_collections.portcullis.hardening.plugins.module_utils._systemd import calendar_time, parse_show
from ansible_collections.portcullis.hardening.plugins.module_utils._transaction import (
    ARMED,
    BOOT_UNIT_PATH,
    HISTORY,
    RUN_DIR,
    STATE_DIR,
    ChangePending,
    Engine,
    RolledBack,
    TransactionError,
)
from ansible_collections.portcullis.hardening.plugins.modules import firewall as firewall_module
from ansible_collections.portcullis.hardening.plugins.modules.firewall import apply, confirm, management
from ansible_collections.portcullis.hardening.plugins.plugin_utils._action import validated

from .fakehost import NFT_JSON_LIST, NFT_LIST, fake_host, host_file, read_host_file, tree, write_host_file
from .test_published import RULESET, SAVE_V4, SAVE_V6, WEB_ID, docker_config, fixture as published_fixture
from .test_session import ESTABLISHED, LISTEN, proc_net

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "nft")
TOKEN = "0123456789ab"
SERVICE = "nftables.service"


def unit(config_argv):
    """`systemctl show nftables.service --property=LoadState --property=ExecStart` of a unit loading `config_argv`."""
    return ("LoadState=loaded\nExecStart={ path=/usr/sbin/nft ; argv[]=%s ; ignore_errors=no ; start_time=[n/a] ; "
            "stop_time=[n/a] ; pid=0 ; code=(null) ; status=0/0 }\n" % config_argv)


DEBIAN_UNIT = unit("/usr/sbin/nft -f /etc/nftables.conf")
RHEL_UNIT = unit("/sbin/nft -f /etc/sysconfig/nftables.conf")
DEBIAN_CONF = "#!/usr/sbin/nft -f\n\nflush ruleset\n\ntable inet filter {\n}\n"
RHEL_CONF = "# Uncomment the include statement here to load the default config sample.\n"
DESIRED = render_table(parse_allowlist([{"port": 8080}]), "drop", [22], False)
# What the module renders by default (close_published): the same input chain, and the forward and published chains,
# here without container networks (the fake host's nft lists an empty ruleset).
DESIRED_CLOSING = render_table(parse_allowlist([{"port": 8080}]), "drop", [22], False,
                               published={"ipv4": [], "ipv6": []})
OTHER = render_table(parse_allowlist([{"port": 8081}]), "drop", [22], False)
# What the engine leaves on a host whatever happens: its state, its lock, its boot unit.
ENGINE_PATHS = (STATE_DIR, RUN_DIR, BOOT_UNIT_PATH)


def fixture(name):
    with open(os.path.join(FIXTURES, name)) as handle:
        return handle.read()


class Firewall:
    """A host with nftables installed as `unit_text` says, `conf` at the path it loads, the live table `table`."""

    def __init__(self, root, unit_text=DEBIAN_UNIT, conf=DEBIAN_CONF, table=None, enabled=False):
        self.root = root
        self.host, self.system = fake_host(root)
        self.system.with_nft(table).track_enabled(*([SERVICE] if enabled else []))
        self.system.respond(["systemctl", "show", SERVICE], out=unit_text)
        self.config = exec_start_config(parse_show(unit_text))
        if conf is not None and self.config:
            write_host_file(root, self.config, conf)
        self.nft = Nftables(self.host)
        self.engine = Engine(self.host, lock_wait=1, rollback_wait=2)

    def apply(self, desired=DESIRED, **overrides):
        warnings = []
        result = apply(self.engine, self.nft, params(**overrides), desired, {}, warnings)
        return result, warnings

    def confirm(self, token, desired=DESIRED, **overrides):
        return confirm(self.engine, self.nft, params(confirm=token, **overrides), desired)

    def read(self, path):
        return read_host_file(self.root, path)

    def state(self):
        text = self.read(STATE_FILE)
        return json.loads(text) if text else None

    def script_log(self):
        return self.system.script_commands()


def params(**overrides):
    return validated(dict({"allow": [{"port": 8080}]}, **overrides), FIREWALL_SPEC)


@pytest.fixture
def fw(tmp_path):
    return Firewall(tmp_path)


def the_only_finished(fw):
    tokens = os.listdir(host_file(fw.root, HISTORY))
    assert len(tokens) == 1
    return fw.engine.finished(tokens[0])


# --- plan -------------------------------------------------------------------------------------------------------

def test_plan_without_a_table_is_a_change(fw):
    assert plan(DESIRED, fw.nft) == {"live_text": None, "table_changed": True}
    assert fw.system.calls == [NFT_JSON_LIST]


@pytest.mark.parametrize("listing, desired, changed", [
    ("reject-nft-1.0.6.json", DESIRED, False),
    ("reject-nft-1.0.6-rehandled.json", DESIRED, False),  # handles differ, rules are the same
    ("reject-nft-1.0.6-added.json", DESIRED, True),  # a rule added by hand: drift, the next run re-applies
    ("reject-nft-1.0.6.json", OTHER, True),  # another allowlist
])
def test_idempotence_is_judged_on_the_live_listing(tmp_path, listing, desired, changed):
    fw = Firewall(tmp_path)
    fw.system.respond(NFT_JSON_LIST, out=fixture("reject-nft-1.0.6.json"))
    fw.system.respond(NFT_LIST, out=fixture("reject-nft-1.0.6.txt"))
    fw.apply(confirm_timeout=0, persist=False)  # without commit-confirm: no timer
    assert not any(argv[0] == "systemd-run" for argv in fw.system.calls)
    assert fw.state()["live"] == normalise_listing(fixture("reject-nft-1.0.6.json"))
    assert fw.state()["desired_sha256"] == sha256(DESIRED)
    fw.system.respond(NFT_JSON_LIST, out=fixture(listing))
    assert plan(desired, fw.nft)["table_changed"] is changed


def test_a_table_applied_and_reloaded_with_new_handles_is_unchanged(fw):
    result, _warnings = fw.apply()
    assert plan(DESIRED, fw.nft) == {"live_text": DESIRED, "table_changed": False}
    fw.system.with_nft(DESIRED)  # loaded again (a reboot): same rules, new handles
    fw.system.nft_loads += 5
    assert plan(DESIRED, fw.nft)["table_changed"] is False
    assert plan(OTHER, fw.nft)["table_changed"] is True
    assert result["rollback"]["token"]


# --- apply ------------------------------------------------------------------------------------------------------

def test_apply_validates_then_arms_the_rollback_before_it_loads_the_new_table(fw):
    timers_when_loading = []
    fw.system.hook(["nft", "-f"], lambda _argv: timers_when_loading.append(sorted(fw.system.timers)))
    result, warnings = fw.apply(confirm_timeout=45)
    assert timers_when_loading == [[result["rollback"]["unit"]]]  # the timer was armed when the table changed
    token = result["rollback"]["token"]
    calls = fw.system.calls
    validate = [number for number, argv in enumerate(calls) if argv[:3] == ["nft", "-c", "-f"]]
    expires = "--on-calendar=%s" % calendar_time(result["rollback"]["expires_at"])
    timer = [number for number, argv in enumerate(calls) if argv[0] == "systemd-run" and expires in argv]
    load = [number for number, argv in enumerate(calls) if argv[:2] == ["nft", "-f"]]
    assert len(timer) == 1 and len(load) == 1 and validate
    assert validate[0] < timer[0] < load[0]
    assert result["confirmed"] is False and warnings == []
    assert result["rollback"]["unit"] == "portcullis-rollback-%s.timer" % token
    assert result["rollback"]["timeout"] == 45
    assert list(fw.system.timers) == [result["rollback"]["unit"]]
    change = fw.engine.armed()
    assert (change.token, change.kind, change.claimed_by) == (token, "firewall", None)
    assert change.expires_at == result["rollback"]["expires_at"]
    assert fw.system.live_table() == DESIRED
    # No previous table: rolling back removes the own table, and only it.
    assert fw.read(ARMED + "/firewall-rollback.nft") == removal_script()
    # The files persisting would write are backed up now, before anything changes.
    assert [path for path, _backup in change.manifest["restores"]] == [STATE_FILE, PERSIST_FILE, "/etc/nftables.conf"]
    assert fw.state()["desired_sha256"] == sha256(DESIRED)
    # Persisting waits for the confirmation.
    assert fw.read(PERSIST_FILE) is None and fw.read("/etc/nftables.conf") == DEBIAN_CONF


def test_the_timer_restores_the_previous_table_exactly(tmp_path):
    previous = fixture("drop-nft-1.0.6.txt")
    fw = Firewall(tmp_path, table=previous)
    before = tree(tmp_path, ignore=ENGINE_PATHS)
    result, _warnings = fw.apply()
    assert fw.read(ARMED + "/firewall-rollback.nft") == apply_script(previous)
    assert fw.system.live_table() == DESIRED
    rc, _out, err = fw.system.fire()
    assert rc == 0, err
    assert fw.system.live_table() == previous
    assert "nft -f %s" % host_file(tmp_path, ARMED + "/firewall-rollback.nft") in fw.script_log()
    assert tree(tmp_path, ignore=ENGINE_PATHS) == before
    assert fw.engine.finished(result["rollback"]["token"]).claimed_by == "timer"


def test_invalid_rules_change_nothing(fw, tmp_path):
    before = tree(tmp_path, ignore=ENGINE_PATHS)
    fw.system.respond(["nft", "-c", "-f"], rc=1, err="Error: syntax error")
    with pytest.raises(FirewallError, match=r"validating the new rules \(nothing was changed\)"):
        fw.apply()
    assert not any(argv[0] == "systemd-run" for argv in fw.system.calls)
    assert fw.engine.armed() is None and fw.system.live_table() is None
    assert tree(tmp_path, ignore=ENGINE_PATHS) == before


def test_a_failed_apply_rolls_back_and_says_so(tmp_path):
    previous = fixture("drop-nft-1.0.6.txt")
    fw = Firewall(tmp_path, table=previous)
    before = tree(tmp_path, ignore=ENGINE_PATHS)
    fw.system.respond(["nft", "-f"], rc=1, err="Error: Could not process rule: No buffer space available")
    with pytest.raises(FirewallError) as error:
        fw.apply()
    message = str(error.value)
    assert "applying the new rules" in message and "No buffer space available" in message
    assert "an immediate rollback put the previous configuration back" in message
    assert fw.engine.armed() is None and fw.system.timers == {}
    assert the_only_finished(fw).claimed_by == "now"
    assert fw.system.live_table() == previous
    assert tree(tmp_path, ignore=ENGINE_PATHS) == before  # nothing recorded as applied, nothing persisted


def test_a_failed_apply_reports_rolled_back_in_the_result(fw):
    fw.system.respond(["nft", "-f"], rc=1, err="Error: Could not process rule: No buffer space available")
    with pytest.raises(FirewallError) as error:
        fw.apply()
    assert error.value.details == {"rolled_back": True, "host_state": "the previous configuration"}


def test_a_file_where_the_persist_directory_belongs_arms_cleanly_and_the_confirm_rolls_back(fw, tmp_path):
    # Host.backup() takes a path under a file for a missing file: arming neither fails with a bare OSError nor
    # leaves its staging directory behind; persisting fails at the confirmation, which rolls back.
    write_host_file(tmp_path, "/etc/nftables.d", "a file where a directory belongs\n")
    before = tree(tmp_path, ignore=ENGINE_PATHS)
    result, _warnings = fw.apply()
    assert [path for path, backup in fw.engine.armed().manifest["restores"] if backup is None] == [
        STATE_FILE, PERSIST_FILE]  # neither exists
    assert [name for name in os.listdir(host_file(tmp_path, STATE_DIR)) if name.startswith(".arming-")] == []
    with pytest.raises(RolledBack, match="an immediate rollback put the previous configuration back"):
        fw.confirm(result["rollback"]["token"])
    assert tree(tmp_path, ignore=ENGINE_PATHS) == before and fw.system.live_table() is None


# --- confirm ----------------------------------------------------------------------------------------------------

def test_confirm_persists_while_still_armed_then_commits(fw, tmp_path):
    os.chmod(host_file(tmp_path, "/etc/nftables.conf"), 0o700)
    result, _warnings = fw.apply()
    token = result["rollback"]["token"]
    seen = {}

    def enabling(_argv):
        change = fw.engine.armed()
        seen["armed while enabling"] = change is not None and change.token == token and not change.claimed_by
        seen["timer while enabling"] = result["rollback"]["unit"] in fw.system.timers
        seen["persisted before enabling"] = fw.read(PERSIST_FILE) == apply_script(DESIRED)
        return None  # and let the enabled-units model enable it

    def stopping(_argv):
        seen["persisted before the timer stopped"] = fw.read(PERSIST_FILE) is not None
        return None

    fw.system.hook(["systemctl", "enable", SERVICE], enabling)
    fw.system.hook(["systemctl", "stop", result["rollback"]["unit"]], stopping)
    confirmed = fw.confirm(token)
    assert seen == {"armed while enabling": True, "timer while enabling": True, "persisted before enabling": True,
                    "persisted before the timer stopped": True}
    assert confirmed == {"changed": True, "confirmed": True, "rules": DESIRED, "persistence": {
        "file": True, "include": True, "service": True, "config": "/etc/nftables.conf"}}
    assert fw.engine.armed() is None and fw.engine.finished(token).claimed_by == "commit"
    assert fw.system.timers == {} and SERVICE in fw.system.enabled
    conf = fw.read("/etc/nftables.conf")
    assert conf.startswith(DEBIAN_CONF)  # everything there is kept, flush ruleset first
    assert conf.endswith('%s\ninclude "%s"\n' % (INCLUDE_MARKER, PERSIST_FILE))
    assert os.stat(host_file(tmp_path, "/etc/nftables.conf")).st_mode & 0o777 == 0o700  # its mode is kept
    assert os.stat(host_file(tmp_path, PERSIST_FILE)).st_mode & 0o777 == 0o644
    assert fw.state()["enabled_service"] is True and "created_conf" not in fw.state()
    assert fw.state()["created_dir"] == "/etc/nftables.d"
    # Once committed, a timer that still fired would change nothing.
    rc, _out, _err = fw.system.run_script(["/bin/sh", host_file(tmp_path, HISTORY + "/%s/rollback.sh" % token)])
    assert rc == 0 and fw.system.live_table() == DESIRED


def test_confirm_without_persist_commits_and_writes_nothing_more(fw, tmp_path):
    result, _warnings = fw.apply(persist=False)
    token = result["rollback"]["token"]
    before = tree(tmp_path, ignore=ENGINE_PATHS)
    assert fw.confirm(token, persist=False)["persistence"] == {}
    assert tree(tmp_path, ignore=ENGINE_PATHS) == before
    assert fw.engine.finished(token).claimed_by == "commit" and fw.system.live_table() == DESIRED
    assert not any(argv[:2] == ["systemctl", "enable"] and argv[-1] == SERVICE for argv in fw.system.calls)


def _directory_is_a_file(fw):
    write_host_file(fw.root, "/etc/nftables.d", "not a directory\n")
    return {"/etc/nftables.d": b"not a directory\n"}


def _enable_fails(fw):
    fw.system.respond(["systemctl", "enable", SERVICE], rc=1, err="Failed to enable unit: Access denied")
    return {}


@pytest.mark.parametrize("sabotage, words", [
    (_directory_is_a_file, []),
    (_enable_fails, ["enabling nftables.service for boot failed", "Access denied"]),
])
def test_a_persist_failure_during_confirm_rolls_back_and_says_so(tmp_path, sabotage, words):
    # Regression "failure after disarm misreported": persisting ran after the timer was stopped, so a failure left
    # the new rules live with nothing to undo them, and the task said "not confirmed".
    fw = Firewall(tmp_path)
    # The empty /etc/nftables.d that persisting created stays: see test_a_rolled_back_confirm_leaves_no_directory.
    ignore = ENGINE_PATHS + (() if sabotage is _directory_is_a_file else ("/etc/nftables.d",))
    before = tree(tmp_path, ignore=ignore)
    result, _warnings = fw.apply()
    token = result["rollback"]["token"]
    before.update(sabotage(fw))
    with pytest.raises(RolledBack) as error:
        fw.confirm(token)
    message = str(error.value)
    assert message.startswith("confirm: ")
    assert "an immediate rollback put the previous configuration back" in message
    for word in words:
        assert word in message
    assert error.value.details["rolled_back"] is True
    assert fw.engine.armed() is None and fw.engine.finished(token).claimed_by == "now"
    assert fw.system.live_table() is None  # the previous (no) table
    assert tree(tmp_path, ignore=ignore) == before  # the conf, the persisted file, the state: as they were
    assert fw.read(PERSIST_FILE) is None and fw.read(STATE_FILE) is None
    # Persisting would have enabled the service: the rollback disables it again.
    assert "systemctl disable nftables.service" in fw.script_log()


def test_a_rolled_back_confirm_leaves_no_directory_it_created(fw, tmp_path, module_on):
    result, _warnings = fw.apply()
    fw.system.respond(["systemctl", "enable", SERVICE], rc=1, err="Failed to enable unit: Access denied")
    with pytest.raises(RolledBack):
        fw.confirm(result["rollback"]["token"])
    fw.system.responses.pop(0)
    result, _warnings = fw.apply()  # again, and this time the confirmation persists
    fw.confirm(result["rollback"]["token"])
    module_on(fw, state="absent")
    assert not os.path.lexists(host_file(tmp_path, "/etc/nftables.d"))  # Portcullis made it; nothing else is in it


def test_a_confirm_after_the_timer_fired_says_rolled_back(fw, tmp_path):
    before = tree(tmp_path, ignore=ENGINE_PATHS)
    result, _warnings = fw.apply()
    fw.system.fire()
    with pytest.raises(RolledBack) as error:
        fw.confirm(result["rollback"]["token"])
    assert "confirm: too late" in str(error.value)
    assert "its rollback timer put the previous configuration back" in str(error.value)
    assert tree(tmp_path, ignore=ENGINE_PATHS) == before  # and it persisted nothing
    assert fw.system.live_table() is None


def test_a_confirm_with_a_token_no_change_has_is_refused(fw):
    with pytest.raises(TransactionError, match="confirm: no firewall change %s is armed on this host" % TOKEN):
        fw.confirm(TOKEN)
    with pytest.raises(TransactionError, match="is not a change token"):
        fw.confirm("../../etc/x")
    assert fw.read(PERSIST_FILE) is None


# --- where persisting goes --------------------------------------------------------------------------------------

@pytest.mark.parametrize("argv, config", [
    ("/usr/sbin/nft -f /etc/nftables.conf", "/etc/nftables.conf"),
    ("/sbin/nft -f /etc/sysconfig/nftables.conf", "/etc/sysconfig/nftables.conf"),
    ("/usr/sbin/nft -f/etc/custom.nft -e", "/etc/custom.nft"),
    ("/usr/sbin/nft --file=/etc/other.nft", "/etc/other.nft"),
    ("/usr/sbin/nft -c -o", None),
    pytest.param("/usr/sbin/nft -f/etc/custom.nft", "/etc/custom.nft"),
    pytest.param("/usr/sbin/nft --file /etc/other.nft", "/etc/other.nft"),
])
def test_exec_start_config_finds_the_file_nft_loads(argv, config):
    assert exec_start_config(parse_show(unit(argv))) == config


@pytest.mark.parametrize("unit_text, conf, config", [
    (DEBIAN_UNIT, DEBIAN_CONF, "/etc/nftables.conf"),
    (RHEL_UNIT, RHEL_CONF, "/etc/sysconfig/nftables.conf"),
    (unit("/usr/sbin/nft -f/etc/custom.nft -e"), "", "/etc/custom.nft"),
    (unit("/usr/sbin/nft --file=/etc/other.nft"), "", "/etc/other.nft"),
])
def test_persisting_follows_the_file_nftables_service_loads(tmp_path, unit_text, conf, config):
    fw = Firewall(tmp_path, unit_text=unit_text, conf=conf)
    assert persistence_plan(DESIRED, fw.nft)["config"] == config
    assert persisted_paths(fw.nft, True) == [STATE_FILE, PERSIST_FILE, config]
    result, _warnings = fw.apply()
    assert fw.confirm(result["rollback"]["token"])["persistence"]["config"] == config
    assert fw.read(config).startswith(conf)
    assert fw.read(config).endswith('include "%s"\n' % PERSIST_FILE)
    if config != "/etc/nftables.conf":
        assert fw.read("/etc/nftables.conf") is None  # not Debian's file: nftables.service would not load it


@pytest.mark.parametrize("unit_text, words", [
    ("", ["nftables.service is not installed"]),  # systemctl knows no such unit: shows nothing
    ("LoadState=not-found\nExecStart=\n", ["nftables.service is not installed"]),
    (unit("/usr/sbin/nft -c -o"), ["does not load a file with `nft -f`"]),
])
def test_a_host_where_persisting_would_not_hold_refuses_persist(tmp_path, unit_text, words):
    # Regression "persistence only where it holds": the rules were written to /etc/nftables.conf, which nothing
    # loads at boot on such a host, and the task said persisted.
    fw = Firewall(tmp_path, unit_text=unit_text, conf=None)
    before = tree(tmp_path)
    for attempt in (lambda: persistence_plan(DESIRED, fw.nft), fw.apply):
        with pytest.raises(FirewallError) as error:
            attempt()
        message = str(error.value)
        assert message.startswith("persist: ") and "persist: false" in message and "nothing was changed" in message
        for word in words:
            assert word in message
    assert fw.engine.armed() is None and fw.system.live_table() is None
    assert not any(argv[0] == "systemd-run" or argv[:2] == ["nft", "-f"] for argv in fw.system.calls)
    assert tree(tmp_path, ignore=(RUN_DIR,)) == before  # only the host lock was taken
    # Without persisting, the same host takes the rules (commit-confirm only).
    result, _warnings = fw.apply(persist=False)
    assert fw.engine.armed().manifest["restores"] == [[STATE_FILE, None]]
    assert fw.confirm(result["rollback"]["token"], persist=False)["confirmed"] is True


# --- the module's run(): state=absent, check mode ---------------------------------------------------------------

class FakeModule:
    """What run() uses of an AnsibleModule."""

    def __init__(self, system, check_mode=False, **args):
        self.params = validated(dict({"allow": [{"port": 8080}]}, **args), FIREWALL_SPEC)
        self.check_mode = check_mode
        self.run_command = system

    @staticmethod
    def get_bin_path(name):
        return "/usr/sbin/" + name


@pytest.fixture
def module_on(monkeypatch):
    """run(module) on a Firewall's host, over an SSH session from 192.0.2.10 to port 22."""
    session = {"port": 22, "family": "ipv4", "local_address": "192.0.2.1", "peer_address": "192.0.2.10"}
    monkeypatch.setattr(firewall_module, "management_session", lambda: session)

    def run(fw, check_mode=False, **args):
        monkeypatch.setattr(firewall_module, "Host", lambda _run: fw.host)
        return firewall_module.run(FakeModule(fw.system, check_mode=check_mode, **args))
    return run


def _created_by_portcullis(fw):
    """No conf, no /etc/nftables.d, the service disabled: Portcullis creates all three."""
    os.unlink(host_file(fw.root, "/etc/nftables.conf"))
    return {"conf": None, "dir": False, "disabled": True}


def _there_before(fw):
    write_host_file(fw.root, "/etc/nftables.d/docker.nft", "# someone else's\n")
    fw.system.enabled.add(SERVICE)
    return {"conf": DEBIAN_CONF, "dir": True, "disabled": False}


def _created_then_used_by_others(fw):
    _created_by_portcullis(fw)
    return {"conf": None, "dir": False, "disabled": True, "later": {
        "/etc/nftables.d/docker.nft": "# added after Portcullis created the directory\n",
        "/etc/nftables.conf": "table inet nat {\n}\n"}}  # appended to the conf Portcullis created


@pytest.mark.parametrize("setup", [_created_by_portcullis, _there_before, _created_then_used_by_others])
def test_absent_removes_what_portcullis_made_and_nothing_else(tmp_path, module_on, setup):
    fw = Firewall(tmp_path)
    expected = setup(fw)
    result, _warnings = fw.apply()
    fw.confirm(result["rollback"]["token"])
    state = fw.state()
    assert ("created_conf" in state, "created_dir" in state) == (expected["conf"] is None, not expected["dir"])
    assert state.get("enabled_service", False) is expected["disabled"]
    for path, text in expected.get("later", {}).items():  # the operator adds to what Portcullis created
        if path.endswith(".conf"):
            text = fw.read(path) + text
        write_host_file(tmp_path, path, text)

    removed = module_on(fw, state="absent")
    assert removed["changed"] is True and removed["diff"] == {"before": DESIRED, "after": ""}
    assert removed["warnings"] == []
    assert fw.system.live_table() is None
    assert fw.read(PERSIST_FILE) is None and fw.read(STATE_FILE) is None
    conf = fw.read("/etc/nftables.conf")
    if "later" in expected:
        assert conf == NEW_CONF + "table inet nat {\n}\n"  # the include line gone, the operator's table kept
        assert fw.read("/etc/nftables.d/docker.nft") is not None
    else:
        assert conf == expected["conf"]
        assert os.path.isdir(host_file(tmp_path, "/etc/nftables.d")) is expected["dir"]
    disabled = ["systemctl", "disable", SERVICE] in fw.system.calls
    assert disabled is expected["disabled"]  # only when Portcullis enabled it
    assert (SERVICE in fw.system.enabled) is not expected["disabled"]
    assert module_on(fw, state="absent")["changed"] is False  # a second time: nothing left to do


def test_absent_is_refused_while_a_change_is_armed(fw, tmp_path, module_on):
    # Regression "absent must be final": state=absent ran beside an armed change, whose timer then put the table back.
    result, _warnings = fw.apply()
    before = tree(tmp_path, ignore=(RUN_DIR,))
    with pytest.raises(ChangePending) as error:
        module_on(fw, state="absent")
    message = str(error.value)
    assert message.startswith("firewall state=absent: the firewall change %s" % result["rollback"]["token"])
    assert "Nothing was changed" in message
    assert fw.system.live_table() == DESIRED and fw.engine.armed() is not None
    assert tree(tmp_path, ignore=(RUN_DIR,)) == before


def test_check_mode_writes_nothing(fw, tmp_path, module_on):
    before = tree(tmp_path)
    result = module_on(fw, check_mode=True)
    assert result["changed"] is True and result["rules"] == DESIRED_CLOSING
    assert DESIRED_CLOSING.startswith(DESIRED[:DESIRED.rindex("\t}")]) and "\tchain forward {" in DESIRED_CLOSING
    assert result["persistence"] == {"file": True, "include": True, "service": True, "config": "/etc/nftables.conf"}
    assert result["diff"] == {"before": "", "after": DESIRED_CLOSING}
    assert (result["published"], result["closing_published"]) == ([], [])
    assert module_on(fw, check_mode=True, state="absent")["changed"] is False
    assert tree(tmp_path) == before
    assert not any(argv[0] == "systemd-run" or argv[:2] in (["nft", "-f"], ["systemctl", "enable"])
                   for argv in fw.system.calls)


def publishing(fw):
    """fw's host with the published ports of the real captures (fixtures/published), container web running."""
    fw.system.respond(["nft", "-j", "list", "ruleset"], out=published_fixture(RULESET))
    fw.system.respond(["iptables-nft-save", "-t", "nat"], out=published_fixture(SAVE_V4))
    fw.system.respond(["ip6tables-nft-save", "-t", "nat"], out=published_fixture(SAVE_V6))
    write_host_file(fw.root, "/var/lib/docker/containers/%s/config.v2.json" % WEB_ID, docker_config())
    return fw


def test_the_table_closes_the_published_ports_the_allowlist_does_not_allow(fw, module_on):
    result = module_on(publishing(fw), check_mode=True, allow=[{"port": 8080}, {"port": 8081, "published": True}])
    rules = parse_allowlist([{"port": 8080}, {"port": 8081, "published": True}], name="allow")
    assert result["rules"] == render_table(rules, "drop", [22], False,
                                           published={"ipv4": ["10.88.0.0/16", "172.17.0.0/16"], "ipv6": []})
    assert 'ip saddr { 10.88.0.0/16, 172.17.0.0/16 } accept comment "portcullis: from the container networks"' in (
        result["rules"])
    assert [(item["protocol"], item["family"], item["port"]) for item in result["published"]] == [
        ("tcp", "ipv4", 3001), ("tcp", "ipv4", 8081), ("tcp", "ipv6", 8081), ("udp", "ipv4", 5300)]
    assert result["closing_published"] == [
        {"protocol": "tcp", "family": "ipv4", "address": "0.0.0.0", "port": 3001, "container": None,
         "to": "tcp 0.0.0.0:3001 -> 10.88.0.4:8080 (DNAT in inet netavark chain nv_2f259bab_10_88_0_0_nm16_dnat)"},
        {"protocol": "udp", "family": "ipv4", "address": "127.0.0.1", "port": 5300, "container": "web",
         "to": "udp 127.0.0.1:5300 -> 172.17.0.2:53 (DNAT in ip nat chain DOCKER, docker container web)"},
    ]
    assert not any("published" in warning for warning in result["warnings"])


def test_close_published_false_leaves_forwarded_traffic_alone(fw, module_on):
    result = module_on(publishing(fw), check_mode=True, close_published=False)
    assert result["rules"] == DESIRED
    assert "published" not in result and "closing_published" not in result
    assert ["nft", "-j", "list", "ruleset"] not in fw.system.calls


def test_published_ports_that_cannot_be_read_are_a_warning(fw, module_on):
    fw.system.respond(["nft", "-j", "list", "ruleset"], rc=1, err="Error: Operation not permitted\n")
    result = module_on(fw, check_mode=True)
    assert "published ports were not read: nft -j list ruleset failed (rc=1): Error: Operation not permitted" in (
        result["warnings"])
    assert result["rules"] == DESIRED_CLOSING and result["published"] == []


def published_port(protocol, address, port, container="web"):
    family = "ipv6" if ":" in address else "ipv4"
    return {"protocol": protocol, "family": family, "address": address, "port": port,
            "wildcard": address in ("0.0.0.0", "::"), "target_address": "172.17.0.2", "target_port": None,
            "table": "ip nat", "chain": "DOCKER", "origin": "iptables-nft", "from_interfaces_except": [],
            "container": {"runtime": "docker", "id": WEB_ID, "name": container, "image": None} if container else None,
            "proxy": []}


@pytest.mark.parametrize("allow, closed", [
    ([], [8081, 8081, "9000-9010", 5300]),
    ([{"port": 8081}], ["9000-9010", 5300]),
    ([{"port": 8081, "family": "ipv6", "published": True}], [8081, "9000-9010", 5300]),
    ([{"port": "8000-9005"}], ["9000-9010", 5300]),  # only part of 9000-9010 is allowed
    ([{"port": "8000-9010", "sources": ["10.0.0.0/8"]}], [5300]),  # sources narrow who, not whether
    ([{"port": 5300, "protocol": "udp", "bind": "loopback"}], [8081, 8081, "9000-9010", 5300]),
])
def test_closing_published(allow, closed):
    ports = [published_port("tcp", "0.0.0.0", 8081), published_port("tcp", "::", 8081, container=None),
             published_port("tcp", "192.0.2.10", "9000-9010"), published_port("udp", "127.0.0.1", 5300)]
    found = closing_published(ports, parse_allowlist(allow, name="allow"))
    assert [item["port"] for item in found] == closed
    if allow == []:
        assert [item["container"] for item in found] == ["web", None, "web", "web"]
        assert found[1] == {"protocol": "tcp", "family": "ipv6", "address": "::", "port": 8081, "container": None,
                            "to": "tcp [::]:8081 -> 172.17.0.2 (DNAT in ip nat chain DOCKER)"}


def test_check_mode_while_a_change_is_armed_warns_and_writes_nothing(fw, tmp_path, module_on):
    fw.apply()
    before = tree(tmp_path)
    result = module_on(fw, check_mode=True, allow=[{"port": 8081}])
    assert any(warning.startswith("a real run would refuse now: firewall: the firewall change")
               for warning in result["warnings"])
    assert module_on(fw, check_mode=True, state="absent")["changed"] is True
    assert tree(tmp_path) == before


def test_a_real_run_applies_and_reports_the_rollback(fw, module_on):
    result = module_on(fw)
    assert result["changed"] is True and result["management_ports"] == [22]  # allow does not open 22: kept
    assert any("no allow entry opens 22/tcp" in warning for warning in result["warnings"])
    assert result["rollback"]["token"] == fw.engine.armed().token and result["confirmed"] is False
    assert fw.system.live_table() == result["rules"] and "tcp dport 22 accept" in result["rules"]


# --- the management port ----------------------------------------------------------------------------------------

IPV4_SESSION = {"port": 22, "family": "ipv4", "local_address": "192.0.2.1", "peer_address": "192.0.2.10"}


@pytest.mark.parametrize("allow, management_port, session, kept, warned", [
    # Regression "family-blind guard": an entry opening 22 for IPv6 only passed for a session over IPv4.
    ([{"port": 22, "family": "ipv6"}], None, IPV4_SESSION, [22], ["for IPv6 only, but this connection uses IPv4"]),
    ([{"port": 22}], None, IPV4_SESSION, [], []),
    ([{"port": 22, "sources": ["192.0.2.0/24"]}], None, IPV4_SESSION, [], []),
    ([{"port": 22, "sources": ["198.51.100.0/24"]}], None, IPV4_SESSION, [22],
     ["does not include the controller's address 192.0.2.10"]),
    # The session came in on another port than management_port: both stay open.
    ([{"port": 8080}], 2222, IPV4_SESSION, [22, 2222], ["management_port is 2222, but this connection came in on "
                                                        "port 22/tcp: both stay open"]),
    ([{"port": 22}], 2222, IPV4_SESSION, [2222], ["both stay open"]),
    ([{"port": 8080}], None, None, [22], ["no allow entry opens 22/tcp"]),
    ([{"port": 2222, "family": "ipv4"}], 2222, None, [2222], ["for IPv4 only"]),  # family unknown: both needed
])
def test_management_keeps_the_port_this_connection_uses(allow, management_port, session, kept, warned):
    warnings = []
    rules = parse_allowlist(allow, name="allow")
    assert management(rules, params(allow=allow, management_port=management_port), session, warnings) == kept
    for words in warned:
        assert any(words in warning for warning in warnings), warnings
    if not warned:
        assert warnings == []


def test_management_refuses_to_cut_this_connection_when_told_not_to_keep_it():
    allow = [{"port": 22, "family": "ipv6"}]
    with pytest.raises(FirewallError, match="keep_management_port: false, but allow.0. opens 22/tcp for IPv6 only"):
        management(parse_allowlist(allow, name="allow"), params(allow=allow, keep_management_port=False),
                   IPV4_SESSION, [])
    warnings = []
    # Without a session (a local connection) nothing is cut: allow alone decides.
    assert management(parse_allowlist(allow, name="allow"), params(allow=allow, keep_management_port=False),
                      None, warnings) == [] and warnings == []


# --- other firewall managers ------------------------------------------------------------------------------------

def test_other_firewall_managers_are_detected(fw, tmp_path):
    assert detect(fw.host) == {"ufw": False, "firewalld": False}  # no ufw installed: not even asked
    assert fw.system.calls == [["systemctl", "is-active", "--quiet", "firewalld.service"]]
    write_host_file(tmp_path, "/usr/sbin/ufw", "#!/bin/sh\n")
    fw.system.respond(["ufw", "status"], out="Status: active\n\nTo Action From\n")
    fw.system.respond(["systemctl", "is-active", "--quiet", "firewalld.service"])
    assert detect(fw.host) == {"ufw": True, "firewalld": True}


def test_remove_in_check_mode_changes_nothing(tmp_path):
    fw = Firewall(tmp_path, table=fixture("reject-nft-1.0.6.txt"))
    before = tree(tmp_path)
    assert remove(fw.nft, check_mode=True) == {"changed": True, "diff": {
        "before": fixture("reject-nft-1.0.6.txt"), "after": ""}}
    assert tree(tmp_path) == before and fw.system.live_table() == fixture("reject-nft-1.0.6.txt")


def test_remove_keeps_what_the_ufw_and_firewalld_backends_recorded(tmp_path):
    fw = Firewall(tmp_path, table=fixture("reject-nft-1.0.6.txt"))
    theirs = {"firewalld": {"added": {"public": [["port", "8181/tcp"]]}}, "ufw": {"enabled_ufw": False}}
    fw.nft.save_state(dict(theirs, desired_sha256="x", live={}))
    assert remove(fw.nft, check_mode=False)["changed"] is True
    assert fw.nft.state() == theirs  # firewall state=absent removes them next, from their own record
    # Nothing of nftables's left: only their record, which is no reason to report a change.
    fw.system.with_nft(None)
    assert remove(fw.nft, check_mode=True)["changed"] is False


# --- the ports the table closes, and their live connections ------------------------------------------------------

def listener(protocol, address, port):
    return {"protocol": protocol, "family": "ipv6" if ":" in address else "ipv4", "address": address, "port": port,
            "processes": [], "loopback": ipaddress.ip_address(address).is_loopback or address == "::ffff:127.0.0.1",
            "wildcard": address in ("0.0.0.0", "::")}


def connection(local, local_port, peer, peer_port):
    return ipaddress.ip_address(local), local_port, ipaddress.ip_address(peer), peer_port


def closing(allow, listeners, kept=(22,), established=()):
    return closing_ports(listeners, parse_allowlist(allow, name="allow"), list(kept), list(established))


def test_closing_lists_the_network_listeners_no_entry_opens():
    listeners = [
        listener("tcp", "0.0.0.0", 8080), listener("tcp", "::", 8080),
        listener("tcp", "10.0.0.2", 3000),
        listener("udp", "0.0.0.0", 5353),
        listener("tcp", "0.0.0.0", 443), listener("tcp", "::", 443),
    ]
    assert closing([{"port": 443}], listeners) == [
        {"protocol": "tcp", "port": 3000, "listeners": ["10.0.0.2:3000"], "established": []},
        {"protocol": "tcp", "port": 8080, "listeners": ["0.0.0.0:8080", "[::]:8080"], "established": []},
        {"protocol": "udp", "port": 5353, "listeners": ["0.0.0.0:5353"], "established": []},
    ]


def test_loopback_listeners_never_close():
    # The input chain accepts `lo`: what listens on loopback only is not filtered, allowed or not.
    listeners = [listener("tcp", "127.0.0.1", 6379), listener("tcp", "::1", 6379),
                 listener("tcp", "::ffff:127.0.0.1", 7000), listener("udp", "127.0.0.53", 53)]
    assert closing([], listeners, kept=()) == []


@pytest.mark.parametrize("entry", [
    {"port": 8080},
    {"port": "8000-8100"},
    {"port": 8080, "sources": ["192.0.2.0/24"]},
    {"port": 8080, "sources": ["2001:db8::/32"], "family": "ipv6"},
    {"port": 8080, "family": "ipv4"},  # it opens the port, to IPv4: the port is not closing
    {"port": 8080, "process": "nginx"},
], ids=["port", "range", "ipv4-sources", "ipv6-sources", "family", "process"])
def test_a_port_an_entry_opens_is_not_closing(entry):
    assert closing([entry], [listener("tcp", "0.0.0.0", 8080), listener("tcp", "::", 8080)]) == []


@pytest.mark.parametrize("entry", [
    {"port": 8080, "bind": "loopback"},  # opens nothing to the network
    {"port": 8080, "protocol": "udp"},  # another protocol
    {"port": 8081},
], ids=["loopback-entry", "udp-entry", "other-port"])
def test_an_entry_that_does_not_open_the_port_to_the_network_leaves_it_closing(entry):
    assert closing([entry], [listener("tcp", "0.0.0.0", 8080)]) == [
        {"protocol": "tcp", "port": 8080, "listeners": ["0.0.0.0:8080"], "established": []}]


def test_the_kept_management_ports_stay_open_for_tcp_only():
    listeners = [listener("tcp", "0.0.0.0", 22), listener("tcp", "::", 2222), listener("udp", "0.0.0.0", 22)]
    assert closing([], listeners, kept=[22, 2222]) == [
        {"protocol": "udp", "port": 22, "listeners": ["0.0.0.0:22"], "established": []}]
    assert [item["port"] for item in closing([], listeners, kept=[])] == [22, 2222, 22]


def test_established_connections_are_attached_to_the_closing_port_they_use():
    listeners = [listener("tcp", "0.0.0.0", 8080), listener("tcp", "::", 8080), listener("tcp", "0.0.0.0", 443),
                 listener("tcp", "0.0.0.0", 9000), listener("udp", "0.0.0.0", 9000),
                 listener("tcp", "127.0.0.1", 6379)]
    established = [
        connection("10.0.0.2", 8080, "192.0.2.7", 51234),
        connection("2001:db8::2", 8080, "2001:db8::7", 40001),
        connection("127.0.0.1", 8080, "127.0.0.1", 40002),  # loopback peers are never filtered
        connection("::1", 8080, "::1", 40003),
        connection("10.0.0.2", 443, "192.0.2.8", 51000),  # an open port: nothing is cut
        connection("10.0.0.2", 9000, "192.0.2.9", 52000),
        connection("127.0.0.1", 6379, "127.0.0.1", 40004),  # a loopback listener: not closing
        connection("10.0.0.2", 7777, "192.0.2.10", 53000),  # no listener on it (an outgoing connection's port)
    ]
    assert closing([{"port": 443}], listeners, established=established) == [
        {"protocol": "tcp", "port": 8080, "listeners": ["0.0.0.0:8080", "[::]:8080"],
         "established": ["192.0.2.7:51234", "[2001:db8::7]:40001"]},
        {"protocol": "tcp", "port": 9000, "listeners": ["0.0.0.0:9000"], "established": ["192.0.2.9:52000"]},
        {"protocol": "udp", "port": 9000, "listeners": ["0.0.0.0:9000"], "established": []},
    ]


def test_established_connections_read_from_proc_are_attached(tmp_path):
    proc = proc_net(tmp_path, tcp=[
        ("0.0.0.0", 8080, "0.0.0.0", 0, LISTEN),
        ("10.0.0.2", 8080, "192.0.2.7", 51234, ESTABLISHED),
        ("127.0.0.1", 8080, "127.0.0.1", 41000, ESTABLISHED),
        ("10.0.0.2", 22, "192.0.2.1", 50000, ESTABLISHED),
    ], tcp6=[
        ("::", 8080, "::", 0, LISTEN),
        ("2001:db8::2", 8080, "2001:db8::7", 40001, ESTABLISHED),
        ("::ffff:10.0.0.2", 8080, "::ffff:198.51.100.9", 40002, ESTABLISHED),
        ("::1", 8080, "::1", 40003, ESTABLISHED),
    ])
    listeners = [listener("tcp", "0.0.0.0", 8080), listener("tcp", "::", 8080), listener("tcp", "0.0.0.0", 22)]
    found = closing([], listeners, kept=[22], established=established_connections(proc))
    assert len(found) == 1 and found[0]["port"] == 8080
    # The IPv4-mapped peer of the dual-stack socket is shown as the IPv4 client it is.
    assert sorted(found[0]["established"]) == ["192.0.2.7:51234", "198.51.100.9:40002", "[2001:db8::7]:40001"]
    assert closing_warnings(found) == [
        "8080/tcp closes: 3 established connections to it (from %s) may finish, but no new connection will get in"
        % ", ".join(found[0]["established"])]


def test_closing_warnings_count_and_name_the_peers():
    peers = ["192.0.2.%d:5000%d" % (number, number) for number in range(1, 8)]
    items = [
        {"protocol": "tcp", "port": 3000, "listeners": ["0.0.0.0:3000"], "established": []},
        {"protocol": "tcp", "port": 8080, "listeners": ["0.0.0.0:8080"], "established": peers[:1]},
        {"protocol": "tcp", "port": 8081, "listeners": ["0.0.0.0:8081"], "established": peers[:2]},
        {"protocol": "tcp", "port": 8082, "listeners": ["0.0.0.0:8082"], "established": peers[:5]},
        {"protocol": "tcp", "port": 8083, "listeners": ["[::]:8083"], "established": peers},
        {"protocol": "udp", "port": 5353, "listeners": ["0.0.0.0:5353"], "established": []},
    ]
    assert closing_warnings(items) == [
        "8080/tcp closes: 1 established connection to it (from 192.0.2.1:50001) may finish, but no new connection will get in",
        "8081/tcp closes: 2 established connections to it (from 192.0.2.1:50001, 192.0.2.2:50002) may finish, but no new connection will get in",
        "8082/tcp closes: 5 established connections to it (from %s) may finish, but no new connection will get in" % ", ".join(peers[:5]),
        "8083/tcp closes: 7 established connections to it (from %s and more) may finish, but no new connection will get in" % ", ".join(peers[:5]),
    ]
    assert closing_warnings([]) == []
