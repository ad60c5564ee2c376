# Copyright (c) Portcullis contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The change engine, on real files under a temporary root, with the rollback script run for real by /bin/sh.

Each defect of the old engines has a regression test here: a commit racing the rollback, a reboot while armed,
a change while another is armed, two runs at once, a failure after disarm misreported.
"""

from __future__ import annotations

import fcntl
import json
import os

import pytest

from ansible_collections.portcullis.hardening.plugins.module_utils._host import HostBusy
from ansible_collections.portcullis.hardening.plugins.module_utils._transaction import (
    ARMED,
    BOOT_UNIT_PATH,
    CLAIM,
    HISTORY,
    LOCK,
    ChangePending,
    Engine,
    RolledBack,
    TransactionError,
    rollback_script,
)

from .fakehost import fake_host, host_file, read_host_file, write_host_file

TOKEN = "0123456789ab"
OTHER = "ba9876543210"
CONFIG = "/etc/demo/demo.conf"


@pytest.fixture
def armed(tmp_path):
    """An engine with a change armed that backed up CONFIG and /etc/demo/new.conf (absent), then changed both."""
    host, system = fake_host(tmp_path)
    write_host_file(tmp_path, CONFIG, "Port 22\n")
    engine = Engine(host, lock_wait=0.3, rollback_wait=1)
    engine.arm("demo", TOKEN, "demo to 2222", [CONFIG, "/etc/demo/new.conf"], 60,
               live_commands=[["systemctl", "restart", "demo.service"]], boot_commands=[["systemctl", "daemon-reload"]])
    write_host_file(tmp_path, CONFIG, "Port 2222\n")
    write_host_file(tmp_path, "/etc/demo/new.conf", "added\n")
    return engine, system, tmp_path


def test_arm_backs_up_writes_the_script_and_arms_a_timer(armed):
    engine, system, root = armed
    change = engine.armed()
    assert (change.token, change.kind, change.claimed_by) == (TOKEN, "demo", None)
    assert change.expires_at - change.manifest["armed_at"] == 60
    assert read_host_file(root, ARMED + "/file-0") == "Port 22\n"
    assert change.manifest["restores"] == [[CONFIG, ARMED + "/file-0"], ["/etc/demo/new.conf", None]]
    assert list(system.timers) == ["portcullis-rollback-%s.timer" % TOKEN]
    assert oct(os.stat(host_file(root, ARMED + "/rollback.sh")).st_mode & 0o777) == "0o700"


def test_the_boot_unit_runs_before_sshd_and_nftables_while_a_change_is_armed(armed):
    _engine, system, root = armed
    unit = read_host_file(root, BOOT_UNIT_PATH)
    for needed in ("DefaultDependencies=no", "nftables.service", "ssh.service", "ssh.socket", "sshd.service",
                   "ConditionPathExists=%s" % host_file(root, ARMED + "/rollback.sh"), "WantedBy=sysinit.target",
                   " boot\n"):
        assert needed in unit
    assert ["systemctl", "enable", "portcullis-rollback.service"] in system.calls


def test_the_timer_restores_every_file_and_runs_the_live_commands(armed):
    engine, system, root = armed
    rc, _out, err = system.fire()
    assert rc == 0, err
    assert read_host_file(root, CONFIG) == "Port 22\n"
    assert read_host_file(root, "/etc/demo/new.conf") is None
    assert system.script_commands() == ["systemctl restart demo.service"]
    assert engine.armed() is None
    done = engine.finished(TOKEN)
    assert (done.claimed_by, done.status) == ("timer", 0)


def test_a_commit_after_the_timer_fired_says_rolled_back(armed):
    engine, system, _root = armed
    system.fire()
    with pytest.raises(RolledBack) as error:
        engine.commit(TOKEN, "demo")
    assert "its rollback timer put the previous configuration back" in str(error.value)


def test_defect_1_a_commit_while_the_rollback_runs_reports_rolled_back_not_success(armed):
    # The timer elapsed and its service claimed the change but is still running: systemctl still calls the timer
    # active (the old engine's test), so only the claim tells.
    engine, system, root = armed
    os.mkdir(host_file(root, ARMED + "/" + CLAIM))
    write_host_file(root, ARMED + "/%s/by" % CLAIM, "timer 1700000000\n")
    assert "portcullis-rollback-%s.timer" % TOKEN in system.timers
    with pytest.raises(RolledBack) as error:
        engine.commit(TOKEN, "demo")
    assert "is being rolled back right now" in str(error.value)
    assert read_host_file(root, ARMED + "/manifest.json") is not None  # nothing deleted under the script


def test_defect_1_the_commit_stops_the_timer_before_it_claims(armed):
    engine, system, root = armed
    engine.commit(TOKEN, "demo")
    stop = system.calls.index(["systemctl", "stop", "portcullis-rollback-%s.timer" % TOKEN])
    assert stop >= 0
    assert engine.armed() is None and engine.finished(TOKEN).claimed_by == "commit"
    # The script, should its service still start, finds the change gone and does nothing.
    rc, _out, _err = system.run_script(["/bin/sh", host_file(root, HISTORY + "/%s/rollback.sh" % TOKEN), "timer"])
    assert rc == 0 and read_host_file(root, CONFIG) == "Port 2222\n"


def test_a_rollback_script_that_loses_the_claim_changes_nothing(armed):
    _engine, system, root = armed
    os.mkdir(host_file(root, ARMED + "/" + CLAIM))
    rc, _out, _err = system.fire()
    assert rc == 0 and read_host_file(root, CONFIG) == "Port 2222\n" and system.script_commands() == []


def test_defect_2_a_reboot_while_armed_restores_the_files_before_the_services_start(armed):
    engine, system, root = armed
    rc, _out, err = system.run_script(["/bin/sh", host_file(root, ARMED + "/rollback.sh"), "boot"])
    assert rc == 0, err
    assert read_host_file(root, CONFIG) == "Port 22\n"
    assert system.script_commands() == ["systemctl daemon-reload"]  # no restart: the services start after it
    with pytest.raises(RolledBack) as error:
        engine.commit(TOKEN, "demo")
    assert "the host restarted while it was armed" in str(error.value)


def test_defect_3_every_change_is_refused_while_one_is_armed(armed):
    engine, _system, _root = armed
    with pytest.raises(ChangePending) as error:
        engine.refuse_if_pending("firewall")
    message = str(error.value)
    for word in ("the demo change %s" % TOKEN, "portcullis-rollback-%s.timer" % TOKEN, "UTC", "Nothing was changed"):
        assert word in message
    with pytest.raises(TransactionError):
        engine.arm("firewall", OTHER, "another", [], 60)


def test_defect_3_refused_while_a_rollback_runs(armed):
    engine, _system, root = armed
    os.mkdir(host_file(root, ARMED + "/" + CLAIM))
    with pytest.raises(ChangePending) as error:
        engine.refuse_if_pending("ssh_port")
    assert "is being rolled back right now" in str(error.value)


def test_an_armed_change_whose_timer_vanished_is_rolled_back_first(armed):
    engine, system, root = armed
    system.timers.clear()  # stopped by hand
    assert "a real run rolls it back first" in engine.refuse_if_pending("plan", check_mode=True)[0]
    assert read_host_file(root, CONFIG) == "Port 2222\n"  # check mode changed nothing
    warnings = engine.refuse_if_pending("firewall")
    assert "rolled back first" in warnings[0]
    assert read_host_file(root, CONFIG) == "Port 22\n" and engine.armed() is None


def test_defect_4_a_second_run_gets_a_clear_busy_error_while_the_lock_is_held(armed):
    engine, _system, root = armed
    path = host_file(root, LOCK)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as holder:
        fcntl.flock(holder, fcntl.LOCK_EX)
        with pytest.raises(HostBusy) as error:
            with engine.locked("firewall"):
                pass
    assert "another Portcullis run holds the host lock" in str(error.value)
    with engine.locked("firewall"):  # released: taken at once
        pass


def test_defect_5_a_failure_while_committing_rolls_back_and_says_so(armed):
    engine, _system, root = armed

    def persist(_change):
        write_host_file(root, "/etc/demo/new.conf", "persisted half\n")
        raise TransactionError("persisting failed: read-only file system")

    with pytest.raises(RolledBack) as error:
        engine.commit(TOKEN, "demo", finish=persist)
    assert "persisting failed" in str(error.value) and "an immediate rollback put the previous" in str(error.value)
    assert read_host_file(root, CONFIG) == "Port 22\n" and read_host_file(root, "/etc/demo/new.conf") is None


def test_rollback_now_reports_what_it_did(armed):
    engine, _system, root = armed
    assert "an immediate rollback put the previous configuration back" in engine.rollback_now(TOKEN, "demo")
    assert read_host_file(root, CONFIG) == "Port 22\n"
    # A second rollback (the controller retrying over another port) finds it done and says so.
    assert "put the previous configuration back" in engine.rollback_now(TOKEN, "demo")


def test_a_step_with_a_wrong_token_or_kind_is_refused(armed):
    engine, _system, _root = armed
    with pytest.raises(TransactionError) as error:
        engine.require(OTHER, "demo", "finalize")
    assert "no demo change %s is armed" % OTHER in str(error.value)
    with pytest.raises(TransactionError):
        engine.require(TOKEN, "firewall", "confirm")
    with pytest.raises(TransactionError):
        engine.finished("../../etc")


def test_a_failed_timer_leaves_nothing_armed(tmp_path):
    host, system = fake_host(tmp_path)
    system.respond(["systemd-run"], rc=1, err="Failed to start transient timer unit")
    with pytest.raises(TransactionError) as error:
        Engine(host).arm("demo", TOKEN, "demo", [], 60)
    assert "nothing was changed" in str(error.value)
    assert Engine(host).armed() is None


def test_rollback_writes_through_a_symlink(tmp_path):
    host, system = fake_host(tmp_path)
    target = write_host_file(tmp_path, "/etc/real/sshd_config", "Port 22\n")
    os.makedirs(host_file(tmp_path, "/etc/ssh"), exist_ok=True)
    os.symlink("../real/sshd_config", host_file(tmp_path, "/etc/ssh/sshd_config"))
    engine = Engine(host)
    engine.arm("demo", TOKEN, "demo", ["/etc/ssh/sshd_config"], 60)
    host.write("/etc/ssh/sshd_config", "Port 2222\n")
    assert os.path.islink(host_file(tmp_path, "/etc/ssh/sshd_config"))
    system.fire()
    assert os.path.islink(host_file(tmp_path, "/etc/ssh/sshd_config"))
    with open(target) as stream:
        assert stream.read() == "Port 22\n"


def test_the_script_quotes_every_word_and_runs_every_step():
    script = rollback_script(TOKEN, "demo", [("/etc/a b", "/var/x"), ("/etc/$(reboot)", None)],
                             [["systemctl", "restart", "a;b"]], [])
    assert "cp -p -- /var/x '/etc/a b' || status=1" in script
    assert "rm -f -- '/etc/$(reboot)' 2>/dev/null || [ ! -e '/etc/$(reboot)' ] || status=1" in script
    assert "systemctl restart 'a;b' || status=1" in script
    # The claim comes before anything is restored.
    assert script.index('mkdir "$armed/started"') < script.index("cp -p")


def test_history_is_bounded(tmp_path):
    host, _system = fake_host(tmp_path)
    engine = Engine(host)
    for number in range(25):
        token = "%012x" % number
        engine.arm("demo", token, "demo", [], 60)
        engine.commit(token, "demo")
    assert len(os.listdir(host_file(tmp_path, HISTORY))) == 20


def test_the_manifest_is_private(armed):
    _engine, _system, root = armed
    path = host_file(root, ARMED + "/manifest.json")
    assert os.stat(path).st_mode & 0o077 == 0
    with open(path) as stream:
        assert json.load(stream)["description"] == "demo to 2222"


def test_defect_1_the_timer_claiming_while_the_commit_persists_wins_and_the_commit_says_so(armed):
    # The timer fires while finish() persists: its script claims the change (and then waits for the host lock the
    # commit holds). The commit's own claim fails: it reports the rollback at once instead of waiting for it.
    engine, _system, root = armed

    def persist(_change):
        os.mkdir(host_file(root, ARMED + "/" + CLAIM))
        write_host_file(root, ARMED + "/%s/by" % CLAIM, "timer 1700000000\n")

    with pytest.raises(RolledBack) as error:
        engine.commit(TOKEN, "demo", finish=persist)
    assert "the rollback timer fired while committing" in str(error.value)
    assert "is putting the previous configuration back" in str(error.value)
    # What the step can say about it, without waiting for the script that waits for the step's lock.
    assert "is putting the previous configuration back" in engine.rollback_now(TOKEN, "demo")


def test_a_timer_fired_rollback_waits_for_a_step_that_holds_the_lock(armed):
    _engine, _system, root = armed
    script = read_host_file(root, ARMED + "/rollback.sh")
    claim, wait, restore = (script.index('mkdir "$armed/started"'), script.index("flock -w"),
                            script.index("cp -p"))
    assert claim < wait < restore
    assert '[ "$by" = timer ]' in script[:wait]  # `now` runs under the caller's lock, `boot` has none
