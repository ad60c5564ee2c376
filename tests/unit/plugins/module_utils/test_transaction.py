# Copyright (c) Portcullis contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The change the host undoes by itself unless confirmed: the rollback script (run for real with /bin/sh,
on files in a temporary directory) and the Transaction's steps through a fake command runner."""

from __future__ import annotations

import json
import os
import shlex
import stat
import subprocess

import pytest

from ansible_collections.portcullis.hardening.plugins.module_utils._transaction import (
    MANIFEST,
    ROLLED_BACK,
    SCRIPT,
    Transaction,
    TransactionError,
    clear_stale,
    pending_tokens,
    refuse_if_pending,
    rollback_script,
)

TOKEN = "0123456789ab"
OTHER_TOKEN = "ba9876543210"
KIND = "ssh-port"
UNIT = "portcullis-ssh-port-rollback-" + TOKEN


def run_script(path, cwd=None):
    return subprocess.run(["/bin/sh", path], capture_output=True, text=True, check=False, cwd=cwd)


def write(path, text):
    with open(str(path), "w") as handle:
        handle.write(text)


def read(path):
    with open(str(path)) as handle:
        return handle.read()


class FakeRun:
    """A command runner: systemd-run arms a timer, `systemctl stop` disarms it, `systemctl start` of the
    rollback service and `/bin/sh script` run the script for real (as systemd would, outside the session)."""

    def __init__(self, fail=()):
        self.calls = []
        self.armed = set()
        self.fail = set(fail)  # argv prefixes (joined by spaces) that fail with rc 1
        self.service_loaded = True

    def __call__(self, argv):
        argv = list(argv)
        self.calls.append(argv)
        for prefix in self.fail:
            if " ".join(argv).startswith(prefix):
                return 1, "", "Failed: %s" % prefix
        if argv[0] == "systemd-run":
            self.armed.add(argv[argv.index("--unit") + 1])
            return 0, "", "Running timer as unit: %s.timer\n" % argv[argv.index("--unit") + 1]
        if argv[:3] == ["systemctl", "is-active", "--quiet"]:
            return (0 if argv[3][:-len(".timer")] in self.armed else 3), "", ""
        if argv[:2] == ["systemctl", "stop"] and argv[2].endswith(".timer"):
            self.armed.discard(argv[2][:-len(".timer")])
            return 0, "", ""
        if argv[:2] == ["systemctl", "start"] and argv[2].endswith(".service"):
            if not self.service_loaded:
                return 5, "", "Failed to start %s: Unit %s not found.\n" % (argv[2], argv[2])
            script = self.scripts.get(argv[2][:-len(".service")])
            done = run_script(script)
            return (0 if done.returncode == 0 else 3), "", done.stderr
        if argv[0] == "/bin/sh":
            done = run_script(argv[1])
            return done.returncode, done.stdout, done.stderr
        return 0, "", ""

    @property
    def scripts(self):
        """unit -> script path, from the systemd-run calls."""
        return dict((argv[argv.index("--unit") + 1], argv[-1]) for argv in self.calls if argv[0] == "systemd-run")

    def called(self, *prefix):
        return [argv for argv in self.calls if argv[:len(prefix)] == list(prefix)]


# --- rollback_script -----------------------------------------------------------------------------------

def test_rollback_script_text():
    script = rollback_script(KIND, TOKEN, [("/etc/ssh/sshd_config", "/var/lib/portcullis/ssh-port-x/file-0"),
                                           ("/etc/ssh/sshd_config.d/portcullis-ssh-port.conf", None)],
                             [["systemctl", "daemon-reload"], ["systemctl", "restart", "ssh.service"]],
                             "/var/lib/portcullis/ssh-port-x")
    assert script == (
        "#!/bin/sh\n"
        "# Portcullis ssh-port rollback 0123456789ab: put back the files and the service as they were.\n"
        "status=0\n"
        "cp -p -- /var/lib/portcullis/ssh-port-x/file-0 /etc/ssh/sshd_config || status=1\n"
        "rm -f -- /etc/ssh/sshd_config.d/portcullis-ssh-port.conf || status=1\n"
        "systemctl daemon-reload || status=1\n"
        "systemctl restart ssh.service || status=1\n"
        "date +%s > /var/lib/portcullis/ssh-port-x/rolled-back\n"
        "exit $status\n")


