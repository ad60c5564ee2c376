# Copyright (c) Portcullis contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The change engine: every change Portcullis makes on a host is armed, locked, reboot-safe and race-free.

One change at a time. A module step runs under the host lock (flock on /run/portcullis/lock). Arming
backs up every file the change may touch into /var/lib/portcullis/armed/ (created by one rename, so it is
either whole or absent), with a /bin/sh rollback script, and arms a transient systemd timer that runs the script
unless the controller commits in time. While that directory exists every other change is refused, naming the
armed one and when it expires: between two steps of one change the armed directory is the lock.

The rollback script's very first step claims the change (mkdir armed/started). A commit stops the timer first and
then claims the same way, so exactly one of them wins: a commit that loses reports "rolled back". A persistent
boot unit (portcullis-rollback.service, before sshd and nftables start) runs the script of a change that is still
armed when the host boots: a reboot before the commit comes up with the previous configuration. Finished changes
move to /var/lib/portcullis/history/<token>/ with who ended them, when, and the script's status.

The engine knows nothing of firewalls or sshd: its users (the firewall, the moves, the service stops) give it the
paths to back up and the commands that undo the rest. Private to the collection.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import time

from ansible_collections.portcullis.hardening.plugins.module_utils._host import PortcullisError
from ansible_collections.portcullis.hardening.plugins.module_utils._systemd import (
    SYSTEMCTL,
    run_now_argv,
    timer_argv,
)

STATE_DIR = "/var/lib/portcullis"
ARMED = STATE_DIR + "/armed"
HISTORY = STATE_DIR + "/history"
RUN_DIR = "/run/portcullis"
LOCK = RUN_DIR + "/lock"
# Test hook: when this file exists, the rollback script sleeps that many seconds after claiming the change.
SLOW_ROLLBACK_HOOK = RUN_DIR + "/test-slow-rollback"
BOOT_UNIT_NAME = "portcullis-rollback.service"
BOOT_UNIT_PATH = "/etc/systemd/system/" + BOOT_UNIT_NAME
MANIFEST = "manifest.json"
SCRIPT = "rollback.sh"
CLAIM = "started"
TOKEN = re.compile(r"^[0-9a-f]{12}$")
LOCK_WAIT_SECONDS = 30
# How long a step waits for a rollback that another party (the timer) is running to end.
ROLLBACK_WAIT_SECONDS = 90
HISTORY_KEPT = 20

BOOT_UNIT = """\
# Managed by portcullis.hardening: at boot, undo a change that was never confirmed (see docs/reliability.md).
[Unit]
Description=Portcullis: undo an unconfirmed change before sshd and the firewall start
DefaultDependencies=no
After=local-fs.target
Before=sysinit.target shutdown.target network-pre.target nftables.service ufw.service firewalld.service ssh.socket ssh.service sshd.service
Conflicts=shutdown.target
ConditionPathExists=%(script)s

[Service]
Type=oneshot
ExecStart=/bin/sh %(script)s boot

[Install]
WantedBy=sysinit.target
"""


class TransactionError(PortcullisError):
    """A change could not be armed, committed or rolled back; the message says what the host is in now."""


class ChangePending(TransactionError):
    """Another change is armed or being rolled back: nothing was changed."""

    details = {"rolled_back": False, "host_state": "unchanged: another change is pending"}


class AlreadyCommitted(TransactionError):
    """The change was committed already (an earlier answer was lost on the way): the new configuration stays."""

    details = {"rolled_back": False, "committed": True, "host_state": "the new configuration (committed)"}


class RolledBack(TransactionError):
    """The change was undone (by the timer, at boot, or now) instead of being committed."""

    details = {"rolled_back": True, "host_state": "the previous configuration"}


def _utc(seconds):
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(seconds))


