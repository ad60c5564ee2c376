# Copyright (c) Portcullis contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""`make bench-report`: the plots (docs/images/bench-*.png) and the tables of docs/performance.md, from the result
files in bench/results/. Nothing here measures; a result that is missing is said to be missing.

    .venv/bin/python bench/report.py [--check]

--check rewrites nothing and exits 1 when docs/performance.md's tables differ from what the results give.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
if BENCH_DIR not in sys.path:
    sys.path.insert(0, BENCH_DIR)

import common  # noqa: E402

DOC = os.path.join(common.REPO, "docs", "performance.md")
IMAGES = os.path.join(common.REPO, "docs", "images")
START, END = "<!-- bench-report:start -->", "<!-- bench-report:end -->"
DISCOVERY_CONTENDERS = (
    ("listening_ports", "listening_ports"),
    ("listen_ports_facts", "listen_ports_facts"),
    ("ping", "ping (floor)"),
    ("listening_ports_module", "listening_ports, module on the host"),
    ("listen_ports_facts_module", "listen_ports_facts, module on the host"),
    ("ss", "ss -H -tulpn"),
)
FLEET_RUNS = (("role", "audit"), ("baseline", "audit"), ("role", "harden"), ("baseline", "harden"))


def load(name):
    path = os.path.join(common.RESULTS_DIR, name + ".json")
    if not os.path.exists(path):
        return None
    with open(path) as handle:
        return json.load(handle)


def seconds(value):
    if value is None:
        return "n/a"
    return "%.2f s" % value if value < 10 else "%.1f s" % value


def ratio(value):
    return "n/a" if value is None else "%.2f×" % value if value < 10 else "%.0f×" % value


def met(goal):
    if not goal or goal.get("met") is None:
        return "not measured" + (": %s" % goal["reason"] if goal and goal.get("reason") else "")
    return "**met**" if goal["met"] else "**not met**"


def machine_line(result):
    machine = result["machine"]
    versions = machine.get("versions", {})
    return ("Measured %s on %s CPUs (%s), %s MiB, %s, kernel %s, load average %s at the start; ansible-core %s, "
            "community.general %s, commit %s%s." % (
                machine.get("measured_at"), machine.get("cpus"), machine.get("cpu_model"), machine.get("mem_total_mib"),
                machine.get("os"), machine.get("kernel"), "/".join(str(v) for v in machine.get("load_average_at_start", [])),
                versions.get("ansible_core"), versions.get("community_general"), (machine.get("git_commit") or "?")[:7],
                " (with uncommitted changes)" if machine.get("git_dirty") else ""))


def _median(contender, field="wall_s"):
    return (contender or {}).get(field, {}).get("median")


# --- discovery ------------------------------------------------------------------------------------------------

def discovery_section(result):
    if result is None:
        return ["### Discovery at scale", "", "No result yet: run `make bench`.", ""]
    sizes = sorted(result["sizes"], key=int)
    lines = ["### Discovery at scale", "", machine_line(result), "",
             "Median wall time (and spread, min to max) of each contender, alternated round by round in one "
             "network namespace; peak memory (maxrss) of the module process on the host.", "",
             "| listeners | " + " | ".join(label for _key, label in DISCOVERY_CONTENDERS) + " | listening_ports module maxrss |",
             "| --- |" + " --- |" * (len(DISCOVERY_CONTENDERS) + 1)]
    for size in sizes:
        contenders = result["sizes"][size]["contenders"]
        cells = []
        for key, _label in DISCOVERY_CONTENDERS:
            wall = (contenders.get(key) or {}).get("wall_s")
            cells.append("%s (%s–%s, n=%d)" % (seconds(wall["median"]), seconds(wall["min"]), seconds(wall["max"]),
                                               wall["n"]) if wall else "n/a")
        rss = _median(contenders.get("listening_ports_module"), "maxrss_kib")
        memory = "%.1f MiB" % (rss / 1024.0) if rss else "n/a"
        lines.append("| %s | %s | %s |" % (format(int(size), ","), " | ".join(cells), memory))
    goals = result.get("goals", {})
    lines += ["", "| goal | measured | |", "| --- | --- | --- |"]
    speed = goals.get("speedup_vs_listen_ports_facts", {})
    lines.append("| ≥ 50× faster than listen_ports_facts at 1,000 listeners, net of the ping floor | %s | %s |" % (
        _goal_value(speed), met(speed)))
    bare = goals.get("module_vs_bare_ss", {})
    lines.append("| ≤ 1.5× a bare `ss` at 10,000, module time on the host | %s | %s |" % (_goal_value(bare), met(bare)))
    memory = goals.get("memory_linear", {})
    lines.append("| memory that grows linearly with the listeners | %s | %s |" % (_memory_value(memory), met(memory)))
    agreement = result.get("agreement", {})
    lines += ["", "The two modules agree about the listeners at every size: **%s** (known differences, each explained "
              "in `bench/agreement.py`: %s)." % ("yes" if agreement.get("ok") else "NO",
                                                 ", ".join("`%s`" % key for key in sorted(result.get("known_differences", {})))),
              "", "![Discovery time by listeners](images/bench-discovery.png)", ""]
    return lines


