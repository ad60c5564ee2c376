# Copyright (c) Portcullis contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Fleet benchmark: the role's audit and harden against a baseline written with stock modules, on 1, 5 and 10
Debian 12 lab hosts reached over real SSH.

    .venv/bin/python bench/fleet.py [--sizes 1 5 10] [--repeats R] [--audit-only] [--lab-dir DIR]
                                    [--collections-path DIR] [--log-dir DIR]

As root. For each fleet size N and each contender (the role: playbooks/audit.yml and harden.yml; the baseline:
bench/baseline/audit.yml and harden.yml) and phase (audit in check mode; harden: sshd to 2222, default-drop firewall
from demo/lab-allowlist.yml, the units behind unlisted listeners stopped), it brings the lab up fresh (`down`, then
`up --hosts N --release bookworm`, both timed), runs the playbook with the shipped ansible.cfg and measures:

- wall time of ansible-playbook;
- module executions per host, twice: the task results that ran a module on the host
  (bench/callback_plugins/portcullis_bench_count.py) and the modules really started over SSH (bench/ssh-count, the
  ssh executable, logs every invocation; an action plugin may run several modules in one task);
- SSH per host: ssh invocations (bench/ssh-count: reusing a ControlMaster, creating one, or direct), the new TCP
  connections they imply, and the logins sshd accepted (its "Accepted publickey" journal lines, counted over a new
  connection before and after the run, the counting connection subtracted).

After a harden, every host is checked from here over new connections: ssh on 2222 logs in (ControlMaster=no), 22 and
8443 do not answer, 8080 does. A contender that fails the check makes the comparison invalid, and the result says so.

--audit-only runs only the role's audit (one 50-host audit: --audit-only --sizes 50). A size the machine cannot hold
(memory, or the inotify instances every systemd container needs) is lowered to the largest that fits, and the result
says so. Results: bench/results/fleet.json (full runs) or fleet-audit.json (--audit-only), merged by fleet size so
runs of different sizes coexist. The lab is always taken down at the end.
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures
import glob
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402

REPO = common.REPO
BENCH = common.BENCH_DIR
LAB_TOOL = os.path.join(REPO, "lab", "portcullis_lab.py")
BIN = os.path.dirname(os.path.abspath(sys.executable))
ALLOWLIST = os.path.join(REPO, "demo", "lab-allowlist.yml")
SSH_PORT = 2222
REAL_SSH = shutil.which("ssh") or "/usr/bin/ssh"

PLAYBOOKS = {
    ("role", "audit"): os.path.join(REPO, "playbooks", "audit.yml"),
    ("role", "harden"): os.path.join(REPO, "playbooks", "harden.yml"),
    ("baseline", "audit"): os.path.join(BENCH, "baseline", "audit.yml"),
    ("baseline", "harden"): os.path.join(BENCH, "baseline", "harden.yml"),
}
PHASE_ARGS = {
    "audit": ["--check", "-e", "@" + ALLOWLIST, "-e", "portcullis_fail_on_findings=false"],
    # As `make demo` step 3: the baseline stops the same units.
    "harden": ["-e", "@" + ALLOWLIST, "-e", "portcullis_ssh_port=%d" % SSH_PORT, "-e", "portcullis_stop_unlisted=true"],
}
# What a harden must leave, seen from the controller over new connections: {port: expected TCP state}.
HARDENED_TCP = {22: "not open", 8080: "open", 8443: "not open"}
# The goals, as thresholds.
HARDEN_SPEEDUP_GOAL = 3.0
FLAT_RATIO_GOAL = 1.25
# Fitting a large fleet: a systemd container holds about this many inotify instances (all root's, limited by
# fs.inotify.max_user_instances) and this much memory; keep this much memory and these instances free.
INOTIFY_PER_HOST = 4
INOTIFY_RESERVE = 8
MEMORY_PER_HOST_MIB = 80
MEMORY_RESERVE_MIB = 2048
JOURNAL_COUNT = ("journalctl --sync 2>/dev/null; journalctl --no-pager -o cat 2>/dev/null "
                 "| grep -c 'Accepted publickey for ' || true")


def log(message):
    print("[fleet %s] %s" % (time.strftime("%H:%M:%S"), message), flush=True)


