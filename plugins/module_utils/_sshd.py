# Copyright (c) Portcullis contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The sshd configuration, ssh.socket and SELinux text that moving SSH to another port reads and writes.

sshd reads /etc/ssh/sshd_config and, where an `Include` line says so, the files it names, in place of that
line. `Port` and `ListenAddress` accumulate (every line counts, in every file), unlike most keywords (the
first value wins). `Match` starts a block that lasts to the next `Match` or the end of the file; `Port` is
not allowed there. Under systemd socket activation (ssh.socket) sshd ignores `Port`: the socket unit's
`ListenStream=` lines decide.

plan_config() computes the edits that make sshd listen on given ports: the port lines go into a drop-in of
Portcullis's own when the main file includes one (else into a marked block of the main file, before the
first Match), and every other global `Port` line is commented out, so that no old port lingers and there is
no duplicate. `ListenAddress` lines are kept, unless they pin a port that is moved (then they are rewritten
without it) or listen_addresses replaces them.

Lines are what sshd takes them to be: text between "\n" characters (a "\r" before one, a form feed or a U+2028
inside a line are part of that line). The edits rewrite only the lines they change, each with its own line
ending; every other byte of a file stays as it was, a missing final newline included.

is_sshd_process() and sshd_listener() tell sshd's listening sockets from those of a program that only calls
itself sshd.

Private to the collection: pure functions, no AnsibleModule, no host.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import posixpath
import re
import shlex

from ansible_collections.portcullis.hardening.plugins.module_utils._host import PortcullisError

SSHD_CONFIG = "/etc/ssh/sshd_config"
SSHD_DIR = "/etc/ssh"
DROP_IN_NAME = "portcullis-ssh-port.conf"
SOCKET_DROP_IN = "/etc/systemd/system/ssh.socket.d/portcullis-ssh-port.conf"
OWNER = "portcullis.hardening.ssh_port"
BLOCK_BEGIN = "# BEGIN %s: the SSH port (managed, changes here are overwritten)" % OWNER
BLOCK_END = "# END %s" % OWNER
DISABLED = "# disabled by %s (the port is set in %%s): " % OWNER
# sshd stops following Include at this depth ("Too many recursive configuration includes").
MAX_INCLUDE_DEPTH = 16

# The blanks sshd strips: leading ones as it reads a file, trailing ones (and a form feed) as it parses a line;
# between keyword and arguments it takes these, or one "=" (servconf.c, misc.c strdelim()).
_LEADING_BLANKS = " \t\r"
_TRAILING_BLANKS = " \t\r\n\f"
_DIRECTIVE = re.compile(r"^([A-Za-z][A-Za-z0-9]*)(?:[ \t\r]*=[ \t\r]*|[ \t\r]+)(.*)$")
# systemd's Listen= property types and the socket directive that sets each.
LISTEN_DIRECTIVES = {
    "Stream": "ListenStream",
    "Datagram": "ListenDatagram",
    "SequentialPacket": "ListenSequentialPacket",
    "FIFO": "ListenFIFO",
    "Special": "ListenSpecial",
    "Netlink": "ListenNetlink",
    "MessageQueue": "ListenMessageQueue",
    "USBFunction": "ListenUSBFunction",
}


class SshdConfigError(PortcullisError, ValueError):
    """The configuration cannot be edited safely; the message names the file, the line and the problem."""


def config_lines(text):
    """A configuration text split into lines as sshd reads them (getline(): at "\n" only), each without its
    "\n" but with a "\r" before it; a final newline does not start another line."""
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    return lines


def join_lines(lines, original):
    """The text of config_lines() `lines`, ending in a newline unless `original` is a text that does not."""
    text = "\n".join(lines)
    if lines and (not original or original.endswith("\n")):
        text += "\n"
    return text


def _carriage_return(text):
    """"\r" when the text's lines end in "\r\n" (by its first line), else ""."""
    first = text.split("\n", 1)
    return "\r" if len(first) == 2 and first[0].endswith("\r") else ""


def _strip_blanks(line):
    return line.lstrip(_LEADING_BLANKS).rstrip(_TRAILING_BLANKS)


def directive(line):
    """(keyword in lower case, arguments text) of a configuration line, or None for a comment or blank."""
    stripped = _strip_blanks(line)
    if not stripped or stripped.startswith("#"):
        return None
    found = _DIRECTIVE.match(stripped)
    if not found:
        return (stripped.lower(), "")
    return found.group(1).lower(), found.group(2)


