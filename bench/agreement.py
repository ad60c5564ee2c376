# Copyright (c) Portcullis contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Do portcullis.hardening.listening_ports and community.general.listen_ports_facts agree about the listeners?

Pure functions over the two modules' results (and the socket holder's list of what it opened); no host. The
discovery benchmark fails when compare() finds a difference that KNOWN_DIFFERENCES does not explain.

Both results are normalised to a set of (protocol, address, port, pid) tuples:

- protocol is "tcp" or "udp": listen_ports_facts has no family (it folds tcp6 into tcp and udp6 into udp),
  so the family of listening_ports is dropped too; the address still tells IPv4 from IPv6;
- a listener of listening_ports gives one tuple per process holding it, and one with pid 0 when no process
  does (listen_ports_facts writes pid 0 when its tool names no process);
- listen_ports_facts' items come from ansible_facts.tcp_listen and udp_listen: address, port, pid, name,
  user, protocol (and stime). `user` there is the owner of the process (ps -o user), in listening_ports
  the owner of the socket; neither `user` nor `name` is part of the comparison (see field_differences()).

Then compare() pairs the tuples up by (protocol, address, port), translates the addresses
listen_ports_facts is known to garble, and checks the pids. Each explained difference names its entry in
KNOWN_DIFFERENCES.
"""

from __future__ import annotations

import collections

# Every difference between the two modules seen on a real host (bench/socket_holder.py --special opens a
# socket for each). `tool`: which of listen_ports_facts' back ends shows it (it runs netstat when netstat is
# installed, else ss); `explained_by_compare`: whether compare() accepts it, or it is invisible after
# normalisation.
KNOWN_DIFFERENCES = {
    "family_folded": {
        "tool": "both",
        "explained_by_compare": False,
        "what": "listen_ports_facts reports protocol tcp for tcp6 sockets and udp for udp6 (no family field).",
        "why": "Its parsers strip the 6 from netstat's tcp6/udp6; ss prints tcp/udp for both families.",
        "handling": "Normalisation drops listening_ports' family; the address still tells the families apart.",
    },
    "ipv4_mapped_unmapped": {
        "tool": "netstat",
        "explained_by_compare": True,
        "what": "An IPv6 socket bound to an IPv4-mapped address (::ffff:127.0.0.1) appears as 127.0.0.1.",
        "why": "netstat prints IPv4-mapped IPv6 addresses in IPv4 form (under tcp6/udp6, which the module folds "
               "away), so listen_ports_facts cannot tell it from an IPv4 socket on 127.0.0.1.",
        "handling": "lpf address A matches listening_ports address ::ffff:A.",
    },
    "long_address_truncated": {
        "tool": "netstat",
        "explained_by_compare": True,
        "what": "A long IPv6 address (fd7a:115c:a1e0:ab12:4843:cd96:6258:b240) is cut short "
                "(fd7a:115c:a1e0:ab) and the port kept.",
        "why": "netstat without --wide truncates the local address so that address:port fits 23 columns; "
               "listen_ports_facts does not pass --wide.",
        "handling": "lpf address A matches a listening_ports address that starts with A when len(A) + "
                    "len(port) == 22 and the full address would not have fitted.",
    },
    "one_process_per_socket": {
        "tool": "netstat",
        "explained_by_compare": True,
        "what": "A socket held by several processes (a pre-forking server) lists only one of them.",
        "why": "netstat -p keeps the first process it finds for an inode; ss -p lists them all.",
        "handling": "For netstat, lpf's single pid must be one of listening_ports' pids for that socket.",
    },
    "dual_stack_wildcard_star": {
        "tool": "ss",
        "explained_by_compare": True,
        "what": "An IPv6 wildcard socket without IPV6_V6ONLY (dual stack) has address '*'.",
        "why": "ss prints '*' for it ('[::]' when IPV6_V6ONLY is set), and listen_ports_facts keeps the '*'.",
        "handling": "lpf address '*' matches listening_ports address '::'.",
    },
    "link_local_scope_garbled": {
        "tool": "ss",
        "explained_by_compare": True,
        "what": "A link-local address bound to an interface appears as 'fe80::1234]%lo'.",
        "why": "ss prints [fe80::1234]%lo:port and the module's regular expression keeps everything up to the "
               "last colon but the opening bracket. netstat prints fe80::1234, without the interface.",
        "handling": "lpf address 'A]%IF' matches listening_ports address A.",
    },
    "duplicate_rows_merged": {
        "tool": "netstat",
        "explained_by_compare": False,
        "what": "Two sockets on one address and port in one process (SO_REUSEPORT) are one item.",
        "why": "The netstat parser drops an item equal to one it already has; listening_ports lists each socket "
               "(with its inode). Invisible in the tuple sets; the counts of items and listeners differ.",
        "handling": "None needed: both sets hold the tuple once.",
    },
    "user_is_process_owner": {
        "tool": "both",
        "explained_by_compare": False,
        "what": "`user` is the process owner's name (ps -o user per item) in listen_ports_facts, the socket "
                "owner's (uid of the socket) in listening_ports.",
        "why": "Different questions; they differ for a socket passed to or inherited by another user's process.",
        "handling": "Not compared; field_differences() reports names and users that differ, for information.",
    },
}

Difference = collections.namedtuple("Difference", "protocol address port pid")


def listening_ports_listeners(result):
    """The listeners of a listening_ports result: `listeners`, or the fact with as_facts=true (or the list itself)."""
    if not isinstance(result, dict):
        return list(result)
    if "listeners" in result:
        return result["listeners"]
    return result.get("ansible_facts", {}).get("portcullis_listeners", [])


def normalize_listening_ports(result):
    """{(protocol, address, port, pid)} of a listening_ports result (or its list of listeners)."""
    listeners = listening_ports_listeners(result)
    tuples = set()
    for listener in listeners:
        pids = [process["pid"] for process in listener.get("processes") or []] or [0]
        for pid in pids:
            tuples.add((listener["protocol"], listener["address"], int(listener["port"]), int(pid)))
    return tuples


def listen_ports_facts_items(result):
    """The items of a listen_ports_facts result: its ansible_facts (or the facts themselves)."""
    facts = result.get("ansible_facts", result)
    return list(facts.get("tcp_listen", [])) + list(facts.get("udp_listen", []))


def normalize_listen_ports_facts(result):
    """{(protocol, address, port, pid)} of a listen_ports_facts result."""
    tuples = set()
    for item in listen_ports_facts_items(result):
        protocol = "tcp" if item["protocol"].startswith("tcp") else "udp"
        tuples.add((protocol, item["address"], int(item["port"]), int(item.get("pid") or 0)))
    return tuples


def normalize_holder(ready, key="sockets"):
    """{(protocol, address, port, pid)} of what bench/socket_holder.py says it opened (key="not_listening": the
    sockets it opened that do not listen)."""
    tuples = set()
    for entry in ready.get(key, []):
        for pid in entry["pids"] or [0]:
            tuples.add((entry["protocol"], entry["address"], int(entry["port"]), int(pid)))
    return tuples


def _by_socket(tuples):
    sockets = collections.defaultdict(set)
    for protocol, address, port, pid in tuples:
        sockets[(protocol, address, port)].add(pid)
    return sockets


def _translations(address, port, tool):
    """(known difference, predicate on a listening_ports address) that may explain lpf's `address`."""
    if tool == "netstat":
        yield "ipv4_mapped_unmapped", lambda candidate: candidate == "::ffff:" + address
        if len(address) + len(str(port)) == 22:
            yield "long_address_truncated", (
                lambda candidate: candidate != address and candidate.startswith(address)
                and len(candidate) + len(str(port)) > 22)
    elif tool == "ss":
        if address == "*":
            yield "dual_stack_wildcard_star", lambda candidate: candidate == "::"
        if "]%" in address:
            yield "link_local_scope_garbled", lambda candidate: candidate == address.split("]%", 1)[0]


