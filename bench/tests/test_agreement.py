# Copyright (c) Portcullis contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""bench/agreement.py: how the discovery benchmark decides that listening_ports and listen_ports_facts agree.

bench/ is not part of the built collection: `make units` runs these tests from the source tree.
"""

from __future__ import annotations

import os
import sys

import pytest

BENCH_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, os.path.abspath(BENCH_DIR))

import agreement  # noqa: E402  pylint: disable=wrong-import-position

LONG = "fd7a:115c:a1e0:ab12:4843:cd96:6258:b240"


def listener(protocol, family, address, port, pids, user="root"):
    return {"protocol": protocol, "family": family, "address": address, "port": port, "inode": 1000 + port,
            "uid": 0, "user": user, "loopback": False, "wildcard": address in ("0.0.0.0", "::"), "interface": None,
            "processes": [{"pid": pid, "name": "python", "cmdline": "python holder", "unit": None, "uid": 0,
                           "exe": "/usr/bin/python3", "exe_deleted": False} for pid in pids]}


def item(protocol, address, port, pid, name="python", user="root"):
    """One listen_ports_facts item as the module returns it."""
    return {"protocol": protocol, "address": address, "port": port, "pid": pid, "name": name, "user": user,
            "stime": "Tue Dec  1 16:02:12 2026"}


def lpf(*items):
    return {"changed": False, "ansible_facts": {"tcp_listen": [i for i in items if i["protocol"] == "tcp"],
                                                "udp_listen": [i for i in items if i["protocol"] == "udp"]}}


def lp(*listeners):
    return {"changed": False, "listeners": list(listeners), "ansible_facts": {"portcullis_listeners": list(listeners)}}


def test_normalize_listening_ports_one_tuple_per_process_and_pid_zero_without_one():
    result = lp(listener("tcp", "ipv4", "0.0.0.0", 22, [10, 11]), listener("udp", "ipv6", "::", 53, []))
    assert agreement.normalize_listening_ports(result) == {
        ("tcp", "0.0.0.0", 22, 10), ("tcp", "0.0.0.0", 22, 11), ("udp", "::", 53, 0)}
    assert agreement.normalize_listening_ports(result["listeners"]) == agreement.normalize_listening_ports(result)


def test_normalize_listen_ports_facts_folds_families_and_reads_both_lists():
    result = lpf(item("tcp", "::", 22, 10), item("udp", "0.0.0.0", 53, 0))
    result["ansible_facts"]["tcp_listen"].append(item("tcp6", "::1", 25, 12))  # a tool that kept the 6
    assert agreement.normalize_listen_ports_facts(result) == {
        ("tcp", "::", 22, 10), ("udp", "0.0.0.0", 53, 0), ("tcp", "::1", 25, 12)}
    assert agreement.normalize_listen_ports_facts(result["ansible_facts"]) == agreement.normalize_listen_ports_facts(result)


def test_normalize_holder():
    ready = {"sockets": [{"protocol": "tcp", "family": "ipv4", "address": "0.0.0.0", "port": 50002, "pids": [5, 6]},
                         {"protocol": "udp", "family": "ipv6", "address": "::1", "port": 40000, "pids": [5]}]}
    assert agreement.normalize_holder(ready) == {("tcp", "0.0.0.0", 50002, 5), ("tcp", "0.0.0.0", 50002, 6),
                                                 ("udp", "::1", 40000, 5)}


@pytest.mark.parametrize("tool", ["netstat", "ss"])
def test_identical_results_agree(tool):
    tuples = {("tcp", "0.0.0.0", 22, 10), ("tcp", "::", 22, 10), ("udp", "127.0.0.1", 53, 11)}
    outcome = agreement.compare(tuples, set(tuples), tool)
    assert outcome["agree"]
    assert outcome["explained"] == []
    assert outcome["counts"]["listening_ports_sockets"] == 3


def test_netstat_known_differences_are_explained():
    lp_tuples = {
        ("tcp", "::ffff:127.0.0.1", 50003, 7),   # IPv4-mapped bind
        ("udp", LONG, 50008, 7),                 # long address
        ("tcp", "0.0.0.0", 50002, 7), ("tcp", "0.0.0.0", 50002, 8),  # pre-forking server
        ("tcp", "127.0.0.1", 10000, 7),
    }
    lpf_tuples = {
        ("tcp", "127.0.0.1", 50003, 7),
        ("udp", "fd7a:115c:a1e0:ab", 50008, 7),  # netstat: len(address) + len(port) == 22
        ("tcp", "0.0.0.0", 50002, 7),
        ("tcp", "127.0.0.1", 10000, 7),
    }
    outcome = agreement.compare(lp_tuples, lpf_tuples, "netstat")
    assert outcome["agree"], outcome
    assert outcome["explained_counts"] == {"ipv4_mapped_unmapped": 1, "long_address_truncated": 1,
                                           "one_process_per_socket": 1}


def test_ss_known_differences_are_explained():
    lp_tuples = {("tcp", "::", 20002, 7), ("udp", "fe80::1234", 50006, 7), ("tcp", "::", 20001, 7),
                 ("tcp", LONG, 50007, 7), ("tcp", "0.0.0.0", 50002, 7), ("tcp", "0.0.0.0", 50002, 8)}
    lpf_tuples = {("tcp", "*", 20002, 7),              # dual stack: ss prints *
                  ("udp", "fe80::1234]%lo", 50006, 7),  # [fe80::1234]%lo:50006 through lpf's regex
                  ("tcp", "::", 20001, 7),              # IPV6_V6ONLY: ss prints [::]
                  ("tcp", LONG, 50007, 7),              # ss never truncates
                  ("tcp", "0.0.0.0", 50002, 7), ("tcp", "0.0.0.0", 50002, 8)}  # ss lists every process
    outcome = agreement.compare(lp_tuples, lpf_tuples, "ss")
    assert outcome["agree"], outcome
    assert outcome["explained_counts"] == {"dual_stack_wildcard_star": 1, "link_local_scope_garbled": 1}


def test_a_missing_socket_is_a_disagreement():
    outcome = agreement.compare({("tcp", "0.0.0.0", 22, 1), ("udp", "::", 53, 1)}, {("tcp", "0.0.0.0", 22, 1)}, "netstat")
    assert not outcome["agree"]
    assert outcome["only_listening_ports"] == [["udp", "::", 53, [1]]]
    assert outcome["only_listen_ports_facts"] == []


def test_an_extra_socket_is_a_disagreement():
    outcome = agreement.compare({("tcp", "0.0.0.0", 22, 1)}, {("tcp", "0.0.0.0", 22, 1), ("tcp", "0.0.0.0", 80, 2)}, "ss")
    assert not outcome["agree"]
    assert outcome["only_listen_ports_facts"] == [["tcp", "0.0.0.0", 80, [2]]]


def test_the_same_socket_under_the_other_protocol_is_a_disagreement():
    outcome = agreement.compare({("tcp", "::ffff:127.0.0.1", 50003, 7)}, {("udp", "127.0.0.1", 50003, 7)}, "netstat")
    assert not outcome["agree"]


def test_a_pid_that_listening_ports_does_not_name_is_a_disagreement():
    outcome = agreement.compare({("tcp", "0.0.0.0", 22, 1), ("tcp", "0.0.0.0", 22, 2)}, {("tcp", "0.0.0.0", 22, 3)}, "netstat")
    assert not outcome["agree"]
    assert outcome["pid_mismatches"] == [{"socket": ["tcp", "0.0.0.0", 22], "listening_ports_pids": [1, 2],
                                          "listen_ports_facts_pids": [3]}]


def test_ss_must_list_every_process():
    outcome = agreement.compare({("tcp", "0.0.0.0", 22, 1), ("tcp", "0.0.0.0", 22, 2)}, {("tcp", "0.0.0.0", 22, 1)}, "ss")
    assert not outcome["agree"]
    assert outcome["pid_mismatches"][0]["listen_ports_facts_pids"] == [1]


def test_a_process_no_tool_names_is_pid_zero_on_both_sides():
    outcome = agreement.compare({("udp", "0.0.0.0", 2049, 0)}, {("udp", "0.0.0.0", 2049, 0)}, "netstat")
    assert outcome["agree"]


def test_netstat_rules_do_not_apply_to_ss_and_back():
    assert not agreement.compare({("tcp", "::ffff:127.0.0.1", 50003, 7)}, {("tcp", "127.0.0.1", 50003, 7)}, "ss")["agree"]
    assert not agreement.compare({("tcp", "::", 20002, 7)}, {("tcp", "*", 20002, 7)}, "netstat")["agree"]


def test_truncation_only_explains_an_address_cut_at_netstat_width():
    # fits 23 columns, so netstat would not have cut it: a prefix is a different address
    assert not agreement.compare({("tcp", "fd00::12", 8080, 1)}, {("tcp", "fd00::1", 8080, 1)}, "netstat")["agree"]
    # cut at the width, but the listener's address does not start with it
    assert not agreement.compare({("tcp", LONG, 50007, 1)}, {("tcp", "fd7a:115c:a1e0:ff", 50007, 1)}, "netstat")["agree"]
    # cut, but on another port
    assert not agreement.compare({("tcp", LONG, 50007, 1)}, {("tcp", "fd7a:115c:a1e0:ab", 50009, 1)}, "netstat")["agree"]


def test_one_listener_explains_only_one_garbled_address():
    lp_tuples = {("tcp", LONG, 50007, 1)}
    lpf_tuples = {("tcp", "fd7a:115c:a1e0:ab", 50007, 1), ("tcp", "127.0.0.1", 50007, 1)}
    outcome = agreement.compare(lp_tuples, lpf_tuples, "netstat")
    assert not outcome["agree"]
    assert outcome["only_listen_ports_facts"] == [["tcp", "127.0.0.1", 50007, [1]]]


def test_unknown_tool():
    with pytest.raises(ValueError):
        agreement.compare(set(), set(), "lsof")


def test_compare_with_holder():
    holder = {("tcp", "0.0.0.0", 50002, 5), ("tcp", "0.0.0.0", 50002, 6)}
    assert agreement.compare_with_holder(holder | {("udp", "::", 53, 0)}, holder) == {
        "ok": True, "missing": [], "extra": [["udp", "::", 53, 0]], "not_listening_listed": []}
    outcome = agreement.compare_with_holder({("tcp", "0.0.0.0", 50002, 5)}, holder)
    assert not outcome["ok"]
    assert outcome["missing"] == [["tcp", "0.0.0.0", 50002, 6]]


def test_compare_with_holder_sockets_that_do_not_listen():
    holder = {("tcp", "127.0.0.1", 50015, 5)}                   # a listener with an established connection
    not_listening = {("udp", "127.0.0.1", 50013, 5),            # connected UDP
                     ("tcp", "127.0.0.1", 50015, 5),            # the accepted end: same tuple as its listener
                     ("tcp", "127.0.0.1", 50016, 5)}            # the client end
    assert agreement.compare_with_holder(set(holder), holder, not_listening)["ok"]
    outcome = agreement.compare_with_holder(holder | {("udp", "127.0.0.1", 50013, 5)}, holder, not_listening)
    assert not outcome["ok"]
    assert outcome["not_listening_listed"] == [["udp", "127.0.0.1", 50013, 5]]


def test_normalize_holder_not_listening():
    ready = {"sockets": [], "not_listening": [{"protocol": "udp", "family": "ipv4", "address": "127.0.0.1",
                                               "port": 50013, "pids": [5]}]}
    assert agreement.normalize_holder(ready, "not_listening") == {("udp", "127.0.0.1", 50013, 5)}
    assert agreement.normalize_holder(ready) == set()


def test_field_differences_compares_names_and_users_where_both_name_the_pid():
    lp_result = lp(listener("tcp", "ipv4", "127.0.0.1", 50000, [9], user="nobody"),
                   listener("tcp", "ipv4", "0.0.0.0", 22, [1]))
    lpf_result = lpf(item("tcp", "127.0.0.1", 50000, 9, user="nobody"), item("tcp", "0.0.0.0", 22, 1, name="sshd"),
                     item("udp", "0.0.0.0", 53, 4))
    outcome = agreement.field_differences(lp_result, lpf_result)
    assert outcome["names_differ"] == 1
    assert outcome["users_differ"] == 0
    assert outcome["samples"] == [{"key": ["tcp", 22, 1], "listening_ports": {"name": "python", "user": "root"},
                                   "listen_ports_facts": {"name": "sshd", "user": "root"}}]


def test_every_known_difference_is_documented():
    explained_by_compare = set()
    for tool, lpf_address, lp_address in (("netstat", "127.0.0.1", "::ffff:127.0.0.1"),
                                          ("netstat", "fd7a:115c:a1e0:ab", LONG),
                                          ("ss", "*", "::"), ("ss", "fe80::1]%eth0", "fe80::1")):
        outcome = agreement.compare({("tcp", lp_address, 50007, 1)}, {("tcp", lpf_address, 50007, 1)}, tool)
        assert outcome["agree"]
        explained_by_compare.update(outcome["explained_counts"])
    explained_by_compare.update(agreement.compare({("tcp", "::", 1, 1), ("tcp", "::", 1, 2)}, {("tcp", "::", 1, 2)},
                                                  "netstat")["explained_counts"])
    for name, entry in agreement.KNOWN_DIFFERENCES.items():
        assert set(entry) == {"tool", "explained_by_compare", "what", "why", "handling"}, name
        assert entry["tool"] in ("netstat", "ss", "both")
        assert entry["explained_by_compare"] == (name in explained_by_compare), name


def test_listening_ports_with_as_facts():
    listeners = [listener("tcp", "ipv4", "0.0.0.0", 22, [10])]
    as_facts = {"changed": False, "scan": {}, "ansible_facts": {"portcullis_listeners": listeners}}
    assert agreement.listening_ports_listeners(as_facts) == listeners
    assert agreement.normalize_listening_ports(as_facts) == {("tcp", "0.0.0.0", 22, 10)}
