# Copyright (c) Portcullis contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""A network namespace of the benchmark's own, the socket holder inside it, and timed runs of commands in it.

Every benchmark that needs listeners uses these, as root:

    with Netns() as ns, Holder(ns, count=1000, special=True) as holder:
        run = timed_run(ns.exec_argv(["ss", "-H", "-tulpn"]))

Netns() creates `portcullis-bench-<pid>` (and deletes that very name on exit, whatever happened); Holder
starts bench/socket_holder.py inside it and kills that process by its pid on exit. /proc/net shows the sockets
of the reading process's namespace, so anything run through ns.exec_argv() sees the holder's sockets; /proc
itself is shared (no pid namespace), so process scans still see every process of the machine.
"""

from __future__ import annotations

import ctypes
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
HOLDER = os.path.join(BENCH_DIR, "socket_holder.py")
NAME_PREFIX = "portcullis-bench-"
# Addresses the holder's special cases bind to, put on lo (nodad: usable at once).
EXTRA_ADDRESSES = ("fe80::1234/64", "fd7a:115c:a1e0:ab12:4843:cd96:6258:b240/128")
# Ephemeral ports, out of the holder's ranges (10000-50099).
EPHEMERAL_PORTS = "61000 61999"
IP = shutil.which("ip", path="/usr/sbin:/usr/bin:/sbin:/bin") or "/usr/sbin/ip"

# Every command here is an argument list built from constants, this benchmark's own namespace name and temporary
# files, run by the root user who started the benchmark: ruff's S603 is silenced call by call.


class BenchError(RuntimeError):
    """The benchmark's own setup failed (not a finding about what it measures)."""


def _ip(*args):
    completed = subprocess.run([IP] + list(args), capture_output=True, text=True, check=False)  # noqa: S603
    if completed.returncode != 0:
        raise BenchError("ip %s failed (%d): %s" % (" ".join(args), completed.returncode, completed.stderr.strip()))
    return completed.stdout


def require_root():
    if os.geteuid() != 0:
        raise SystemExit("%s: run as root (it creates a network namespace)" % os.path.basename(sys.argv[0]))


class Netns:
    """A network namespace named portcullis-bench-<pid>[-suffix], with lo up and the holder's addresses."""

    def __init__(self, suffix=None):
        self.name = NAME_PREFIX + str(os.getpid()) + ("-" + suffix if suffix else "")
        self.created = False

    def __enter__(self):
        if self.name in self.existing():
            raise BenchError("network namespace %s exists already (a previous run of this pid?); "
                             "remove it with: ip netns delete %s" % (self.name, self.name))
        _ip("netns", "add", self.name)
        self.created = True
        try:
            _ip("-n", self.name, "link", "set", "lo", "up")
            for address in EXTRA_ADDRESSES:
                _ip("-n", self.name, "-6", "addr", "add", address, "dev", "lo", "nodad")
            sysctl = "echo %s > /proc/sys/net/ipv4/ip_local_port_range" % EPHEMERAL_PORTS
            subprocess.run(self.exec_argv(["/bin/sh", "-c", sysctl]), check=True)  # noqa: S603
        except BaseException:
            self.delete()
            raise
        return self

    def __exit__(self, *exc_info):
        self.delete()
        return False

    @staticmethod
    def existing():
        return {line.split()[0] for line in _ip("netns", "list").splitlines() if line.strip()}

    def delete(self):
        """Delete the namespace this object created, by its exact name."""
        if self.created:
            subprocess.run([IP, "netns", "delete", self.name], check=False)  # noqa: S603
            self.created = False

    def exec_argv(self, argv):
        return [IP, "netns", "exec", self.name] + list(argv)