def _words(arguments):
    try:
        return shlex.split(arguments, comments=False)
    except ValueError:
        return arguments.split()


def parse_port(value, where):
    try:
        port = int(value)
    except ValueError:
        port = 0
    if not 1 <= port <= 65535:
        raise SshdConfigError("%s: Port %r is not a port number (1-65535)" % (where, value))
    return port


def split_listen_address(value):
    """`ListenAddress` arguments -> (address text, port or None, rest such as "rdomain X").

    Forms: `host`, `host:port`, `[host]:port`, a bare IPv6 address (no port), each optionally followed by
    `rdomain NAME`.
    """
    words = value.split()
    if not words:
        return "", None, ""
    first, rest = words[0], " ".join(words[1:])
    found = re.match(r"^\[([^\]]+)\](?::(\d+))?$", first)
    if found:
        return found.group(1), int(found.group(2)) if found.group(2) else None, rest
    if first.count(":") == 1:
        host, port = first.split(":")
        if port.isdigit():
            return host, int(port), rest
    return first, None, rest


def format_listen_address(address, port=None):
    """`ListenAddress` text for an address (and port): IPv6 in brackets when a port follows."""
    if port is None:
        return address
    return "[%s]:%d" % (address, port) if ":" in address else "%s:%d" % (address, port)


class Line:
    """A global `Port` or `ListenAddress` line: file, 0-based line number, keyword and arguments."""

    def __init__(self, path, number, keyword, arguments):
        self.path = path
        self.number = number
        self.keyword = keyword
        self.arguments = arguments

    def where(self):
        return "%s:%d" % (self.path, self.number + 1)


class Layout:
    """The configuration files as sshd reads them: the main file first, then each included file."""

    def __init__(self, main_path, texts, includes, order):
        self.main_path = main_path
        self.texts = texts  # path -> text
        self.includes = includes  # global Include patterns of the main file, absolute, in order
        self.order = order  # paths in the order sshd reads them

    def global_lines(self, keyword):
        """Global `keyword` lines (outside Match blocks) in the order sshd reads them."""
        found = []
        for path in self.order:
            for number, line in enumerate(config_lines(self.texts[path])):
                parsed = directive(line)
                if parsed is None:
                    continue
                if parsed[0] == "match":
                    break
                if parsed[0] == keyword:
                    found.append(Line(path, number, keyword, parsed[1]))
        return found

    def ports(self):
        """The ports the configuration sets (sshd's default 22 when no line sets one)."""
        ports = [parse_port(line.arguments.split()[0] if line.arguments else "", line.where())
                 for line in self.global_lines("port")]
        return sorted(set(ports)) or [22]

    def listen_addresses(self):
        return [(line,) + split_listen_address(line.arguments) for line in self.global_lines("listenaddress")]

    def drop_in_path(self):
        """Where the own drop-in goes: a file that a global Include of the main file reads, or None."""
        for pattern in self.includes:
            directory, name = posixpath.split(pattern)
            if any(char in directory for char in "*?["):
                continue
            if fnmatch.fnmatchcase(DROP_IN_NAME, name):
                return posixpath.join(directory, DROP_IN_NAME)
        return None


def include_patterns(text, base=SSHD_DIR):
    """Global `Include` patterns of a configuration text, made absolute (relative ones are in /etc/ssh)."""
    patterns = []
    for line in config_lines(text):
        parsed = directive(line)
        if parsed is None:
            continue
        if parsed[0] == "match":
            break
        if parsed[0] == "include":
            for word in _words(parsed[1]):
                path = word if posixpath.isabs(word) else posixpath.join(base, word)
                patterns.append(posixpath.normpath(path))
    return patterns


def read_layout(main_path, read, expand, base=SSHD_DIR):
    """The Layout of the configuration: read(path) -> text or None, expand(pattern) -> sorted paths.

    Included files are read where their Include line is, recursively (at most MAX_INCLUDE_DEPTH deep), as
    sshd does.
    """
    main_text = read(main_path)
    if main_text is None:
        raise SshdConfigError("%s does not exist: is openssh-server installed?" % main_path)
    texts = {main_path: main_text}
    order = []

    def visit(path, text, depth):
        if depth > MAX_INCLUDE_DEPTH:
            raise SshdConfigError("%s: Include nested deeper than %d levels" % (path, MAX_INCLUDE_DEPTH))
        order.append(path)
        for pattern in include_patterns(text, base):
            for included in expand(pattern):
                if included in texts:
                    continue
                included_text = read(included)
                if included_text is None:
                    continue
                texts[included] = included_text
                visit(included, included_text, depth + 1)

    visit(main_path, main_text, 0)
    return Layout(main_path, texts, include_patterns(main_text, base), order)