def test_rollback_script_quotes_every_word():
    odd = "/tmp/a dir/it's $(touch pwned);.conf"
    script = rollback_script(KIND, TOKEN, [(odd, "/b k/file-0"), (odd + "2", None)],
                             [["nft", "-f", "/x y/firewall rollback.nft"], ["echo", "a;b", "$HOME"]], "/d i r")
    lines = script.splitlines()
    assert lines[3] == "cp -p -- %s %s || status=1" % (shlex.quote("/b k/file-0"), shlex.quote(odd))
    assert lines[4] == "rm -f -- %s || status=1" % shlex.quote(odd + "2")
    assert lines[5] == "nft -f '/x y/firewall rollback.nft' || status=1"
    assert lines[6] == "echo 'a;b' '$HOME' || status=1"
    assert lines[7] == "date +%s > '/d i r/rolled-back'"
    assert shlex.split(lines[3])[:5] == ["cp", "-p", "--", "/b k/file-0", odd]


def test_rollback_script_every_command_is_checked():
    commands = [["true"], ["false"], ["systemctl", "restart", "ssh.service"]]
    lines = rollback_script(KIND, TOKEN, [], commands, "/d").splitlines()
    body = lines[3:-2]
    assert body == [shlex.join(argv) + " || status=1" for argv in commands]
    assert lines[-1] == "exit $status"
    assert lines[2] == "status=0"


def make_tree(tmp_path):
    """A changed file with its backup, a file that did not exist before, and a state directory."""
    etc = tmp_path / "etc dir"
    etc.mkdir()
    state = tmp_path / "state"
    state.mkdir()
    changed = etc / "sshd_config"
    write(changed, "Port 2222\n")
    backup = state / "file-0"
    write(backup, "Port 22\n")
    os.chmod(str(backup), 0o600)
    created = etc / "it's new.conf"
    write(created, "ListenAddress ::\n")
    restores = [(str(changed), str(backup)), (str(created), None), (str(etc / "never-there.conf"), None)]
    return changed, created, state, restores


def test_rollback_script_restores_files_when_run(tmp_path):
    changed, created, state, restores = make_tree(tmp_path)
    script = state / SCRIPT
    trace = tmp_path / "ran"
    write(script, rollback_script(KIND, TOKEN, restores, [["true"], ["touch", str(trace)]], str(state)))
    done = run_script(str(script))
    assert done.returncode == 0, done.stderr
    assert read(changed) == "Port 22\n"
    assert stat.S_IMODE(os.stat(str(changed)).st_mode) == 0o600  # cp -p keeps the backup's mode
    assert not created.exists()
    assert trace.exists()
    assert read(state / ROLLED_BACK).strip().isdigit()


def test_rollback_script_runs_every_step_and_exits_1_when_one_fails(tmp_path):
    changed, created, state, restores = make_tree(tmp_path)
    script = state / SCRIPT
    trace = tmp_path / "ran after the failure"
    write(script, rollback_script(KIND, TOKEN, restores, [["false"], ["touch", str(trace)]], str(state)))
    done = run_script(str(script))
    assert done.returncode == 1
    assert read(changed) == "Port 22\n"
    assert not created.exists()
    assert trace.exists()
    assert (state / ROLLED_BACK).exists()


