# Copyright (c) Portcullis contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""bench/discovery.py's pure parts: the linear fit and how the goals are decided from the medians.

bench/ is not part of the built collection: `make units` runs these tests from the source tree.
"""

from __future__ import annotations

import os
import sys

import pytest

BENCH_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, os.path.abspath(BENCH_DIR))

import common  # noqa: E402  pylint: disable=wrong-import-position
import discovery  # noqa: E402  pylint: disable=wrong-import-position


def test_linear_fit_exact_line():
    fit = discovery.linear_fit([100, 1000, 10000], [20000 + 3 * x for x in (100, 1000, 10000)])
    assert fit["slope"] == pytest.approx(3)
    assert fit["intercept"] == pytest.approx(20000)
    assert fit["r2"] == pytest.approx(1)


def test_linear_fit_needs_two_distinct_points():
    assert discovery.linear_fit([100], [1]) is None
    assert discovery.linear_fit([100, 100], [1, 2]) is None


def test_linear_fit_r2_drops_for_quadratic_growth():
    xs = [100, 1000, 3000, 10000]
    assert discovery.linear_fit(xs, [x * x for x in xs])["r2"] < 0.99


def test_memory_growth_increments():
    growth = discovery.memory_growth([(1000, 23000), (100, 20000), (10000, 50000)])
    assert [point["listeners"] for point in growth["points"]] == [100, 1000, 10000]
    assert [round(item["kib_per_listener"], 3) for item in growth["increments"]] == [3.333, 3.0]


def sizes(lp, lpf, ping, lp_module, lpf_module, ss, rss, spread=0.01):
    """Per-size summaries as Bench.measure_size() returns them (only what evaluate_goals reads)."""
    def contender(median, maxrss=1000):
        return {"wall_s": common.summarize([median - spread, median, median + spread]),
                "maxrss_kib": common.summarize([maxrss])}
    out = {}
    for size in (100, 1000, 10000):
        out[size] = {"listeners": {"listening_ports": size + 15}, "contenders": {
            "listening_ports": contender(lp[size]), "listen_ports_facts": contender(lpf[size]),
            "ping": contender(ping), "ss": contender(ss[size]),
            "listening_ports_module": contender(lp_module[size], rss[size]),
            "listen_ports_facts_module": contender(lpf_module[size])}}
    return out


SECONDS = dict(lp={100: 3.0, 1000: 3.2, 10000: 6.0}, lpf={100: 5.0, 1000: 30.0, 10000: 280.0}, ping=2.8,
               lp_module={100: 0.2, 1000: 0.4, 10000: 2.0}, lpf_module={100: 2.5, 1000: 27.0, 10000: 270.0},
               ss={100: 0.01, 1000: 0.05, 10000: 0.5}, rss={100: 20000, 1000: 23000, 10000: 50000})


def test_goals_from_medians():
    goals = discovery.evaluate_goals(sizes(**SECONDS))
    speedup = goals["speedup_vs_listen_ports_facts"]
    assert speedup["decided_by"] == "net_of_ping"
    assert speedup["net_ratio"] == pytest.approx((30.0 - 2.8) / (3.2 - 2.8))
    assert speedup["met"] is True
    assert goals["module_vs_bare_ss"]["ratio"] == pytest.approx(4.0)
    assert goals["module_vs_bare_ss"]["met"] is False
    assert goals["memory_linear"]["met"] is True


def test_speedup_within_noise_is_decided_by_module_time():
    seconds = {**SECONDS, "lp": {100: 2.8, 1000: 2.79, 10000: 6.0}}
    speedup = discovery.evaluate_goals(sizes(**seconds))["speedup_vs_listen_ports_facts"]
    assert speedup["lp_net_within_noise"] is True
    assert speedup["net_ratio"] is None
    assert speedup["decided_by"] == "module_time_on_host"
    assert speedup["ratio"] == pytest.approx(27.0 / 0.4)
    assert speedup["met"] is True


def test_goals_not_evaluated_without_their_sizes():
    measured = sizes(**SECONDS)
    del measured[10000]
    goals = discovery.evaluate_goals(measured)
    assert goals["module_vs_bare_ss"]["met"] is None
    assert goals["memory_linear"]["met"] is None
    assert goals["speedup_vs_listen_ports_facts"]["met"] is True