def block_text(ports, addresses):
    lines = ["Port %d" % port for port in sorted(ports)]
    lines.extend("ListenAddress %s" % address for address in addresses)
    return lines


def _block_range(lines):
    """(index of BLOCK_BEGIN, index of BLOCK_END) of the own marked block, or None."""
    bare = [line.rstrip("\r") for line in lines]
    try:
        begin = bare.index(BLOCK_BEGIN)
        return begin, bare.index(BLOCK_END, begin)
    except ValueError:
        return None


def _strip_block(lines):
    """Lines without the own marked block: (lines, index where the block was or None)."""
    found = _block_range(lines)
    if found is None:
        return lines, None
    begin, end = found
    return lines[:begin] + lines[end + 1:], begin


def _first_match(lines):
    for number, line in enumerate(lines):
        parsed = directive(line)
        if parsed is not None and parsed[0] == "match":
            return number
    return len(lines)


def plan_config(layout, ports, listen_addresses=None, moved_ports=()):
    """The edits that make sshd listen on `ports`: {path: new text, or None to delete the file}.

    listen_addresses: replace every ListenAddress with these (addresses without ports), or None to keep them.
    moved_ports: ports being moved away; a ListenAddress that pins one of them is rewritten without its port.
    Only files whose text changes are in the answer; an empty answer means there is nothing to do.
    """
    drop_in = layout.drop_in_path()
    target = drop_in or layout.main_path
    addresses = []
    disable = {}  # path -> set of line numbers to comment out
    own_block = None if drop_in else _block_range(config_lines(layout.texts[layout.main_path]))

    def own(line):
        """Whether plan_config wrote the line: it is in the own drop-in, or in the own block of the main file."""
        if drop_in:
            return line.path == drop_in
        return line.path == layout.main_path and own_block is not None and own_block[0] < line.number < own_block[1]

    def comment_out(line):
        disable.setdefault(line.path, set()).add(line.number)

    for line in layout.global_lines("port"):
        if line.path != drop_in:
            comment_out(line)
    for line, address, port, rest in layout.listen_addresses():
        if own(line):
            continue
        if listen_addresses is not None:
            comment_out(line)
        elif port is not None and port in moved_ports:
            comment_out(line)
            addresses.append(" ".join(filter(None, [format_listen_address(address), rest])))
    if listen_addresses is not None:
        addresses = [str(address) for address in listen_addresses]
    else:
        # Addresses the own drop-in (or block) already holds stay, unless they were only there for the ports moved.
        for line, address, port, rest in layout.listen_addresses():
            if own(line):
                addresses.append(" ".join(filter(None, [format_listen_address(address, port), rest])))
    seen = set()
    addresses = [address for address in addresses if not (address in seen or seen.add(address))]
    block = block_text(ports, addresses)

    edits = {}
    for path in layout.order:
        old = layout.texts[path]
        lines = config_lines(old)
        carriage_return = _carriage_return(old)
        unterminated = old and not old.endswith("\n")
        if unterminated:  # as if the last line ended like the others, for a block appended after it
            lines[-1] += carriage_return
        for number in sorted(disable.get(path, ())):
            ending = "\r" if lines[number].endswith("\r") else ""
            lines[number] = (DISABLED % target) + _strip_blanks(lines[number]) + ending
        if path == layout.main_path and target == layout.main_path:
            lines, position = _strip_block(lines)
            if position is None:
                position = _first_match(lines)
            lines[position:position] = [line + carriage_return for line in [BLOCK_BEGIN] + block + [BLOCK_END]]
        new = join_lines(lines, old)
        if unterminated and carriage_return and new.endswith(carriage_return):
            new = new[:-len(carriage_return)]
        if path != drop_in and new != old:
            edits[path] = new
    if drop_in:
        new = "# Managed by %s: the port(s) sshd listens on. Changes here are overwritten.\n" % OWNER
        new += "\n".join(block) + "\n"
        if layout.texts.get(drop_in) != new:
            edits[drop_in] = new
    return edits


