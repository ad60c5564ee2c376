# Copyright (c) Portcullis contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""What every benchmark shares: the machine facts and versions a result carries, statistics over samples, and
writing a result file to bench/results/.

The benchmarks compare ratios measured side by side in one run (alternating the contenders), never absolute
times against a fixed goal: the machines are shared and noisy.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import statistics
import subprocess
import sys

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(BENCH_DIR)
RESULTS_DIR = os.path.join(BENCH_DIR, "results")


def _first_line(argv):
    try:
        completed = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)  # noqa: S603 (fixed argument lists)
    except OSError:
        return None
    lines = (completed.stdout or completed.stderr).strip().splitlines()
    return lines[0] if lines else None


def machine_facts():
    """The machine and software a result was measured on."""
    cpu_model = None
    try:
        with open("/proc/cpuinfo") as handle:
            cpu_model = next((line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")), None)
    except OSError:
        pass
    try:
        with open("/proc/meminfo") as handle:
            mem_kib = int(next(line.split()[1] for line in handle if line.startswith("MemTotal")))
    except (OSError, StopIteration, ValueError):
        mem_kib = None
    try:
        with open("/etc/os-release") as handle:
            os_release = dict(line.rstrip("\n").split("=", 1) for line in handle if "=" in line)
    except OSError:
        os_release = {}
    git_commit = _first_line(["git", "-C", REPO, "rev-parse", "HEAD"])
    git_dirty = bool(_first_line(["git", "-C", REPO, "status", "--porcelain", "--untracked-files=no"]))
    return {
        "measured_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),

        "cpus": os.cpu_count(),
        "cpu_model": cpu_model,
        "mem_total_mib": mem_kib // 1024 if mem_kib else None,
        "load_average_at_start": [round(value, 2) for value in os.getloadavg()],
        "kernel": platform.release(),
        "os": os_release.get("PRETTY_NAME", "").strip('"'),
        "python": platform.python_version(),
        "versions": {
            "ansible_core": _package_version("ansible-core"),
            "ansible": _package_version("ansible"),
            "community_general": _collection_version("community.general"),
            "portcullis_hardening": _galaxy_version(),
            "iproute2_ss": _first_line(["ss", "-V"]),
            "podman": _first_line(["podman", "--version"]),
        },
        "git_commit": git_commit,
        "git_dirty": git_dirty,
    }


def _package_version(name):
    try:
        from importlib.metadata import PackageNotFoundError, version
    except ImportError:  # pragma: no cover
        return None
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def _collection_version(fqcn):
    namespace, name = fqcn.split(".")
    for root in sys.path + os.environ.get("ANSIBLE_COLLECTIONS_PATH", "").split(os.pathsep):
        if not root:
            continue
        for candidate in (os.path.join(root, "ansible_collections", namespace, name, "MANIFEST.json"),):
            try:
                with open(candidate) as handle:
                    return json.load(handle)["collection_info"]["version"]
            except (OSError, ValueError, KeyError):
                continue
    return None


def _galaxy_version():
    try:
        with open(os.path.join(REPO, "galaxy.yml")) as handle:
            return next(line.split(":", 1)[1].strip() for line in handle if line.startswith("version:"))
    except (OSError, StopIteration):
        return None


def summarize(samples):
    """Median and spread of a list of numbers (seconds, bytes, counts)."""
    values = sorted(samples)
    if not values:
        raise ValueError("no samples to summarize")
    quartiles = statistics.quantiles(values, n=4, method="inclusive") if len(values) > 1 else [values[0]] * 3
    return {
        "n": len(values),
        "median": statistics.median(values),
        "min": values[0],
        "max": values[-1],
        "q1": quartiles[0],
        "q3": quartiles[2],
        "stdev": statistics.stdev(values) if len(values) > 1 else 0.0,
        "samples": values,
    }


def write_result(name, result):
    """Write bench/results/<name>.json, with the machine facts, and return its path."""
    os.makedirs(RESULTS_DIR, exist_ok=True)
    document = {"benchmark": name, "machine": machine_facts()}
    document.update(result)
    path = os.path.join(RESULTS_DIR, name + ".json")
    with open(path + ".tmp", "w") as handle:
        json.dump(document, handle, indent=2, sort_keys=True)
        handle.write("\n")
    os.replace(path + ".tmp", path)
    return path


def load_result(name):
    with open(os.path.join(RESULTS_DIR, name + ".json")) as handle:
        return json.load(handle)
