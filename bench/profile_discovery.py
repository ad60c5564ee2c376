# Copyright (c) Portcullis contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Profile listening_ports as Ansible runs it, on 10,000 TCP and 2,000 UDP listeners, and record where the time goes.

Run as root, from the repository:

    .venv/bin/python bench/profile_discovery.py --ref HEAD --label before   # the module of a commit
    .venv/bin/python bench/profile_discovery.py --label after               # the module of the current tree

It takes the collection from `git archive <ref>` (laid out as ansible_collections/portcullis/hardening in a
temporary directory), or without --ref builds and installs the current tree, keeps the AnsiballZ payload
Ansible sends for listening_ports (so the argument handling of AnsibleModule and exit_json's cost are in), and
runs that payload in a network namespace where bench/socket_holder.py holds the listeners:

- a few times as it is (the module process's wall time, CPU, peak RSS, and the size of the result it prints);
- once under cProfile, in-process (total time, the top functions by cumulative and by own time, and the
  fraction of the time spent in exit_json).

The entry for --label in bench/results/profile.json is replaced, the others kept; with both "before" and
"after" present it also records how they compare.
"""

from __future__ import annotations

import os
import sys

PROFILE_FUNCTIONS = ("exit_json", "discover", "_return_formatted", "remove_values", "scan_socket_owners", "parse_table")


def inner(payload, stats_path):
    """Run an AnsiballZ payload in this process under cProfile (started by the outer run, in the namespace)."""
    import cProfile

    with open(payload) as handle:
        code = compile(handle.read(), payload, "exec")
    sys.argv = [payload]
    profiler = cProfile.Profile()
    try:
        profiler.runctx(code, {"__name__": "__main__", "__file__": payload, "__builtins__": __builtins__}, None)
    except SystemExit:  # exit_json / fail_json
        pass
    finally:
        profiler.dump_stats(stats_path)
        sys.stdout.flush()


if __name__ == "__main__" and len(sys.argv) == 4 and sys.argv[1] == "--inner":
    inner(sys.argv[2], sys.argv[3])
    sys.exit(0)

# The outer run: the imports below stay out of the profiled process.
import argparse  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import pstats  # noqa: E402
import re  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import tarfile  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
if BENCH_DIR not in sys.path:
    sys.path.insert(0, BENCH_DIR)

import agreement  # noqa: E402
import common  # noqa: E402
import discovery  # noqa: E402
from netns import BenchError, Holder, Netns, become_subreaper, end_on_sigterm, require_root, timed_run  # noqa: E402

GIT = shutil.which("git") or "/usr/bin/git"
LABEL = re.compile(r"^[A-Za-z0-9_.-]{1,40}$")
# Every command is an argument list built from constants, this repository, the benchmark's temporary files and the
# --ref the user gave (passed to git as one argument, after --verify), run by the root user who started it: ruff's
# S603 is silenced call by call.


def git_commit(ref):
    completed = subprocess.run([GIT, "-C", common.REPO, "rev-parse", "--verify", "--end-of-options", ref + "^{commit}"],  # noqa: S603
                               capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        raise BenchError("not a commit: %r (%s)" % (ref, completed.stderr.strip()))
    return completed.stdout.strip()


def archive_collection(commit, workdir):
    """git archive <commit> into workdir/ref/ansible_collections/portcullis/hardening; return (root, tree)."""
    root = os.path.join(workdir, "ref")
    tree = os.path.join(root, "ansible_collections", "portcullis", "hardening")
    os.makedirs(tree)
    completed = subprocess.run([GIT, "-C", common.REPO, "archive", "--format=tar", commit],  # noqa: S603
                               capture_output=True, check=False)
    if completed.returncode != 0:
        raise BenchError("git archive %s failed: %s" % (commit, completed.stderr.decode("utf-8", "replace")))
    with tarfile.open(fileobj=io.BytesIO(completed.stdout)) as archive:
        for member in archive.getmembers():
            if member.name.startswith("/") or ".." in member.name.split("/"):
                raise BenchError("unexpected path in git archive: %r" % member.name)
        archive.extractall(tree)  # noqa: S202 (checked above; our own repository)
    return root, tree


def function_name(key):
    filename, line, name = key
    if filename == "~":
        return name
    marker = "ansible_collections/"
    short = filename[filename.find(marker):] if marker in filename else filename
    if os.path.basename(short).startswith("AnsiballZ_"):
        short = os.path.basename(short)
    for prefix in ("/ansible/", "/site-packages/"):
        if prefix in short and marker not in short:
            short = short[short.rfind(prefix) + 1:]
    return "%s:%d(%s)" % (short, line, name)


def profile_summary(stats_path, top=15):
    stats = pstats.Stats(stats_path)
    total = stats.total_tt
    rows = []
    for key, (primitive, calls, own, cumulative, _callers) in stats.stats.items():
        rows.append({"function": function_name(key), "name": key[2], "ncalls": calls, "primitive_calls": primitive,
                     "tottime_s": own, "cumtime_s": cumulative, "cum_fraction": cumulative / total if total else None})

    def top_by(field):
        return [dict(row) for row in sorted(rows, key=lambda row: -row[field])[:top]]

    fractions = {}
    for name in PROFILE_FUNCTIONS:
        matching = [row for row in rows if row["name"] == name]
        # the outermost call's cumulative time (recursion and nested calls are already inside it)
        fractions[name] = max((row["cumtime_s"] for row in matching), default=0.0) / total if total else None
    return {"total_time_s": total, "top_cumulative": top_by("cumtime_s"), "top_own": top_by("tottime_s"),
            "fractions": fractions, "exit_json_fraction": fractions["exit_json"]}


def measure(options, workdir):
    if options.ref:
        commit = git_commit(options.ref)
        collections_root, tree = archive_collection(commit, workdir)
        source = {"ref": options.ref, "commit": commit}
    else:
        collections_root = discovery.build_and_install(common.REPO, workdir)
        tree = common.REPO
        head = subprocess.run([GIT, "-C", common.REPO, "rev-parse", "HEAD"], capture_output=True, text=True,  # noqa: S603
                              check=False).stdout.strip()
        source = {"ref": None, "commit": head, "working_tree": True}
    env = discovery.isolated_env(workdir, collections_root)
    payload = discovery.generate_payload(env, workdir, discovery.LP)
    verification = discovery.verify_payload(payload, os.path.join(collections_root, discovery.COLLECTION_PREFIX), tree=tree)
    if not verification["same_as_installed"]:
        raise BenchError("the payload does not carry the collection under test: %s" % json.dumps(verification))
    counts = {"tcp4": options.tcp // 2, "tcp6": options.tcp - options.tcp // 2,
              "udp4": options.udp // 2, "udp6": options.udp - options.udp // 2}
    stats_path = os.path.join(workdir, "listening_ports.prof")
    with Netns() as ns, Holder(ns, counts=counts, special=False) as holder:
        discovery.log("profile %s: namespace %s, holder pid %s, %d sockets" % (
            options.label, ns.name, holder.pid, len(holder.ready["sockets"])))
        argv = ns.exec_argv([sys.executable, payload])
        timed_run(argv, env=env, cwd=workdir).check("warm-up run")
        runs = []
        for number in range(options.runs):
            run = timed_run(argv, env=env, cwd=workdir).check("listening_ports payload")
            runs.append(run)
            discovery.log("run %d/%d: %.3fs, maxrss %.1f MiB" % (number + 1, options.runs, run.wall_s, run.maxrss_kib / 1024.0))
        result = discovery.parse_module_output(runs[-1].stdout, "listening_ports")
        profiled = timed_run(ns.exec_argv([sys.executable, os.path.abspath(__file__), "--inner", payload, stats_path]),
                             env=env, cwd=workdir).check("profiled run")
        discovery.parse_module_output(profiled.stdout, "profiled listening_ports")
        discovery.log("profiled run: %.3fs" % profiled.wall_s)
    summary = profile_summary(stats_path)
    entry = {
        "label": options.label,
        "source": source,
        "machine": common.machine_facts(),
        "sockets": counts,
        "listeners_found": len(agreement.listening_ports_listeners(result)),
        "result_size_bytes": len(runs[-1].stdout),
        "result_keys": sorted(result),
        "wall_time_s": common.summarize([run.wall_s for run in runs]),
        "cpu_time_s": common.summarize([run.user_s + run.sys_s for run in runs]),
        "maxrss_kib": common.summarize([run.maxrss_kib for run in runs]),
        "profiled_wall_time_s": profiled.wall_s,
        "measured_module": verification,
    }
    entry.update(summary)
    return entry


def compare_labels(profiles):
    before, after = profiles.get("before"), profiles.get("after")
    if not before or not after:
        return None
    return {
        "wall_time_ratio_after_over_before": after["wall_time_s"]["median"] / before["wall_time_s"]["median"],
        "total_time_ratio_after_over_before": after["total_time_s"] / before["total_time_s"],
        "result_size_ratio_after_over_before": after["result_size_bytes"] / before["result_size_bytes"],
        "exit_json_fraction": {"before": before["exit_json_fraction"], "after": after["exit_json_fraction"]},
        "maxrss_ratio_after_over_before": after["maxrss_kib"]["median"] / before["maxrss_kib"]["median"],
    }


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--ref", help="profile the collection of this git commit (default: build the current tree)")
    parser.add_argument("--label", required=True, help="entry in bench/results/profile.json: before, after, ...")
    parser.add_argument("--tcp", type=int, default=10000, help="TCP listeners, half IPv4 and half IPv6 (default %(default)s)")
    parser.add_argument("--udp", type=int, default=2000, help="UDP listeners, half IPv4 and half IPv6 (default %(default)s)")
    parser.add_argument("--runs", type=int, default=3, help="unprofiled runs for the wall time (default %(default)s)")
    parser.add_argument("--keep-tmp", action="store_true")
    options = parser.parse_args(argv)
    if not LABEL.match(options.label):
        parser.error("--label: letters, digits, '_', '.', '-' only")
    if options.runs < 1 or options.tcp < 0 or options.udp < 0 or options.tcp > 20000 or options.udp > 20000:
        parser.error("--runs >= 1; --tcp and --udp between 0 and 20000")
    return options


def main(argv=None):
    options = parse_args(argv)
    require_root()
    become_subreaper()
    end_on_sigterm()
    workdir = tempfile.mkdtemp(prefix="portcullis-bench-profile-")
    started = time.monotonic()
    try:
        entry = measure(options, workdir)
    finally:
        if options.keep_tmp:
            discovery.log("kept %s" % workdir)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    entry["duration_s"] = time.monotonic() - started
    try:
        profiles = common.load_result("profile").get("profiles", {})
    except (OSError, ValueError):
        profiles = {}
    profiles[options.label] = entry
    path = common.write_result("profile", {"profiles": profiles, "comparison": compare_labels(profiles)})
    print("%s (%s): %d listeners, module process %.3fs (median of %d), profiled total %.3fs, exit_json %.0f%% of it, "
          "result %d bytes, peak RSS %.1f MiB" % (
              options.label, entry["source"]["ref"] or "working tree", entry["listeners_found"], entry["wall_time_s"]["median"],
              options.runs, entry["total_time_s"], 100 * entry["exit_json_fraction"], entry["result_size_bytes"],
              entry["maxrss_kib"]["median"] / 1024.0))
    print("top functions by cumulative time:")
    for row in entry["top_cumulative"]:
        print("  %8.3fs %5.1f%%  %s" % (row["cumtime_s"], 100 * row["cum_fraction"], row["function"]))
    print("wrote %s" % os.path.relpath(path))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as exc:
        sys.stderr.write("profile_discovery: %s\n" % exc)
        sys.exit(2)
    except KeyboardInterrupt as exc:
        sys.stderr.write("profile_discovery: interrupted (%s); namespace deleted, holder and runs ended\n" % (exc or "SIGINT"))
        sys.exit(130)
