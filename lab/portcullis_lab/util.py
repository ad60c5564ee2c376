# Copyright (c) Portcullis contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Small helpers shared by the lab commands: errors, logging, processes, files."""

import contextlib
import fcntl
import os
import subprocess
import sys
import tempfile
import time

CONTAINERS_CONF = """\
# Written by lab/portcullis_lab.py: podman settings for the Portcullis lab.
# crun fails on this kind of host (hybrid cgroups + rlimits), runc works.
[containers]
default_ulimits = ["nofile=16384:16384", "nproc=4096:4096"]
[engine]
runtime = "runc"
"""

_T0 = time.monotonic()


class LabError(Exception):
    """An expected failure: reported as a clear message, without a traceback."""


def log(message):
    """Print a progress line (stdout, flushed, with seconds since start)."""
    print("[%4.0fs] %s" % (time.monotonic() - _T0, message), flush=True)


def warn(message):
    """Print a warning line on stderr."""
    print("portcullis-lab: warning: %s" % message, file=sys.stderr, flush=True)


def tail(text, lines=15):
    """Return the last *lines* non-empty lines of *text*, indented for display."""
    kept = [line for line in (text or "").splitlines() if line.strip()][-lines:]
    return "\n".join("    " + line for line in kept)


def run(cmd, *, check=True, timeout=120, env=None, input_text=None, what=None):
    """Run *cmd* (a list), capture its output and return the CompletedProcess.

    With *check*, a non-zero exit or a timeout raises LabError naming *what*
    (default: the command) with the tail of its stderr.
    """
    what = what or " ".join(cmd[:3])
    try:
        proc = subprocess.run(cmd, input=input_text, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              universal_newlines=True, timeout=timeout, env=env, check=False)
    except FileNotFoundError:
        raise LabError("%s: command not found: %s" % (what, cmd[0])) from None
    except subprocess.TimeoutExpired:
        if not check:
            return subprocess.CompletedProcess(cmd, 124, "", "timed out after %ss" % timeout)
        raise LabError("%s: timed out after %ss" % (what, timeout)) from None
    if check and proc.returncode != 0:
        raise LabError("%s failed (exit %d):\n%s" % (what, proc.returncode, tail(proc.stderr or proc.stdout)))
    return proc


def write_file(path, text, mode=0o644):
    """Atomically replace *path* with *text* (written to a temp file, then renamed)."""
    directory = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def file_lock(path, what, timeout):
    """Hold an exclusive flock on *path*, waiting at most *timeout* seconds for it."""
    with open(path, "a") as handle:
        def take():
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except BlockingIOError:
                return False
        if not take():
            log("waiting for %s (another portcullis-lab run holds %s)" % (what, path))
            if not wait_until(take, timeout):
                raise LabError("%s (%s) still taken after %ss" % (what, path, timeout))
        yield


def wait_until(predicate, timeout, interval=1.0):
    """Call *predicate* until it returns a truthy value or *timeout* seconds pass.

    Returns the last value returned by *predicate* (falsy on timeout).
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)
