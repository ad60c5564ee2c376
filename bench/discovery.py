# Copyright (c) Portcullis contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The discovery benchmark: portcullis.hardening.listening_ports against community.general.listen_ports_facts,
a bare `ss -H -tulpn` and Ansible's floor (ansible.builtin.ping), on 100, 1,000 and 10,000 listening sockets.

Run as root, from the repository (`make bench` runs it):

    .venv/bin/python bench/discovery.py [--sizes 100 1000 10000] [--rounds N] [--quick]

For each size it creates a network namespace (portcullis-bench-<pid>) where bench/socket_holder.py opens that
many sockets (40% tcp4, 30% tcp6, 15% udp4, 15% udp6, plus the special cases listed in socket_holder.py), and
runs, round-robin and each inside the namespace:

- through Ansible (ansible-playbook, one task, connection local, pipelining on as in the shipped
  ansible.cfg): listening_ports, listen_ports_facts, and ping (the fixed cost of any module);
- the module on the host: each module's AnsiballZ payload run directly (what the managed host spends), and
  `ss -H -tulpn`.

The collection measured is the current tree, built and installed into a temporary directory (or the one
--collections-path names); the payload's sources are checked against the tree and recorded.

listen_ports_facts runs ps twice per listener (minutes a run at 10,000), so above 1,000 listeners its two
contenders run in only the first --lpf-rounds rounds (default 2); the other contenders run in every round.

It records every sample, the medians, the goals (>= 50x faster than listen_ports_facts at 1,000 net of the
ping floor; <= 1.5x a bare ss at 10,000, module on the host; memory that grows linearly), and whether the two
modules agree about the listeners (bench/agreement.py) in bench/results/discovery.json. It exits 1 only when
they disagree beyond the known differences (or listening_ports misses a socket the holder opened); a missed
speed goal is reported, not an error. It exits 2 when its own setup fails, 130 when interrupted; either way the
namespace is deleted and the holder and any run in progress are ended, by pid.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
if BENCH_DIR not in sys.path:
    sys.path.insert(0, BENCH_DIR)

import agreement  # noqa: E402
import common  # noqa: E402
from netns import TIME_BIN, BenchError, Holder, Netns, become_subreaper, end_on_sigterm, require_root, timed_run  # noqa: E402

REPO = common.REPO
VENV_BIN = os.path.dirname(sys.executable)
COLLECTION_PREFIX = "ansible_collections/portcullis/hardening/"

LP = "portcullis.hardening.listening_ports"
LPF = "community.general.listen_ports_facts"
PING = "ansible.builtin.ping"

# name -> what it is; the order of one round (rotated by one each round).
CONTENDERS = {
    "listening_ports": "portcullis.hardening.listening_ports through ansible-playbook",
    "listen_ports_facts": "community.general.listen_ports_facts through ansible-playbook",
    "ss": "ss -H -tulpn",
    "ping": "ansible.builtin.ping through ansible-playbook (Ansible's floor)",
    "listening_ports_module": "listening_ports' AnsiballZ payload run directly (module time on the host)",
    "listen_ports_facts_module": "listen_ports_facts' AnsiballZ payload run directly (module time on the host)",
}
PLAYBOOK_MODULES = {"listening_ports": LP, "listen_ports_facts": LPF, "ping": PING}
LPF_CONTENDERS = ("listen_ports_facts", "listen_ports_facts_module")
# listen_ports_facts runs `ps` twice per listener: about 30 ms a listener on a busy 2-core machine, several minutes a
# run at 10,000. Above this size its two contenders run only in the first --lpf-rounds rounds (no goal uses them).
LPF_FULL_ROUNDS_UP_TO = 1000
DEFAULT_LPF_ROUNDS = 2

DEFAULT_SIZES = (100, 1000, 10000)
QUICK_SIZES = (100, 1000)
QUICK_ROUNDS = 3
DEFAULT_MIX = "tcp4=40,tcp6=30,udp4=15,udp6=15"