def apply_edits(layout, edits):
    """The Layout as it will be once `edits` are written (to compute ports and addresses afterwards)."""
    texts = dict(layout.texts)
    order = list(layout.order)
    for path, text in edits.items():
        if text is None:
            texts.pop(path, None)
            order = [item for item in order if item != path]
        else:
            if path not in texts:
                order.append(path)
            texts[path] = text
    return Layout(layout.main_path, texts, layout.includes, order)


# --- ssh.socket ---------------------------------------------------------------------------------

def parse_listen_property(text):
    """`systemctl show -p Listen` lines -> [(address, type)], e.g. ("[::]:22", "Stream")."""
    found = []
    for line in text.splitlines():
        match = re.match(r"^Listen=(.+) \(([A-Za-z]+)\)$", line.strip())
        if match:
            found.append((match.group(1), match.group(2)))
    return found


def stream_port(address):
    """The port of a Stream listen address ("[::]:22", "0.0.0.0:22", "22"), or None (a path, vsock...)."""
    found = re.match(r"^(?:\[[^\]]*\]:|[0-9.]+:)?(\d+)$", address)
    return int(found.group(1)) if found else None


def _with_port(address, port):
    found = re.match(r"^(\[[^\]]*\]:|[0-9.]+:)?\d+$", address)
    return "%s%d" % (found.group(1) or "", port)


def socket_listens(listens, ports, moved_ports, listen_addresses=None):
    """The socket's listen entries once it listens on `ports`: [(address, type)].

    Stream entries on a moved port become one entry per port (same address); other entries stay.
    listen_addresses replaces the moved entries, and those on `ports`, with one per address and port.
    """
    result = []
    if listen_addresses is not None:
        moved_ports = set(moved_ports) | set(ports)
    moved = [address for address, kind in listens if kind == "Stream" and stream_port(address) in moved_ports]
    if listen_addresses is not None:
        moved_entries = [(format_listen_address(str(address), port), "Stream")
                         for address in listen_addresses for port in sorted(ports)]
    else:
        moved_entries = []
        for address in moved:
            for port in sorted(ports):
                entry = (_with_port(address, port), "Stream")
                if entry not in moved_entries:
                    moved_entries.append(entry)
    placed = False
    for address, kind in listens:
        if kind == "Stream" and stream_port(address) in moved_ports:
            if not placed:
                result.extend(moved_entries)
                placed = True
            continue
        if (address, kind) not in result:
            result.append((address, kind))
    if not placed:
        result.extend(moved_entries)
    return result


def socket_drop_in(listens, header=None):
    """A socket unit drop-in text: reset the inherited listen entries (an empty assignment), then ours."""
    header = header or ("# Managed by %s: the port(s) ssh.socket listens on (under socket activation sshd ignores "
                        "Port)." % OWNER)
    lines = [header, "# Changes here are overwritten.", "[Socket]", "ListenStream="]
    for address, kind in listens:
        directive_name = LISTEN_DIRECTIVES.get(kind)
        if directive_name is None:
            raise SshdConfigError("ssh.socket listens on %s (%s), a kind Portcullis cannot write back"
                                  % (address, kind))
        lines.append("%s=%s" % (directive_name, address))
    return "\n".join(lines) + "\n"


# --- which listener is sshd's ------------------------------------------------------------------

# The units that run sshd: ssh.service (Debian, Ubuntu), sshd.service (Fedora, RHEL, Arch, SUSE). Not the
# socket units: under socket activation sshd runs in the service the socket starts (only a socket's own
# Exec*= commands run in its cgroup).
SSHD_SERVICE_UNITS = ("ssh.service", "sshd.service")
# The program that holds sshd's listening sockets, as /proc/<pid>/exe names it (the kernel resolves links:
# /usr/bin/sshd where /usr/sbin links to /usr/bin, as on Arch and Fedora 42+). Since OpenSSH 9.8 connections
# run in sshd-session (and sshd-auth), which never hold them: the listener's child closes them before it
# executes sshd-session, so they are not here.
SSHD_EXECUTABLES = ("/usr/sbin/sshd", "/usr/bin/sshd")
SYSTEMD_EXECUTABLES = ("/usr/lib/systemd/systemd", "/lib/systemd/systemd")


def is_sshd_process(process, service_units=SSHD_SERVICE_UNITS, executables=SSHD_EXECUTABLES):
    """Whether a process (a describe_process() dict) is the system's sshd: it runs as root (real uid 0), from
    one of `executables`, in one of the systemd `service_units`.

    Its name is no evidence: any user can run a program called sshd. The unit is required too: an sshd started
    by hand, from a login session, is not the one the service's configuration describes, and Debian, Ubuntu
    and RHEL all run sshd under systemd. An executable replaced by an upgrade since sshd started still counts
    (only root can replace it). Needs privileges: without them exe is None for root's processes.
    """
    return (process.get("uid") == 0 and process.get("exe") in executables
            and process.get("unit") in service_units)