def rollback_script(token, kind, restores, live_commands, boot_commands, armed=ARMED, history=HISTORY,
                    slow_hook=SLOW_ROLLBACK_HOOK, created_dirs=(), lock=LOCK):
    """The /bin/sh script that undoes a change.

    restores: [(path, backup path or None when the file did not exist)]. `$1` says who runs it: timer, boot or
    now. It claims the change first (an atomic mkdir: a commit or another run that got there first makes it exit
    0 at once), then restores every file and runs the commands for its mode (boot: before the services start, so
    only what must happen then). Every step runs even when one fails; the status and who ran it are recorded and
    the change moves to the history.
    """
    quote = shlex.quote
    done = "%s/%s" % (history, token)
    lines = [
        "#!/bin/sh",
        "# Portcullis: undo the %s change %s unless it was confirmed." % (kind, token),
        "armed=%s" % quote(armed),
        'by="${1:-timer}"',
        '[ "$(cat "$armed/token" 2>/dev/null)" = %s ] || exit 0' % quote(token),
        'mkdir "$armed/%s" 2>/dev/null || exit 0' % CLAIM,
        'echo "$by $(date +%%s)" > "$armed/%s/by"' % CLAIM,
        # Claimed: no commit can win now. A step still running (a slow finalize) finishes before the files go back;
        # `now` is run by a step that holds the lock itself, and at boot there is no lock.
        'if [ "$by" = timer ] && [ -d %s ] && command -v flock >/dev/null; then' % quote(os.path.dirname(lock)),
        "  flock -w %d %s true || :" % (LOCK_WAIT_SECONDS * 4, quote(lock)),
        "fi",
        "if [ -f %s ]; then sleep \"$(cat %s)\"; fi" % (quote(slow_hook), quote(slow_hook)),
        "status=0",
    ]
    for path, backup in restores:
        if backup is None:
            lines.append("rm -f -- %s 2>/dev/null || [ ! -e %s ] || status=1" % (quote(path), quote(path)))
        else:
            # cp writes through a symlink at `path` (the link stays) and -p keeps the saved mode and owner.
            lines.append("cp -p -- %s %s || status=1" % (quote(backup), quote(path)))
    # Directories the change created for new files go again, when nothing else was put there (deepest first).
    lines.extend("rmdir -- %s 2>/dev/null || :" % quote(path) for path in created_dirs)
    lines.append('if [ "$by" = boot ]; then')
    lines.extend("  %s || status=1" % shlex.join(argv) for argv in boot_commands)
    lines.append("  :")
    lines.append("else")
    lines.extend("  %s || status=1" % shlex.join(argv) for argv in live_commands)
    lines.append("  :")
    lines.append("fi")
    lines += [
        'echo "$status" > "$armed/%s/status"' % CLAIM,
        "(umask 077 && mkdir -p %s) && mv -- \"$armed\" %s" % (quote(history), quote(done)),
        "exit $status",
    ]
    return "\n".join(lines) + "\n"


class Change:
    """The armed change (or a finished one, read from the history), as its manifest and markers say."""

    def __init__(self, directory, manifest, claimed_by=None, claimed_at=None, status=None):
        self.directory = directory
        self.manifest = manifest
        self.claimed_by = claimed_by
        self.claimed_at = claimed_at
        self.status = status

    @property
    def token(self):
        return self.manifest["token"]

    @property
    def kind(self):
        return self.manifest["kind"]

    @property
    def data(self):
        return self.manifest.get("data", {})

    @property
    def expires_at(self):
        return self.manifest["expires_at"]

    @property
    def timer(self):
        return "portcullis-rollback-%s.timer" % self.token

    def describe(self):
        return "the %s change %s (%s), armed at %s" % (
            self.kind, self.token, self.manifest.get("description", ""), _utc(self.manifest["armed_at"]))

    def outcome(self):
        """What became of a finished change, in words."""
        if self.claimed_by == "commit":
            return "it was committed at %s" % _utc(self.claimed_at)
        who = {"timer": "its rollback timer", "boot": "the boot-time rollback (the host restarted while it was "
               "armed)", "now": "an immediate rollback"}.get(self.claimed_by, self.claimed_by or "a rollback")
        return "%s put the previous configuration back at %s%s" % (
            who, _utc(self.claimed_at or 0), "" if self.status in (None, 0) else
            " but a step of it failed (status %s): see %s/rollback.sh" % (self.status, self.directory))