def _goal_value(goal):
    for key in ("ratio", "speedup", "measured"):
        if isinstance(goal.get(key), (int, float)):
            return ratio(goal[key])
    return "n/a"


def _memory_value(goal):
    fit = goal.get("fit") or {}
    if not fit:
        return "n/a"
    return "%.2f KiB per listener over %.1f MiB, r² = %.3f" % (
        fit.get("slope_kib_per_listener", 0.0), fit.get("intercept_kib", 0.0) / 1024.0, fit.get("r2", 0.0))


def discovery_plot(result, plt):
    if result is None:
        return None
    sizes = sorted(result["sizes"], key=int)
    figure, axis = plt.subplots(figsize=(8, 5))
    for key, label in DISCOVERY_CONTENDERS:
        xs, ys, low, high = [], [], [], []
        for size in sizes:
            wall = (result["sizes"][size]["contenders"].get(key) or {}).get("wall_s")
            if wall:
                xs.append(int(size))
                ys.append(wall["median"])
                low.append(wall["median"] - wall["min"])
                high.append(wall["max"] - wall["median"])
        if xs:
            axis.errorbar(xs, ys, yerr=[low, high], marker="o", capsize=3, label=label)
    axis.set_xscale("log")
    axis.set_yscale("log")
    axis.set_xlabel("listening sockets")
    axis.set_ylabel("wall time, median (s)")
    axis.set_title("Discovery: listening_ports against listen_ports_facts, ss and ping")
    axis.grid(True, which="both", alpha=0.3)
    axis.legend(fontsize=8)
    return _save(figure, plt, "bench-discovery.png")


# --- profile --------------------------------------------------------------------------------------------------

def profile_section(result):
    if result is None or not {"before", "after"} <= set(result.get("profiles", {})):
        return ["### Profile of listening_ports", "", "No before/after result yet: run `make bench`.", ""]
    before, after = result["profiles"]["before"], result["profiles"]["after"]
    lines = ["### Profile of listening_ports (10,000 TCP and 2,000 UDP sockets)", "", machine_line(result), "",
             "Before: commit %s; after: commit %s. The module runs as Ansible runs it on a target (its AnsiballZ "
             "payload), under cProfile for the breakdown and without it for the times." % (
                 (before.get("source", {}).get("commit") or "?")[:7], (after.get("source", {}).get("commit") or "?")[:7]),
             "", "| | before | after | after / before |", "| --- | --- | --- | --- |"]

    def row(label, field, fmt):
        old, new = before.get(field), after.get(field)
        old = old.get("median") if isinstance(old, dict) else old
        new = new.get("median") if isinstance(new, dict) else new
        lines.append("| %s | %s | %s | %s |" % (label, fmt(old), fmt(new), "%.2f" % (new / old) if old and new else "n/a"))
    row("wall time of the module process (median)", "wall_time_s", seconds)
    row("CPU time (median)", "cpu_time_s", seconds)
    row("result size", "result_size_bytes", lambda value: "%.1f MB" % (value / 1e6) if value else "n/a")
    row("peak memory (maxrss)", "maxrss_kib", lambda value: "%.1f MiB" % (value / 1024.0) if value else "n/a")
    for label, key in (("share of the time in exit_json", "exit_json"), ("of which remove_values", "remove_values"),
                       ("share in discovery itself", "discover")):
        old, new = before.get("fractions", {}).get(key), after.get("fractions", {}).get(key)
        shares = ["%.0f%%" % (100 * share) if share is not None else "n/a" for share in (old, new)]
        lines.append("| %s | %s | %s | |" % (label, shares[0], shares[1]))
    lines += ["", "![Where listening_ports spends its time, before and after](images/bench-profile.png)", ""]
    return lines


