# Copyright (c) Portcullis contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""A change to a service's port that the host itself undoes unless the controller confirms it in time.

begin() backs up every file the change will touch (or notes that it does not exist yet), writes a rollback
script that puts them back and runs the given commands (daemon-reload, nft, semanage, restarts), and arms a
systemd timer that runs it after a timeout. The controller confirms with commit() over a new connection,
which disarms the timer; a failure found by the module itself runs the rollback at once (rollback_now()),
through the same script, so there is one way back.

Private to the collection. Commands go through one `run(argv) -> (rc, stdout, stderr)` callable.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil

from ansible_collections.portcullis.hardening.plugins.module_utils._firewall import (
    STATE_DIR,
    check_command,
    file_mode,
    persist,
    persistence_plan,
    read_file,
    write_file,
)
from ansible_collections.portcullis.hardening.plugins.module_utils._nftables import (
    PERSIST_PATH as FIREWALL_PERSIST,
    rollback_script as firewall_rollback_script,
)

TOKEN = re.compile(r"^[0-9a-f]{12}$")
MANIFEST = "manifest.json"
SCRIPT = "rollback.sh"
ROLLED_BACK = "rolled-back"
FIREWALL_ROLLBACK = "firewall-rollback.nft"


class TransactionError(Exception):
    """A step that failed; the message says which."""


def rollback_script(kind, token, restores, commands, directory):
    """The /bin/sh script that undoes a change: restore files, then run commands (argument lists).

    restores: [(path, backup path or None when the file did not exist)]. Every step runs even when one
    fails (the rest may still bring the service back); the script exits 1 if any failed and leaves the
    file ROLLED_BACK in `directory` as a trace.
    """
    lines = ["#!/bin/sh", "# Portcullis %s rollback %s: put back the files and the service as they were." % (kind, token),
             "status=0"]
    for path, backup in restores:
        if backup is None:
            lines.append("rm -f -- %s || status=1" % shlex.quote(path))
        else:
            lines.append("cp -p -- %s %s || status=1" % (shlex.quote(backup), shlex.quote(path)))
    for argv in commands:
        lines.append("%s || status=1" % shlex.join(argv))
    lines.append("date +%%s > %s" % shlex.quote(os.path.join(directory, ROLLED_BACK)))
    lines.append("exit $status")
    return "\n".join(lines) + "\n"


class Transaction:
    """One change in progress on the host, named by its token: /var/lib/portcullis/<kind>-<token>/."""

    def __init__(self, kind, token, run, state_dir=STATE_DIR):
        if not TOKEN.match(token or ""):
            raise TransactionError("token: %r is not a token of this module" % (token,))
        self.kind = kind
        self.token = token
        self.run = run
        self.state_dir = state_dir
        self.directory = os.path.join(state_dir, "%s-%s" % (kind, token))
        self.unit = "portcullis-%s-rollback-%s" % (kind, token)

    def file(self, name):
        """A file of this change's own directory."""
        return os.path.join(self.directory, name)

    def begin(self, paths, commands, timeout, data=None, files=None):
        """Back up `paths`, write `files` ({name: text}, for the commands) into the change's directory, write the
        rollback script and arm its timer (`timeout` seconds)."""
        os.makedirs(self.state_dir, mode=0o700, exist_ok=True)
        os.makedirs(self.directory, mode=0o700)
        for name, text in sorted((files or {}).items()):
            write_file(self.file(name), text, mode=0o600)
        restores = []
        for number, path in enumerate(paths):
            backup = None
            if os.path.exists(path):
                backup = os.path.join(self.directory, "file-%d" % number)
                shutil.copy2(path, backup)
                stat = os.stat(path)
                os.chown(backup, stat.st_uid, stat.st_gid)
            restores.append((path, backup))
        script = os.path.join(self.directory, SCRIPT)
        write_file(script, rollback_script(self.kind, self.token, restores, commands, self.directory), mode=0o700)
        write_file(os.path.join(self.directory, MANIFEST),
                   json.dumps({"restores": restores, "data": data or {}}, sort_keys=True, indent=1) + "\n", 0o600)
        check_command(self.run, ["systemd-run", "--unit", self.unit, "--on-active=%ds" % timeout,
                                 "--timer-property=AccuracySec=1s", "--property=Type=oneshot",
                                 "--description", "Portcullis: undo the %s change unless it is confirmed" % self.kind,
                                 "/bin/sh", script], "arming the rollback timer", TransactionError)

    def manifest(self):
        text = read_file(os.path.join(self.directory, MANIFEST))
        if text is None:
            raise TransactionError("no change %s is in progress on this host (%s is missing)"
                                   % (self.token, self.directory))
        return json.loads(text)

    def backup_text(self, path):
        """The text a file had before the change (None when it did not exist)."""
        for original, backup in self.manifest()["restores"]:
            if original == path:
                return read_file(backup) if backup else None
        raise TransactionError("%s is not part of change %s" % (path, self.token))

    def pending(self):
        rc, _out, _err = self.run(["systemctl", "is-active", "--quiet", self.unit + ".timer"])
        return rc == 0

    def rolled_back(self):
        return os.path.exists(os.path.join(self.directory, ROLLED_BACK))

    def rollback_now(self):
        """Run the rollback script now, as its systemd unit (outside this SSH session), and disarm the timer."""
        self.run(["systemctl", "stop", self.unit + ".timer"])
        rc, out, err = self.run(["systemctl", "start", self.unit + ".service"])
        if rc != 0 and not self.rolled_back():
            # The unit is gone (the timer fired and it was collected) or never loaded: run the script here.
            rc, out, err = self.run(["/bin/sh", os.path.join(self.directory, SCRIPT)])
        self.run(["systemctl", "reset-failed", self.unit + ".timer", self.unit + ".service"])
        if rc != 0:
            raise TransactionError("the rollback %s reported a failure (rc=%d): %s" % (
                self.unit, rc, (err or out).strip()))

    def firewall_restore(self, table_before):
        """({file name: text}, command) for begin(): put the Portcullis table back as `table_before` (its listing,
        None when there was none)."""
        return ({FIREWALL_ROLLBACK: firewall_rollback_script(table_before)},
                ["nft", "-f", self.file(FIREWALL_ROLLBACK)])

    def failed(self, step, exc):
        """Roll back now, after `step` failed with `exc`: the message, saying whether the rollback worked."""
        try:
            self.rollback_now()
            after = "the previous configuration was restored"
        except TransactionError as rollback_exc:
            after = "restoring the previous configuration ALSO failed: %s" % rollback_exc
        return "%s failed: %s; %s" % (step, str(exc).strip(), after)

    def commit(self):
        """Cancel the rollback and forget the backups. Fails when the timer already ran the rollback."""
        if not self.pending():
            raise TransactionError("confirmation came too late: the rollback timer %s.timer is no longer armed, "
                                   "so the host put back the previous configuration" % self.unit)
        self.forget()

    def forget(self):
        """Disarm the timer (if armed) and remove the backups: the change is over, one way or the other."""
        self.run(["systemctl", "stop", self.unit + ".timer"])
        self.run(["systemctl", "reset-failed", self.unit + ".timer", self.unit + ".service"])
        shutil.rmtree(self.directory, ignore_errors=True)