GOAL_SPEEDUP = 50.0
GOAL_SPEEDUP_SIZE = 1000
GOAL_SS_RATIO = 1.5
GOAL_SS_SIZE = 10000
GOAL_MEMORY_R2 = 0.95
SBIN_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Every command is an argument list built from constants, this tree and the benchmark's temporary files, run by
# the root user who started it: ruff's S603 is silenced call by call.


def default_rounds(size):
    return 7 if size <= 1000 else 5


def log(message):
    sys.stderr.write("[discovery %s] %s\n" % (time.strftime("%H:%M:%S"), message))
    sys.stderr.flush()


# ---------------------------------------------------------------------------------------------------------
# Ansible staging: the collection under test, an isolated Ansible configuration, and AnsiballZ payloads.
# profile_discovery.py uses these too.

def collections_site_dir():
    """The directory that holds the ansible package's ansible_collections (community.general lives there)."""
    for entry in sys.path:
        if entry and os.path.isdir(os.path.join(entry, "ansible_collections", "community", "general")):
            return entry
    raise BenchError("community.general is not installed next to ansible (pip install ansible)")


def build_and_install(source, workdir):
    """Build the collection from the tree `source` and install it under workdir/c; return that path."""
    build = os.path.join(workdir, "build")
    installed = os.path.join(workdir, "c")
    galaxy = os.path.join(VENV_BIN, "ansible-galaxy")
    env = isolated_env(workdir)
    subprocess.run([galaxy, "collection", "build", "--force", "--output-path", build, source],  # noqa: S603
                   check=True, capture_output=True, env=env, cwd=workdir)
    tarballs = sorted(name for name in os.listdir(build) if name.startswith("portcullis-hardening-") and name.endswith(".tar.gz"))
    if len(tarballs) != 1:
        raise BenchError("expected one tarball in %s, found %s" % (build, tarballs))
    subprocess.run([galaxy, "collection", "install", "--force", "-p", installed, os.path.join(build, tarballs[0])],  # noqa: S603
                   check=True, capture_output=True, env=env, cwd=workdir)
    return installed