class Engine:
    """Arms, commits and rolls back changes on one Host (module_utils/_host.py)."""

    def __init__(self, host, lock_wait=LOCK_WAIT_SECONDS, rollback_wait=ROLLBACK_WAIT_SECONDS):
        self.host = host
        self.lock_wait = lock_wait
        self.rollback_wait = rollback_wait

    @property
    def script_path(self):
        """The armed change's rollback script, as commands on the host name it."""
        return self.host.path(ARMED + "/" + SCRIPT)

    def armed_file(self, name):
        """A file of the armed change (written by arm(files=...)), as commands on the host name it."""
        return self.host.path(ARMED + "/" + name)

    # --- reading -----------------------------------------------------------------------------------

    def locked(self, what):
        """The host lock, for one step (a context manager). Check mode reads without it: it changes nothing."""
        return self.host.lock(LOCK, self.lock_wait, what)

    def _read_change(self, directory):
        text = self.host.read(directory + "/" + MANIFEST)
        if text is None:
            return None
        try:
            manifest = json.loads(text)
        except ValueError:
            raise TransactionError("%s/%s is not readable JSON: remove %s by hand after checking the host"
                                   % (directory, MANIFEST, directory))
        by = self.host.read("%s/%s/by" % (directory, CLAIM))
        status = self.host.read("%s/%s/status" % (directory, CLAIM))
        claimed_by = claimed_at = None
        if by is not None:
            parts = by.split()
            claimed_by = parts[0] if parts else "rollback"
            claimed_at = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None
        elif self.host.isdir("%s/%s" % (directory, CLAIM)):
            claimed_by = "rollback"
        return Change(directory, manifest, claimed_by, claimed_at,
                      int(status) if status and status.strip().isdigit() else None)

    def armed(self):
        """The armed change, or None."""
        return self._read_change(ARMED)

    def finished(self, token):
        """A change of the history, or None."""
        if not TOKEN.match(token or ""):
            raise TransactionError("token: %r is not a change token of this collection" % (token,))
        return self._read_change("%s/%s" % (HISTORY, token))

    def timer_active(self, change):
        rc, _out, _err = self.host.run([SYSTEMCTL, "is-active", "--quiet", change.timer])
        return rc == 0

    # --- refusing ----------------------------------------------------------------------------------

    def refuse_if_pending(self, step, check_mode=False):
        """Refuse (ChangePending) while a change is armed or being rolled back; tidy what a finished one left.

        A change whose timer vanished before anyone committed it (stopped by hand) is rolled back now, as its timer
        promised; in check mode that is only reported. Returns warnings.
        """
        change = self.armed()
        if change is None:
            return []
        if change.claimed_by == "commit" or change.status is not None:
            if not check_mode:  # the commit or the rollback ended, but did not get to move it
                self._to_history(change)
            return []
        if change.claimed_by:
            raise ChangePending("%s: %s is being rolled back right now (since %s); nothing was changed. Run again "
                                "in a minute" % (step, change.describe(), _utc(change.claimed_at or 0)))
        if self.timer_active(change):
            left = change.expires_at - self.host.clock()
            raise ChangePending(
                "%s: %s is still waiting for its confirmation; its rollback timer %s puts the previous configuration "
                "back at %s (in %d s). Nothing was changed: run again after that, or let the run that armed it "
                "finish" % (step, change.describe(), change.timer, _utc(change.expires_at), max(0, left)))
        if check_mode:
            return ["%s has no rollback timer any more (it was stopped by hand?); a real run rolls it back first"
                    % change.describe()]
        self._run_rollback(change, "now")
        done = self.finished(change.token)
        return ["%s had no rollback timer any more (it was stopped by hand?): it was rolled back first, as the timer "
                "would have done; %s" % (change.describe(), done.outcome() if done else "its end is unknown")]

    def preview(self, step):
        """Check mode's warnings about the armed change: what refuse_if_pending would say, and that a real run would
        refuse now (instead of raising)."""
        try:
            return self.refuse_if_pending(step, check_mode=True)
        except ChangePending as exc:
            return ["a real run would refuse now: %s" % exc]

    # --- arming ------------------------------------------------------------------------------------

    def ensure_boot_unit(self):
        """Install the boot-time rollback unit once (it does nothing while no change is armed)."""
        text = BOOT_UNIT % {"script": self.script_path}
        if self.host.read(BOOT_UNIT_PATH) != text:
            self.host.write(BOOT_UNIT_PATH, text, mode=0o644)
            self.host.check([SYSTEMCTL, "daemon-reload"], "installing %s" % BOOT_UNIT_NAME, TransactionError)
        if not self.host.exists("/etc/systemd/system/sysinit.target.wants/" + BOOT_UNIT_NAME):
            self.host.check([SYSTEMCTL, "enable", BOOT_UNIT_NAME], "enabling %s" % BOOT_UNIT_NAME, TransactionError)

    def arm(self, kind, token, description, paths, timeout, live_commands=(), boot_commands=(), files=None,
            data=None):
        """Back up `paths`, write `files` ({name: text}) for the commands, the rollback script and the manifest, and
        arm the timer; the caller holds the lock and has called refuse_if_pending. Returns the Change.

        live_commands undo what the files do not (reload a service, restore a live table); boot_commands run
        instead when the host boots with the change armed, before the services start.
        """
        if not TOKEN.match(token or ""):
            raise TransactionError("token: %r is not a change token of this collection" % (token,))
        self.ensure_boot_unit()
        self.host.makedirs(STATE_DIR, mode=0o700)
        staging = "%s/.arming-%s" % (STATE_DIR, token)
        self.host.rmtree(staging)
        self.host.mkdir(staging)
        restores = []
        created_dirs = set()
        for number, path in enumerate(paths):
            backup = "%s/file-%d" % (ARMED, number)
            saved = self.host.backup(path, "%s/file-%d" % (staging, number))
            restores.append((path, backup if saved else None))
            parent = os.path.dirname(path)
            while not saved and parent not in ("", "/") and not self.host.exists(parent):
                created_dirs.add(parent)  # the change may create it: the rollback removes it again when empty
                parent = os.path.dirname(parent)
        for name, text in sorted((files or {}).items()):
            self.host.write_private("%s/%s" % (staging, name), text)
        now = int(self.host.clock())
        manifest = {"token": token, "kind": kind, "description": description, "armed_at": now,
                    "expires_at": now + int(timeout), "restores": restores, "created_dirs": sorted(created_dirs),
                    "data": data or {}}
        self.host.write_private(staging + "/" + MANIFEST, json.dumps(manifest, sort_keys=True, indent=1) + "\n")
        local = self.host.path
        script = rollback_script(token, kind, [(local(path), local(backup) if backup else None)
                                               for path, backup in restores],
                                 live_commands, boot_commands, armed=local(ARMED), history=local(HISTORY),
                                 slow_hook=local(SLOW_ROLLBACK_HOOK), lock=local(LOCK),
                                 created_dirs=[local(path) for path in sorted(created_dirs, reverse=True)])
        self.host.write(staging + "/" + SCRIPT, script, mode=0o700)
        self.host.write_private(staging + "/token", token)
        try:
            self.host.rename(staging, ARMED)
        except OSError as exc:
            self.host.rmtree(staging)
            raise TransactionError("arming the rollback: %s exists (another change is armed): %s" % (ARMED, exc))
        argv = timer_argv("portcullis-rollback-%s" % token, manifest["expires_at"],
                          ["/bin/sh", self.script_path, "timer"],
                          "Portcullis: undo the %s change %s unless it is confirmed" % (kind, token))
        rc, out, err = self.host.run(argv)
        if rc != 0:
            self.host.rmtree(ARMED)
            raise TransactionError("arming the rollback timer failed (%s, rc=%d): %s; nothing was changed"
                                   % (shlex.join(argv), rc, (err or out).strip()))
        return self.armed()

    def require(self, token, kind, step):
        """The armed change `token` of `kind`, still armed and unclaimed; else a TransactionError saying what it
        became (RolledBack when it was undone)."""
        change = self.armed()
        if change is not None and change.token == token and change.kind == kind and not change.claimed_by:
            return change
        done = self.finished(token)
        if done is not None:
            if done.claimed_by == "commit":
                raise AlreadyCommitted("%s: %s: %s; nothing more to do" % (step, done.describe(), done.outcome()))
            raise RolledBack("%s: too late: %s, so %s" % (step, done.describe(), done.outcome()))
        if change is not None and change.token == token and change.claimed_by:
            raise RolledBack("%s: too late: %s is being rolled back right now" % (step, change.describe()))
        raise TransactionError("%s: no %s change %s is armed on this host%s" % (
            step, kind, token, "; armed is %s" % change.describe() if change else ""))

    # --- ending ------------------------------------------------------------------------------------

    def commit(self, token, kind, step="commit", finish=None):
        """Make the change permanent. `finish()` runs first while it is still armed (persisting what must survive a
        reboot; the backups cover those files): when it fails the change is rolled back now. Then the timer stops,
        and the commit claims the change: when the rollback claimed it first, RolledBack says so."""
        change = self.require(token, kind, step)
        extra = {}
        if finish is not None:
            try:
                extra = finish(change) or {}
            except (PortcullisError, OSError) as exc:
                raise RolledBack("%s: %s; %s" % (step, str(exc).strip(), self.rollback_now(token, kind, step)))
        self.host.run([SYSTEMCTL, "stop", change.timer])
        if not self.host.mkdir("%s/%s" % (ARMED, CLAIM)):
            # Not waited for here: the timer's script waits for the host lock this step holds.
            raise RolledBack("%s: the rollback timer fired while committing: %s" % (step, self._ending(token)))
        self.host.write_private("%s/%s/by" % (ARMED, CLAIM), "commit %d\n" % int(self.host.clock()))
        self._to_history(self.armed())
        self._reset_units(token)
        return extra

    def rollback_now(self, token, kind, step="rollback"):
        """Undo the armed change now (the script, as a unit of its own outside this session); what happened, in
        words. Raises TransactionError when the host's state cannot be told."""
        change = self.armed()
        if change is not None and change.token == token and change.kind == kind:
            if change.claimed_by:
                # The timer's script claimed it and waits for the host lock this step holds: it runs next.
                return self._ending(token)
            self._run_rollback(change, "now")
        done = self._wait_for_rollback(token)
        if done is None:
            raise TransactionError("%s: the rollback of change %s did not finish within %d s: the host is in an "
                                   "unknown state; look at %s" % (step, token, self.rollback_wait, ARMED))
        if done.claimed_by == "commit":
            return "the change had been committed already: the new configuration stays"
        return done.outcome()

    def _ending(self, token):
        """How a change that someone else claimed ends, in words: finished, or still being rolled back."""
        done = self.finished(token) or self.armed()
        if done is not None and done.claimed_by == "commit":
            return "the change had been committed already: the new configuration stays"
        if done is not None and done.status is not None:
            return done.outcome()
        change = self.armed()
        return "its rollback (by the %s, since %s) is putting the previous configuration back" % (
            change.claimed_by if change else "timer", _utc(change.claimed_at or 0) if change else "now")

    def _run_rollback(self, change, by):
        self.host.run([SYSTEMCTL, "stop", change.timer])
        argv = run_now_argv("portcullis-rollback-now-%s" % change.token,
                            ["/bin/sh", self.script_path, by], "Portcullis: undo the %s change %s now"
                            % (change.kind, change.token))
        rc, _out, _err = self.host.run(argv)
        if rc != 0 and self.host.exists(ARMED + "/" + SCRIPT):
            # No systemd-run --wait (or it failed to start): run the script from here.
            self.host.run(["/bin/sh", self.script_path, by])
        self._reset_units(change.token)

    def _wait_for_rollback(self, token):
        deadline = time.monotonic() + self.rollback_wait
        while True:
            done = self.finished(token)
            if done is not None:
                return done
            if time.monotonic() >= deadline:
                return None
            self.host.sleep(0.5)

    def _reset_units(self, token):
        self.host.run([SYSTEMCTL, "reset-failed", "portcullis-rollback-%s.timer" % token,
                       "portcullis-rollback-%s.service" % token, "portcullis-rollback-now-%s.service" % token])

    def _to_history(self, change):
        self.host.makedirs(HISTORY, mode=0o700)
        self.host.rmtree("%s/%s" % (HISTORY, change.token))
        self.host.rename(change.directory, "%s/%s" % (HISTORY, change.token))
        entries = [name for name in self.host.listdir(HISTORY) if TOKEN.match(name)]
        entries.sort(key=lambda name: os.stat(self.host.path("%s/%s" % (HISTORY, name))).st_mtime)
        for name in entries[:-HISTORY_KEPT]:
            self.host.rmtree("%s/%s" % (HISTORY, name))


def new_token():
    return os.urandom(6).hex()


def file_diff(path, before, after):
    """One entry of a module's diff list: a file (or a listing) before and after."""
    return {"before_header": path, "after_header": path, "before": before or "", "after": after or ""}


def write_edits(host, edits):
    """Write {path: text} through the host (keeping each file's owner, mode and context; 0644 for new ones),
    removing the paths whose text is None."""
    for path, text in sorted(edits.items()):
        if text is None:
            host.remove(path)
        else:
            host.write(path, text)