def profile_plot(result, plt):
    if result is None or not {"before", "after"} <= set(result.get("profiles", {})):
        return None
    figure, axis = plt.subplots(figsize=(7, 4))
    labels, parts = [], {"discovery": [], "exit_json (remove_values, JSON)": [], "the rest": []}
    for label in ("before", "after"):
        profile = result["profiles"][label]
        wall = profile["wall_time_s"]["median"]
        fractions = profile.get("fractions", {})
        exit_share, discover_share = fractions.get("exit_json", 0.0), fractions.get("discover", 0.0)
        labels.append(label)
        parts["discovery"].append(wall * discover_share)
        parts["exit_json (remove_values, JSON)"].append(wall * exit_share)
        parts["the rest"].append(max(0.0, wall * (1 - exit_share - discover_share)))
    left = [0.0] * len(labels)
    for name, values in parts.items():
        axis.barh(labels, values, left=left, label=name)
        left = [a + b for a, b in zip(left, values)]
    axis.set_xlabel("wall time of the module process, median (s), split by the cProfile shares")
    axis.set_title("listening_ports on 12,000 sockets")
    axis.legend(fontsize=8)
    return _save(figure, plt, "bench-profile.png")


# --- fleet ----------------------------------------------------------------------------------------------------

def fleet_section(result, audit_only):
    lines = ["### Fleet", ""]
    if result is None:
        lines += ["No result yet: run `make bench`.", ""]
    else:
        lines += [machine_line(result), "",
                  "Each contender on fresh lab hosts (Debian 12 containers over real SSH, the shipped ansible.cfg: "
                  "pipelining, ControlPersist, 20 forks), one run per point. The baseline is `bench/baseline/`: "
                  "stock modules as popular roles use them. Per host: module executions, and the SSH logins sshd "
                  "accepted.", "",
                  "| hosts | run | wall | wall per host | module executions per host | SSH logins per host |",
                  "| --- | --- | --- | --- | --- | --- |"]
        for size in sorted(result["by_size"], key=int):
            summary = result["by_size"][size]["summary"]
            for contender, phase in FLEET_RUNS:
                run = summary.get(contender, {}).get(phase)
                if not run:
                    continue
                per_host = run.get("per_host", {})
                lines.append("| %s | %s %s | %s | %s | %s | %s |" % (
                    size, contender, phase, seconds(run.get("wall_median_s")), seconds(run.get("wall_per_host_s")),
                    _mean(per_host.get("module_executions")), _mean(per_host.get("accepted_ssh_logins"))))
        goals = result.get("goals", {})
        one = goals.get("role_audit_one_module_execution_per_host", {})
        harden = goals.get("harden_3x_faster_than_baseline_at_10_hosts", {})
        flat = goals.get("per_host_cost_nearly_flat", {})
        lines += ["", "| goal | measured | |", "| --- | --- | --- |",
                  "| the audit is one module execution per host | %s | %s |" % (
                      ", ".join("%s hosts: %s" % (size, _mean(value)) for size, value in
                                sorted(one.get("module_executions_per_host", {}).items(), key=lambda item: int(item[0]))) or "n/a",
                      met(one)),
                  "| harden ≥ 3× faster than the baseline at 10 hosts | %s (%s against %s) | %s |" % (
                      ratio(harden.get("speedup")), seconds(harden.get("role_wall_s")),
                      seconds(harden.get("baseline_wall_s")), met(harden)),
                  "| per-host cost nearly flat as the fleet grows | %s | %s |" % (_flat_value(flat), met(flat)),
                  "", "![Fleet wall time by hosts](images/bench-fleet.png)", ""]
    if audit_only is not None:
        lines += ["#### One large audit", ""]
        for size in sorted(audit_only.get("by_size", {}), key=int):
            entry = audit_only["by_size"][size]
            run = entry["summary"].get("role", {}).get("audit", {})
            lines.append("- %s hosts (asked for %s): audit with the role in %s, %s per host, %s module execution(s) "
                         "and %s SSH login(s) per host." % (
                             entry.get("hosts", size), entry.get("requested_hosts", size),
                             seconds(run.get("wall_median_s")), seconds(run.get("wall_per_host_s")),
                             _mean(run.get("per_host", {}).get("module_executions")),
                             _mean(run.get("per_host", {}).get("accepted_ssh_logins"))))
        lines += ["", machine_line(audit_only), ""]
    return lines


