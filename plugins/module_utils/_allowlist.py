# Copyright (c) Portcullis contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The allowlist: which ports may listen, how widely, for whom and for which program.

One schema and one validation for every module and the role. Private to the collection: pure
functions, no AnsibleModule. Every error names the entry index, the field and the value.
"""

from __future__ import annotations

import ipaddress

from ansible_collections.portcullis.hardening.plugins.module_utils._host import PortcullisError

PROTOCOLS = ("tcp", "udp")
FAMILIES = ("ipv4", "ipv6", "any")
BINDS = ("any", "loopback")
FIELDS = ("port", "protocol", "family", "bind", "sources", "process", "published", "comment")

# The argument spec of one entry, shared by every module that takes an allowlist (and mirrored by
# roles/ports/meta/argument_specs.yml; a unit test keeps them equal). Types are checked here loosely
# (port is int or "LOW-HIGH" text); parse_allowlist() does the real validation.
ENTRY_SPEC = {
    "port": {"type": "raw", "required": True},
    "protocol": {"type": "str", "choices": list(PROTOCOLS), "default": "tcp"},
    "family": {"type": "str", "choices": list(FAMILIES), "default": "any"},
    "bind": {"type": "str", "choices": list(BINDS), "default": "any"},
    "sources": {"type": "list", "elements": "str", "default": []},
    "process": {"type": "str"},
    "published": {"type": "bool", "default": False},
    "comment": {"type": "str"},
}


# Stands for "<option name>[" in messages that name a second entry, until parse_allowlist knows the name.
OTHER_ENTRY = "\x00["


class AllowlistError(PortcullisError, ValueError):
    """An allowlist entry that cannot be used; the message says where and why."""


class Rule:
    """One validated allowlist entry."""

    __slots__ = ("index", "low", "high", "protocol", "family", "bind", "sources", "process", "comment", "published")

    def __init__(self, index, low, high, protocol, family, bind, sources, process, comment, published=False):
        self.index = index
        self.low = low
        self.high = high
        self.protocol = protocol
        self.family = family
        self.bind = bind
        self.sources = sources  # list of ipaddress networks; empty means from anywhere
        self.process = process
        self.comment = comment
        # Only the container path: a port published to a container (DNAT), never a socket of the host itself.
        self.published = published

    @property
    def on_host(self):
        """Whether the entry allows a socket of the host (every entry but a published-only one)."""
        return not self.published

    @property
    def port(self):
        """The port as written back: an int, or "LOW-HIGH" for a range."""
        return self.low if self.low == self.high else "%d-%d" % (self.low, self.high)

    def covers_port(self, port):
        return self.low <= port <= self.high

    def covers_family(self, family):
        return self.family in ("any", family)

    def overlaps(self, other):
        return (self.protocol == other.protocol and self.low <= other.high and other.low <= self.high
                and (self.family == other.family or "any" in (self.family, other.family)))

    def allows_source(self, address):
        """Whether a client at `address` (an ipaddress address) may connect under this rule.

        An IPv4-mapped address (::ffff:192.0.2.10, a client as a dual-stack socket sees it) is the IPv4 client.
        """
        address = _plain(address)
        return not self.sources or any(address in network for network in self.sources
                                       if network.version == address.version)

    def families(self):
        """The families this entry opens to the network: its family, narrowed to those its sources name."""
        if self.bind == "loopback":
            return ()
        named = {"ipv%d" % network.version for network in self.sources}
        return tuple(family for family in ("ipv4", "ipv6")
                     if self.covers_family(family) and (not named or family in named))

    def identity(self):
        """What makes two entries the same rule (the comment does not)."""
        return (self.low, self.high, self.protocol, self.family, self.bind,
                tuple(sorted(str(network) for network in self.sources)), self.process, self.published)

    def describe(self):
        where = "loopback only" if self.bind == "loopback" else (
            "from " + ", ".join(str(network) for network in self.sources) if self.sources else "from anywhere")
        family = "" if self.family == "any" else " " + self.family
        process = " for " + self.process if self.process else ""
        published = " (published container port only)" if self.published else ""
        return "%s/%s%s %s%s%s" % (self.protocol, self.port, family, where, process, published)

    def as_dict(self):
        return {"index": self.index, "port": self.port, "protocol": self.protocol, "family": self.family,
                "bind": self.bind, "sources": [str(network) for network in self.sources],
                "process": self.process, "published": self.published, "comment": self.comment}


def _plain(address):
    """An IPv4-mapped IPv6 address as the IPv4 address it is."""
    return address.ipv4_mapped if address.version == 6 and address.ipv4_mapped is not None else address


def opens_port(rules, protocol, port):
    """Whether any entry opens `port` of the host to the network, to some family and source at least.

    Loopback-only and published-only entries open nothing on the host. Whether the entries open it to a given
    client: management_gap().
    """
    return any(rule.protocol == protocol and rule.covers_port(port) and rule.bind == "any" and rule.on_host
               for rule in rules)


def covering_published(rules, protocol, family, low, high):
    """The entries that allow a published container port (every port of LOW-HIGH) for `family`: any entry of the
    protocol that is not loopback-only, published-only or not. Sources narrow who gets in, not whether."""
    return [rule for rule in rules if rule.protocol == protocol and rule.bind == "any" and rule.covers_family(family)
            and rule.low <= low and high <= rule.high]


_FAMILY_NAMES = {"ipv4": "IPv4", "ipv6": "IPv6"}


class Opening:
    """What the input chain of a firewall must let in for one entry (or a kept management port): a protocol, a
    port range, a family ("ipv4", "ipv6" or "any") and one source network (None: from anywhere); `rule` is the
    index of the entry it comes from (None for a management port, or another tool's rule)."""

    __slots__ = ("protocol", "low", "high", "family", "source", "comment", "rule")

    def __init__(self, protocol, low, high, family="any", source=None, comment="", rule=None):
        self.protocol = protocol
        self.low = low
        self.high = high
        self.family = family
        self.source = source
        self.comment = comment
        self.rule = rule

    def key(self):
        return (self.protocol, self.low, self.high, self.family, str(self.source) if self.source else "")

    def __eq__(self, other):
        return isinstance(other, Opening) and self.key() == other.key()

    def __hash__(self):
        return hash(self.key())

    def __repr__(self):
        return "Opening(%s)" % ", ".join(repr(part) for part in self.key())

    def families(self):
        return ("ipv4", "ipv6") if self.family == "any" else (self.family,)

    def port_text(self, separator="-"):
        """The port, or the range LOW<separator>HIGH (ufw writes 6000:6010, firewalld 6000-6010)."""
        return str(self.low) if self.low == self.high else "%d%s%d" % (self.low, separator, self.high)


def input_openings(rules, management_ports=(), management_comment="management port"):
    """The openings of an input chain for the allowlist `rules` and the kept management ports, in order.

    Loopback-only and published-only entries open nothing (loopback is always let in; a published port is
    forwarded, not delivered). An entry with sources opens the port to each source of a family it allows.
    """
    openings = []
    for rule in rules:
        if rule.bind != "any" or not rule.on_host:
            continue
        text = rule.comment or rule.describe()
        if not rule.sources:
            openings.append(Opening(rule.protocol, rule.low, rule.high, rule.family, None, text, rule.index))
            continue
        for network in rule.sources:
            family = "ipv%d" % network.version
            if rule.covers_family(family):
                openings.append(Opening(rule.protocol, rule.low, rule.high, family, network, text, rule.index))
    for port in management_ports:
        openings.append(Opening("tcp", port, port, "any", None, management_comment))
    unique = []
    for opening in openings:
        if opening not in unique:
            unique.append(opening)
    return unique


def opening_covered(openings, protocol, low, high, family, source=None):
    """Whether `openings` let in everything a rule of another tool lets in: `protocol` ("any" for tcp and udp),
    ports LOW-HIGH, `family` ("ipv4", "ipv6" or "any") and `source` (a network, None for anywhere)."""
    protocols = ("tcp", "udp") if protocol == "any" else (protocol,)
    families = ("ipv4", "ipv6") if family == "any" else (family,)
    for wanted_protocol in protocols:
        for wanted_family in families:
            if source is not None and "ipv%d" % source.version != wanted_family:
                continue
            if not any(opening.protocol == wanted_protocol and opening.low <= low and high <= opening.high
                       and opening.family in ("any", wanted_family)
                       and (opening.source is None or (source is not None and source.version == opening.source.version
                                                       and source.subnet_of(opening.source)))
                       for opening in openings):
                return False
    return True


def _connection(family, source):
    """(the families a connection may use, its source address or None) from management_gap()'s arguments."""
    if family not in (None, "ipv4", "ipv6"):
        raise AllowlistError("family: %r must be ipv4, ipv6 or None (not known)" % (family,))
    if source is None:
        return (family,) if family else ("ipv4", "ipv6"), None
    try:
        address = ipaddress.ip_address(source.partition("%")[0])  # the zone of fe80::1%eth0 changes nothing here
    except (AttributeError, ValueError):
        raise AllowlistError("source: %r is not an IP address" % (source,))
    plain = _plain(address)
    # An IPv4-mapped source is an IPv4 client, whatever family its (dual-stack) socket has.
    if family and plain is address and family != "ipv%d" % address.version:
        raise AllowlistError("source: %r is IPv%d but family is %s" % (source, address.version, family))
    return ("ipv%d" % plain.version,), plain


def _lets_in(rule, family, address):
    """Whether `rule` opens its port over `family` to a client at `address` (None: to every client)."""
    return family in rule.families() and (rule.allows_source(address) if address is not None else not rule.sources)


def _shortfall(rule, family, address, family_known):
    """How `rule` falls short of letting the connection in over `family`, as the end of "allow[N] opens 22/tcp"."""
    if rule.bind == "loopback":
        return " to local clients only (bind: loopback)"
    if family not in rule.families():
        only = " and ".join(_FAMILY_NAMES[name] for name in rule.families())
        if family_known:
            return " for %s only, but this connection uses %s" % (only, _FAMILY_NAMES[family])
        return " for %s only, and this connection's family is not known (it may use %s)" % (
            only, _FAMILY_NAMES[family])
    networks = ", ".join(str(network) for network in rule.sources if "ipv%d" % network.version == family)
    if address is None:
        return " only from %s, and the controller's address is not known" % networks
    return " only from %s, which %s not include the controller's address %s" % (
        networks, "do" if ", " in networks else "does", address)


def management_gap(rules, port, family=None, source=None, protocol="tcp", name="allow"):
    """Why the allowlist `rules` (parse_allowlist) would not let the connection that manages the host in, or None.

    The connection goes to `port`/`protocol` from `source` (the controller's IP address as the host sees it,
    None when not known) over `family` ("ipv4", "ipv6", None when not known). When a source is known it decides
    the family; an IPv4-mapped one (::ffff:192.0.2.10) is IPv4. Without a source the entries must open the port
    to every source (no `sources`), and without a family to IPv4 and IPv6 alike. A client on the host itself
    (a loopback source) is always let in: loopback traffic passes as a whole. Entries with `bind: loopback`
    open nothing to the network.

    The reason is one sentence naming the entries (as `name`[N]) that fall short, e.g. "allow[0] opens 22/tcp
    for IPv6 only, but this connection uses IPv4". Raises AllowlistError on a family or source it cannot read.
    """
    families, address = _connection(family, source)
    if address is not None and address.is_loopback:
        return None
    what = "%d/%s" % (port, protocol)
    candidates = [rule for rule in rules if rule.protocol == protocol and rule.covers_port(port) and rule.on_host]
    if not candidates:
        return "no %s entry opens %s" % (name, what)
    for needed in families:
        if not any(_lets_in(rule, needed, address) for rule in candidates):
            known = family is not None or address is not None
            return "; ".join("%s[%d] opens %s%s" % (name, rule.index, what, _shortfall(rule, needed, address, known))
                             for rule in candidates)
    return None


def _fail(index, field, value, problem):
    raise AllowlistError("[%d].%s: %r %s" % (index, field, value, problem))


def _port_number(index, value, text):
    if not (text.isascii() and text.isdigit()):  # int() would take "+22", "2_2" and other scripts' digits
        _fail(index, "port", value, "is not a port number or a LOW-HIGH range")
    number = int(text, 10)
    if not 1 <= number <= 65535:
        _fail(index, "port", value, "is outside 1-65535")
    return number


def parse_port(index, value):
    """(low, high) from 22, "22" or "8000-8100"."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        _fail(index, "port", value, "must be a number or a \"LOW-HIGH\" range")
    if isinstance(value, int):
        if not 1 <= value <= 65535:
            _fail(index, "port", value, "is outside 1-65535")
        return value, value
    low_text, sep, high_text = value.strip().partition("-")
    low = _port_number(index, value, low_text.strip())
    high = _port_number(index, value, high_text.strip()) if sep else low
    if high < low:
        _fail(index, "port", value, "is a range whose start is above its end")
    return low, high


def _choice(index, entry, field, choices, default):
    value = entry.get(field)
    if value is None:
        return default
    if value not in choices:
        _fail(index, field, value, "must be one of: %s" % ", ".join(choices))
    return value


def _sources(index, entry, family):
    raw = entry.get("sources")
    if raw is None:
        return []
    if isinstance(raw, str) or not isinstance(raw, (list, tuple)):
        _fail(index, "sources", raw, "must be a list of CIDRs")
    networks = []
    for position, text in enumerate(raw):
        field = "sources[%d]" % position
        if not isinstance(text, str):
            _fail(index, field, text, "must be a CIDR such as 192.0.2.0/24 or 2001:db8::/32")
        if "%" in text:  # Python 3.9+ reads fe80::%eth0/64; nft has no such source
            _fail(index, field, text, "names a zone (%s): a source is a network, not an interface"
                  % text[text.index("%"):].split("/")[0])
        try:
            network = ipaddress.ip_network(text.strip(), strict=False)
        except ValueError:
            _fail(index, field, text, "is not a valid address or CIDR")
        mapped = network.network_address.ipv4_mapped if network.version == 6 else None
        if mapped is not None:
            # An IPv4 client reaches the host as IPv4: an `ip6 saddr ::ffff:...` rule would never match.
            ipv4 = ipaddress.IPv4Network((mapped, network.prefixlen - 96))
            _fail(index, field, text, "is an IPv4-mapped IPv6 address, which no packet has as its source; write "
                  "it as IPv4: %s%s" % (ipv4 if "/" in text else mapped,
                                        " (with family: ipv4 or any)" if family == "ipv6" else ""))
        if network.network_address != ipaddress.ip_interface(text.strip()).ip:
            _fail(index, field, text, "has host bits set; the network is %s" % network)
        if family != "any" and "ipv%d" % network.version != family:
            _fail(index, field, text, "is IPv%d but the entry's family is %s" % (network.version, family))
        networks.append(network)
    return networks


def parse_entry(index, entry):
    """Validate one raw entry (a dict) into a Rule."""
    if not isinstance(entry, dict):
        raise AllowlistError("[%d]: %r must be a mapping with at least a port" % (index, entry))
    unknown = sorted(set(entry) - set(FIELDS), key=str)  # keys need not be texts, nor of one type
    if unknown:
        _fail(index, unknown[0], entry[unknown[0]], "is not an allowlist field (fields: %s)" % ", ".join(FIELDS))
    if entry.get("port") is None:
        raise AllowlistError("[%d].port: is required" % index)
    low, high = parse_port(index, entry["port"])
    protocol = _choice(index, entry, "protocol", PROTOCOLS, "tcp")
    family = _choice(index, entry, "family", FAMILIES, "any")
    bind = _choice(index, entry, "bind", BINDS, "any")
    sources = _sources(index, entry, family)
    if bind == "loopback" and sources:
        _fail(index, "sources", entry["sources"], "contradicts bind: loopback (only local clients can connect)")
    for field in ("process", "comment"):
        value = entry.get(field)
        if value is not None and (not isinstance(value, str) or not value.strip()):
            _fail(index, field, value, "must be a non-empty text")
    published = entry.get("published")
    if published is not None and not isinstance(published, bool):
        _fail(index, "published", published, "must be true or false")
    if published and bind == "loopback":
        _fail(index, "published", published, "contradicts bind: loopback (a published port is reached from the "
              "network; publish it on 127.0.0.1 instead and leave published out)")
    if published and entry.get("process") is not None:
        _fail(index, "process", entry["process"], "cannot be checked for a published container port (no socket of "
              "the host serves it); leave process out or published: false")
    process = entry.get("process")
    return Rule(index, low, high, protocol, family, bind, sources,
                process.strip() if process else None, entry.get("comment"), bool(published))


def parse_allowlist(entries, name="allowlist"):
    """Validate a whole allowlist: every entry, then duplicates and contradictions between entries.

    Errors start with `name` (the option the entries came in, e.g. "allow"), the entry index and the field.
    """
    try:
        return _parse(entries)
    except AllowlistError as exc:
        message = str(exc).replace(OTHER_ENTRY, name + "[")
        raise AllowlistError(name + (message if message.startswith("[") else ": " + message))


def _parse(entries):
    if entries is None:
        return []
    if not isinstance(entries, (list, tuple)):
        raise AllowlistError("%r must be a list of entries" % (entries,))
    rules = [parse_entry(index, entry) for index, entry in enumerate(entries)]
    seen = {}
    for rule in rules:
        first = seen.setdefault(rule.identity(), rule)
        if first is not rule:
            raise AllowlistError("[%d]: duplicates %s%d] (%s)" % (rule.index, OTHER_ENTRY, first.index, rule.describe()))
    for position, rule in enumerate(rules):
        for other in rules[:position]:
            if not rule.overlaps(other):
                continue
            if rule.bind != other.bind:
                raise AllowlistError("[%d].bind: %r contradicts %s%d].bind %r for the same port (%s)"
                                     % (rule.index, rule.bind, OTHER_ENTRY, other.index, other.bind, rule.describe()))
            if rule.process and other.process and rule.process != other.process:
                raise AllowlistError("[%d].process: %r contradicts %s%d].process %r for the same port (%s)"
                                     % (rule.index, rule.process, OTHER_ENTRY, other.index, other.process,
                                        rule.describe()))
    return rules
