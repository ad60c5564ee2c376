# Copyright (c) Portcullis contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The one seam between the collection's host-side logic and the host: commands, files, the host lock.

Everything that runs a command, reads a file or changes one goes through a Host. Unit tests give it a fake
command runner and a temporary directory as `root`, so every changing step runs for real on files without
monkeypatching `os`. PortcullisError is the one exception family: every helper raises a subclass of it and
only a module's main() turns it into fail_json.

Private to the collection.
"""

from __future__ import annotations

import errno
import fcntl
import os
import shlex
import shutil
import tempfile
import time

SELINUX_XATTR = "security.selinux"


class PortcullisError(Exception):
    """A step that failed; the message names the step, the input or the command, and the host's state.

    `details` go into the failed task's result beside the message (rolled_back, host_state...).
    """

    details = {}


class HostBusy(PortcullisError):
    """Another Portcullis step holds the host lock."""

    details = {"rolled_back": False, "host_state": "unchanged: another Portcullis run holds the host lock"}


def _selinux_context(path):
    try:
        return os.getxattr(path, SELINUX_XATTR)
    except (OSError, AttributeError):  # no SELinux, no label, or a platform without xattrs
        return None


def _fsync_directory(directory):
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


class Host:
    """Commands through `run(argv) -> (rc, stdout, stderr)` (AnsibleModule.run_command: argument lists, no
    shell), files under `root` ("/" on a real host)."""

    def __init__(self, run, root="/", clock=time.time, sleep=time.sleep, pid=os.getpid):
        self.run = run
        self.root = root
        self.clock = clock
        self.sleep = sleep
        self.pid = pid

    # --- commands --------------------------------------------------------------------------------

    def check(self, argv, step, error=PortcullisError):
        """Run argv; its stdout, or `error` naming the step, the command, its exit code and what it said."""
        rc, out, err = self.run(argv)
        if rc != 0:
            raise error("%s failed (%s, rc=%d): %s" % (step, shlex.join(argv), rc, (err or out).strip()))
        return out

    # --- files -----------------------------------------------------------------------------------

    def path(self, path):
        """Where the host's absolute `path` is on this machine (under `root` in tests)."""
        if self.root in ("/", ""):
            return path
        return os.path.join(self.root, path.lstrip("/"))

    def read(self, path):
        """The text of a file, or None when it does not exist."""
        try:
            with open(self.path(path), encoding="utf-8", errors="surrogateescape", newline="") as stream:
                return stream.read()
        except (FileNotFoundError, NotADirectoryError):
            return None

    def exists(self, path):
        return os.path.lexists(self.path(path))

    def isdir(self, path):
        return os.path.isdir(self.path(path))

    def listdir(self, path):
        try:
            return sorted(os.listdir(self.path(path)))
        except FileNotFoundError:
            return []

    def makedirs(self, path, mode=0o755):
        os.makedirs(self.path(path), mode=mode, exist_ok=True)

    def mkdir(self, path, mode=0o700):
        """Create one directory; False when it exists already (an atomic claim)."""
        try:
            os.mkdir(self.path(path), mode)
            return True
        except FileExistsError:
            return False

    def remove(self, path):
        """Remove a file (not what a symlink points to); False when there was none."""
        try:
            os.unlink(self.path(path))
            return True
        except FileNotFoundError:
            return False

    def rmdir(self, path):
        """Remove an empty directory; False when it is missing or not empty."""
        try:
            os.rmdir(self.path(path))
            return True
        except OSError:
            return False

    def rmtree(self, path):
        shutil.rmtree(self.path(path), ignore_errors=True)

    def rename(self, source, target):
        os.rename(self.path(source), self.path(target))

    def mode(self, path, default=None):
        """The permission bits of an existing file (through symlinks), or `default`."""
        try:
            return os.stat(self.path(path)).st_mode & 0o7777
        except FileNotFoundError:
            return default

    def real_path(self, path):
        """The file a write to `path` must change: symlinks resolved (on the host's side of `root`)."""
        local = self.path(path)
        for _hop in range(40):
            if not os.path.islink(local):
                return local
            target = os.readlink(local)
            if os.path.isabs(target):
                local = self.path(target)
            else:
                local = os.path.normpath(os.path.join(os.path.dirname(local), target))
        raise PortcullisError("writing %s: too many levels of symbolic links" % path)

    def write(self, path, text, mode=None, default_mode=0o644):
        """Replace a file's text safely: through a symlink (the link stays), keeping the owner, the group, the
        mode (`mode` overrides it) and the SELinux context of the file it replaces, written to a temporary file
        in the same directory, fsynced, then renamed over the target, and the directory fsynced."""
        target = self.real_path(path)
        directory = os.path.dirname(target)
        os.makedirs(directory, mode=0o755, exist_ok=True)
        try:
            current = os.stat(target)
        except FileNotFoundError:
            current = None
        context = _selinux_context(target) if current is not None else None
        handle, temporary = tempfile.mkstemp(prefix=".portcullis-", dir=directory)
        try:
            with os.fdopen(handle, "w", encoding="utf-8", errors="surrogateescape", newline="") as stream:
                stream.write(text)
                stream.flush()
                if current is not None:
                    os.fchown(stream.fileno(), current.st_uid, current.st_gid)
                os.fchmod(stream.fileno(), mode if mode is not None else
                          (current.st_mode & 0o7777 if current is not None else default_mode))
                if context:
                    os.setxattr(temporary, SELINUX_XATTR, context)
                os.fsync(stream.fileno())
            os.rename(temporary, target)
        except BaseException:
            if os.path.exists(temporary):
                os.unlink(temporary)
            raise
        _fsync_directory(directory)

    def write_private(self, path, text):
        """A file of Portcullis's own state: root only (0600)."""
        self.write(path, text, mode=0o600)

    def backup(self, path, backup_path):
        """Copy a file (through symlinks) with its mode, owner and SELinux context; False when it does not exist."""
        try:
            source = self.real_path(path)
            shutil.copy2(source, self.path(backup_path))
        except (FileNotFoundError, NotADirectoryError):
            return False
        stat = os.stat(source)
        os.chown(self.path(backup_path), stat.st_uid, stat.st_gid)
        return True

    # --- the host lock ---------------------------------------------------------------------------

    def lock(self, path, wait_seconds, what):
        """A HostLock on `path` (flock), waited for up to `wait_seconds`."""
        return HostLock(self, path, wait_seconds, what)


