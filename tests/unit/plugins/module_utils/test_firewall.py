# Copyright (c) Portcullis contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The firewall's host side through one command seam: plan, apply with rollback, confirm, remove."""

from __future__ import annotations

import json
import os

import pytest

from ansible_collections.portcullis.hardening.plugins.module_utils import _firewall
from ansible_collections.portcullis.hardening.plugins.module_utils._allowlist import parse_allowlist
from ansible_collections.portcullis.hardening.plugins.module_utils._firewall import (
    FirewallError,
    Host,
    apply_table,
    confirm,
    plan,
    remove,
)
from ansible_collections.portcullis.hardening.plugins.module_utils._nftables import (
    apply_script,
    normalise_listing,
    render_table,
)

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "nft")
ABSENT = (1, "", "Error: No such file or directory\nlist table inet portcullis\n                ^^^^^^^^^^\n")
TOKEN = "0123456789ab"


def fixture(name):
    with open(os.path.join(FIXTURES, name)) as handle:
        return handle.read()


class FakeHost:
    """Answers commands like a Debian host; records every argument list."""

    def __init__(self, live_json=None, live_text=None, fail=()):
        self.calls = []
        self.live_json = live_json
        self.live_text = live_text
        self.fail = set(fail)
        self.timer_active = False
        self.enabled = False

    def run(self, argv):
        self.calls.append(list(argv))
        key = " ".join(argv[:3])
        if key in self.fail:
            return 1, "", "Error: boom"
        if argv[:4] == ["nft", "-j", "list", "table"]:
            return (0, self.live_json, "") if self.live_json else ABSENT
        if argv[:3] == ["nft", "list", "table"]:
            return (0, self.live_text, "") if self.live_text else ABSENT
        if argv[:2] == ["systemd-run", "--unit"]:
            self.timer_active = True
        if argv[:3] == ["systemctl", "is-active", "--quiet"]:
            return (0 if self.timer_active else 3), "", ""
        if argv[:2] == ["systemctl", "stop"]:
            self.timer_active = False
        if argv[:3] == ["systemctl", "is-enabled", "--quiet"]:
            return (0 if self.enabled else 1), "", ""
        if argv[:2] == ["systemctl", "enable"]:
            self.enabled = True
        return 0, "", ""


