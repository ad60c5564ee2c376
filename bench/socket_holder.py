# Copyright (c) Portcullis contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Open many listening sockets, say which, then hold them until killed.

Run inside the benchmark's network namespace (bench/netns.py starts it with `ip netns exec`):

    python3 bench/socket_holder.py --count 1000 --mix tcp4=40,tcp6=30,udp4=15,udp6=15 --special

When every socket is open it writes one JSON line on stdout, {"ready": true, "pid": ..., "sockets": [...],
"not_listening": [...]}: each listening socket with its protocol, family, address, port and the pids holding
it (the ground truth the benchmark checks the modules against). Then it sleeps until SIGTERM or SIGINT, and
takes the helper processes it forked with it.

Port ranges, one per kind, so no two sockets can conflict: tcp4 10000+, tcp6 20000+, udp4 30000+, udp6
40000+ (at most 10,000 of each), the special cases 50000+. The benchmark moves the namespace's ephemeral
ports out of the way (61000-61999).

--special adds the cases that tell discovery tools apart, each a handful of sockets:
  - a TCP socket shared by two processes (a pre-forking server): both pids hold it;
  - sockets opened by a process running as another user (--special-user, default nobody);
  - an IPv4-mapped IPv6 bind (::ffff:127.0.0.1), a link-local bind (fe80::1234 on lo) and binds to a long
    global IPv6 address (--long-v6), all of which the namespace must carry (bench/netns.py adds them);
  - two SO_REUSEPORT sockets on one address and port in one process;
  - IPv6 wildcard sockets with and without IPV6_V6ONLY (the bulk alternates them too);
  - sockets that do not listen and must not be listed: a connected UDP socket and both ends of an
    established TCP connection (reported under "not_listening").
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import pwd
import resource
import signal
import socket
import sys
import time

KINDS = ("tcp4", "tcp6", "udp4", "udp6")
PORT_BASE = {"tcp4": 10000, "tcp6": 20000, "udp4": 30000, "udp6": 40000}
MAX_PER_KIND = 10000
SPECIAL_PORT_BASE = 50000
DEFAULT_MIX = "tcp4=40,tcp6=30,udp4=15,udp6=15"
# Bulk addresses, taken in turn. An IPv6 wildcard comes twice: once IPV6_V6ONLY, once dual stack. Wildcard binds
# are the point (discovery tools must report them), and the holder runs in a namespace of its own with only lo.
WILDCARD4 = "0.0.0.0"  # noqa: S104
BULK_ADDRESSES = {
    "tcp4": [("127.0.0.1", None), (WILDCARD4, None), ("127.0.0.2", None)],
    "udp4": [("127.0.0.1", None), (WILDCARD4, None), ("127.0.0.2", None)],
    "tcp6": [("::1", None), ("::", True), ("::", False)],
    "udp6": [("::1", None), ("::", True), ("::", False)],
}
LINK_LOCAL = "fe80::1234"
LINK_LOCAL_DEVICE = "lo"
LONG_V6 = "fd7a:115c:a1e0:ab12:4843:cd96:6258:b240"
# Slack above the sockets for stdio, the Python runtime and the special cases.
FD_SLACK = 256

PR_SET_PDEATHSIG = 1


def parse_counts(text):
    """'tcp4=4000,udp6=10' -> {'tcp4': 4000, 'udp6': 10} (the kinds not named get 0)."""
    counts = dict.fromkeys(KINDS, 0)
    for item in filter(None, (part.strip() for part in text.split(","))):
        kind, sep, value = item.partition("=")
        if not sep or kind not in KINDS:
            raise ValueError("bad kind %r (expected one of %s as kind=number)" % (item, ", ".join(KINDS)))
        counts[kind] = int(value)
    return counts