class HostLock:
    """flock(2) on a file: held by this process until released or until it exits (also when it is killed), so a
    lost controller never leaves the host locked."""

    def __init__(self, host, path, wait_seconds, what):
        self.host = host
        self.path = path
        self.wait_seconds = wait_seconds
        self.what = what
        self.descriptor = None

    def __enter__(self):
        local = self.host.path(self.path)
        os.makedirs(os.path.dirname(local), mode=0o700, exist_ok=True)
        descriptor = os.open(local, os.O_RDWR | os.O_CREAT, 0o600)
        deadline = time.monotonic() + self.wait_seconds
        while True:
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    os.close(descriptor)
                    raise
                if time.monotonic() >= deadline:
                    holder = os.pread(descriptor, 64, 0).decode("ascii", "replace").strip()
                    os.close(descriptor)
                    raise HostBusy("%s: another Portcullis run holds the host lock %s%s and did not release it within "
                                   "%d s; nothing was changed. Run again when it has finished" % (
                                       self.what, self.path, " (pid %s)" % holder if holder else "",
                                       self.wait_seconds))
                self.host.sleep(0.2)
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, str(self.host.pid()).encode("ascii"), 0)
        self.descriptor = descriptor
        return self

    def __exit__(self, *_exc):
        os.ftruncate(self.descriptor, 0)
        fcntl.flock(self.descriptor, fcntl.LOCK_UN)
        os.close(self.descriptor)
        self.descriptor = None
        return False
