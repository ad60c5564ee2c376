# Copyright (c) Portcullis contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The firewalld backend: read the zones with firewall-cmd, plan the allowlist in firewalld's words, apply it to
the runtime and the permanent configuration alike.

Portcullis manages the default zone and every active zone (one an interface or a source is bound to), except
zones whose target is ACCEPT (trusted, or a container runtime's zone): those let everything in by design, and are
named in a warning. In a managed zone the allowlist becomes ports (an entry for every address) and rich rules (an
entry limited to a family or to sources); ports, services, protocols, source ports and accepting rich rules the
allowlist does not cover are removed. The zones' targets, ICMP handling, the `dhcpv6-client` service, forward
ports and masquerading stay as they are. Private to the collection.
"""

from __future__ import annotations

import ipaddress
import shlex

from ansible_collections.portcullis.hardening.plugins.module_utils._allowlist import Opening, opening_covered
from ansible_collections.portcullis.hardening.plugins.module_utils._host import PortcullisError

FIREWALL_CMD = "firewall-cmd"
ZONES_DIR = "/etc/firewalld/zones"
# Services kept whatever the allowlist says: what a host needs to get its own IPv6 address (as the nftables
# backend's DHCPv6 client rule).
KEPT_SERVICES = ("dhcpv6-client",)
# The zone elements Portcullis manages, as firewall-cmd names them (--add-X / --remove-X / --list-all key).
ELEMENTS = (("port", "ports"), ("service", "services"), ("rich-rule", "rich rules"), ("protocol", "protocols"),
            ("source-port", "source-ports"))
OPEN_TARGETS = ("ACCEPT",)


class FirewalldError(PortcullisError):
    """firewalld cannot be read or changed; the message says what and what the host is in."""


def parse_list_all(text):
    """`firewall-cmd --list-all` of one zone as {key: [values]} (and "zone": its name); rich rules and forward
    ports are one value per line, the rest space-separated."""
    zone = {}
    key = None
    for line in (text or "").splitlines():
        if not line.strip():
            continue
        if not line.startswith((" ", "\t")):
            zone["zone"] = [line.split()[0]]
            continue
        if line.startswith("\t") or line.startswith("        "):
            if key is not None:
                zone.setdefault(key, []).append(line.strip())
            continue
        key, _sep, value = line.strip().partition(":")
        value = value.strip()
        if key in ("rich rules", "forward-ports"):
            zone[key] = [value] if value else []
        else:
            zone[key] = value.split()
    return zone


def parse_active_zones(text):
    """`firewall-cmd --get-active-zones`: {zone: {"interfaces": [...], "sources": [...]}}."""
    zones = {}
    current = None
    for line in (text or "").splitlines():
        if not line.strip():
            continue
        if not line.startswith((" ", "\t")):
            current = line.split()[0]
            zones[current] = {"interfaces": [], "sources": []}
        elif current is not None:
            key, _sep, value = line.strip().partition(":")
            zones[current].setdefault(key.strip(), []).extend(value.split())
    return zones


def parse_service(text):
    """`firewall-cmd --info-service=NAME`: {"ports": [...], "protocols": [...], "source-ports": [...],
    "destination": [...]} (each a list of words)."""
    info = {}
    for line in (text or "").splitlines()[1:]:
        key, _sep, value = line.strip().partition(":")
        info[key.strip()] = value.split()
    return info


def _port_range(text):
    """"22" or "6000-6010" as (low, high)."""
    low, _sep, high = text.partition("-")
    return int(low), int(high or low)


def port_element(opening):
    return "%s/%s" % (opening.port_text(), opening.protocol)


def element_text(zone, kind, value):
    """One element of a zone, in words: `zone public: service ssh`."""
    return "zone %s: %s %s" % (zone, kind, value)


class RichRule:
    """The parts of a rich rule Portcullis reasons about; anything else makes it a rule of another kind."""

    __slots__ = ("text", "family", "source", "source_other", "element", "element_args", "action")

    def __init__(self, text):
        self.text = text
        self.family = None
        self.source = None
        self.source_other = False  # NOT, an ipset or a MAC: not a network the allowlist can name
        self.element = None
        self.element_args = {}
        self.action = None
        try:
            words = shlex.split(text)
        except ValueError:
            words = []
        index = 0
        while index < len(words):
            word = words[index]
            key, _sep, value = word.partition("=")
            if word == "rule":
                pass
            elif key == "family":
                self.family = value
            elif word == "source":
                index, args = self._args(words, index + 1)
                if "NOT" in args or "ipset" in args or "mac" in args or "address" not in args:
                    self.source_other = True
                else:
                    try:
                        self.source = ipaddress.ip_network(args["address"], strict=False)
                    except ValueError:
                        self.source_other = True
                continue
            elif word == "destination":
                index, _args = self._args(words, index + 1)
                continue
            elif word in ("port", "service", "protocol", "icmp-block", "icmp-type", "forward-port", "source-port",
                          "masquerade", "tcp-mss-clamp"):
                self.element = word
                index, self.element_args = self._args(words, index + 1)
                continue
            elif word in ("log", "audit", "nflog"):
                index, _args = self._args(words, index + 1)
                continue
            elif word in ("accept", "reject", "drop", "mark"):
                self.action = word
                index, _args = self._args(words, index + 1)
                continue
            index += 1

    @staticmethod
    def _args(words, index):
        args = {}
        while index < len(words) and ("=" in words[index] or words[index] == "NOT"):
            key, _sep, value = words[index].partition("=")
            args[key] = value if _sep else True
            index += 1
        return index, args

    def key(self):
        """What makes two accepting port rules the same (firewalld may print an address differently)."""
        return (self.family, str(self.source) if self.source else None, self.source_other, self.element,
                tuple(sorted(self.element_args.items())), self.action)


def rich_rule_text(opening):
    """The rich rule of an opening limited to a family or to a source, as firewalld prints it."""
    parts = ['rule family="%s"' % (opening.family if opening.source is None else "ipv%d" % opening.source.version)]
    if opening.source is not None:
        parts.append('source address="%s"' % opening.source)
    parts.append('port port="%s" protocol="%s"' % (opening.port_text(), opening.protocol))
    parts.append("accept")
    return " ".join(parts)


def _service_openings(name, services, depth):
    """What a service lets in (its ports, and those of the services it includes), or None."""
    info = services.get(name)
    if info is None or info.get("protocols") or info.get("source-ports") or depth > 5:
        return None
    families = sorted(set(item.partition(":")[0] for item in info.get("destination", []))) or ["any"]
    openings = []
    for port_text in info.get("ports", []):
        port, _sep, protocol = port_text.partition("/")
        low, high = _port_range(port)
        openings += [Opening(protocol, low, high, family) for family in families]
    for included in info.get("includes", []):
        inner = _service_openings(included, services, depth + 1)
        if inner is None:
            return None
        openings += inner
    return openings or None


def element_openings(kind, value, services):
    """What one element of a zone lets in, as [Opening]; None when it lets in something the allowlist cannot name
    (a protocol, a source port, a rich rule accepting a whole source); [] when it accepts nothing (a drop, an ICMP
    block, a forward port: not an opening of the input chain)."""
    if kind == "port":
        port, _sep, protocol = value.partition("/")
        low, high = _port_range(port)
        return [Opening(protocol, low, high, "any")]
    if kind == "service":
        return _service_openings(value, services, depth=0)
    if kind in ("protocol", "source-port"):
        return None
    rule = RichRule(value)
    if rule.action != "accept" or rule.element in ("icmp-block", "icmp-type", "forward-port", "masquerade",
                                                   "tcp-mss-clamp"):
        return []
    if rule.source_other or rule.element not in ("port", "service"):
        return None
    if rule.element == "service":
        inner = element_openings("service", rule.element_args.get("name"), services)
        if inner is None:
            return None
        return [Opening(item.protocol, item.low, item.high, rule.family or item.family, rule.source)
                for item in inner]
    low, high = _port_range(str(rule.element_args.get("port", "")) or "0")
    return [Opening(rule.element_args.get("protocol", ""), low, high, rule.family or "any", rule.source)]


def element_opens(kind, value, services, port, protocol="tcp"):
    """Whether one element of a zone lets in `port` (from some source, for some family at least)."""
    return any(item.protocol == protocol and item.low <= port <= item.high
               for item in element_openings(kind, value, services) or [])


def element_covered(kind, value, services, openings):
    if kind == "service" and value in KEPT_SERVICES:
        return True
    inner = element_openings(kind, value, services)
    if inner is None:
        return False
    return all(opening_covered(openings, item.protocol, item.low, item.high, item.family, item.source)
               for item in inner)


def zone_elements(listing):
    """{kind: [values]} of the managed elements of a parsed --list-all."""
    return dict((kind, list(listing.get(key, []))) for kind, key in ELEMENTS)


def plan_zone(elements, openings, services):
    """(adds, removes) for one zone's elements ({kind: [values]}): [(kind, value)] each. A wanted opening already
    let in by an element that stays (the `ssh` service for 22/tcp) adds nothing."""
    removes = []
    staying = []
    for kind, _key in ELEMENTS:
        for value in elements.get(kind, []):
            if element_covered(kind, value, services, openings):
                staying += element_openings(kind, value, services) or []
            else:
                removes.append((kind, value))
    adds = []
    present_rich = set(RichRule(value).key() for value in elements.get("rich-rule", []))
    for opening in openings:
        if opening_covered(staying, opening.protocol, opening.low, opening.high, opening.family, opening.source):
            continue
        if opening.family == "any" and opening.source is None:
            item = ("port", port_element(opening))
            if item[1] in elements.get("port", []):
                continue
        else:
            item = ("rich-rule", rich_rule_text(opening))
            if RichRule(item[1]).key() in present_rich:
                continue
        if item not in adds:
            adds.append(item)
    return adds, removes


def apply_elements(elements, adds, removes):
    """The elements after the adds and the removes."""
    after = dict((kind, list(values)) for kind, values in elements.items())
    for kind, value in removes:
        if value in after.get(kind, []):
            after[kind].remove(value)
    for kind, value in adds:
        if value not in after.setdefault(kind, []):
            after[kind].append(value)
    return after


def zone_text(zone, where, target, elements):
    """One zone's managed elements in firewalld's words (as --list-all prints them)."""
    lines = ["%s (%s)" % (zone, where), "  target: %s" % target]
    for kind, key in ELEMENTS:
        if kind == "rich-rule":
            lines.append("  rich rules:")
            lines += ["\t%s" % value for value in elements.get(kind, [])]
        else:
            lines.append("  %s: %s" % (key, " ".join(elements.get(kind, []))))
    return "\n".join(lines) + "\n"


def commands(zone, adds, removes, permanent):
    """firewall-cmd argument lists for one zone: the adds first, then the removes, one call per element kind
    (firewall-cmd takes one kind of change per call)."""
    argvs = []
    for verb, items in (("add", adds), ("remove", removes)):
        for kind, _key in ELEMENTS:
            values = [value for item_kind, value in items if item_kind == kind]
            if values:
                argvs.append([FIREWALL_CMD] + ["--permanent"] * permanent + ["--zone=%s" % zone]
                             + ["--%s-%s=%s" % (verb, kind, value) for value in values])
    return argvs


def inverse(argvs):
    """The runtime commands that undo `argvs` (run in reverse order)."""
    undo = []
    for argv in reversed(argvs):
        flipped = []
        for word in argv:
            if word.startswith("--add-"):
                word = "--remove-" + word[len("--add-"):]
            elif word.startswith("--remove-"):
                word = "--add-" + word[len("--remove-"):]
            flipped.append(word)
        undo.append(flipped)
    return undo


def move_elements(elements, services, old_ports, port):
    """(adds for the transition, removes for the final step) that move what opens an old TCP port in one zone to
    `port`: a port element, a service made of that port only (`ssh`: the new port as a port element), or a rich
    rule for the port."""
    adds, removes = [], []
    old = ["%d/tcp" % item for item in old_ports]
    for value in elements.get("port", []):
        if value in old:
            adds.append(("port", "%d/tcp" % port))
            removes.append(("port", value))
    for value in elements.get("service", []):
        ports = (services.get(value) or {}).get("ports")
        if ports and all(item in old for item in ports):
            if ("port", "%d/tcp" % port) not in adds:
                adds.append(("port", "%d/tcp" % port))
            removes.append(("service", value))
    for value in elements.get("rich-rule", []):
        rule = RichRule(value)
        if (rule.action == "accept" and rule.element == "port" and rule.element_args.get("protocol") == "tcp"
                and str(rule.element_args.get("port")) in [str(item) for item in old_ports]):
            adds.append(("rich-rule", value.replace('port="%s"' % rule.element_args["port"], 'port="%d"' % port, 1)))
            removes.append(("rich-rule", value))
    return adds, removes


class Firewalld:
    """firewalld on one Host (module_utils/_host.py), through firewall-cmd."""

    name = "firewalld"

    def __init__(self, host, binary=FIREWALL_CMD):
        self.host = host
        self.binary = binary

    def cmd(self, args, step, permanent=False):
        argv = [self.binary] + (["--permanent"] if permanent else []) + list(args)
        return self.host.check(argv, step, FirewalldError)

    def running(self):
        rc, out, _err = self.host.run([self.binary, "--state"])
        return rc == 0 and out.strip() == "running"

    def service(self, name, cache):
        """The service's definition (and those it includes) into `cache`."""
        if name not in cache:
            rc, out, _err = self.host.run([self.binary, "--info-service=%s" % name])
            cache[name] = parse_service(out) if rc == 0 else None
            for included in (cache[name] or {}).get("includes", []):
                self.service(included, cache)
        return cache[name]

    def read(self):
        """{"default": zone, "zones": {zone: {"runtime": listing, "permanent": listing, "bindings": {...}}},
        "services": {name: info}} for the default zone and the active zones."""
        if not self.running():
            raise FirewalldError("firewalld is not running (firewall-cmd --state); start it first "
                                 "(systemctl enable --now firewalld) or choose another backend")
        default = self.cmd(["--get-default-zone"], "reading the default zone").strip()
        active = parse_active_zones(self.cmd(["--get-active-zones"], "reading the active zones"))
        names = [default] + sorted(name for name in active if name != default)
        zones = {}
        services = {}
        for name in names:
            runtime = parse_list_all(self.cmd(["--zone=%s" % name, "--list-all"], "reading zone %s" % name))
            permanent = parse_list_all(self.cmd(["--zone=%s" % name, "--list-all"], "reading zone %s (permanent)"
                                                % name, permanent=True))
            zones[name] = {"runtime": runtime, "permanent": permanent,
                           "bindings": active.get(name, {"interfaces": [], "sources": []})}
            for listing in (runtime, permanent):
                for value in listing.get("services", []):
                    self.service(value, services)
                for value in listing.get("rich rules", []):
                    rule = RichRule(value)
                    if rule.element == "service" and rule.element_args.get("name"):
                        self.service(rule.element_args["name"], services)
        return {"default": default, "zones": zones, "services": services}

    def run_all(self, argvs, step):
        for argv in argvs:
            self.host.check([self.binary] + argv[1:], step, FirewalldError)


def target_of(listing):
    return (listing.get("target") or ["default"])[0]


def managed_zones(state):
    """(managed zone names, warnings): the default zone and the active ones, without those that accept
    everything (target ACCEPT). A default zone that accepts everything is an error: nothing could be closed."""
    managed, warnings = [], []
    for name, zone in state["zones"].items():
        target = target_of(zone["runtime"])
        if target in OPEN_TARGETS:
            if name == state["default"]:
                raise FirewalldError("firewalld's default zone %s has target %s: it lets everything in, so no "
                                     "allowlist could be enforced there; make another zone the default "
                                     "(firewall-cmd --set-default-zone=public) and run again (nothing was changed)"
                                     % (name, target))
            bound = zone["bindings"].get("interfaces", []) + zone["bindings"].get("sources", [])
            warnings.append("firewalld zone %s (target %s) lets everything in from %s; Portcullis leaves it as it is"
                            % (name, target, ", ".join(bound) or "what is bound to it"))
            continue
        managed.append(name)
    return managed, warnings


def target_warnings(state, zones, policy):
    """The managed zones whose target answers otherwise than `policy` says: Portcullis leaves a zone's target as it
    is (changing it needs a reload, which drops the runtime rules of other tools), so it says so."""
    wanted = {"drop": ("DROP",), "reject": ("default", "%%REJECT%%")}[policy]
    found = []
    for name in zones:
        target = target_of(state["zones"][name]["runtime"])
        if target not in wanted:
            found.append("policy: %s, but firewalld zone %s has target %s, which %s what nothing allows; Portcullis "
                         "keeps a zone's target (firewall-cmd --permanent --zone=%s --set-target=%s, then --reload, "
                         "changes it)" % (policy, name, target, "rejects" if target != "DROP" else "drops", name,
                                          "DROP" if policy == "drop" else "default"))
    return found


def plan(state, openings, persist):
    """What makes every managed zone enforce the openings, in runtime (and, with `persist`, the permanent
    configuration): {"zones": [names], "commands": [argv], "undo": [runtime argv], "before": text, "after": text,
    "added": {zone: [[kind, value]]}, "removed": {zone: [[kind, value]]}, "warnings": [...]}."""
    zones, warnings = managed_zones(state)
    result = {"zones": zones, "commands": [], "undo": [], "before": "", "after": "", "added": {}, "removed": {},
              "warnings": warnings}
    runtime_commands = []
    for name in zones:
        zone = state["zones"][name]
        for where in ("runtime", "permanent"):
            listing = zone[where]
            elements = zone_elements(listing)
            adds, removes = plan_zone(elements, openings, state["services"])
            if where == "permanent" and not persist:
                adds, removes = [], []
            argvs = commands(name, adds, removes, where == "permanent")
            result["commands"] += argvs
            if where == "runtime":
                runtime_commands += argvs
                result["added"][name] = [list(item) for item in adds]
                result["removed"][name] = [list(item) for item in removes]
            target = target_of(listing)
            result["before"] += zone_text(name, where, target, elements)
            result["after"] += zone_text(name, where, target, apply_elements(elements, adds, removes))
    result["undo"] = inverse(runtime_commands)
    return result


def removal_plan(state, recorded, session_port=None):
    """state=absent: remove what Portcullis added (the state file's record), from runtime and permanent, where it
    is still there; nothing else. An element that opens `session_port` (this connection's) to everyone stays:
    "kept" names it."""
    result = {"commands": [], "undo": [], "before": "", "after": "", "kept": [], "removed": []}
    for name, items in sorted(recorded.items()):
        zone = state["zones"].get(name)
        if zone is None:
            continue
        keep = [(kind, value) for kind, value in items if session_port and kind == "port"
                and element_opens(kind, value, state["services"], session_port)]
        result["kept"] += [element_text(name, kind, value) for kind, value in keep]
        for where in ("runtime", "permanent"):
            elements = zone_elements(zone[where])
            removes = [(kind, value) for kind, value in items if value in elements.get(kind, [])
                       and (kind, value) not in keep]
            result["commands"] += commands(name, [], removes, where == "permanent")
            if where == "runtime":
                result["removed"] += [element_text(name, kind, value) for kind, value in removes]
            target = target_of(zone[where])
            result["before"] += zone_text(name, where, target, elements)
            result["after"] += zone_text(name, where, target, apply_elements(elements, [], removes))
    result["undo"] = inverse([argv for argv in result["commands"] if "--permanent" not in argv])
    return result


def record_added(previous, plan_result):
    """What Portcullis added and still has, per zone, after applying `plan_result` on top of `previous`."""
    record = {}
    for name in plan_result["zones"]:
        removed = [list(item) for item in plan_result["removed"].get(name, [])]
        items = [item for item in previous.get(name, []) if list(item) not in removed]
        for item in plan_result["added"].get(name, []):
            if item not in items:
                items.append(item)
        if items:
            record[name] = items
    return record


def move_plan(state, old_ports, port):
    """What moves every opening of an old TCP port to `port` in the managed zones, runtime and permanent alike:
    {"transition": [argv], "final": [argv], "undo": [runtime argv], "moved": [(zone, kind, value)] (runtime),
    "before": the runtime zones in firewalld's words}."""
    zones, _warnings = managed_zones(state)
    result = {"transition": [], "final": [], "undo": [], "moved": [], "before": ""}
    runtime = []
    for name in zones:
        for where in ("runtime", "permanent"):
            elements = zone_elements(state["zones"][name][where])
            adds, removes = move_elements(elements, state["services"], old_ports, port)
            permanent = where == "permanent"
            adds_argv = commands(name, adds, [], permanent)
            removes_argv = commands(name, [], removes, permanent)
            result["transition"] += adds_argv
            result["final"] += removes_argv
            if not permanent:
                runtime += adds_argv + removes_argv
                result["moved"] += [(name, kind, value) for kind, value in removes]
                result["before"] += zone_text(name, where, target_of(state["zones"][name][where]), elements)
    result["undo"] = inverse(runtime)
    return result


def opening_elements(state, port, protocol="tcp"):
    """The runtime elements of the managed zones that open `port`: [(zone, kind, value)]."""
    zones, _warnings = managed_zones(state)
    return [(name, kind, value) for name in zones for kind, _key in ELEMENTS
            for value in zone_elements(state["zones"][name]["runtime"]).get(kind, [])
            if element_opens(kind, value, state["services"], port, protocol)]


def zone_files(zones):
    """The permanent files of the zones a change may write (firewalld creates them on the first change)."""
    return ["%s/%s.xml" % (ZONES_DIR, name) for name in zones]