def split_count(count, mix):
    """Share `count` sockets out by the percentages of `mix`; rounding leftovers go to the first kinds."""
    weights = parse_counts(mix)
    total = sum(weights.values())
    if total <= 0:
        raise ValueError("the mix %r has no weight" % mix)
    counts = {kind: count * weights[kind] // total for kind in KINDS}
    leftover = count - sum(counts.values())
    for kind in KINDS:
        if leftover <= 0:
            break
        if weights[kind]:
            counts[kind] += 1
            leftover -= 1
    return counts


def raise_nofile(needed):
    """Raise RLIMIT_NOFILE to the hard limit, and the hard limit too when it is below `needed` (root can)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < needed:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (needed, needed))
            return needed
        except (ValueError, OSError) as exc:
            raise SystemExit("socket_holder: need %d file descriptors, the hard limit is %d and cannot be raised: %s"
                             % (needed, hard, exc))
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def die_with_parent():
    """Ask the kernel to SIGKILL this process when its parent exits (a helper never outlives the holder)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def _family(kind):
    return socket.AF_INET6 if kind.endswith("6") else socket.AF_INET


def _sockaddr(family, address, port):
    if family == socket.AF_INET:
        return (address, port)
    scope = socket.if_nametoindex(LINK_LOCAL_DEVICE) if address.lower().startswith("fe80:") else 0
    return (address, port, 0, scope)


def open_socket(kind, address, port, v6only=None, reuseport=False):
    """One bound socket of `kind` (tcp4/tcp6/udp4/udp6); a TCP socket also listens."""
    family = _family(kind)
    stream = kind.startswith("tcp")
    sock = socket.socket(family, socket.SOCK_STREAM if stream else socket.SOCK_DGRAM)
    try:
        if v6only is not None:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, int(v6only))
        if reuseport:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(_sockaddr(family, address, port))
        if stream:
            sock.listen(1)
    except OSError:
        sock.close()
        raise
    return sock


def _entry(kind, address, port, pids, note=None, v6only=None):
    entry = {"protocol": kind[:3], "family": "ipv6" if kind.endswith("6") else "ipv4", "address": address,
             "port": port, "pids": sorted(pids)}
    if v6only is not None:
        entry["v6only"] = v6only
    if note:
        entry["note"] = note
    return entry


def open_bulk(counts):
    """The bulk: counts[kind] sockets of each kind, addresses taken in turn. Returns (sockets, entries)."""
    held = []
    entries = []
    me = os.getpid()
    for kind in KINDS:
        if counts[kind] > MAX_PER_KIND:
            raise SystemExit("socket_holder: at most %d sockets of each kind, not %d %s" % (MAX_PER_KIND, counts[kind], kind))
        addresses = BULK_ADDRESSES[kind]
        for index in range(counts[kind]):
            address, v6only = addresses[index % len(addresses)]
            port = PORT_BASE[kind] + index
            held.append(open_socket(kind, address, port, v6only=v6only))
            entries.append(_entry(kind, address, port, [me], v6only=v6only))
    return held, entries