def isolated_env(workdir, collections_path=None, python=sys.executable):
    """The environment for every Ansible command: none of the caller's ANSIBLE_* settings, its own home,
    temporary directories and configuration (workdir/ansible.cfg), and the collections under test first."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("ANSIBLE_")}
    env["PATH"] = VENV_BIN + ":" + SBIN_PATH
    config = os.path.join(workdir, "ansible.cfg")
    if not os.path.exists(config):
        with open(config, "w") as handle:
            handle.write("[defaults]\ninterpreter_python = %s\nretry_files_enabled = False\nnocolor = True\n"
                         "stdout_callback = default\n" % python)
    for name in ("home", "local", "remote"):
        os.makedirs(os.path.join(workdir, name), exist_ok=True)
    env.update({
        "ANSIBLE_CONFIG": config,
        "ANSIBLE_HOME": os.path.join(workdir, "home"),
        "ANSIBLE_LOCAL_TEMP": os.path.join(workdir, "local"),
        "ANSIBLE_REMOTE_TMP": os.path.join(workdir, "remote"),
        # As the shipped ansible.cfg: one process per module, no temporary files.
        "ANSIBLE_PIPELINING": "True",
        "ANSIBLE_NOCOLOR": "1",
    })
    if collections_path:
        env["ANSIBLE_COLLECTIONS_PATH"] = collections_path + os.pathsep + collections_site_dir()
    return env


def write_playbooks(workdir, lpf_args):
    """One tiny playbook per Ansible contender: one task, no facts gathered, nothing printed but the recap."""
    paths = {}
    for name, module in PLAYBOOK_MODULES.items():
        args = lpf_args if module == LPF else {}
        task = "    - name: %s\n      %s:%s\n" % (name, module, (" " + json.dumps(args)) if args else "")
        path = os.path.join(workdir, "play_%s.yml" % name)
        with open(path, "w") as handle:
            handle.write("- hosts: localhost\n  gather_facts: false\n  tasks:\n" + task)
        paths[name] = path
    return paths


def generate_payload(env, workdir, module, args=None):
    """The AnsiballZ payload Ansible sends for `module` (with `args`), kept with ANSIBLE_KEEP_REMOTE_FILES."""
    short = module.rsplit(".", 1)[1]
    remote = tempfile.mkdtemp(prefix="payload-%s-" % short, dir=workdir)
    run_env = dict(env, ANSIBLE_KEEP_REMOTE_FILES="1", ANSIBLE_PIPELINING="False", ANSIBLE_REMOTE_TMP=remote)
    argv = [os.path.join(VENV_BIN, "ansible"), "localhost", "-i", "localhost,", "-c", "local", "-m", module]
    if args:
        argv += ["-a", json.dumps(args)]
    completed = subprocess.run(argv, capture_output=True, text=True, env=run_env, cwd=workdir, check=False)  # noqa: S603
    if completed.returncode != 0:
        raise BenchError("could not run %s to keep its payload: %s" % (module, (completed.stdout + completed.stderr)[-2000:]))
    found = []
    for root, _dirs, files in os.walk(remote):
        found += [os.path.join(root, name) for name in files if name == "AnsiballZ_%s.py" % short]
    if len(found) != 1:
        raise BenchError("expected one AnsiballZ_%s.py under %s, found %s" % (short, remote, found))
    payload = os.path.join(workdir, "AnsiballZ_%s.py" % short)
    shutil.copyfile(found[0], payload)
    return payload


def payload_sources(payload):
    """{path in the zip: sha256} of the collection files inside an AnsiballZ payload."""
    with open(payload) as handle:
        text = handle.read()
    match = re.search(r"^zip_data='([A-Za-z0-9+/=]+)'", text, re.MULTILINE)
    if not match:
        raise BenchError("no zip_data in %s" % payload)
    with zipfile.ZipFile(io.BytesIO(base64.b64decode(match.group(1)))) as archive:
        return {name: hashlib.sha256(archive.read(name)).hexdigest() for name in archive.namelist()
                if name.startswith(COLLECTION_PREFIX) and name.endswith(".py")}


def _sha256(path):
    try:
        with open(path, "rb") as handle:
            return hashlib.sha256(handle.read()).hexdigest()
    except OSError:
        return None


def verify_payload(payload, collection_dir, tree=REPO):
    """Which collection files the payload carries, and whether each equals the installed copy and the tree."""
    files = {}
    for name, digest in sorted(payload_sources(payload).items()):
        relative = name[len(COLLECTION_PREFIX):]
        if relative.endswith("__init__.py") and not os.path.exists(os.path.join(tree, relative)):
            continue  # a package marker Ansible synthesises
        installed = _sha256(os.path.join(collection_dir, relative)) if collection_dir else None
        files[relative] = {"sha256": digest, "same_as_installed": installed == digest if collection_dir else None,
                           "same_as_tree": _sha256(os.path.join(tree, relative)) == digest}
    return {"files": files,
            "same_as_installed": all(item["same_as_installed"] is not False for item in files.values()),
            "same_as_tree": all(item["same_as_tree"] for item in files.values())}


def lpf_tool(command):
    """The command listen_ports_facts runs: its own choice (netstat if installed, else ss) unless told."""
    if command in ("netstat", "ss"):
        return command
    return "netstat" if shutil.which("netstat", path=SBIN_PATH) else "ss"


def parse_module_output(stdout, what):
    """The JSON result an AnsiballZ payload prints (skipping anything before the first '{')."""
    text = stdout.decode("utf-8", "replace")
    start = text.find("{")
    try:
        result = json.loads(text[start:]) if start >= 0 else None
    except ValueError as exc:
        raise BenchError("%s printed no JSON result (%s): %s" % (what, exc, text[:500]))
    if not isinstance(result, dict) or result.get("failed"):
        raise BenchError("%s failed: %s" % (what, text[:2000]))
    return result


# ---------------------------------------------------------------------------------------------------------
# Statistics and goals (pure).

def linear_fit(xs, ys):
    """Least squares y = intercept + slope * x, with r^2; None with fewer than two distinct x."""
    points = len(xs)
    if points < 2 or len(set(xs)) < 2:
        return None
    mean_x = sum(xs) / points
    mean_y = sum(ys) / points
    sxx = sum((x - mean_x) ** 2 for x in xs)
    sxy = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys))
    slope = sxy / sxx
    intercept = mean_y - slope * mean_x
    ss_tot = sum((y - mean_y) ** 2 for y in ys)
    ss_res = sum((y - intercept - slope * x) ** 2 for x, y in zip(xs, ys))
    r2 = 1.0 - ss_res / ss_tot if ss_tot else 1.0
    return {"slope": slope, "intercept": intercept, "r2": r2, "points": points}


def memory_growth(points):
    """Linear fit of peak RSS (KiB) over listeners, and the KiB per listener between consecutive sizes.

    `points` is [(listeners, median maxrss KiB)], sorted by listeners.
    """
    points = sorted(points)
    fit = linear_fit([point[0] for point in points], [point[1] for point in points])
    increments = []
    for (x0, y0), (x1, y1) in zip(points, points[1:]):
        increments.append({"from": x0, "to": x1, "kib_per_listener": (y1 - y0) / (x1 - x0) if x1 != x0 else None})
    return {"points": [{"listeners": x, "maxrss_kib": y} for x, y in points], "fit": fit, "increments": increments}


def evaluate_goals(sizes):
    """The three goals from the per-size summaries ({size: {contender: {"wall_s": summary, ...}}})."""
    goals = {}

    def median(size, name, field="wall_s"):
        return sizes[size]["contenders"][name][field]["median"]

    def iqr(size, name):
        summary = sizes[size]["contenders"][name]["wall_s"]
        return summary["q3"] - summary["q1"]

    size = GOAL_SPEEDUP_SIZE
    if size in sizes:
        lp, lpf, ping = median(size, "listening_ports"), median(size, "listen_ports_facts"), median(size, "ping")
        net_lp, net_lpf = lp - ping, lpf - ping
        noise = max(iqr(size, "ping"), iqr(size, "listening_ports"))
        within_noise = net_lp <= 0 or net_lp <= noise
        net_ratio = net_lpf / net_lp if net_lp > 0 else None
        module_ratio = median(size, "listen_ports_facts_module") / median(size, "listening_ports_module")
        decided_by = "module_time_on_host" if within_noise else "net_of_ping"
        ratio = module_ratio if within_noise else net_ratio
        goals["speedup_vs_listen_ports_facts"] = {
            "goal": "(lpf - ping) / (lp - ping) >= %g at %d listeners (through Ansible)" % (GOAL_SPEEDUP, size),
            "size": size, "threshold": GOAL_SPEEDUP,
            "lp_median_s": lp, "lpf_median_s": lpf, "ping_median_s": ping,
            "lp_net_s": net_lp, "lpf_net_s": net_lpf, "noise_s": noise,
            "lp_net_within_noise": within_noise,
            "net_ratio": net_ratio, "module_time_ratio": module_ratio,
            "decided_by": decided_by, "ratio": ratio, "met": ratio is not None and ratio >= GOAL_SPEEDUP,
        }
    else:
        goals["speedup_vs_listen_ports_facts"] = {"met": None, "reason": "size %d not measured" % size}

    size = GOAL_SS_SIZE
    if size in sizes:
        lp_module, ss = median(size, "listening_ports_module"), median(size, "ss")
        ratio = lp_module / ss
        goals["module_vs_bare_ss"] = {
            "goal": "listening_ports module time on the host / ss -H -tulpn <= %g at %d listeners" % (GOAL_SS_RATIO, size),
            "size": size, "threshold": GOAL_SS_RATIO, "lp_module_median_s": lp_module, "ss_median_s": ss,
            "ratio": ratio, "met": ratio <= GOAL_SS_RATIO,
        }
    else:
        goals["module_vs_bare_ss"] = {"met": None, "reason": "size %d not measured" % size}

    points = [(sizes[size]["listeners"]["listening_ports"], median(size, "listening_ports_module", "maxrss_kib"))
              for size in sorted(sizes)]
    growth = memory_growth(points)
    goal = {"goal": "peak RSS of the listening_ports module process linear in the listeners: r^2 >= %g over >= 3 sizes"
                    % GOAL_MEMORY_R2, "threshold": GOAL_MEMORY_R2}
    goal.update(growth)
    if len(points) < 3 or not growth["fit"]:
        goal.update(met=None, reason="needs at least 3 sizes (measured %d)" % len(points))
    else:
        goal.update(r2=growth["fit"]["r2"], met=growth["fit"]["r2"] >= GOAL_MEMORY_R2)
    goals["memory_linear"] = goal
    return goals


# ---------------------------------------------------------------------------------------------------------
# The benchmark.

class Bench:
    def __init__(self, options):
        self.options = options
        self.workdir = None
        self.collection = None
        self.env = None
        self.playbooks = None
        self.payloads = {}
        self.tool = lpf_tool(options.lpf_command)
        self.lpf_args = {"command": options.lpf_command} if options.lpf_command in ("netstat", "ss") else {}

    def stage(self):
        self.workdir = tempfile.mkdtemp(prefix="portcullis-bench-discovery-")
        if self.options.collections_path:
            self.collection = os.path.abspath(self.options.collections_path)
        else:
            log("building and installing the collection from %s" % REPO)
            self.collection = build_and_install(REPO, self.workdir)
        self.env = isolated_env(self.workdir, self.collection)
        self.playbooks = write_playbooks(self.workdir, self.lpf_args)
        self.payloads["listening_ports_module"] = generate_payload(self.env, self.workdir, LP)
        self.payloads["listen_ports_facts_module"] = generate_payload(self.env, self.workdir, LPF, self.lpf_args)
        installed = os.path.join(self.collection, COLLECTION_PREFIX)
        self.verification = verify_payload(self.payloads["listening_ports_module"], installed)
        if not self.verification["same_as_installed"]:
            raise BenchError("the listening_ports payload does not carry the installed collection's files: %s"
                             % json.dumps(self.verification, indent=1))
        if not self.verification["same_as_tree"]:
            log("note: the tree changed since the collection was built (or --collections-path is another tree)")

    def cleanup(self):
        if self.workdir and not self.options.keep_tmp:
            shutil.rmtree(self.workdir, ignore_errors=True)
        elif self.workdir:
            log("kept %s" % self.workdir)

    def argv(self, name, ns):
        if name in self.playbooks:
            return ns.exec_argv([os.path.join(VENV_BIN, "ansible-playbook"), "-i", "localhost,", "-c", "local",
                                 self.playbooks[name]])
        if name in self.payloads:
            return ns.exec_argv([sys.executable, self.payloads[name]])
        if name == "ss":
            return ns.exec_argv(["ss", "-H", "-tulpn"])
        raise KeyError(name)

    def run_one(self, name, ns):
        run = timed_run(self.argv(name, ns), env=self.env, cwd=self.workdir)
        run.check(name)
        parsed = None
        if name in self.playbooks:
            text = run.stdout.decode("utf-8", "replace")
            if not re.search(r"\bok=1\b.*\bfailed=0\b", text):
                raise BenchError("%s: unexpected recap: %s" % (name, text[-2000:]))
        elif name in self.payloads:
            parsed = parse_module_output(run.stdout, name)
        return run, parsed

    def measure_size(self, size, rounds, warm_up):
        with Netns() as ns, Holder(ns, count=size, mix=self.options.mix, special=not self.options.no_special) as holder:
            log("size %d: namespace %s, holder pid %s, %d sockets opened" % (
                size, ns.name, holder.pid, len(holder.ready["sockets"])))
            names = list(CONTENDERS)
            if warm_up:
                for name in names:
                    self.run_one(name, ns)
            lpf_rounds = rounds if size <= LPF_FULL_ROUNDS_UP_TO else min(rounds, self.options.lpf_rounds)
            samples = {name: {"wall_s": [], "user_s": [], "sys_s": [], "maxrss_kib": []} for name in names}
            orders = []
            checks = []
            holder_tuples = (agreement.normalize_holder(holder.ready), agreement.normalize_holder(holder.ready, "not_listening"))
            listeners = {}
            ss_lines = None
            for number in range(rounds):
                order = names[number % len(names):] + names[:number % len(names)]
                if number >= lpf_rounds:
                    order = [name for name in order if name not in LPF_CONTENDERS]
                orders.append(order)
                outputs = {}
                for name in order:
                    run, parsed = self.run_one(name, ns)
                    for field in ("wall_s", "user_s", "sys_s", "maxrss_kib"):
                        samples[name][field].append(getattr(run, field))
                    if parsed is not None:
                        outputs[name] = parsed
                    if name == "ss":
                        ss_lines = len(run.stdout.splitlines())
                    if name == "listening_ports_module":
                        listeners["listening_ports_result_bytes"] = len(run.stdout)
                    log("size %d round %d/%d %-26s %8.3fs  maxrss %7.1f MiB" % (
                        size, number + 1, rounds, name, run.wall_s, run.maxrss_kib / 1024.0))
                lp_result = outputs["listening_ports_module"]
                listeners["listening_ports"] = len(agreement.listening_ports_listeners(lp_result))
                listeners.update(ss_lines=ss_lines, holder_sockets=len(holder.ready["sockets"]))
                if "listen_ports_facts_module" in outputs:
                    checks.append(self.check_agreement(outputs, holder_tuples))
                    listeners["listen_ports_facts_items"] = len(agreement.listen_ports_facts_items(outputs["listen_ports_facts_module"]))
            return {
                "size": size,
                "rounds": rounds,
                "listen_ports_facts_rounds": lpf_rounds,
                "holder": {"counts": holder.ready["counts"], "sockets": len(holder.ready["sockets"]),
                           "helpers": len(holder.ready["helpers"]), "not_listening": len(holder.ready["not_listening"])},
                "listeners": listeners,
                "orders": orders,
                "contenders": {name: {field: common.summarize(values) for field, values in fields.items()}
                               for name, fields in samples.items()},
                "agreement": self.merge_checks(checks),
            }

    def check_agreement(self, outputs, holder_tuples):
        lp_tuples = agreement.normalize_listening_ports(outputs["listening_ports_module"])
        lpf_tuples = agreement.normalize_listen_ports_facts(outputs["listen_ports_facts_module"])
        modules = agreement.compare(lp_tuples, lpf_tuples, self.tool)
        holder = agreement.compare_with_holder(lp_tuples, *holder_tuples)
        fields = agreement.field_differences(outputs["listening_ports_module"], outputs["listen_ports_facts_module"])
        return {"modules": modules, "holder": holder, "fields": fields,
                "ok": modules["agree"] and holder["ok"]}

    @staticmethod
    def merge_checks(checks):
        """One agreement record per size: the first failing round's details, or the last round's."""
        failing = [index for index, check in enumerate(checks) if not check["ok"]]
        chosen = checks[failing[0]] if failing else checks[-1]
        return {"ok": not failing, "rounds_checked": len(checks), "rounds_failed": len(failing),
                "details_of_round": (failing[0] if failing else len(checks) - 1) + 1,
                "modules": chosen["modules"], "holder": chosen["holder"], "fields": chosen["fields"]}


def summary_table(sizes):
    lines = ["%-7s %-27s %10s %21s %10s" % ("SIZE", "CONTENDER", "MEDIAN s", "Q1..Q3 s", "MAXRSS MiB")]
    for size in sorted(sizes):
        for name, fields in sizes[size]["contenders"].items():
            wall = fields["wall_s"]
            lines.append("%-7d %-27s %10.3f %10.3f..%-10.3f %10.1f" % (
                size, name, wall["median"], wall["q1"], wall["q3"], fields["maxrss_kib"]["median"] / 1024.0))
    return "\n".join(lines)


def goal_lines(goals):
    def verdict(goal):
        return {True: "MET", False: "NOT MET", None: "NOT EVALUATED"}[goal["met"]]

    lines = []
    goal = goals["speedup_vs_listen_ports_facts"]
    if goal["met"] is None:
        lines.append("GOAL >= %gx faster than listen_ports_facts: NOT EVALUATED (%s)" % (GOAL_SPEEDUP, goal["reason"]))
    else:
        net = "%.1fx" % goal["net_ratio"] if goal["net_ratio"] is not None else "n/a (lp - ping <= 0)"
        lines.append("GOAL >= %gx faster than listen_ports_facts at %d, net of ping: %s (net %s, module on host %.1fx%s)"
                     % (GOAL_SPEEDUP, goal["size"], verdict(goal), net, goal["module_time_ratio"],
                        "; lp - ping within noise, decided by module time" if goal["lp_net_within_noise"] else ""))
    goal = goals["module_vs_bare_ss"]
    if goal["met"] is None:
        lines.append("GOAL <= %gx a bare ss: NOT EVALUATED (%s)" % (GOAL_SS_RATIO, goal["reason"]))
    else:
        lines.append("GOAL <= %gx a bare ss at %d, module on host: %s (%.2fx: %.3fs vs %.3fs)" % (
            GOAL_SS_RATIO, goal["size"], verdict(goal), goal["ratio"], goal["lp_module_median_s"], goal["ss_median_s"]))
    goal = goals["memory_linear"]
    increments = ", ".join("%s->%s: %.2f KiB/listener" % (item["from"], item["to"], item["kib_per_listener"])
                           for item in goal["increments"] if item["kib_per_listener"] is not None)
    if goal["met"] is None:
        lines.append("GOAL memory grows linearly: NOT EVALUATED (%s; %s)" % (goal["reason"], increments))
    else:
        lines.append("GOAL memory grows linearly: %s (r^2 %.4f, slope %.2f KiB/listener, intercept %.1f MiB; %s)" % (
            verdict(goal), goal["r2"], goal["fit"]["slope"], goal["fit"]["intercept"] / 1024.0, increments))
    return lines


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--sizes", type=int, nargs="+", help="listening sockets per run (default %s)" % " ".join(map(str, DEFAULT_SIZES)))
    parser.add_argument("--rounds", type=int, help="rounds at every size (default 7 up to 1,000 sockets, 5 above)")
    parser.add_argument("--quick", action="store_true", help="smoke run: sizes %s, %d rounds" % (
        " ".join(map(str, QUICK_SIZES)), QUICK_ROUNDS))
    parser.add_argument("--collections-path", help="an installed collection tree (holding ansible_collections/portcullis/"
                        "hardening) to measure instead of building the current tree")
    parser.add_argument("--lpf-command", choices=("auto", "netstat", "ss"), default="auto",
                        help="listen_ports_facts' command option (auto: its own choice, netstat when installed)")
    parser.add_argument("--lpf-rounds", type=int, default=DEFAULT_LPF_ROUNDS,
                        help="above %d listeners, run the listen_ports_facts contenders in only this many of the rounds "
                             "(default %%(default)s: they take minutes there, and no goal uses them)" % LPF_FULL_ROUNDS_UP_TO)
    parser.add_argument("--mix", default=DEFAULT_MIX, help="share of each kind of socket (default %(default)s)")
    parser.add_argument("--no-special", action="store_true", help="only the bulk sockets, none of the special cases")
    parser.add_argument("--keep-tmp", action="store_true", help="keep the temporary directory (payloads, playbooks)")
    options = parser.parse_args(argv)
    if options.sizes is None:
        options.sizes = list(QUICK_SIZES if options.quick else DEFAULT_SIZES)
    if options.rounds is None and options.quick:
        options.rounds = QUICK_ROUNDS
    if any(size < 0 for size in options.sizes) or (options.rounds is not None and options.rounds < 1) or options.lpf_rounds < 1:
        parser.error("sizes must be >= 0, --rounds and --lpf-rounds >= 1")
    return options


def main(argv=None):
    options = parse_args(argv)
    require_root()
    become_subreaper()
    end_on_sigterm()
    started = time.monotonic()
    bench = Bench(options)
    sizes = {}
    try:
        bench.stage()
        for index, size in enumerate(sorted(set(options.sizes))):
            rounds = options.rounds or default_rounds(size)
            sizes[size] = bench.measure_size(size, rounds, warm_up=index == 0)
    finally:
        bench.cleanup()
    goals = evaluate_goals(sizes)
    agree = all(result["agreement"]["ok"] for result in sizes.values())
    duration = time.monotonic() - started
    document = {
        "parameters": {
            "sizes": sorted(sizes), "rounds": {str(size): result["rounds"] for size, result in sizes.items()},
            "listen_ports_facts_rounds": {str(size): result["listen_ports_facts_rounds"] for size, result in sizes.items()},
            "maxrss_source": "gnu-time %s" % TIME_BIN if os.access(TIME_BIN, os.X_OK) else "wait4 (includes this process's RSS at fork)",
            "quick": options.quick, "mix": options.mix, "special_cases": not options.no_special,
            "lpf_command_option": options.lpf_command, "lpf_tool": bench.tool,
            "python": sys.executable, "collections_path": options.collections_path or "built from the tree",
            "contenders": CONTENDERS, "pipelining": True,
        },
        "measured_module": bench.verification,
        "sizes": {str(size): result for size, result in sizes.items()},
        "goals": goals,
        "agreement": {"ok": agree, "per_size": {str(size): result["agreement"]["ok"] for size, result in sizes.items()},
                      "lpf_tool": bench.tool},
        "known_differences": agreement.KNOWN_DIFFERENCES,
        "duration_s": duration,
    }
    path = common.write_result("discovery", document)
    print(summary_table(sizes))
    print()
    for line in goal_lines(goals):
        print(line)
    for size, result in sorted(sizes.items()):
        check = result["agreement"]
        explained = ", ".join("%s x%d" % item for item in check["modules"]["explained_counts"].items()) or "none"
        print("AGREEMENT at %d: %s (listen_ports_facts via %s; known differences seen: %s)" % (
            size, "OK" if check["ok"] else "FAILED", bench.tool, explained))
        if not check["ok"]:
            print("  only listening_ports: %s" % check["modules"]["only_listening_ports"][:10])
            print("  only listen_ports_facts: %s" % check["modules"]["only_listen_ports_facts"][:10])
            print("  pid mismatches: %s" % check["modules"]["pid_mismatches"][:10])
            print("  holder sockets listening_ports missed: %s" % check["holder"]["missing"][:10])
            print("  sockets that do not listen, listed by listening_ports: %s" % check["holder"]["not_listening_listed"][:10])
    print("wrote %s in %.0fs" % (os.path.relpath(path), duration))
    if not agree:
        print("FAILED: the two modules disagree about the listeners (beyond bench/agreement.py KNOWN_DIFFERENCES)")
        return 1
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as exc:
        sys.stderr.write("discovery benchmark: %s\n" % exc)
        sys.exit(2)
    except KeyboardInterrupt as exc:
        sys.stderr.write("discovery benchmark: interrupted (%s); namespace deleted, holder and runs ended\n" % (exc or "SIGINT"))
        sys.exit(130)
