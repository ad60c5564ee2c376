# Copyright (c) Portcullis contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The ufw backend: read ufw's own rules, plan the allowlist in ufw's words, apply it with ufw's commands.

ufw keeps its user rules in /etc/ufw/user.rules and user6.rules, each rule as a `### tuple ###` line that ufw itself
reads back; those are parsed here (reads only), and every change is a `ufw` command (an argument list), so ufw
writes the files and the live rules itself. Portcullis manages the incoming rules of every interface (not the
routed and outgoing ones) and the default incoming policy. Its own rules carry a comment starting `portcullis`.
Private to the collection.
"""

from __future__ import annotations

import ipaddress
import re

from ansible_collections.portcullis.hardening.plugins.module_utils._allowlist import opening_covered
from ansible_collections.portcullis.hardening.plugins.module_utils._host import PortcullisError

UFW = "ufw"
USER_RULES = "/etc/ufw/user.rules"
USER6_RULES = "/etc/ufw/user6.rules"
UFW_DEFAULTS = "/etc/default/ufw"
UFW_CONF = "/etc/ufw/ufw.conf"
# What a change may write, backed up when it is armed (ufw writes them itself).
UFW_FILES = (USER_RULES, USER6_RULES, UFW_DEFAULTS, UFW_CONF)
MARK = "portcullis"
ANY = {"ipv4": "0.0.0.0/0", "ipv6": "::/0"}
# ufw's default-policy words, by the value /etc/default/ufw holds; and the value each `policy` of the module wants.
VERBS = {"DROP": "deny", "REJECT": "reject", "ACCEPT": "allow"}
POLICIES = {"drop": "DROP", "reject": "REJECT"}
_TUPLE = re.compile(r"^### tuple ###\s*(.*)$")


class UfwError(PortcullisError):
    """ufw cannot be read or changed; the message says what and what the host is in."""


class UfwRule:
    """One ufw user rule of one family, as its `### tuple ###` line says."""

    __slots__ = ("family", "action", "logtype", "protocol", "dport", "dst", "sport", "src", "dapp", "sapp",
                 "direction", "interface_in", "interface_out", "forward", "comment")

    def __init__(self, family, action, protocol, dport, dst, sport, src, direction="in", dapp="", sapp="",
                 interface_in="", interface_out="", forward=False, comment="", logtype=""):
        self.family = family
        self.action = action
        self.logtype = logtype
        self.protocol = protocol
        self.dport = dport
        self.dst = dst
        self.sport = sport
        self.src = src
        self.dapp = dapp
        self.sapp = sapp
        self.direction = direction
        self.interface_in = interface_in
        self.interface_out = interface_out
        self.forward = forward
        self.comment = comment

    @property
    def ours(self):
        return self.comment.startswith(MARK)

    @property
    def incoming(self):
        """A rule of the input chain (not routed, not outgoing): the rules Portcullis manages."""
        return not self.forward and self.direction == "in"

    @property
    def opens(self):
        return self.action in ("allow", "limit")

    def match_key(self):
        """What ufw compares to tell two rules apart (the comment and the logging do not count)."""
        return (self.family, self.action, self.protocol, self.dport, _network_text(self.dst), self.sport,
                _network_text(self.src), self.dapp, self.sapp, self.direction, self.interface_in,
                self.interface_out, self.forward)

    def port_ranges(self):
        """The destination ports as [(low, high)] (of an application rule too: ufw writes its profile's ports)."""
        if self.dport == "any":
            return [(1, 65535)]
        ranges = []
        for part in self.dport.split(","):
            low, _sep, high = part.partition(":")
            ranges.append((int(low), int(high or low)))
        return ranges

    def source_network(self):
        """The source as a network, None for anywhere."""
        network = ipaddress.ip_network(self.src, strict=False)
        return None if network.prefixlen == 0 else network

    def argv(self, verb=None):
        """The ufw command that adds this rule (`verb` "delete": that removes it), an argument list."""
        argv = [UFW] + ["route"] * self.forward + ([verb] if verb else []) + [self.action]
        if self.interface_in:
            argv += ["in", "on", self.interface_in]
        if self.interface_out:
            argv += ["out", "on", self.interface_out]
        if not (self.interface_in or self.interface_out) and self.direction == "out":
            argv.append("out")
        if self.logtype:
            argv.append(self.logtype)
        if self.protocol != "any" and not (self.dapp or self.sapp):
            argv += ["proto", self.protocol]
        argv += ["from", self.src]
        if self.sapp:
            argv += ["app", self.sapp]
        elif self.sport != "any":
            argv += ["port", self.sport]
        argv += ["to", self.dst]
        if self.dapp:
            argv += ["app", self.dapp]
        elif self.dport != "any":
            argv += ["port", self.dport]
        if self.comment and verb is None:
            argv += ["comment", self.comment]
        return argv

    def text(self):
        """The rule in ufw's words: the command that adds it."""
        return " ".join(_quote(word) for word in self.argv())


def _quote(word):
    return "'%s'" % word if not word or re.search(r"[\s'\"]", word) else word


def _network_text(text):
    try:
        return str(ipaddress.ip_network(text, strict=False))
    except ValueError:
        return text


def parse_rules(text, family):
    """The user rules of one file (user.rules: ipv4, user6.rules: ipv6), in ufw's order."""
    rules = []
    for line in (text or "").splitlines():
        comment = ""
        if " comment=" in line:
            line, hexed = line.split(" comment=", 1)
            try:
                comment = bytes.fromhex(hexed.strip()).decode("utf-8", "replace")
            except ValueError:
                comment = hexed.strip()
        match = _TUPLE.match(line)
        if not match:
            continue
        fields = match.group(1).split()
        if len(fields) not in (7, 9):
            continue  # the old 6- and 8-field forms have no direction: ufw rewrites them on its next change
        action, forward, logtype = fields[0], False, ""
        if ":" in action:
            forward, action = True, action.split(":", 1)[1]
        if "_" in action:
            action, logtype = action.split("_", 1)
        where = fields[-1]
        direction, interface_in, interface_out = where.split("_", 1)[0], "", ""
        if "!" in where:
            interface_in = where.split("!")[0].partition("_")[2]
            interface_out = where.split("!")[1].partition("_")[2]
        elif where.startswith("in_"):
            interface_in = where.partition("_")[2]
        elif where.startswith("out_"):
            interface_out = where.partition("_")[2]
        dapp = sapp = ""
        if len(fields) == 9:
            dapp = "" if fields[6] == "-" else fields[6].replace("%20", " ")
            sapp = "" if fields[7] == "-" else fields[7].replace("%20", " ")
        rules.append(UfwRule(family, action, fields[1], fields[2], fields[3], fields[4], fields[5], direction,
                             dapp, sapp, interface_in, interface_out, forward, comment, logtype))
    return rules


def parse_defaults(text):
    """KEY=value settings of /etc/default/ufw or /etc/ufw/ufw.conf (quotes removed)."""
    settings = {}
    for line in (text or "").splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _sep, value = line.partition("=")
        settings[key.strip()] = value.strip().strip("\"'")
    return settings


def parse_status(text):
    """Whether `ufw status` says the firewall is active."""
    return any(line.strip() == "Status: active" for line in (text or "").splitlines())


def wanted_rules(openings):
    """The ufw rules (one per family) the openings make, each with a `portcullis` comment."""
    rules = []
    for opening in openings:
        dport = opening.port_text(":")
        for family in opening.families():
            if opening.source is not None and "ipv%d" % opening.source.version != family:
                continue
            source = str(opening.source) if opening.source is not None else ANY[family]
            rules.append(UfwRule(family, "allow", opening.protocol, dport, ANY[family], "any", source,
                                 comment=("%s: %s" % (MARK, opening.comment))[:200]))
    return rules


def rule_covered(rule, openings):
    """Whether the allowlist openings let in everything an incoming allow (or limit) rule of ufw lets in."""
    if rule.sapp or rule.sport != "any":
        return False  # an application profile or a source port: not a port the allowlist names
    # A rule to one address of the host (`to 192.0.2.10`) still opens that port of the host.
    return all(opening_covered(openings, rule.protocol, low, high, rule.family, rule.source_network())
               for low, high in rule.port_ranges())


class UfwState:
    """What ufw has: active or not, its settings and its user rules of both families."""

    def __init__(self, active, defaults, conf, rules):
        self.active = active
        self.defaults = defaults
        self.conf = conf
        self.rules = rules

    @property
    def input_policy(self):
        return self.defaults.get("DEFAULT_INPUT_POLICY", "DROP")

    def listing(self):
        """The state in ufw's words: the default incoming policy and the incoming rules, as commands."""
        policy = VERBS.get(self.input_policy, self.input_policy)
        lines = ["ufw %s" % ("enable" if self.active else "disable"), "ufw default %s incoming" % policy]
        lines += [rule.text() for rule in self.rules if rule.incoming]
        return "\n".join(lines) + "\n"


def plan(state, openings, policy):
    """What makes ufw enforce the openings with a default deny: {"commands": [argv], "after": UfwState,
    "deleted": [UfwRule], "added": [UfwRule], "kept": [UfwRule] (rules of others the allowlist covers)}.

    Adds come first (the management port never has a gap), then the deletes, then the default policy, and
    enabling ufw comes last, once the allows are in. A rule of another tool that the openings cover stays
    (an operator's `ufw limit 22/tcp` keeps its rate limit), and so do deny and reject rules.
    """
    wanted = wanted_rules(openings)
    present = set(rule.match_key() for rule in state.rules)
    limited = set(rule.match_key()[:1] + ("allow",) + rule.match_key()[2:] for rule in state.rules
                  if rule.action == "limit")
    wanted_keys = set(rule.match_key() for rule in wanted)
    added = [rule for rule in wanted if rule.match_key() not in present and rule.match_key() not in limited]
    deleted, kept, after = [], [], []
    for rule in state.rules:
        if not rule.incoming or not rule.opens:
            after.append(rule)
        elif rule.ours and rule.match_key() not in wanted_keys:
            deleted.append(rule)
        elif not rule.ours and not rule_covered(rule, openings):
            deleted.append(rule)
        else:
            after.append(rule)
            if not rule.ours:
                kept.append(rule)
    commands = [rule.argv() for rule in added] + [rule.argv("delete") for rule in deleted]
    value = POLICIES[policy]
    defaults = dict(state.defaults)
    if state.input_policy != value:
        commands.append([UFW, "default", VERBS[value], "incoming"])
        defaults["DEFAULT_INPUT_POLICY"] = value
    if not state.active:
        commands.append([UFW, "--force", "enable"])
    by_family = dict((family, [rule for rule in after if rule.family == family] +
                      [rule for rule in added if rule.family == family]) for family in ("ipv4", "ipv6"))
    final = UfwState(True, defaults, state.conf, by_family["ipv4"] + by_family["ipv6"])
    return {"commands": commands, "after": final, "added": added, "deleted": deleted, "kept": kept}


def removal_plan(state, recorded, session_port=None):
    """state=absent: delete Portcullis's own rules, put back the default incoming policy it replaced, and disable
    ufw when Portcullis enabled it (`recorded`: what the state file says it did). A rule of Portcullis's that opens
    `session_port` (this connection's) stays while ufw stays active: "kept" names it."""
    kept = []
    if session_port and (recorded.get("enabled_ufw") is not True or not state.active):
        kept = [rule for rule in opening_rules(state, session_port) if rule.ours and rule.source_network() is None]
    deleted = [rule for rule in state.rules if rule.ours and rule not in kept]
    commands = [rule.argv("delete") for rule in deleted]
    defaults = dict(state.defaults)
    before = recorded.get("input_policy_before")
    if before and before != state.input_policy:
        if before in VERBS:
            commands.append([UFW, "default", VERBS[before], "incoming"])
            defaults["DEFAULT_INPUT_POLICY"] = before
    active = state.active
    if recorded.get("enabled_ufw") and state.active:
        commands.append([UFW, "--force", "disable"])
        active = False
    final = UfwState(active, defaults, state.conf, [rule for rule in state.rules if rule not in deleted])
    return {"commands": commands, "after": final, "deleted": deleted, "kept": kept}


def move_plan(state, old_ports, port):
    """(transition commands, final commands, the rules moved) that move every incoming allow of an old TCP port to
    `port`: the copies first (the old ones still open), then the old ones deleted."""
    copies, moved = [], []
    present = set(rule.match_key() for rule in state.rules)
    for rule in state.rules:
        if not (rule.incoming and rule.opens and rule.protocol in ("tcp", "any") and not rule.dapp
                and rule.dport in [str(old) for old in old_ports]):
            continue
        copy = UfwRule(rule.family, rule.action, rule.protocol, str(port), rule.dst, rule.sport, rule.src,
                       rule.direction, interface_in=rule.interface_in, interface_out=rule.interface_out,
                       comment=rule.comment, logtype=rule.logtype)  # whose it was, the copy is: state=absent knows
        if copy.match_key() not in present:
            copies.append(copy.argv())
        moved.append(rule)
    return copies, [rule.argv("delete") for rule in moved], moved


def opening_rules(state, port, protocol="tcp"):
    """The incoming allow rules that open `port`."""
    return [rule for rule in state.rules if rule.incoming and rule.opens and rule.protocol in (protocol, "any")
            and any(low <= port <= high for low, high in rule.port_ranges())]


class Ufw:
    """ufw on one Host (module_utils/_host.py): read it, run its commands."""

    name = "ufw"

    def __init__(self, host, binary=UFW):
        self.host = host
        self.binary = binary

    def installed(self):
        return any(self.host.exists(path) for path in ("/usr/sbin/ufw", "/sbin/ufw"))

    def active(self):
        rc, out, _err = self.host.run([self.binary, "status"])
        return rc == 0 and parse_status(out)

    def read(self):
        """The UfwState, or UfwError when ufw is not installed."""
        if not self.installed():
            raise UfwError("ufw is not installed on this host (package ufw)")
        rules = (parse_rules(self.host.read(USER_RULES), "ipv4") + parse_rules(self.host.read(USER6_RULES), "ipv6"))
        return UfwState(self.active(), parse_defaults(self.host.read(UFW_DEFAULTS)),
                        parse_defaults(self.host.read(UFW_CONF)), rules)

    def check_ipv6(self, state):
        if state.defaults.get("IPV6", "yes").lower() != "yes":
            raise UfwError("ufw: IPV6=%s in %s, so ufw does not filter IPv6 and the allowlist could not be kept for "
                           "it; set IPV6=yes there (nothing was changed)" % (state.defaults.get("IPV6"), UFW_DEFAULTS))

    def run_all(self, commands, step):
        for argv in commands:
            self.host.check([self.binary] + argv[1:], step, UfwError)

    def undo_commands(self, state):
        """Live commands that put the restored files back into force: a reload when ufw was active, else disabling
        it again (the files say ENABLED=no, but the rules loaded by `ufw enable` are still live)."""
        if state.active:
            return [[self.binary, "reload"]]
        return [[self.binary, "--force", "disable"]]