def is_systemd_manager(process):
    """Whether a process is the system's service manager (pid 1 systemd, as root): it holds the listening
    sockets of socket units. A user's systemd (systemd --user) can hold sockets too, but is not pid 1."""
    return process.get("pid") == 1 and process.get("uid") == 0 and process.get("exe") in SYSTEMD_EXECUTABLES


def sshd_listener(listener, socket_ports=(), service_units=SSHD_SERVICE_UNITS, executables=SSHD_EXECUTABLES):
    """Whether a listener (a discover() dict) is sshd's: every process that holds the socket is sshd
    (is_sshd_process()), or, when the port is one of ssh.socket's (`socket_ports`, under socket activation),
    the service manager (is_systemd_manager()), which holds the socket alone until the first connection starts
    sshd and together with it afterwards.

    A socket that no process is seen to hold, or that another process holds too, is not sshd's.
    """
    processes = listener["processes"]
    if not processes:
        return False
    for process in processes:
        if is_sshd_process(process, service_units, executables):
            continue
        if listener["port"] in socket_ports and is_systemd_manager(process):
            continue
        return False
    return True


# --- SELinux ------------------------------------------------------------------------------------

def selinux_mode(enforce_text):
    """"enforcing", "permissive" or "disabled" from /sys/fs/selinux/enforce (None when it does not exist)."""
    if enforce_text is None:
        return "disabled"
    return "enforcing" if enforce_text.strip() == "1" else "permissive"


def parse_semanage_ports(text):
    """`semanage port -l -n` output -> [(type, protocol, low, high)]."""
    records = []
    for line in text.splitlines():
        parts = line.split(None, 2)
        if len(parts) < 3 or parts[1] not in ("tcp", "udp", "sctp", "dccp"):
            continue
        for item in parts[2].split(","):
            item = item.strip()
            if not item:
                continue
            low, _sep, high = item.partition("-")
            try:
                records.append((parts[0], parts[1], int(low), int(high or low)))
            except ValueError:
                continue
    return records


def port_type(records, port, protocol="tcp"):
    """The SELinux type of a port: the narrowest range that holds it, as the policy resolves it."""
    best = None
    for kind, proto, low, high in records:
        if proto == protocol and low <= port <= high and (best is None or high - low < best[1]):
            best = (kind, high - low)
    return best[0] if best else None


def has_own_record(records, port, protocol="tcp"):
    """Whether `port` has a record of its own (not only a range that holds it): only then can -m change it."""
    return any(proto == protocol and low == high == port for _kind, proto, low, high in records)


def selinux_commands(port, current_type, wanted="ssh_port_t", own_record=True):
    """(commands that label `port` with `wanted`, commands that undo them): argument lists for semanage.

    A port with a record of its own is modified (-m); one covered only by a range (unreserved_port_t
    1024-32767, say) or by nothing gets a record added (-a), which semanage refuses to modify.
    """
    if current_type == wanted:
        return [], []
    if current_type is None or not own_record:
        return ([["semanage", "port", "-a", "-t", wanted, "-p", "tcp", str(port)]],
                [["semanage", "port", "-d", "-t", wanted, "-p", "tcp", str(port)]])
    return ([["semanage", "port", "-m", "-t", wanted, "-p", "tcp", str(port)]],
            [["semanage", "port", "-m", "-t", current_type, "-p", "tcp", str(port)]])


# --- the kernel ---------------------------------------------------------------------------------

def parse_port_range(text):
    """/proc/sys/net/ipv4/ip_local_port_range -> (low, high), or None when unreadable."""
    try:
        low, high = (int(word) for word in (text or "").split())
    except ValueError:
        return None
    return low, high


def parse_addresses(values, name="listen_addresses"):
    """Validate listen addresses (IP addresses, no ports): the ipaddress objects, or SshdConfigError."""
    addresses = []
    for index, value in enumerate(values):
        try:
            addresses.append(ipaddress.ip_address(str(value).strip("[]")))
        except ValueError:
            raise SshdConfigError("%s[%d]: %r is not an IPv4 or IPv6 address (write ports in port, not here)"
                                  % (name, index, value))
    return addresses