def _mean(value):
    if not value:
        return "n/a"
    if value.get("min") == value.get("max"):
        return "%g" % value["mean"]
    return "%g (%g–%g)" % (value["mean"], value["min"], value["max"])


def _flat_value(flat):
    runs = flat.get("by_run", {})
    parts = []
    for name, run in sorted(runs.items()):
        by_size = sorted(run.get("wall_per_host_s", {}).items(), key=lambda item: int(item[0]))
        parts.append("%s %s" % (name.replace("_", " "), " → ".join("%s: %s" % (size, seconds(value))
                                                                   for size, value in by_size)))
    return "; ".join(parts) or "n/a"


def fleet_plot(result, plt):
    if result is None:
        return None
    figure, axes = plt.subplots(1, 2, figsize=(10, 4))
    sizes = sorted(result["by_size"], key=int)
    for axis, phase in zip(axes, ("audit", "harden")):
        for contender in ("role", "baseline"):
            xs, ys = [], []
            for size in sizes:
                run = result["by_size"][size]["summary"].get(contender, {}).get(phase)
                if run and run.get("wall_median_s") is not None:
                    xs.append(int(size))
                    ys.append(run["wall_median_s"])
            if xs:
                axis.plot(xs, ys, marker="o", label=contender)
        axis.set_title(phase)
        axis.set_xlabel("lab hosts")
        axis.set_ylabel("wall time (s)")
        axis.set_ylim(bottom=0)
        axis.grid(True, alpha=0.3)
        axis.legend()
    figure.suptitle("The role against the stock-module baseline")
    return _save(figure, plt, "bench-fleet.png")


def _save(figure, plt, name):
    os.makedirs(IMAGES, exist_ok=True)
    path = os.path.join(IMAGES, name)
    figure.tight_layout()
    # No timestamps in the PNG, so that the same results draw the same file.
    figure.savefig(path, dpi=100, metadata={"Software": None})
    plt.close(figure)
    return path


def tables():
    lines = ["## Results", "", "Made by `make bench-report` from `bench/results/*.json`.", ""]
    lines += discovery_section(load("discovery"))
    lines += profile_section(load("profile"))
    lines += fleet_section(load("fleet"), load("fleet-audit"))
    return "\n".join(lines).rstrip("\n") + "\n"


def updated_doc(text, generated):
    if START not in text or END not in text:
        raise SystemExit("%s has no %s ... %s markers" % (DOC, START, END))
    head, rest = text.split(START, 1)
    _old, tail = rest.split(END, 1)
    return head + START + "\n" + generated + END + tail


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--check", action="store_true", help="only say whether docs/performance.md is current")
    args = parser.parse_args(argv)
    with open(DOC) as handle:
        text = handle.read()
    new = updated_doc(text, tables())
    if args.check:
        if new != text:
            print("docs/performance.md is not what bench/results/ gives: run make bench-report")
            return 1
        print("docs/performance.md is current")
        return 0
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    for draw, name in ((discovery_plot, "discovery"), (profile_plot, "profile"), (fleet_plot, "fleet")):
        path = draw(load(name), plt)
        print("%s: %s" % (name, path or "no result, no plot"))
    with open(DOC, "w") as handle:
        handle.write(new)
    print("Updated %s" % DOC)
    return 0


if __name__ == "__main__":
    sys.exit(main())
