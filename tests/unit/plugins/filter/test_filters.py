# Copyright (c) Portcullis contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The allowlist, host_summary and noncompliance filters: what a playbook gets, and the errors it sees."""

from __future__ import annotations

import re

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.portcullis.hardening.plugins.filter import allowlist as allowlist_plugin
from ansible_collections.portcullis.hardening.plugins.filter import host_summary as host_summary_plugin
from ansible_collections.portcullis.hardening.plugins.filter import noncompliance as noncompliance_plugin
from ansible_collections.portcullis.hardening.plugins.filter.allowlist import allowlist
from ansible_collections.portcullis.hardening.plugins.filter.host_summary import host_summary
from ansible_collections.portcullis.hardening.plugins.filter.noncompliance import noncompliance
from ansible_collections.portcullis.hardening.plugins.module_utils._audit import finding

COMBINED = "(portcullis_allowlist + portcullis_allowlist_extra)"


def test_the_filters_are_registered_under_their_names():
    assert allowlist_plugin.FilterModule().filters() == {"allowlist": allowlist}
    assert host_summary_plugin.FilterModule().filters() == {"host_summary": host_summary}
    assert noncompliance_plugin.FilterModule().filters() == {"noncompliance": noncompliance}


# --- allowlist -----------------------------------------------------------------------------------------------------

def test_allowlist_returns_the_entries_then_the_extra_ones_as_given():
    entries = [{"port": 22, "comment": "ssh"}, {"port": "8000-8100", "protocol": "tcp", "sources": ["10.0.0.0/8"]}]
    extra = [{"port": 53, "protocol": "udp", "family": "ipv4"}, {"port": 6379, "bind": "loopback"}]
    combined = allowlist(entries, extra)
    assert combined == entries + extra
    assert all(got is given for got, given in zip(combined, entries + extra))  # as given, not normalised
    assert combined is not entries and entries == [{"port": 22, "comment": "ssh"},
                                                   {"port": "8000-8100", "protocol": "tcp",
                                                    "sources": ["10.0.0.0/8"]}]


@pytest.mark.parametrize("extra", [None, []])
def test_allowlist_without_extra_entries(extra):
    assert allowlist([{"port": 22}], extra) == [{"port": 22}]
    assert allowlist([], extra) == []


def test_an_error_in_the_extra_list_names_it_the_entry_the_field_and_the_value():
    with pytest.raises(AnsibleFilterError) as error:
        allowlist([{"port": 80}], [{"port": 443, "sources": ["10.0.0.1/8"]}])
    assert str(error.value).startswith(
        "portcullis_allowlist_extra[0].sources[0]: '10.0.0.1/8' has host bits set; the network is 10.0.0.0/8")


@pytest.mark.parametrize("entries, message", [
    ([{"port": 22}, {"port": 70000}], "portcullis_allowlist[1].port: 70000 is outside 1-65535"),
    ([{"port": 22, "protocol": "sctp"}], "portcullis_allowlist[0].protocol: 'sctp' must be one of: tcp, udp"),
    ([{"port": 22, "sources": ["2001:db8::/32"], "family": "ipv4"}],
     "portcullis_allowlist[0].sources[0]: '2001:db8::/32' is IPv6 but the entry's family is ipv4"),
    ([{"port": 22, "colour": "red"}], "portcullis_allowlist[0].colour: 'red' is not an allowlist field"),
    ([{"port": 22}, {"port": 22, "comment": "again"}],
     "portcullis_allowlist[1]: duplicates portcullis_allowlist[0] (tcp/22 from anywhere)"),
])
def test_an_error_in_the_first_list_names_it(entries, message):
    with pytest.raises(AnsibleFilterError, match="^" + re.escape(message)):
        allowlist(entries, [{"port": 443}])


def test_a_duplicate_across_the_two_lists_names_the_combined_list():
    with pytest.raises(AnsibleFilterError) as error:
        allowlist([{"port": 443}, {"port": 22}], [{"port": 22, "comment": "also here"}])
    assert str(error.value) == "%s[2]: duplicates %s[1] (tcp/22 from anywhere)" % (COMBINED, COMBINED)


def test_a_contradiction_across_the_two_lists_names_the_combined_list():
    with pytest.raises(AnsibleFilterError) as error:
        allowlist([{"port": 6379}], [{"port": 6379, "bind": "loopback"}])
    assert str(error.value).startswith(
        "%s[1].bind: 'loopback' contradicts %s[0].bind 'any' for the same port" % (COMBINED, COMBINED))