def _fork_sleeper(setup=None):
    """Fork a helper that runs setup() (in the child), reports its result over a pipe, then sleeps forever."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        try:
            os.close(read_end)
            for signum in (signal.SIGTERM, signal.SIGINT):
                signal.signal(signum, signal.SIG_DFL)
            die_with_parent()
            payload = setup() if setup else None
            die_with_parent()  # again: a change of user clears it
            os.write(write_end, (json.dumps({"ok": True, "result": payload}) + "\n").encode())
            os.close(write_end)
            while True:
                signal.pause()
        except BaseException as exc:  # report and leave: never return into the parent's code
            try:
                os.write(write_end, (json.dumps({"ok": False, "error": repr(exc)}) + "\n").encode())
            finally:
                os._exit(1)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as reader:
        line = reader.readline()
    report = json.loads(line.decode() or '{"ok": false, "error": "helper exited"}')
    if not report["ok"]:
        raise SystemExit("socket_holder: helper %d failed: %s" % (pid, report["error"]))
    return pid, report["result"]


def open_special(user, long_v6):
    """The special cases (see the module docstring). Returns (sockets, entries, not_listening, helper pids)."""
    held = []
    entries = []
    not_listening = []
    helpers = []
    me = os.getpid()
    port = iter(range(SPECIAL_PORT_BASE, SPECIAL_PORT_BASE + 100))

    # Sockets of a process running as another user (forked first: it inherits none of the others).
    account = pwd.getpwnam(user)
    user_ports = [next(port), next(port)]

    def as_user():
        os.setgroups([])
        os.setgid(account.pw_gid)
        os.setuid(account.pw_uid)
        keep = [open_socket("tcp4", "127.0.0.1", user_ports[0]), open_socket("udp6", "::", user_ports[1], v6only=True)]
        as_user.keep = keep  # held for the life of the helper
        return os.getpid()

    user_pid = _fork_sleeper(as_user)[0]
    helpers.append(user_pid)
    entries.append(_entry("tcp4", "127.0.0.1", user_ports[0], [user_pid], note="process of user %s" % user))
    entries.append(_entry("udp6", "::", user_ports[1], [user_pid], note="process of user %s" % user, v6only=True))

    # A pre-forking server: one listening socket, held by this process and a child.
    shared_port = next(port)
    shared = open_socket("tcp4", WILDCARD4, shared_port)
    held.append(shared)
    child = _fork_sleeper()[0]
    helpers.append(child)
    entries.append(_entry("tcp4", WILDCARD4, shared_port, [me, child], note="shared by two processes"))

    def add(kind, address, note, v6only=None, reuseport=False, count=1):
        number = next(port)
        for _number in range(count):
            held.append(open_socket(kind, address, number, v6only=v6only, reuseport=reuseport))
            entries.append(_entry(kind, address, number, [me], note=note, v6only=v6only))

    add("tcp6", "::ffff:127.0.0.1", "IPv4-mapped IPv6 bind")
    add("udp6", "::ffff:127.0.0.1", "IPv4-mapped IPv6 bind")
    add("tcp6", LINK_LOCAL, "link-local on %s" % LINK_LOCAL_DEVICE)
    add("udp6", LINK_LOCAL, "link-local on %s" % LINK_LOCAL_DEVICE)
    add("tcp6", long_v6, "long IPv6 address")
    add("udp6", long_v6, "long IPv6 address")
    add("tcp6", "::", "IPv6 wildcard, dual stack", v6only=False)
    add("tcp6", "::", "IPv6 wildcard, IPV6_V6ONLY", v6only=True)
    add("udp6", "::", "IPv6 wildcard, dual stack", v6only=False)
    add("tcp4", "127.0.0.1", "SO_REUSEPORT pair", reuseport=True, count=2)

    # Not listening: a connected UDP socket, and an established TCP connection (its listener does listen).
    udp_port, udp_peer = next(port), next(port)
    connected = open_socket("udp4", "127.0.0.1", udp_port)
    connected.connect(("127.0.0.1", udp_peer))
    held.append(connected)
    not_listening.append(_entry("udp4", "127.0.0.1", udp_port, [me], note="connected UDP socket"))
    server_port, client_port = next(port), next(port)
    server = open_socket("tcp4", "127.0.0.1", server_port)
    entries.append(_entry("tcp4", "127.0.0.1", server_port, [me], note="listener with an established connection"))
    client = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    client.bind(("127.0.0.1", client_port))
    client.connect(("127.0.0.1", server_port))
    accepted, _peer = server.accept()
    held.extend([server, client, accepted])
    not_listening.append(_entry("tcp4", "127.0.0.1", client_port, [me], note="established TCP client"))
    not_listening.append(_entry("tcp4", "127.0.0.1", server_port, [me], note="established TCP, accepted end"))
    return held, entries, not_listening, helpers


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--count", type=int, default=0, help="bulk sockets, shared out by --mix")
    parser.add_argument("--mix", default=DEFAULT_MIX, help="percentages of each kind (default %(default)s)")
    parser.add_argument("--counts", help="exact bulk counts instead of --count/--mix, e.g. tcp4=5000,udp4=1000")
    parser.add_argument("--special", action="store_true", help="add the special cases")
    parser.add_argument("--special-user", default="nobody")
    parser.add_argument("--long-v6", default=LONG_V6)
    args = parser.parse_args(argv)

    counts = parse_counts(args.counts) if args.counts else split_count(args.count, args.mix)
    raise_nofile(sum(counts.values()) + FD_SLACK)

    helpers = []

    def stop(signum, _frame):
        for pid in helpers:
            try:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
        os._exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    held, entries, not_listening = [], [], []
    if args.special:  # before the bulk, so the helpers inherit none of it
        special_held, entries, not_listening, special_helpers = open_special(args.special_user, args.long_v6)
        held.extend(special_held)
        helpers.extend(special_helpers)
    bulk_held, bulk_entries = open_bulk(counts)
    held.extend(bulk_held)
    entries.extend(bulk_entries)

    sys.stdout.write(json.dumps({"ready": True, "pid": os.getpid(), "helpers": helpers, "counts": counts,
                                 "sockets": entries, "not_listening": not_listening}) + "\n")
    sys.stdout.flush()
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main()
