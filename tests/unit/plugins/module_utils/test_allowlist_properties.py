# Copyright (c) Portcullis contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Properties of the allowlist model: what it reads back is what it was given, and no input makes it raise
anything but AllowlistError."""

from __future__ import annotations

import ipaddress

from hypothesis import given, settings
from hypothesis import strategies as st

from ansible_collections.portcullis.hardening.plugins.module_utils._allowlist import (
    FIELDS,
    AllowlistError,
    Rule,
    management_gap,
    parse_allowlist,
)

PROPERTY = settings(max_examples=200, deadline=None, derandomize=True)
SLOT = 1000  # entry N gets its ports in N*SLOT+1 .. N*SLOT+SLOT-1, so that generated entries never contradict
TEXT = st.text(min_size=1, max_size=30).filter(str.strip)


# Networks that overlap, nest and touch, so that merging them is put to the test.
NEIGHBOURS = {
    4: ["0.0.0.0/0", "10.0.0.0/8", "10.0.0.0/9", "10.128.0.0/9", "10.0.0.0/31", "10.0.0.2/32", "10.0.0.3/32",
        "192.0.2.0/25", "192.0.2.128/25"],
    6: ["::/0", "2001:db8::/32", "2001:db8::/127", "2001:db8::2/128", "2001:db9::/32", "fd00::1/128"],
}


def networks(version):
    """Networks (not IPv4-mapped ones: the allowlist refuses them) of one IP version, host bits clear."""
    bits = 32 if version == 4 else 128
    network = st.builds(lambda address, prefix: ipaddress.ip_network((address, prefix), strict=False),
                        st.ip_addresses(v=version), st.integers(0, bits))
    return st.sampled_from(NEIGHBOURS[version]).map(ipaddress.ip_network) | network.filter(
        lambda item: item.version == 4 or item.network_address.ipv4_mapped is None)


def network_spelling(network):
    """Ways people write a network: CIDR, a bare host address, blanks around, IPv6 in full."""
    forms = [str(network), " %s " % network]
    if network.version == 6:
        forms.append("%s/%d" % (network.network_address.exploded, network.prefixlen))
    if network.num_addresses == 1:
        forms.append(str(network.network_address))
    return st.sampled_from(forms)


@st.composite
def entries(draw, slot=0):
    """(a valid raw allowlist entry, what it must read as: (low, high, protocol, family, bind, sources, process))."""
    low = slot * SLOT + draw(st.integers(1, SLOT - 1))
    high = draw(st.sampled_from([low]) | st.integers(low, slot * SLOT + SLOT - 1))
    port = draw(st.sampled_from([low, str(low), " %d " % low]) if low == high else
                st.sampled_from(["%d-%d" % (low, high), " %d - %d " % (low, high)]))
    entry = {"port": port}
    protocol = draw(st.sampled_from([None, "tcp", "udp"]))
    family = draw(st.sampled_from([None, "any", "ipv4", "ipv6"]))
    bind = draw(st.sampled_from([None, "any", "loopback"]))
    sources = []
    if bind != "loopback":
        versions = {"ipv4": [4], "ipv6": [6]}.get(family, [4, 6])
        sources = draw(st.lists(st.sampled_from(versions).flatmap(networks), max_size=4))
    process = draw(st.none() | TEXT)
    for field, value in (("protocol", protocol), ("family", family), ("bind", bind), ("process", process),
                         ("comment", draw(st.none() | TEXT))):
        if value is not None or draw(st.booleans()):  # absent, or None as AnsibleModule fills it
            entry[field] = value
    if sources or draw(st.booleans()):
        entry["sources"] = [draw(network_spelling(network)) for network in sources]
    expected = (low, high, protocol or "tcp", family or "any", bind or "any", sources,
                process.strip() if process else None)
    return entry, expected


@st.composite
def allowlists(draw, max_size=6):
    """(valid raw entries, what each must read as)."""
    pairs = [draw(entries(slot)) for slot in range(draw(st.integers(0, max_size)))]
    return [entry for entry, _expected in pairs], [expected for _entry, expected in pairs]


def as_entry(rule):
    """What Rule.as_dict() gives, as an entry again (the index is the entry's position)."""
    entry = rule.as_dict()
    del entry["index"]
    return entry


def read(rule):
    return rule.low, rule.high, rule.protocol, rule.family, rule.bind, rule.sources, rule.process


@PROPERTY
@given(allowlists())
def test_valid_entries_read_as_given_and_round_trip(allowlist):
    raw, expected = allowlist
    rules = parse_allowlist(raw)
    assert [read(rule) for rule in rules] == expected
    assert [rule.index for rule in rules] == list(range(len(raw)))
    again = parse_allowlist([as_entry(rule) for rule in rules])
    assert [rule.as_dict() for rule in again] == [rule.as_dict() for rule in rules]
    assert [rule.identity() for rule in again] == [rule.identity() for rule in rules]


@PROPERTY
@given(allowlists(max_size=4), st.integers(1, 4 * SLOT), st.sampled_from([None, "ipv4", "ipv6"]),
       st.none() | st.ip_addresses().map(str), st.sampled_from(["tcp", "udp"]))
def test_management_gap_is_none_exactly_when_an_entry_lets_the_client_in(allowlist, port, family, source, protocol):
    rules = parse_allowlist(allowlist[0])
    address = None
    if source is not None:
        address = ipaddress.ip_address(source)
        if address.version == 6 and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        family = "ipv%d" % address.version  # a source decides the family
    gap = management_gap(rules, port, family, source, protocol)
    covering = [rule for rule in rules if rule.protocol == protocol and rule.low <= port <= rule.high
                and rule.bind == "any"]
    # every family the connection may use has an entry open to every source, or to this one
    lets_in = all(any(rule.covers_family(needed) and (not rule.sources or address is not None and any(
        address in network for network in rule.sources)) for rule in covering)
        for needed in ([family] if family else ["ipv4", "ipv6"]))
    assert (gap is None) == (lets_in or address is not None and address.is_loopback), gap
    if gap is not None:
        assert "\n" not in gap
        named = sorted({"allow[%d]" % rule.index for rule in rules if rule.protocol == protocol
                        and rule.low <= port <= rule.high})
        assert [name for name in named if name + " opens" in gap] == named or gap == "no allow entry opens %d/%s" % (
            port, protocol)


# --- anything at all ---------------------------------------------------------------------------------------

VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
    | st.sampled_from(["22", "1-65535", "0", "10.0.0.0/8", "::ffff:1.2.3.4", "fe80::%1/64", "any", "tcp"]),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12)
ENTRY_LIKE = st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=8) | st.integers(), VALUES, max_size=8)


@PROPERTY
@given(st.one_of(VALUES, st.lists(ENTRY_LIKE | VALUES, max_size=5)))
def test_any_input_reads_or_raises_allowlist_error(value):
    try:
        rules = parse_allowlist(value, name="allow")
    except AllowlistError as error:
        assert str(error).startswith("allow")
        return
    assert all(isinstance(rule, Rule) for rule in rules)
    assert [rule.as_dict() for rule in parse_allowlist([as_entry(rule) for rule in rules])] == [
        rule.as_dict() for rule in rules]