def compare(lp_tuples, lpf_tuples, tool):
    """Compare normalised listening_ports (lp) and listen_ports_facts (lpf) tuples.

    `tool` is the command listen_ports_facts ran: "netstat" or "ss" (the known differences depend on it).
    Returns {"agree", "explained": [...], "only_listening_ports": [...], "only_listen_ports_facts": [...],
    "pid_mismatches": [...], "counts": {...}}; `agree` is False when anything is left unexplained.
    """
    if tool not in ("netstat", "ss"):
        raise ValueError("tool must be netstat or ss, not %r" % (tool,))
    lp = _by_socket(lp_tuples)
    lpf = _by_socket(lpf_tuples)
    explained = []
    unmatched_lp = set(lp) - set(lpf)
    matched = {}  # lpf socket key -> lp socket key
    for key in sorted(set(lpf) - set(lp)):
        protocol, address, port = key
        for known, accepts in _translations(address, port, tool):
            candidates = sorted(other for other in unmatched_lp
                                if other[0] == protocol and other[2] == port and accepts(other[1]))
            if candidates:
                matched[key] = candidates[0]
                unmatched_lp.discard(candidates[0])
                explained.append({"known": known, "listen_ports_facts": list(key), "listening_ports": list(candidates[0])})
                break
    for key in set(lpf) & set(lp):
        matched[key] = key

    pid_mismatches = []
    for lpf_key, lp_key in sorted(matched.items()):
        lp_pids, lpf_pids = lp[lp_key], lpf[lpf_key]
        if lp_pids == lpf_pids:
            continue
        if tool == "netstat" and len(lpf_pids) == 1 and lpf_pids <= lp_pids:
            explained.append({"known": "one_process_per_socket", "listen_ports_facts": list(lpf_key) + [sorted(lpf_pids)],
                              "listening_ports": list(lp_key) + [sorted(lp_pids)]})
            continue
        pid_mismatches.append({"socket": list(lp_key), "listening_ports_pids": sorted(lp_pids),
                               "listen_ports_facts_pids": sorted(lpf_pids)})

    only_lp = sorted(list(key) + [sorted(lp[key])] for key in unmatched_lp)
    only_lpf = sorted(list(key) + [sorted(lpf[key])] for key in set(lpf) if key not in matched)
    by_known = collections.Counter(item["known"] for item in explained)
    return {
        "agree": not (only_lp or only_lpf or pid_mismatches),
        "tool": tool,
        "explained": explained,
        "explained_counts": dict(sorted(by_known.items())),
        "only_listening_ports": only_lp,
        "only_listen_ports_facts": only_lpf,
        "pid_mismatches": pid_mismatches,
        "counts": {"listening_ports_tuples": len(lp_tuples), "listen_ports_facts_tuples": len(lpf_tuples),
                   "listening_ports_sockets": len(lp), "listen_ports_facts_sockets": len(lpf)},
    }