def test_rollback_script_failed_restore_is_reported_and_the_rest_still_runs(tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    target = tmp_path / "target"
    trace = tmp_path / "trace"
    script = state / SCRIPT
    write(script, rollback_script(KIND, TOKEN, [(str(target), str(state / "missing-backup"))],
                                  [["touch", str(trace)]], str(state)))
    done = run_script(str(script))
    assert done.returncode == 1
    assert not target.exists()
    assert trace.exists()


def test_rollback_script_does_not_run_what_a_path_holds(tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    odd = str(tmp_path / "x $(touch pwned) `touch pwned`; touch pwned")
    write(odd, "text")
    script = state / SCRIPT
    write(script, rollback_script(KIND, TOKEN, [(odd, None)], [["echo", "$(touch pwned)"]], str(state)))
    done = run_script(str(script), cwd=str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert not os.path.exists(odd)
    assert not (tmp_path / "pwned").exists()
    assert done.stdout == "$(touch pwned)\n"


# --- Transaction -------------------------------------------------------------------------------------

@pytest.mark.parametrize("token", [None, "", "0123456789a", "0123456789abc", "0123456789AB", "../../../etc",
                                   "0123456789a/", "g123456789ab"])
def test_transaction_bad_token_raises(token, tmp_path):
    with pytest.raises(TransactionError, match="is not a token of this module"):
        Transaction(KIND, token, FakeRun(), state_dir=str(tmp_path))


def test_transaction_names(tmp_path):
    transaction = Transaction(KIND, TOKEN, FakeRun(), state_dir=str(tmp_path))
    assert transaction.directory == os.path.join(str(tmp_path), "ssh-port-" + TOKEN)
    assert transaction.unit == UNIT


@pytest.fixture
def started(tmp_path):
    """A Transaction begun on an existing file and one that does not exist yet."""
    existing = tmp_path / "etc" / "sshd_config"
    existing.parent.mkdir()
    write(existing, "Port 22\n")
    os.chmod(str(existing), 0o640)
    absent = tmp_path / "etc" / "sshd_config.d" / "portcullis-ssh-port.conf"
    run = FakeRun()
    transaction = Transaction(KIND, TOKEN, run, state_dir=str(tmp_path / "state"))
    # The script really runs in some tests: harmless commands only.
    commands = [["true"], ["touch", str(tmp_path / "commands ran")]]
    transaction.begin([str(existing), str(absent)], commands, 90, data={"port": 2222})
    return transaction, run, existing, absent, commands


def test_begin_backs_up_files_and_records_absent_ones(started):
    transaction, _run, existing, absent, _commands = started
    backup = os.path.join(transaction.directory, "file-0")
    assert read(backup) == "Port 22\n"
    assert stat.S_IMODE(os.stat(backup).st_mode) == 0o640
    assert os.stat(backup).st_uid == os.stat(str(existing)).st_uid
    assert sorted(os.listdir(transaction.directory)) == sorted(["file-0", MANIFEST, SCRIPT])
    manifest = json.loads(read(os.path.join(transaction.directory, MANIFEST)))
    assert manifest == {"restores": [[str(existing), backup], [str(absent), None]], "data": {"port": 2222}}
    assert transaction.manifest() == manifest
    assert stat.S_IMODE(os.stat(transaction.directory).st_mode) == 0o700


def test_begin_writes_the_rollback_script(started):
    transaction, _run, existing, absent, commands = started
    script = os.path.join(transaction.directory, SCRIPT)
    backup = os.path.join(transaction.directory, "file-0")
    assert read(script) == rollback_script(KIND, TOKEN, [(str(existing), backup), (str(absent), None)], commands,
                                           transaction.directory)
    assert stat.S_IMODE(os.stat(script).st_mode) == 0o700


def test_begin_arms_the_timer(started):
    transaction, run, _existing, _absent, _commands = started
    (argv,) = run.called("systemd-run")
    assert argv[argv.index("--unit") + 1] == UNIT
    assert "--on-active=90s" in argv
    assert "--timer-property=AccuracySec=1s" in argv
    assert argv[-2:] == ["/bin/sh", os.path.join(transaction.directory, SCRIPT)]
    assert transaction.pending()


def test_begin_fails_when_the_timer_cannot_be_armed(tmp_path):
    transaction = Transaction(KIND, TOKEN, FakeRun(fail=["systemd-run"]), state_dir=str(tmp_path))
    with pytest.raises(TransactionError, match=r"^arming the rollback timer failed \(systemd-run .*rc=1\): Failed"):
        transaction.begin([], [], 60)


def test_begin_without_data_records_an_empty_mapping(tmp_path):
    transaction = Transaction(KIND, TOKEN, FakeRun(), state_dir=str(tmp_path / "new" / "state"))
    transaction.begin([], [], 60)
    assert transaction.manifest() == {"restores": [], "data": {}}


def test_backup_text(started):
    transaction, _run, existing, absent, _commands = started
    write(existing, "Port 2222\n")  # the change
    assert transaction.backup_text(str(existing)) == "Port 22\n"
    assert transaction.backup_text(str(absent)) is None
    with pytest.raises(TransactionError, match="/etc/other is not part of change 0123456789ab"):
        transaction.backup_text("/etc/other")


def test_manifest_of_a_change_that_was_never_begun(tmp_path):
    transaction = Transaction(KIND, TOKEN, FakeRun(), state_dir=str(tmp_path))
    with pytest.raises(TransactionError, match="no change 0123456789ab is in progress"):
        transaction.manifest()
    with pytest.raises(TransactionError, match="no change 0123456789ab is in progress"):
        transaction.backup_text("/etc/ssh/sshd_config")


def test_commit_disarms_and_forgets(started):
    transaction, run, _existing, _absent, _commands = started
    transaction.commit()
    assert not os.path.exists(transaction.directory)
    assert ["systemctl", "stop", UNIT + ".timer"] in run.calls
    assert ["systemctl", "reset-failed", UNIT + ".timer", UNIT + ".service"] in run.calls
    assert not transaction.pending()


def test_commit_too_late_raises_and_keeps_the_trace(started):
    transaction, run, _existing, _absent, _commands = started
    run.armed.clear()  # the timer fired: systemctl is-active answers 3
    with pytest.raises(TransactionError, match="confirmation came too late: the rollback timer "
                                               "portcullis-ssh-port-rollback-0123456789ab.timer is no longer armed"):
        transaction.commit()
    assert os.path.isdir(transaction.directory)
    assert run.called("systemctl", "is-active", "--quiet", UNIT + ".timer")


def test_rollback_now_runs_the_script_as_its_unit(started):
    transaction, run, existing, absent, _commands = started
    write(existing, "Port 2222\n")
    absent.parent.mkdir()
    write(absent, "Port 2222\n")
    transaction.rollback_now()
    assert read(existing) == "Port 22\n"
    assert not absent.exists()
    assert transaction.rolled_back()
    assert (existing.parent.parent / "commands ran").exists()
    assert not transaction.pending()
    assert run.called("systemctl", "start", UNIT + ".service")
    assert not run.called("/bin/sh")  # systemd ran it


def test_rollback_now_runs_the_script_itself_when_the_unit_is_gone(started):
    transaction, run, existing, _absent, _commands = started
    write(existing, "Port 2222\n")
    run.service_loaded = False
    transaction.rollback_now()
    assert read(existing) == "Port 22\n"
    assert transaction.rolled_back()
    assert run.called("/bin/sh", os.path.join(transaction.directory, SCRIPT))


def test_rollback_now_reports_a_failed_step(tmp_path):
    run = FakeRun()
    transaction = Transaction(KIND, TOKEN, run, state_dir=str(tmp_path))
    transaction.begin([], [["false"]], 60)
    with pytest.raises(TransactionError, match="the rollback portcullis-ssh-port-rollback-0123456789ab reported a "
                                               r"failure \(rc=3\)"):
        transaction.rollback_now()
    assert transaction.rolled_back()  # the script ran to its end all the same


def test_forget_removes_the_directory_even_when_not_armed(started):
    transaction, run, _existing, _absent, _commands = started
    run.armed.clear()
    transaction.forget()
    assert not os.path.exists(transaction.directory)


# --- clear_stale ---------------------------------------------------------------------------------------

def test_clear_stale_removes_directories_whose_timer_is_gone(tmp_path):
    run = FakeRun()
    state = str(tmp_path)
    live = Transaction(KIND, TOKEN, run, state_dir=state)
    live.begin([], [], 60)
    stale = Transaction(KIND, OTHER_TOKEN, run, state_dir=state)
    stale.begin([], [], 60)
    run.armed.discard(stale.unit)
    for name in ("firewall-" + OTHER_TOKEN, "ssh-port-notatoken00", "ssh-port-" + OTHER_TOKEN + "0"):
        os.mkdir(os.path.join(state, name))
    write(tmp_path / "firewall.json", "{}")
    clear_stale(KIND, run, state_dir=state)
    assert sorted(os.listdir(state)) == sorted(["firewall-" + OTHER_TOKEN, "firewall.json", "ssh-port-notatoken00",
                                                "ssh-port-" + OTHER_TOKEN + "0", "ssh-port-" + TOKEN])
    assert live.manifest() == {"restores": [], "data": {}}


def test_clear_stale_only_looks_at_its_own_kind(tmp_path):
    run = FakeRun()
    other = Transaction("service-port", OTHER_TOKEN, run, state_dir=str(tmp_path))
    other.begin([], [], 60)
    run.armed.clear()
    clear_stale(KIND, run, state_dir=str(tmp_path))
    assert os.path.isdir(other.directory)
    clear_stale("service-port", run, state_dir=str(tmp_path))
    assert not os.path.exists(other.directory)


def test_clear_stale_without_a_state_directory_does_nothing(tmp_path):
    run = FakeRun()
    clear_stale(KIND, run, state_dir=str(tmp_path / "missing"))
    assert run.calls == []
    assert not (tmp_path / "missing").exists()


def test_an_armed_earlier_change_is_refused_until_its_timer_fired(tmp_path):
    run = FakeRun()
    state = str(tmp_path)
    refuse_if_pending(KIND, run, state_dir=state)  # nothing there
    earlier = Transaction(KIND, TOKEN, run, state_dir=state)
    earlier.begin([], [], 60)
    assert pending_tokens(KIND, run, state_dir=state) == [TOKEN]
    with pytest.raises(TransactionError, match=r"an earlier %s change \(%s\) is still waiting .*portcullis-%s-rollback-%s"
                       r"\.timer.*\(nothing was changed\)" % (KIND, TOKEN, KIND, TOKEN)):
        refuse_if_pending(KIND, run, state_dir=state)
    refuse_if_pending("service-port", run, state_dir=state)  # another kind is no conflict
    run.armed.discard(earlier.unit)
    assert pending_tokens(KIND, run, state_dir=state) == []
    refuse_if_pending(KIND, run, state_dir=state)