def run(argv, log_path=None, timeout=3600, env=None, check=True):
    """Run argv; its output goes to log_path (appended) or is returned. Returns (rc, seconds, output)."""
    started = time.monotonic()
    # S603: a fixed argument list, no shell.
    completed = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,  # noqa: S603
                               stderr=subprocess.STDOUT, text=True, timeout=timeout, env=env, check=False)
    seconds = time.monotonic() - started
    if log_path:
        with open(log_path, "a") as handle:
            handle.write("$ %s\n%s\n[rc=%d, %.1fs]\n" % (" ".join(argv), completed.stdout, completed.returncode, seconds))
    if check and completed.returncode != 0:
        where = ", see " + log_path if log_path else ""
        raise RuntimeError("%s failed (rc=%d)%s:\n%s"
                           % (" ".join(argv[:4]), completed.returncode, where, completed.stdout[-3000:]))
    return completed.returncode, seconds, completed.stdout


# --- the collection -------------------------------------------------------------------------------------------

def install_collection(work):
    """Build the collection from this checkout and install it under work/collections; returns that path."""
    built = os.path.join(work, "build")
    target = os.path.join(work, "collections")
    galaxy = os.path.join(BIN, "ansible-galaxy")
    build_log = os.path.join(work, "collection.log")
    run([galaxy, "collection", "build", "--force", "--output-path", built, REPO], build_log)
    tarballs = sorted(glob.glob(os.path.join(built, "portcullis-hardening-*.tar.gz")))
    if not tarballs:
        raise RuntimeError("ansible-galaxy built no portcullis-hardening tarball (see %s)" % build_log)
    run([galaxy, "collection", "install", "--force", "-p", target, tarballs[-1]], build_log)
    # Compile it now, so that the first measured run does not pay for it.
    run([sys.executable, "-m", "compileall", "-q", target], build_log)
    return target


# --- the lab --------------------------------------------------------------------------------------------------