def commit_with_firewall(transaction, firewall_host):
    """Commit the change, then persist the firewall table it set (data "firewall_final") where the firewall's
    rules are persisted already; the persistence plan that ran."""
    data = transaction.manifest()["data"]
    transaction.commit()
    persisted = {}
    if data.get("firewall_final") and os.path.exists(FIREWALL_PERSIST):
        persisted = persistence_plan(data["firewall_final"], firewall_host)
        persist(data["firewall_final"], firewall_host, persisted)
    return {"changed": True, "committed": True, "firewall_persistence": persisted}


def write_edits(edits):
    """Write {path: text} (keeping each file's mode; 0644 for new ones), deleting the paths whose text is None."""
    for path, text in sorted(edits.items()):
        if text is None:
            if os.path.exists(path):
                os.unlink(path)
        else:
            write_file(path, text, mode=file_mode(path, 0o644))


def file_diff(path, before, after):
    """One entry of a module's diff list: a file (or a listing) before and after."""
    return {"before_header": path, "after_header": path, "before": before or "", "after": after or ""}


def pending_tokens(kind, run, state_dir=STATE_DIR):
    """Tokens of earlier changes of `kind` whose rollback timer is still armed (a controller lost midway)."""
    found = []
    for name in sorted(os.listdir(state_dir)) if os.path.isdir(state_dir) else []:
        match = re.match(r"^%s-([0-9a-f]{12})$" % re.escape(kind), name)
        if match and Transaction(kind, match.group(1), run, state_dir).pending():
            found.append(match.group(1))
    return found


def refuse_if_pending(kind, run, state_dir=STATE_DIR):
    """Fail when an earlier change is still armed: its timer would undo whatever this run does."""
    pending = pending_tokens(kind, run, state_dir)
    if pending:
        raise TransactionError(
            "plan: an earlier %s change (%s) is still waiting for its confirmation on this host; its rollback timer "
            "(portcullis-%s-rollback-%s.timer) will put the previous configuration back. Run again once it has "
            "fired (nothing was changed)" % (kind, ", ".join(pending), kind, pending[0]))


def clear_stale(kind, run, state_dir=STATE_DIR):
    """Remove the directories of earlier changes whose timer is no longer armed (rolled back, or abandoned)."""
    if not os.path.isdir(state_dir):
        return
    for name in os.listdir(state_dir):
        found = re.match(r"^%s-([0-9a-f]{12})$" % re.escape(kind), name)
        if found and not Transaction(kind, found.group(1), run, state_dir).pending():
            shutil.rmtree(os.path.join(state_dir, name), ignore_errors=True)