@pytest.fixture(autouse=True)
def paths(tmp_path, monkeypatch):
    """Point every path of the module at a temporary tree."""
    monkeypatch.setattr(_firewall, "STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setattr(_firewall, "STATE_FILE", str(tmp_path / "state" / "firewall.json"))
    monkeypatch.setattr(_firewall, "PERSIST_FILE", str(tmp_path / "etc" / "nftables.d" / "portcullis.nft"))
    monkeypatch.setattr(_firewall, "NFTABLES_CONF", str(tmp_path / "etc" / "nftables.conf"))
    os.makedirs(str(tmp_path / "etc"))
    (tmp_path / "etc" / "nftables.conf").write_text("#!/usr/sbin/nft -f\n\nflush ruleset\n\ntable inet filter {\n}\n")
    return tmp_path


DESIRED = render_table(parse_allowlist([{"port": 8080}]), "drop", [22], False)


def test_plan_without_a_table_is_a_change():
    fake = FakeHost()
    assert plan(DESIRED, Host(fake.run)) == {"live_text": None, "table_changed": True}
    assert fake.calls == [["nft", "-j", "list", "table", "inet", "portcullis"]]


def test_apply_arms_the_rollback_first_then_applies_and_records(paths):
    fake = FakeHost()
    rollback = apply_table(DESIRED, Host(fake.run), None, 45, TOKEN)
    state = str(paths / "state")
    assert rollback == {"token": TOKEN, "unit": "portcullis-firewall-rollback-" + TOKEN, "timeout": 45}
    assert fake.calls == [
        ["nft", "-c", "-f", state + "/pending-%s.nft" % TOKEN],
        ["nft", "-c", "-f", state + "/rollback-%s.nft" % TOKEN],
        ["systemd-run", "--unit", "portcullis-firewall-rollback-" + TOKEN, "--on-active=45s",
         "--timer-property=AccuracySec=1s", "--description",
         "Portcullis: restore the previous firewall unless the change is confirmed",
         "nft", "-f", state + "/rollback-%s.nft" % TOKEN],
        ["nft", "-f", state + "/pending-%s.nft" % TOKEN],
        ["nft", "-j", "list", "table", "inet", "portcullis"],
    ]
    # No previous table: rolling back removes the own table, and only it.
    assert (paths / "state" / ("rollback-%s.nft" % TOKEN)).read_text() == (
        "add table inet portcullis\ndelete table inet portcullis\n")
    assert not (paths / "state" / ("pending-%s.nft" % TOKEN)).exists()


def test_rollback_restores_the_previous_table_exactly(paths):
    previous = fixture("drop-nft-1.0.6.txt")
    fake = FakeHost(live_json=fixture("reject-nft-1.0.6.json"), live_text=previous)
    apply_table(DESIRED, Host(fake.run), previous, 30, TOKEN)
    assert (paths / "state" / ("rollback-%s.nft" % TOKEN)).read_text() == apply_script(previous)


def test_failed_apply_disarms_and_leaves_the_old_rules(paths):
    fake = FakeHost(fail={"nft -f " + str(paths / "state" / ("pending-%s.nft" % TOKEN))})
    with pytest.raises(FirewallError, match="applying the new rules .* the previous rules are still in place"):
        apply_table(DESIRED, Host(fake.run), None, 30, TOKEN)
    assert ["systemctl", "stop", "portcullis-firewall-rollback-%s.timer" % TOKEN] in fake.calls
    assert not fake.timer_active
    assert not (paths / "state" / "firewall.json").exists()  # nothing recorded as applied
    assert os.listdir(str(paths / "state")) == []  # neither the pending nor the rollback script is left


def test_invalid_rules_change_nothing(paths):
    fake = FakeHost(fail={"nft -c -f"})
    with pytest.raises(FirewallError, match=r"validating the new rules \(nothing was changed\)"):
        apply_table(DESIRED, Host(fake.run), None, 30, TOKEN)
    assert [call[:2] for call in fake.calls] == [["nft", "-c"]]


def test_idempotence_is_judged_on_the_live_listing(paths):
    live = fixture("reject-nft-1.0.6.json")
    fake = FakeHost(live_json=live, live_text="table inet portcullis {}\n")
    apply_table(DESIRED, Host(fake.run), None, 0, TOKEN)  # without commit-confirm: no timer
    assert not any(call[0] == "systemd-run" for call in fake.calls)
    recorded = json.loads((paths / "state" / "firewall.json").read_text())
    assert recorded["live"] == normalise_listing(live)
    host = Host(fake.run)
    assert plan(DESIRED, host)["table_changed"] is False
    # Handles differ, rules are the same: still unchanged.
    fake.live_json = fixture("reject-nft-1.0.6-rehandled.json")
    assert plan(DESIRED, host)["table_changed"] is False
    # A rule added by hand: drift, the next run re-applies.
    fake.live_json = fixture("reject-nft-1.0.6-added.json")
    assert plan(DESIRED, host)["table_changed"] is True
    # Another allowlist: a change.
    fake.live_json = live
    assert plan(render_table(parse_allowlist([{"port": 8081}]), "drop", [22], False), host)["table_changed"]


def test_confirm_disarms_then_persists(paths):
    (paths / "etc" / "nftables.conf").chmod(0o700)
    fake = FakeHost()
    apply_table(DESIRED, Host(fake.run), None, 30, TOKEN)
    persistence = confirm(TOKEN, DESIRED, Host(fake.run))
    assert persistence == {"file": True, "include": True, "service": True}
    assert not fake.timer_active and fake.enabled
    assert (paths / "etc" / "nftables.d" / "portcullis.nft").read_text() == apply_script(DESIRED)
    conf = (paths / "etc" / "nftables.conf").read_text()
    assert conf.startswith("#!/usr/sbin/nft -f\n\nflush ruleset\n\ntable inet filter {\n}\n")
    assert conf.rstrip().endswith('include "%s"' % (paths / "etc" / "nftables.d" / "portcullis.nft"))
    assert not (paths / "state" / ("rollback-%s.nft" % TOKEN)).exists()
    assert (paths / "etc" / "nftables.conf").stat().st_mode & 0o777 == 0o700  # its mode is kept
    assert (paths / "etc" / "nftables.d" / "portcullis.nft").stat().st_mode & 0o777 == 0o644


def test_confirm_too_late_or_forged():
    fake = FakeHost()
    with pytest.raises(FirewallError, match="confirmation came too late"):
        confirm(TOKEN, DESIRED, Host(fake.run))
    with pytest.raises(FirewallError, match="is not a rollback token"):
        confirm("../../etc/x", DESIRED, Host(fake.run))


def test_remove_deletes_only_what_is_ours(paths):
    fake = FakeHost()
    apply_table(DESIRED, Host(fake.run), None, 30, TOKEN)
    confirm(TOKEN, DESIRED, Host(fake.run))
    fake.live_json, fake.live_text = fixture("reject-nft-1.0.6.json"), fixture("reject-nft-1.0.6.txt")
    result = remove(Host(fake.run), check_mode=False)
    assert result["changed"] is True and result["diff"]["before"] == fixture("reject-nft-1.0.6.txt")
    assert not (paths / "etc" / "nftables.d" / "portcullis.nft").exists()
    assert (paths / "etc" / "nftables.conf").read_text() == (
        "#!/usr/sbin/nft -f\n\nflush ruleset\n\ntable inet filter {\n}\n")
    assert ["systemctl", "disable", "nftables.service"] in fake.calls  # we enabled it, so we disable it
    fake.live_json = fake.live_text = None
    assert remove(Host(fake.run), check_mode=False)["changed"] is False


def test_remove_leaves_a_service_it_did_not_enable(paths):
    fake = FakeHost(live_json=fixture("reject-nft-1.0.6.json"), live_text=fixture("reject-nft-1.0.6.txt"))
    fake.enabled = True  # enabled by someone else before Portcullis came
    apply_table(DESIRED, Host(fake.run), None, 30, TOKEN)
    confirm(TOKEN, DESIRED, Host(fake.run))
    remove(Host(fake.run), check_mode=False)
    assert not any(call[:2] == ["systemctl", "disable"] for call in fake.calls)


def test_remove_in_check_mode_changes_nothing(paths):
    fake = FakeHost(live_json=fixture("reject-nft-1.0.6.json"), live_text=fixture("reject-nft-1.0.6.txt"))
    assert remove(Host(fake.run), check_mode=True)["changed"] is True
    assert not any(call[:2] == ["nft", "-f"] for call in fake.calls)


def test_other_firewall_managers_are_detected(tmp_path, monkeypatch):
    fake = FakeHost()
    monkeypatch.setenv("PATH", str(tmp_path))
    assert Host(fake.run).active_managers() == []  # no ufw installed: not even asked
    assert fake.calls == [["systemctl", "is-active", "--quiet", "firewalld.service"]]
    ufw = tmp_path / "ufw"
    ufw.write_text("#!/bin/sh\n")
    ufw.chmod(0o755)

    def run(argv):
        fake.calls.append(argv)
        if argv[0] == str(ufw):
            return 0, "Status: active\n\nTo Action From\n", ""
        return 0, "", ""  # firewalld active too

    assert Host(run).active_managers() == ["firewalld", "ufw"]