def test_the_lists_are_named_as_asked():
    with pytest.raises(AnsibleFilterError, match=r"^group_allow\[0\]\.port: is required"):
        allowlist([{"protocol": "tcp"}], [], name="group_allow", extra_name="host_allow")
    with pytest.raises(AnsibleFilterError, match=r"^\(group_allow \+ host_allow\)\[1\]: duplicates"):
        allowlist([{"port": 22}], [{"port": 22}], name="group_allow", extra_name="host_allow")


@pytest.mark.parametrize("entries, extra, message", [
    ({"port": 22}, [], "portcullis_allowlist: {'port': 22} must be a list of entries"),
    (None, [], "portcullis_allowlist: None must be a list of entries"),
    ("22,80", [], "portcullis_allowlist: '22,80' must be a list of entries"),
    ([{"port": 22}], {"port": 80}, "portcullis_allowlist_extra: {'port': 80} must be a list of entries"),
    ([{"port": 22}], ({"port": 80},), "portcullis_allowlist_extra: ({'port': 80},) must be a list of entries"),
])
def test_a_list_is_required(entries, extra, message):
    with pytest.raises(AnsibleFilterError) as error:
        allowlist(entries, extra)
    assert str(error.value) == message


def test_control_characters_in_an_error_are_escaped():
    with pytest.raises(AnsibleFilterError) as error:
        allowlist([{"port": 8080, "sources": ["fe80::%\x1b[31m/64"]}])
    text = str(error.value)
    assert text.startswith("portcullis_allowlist[0].sources[0]: ")
    assert "\x1b" not in text and "names a zone (%\\x1b[31m)" in text


# --- host_summary and noncompliance --------------------------------------------------------------------------------

def make(severity, port):
    return finding("unexpected_listener", severity, "tcp", "ipv4", "0.0.0.0", port, [],
                   "tcp 0.0.0.0:%d (no known process) listens" % port, "close %d" % port)


RESULT = {"compliant": False, "findings": [make("high", 23), make("high", 21), make("medium", 8080), make("info", 631)],
          "listeners": [], "allowlist": []}


def test_host_summary_filter():
    lines = host_summary(RESULT, firewall={"changed": True}, check_mode=True,
                         services={"stopped": [{"units": ["cups.service"]}], "kept": []})
    assert lines == [
        "NOT compliant: 2 high, 1 medium (1 info)",
        "[high] tcp 0.0.0.0:23 (no known process) listens",
        "[high] tcp 0.0.0.0:21 (no known process) listens",
        "[medium] tcp 0.0.0.0:8080 (no known process) listens",
        "firewall: would change the rules",
        "services: would stop cups.service (set portcullis_stop_unlisted to stop them)",
    ]
    assert host_summary({"unreachable": True, "msg": "timed out"}) == ["not audited: timed out"]


@pytest.mark.parametrize("kwargs", [
    {"services": {"stopped": [], "kept": [{"listener": "tcp 0.0.0.0:5000"}]}},
    {"services": {"stopped": ["cups.service"], "kept": []}, "stop_unlisted": True},
    {"service_ports": {"results": [{"item": "nginx", "changed": True, "port": 8443}]}},
])
def test_host_summary_filter_refuses_malformed_results(kwargs):
    with pytest.raises(AnsibleFilterError, match="^host_summary: a result lacks a field or has a wrong type"):
        host_summary({"compliant": True, "findings": []}, **kwargs)
    with pytest.raises(AnsibleFilterError, match="^host_summary: "):
        host_summary({"compliant": False, "findings": [{"message": "no severity"}]})


def test_noncompliance_filter():
    assert noncompliance(RESULT, "web-01") == (
        "web-01 is not compliant: 3 findings remain:\n"
        "- [high] tcp 0.0.0.0:23 (no known process) listens. Remediation: close 23\n"
        "- [high] tcp 0.0.0.0:21 (no known process) listens. Remediation: close 21\n"
        "- [medium] tcp 0.0.0.0:8080 (no known process) listens. Remediation: close 8080")
    assert noncompliance({"failed": True, "msg": "sudo: a password is required"}, "web-01") == (
        "web-01: not audited: sudo: a password is required")


def test_noncompliance_filter_refuses_a_finding_without_a_remediation():
    broken = dict(make("high", 23))
    del broken["remediation"]
    with pytest.raises(AnsibleFilterError, match="^noncompliance: the audit result lacks a field"):
        noncompliance({"compliant": False, "findings": [broken]}, "web-01")