class Holder:
    """bench/socket_holder.py inside a namespace; `ready` is its JSON line (the sockets it opened)."""

    def __init__(self, ns, count=0, mix=None, counts=None, special=True, python=sys.executable, timeout=300):
        argv = [python, HOLDER]
        if counts:
            argv += ["--counts", ",".join("%s=%d" % item for item in sorted(counts.items()))]
        else:
            argv += ["--count", str(count)]
            if mix:
                argv += ["--mix", mix]
        if special:
            argv.append("--special")
        self.argv = ns.exec_argv(argv)
        self.timeout = timeout
        self.process = None
        self.ready = None

    def __enter__(self):
        # `ip netns exec` execs the command itself (no fork), so Popen.pid is the holder's pid.
        self.process = subprocess.Popen(self.argv, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)  # noqa: S603
        try:
            line = self._read_line()
            self.ready = json.loads(line)
            if not self.ready.get("ready") or self.ready.get("pid") != self.process.pid:
                raise BenchError("socket holder said %r (pid %s, expected %d)" % (
                    line[:200], self.ready.get("pid"), self.process.pid))
        except BaseException:
            self.stop()
            raise
        return self

    def _read_line(self):
        deadline = time.monotonic() + self.timeout
        chunks = []
        fd = self.process.stdout.fileno()
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise BenchError("socket holder not ready after %ds" % self.timeout)
            readable = select.select([fd], [], [], remaining)[0]
            if not readable:
                continue
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                raise BenchError("socket holder exited (%s) before it was ready" % self.process.wait())
            chunks.append(chunk)
            if chunk.endswith(b"\n"):
                return b"".join(chunks).decode()

    def __exit__(self, *exc_info):
        self.stop()
        return False

    @property
    def pid(self):
        return self.process.pid if self.process else None

    def stop(self):
        """Kill the holder by its pid (it kills its helpers) and reap it."""
        if self.process is None or self.process.returncode is not None:
            return
        try:
            os.kill(self.process.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self.process.stdout.close()


class Run:
    """What timed_run() measured: wall time, CPU, peak RSS (the process and its reaped children), output."""

    def __init__(self, argv, returncode, wall_s, user_s, sys_s, maxrss_kib, stdout, stderr):
        self.argv = argv
        self.returncode = returncode
        self.wall_s = wall_s
        self.user_s = user_s
        self.sys_s = sys_s
        self.maxrss_kib = maxrss_kib
        self.stdout = stdout
        self.stderr = stderr

    def check(self, what):
        if self.returncode != 0:
            output = (self.stderr or self.stdout)[-4000:].decode("utf-8", "replace")
            raise BenchError("%s failed (rc %d): %s\n%s" % (what, self.returncode, " ".join(self.argv), output))
        return self


TIME_BIN = "/usr/bin/time"
PR_SET_CHILD_SUBREAPER = 36


def _terminate(signum, _frame):
    raise KeyboardInterrupt("signal %d" % signum)


def end_on_sigterm():
    """SIGTERM ends the benchmark as Ctrl-C does, so that its finally blocks delete the namespace and kill the holder."""
    signal.signal(signal.SIGTERM, _terminate)


def become_subreaper():
    """Have the processes a run leaves behind reparented to this process instead of init, so end_strays() finds them.

    Ansible's workers call setsid(), so they leave the process group timed_run() gives a run; without this, an
    interrupted benchmark could leave a worker (and the module it runs) behind.
    """
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def children():
    """Pids whose parent is this process."""
    me = os.getpid()
    found = set()
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % name) as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == me:
            found.add(int(name))
    return found


def end_strays(before):
    """Kill (by pid) and reap the children this process gained since `before`: what a run left behind, reparented
    here (see become_subreaper). Repeats while killing one reparents its own children here."""
    for _attempt in range(20):
        strays = children() - set(before)
        if not strays:
            return
        for pid in strays:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for pid in strays:
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass


def timed_run(argv, env=None, cwd=None, keep_stdout=True, use_time=None):
    """Run argv to completion; wall time around fork..reap, CPU time from wait4, peak RSS.

    Peak RSS: with GNU time (/usr/bin/time, the default when present) its %M, the ru_maxrss of the process
    it forked, in KiB. Not wait4's own ru_maxrss: Python forks (vforks) the child from this process, and the
    kernel carries the pre-exec peak over exec, so that figure is at least this benchmark's own RSS. Without
    GNU time that polluted figure is what is left (maxrss_source says which). stdout and stderr go to
    temporary files, so a large output cannot block the child.
    """
    if use_time is None:
        use_time = os.access(TIME_BIN, os.X_OK)
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, \
            tempfile.NamedTemporaryFile("r", prefix="bench-time-") as report:
        full_argv = [TIME_BIN, "-f", "%M", "-o", report.name, "--"] + list(argv) if use_time else list(argv)
        before = children()
        start = time.perf_counter()
        # A session of its own, so that an interrupted benchmark can end the run and everything it started (GNU
        # time, the command, Ansible's workers) by that one process group id.
        process = subprocess.Popen(full_argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=env, cwd=cwd,  # noqa: S603
                                   start_new_session=True)
        try:
            _pid, status, usage = os.wait4(process.pid, 0)
        except BaseException:
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            os.waitpid(process.pid, 0)
            process.returncode = -signal.SIGKILL
            end_strays(before)
            raise
        wall = time.perf_counter() - start
        process.returncode = os.waitstatus_to_exitcode(status)
        maxrss = usage.ru_maxrss
        if use_time:
            lines = report.read().split()
            # GNU time writes "Command exited with non-zero status N" before the figures when the command fails.
            maxrss = int(lines[-1]) if lines and lines[-1].isdigit() else None
        end_strays(before)
        out.seek(0)
        err.seek(0)
        run = Run(list(argv), process.returncode, wall, usage.ru_utime, usage.ru_stime, maxrss,
                  out.read() if keep_stdout else b"", err.read())
        run.maxrss_source = "gnu-time" if use_time else "wait4"
        return run
