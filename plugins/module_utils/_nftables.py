# Copyright (c) Portcullis contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The nftables table that enforces the allowlist: text to load, scripts to apply and roll back, drift.

Portcullis owns one table, `table inet portcullis`, and nothing else: no ruleset flush, no other table
(Docker's, libvirt's, Debian's `inet filter`), no output chain. Every change replaces that table in one
`nft -f` transaction that starts with `add table` + `delete table`, so it works whether the table exists
or not.

Its input chain is the host's default deny. Its forward chain (render_table(published=...)) closes the ports
published to containers: new connections whose destination a DNAT rewrote (`ct status dnat`) jump to the
`published` chain, which accepts what the allowlist allows by the original destination port (`ct original
proto-dst`, the published port, never the container's) and drops the rest. Everything else that is routed
(container egress, replies, traffic between containers, a router's forwarding) passes our chain untouched;
in netfilter an accept here never overrides another table's drop, and a drop here is final.

render_table() writes the table exactly as `nft list table inet portcullis` prints it back (nft 1.0.6,
Debian 12, and 1.1.3, Debian 13): the listing before a change and the text after it diff cleanly.

Private to the collection: pure functions, no AnsibleModule.
"""

from __future__ import annotations

import ipaddress
import json
import posixpath
import re
import unicodedata

TABLE_FAMILY = "inet"
TABLE_NAME = "portcullis"
TABLE = "%s %s" % (TABLE_FAMILY, TABLE_NAME)
TABLE_COMMENT = "managed by portcullis.hardening.firewall, changes here are overwritten"
CHAIN_NAME = "input"
FORWARD_CHAIN = "forward"
PUBLISHED_CHAIN = "published"
POLICIES = ("drop", "reject")
PERSIST_PATH = "/etc/nftables.d/portcullis.nft"
NFTABLES_CONF = "/etc/nftables.conf"
LOG_PREFIX = "portcullis drop: "
# nft refuses comments longer than 128 bytes ("comment too long, 128 characters maximum allowed").
COMMENT_MAX = 128

# Rate limits. The bursts are not nft's default (5): nft 1.0.6 omits a default burst from its
# listing and 1.1.x prints it, while a burst of 10 is printed by both, so the text stays the same.
PING_LIMIT = "limit rate 10/second burst 10 packets"
LOG_LIMIT = "limit rate 5/minute burst 10 packets"

# In the order nft lists them (numeric), so the rendered text is the listing.
ICMP_ESSENTIAL = ("destination-unreachable", "time-exceeded", "parameter-problem")
ICMPV6_ESSENTIAL = (
    "destination-unreachable",  # 1
    "packet-too-big",  # 2: path MTU discovery, IPv6 routers never fragment
    "time-exceeded",  # 3
    "parameter-problem",  # 4
    "mld-listener-query",  # 130: MLD keeps the solicited-node groups ND needs on snooping switches
    "mld-listener-report",  # 131
    "mld-listener-done",  # 132
    "nd-router-solicit",  # 133
    "nd-router-advert",  # 134: default route and SLAAC
    "nd-neighbor-solicit",  # 135: address resolution and duplicate address detection
    "nd-neighbor-advert",  # 136
    "mld2-listener-report",  # 143
)

INCLUDE_MARKER = "# Added by portcullis.hardening.firewall: loads its table (%s) at boot." % TABLE
_SCRIPT_HEAD = "add table %s\ndelete table %s\n" % (TABLE, TABLE)
_INCLUDE = re.compile(r'^\s*include\s+"([^"]*)"')
_FLUSH_RULESET = re.compile(r"^\s*flush\s+ruleset\b")


def _quote(text):
    return '"%s"' % text


def comment_text(text, limit=COMMENT_MAX):
    """`text` made safe for an nft comment: printable ASCII, no double quote, at most `limit` bytes.

    nft strings have no escapes, so a double quote becomes a single one; accents are dropped (é -> e),
    other non-ASCII characters become "?", control characters and runs of blanks one space; too long
    a text is cut and ends with "...".
    """
    out = []
    for char in unicodedata.normalize("NFKD", text):
        if unicodedata.combining(char):
            continue
        if char == '"':
            char = "'"
        elif char.isspace() or ord(char) < 32 or ord(char) == 127:
            char = " "
        elif ord(char) > 126:
            char = "?"
        out.append(char)
    safe = " ".join("".join(out).split())
    if len(safe) > limit:
        safe = safe[:limit - 3].rstrip() + "..."
    return safe


def rule_comment(rule):
    """The comment of the nft rule(s) made from one allowlist entry: `allowlist[N]: ...`."""
    return comment_text("allowlist[%d]: %s" % (rule.index, rule.comment or rule.describe()))


def _address(address):
    if address.version == 6 and address.ipv4_mapped is not None:
        return "::ffff:%s" % address.ipv4_mapped  # as nft (inet_ntop) prints it
    return str(address)


def _elements(networks):
    """Networks merged the way nft merges an interval set, printed as nft prints them.

    Overlapping or adjacent networks become one interval: a prefix when it is one (10.0.0.0/8,
    a host as 10.0.0.1), else a range (10.0.0.0-10.0.0.2).
    """
    intervals = []
    for network in sorted(networks, key=lambda item: int(item.network_address)):
        first, last = int(network.network_address), int(network.broadcast_address)
        if intervals and first <= intervals[-1][1] + 1:
            intervals[-1][1] = max(intervals[-1][1], last)
        else:
            intervals.append([first, last])
    version = networks[0].version
    bits = 32 if version == 4 else 128
    make = ipaddress.IPv4Address if version == 4 else ipaddress.IPv6Address
    elements = []
    for first, last in intervals:
        size = last - first + 1
        if size & (size - 1) == 0 and first % size == 0:
            length = bits - size.bit_length() + 1
            elements.append(_address(make(first)) + ("" if length == bits else "/%d" % length))
        else:
            elements.append("%s-%s" % (_address(make(first)), _address(make(last))))
    return elements


def _match(elements):
    return elements[0] if len(elements) == 1 else "{ %s }" % ", ".join(elements)


def _port_match(rule):
    port = str(rule.low) if rule.low == rule.high else "%d-%d" % (rule.low, rule.high)
    return "%s dport %s" % (rule.protocol, port)


def allowlist_rules(rule):
    """The nft rules (text) for one allowlist entry; none for a loopback-only entry.

    Loopback traffic is accepted as a whole (iif "lo"), so `bind: loopback` needs no rule. Sources are
    split by IP version, one rule per version the entry's family allows.
    """
    if rule.bind == "loopback":
        return []
    return _for_sources(rule, "%s accept comment %s" % (_port_match(rule), _quote(rule_comment(rule))))


def _for_sources(rule, tail):
    """The rules `tail` (a port match and its verdict) makes for an entry: one for its family when it has no sources,
    else one per IP version of its sources (that its family allows), each matching those sources."""
    if not rule.sources:
        family = "" if rule.family == "any" else "meta nfproto %s " % rule.family
        return [family + tail]
    lines = []
    for version, keyword in ((4, "ip"), (6, "ip6")):
        networks = [network for network in rule.sources if network.version == version]
        if networks and rule.family in ("any", "ipv%d" % version):
            lines.append("%s saddr %s %s" % (keyword, _match(_elements(networks)), tail))
    return lines


def published_allow_rules(rule):
    """The `published` chain's accept rules for one allowlist entry: the published ports it allows.

    Matched on the connection's original destination port (`ct original proto-dst`): a DNAT rewrote the packet's
    own, and a container port that happens to equal a host port must not open it. One rule per port or range
    (nft cannot print a set of proto-dst values back). Loopback-only entries open nothing published.
    """
    if rule.bind == "loopback":
        return []
    port = str(rule.low) if rule.low == rule.high else "%d-%d" % (rule.low, rule.high)
    return _for_sources(rule, "meta l4proto %s ct original proto-dst %s accept comment %s" % (
        rule.protocol, port, _quote(rule_comment(rule))))


def _published_chains(rules, container_networks, log_dropped):
    """The forward and published chains (lists of lines, without indentation): see the module docstring."""
    forward = ["chain %s {" % FORWARD_CHAIN,
               "\ttype filter hook forward priority filter; policy accept;",
               '\tct state new ct status dnat jump %s comment "portcullis: new connections to published ports"'
               % PUBLISHED_CHAIN,
               "}"]
    body = []
    for version, keyword in ((4, "ip"), (6, "ip6")):
        networks = [ipaddress.ip_network(text) for text in (container_networks or {}).get("ipv%d" % version, [])]
        if networks:
            body.append('%s saddr %s accept comment "portcullis: from the container networks"'
                        % (keyword, _match(_elements(networks))))
    for rule in rules:
        body.extend(published_allow_rules(rule))
    if log_dropped:
        body.append("%s log prefix %s level info comment \"portcullis: log what the policy drops\""
                    % (LOG_LIMIT, _quote(LOG_PREFIX)))
    # Always a drop: a reset built after the DNAT would carry the container's address, which clients ignore.
    body.append('drop comment "portcullis: published ports the allowlist does not allow"')
    return forward + ["chain %s {" % PUBLISHED_CHAIN] + ["\t" + line for line in body] + ["}"]


def _management_ports(ports):
    numbers = set()
    for port in ports:
        if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
            raise ValueError("management port %r is not a port number (1-65535)" % (port,))
        numbers.add(port)
    return sorted(numbers)


def render_table(rules, policy="drop", management_ports=(22,), log_dropped=False, dhcpv6_client=True,
                 published=None):
    """The whole `table inet portcullis { ... }` text: deterministic, and what `nft list table` prints.

    rules: allowlist Rules (parse_allowlist), rendered in their order, each with its own rule(s); the input chain
    leaves out the published-only ones (they open a container's port, no socket of the host).
    policy: "drop" (silently) or "reject" (TCP reset, ICMP administratively prohibited for the rest);
    the chain's own policy is always drop.
    management_ports: TCP ports always open (the connection that manages the host).
    log_dropped: log what reaches the end of the chain, at most 5 a minute.
    dhcpv6_client: accept DHCPv6 answers (UDP 546 to a link-local address), as a DHCPv6 client needs.
    published: None leaves forwarded traffic alone; else the container networks ({"ipv4": [CIDR], "ipv6": [...]},
    from _published.container_networks()), and the table gets the forward and published chains that drop new
    connections to published ports the allowlist does not allow.
    """
    if policy not in POLICIES:
        raise ValueError("policy %r must be one of: %s" % (policy, ", ".join(POLICIES)))
    body = [
        "type filter hook input priority filter; policy drop;",
        'ct state established,related accept comment "portcullis: replies and related traffic"',
        'ct state invalid drop comment "portcullis: invalid packets"',
        'iif "lo" accept comment "portcullis: loopback"',
        'ip saddr 127.0.0.0/8 drop comment "portcullis: loopback address from the network"',
        'ip6 saddr ::1 drop comment "portcullis: loopback address from the network"',
        'icmp type { %s } accept comment "portcullis: essential ICMP"' % ", ".join(ICMP_ESSENTIAL),
        'icmp type echo-request %s accept comment "portcullis: ping, rate-limited"' % PING_LIMIT,
        'icmpv6 type { %s } accept comment "portcullis: essential ICMPv6, neighbour discovery, MLD"'
        % ", ".join(ICMPV6_ESSENTIAL),
        'icmpv6 type echo-request %s accept comment "portcullis: ping, rate-limited"' % PING_LIMIT,
    ]
    if dhcpv6_client:
        body.append('ip6 daddr fe80::/64 udp dport 546 accept comment "portcullis: DHCPv6 client"')
    ports = _management_ports(management_ports)
    if ports:
        body.append('tcp dport %s accept comment "portcullis: management port%s"'
                    % (_match([str(port) for port in ports]), "s" if len(ports) > 1 else ""))
    for rule in rules:
        if rule.on_host:
            body.extend(allowlist_rules(rule))
    if log_dropped:
        body.append("%s log prefix %s level info comment \"portcullis: log what the policy %ss\""
                    % (LOG_LIMIT, _quote(LOG_PREFIX), policy))
    if policy == "reject":
        body.append('meta l4proto tcp reject with tcp reset comment "portcullis: policy reject"')
        body.append('reject with icmpx admin-prohibited comment "portcullis: policy reject"')
    lines = ["table %s {" % TABLE, "\tcomment %s" % _quote(TABLE_COMMENT), "\tchain %s {" % CHAIN_NAME]
    lines.extend("\t\t" + line for line in body)
    lines.append("\t}")
    if published is not None:
        chains = _published_chains(rules, published, log_dropped)
        for line in chains:
            if line.startswith("chain "):
                lines.append("")
            lines.append("\t" + line)
    lines.append("}")
    return "\n".join(lines) + "\n"


def apply_script(table_text):
    """The `nft -f` script that replaces the table (or creates it) with `table_text`, in one transaction."""
    if not table_text.endswith("\n"):
        table_text += "\n"
    return _SCRIPT_HEAD + table_text


def removal_script():
    """The `nft -f` script that removes the table, whether it exists or not."""
    return _SCRIPT_HEAD


def rollback_script(previous_table_text):
    """The script that puts back the table as it was: its `nft list table` text, or None when there was none."""
    if previous_table_text is None or not previous_table_text.strip():
        return removal_script()
    return apply_script(previous_table_text)


def _strip_handle(value):
    if isinstance(value, dict):
        return dict((key, item) for key, item in value.items() if key != "handle")
    return value


def normalise_listing(json_text):
    """`nft -j list table inet portcullis` output in a form that does not depend on handles or the nft version
    banner (metainfo): rule order kept, keys sorted, compact. Raises ValueError on text that is not that JSON.
    """
    try:
        document = json.loads(json_text)
    except ValueError as exc:
        raise ValueError("nft -j output is not JSON: %s" % exc)
    if not isinstance(document, dict) or not isinstance(document.get("nftables"), list):
        raise ValueError("nft -j output has no \"nftables\" list")
    items = []
    for item in document["nftables"]:
        if not isinstance(item, dict):
            raise ValueError("nft -j output has an element that is not an object: %r" % (item,))
        if "metainfo" in item:
            continue
        items.append(dict((kind, _strip_handle(value)) for kind, value in item.items()))
    return json.dumps({"nftables": items}, sort_keys=True, separators=(",", ":"))


def table_absent(rc, stderr):
    """Whether `nft [-j] list table inet portcullis` failed only because the table does not exist.

    nft 1.0.6 and 1.1.3 both answer (rc 1):
        Error: No such file or directory
        list table inet portcullis
                        ^^^^^^^^^^
    Other failures (not root: "Operation not permitted", no nf_tables) are not an absent table.
    """
    if rc == 0:
        return False
    for line in (stderr or "").splitlines():
        line = line.strip()
        if line.startswith("Error: No such file or directory") and "Could not process rule" not in line:
            return True
    return False


def persist_include_line(path=PERSIST_PATH):
    """The /etc/nftables.conf line that loads the persisted table at boot."""
    return 'include "%s"' % path


def _glob_regex(pattern):
    """A regular expression for an nft include glob (glob(3): *, ? and [...] do not match "/")."""
    out = []
    position = 0
    while position < len(pattern):
        char = pattern[position]
        if char == "*":
            out.append("[^/]*")
        elif char == "?":
            out.append("[^/]")
        elif char == "[":
            end = pattern.find("]", position + 2)
            if end < 0:
                out.append(re.escape(char))
            else:
                inner = pattern[position + 1:end]
                if inner.startswith("!"):
                    inner = "^" + inner[1:]
                out.append("[%s]" % inner.replace("\\", "\\\\"))
                position = end
        else:
            out.append(re.escape(char))
        position += 1
    return "".join(out) + r"\Z"


def include_covers(include, path, base="/etc"):
    """Whether an nft `include "<include>"` loads `path`: the same file, or a glob matching it.

    A relative include is taken relative to `base` (nft's default include directory on Debian).
    """
    if not posixpath.isabs(include):
        include = posixpath.join(base, include)
    include = posixpath.normpath(include)
    target = posixpath.normpath(path)
    if include == target:
        return True
    if not any(char in include for char in "*?["):
        return False
    try:
        return re.match(_glob_regex(include), target) is not None
    except re.error:
        return False


def ensure_include(conf_text, path=PERSIST_PATH):
    """/etc/nftables.conf text that loads `path`: (new_text, changed).

    Nothing already there is removed or moved: the include line (after a comment saying who added it)
    is appended at the end, so it comes after any `flush ruleset`. An include that already loads the
    file (same path, or a glob like "/etc/nftables.d/*.nft") counts only when no `flush ruleset`
    follows it.
    """
    covered = False
    for line in conf_text.splitlines():
        if _FLUSH_RULESET.match(line):
            covered = False
            continue
        found = _INCLUDE.match(line)
        if found and include_covers(found.group(1), path):
            covered = True
    if covered:
        return conf_text, False
    text = conf_text
    if text and not text.endswith("\n"):
        text += "\n"
    addition = "%s\n%s\n" % (INCLUDE_MARKER, persist_include_line(path))
    if text and not text.endswith("\n\n"):
        addition = "\n" + addition
    return text + addition, True


def remove_include(conf_text, path=PERSIST_PATH):
    """/etc/nftables.conf text without the include of `path`: (new_text, changed).

    Removes every line that includes exactly `path` (nft fails on an include of a missing file, and with
    it the whole of nftables.conf at boot), the comment ensure_include() put above it and the blank line
    it put before that; keeps everything else, globs included (a glob that matches nothing is no error).
    """
    lines = conf_text.splitlines(True)
    target = posixpath.normpath(path)
    drop = set()
    for number, line in enumerate(lines):
        found = _INCLUDE.match(line)
        if not found:
            continue
        include = found.group(1)
        include = posixpath.normpath(include if posixpath.isabs(include) else posixpath.join("/etc", include))
        if include != target:
            continue
        drop.add(number)
        if number and lines[number - 1].rstrip("\n") == INCLUDE_MARKER:
            drop.add(number - 1)
            if number > 1 and not lines[number - 2].strip():
                drop.add(number - 2)
    if not drop:
        return conf_text, False
    return "".join(line for number, line in enumerate(lines) if number not in drop), True


# --- moving a port in a live table (portcullis.hardening.ssh_port and service_port) -------------------

_TCP_DPORT = re.compile(r"(?P<head>(?:^|\s)tcp dport )(?P<ports>\{ [0-9, -]+ \}|[0-9]+(?:-[0-9]+)?)(?P<tail> )")
_MANAGEMENT_COMMENT = re.compile(r'comment "portcullis: management ports?"')
# Rules render_table() puts before the management port; a management rule goes after the last of them.
_BEFORE_MANAGEMENT = ('"portcullis: essential ICMPv6', '"portcullis: ping', '"portcullis: DHCPv6 client"')


def _dport_items(text):
    """`22`, `20-30` or `{ 22, 2222 }` -> [(low, high)]."""
    items = []
    for item in text.strip("{} ").split(","):
        low, _sep, high = item.strip().partition("-")
        items.append((int(low), int(high or low)))
    return items


def _rule_part(line):
    """The rule without its comment: a comment is free text, "tcp dport 22" included."""
    position = line.find(' comment "')
    return line if position < 0 else line[:position]


def _accepts(line):
    return line.rstrip().endswith('"') and " accept comment " in line or line.rstrip().endswith(" accept")


def tcp_rules_opening(table_text, port):
    """The accept rules (stripped lines) of a table listing that open `port`/tcp, to some source at least."""
    found = []
    for line in table_text.splitlines():
        match = _TCP_DPORT.search(_rule_part(line))
        if match and _accepts(line) and any(low <= port <= high for low, high in _dport_items(match.group("ports"))):
            found.append(line.strip())
    return found


def move_tcp_port(table_text, old_ports, new_port, keep_old):
    """A table listing where every accept rule that opens one of `old_ports` (alone or in a set of single
    ports) opens `new_port` too, and, unless `keep_old`, no longer the old ports: (new text, rules moved).

    Sources, families and comments of each rule stay, so a port open to the management network only stays
    so. When no rule opens an old port, the new port becomes a management port (a rule where render_table()
    puts it).
    """
    old_ports = set(old_ports)
    lines = table_text.splitlines()
    moved = 0
    for number, line in enumerate(lines):
        match = _TCP_DPORT.search(_rule_part(line))
        if not match or not _accepts(line):
            continue
        items = _dport_items(match.group("ports"))
        if any(low != high for low, high in items):
            continue  # a range stays as it is
        ports = set(low for low, _high in items)
        if not ports & old_ports:
            continue
        wanted = (ports if keep_old else ports - old_ports) | {new_port}
        text = _match([str(port) for port in sorted(wanted)])
        line = line[:match.start("ports")] + text + line[match.end("ports"):]
        if _MANAGEMENT_COMMENT.search(line):
            line = _MANAGEMENT_COMMENT.sub('comment "portcullis: management port%s"'
                                           % ("s" if len(wanted) > 1 else ""), line)
        lines[number] = line
        moved += 1
    if not moved:
        position = None
        for number, line in enumerate(lines):
            if any(marker in line for marker in _BEFORE_MANAGEMENT):
                position = number + 1
        if position is None:
            raise ValueError("the table has no rule that opens %s/tcp and no place for a management port rule"
                             % ", ".join(str(port) for port in sorted(old_ports)))
        indent = lines[position - 1][:len(lines[position - 1]) - len(lines[position - 1].lstrip())]
        lines.insert(position, '%stcp dport %d accept comment "portcullis: management port"' % (indent, new_port))
    return "\n".join(lines) + "\n", moved