def compare_with_holder(lp_tuples, holder_tuples, not_listening_tuples=()):
    """Check listening_ports against what the holder opened: every holder socket listed, with its pids, and none of
    the sockets that do not listen (a connected UDP socket, an established TCP connection).

    listening_ports may list more (sockets of the namespace that the holder did not open), never fewer. A socket
    that does not listen but shares its address and port with one that does (the accepted end of a connection)
    cannot be told apart in the tuples, so only the others are checked.
    """
    missing = sorted(holder_tuples - lp_tuples)
    extra = sorted(lp_tuples - holder_tuples)
    wrongly_listed = sorted((set(not_listening_tuples) - set(holder_tuples)) & lp_tuples)
    return {"ok": not missing and not wrongly_listed, "missing": [list(item) for item in missing],
            "extra": [list(item) for item in extra], "not_listening_listed": [list(item) for item in wrongly_listed]}


def field_differences(lp_result, lpf_result, limit=10):
    """For information: process names and users that differ between the modules, per (protocol, port, pid).

    Keyed without the address (which lpf may garble); compared only where both modules name the pid.
    """
    lp_fields = {}
    for listener in listening_ports_listeners(lp_result):
        for process in listener.get("processes") or []:
            lp_fields[(listener["protocol"], int(listener["port"]), int(process["pid"]))] = (process["name"], listener["user"])
    names = users = 0
    samples = []
    for item in listen_ports_facts_items(lpf_result):
        protocol = "tcp" if item["protocol"].startswith("tcp") else "udp"
        key = (protocol, int(item["port"]), int(item.get("pid") or 0))
        if key not in lp_fields:
            continue
        name, user = lp_fields[key]
        differs_name = item.get("name") != name
        differs_user = item.get("user") != user
        names += differs_name
        users += differs_user
        if (differs_name or differs_user) and len(samples) < limit:
            samples.append({"key": list(key), "listening_ports": {"name": name, "user": user},
                            "listen_ports_facts": {"name": item.get("name"), "user": item.get("user")}})
    return {"names_differ": names, "users_differ": users, "samples": samples}