class Lab:
    def __init__(self, state_dir, log_path):
        self.dir = os.path.abspath(state_dir)
        self.log_path = log_path
        self.inventory = os.path.join(self.dir, "inventory.yml")
        self.key = os.path.join(self.dir, "id_ed25519")
        self.known_hosts = os.path.join(self.dir, "known_hosts")
        self.hosts = {}

    def _tool(self, *args):
        return run([sys.executable, LAB_TOOL, "--state-dir", self.dir] + list(args), self.log_path, timeout=3600)

    def down(self):
        _rc, seconds, _out = self._tool("down")
        self.hosts = {}
        return seconds

    def up(self, count):
        _rc, seconds, _out = self._tool("up", "--hosts", str(count), "--release", "bookworm")
        with open(self.inventory) as handle:
            inventory = yaml.safe_load(handle)
        self.hosts = {}
        for group in inventory["all"]["children"]["portcullis_lab"]["children"].values():
            for name, variables in (group.get("hosts") or {}).items():
                self.hosts[name] = {"ipv4": variables["ansible_host"], "ipv6": variables.get("portcullis_lab_ipv6")}
        if len(self.hosts) != count:
            raise RuntimeError("the lab has %d hosts, not %d" % (len(self.hosts), count))
        return seconds

    def fresh(self, count):
        """down, then up with `count` hosts: (down seconds, up seconds)."""
        return self.down(), self.up(count)

    def ssh(self, address, port, *command, timeout=30):
        """(rc, output) of a command over a new connection (no ControlMaster), with the lab's key and known_hosts."""
        argv = [REAL_SSH, "-F", "/dev/null", "-i", self.key, "-o", "IdentitiesOnly=yes",
                "-o", "UserKnownHostsFile=" + self.known_hosts, "-o", "StrictHostKeyChecking=yes",
                "-o", "BatchMode=yes", "-o", "ConnectTimeout=5", "-o", "ControlMaster=no", "-o", "ControlPath=none",
                "-p", str(port), "root@" + address] + list(command)
        try:
            rc, _seconds, output = run(argv, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            return 124, "timed out"
        return rc, output

    def accepted_logins(self, ports):
        """{host: number of "Accepted publickey" lines in its journal, or None}, over one new connection each (on
        the first of `ports` that logs in); that connection's own line is included."""
        def count(host):
            for port in ports:
                rc, output = self.ssh(self.hosts[host]["ipv4"], port, JOURNAL_COUNT)
                if rc == 0:
                    try:
                        return int(output.strip().splitlines()[-1])
                    except (ValueError, IndexError):
                        return None
            return None
        with concurrent.futures.ThreadPoolExecutor(max_workers=min(16, len(self.hosts) or 1)) as pool:
            return dict(zip(sorted(self.hosts), pool.map(count, sorted(self.hosts))))

    def check_hardened(self):
        """{host: {check: bool}} from the controller, over new connections: ssh on 2222, the TCP ports' states."""
        def check(host):
            address = self.hosts[host]["ipv4"]
            rc, output = self.ssh(address, SSH_PORT, "true")
            checks = {"ssh_%d_new_connection" % SSH_PORT: rc == 0}
            for port, wanted in HARDENED_TCP.items():
                state = tcp_state(address, port)
                checks["tcp_%d_%s" % (port, wanted.replace(" ", "_"))] = (state == "open") == (wanted == "open")
            if rc != 0:
                checks["ssh_error"] = output.strip()[-300:]
            return checks
        with concurrent.futures.ThreadPoolExecutor(max_workers=min(16, len(self.hosts) or 1)) as pool:
            return dict(zip(sorted(self.hosts), pool.map(check, sorted(self.hosts))))

    def address_map(self):
        names = {}
        for host, record in self.hosts.items():
            for address in (record["ipv4"], record["ipv6"]):
                if address:
                    names[address] = host
        return names


def tcp_state(address, port, timeout=2.0):
    try:
        with socket.create_connection((address, port), timeout=timeout):
            return "open"
    except ConnectionRefusedError:
        return "closed"
    except OSError:
        return "filtered"


def fit_fleet(requested):
    """The largest fleet up to `requested` this machine holds now: (size, reasons it was lowered)."""
    reasons = []
    size = requested
    try:
        with open("/proc/sys/fs/inotify/max_user_instances") as handle:
            limit = int(handle.read())
        in_use = sum(1 for link in glob.glob("/proc/[0-9]*/fd/*") if _readlink(link) == "anon_inode:inotify")
        fits = max(1, (limit - in_use - INOTIFY_RESERVE) // INOTIFY_PER_HOST)
        if fits < size:
            reasons.append("inotify: fs.inotify.max_user_instances=%d, %d in use, about %d per systemd container: "
                           "%d hosts fit (raise it with sysctl -w fs.inotify.max_user_instances=1024 for more)"
                           % (limit, in_use, INOTIFY_PER_HOST, fits))
            size = fits
    except (OSError, ValueError):
        pass
    available = _meminfo().get("MemAvailable")
    if available:
        fits = max(1, (available // 1024 - MEMORY_RESERVE_MIB) // MEMORY_PER_HOST_MIB)
        if fits < size:
            reasons.append("memory: %d MiB available, about %d MiB per host: %d hosts fit"
                           % (available // 1024, MEMORY_PER_HOST_MIB, fits))
            size = fits
    return size, reasons


def _readlink(path):
    try:
        return os.readlink(path)
    except OSError:
        return None


def _meminfo():
    values = {}
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                name, _sep, rest = line.partition(":")
                values[name] = int(rest.split()[0])
    except (OSError, ValueError, IndexError):
        pass
    return values


# --- one measured run -----------------------------------------------------------------------------------------

def parse_ssh_log(path, names):
    """Per host, from bench/ssh-count's log: invocations by kind, modules started, new TCP connections."""
    per_host = collections.defaultdict(lambda: {"kinds": collections.Counter(), "modules": 0})
    try:
        with open(path) as handle:
            lines = handle.read().splitlines()
    except OSError:
        lines = []
    for line in lines:
        fields = line.split("\t")
        if len(fields) < 6:
            continue
        _when, _pid, kind, destination, _port, module = fields[:6]
        entry = per_host[names.get(destination, destination)]
        entry["kinds"][kind] += 1
        entry["modules"] += module == "1"
    result = {}
    for host, entry in per_host.items():
        kinds = entry["kinds"]
        result[host] = {
            "ssh_invocations": kinds["mux"] + kinds["master"] + kinds["direct"],
            "ssh_invocations_by_kind": dict(kinds),
            "ssh_new_tcp_connections": kinds["master"] + kinds["direct"],
            "module_executions": entry["modules"],
        }
    return result


def slowest_tasks(output, count=5):
    """[[task, seconds]] of the slowest tasks, slowest first, from profile_tasks' TASKS RECAP."""
    recap = output.rpartition("TASKS RECAP")[2]
    tasks = collections.Counter()
    for line in recap.splitlines():
        found = re.match(r"^(?P<name>.+?) -+ (?P<seconds>[0-9]+(?:\.[0-9]+)?)s$", line.strip())
        if found:
            tasks[found.group("name")] += float(found.group("seconds"))
    return [[name, round(seconds, 2)] for name, seconds in tasks.most_common(count)]


def close_masters(control_dir):
    """Ask every ControlMaster the run left to exit (they would linger for ControlPersist otherwise)."""
    for path in glob.glob(os.path.join(control_dir, "*")):
        run([REAL_SSH, "-o", "ControlPath=" + path, "-O", "exit", "portcullis-bench"], timeout=30, check=False)


def spread(values):
    values = [value for value in values if value is not None]
    if not values:
        return None
    return {"mean": round(statistics.mean(values), 3), "min": min(values), "max": max(values)}


def measure(lab, contender, phase, size, collections_path, run_dir):
    """Fresh lab, one playbook run, its counts; returns the run's record."""
    os.makedirs(run_dir, exist_ok=True)
    lab.log_path = os.path.join(run_dir, "lab.log")
    down_s, up_s = lab.fresh(size)
    memory_after_up = _meminfo().get("MemAvailable")
    control_dir = os.path.join(run_dir, "cp")
    os.makedirs(control_dir, mode=0o700, exist_ok=True)
    env = dict(os.environ)
    env.update({
        "ANSIBLE_CONFIG": os.path.join(REPO, "ansible.cfg"),
        "ANSIBLE_COLLECTIONS_PATH": collections_path,
        "ANSIBLE_CALLBACK_PLUGINS": os.path.join(BENCH, "callback_plugins"),
        # profile_tasks: the slowest tasks of each run go into its record.
        "ANSIBLE_CALLBACKS_ENABLED": "portcullis_bench_count,ansible.posix.profile_tasks",
        "PORTCULLIS_BENCH_COUNT_FILE": os.path.join(run_dir, "counts.json"),
        "ANSIBLE_SSH_EXECUTABLE": os.path.join(BENCH, "ssh-count"),
        "PORTCULLIS_BENCH_SSH_LOG": os.path.join(run_dir, "ssh.log"),
        "PORTCULLIS_BENCH_REAL_SSH": REAL_SSH,
        # A control socket of its own per run: a master left by the previous lab would point at removed containers.
        "ANSIBLE_SSH_CONTROL_PATH_DIR": control_dir,
        "ANSIBLE_NOCOLOR": "1",
        "PWD": run_dir,
    })
    for name in ("ANSIBLE_STDOUT_CALLBACK", "ANSIBLE_FORKS", "ANSIBLE_PIPELINING", "ANSIBLE_SSH_ARGS"):
        env.pop(name, None)
    argv = [os.path.join(BIN, "ansible-playbook"), "-i", lab.inventory, PLAYBOOKS[(contender, phase)]]
    argv += PHASE_ARGS[phase] + ["-e", "portcullis_report_dir=" + os.path.join(run_dir, "reports")]

    before = lab.accepted_logins([22])
    load_before = [round(value, 2) for value in os.getloadavg()]
    log("%s %s, %d hosts: running" % (contender, phase, size))
    rc, wall, output = run(argv, os.path.join(run_dir, "ansible-playbook.log"), env=env, check=False)
    close_masters(control_dir)
    after_ports = [SSH_PORT, 22] if phase == "harden" else [22, SSH_PORT]
    after = lab.accepted_logins(after_ports)
    checks = lab.check_hardened() if phase == "harden" else None

    try:
        with open(os.path.join(run_dir, "counts.json")) as handle:
            counts = json.load(handle)
    except (OSError, ValueError):
        counts = {"hosts": {}}
    ssh = parse_ssh_log(os.path.join(run_dir, "ssh.log"), lab.address_map())
    hosts = {}
    for host in sorted(lab.hosts):
        accepted = None
        if before.get(host) is not None and after.get(host) is not None:
            accepted = after[host] - before[host] - 1  # the counting connection after the run logged in too
        entry = {"module_tasks": counts["hosts"].get(host, {}).get("module_tasks", 0),
                 "accepted_ssh_logins": accepted}
        entry.update(ssh.get(host, {"ssh_invocations": 0, "ssh_new_tcp_connections": 0, "module_executions": 0,
                                    "ssh_invocations_by_kind": {}}))
        if checks is not None:
            entry["hardened_checks"] = checks[host]
        hosts[host] = entry
    verified = None if checks is None else all(
        value for checks_of_host in checks.values() for key, value in checks_of_host.items() if key != "ssh_error")
    first = sorted(counts["hosts"])[0] if counts["hosts"] else None
    record = {
        "contender": contender, "phase": phase, "hosts": size, "rc": rc, "ok": rc == 0 and verified is not False,
        "wall_s": round(wall, 3), "wall_per_host_s": round(wall / size, 3),
        "lab_down_s": round(down_s, 2), "lab_up_s": round(up_s, 2),
        "memory_available_after_up_mib": memory_after_up // 1024 if memory_after_up else None,
        "load_average_before": load_before,
        "verified_from_controller": verified,
        "per_host": {metric: spread([entry[metric] for entry in hosts.values()])
                     for metric in ("module_tasks", "module_executions", "ssh_invocations", "ssh_new_tcp_connections",
                                    "accepted_ssh_logins")},
        "tasks_that_ran_a_module_on_%s" % first: counts["hosts"].get(first, {}).get("tasks") if first else None,
        "slowest_tasks_s": slowest_tasks(output),
        "by_host": hosts,
        "log_dir": run_dir,
    }
    log("%s %s, %d hosts: rc=%d, %.1fs (%.2fs per host), modules/host %s (tasks %s), ssh/host %s, new TCP/host %s, "
        "accepted logins/host %s%s" % (
            contender, phase, size, rc, wall, wall / size, _mean(record, "module_executions"),
            _mean(record, "module_tasks"), _mean(record, "ssh_invocations"), _mean(record, "ssh_new_tcp_connections"),
            _mean(record, "accepted_ssh_logins"),
            "" if verified is None else ", hardened checks " + ("passed" if verified else "FAILED")))
    return record


def _mean(record, metric):
    value = record["per_host"].get(metric)
    return None if value is None else value["mean"]


# --- the runs and the result ------------------------------------------------------------------------------------

def order(rep, size_index, audit_only):
    """The runs of one size and repeat; the contenders alternate who goes first."""
    if audit_only:
        return [("role", "audit")]
    runs = [("role", "audit"), ("baseline", "audit"), ("role", "harden"), ("baseline", "harden")]
    if (rep + size_index) % 2:
        runs = [("baseline", "audit"), ("role", "audit"), ("baseline", "harden"), ("role", "harden")]
    return runs


def summarize_size(records):
    """{contender: {phase: summary}} from the records of one fleet size."""
    grouped = collections.defaultdict(list)
    for record in records:
        grouped[(record["contender"], record["phase"])].append(record)
    out = collections.defaultdict(dict)
    for (contender, phase), runs in grouped.items():
        walls = [run_["wall_s"] for run_ in runs]
        wall = common.summarize(walls)
        size = runs[0]["hosts"]
        out[contender][phase] = {
            "wall_s": wall,
            "wall_median_s": wall["median"],
            "wall_per_host_s": round(wall["median"] / size, 3),
            "all_ok": all(run_["ok"] for run_ in runs),
            "verified_from_controller": None if phase != "harden" else all(
                run_["verified_from_controller"] for run_ in runs),
            "per_host": runs[-1]["per_host"],
            "lab_down_up_s": [round(run_["lab_down_s"] + run_["lab_up_s"], 2) for run_ in runs],
        }
    return dict(out)


def goals(by_size, audit_only):
    """The goals, evaluated on whatever sizes the result holds."""
    def phase(size, contender, name):
        return ((by_size.get(str(size)) or {}).get("summary") or {}).get(contender, {}).get(name)

    sizes = sorted(int(size) for size in by_size)
    result = {}
    audits = {size: phase(size, "role", "audit") for size in sizes}
    measured = {size: audit["per_host"] for size, audit in audits.items() if audit}
    if measured:
        result["role_audit_one_module_execution_per_host"] = {
            "met": all(values["module_executions"] and values["module_executions"]["max"] == 1
                       and values["module_tasks"]["max"] == 1 for values in measured.values()),
            "module_executions_per_host": {size: values["module_executions"] for size, values in measured.items()},
            "module_tasks_per_host": {size: values["module_tasks"] for size, values in measured.items()},
            "tasks_that_ran_a_module": by_size[str(max(measured))].get("role_audit_tasks"),
        }
    if not audit_only and phase(10, "role", "harden") and phase(10, "baseline", "harden"):
        role, baseline = phase(10, "role", "harden"), phase(10, "baseline", "harden")
        speedup = baseline["wall_median_s"] / role["wall_median_s"]
        result["harden_3x_faster_than_baseline_at_10_hosts"] = {
            "met": speedup >= HARDEN_SPEEDUP_GOAL and role["all_ok"] and baseline["all_ok"],
            "speedup": round(speedup, 3), "goal": HARDEN_SPEEDUP_GOAL,
            "role_wall_s": role["wall_median_s"], "baseline_wall_s": baseline["wall_median_s"],
            "comparison_valid": bool(role["verified_from_controller"] and baseline["verified_from_controller"]),
        }
    flat = {}
    for contender in ("role", "baseline"):
        for name in ("audit", "harden"):
            small, large = phase(1, contender, name), phase(10, contender, name)
            if not (small and large):
                continue
            ratio = large["wall_per_host_s"] / small["wall_per_host_s"]
            flat["%s_%s" % (contender, name)] = {
                "wall_per_host_s": {size: phase(size, contender, name)["wall_per_host_s"] for size in sizes
                                    if phase(size, contender, name)},
                "ratio_10_vs_1": round(ratio, 3),
                "marginal_s_per_extra_host": round((large["wall_median_s"] - small["wall_median_s"]) / 9, 3),
                "modules_per_host_10_vs_1": [_mean({"per_host": small["per_host"]}, "module_executions"),
                                             _mean({"per_host": large["per_host"]}, "module_executions")],
                "met": ratio <= FLAT_RATIO_GOAL,
            }
    if flat:
        result["per_host_cost_nearly_flat"] = {
            "goal": "wall/N at 10 hosts at most %.2f x wall/N at 1 host" % FLAT_RATIO_GOAL,
            "met": all(value["met"] for key, value in flat.items() if key.startswith("role_")), "by_run": flat}
    return result


def merge_and_write(name, new_sizes, audit_only, notes):
    path = os.path.join(common.RESULTS_DIR, name + ".json")
    by_size = {}
    try:
        with open(path) as handle:
            by_size = json.load(handle).get("by_size", {})
    except (OSError, ValueError):
        pass
    by_size.update(new_sizes)
    result = {
        "by_size": dict(sorted(by_size.items(), key=lambda item: int(item[0]))),
        "goals": goals(by_size, audit_only),
        "method": notes,
    }
    return common.write_result(name, result), result


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 5, 10], metavar="N", help="fleet sizes (1 5 10)")
    parser.add_argument("--repeats", type=int, default=1, metavar="R",
                        help="runs per (contender, phase, size); the result keeps the median (default 1)")
    parser.add_argument("--audit-only", action="store_true", help="only the role's audit (e.g. --sizes 50)")
    parser.add_argument("--lab-dir", default=os.path.join(REPO, ".lab-bench"), metavar="DIR",
                        help="the lab's state dir (default .lab-bench)")
    parser.add_argument("--collections-path", metavar="DIR",
                        help="an installed portcullis.hardening (default: build and install this checkout)")
    parser.add_argument("--log-dir", metavar="DIR", help="keep every run's logs here (default: a temporary dir)")
    args = parser.parse_args(argv)
    if any(size < 1 for size in args.sizes) or args.repeats < 1:
        parser.error("--sizes and --repeats must be at least 1")
    return args


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if os.geteuid() != 0:
        print("bench/fleet.py needs root (the lab runs rootful podman)", file=sys.stderr)
        return 2
    work = args.log_dir or tempfile.mkdtemp(prefix="portcullis-fleet-")
    os.makedirs(work, exist_ok=True)
    started = time.monotonic()
    lab = Lab(args.lab_dir, os.path.join(work, "lab.log"))
    new_sizes = {}
    adjusted = {}
    failure = None
    try:
        collections_path = args.collections_path or install_collection(work)
        log("collection in %s; logs in %s" % (collections_path, work))
        lab.down()  # a lab left in the state dir by an interrupted run
        for size_index, requested in enumerate(args.sizes):
            size, reasons = fit_fleet(requested)
            if size != requested:
                log("%d hosts do not fit, running %d: %s" % (requested, size, "; ".join(reasons)))
                adjusted[str(requested)] = {"ran": size, "reasons": reasons}
            records = []
            for rep in range(args.repeats):
                for contender, phase in order(rep, size_index, args.audit_only):
                    run_dir = os.path.join(work, "%d-hosts" % size, "%s-%s-%d" % (contender, phase, rep + 1))
                    records.append(measure(lab, contender, phase, size, collections_path, run_dir))
            role_audit = next((record for record in records if (record["contender"], record["phase"])
                               == ("role", "audit")), None)
            facts = common.machine_facts()
            new_sizes[str(size)] = {
                "measured_at": facts["measured_at"],
                "git_commit": facts["git_commit"],
                "git_dirty": facts["git_dirty"],
                "requested_hosts": requested,
                "repeats": args.repeats,
                "summary": summarize_size(records),
                "role_audit_tasks": role_audit and role_audit.get(
                    next((key for key in role_audit if key.startswith("tasks_that_ran")), "")),
                "runs": records,
            }
    except (RuntimeError, OSError, subprocess.SubprocessError, KeyError, ValueError) as exc:
        failure = "%s: %s" % (type(exc).__name__, exc)
        log("stopped: %s" % failure)
    finally:
        try:
            lab.log_path = os.path.join(work, "lab.log")
            lab.down()
            log("lab down")
        except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
            log("taking the lab down failed: %s" % exc)
    notes = {
        "runs_per_point": args.repeats,
        "runs_per_point_note": "%d run per (contender, phase, size): wall_s keeps every sample and the median; each "
                               "run starts from fresh lab hosts (lab down, then up)" % args.repeats,
        "audit": "ansible-playbook PLAYBOOK --check -e @demo/lab-allowlist.yml -e portcullis_fail_on_findings=false",
        "harden": "ansible-playbook PLAYBOOK -e @demo/lab-allowlist.yml -e portcullis_ssh_port=%d "
                  "-e portcullis_stop_unlisted=true" % SSH_PORT,
        "settings": "ANSIBLE_CONFIG=ansible.cfg (pipelining, ControlMaster=auto ControlPersist=60s, forks=20)",
        "module_tasks": "bench/callback_plugins/portcullis_bench_count.py: task results (loop items) that ran a module "
                        "on the host; not skipped, not controller-only actions, not delegated to localhost",
        "module_executions": "bench/ssh-count: ssh invocations whose remote command runs a module (pipelined python)",
        "ssh_invocations": "bench/ssh-count: ssh invocations that log in (mux + master + direct; not -G, not -O)",
        "ssh_new_tcp_connections": "bench/ssh-count: invocations that open a TCP connection (master + direct)",
        "accepted_ssh_logins": "sshd's 'Accepted publickey' journal lines on the host, after minus before minus the "
                               "counting connection",
        "hardened_checks": "after a harden, from the controller over new connections: ssh -p %d (ControlMaster=no) "
                           "logs in, TCP 22 and 8443 do not answer, TCP 8080 does" % SSH_PORT,
        "sizes_lowered": adjusted,
        "stopped_by": failure,
        "duration_s": round(time.monotonic() - started, 1),
    }
    path, result = merge_and_write("fleet-audit" if args.audit_only else "fleet", new_sizes, args.audit_only, notes)
    log("result: %s (%.0f s in all)" % (path, time.monotonic() - started))
    print(json.dumps(result["goals"], indent=2, sort_keys=True))
    if failure or not new_sizes:
        return 1
    return 0 if all(record["ok"] for size in new_sizes.values() for record in size["runs"]) else 1


if __name__ == "__main__":
    sys.exit(main())
