# Copyright (c) Portcullis contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""portcullis.hardening.firewall end to end, on a lab of its own (one Debian 12 and one Debian 13 host).

The firewall changes the hosts' rules, so this module never touches the shared test lab: its `lab` fixture
(harness.own_lab) starts a lab in a temporary state dir with $PORTCULLIS_LAB (run by $PORTCULLIS_LAB_PYTHON)
and takes it down at the end, whatever happened. Each host gets a Docker-like foreign ruleset (tables ip nat and ip
filter, loaded again at boot by a unit ordered after nftables.service, as Docker would) and two listeners
the allowlists never open (tcp 7070, udp 7071), next to the lab's rogue listeners.

Every reachability check uses a new connection: raw sockets from this process, and `ssh` with
ControlMaster=no and ControlPath=none. Ansible runs the same way, except the blocked-confirm test, which
keeps Ansible's default ControlPersist master on purpose (in a control path dir of its own). Every test
starts from the state it needs and ends with every host reachable over a new SSH connection.
"""

from __future__ import annotations

import contextlib
import json
import shlex
import tempfile
import time

import pytest

from harness import BLOCK_NEW_SSH, own_lab, stop_masters, wait_for

TEST_DIR = "/var/lib/portcullis-test"
OWN_TABLE = "table inet portcullis"
PERSIST_FILE = "/etc/nftables.d/portcullis.nft"
INCLUDE_LINE = 'include "%s"' % PERSIST_FILE
SCRIPT_HEAD = "add table inet portcullis\ndelete table inet portcullis\n"

# The IPv4 /24 of the lab network, templated by Ansible for each host (the controller sits on it).
LAB_NET = "{{ (ansible_host.split('.')[:3] + ['0']) | join('.') }}/24"
BASELINE = [
    {"port": 22, "comment": "SSH"},
    {"port": 8080},
    {"port": 9999, "protocol": "udp", "sources": [LAB_NET]},
    {"port": 8443, "family": "ipv6"},
]
# BASELINE changed: one more entry (the hosts have no node exporter; the rule is what matters).
CHANGED = BASELINE + [{"port": 9100, "sources": [LAB_NET], "comment": "node exporter"}]

# A Docker-like ruleset that is not Portcullis': it must come through every run byte for byte.
FOREIGN = """\
table ip nat {
\tchain DOCKER {
\t}
\tchain PREROUTING {
\t\ttype nat hook prerouting priority dstnat; policy accept;
\t\tfib daddr type local jump DOCKER
\t}
}
table ip filter {
\tchain DOCKER-USER {
\t\treturn
\t}
\tchain FORWARD {
\t\ttype filter hook forward priority filter; policy drop;
\t\tjump DOCKER-USER
\t}
}
"""
# Loads FOREIGN at boot after nftables.service (whose /etc/nftables.conf starts with `flush ruleset`), as
# Docker does when it starts; `podman restart` gives the container a new network namespace, empty.
FOREIGN_UNIT = """\
[Unit]
Description=Portcullis test: a Docker-like foreign ruleset, loaded after nftables.service
After=nftables.service

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/sbin/nft -f %s/foreign.nft

[Install]
WantedBy=multi-user.target
""" % TEST_DIR

# Listeners no allowlist here opens: the firewall, not a missing program, must make them unreachable.
LISTENERS = {
    "portcullis-test-7070": """\
import socket
server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("0.0.0.0", 7070))
server.listen(16)
while True:
    client, _peer = server.accept()
    client.sendall(b"portcullis-test tcp/7070\\n")
    client.close()
""",
    "portcullis-test-7071": """\
import socket
server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
server.bind(("0.0.0.0", 7071))
while True:
    _data, peer = server.recvfrom(2048)
    server.sendto(b"portcullis-test udp/7071\\n", peer)
""",
}

# Everything the firewall may touch, read on the host in one SSH connection.
SNAPSHOT = r"""
import json, os, re, subprocess

def out(*argv):
    done = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True)
    return done.stdout if done.returncode == 0 else None

def text(path):
    try:
        with open(path) as stream:
            return stream.read()
    except FileNotFoundError:
        return None

state_dir = "/var/lib/portcullis"
print(json.dumps({
    "ruleset": out("nft", "list", "ruleset"),
    "tables": out("nft", "list", "tables"),
    "own": out("nft", "list", "table", "inet", "portcullis"),
    "foreign": out("sh", "-c", "nft list table ip nat && nft list table ip filter"),
    "conf": text("/etc/nftables.conf"),
    "persisted": text("/etc/nftables.d/portcullis.nft"),
    # The change engine's history records every change (failed ones too): not compared.
    "state_files": None if not os.path.isdir(state_dir) else sorted(
        name for name in os.listdir(state_dir) if name != "history"),
    "rollback_units": out("systemctl", "list-units", "--all", "--plain", "--no-legend", "portcullis-rollback-*"),
    "rollback_timers": out("sh", "-c", "systemctl list-timers --all | grep portcullis-rollback- || true"),
    "service_enabled": out("systemctl", "is-enabled", "--quiet", "nftables.service") is not None,
}, sort_keys=True))
"""

# Stand-ins for /usr/sbin/nft (the original waits at /usr/sbin/nft.real and is always put back).
NFT_APPLY_FAILS = """\
#!/bin/sh
# Portcullis test stand-in for nft: checks (-c) pass, loading a file (-f) fails.
for arg in "$@"; do
    case "$arg" in -c|--check) exec /usr/sbin/nft.real "$@" ;; esac
done
for arg in "$@"; do
    case "$arg" in
        -f|--file) echo "Error: simulated failure of nft -f (portcullis test stand-in)" >&2; exit 1 ;;
    esac
done
exec /usr/sbin/nft.real "$@"
"""
NFT_SYNTAX_ERROR = """\
#!/bin/sh
# Portcullis test stand-in for nft: every new table the firewall validates gets a syntax error
# ("acept" for "accept" in its allowlist rules), and the real nft checks it.
check=no; file=; previous=
for arg in "$@"; do
    case "$arg" in -c|--check) check=yes ;; esac
    [ "$previous" = -f ] && file=$arg
    previous=$arg
done
case "$check:$file" in
    yes:/run/portcullis/firewall-*)
        broken=$(mktemp /tmp/portcullis-test-broken.XXXXXX)
        sed 's/ accept comment "allowlist\\[/ acept comment "allowlist[/' "$file" > "$broken"
        /usr/sbin/nft.real -c -f "$broken"; rc=$?
        rm -f "$broken"
        exit $rc ;;
esac
exec /usr/sbin/nft.real "$@"
"""

# What the controller sees, by (protocol, IP version, port): open / refused / filtered for TCP,
# answered / refused / silent for UDP.
NO_FIREWALL = {
    ("tcp", 4, 22): "open", ("tcp", 4, 8080): "open", ("tcp", 4, 8443): "refused", ("tcp", 4, 6379): "refused",
    ("tcp", 4, 7070): "open", ("udp", 4, 9999): "answered", ("udp", 4, 7071): "answered",
    ("tcp", 6, 22): "open", ("tcp", 6, 8443): "open", ("tcp", 6, 8080): "refused", ("tcp", 6, 7070): "refused",
}
BASELINE_REACH = {
    ("tcp", 4, 22): "open", ("tcp", 4, 8080): "open", ("tcp", 4, 8443): "filtered", ("tcp", 4, 6379): "filtered",
    ("tcp", 4, 7070): "filtered", ("udp", 4, 9999): "answered", ("udp", 4, 7071): "silent",
    # 8080 is allowed for both families, but only an IPv4 program listens: IPv6 gets a reset, not silence.
    ("tcp", 6, 22): "open", ("tcp", 6, 8443): "open", ("tcp", 6, 8080): "refused", ("tcp", 6, 7070): "filtered",
    ("udp", 6, 9999): "silent",
}
ONLY_8080_REACH = {
    ("tcp", 4, 22): "open", ("tcp", 4, 8080): "open", ("tcp", 4, 8443): "filtered", ("tcp", 4, 6379): "filtered",
    ("tcp", 4, 7070): "filtered", ("udp", 4, 9999): "silent", ("udp", 4, 7071): "silent",
    ("tcp", 6, 22): "open", ("tcp", 6, 8443): "filtered", ("tcp", 6, 8080): "refused", ("tcp", 6, 7070): "filtered",
    ("udp", 6, 9999): "silent",
}


# --- the lab ---------------------------------------------------------------------------------------

def snapshot(host):
    """Everything the firewall may touch on the host (SNAPSHOT), read over one new SSH connection."""
    return json.loads(host.ssh("python3 -c %s" % shlex.quote(SNAPSHOT)).stdout)


def firewall(lab, args, hosts="all", check_mode=False, fresh=True, control_dir=None, warm_up=False):
    """Run portcullis.hardening.firewall with `args`; return (rc, {host: result})."""
    tasks = [{"name": "firewall", "portcullis.hardening.firewall": args}]
    if warm_up:  # an earlier task, so that the firewall runs over a connection that already exists
        tasks.insert(0, {"name": "warm up", "ansible.builtin.ping": {}})
    completed, results = lab.playbook(tasks, hosts=hosts, extra_args=["--check", "--diff"] if check_mode else [],
                                      fresh=fresh, control_dir=control_dir)
    names = [host.name for host in lab.hosts] if hosts == "all" else [hosts]
    assert sorted(results.get("firewall", {})) == sorted(names), (completed.stdout[-3000:], completed.stderr[-3000:])
    return completed.returncode, results["firewall"]


def _prepare(host):
    """The foreign ruleset (live, and at boot after nftables.service) and the listeners nothing allows."""
    host.ssh("mkdir -p %s && cat > %s/foreign.nft" % (TEST_DIR, TEST_DIR), input_text=FOREIGN)
    host.ssh("cat > /etc/systemd/system/portcullis-test-foreign.service", input_text=FOREIGN_UNIT)
    host.ssh("systemctl daemon-reload && systemctl enable --now --quiet portcullis-test-foreign.service")
    start_listeners(host)


def start_listeners(host):
    """Start the transient listeners on tcp 7070 and udp 7071 (again after a restart); wait until they listen."""
    for unit, program in LISTENERS.items():
        host.ssh("systemctl is-active --quiet {unit}.service || systemd-run --quiet --unit {unit} "
                 "--description 'Portcullis test listener' python3 -c {program}".format(
                     unit=unit, program=shlex.quote(program)))
    wait_for(lambda: host.ssh("ss -H -ltn 'sport = :7070' | grep -q . && ss -H -lun 'sport = :7071' | grep -q .",
                              check=False).returncode == 0, 30, "listeners on %s" % host.name)


def _prepare_lab(lab):
    for host in lab.hosts:
        _prepare(host)
    lab.original = {host.name: snapshot(host) for host in lab.hosts}


@pytest.fixture(scope="module")
def lab():
    """A lab of this module's own (harness.own_lab): up at the start, down at the end, whatever happened."""
    with own_lab(_prepare_lab, prefix="portcullis-fw-lab-") as the_lab:
        yield the_lab


# --- probes and checks -----------------------------------------------------------------------------

def assert_reach(lab, expected):
    for host in lab.hosts:
        assert host.probe(expected) == host.expected(expected), host.name


def assert_all_reachable(lab):
    """Every host answers a new SSH connection (over IPv6 too, when the lab has it)."""
    for host in lab.hosts:
        assert host.reachable(), "%s does not accept a new SSH connection" % host.name
        if host.ipv6:
            assert host.reachable(ipv6=True), "%s does not accept a new SSH connection over IPv6" % host.name


def ensure(lab, allow, hosts="all"):
    """Apply `allow` (with commit-confirm) and check that the live table is exactly the rendered one."""
    rc, results = firewall(lab, {"allow": allow, "confirm_timeout": 30}, hosts=hosts)
    assert rc == 0, results
    for host in lab.hosts:
        if host.name in results:
            assert not results[host.name].get("failed"), results[host.name]
            assert snapshot(host)["own"] == results[host.name]["rules"], host.name
    return results


def assert_unchanged(lab, before):
    """Every host's snapshot is what it was; the message names the host and the parts that differ."""
    for host in lab.hosts:
        after = snapshot(host)
        differ = sorted(key for key in set(before[host.name]) | set(after)
                        if before[host.name].get(key) != after.get(key))
        assert not differ, "%s changed: %s" % (host.name, "; ".join(
            "%s: %r -> %r" % (key, before[host.name].get(key), after.get(key)) for key in differ))


def rollback_left(snapshot):
    return (snapshot["rollback_units"] or "").strip() or snapshot["rollback_timers"].strip()


def without_own_table(ruleset):
    """The ruleset listing without the `table inet portcullis { ... }` block."""
    out, skipping = [], False
    for line in ruleset.splitlines(True):
        if line.startswith(OWN_TABLE + " {"):
            skipping = True
        elif skipping and line.startswith("}"):
            skipping = False
            continue
        if not skipping:
            out.append(line)
    return "".join(out)


# --- the tests -------------------------------------------------------------------------------------

def test_apply_is_idempotent_and_check_diff_changes_nothing(lab):
    assert_reach(lab, NO_FIREWALL)  # the listeners answer while nothing filters

    rc, results = firewall(lab, {"allow": BASELINE, "confirm_timeout": 30})
    assert rc == 0, results
    for host in lab.hosts:
        result, after, original = results[host.name], snapshot(host), lab.original[host.name]
        assert result["changed"] is True and result["confirmed"] is True, result
        assert "rollback" not in result
        assert result["management_ports"] == []  # entry 0 opens 22 itself
        assert result["persistence"] == {"file": True, "include": True, "service": True, "config": "/etc/nftables.conf"}
        # The rendered table is exactly what nft lists back, and what --diff called "after".
        assert after["own"] == result["rules"] == result["diff"]["after"]
        assert result["diff"]["before"] == ""
        assert "type filter hook input priority filter; policy drop;" in after["own"]
        assert 'tcp dport 22 accept comment "allowlist[0]: SSH"' in after["own"]
        assert "ip saddr %s.0/24 udp dport 9999 accept" % host.address.rsplit(".", 1)[0] in after["own"]
        assert "meta nfproto ipv6 tcp dport 8443 accept" in after["own"]
        assert after["foreign"] == original["foreign"] and FOREIGN.split("\n", 1)[0] in after["foreign"]
        assert without_own_table(after["ruleset"]) == original["ruleset"]
        assert after["persisted"] == SCRIPT_HEAD + result["rules"]
        assert after["conf"].startswith(original["conf"]) and after["conf"].rstrip().endswith(INCLUDE_LINE)
        assert after["service_enabled"] is True
        assert not rollback_left(after)
        assert "armed" not in after["state_files"]  # nothing left armed
    assert_reach(lab, BASELINE_REACH)

    before = {host.name: snapshot(host) for host in lab.hosts}
    rc, results = firewall(lab, {"allow": BASELINE, "confirm_timeout": 30})
    assert rc == 0 and all(result["changed"] is False for result in results.values()), results
    assert all("rollback" not in result and "confirmed" not in result for result in results.values())
    assert_unchanged(lab, before)

    rc, results = firewall(lab, {"allow": CHANGED, "confirm_timeout": 30}, check_mode=True)
    assert rc == 0, results
    for host in lab.hosts:
        result = results[host.name]
        assert result["changed"] is True and "rollback" not in result, result
        assert result["diff"]["before"] == before[host.name]["own"]
        assert result["diff"]["after"] == result["rules"] != before[host.name]["own"]
        assert 'tcp dport 9100 accept comment "allowlist[4]: node exporter"' in result["diff"]["after"]
        assert result["persistence"] == {"file": True, "include": False, "service": False,
                                         "config": "/etc/nftables.conf"}
    assert_unchanged(lab, before)  # check mode changed nothing

    rc, results = firewall(lab, {"allow": BASELINE, "confirm_timeout": 30}, check_mode=True)
    assert rc == 0 and all(result["changed"] is False for result in results.values()), results
    assert_all_reachable(lab)


def test_rules_survive_a_reboot(lab):
    ensure(lab, BASELINE)
    before = {host.name: snapshot(host) for host in lab.hosts}
    reach = {host.name: host.probe(BASELINE_REACH) for host in lab.hosts}
    assert reach == {host.name: host.expected(BASELINE_REACH) for host in lab.hosts}

    for host in lab.hosts:
        lab.restart(host)
    lab.up()  # addresses may change: the lab rewrites inventory, known_hosts and ssh_config
    for host in lab.hosts:
        start_listeners(host)  # transient units do not come back after a reboot

    for host in lab.hosts:
        after = snapshot(host)
        assert host.ssh("systemctl is-active nftables.service portcullis-test-foreign.service").stdout.split() == [
            "active", "active"]
        assert after["own"] == before[host.name]["own"], host.name
        assert after["foreign"] == before[host.name]["foreign"], host.name
        assert after["persisted"] == before[host.name]["persisted"]
        assert after["conf"] == before[host.name]["conf"]
        assert not rollback_left(after)
    assert {host.name: host.probe(BASELINE_REACH) for host in lab.hosts} == reach

    # What booted is what the firewall recorded: the same input changes nothing.
    rc, results = firewall(lab, {"allow": BASELINE, "confirm_timeout": 30})
    assert rc == 0 and all(result["changed"] is False for result in results.values()), results
    assert_all_reachable(lab)


def test_allowlist_without_the_management_port_keeps_it_open_and_warns(lab):
    ensure(lab, BASELINE)
    rc, results = firewall(lab, {"allow": [{"port": 8080}], "confirm_timeout": 30})
    assert rc == 0, results
    for host in lab.hosts:
        result = results[host.name]
        assert result["changed"] is True and result["confirmed"] is True, result
        assert result["management_ports"] == [22]
        assert any("no allow entry opens 22/tcp: the firewall keeps 22/tcp open" in warning
                   for warning in result.get("warnings", [])), result.get("warnings")
        own = snapshot(host)["own"]
        assert own == result["rules"]
        assert 'tcp dport 22 accept comment "portcullis: management port"' in own
        assert "dport 9999" not in own and "dport 8443" not in own
    assert_all_reachable(lab)  # new SSH connections, over IPv4 and IPv6
    assert_reach(lab, ONLY_8080_REACH)
    ensure(lab, BASELINE)


def test_sources_that_exclude_the_controller_keep_the_management_port_open_for_it(lab):
    # 22 only from a network the controller is not on: the host sees the controller's address on this SSH
    # session, so the firewall keeps 22 open (and warns) instead of cutting the operator off.
    ensure(lab, BASELINE)
    rc, results = firewall(lab, {"allow": [{"port": 22, "sources": ["192.0.2.0/24"]}, {"port": 8080}],
                                 "confirm_timeout": 30})
    assert rc == 0, results
    for host in lab.hosts:
        result = results[host.name]
        assert result["confirmed"] is True and result["management_ports"] == [22], result
        assert any("only from 192.0.2.0/24" in warning for warning in result.get("warnings", [])), result
    assert_all_reachable(lab)
    ensure(lab, BASELINE)


def test_blocked_confirm_rolls_back(lab):
    ensure(lab, BASELINE)
    before = {host.name: snapshot(host) for host in lab.hosts}
    control_dir = tempfile.mkdtemp(prefix="pfw-cp-")  # short: it holds unix sockets
    try:
        started = time.monotonic()
        # The master connection is established, so the apply goes through; the confirmation over a new
        # connection cannot, until the blocker removes itself after the rollback timer fired.
        completed, results = lab.playbook([
            {"name": "warm up", "ansible.builtin.ping": {}},
            {"name": "block new connections", "ansible.builtin.command": {"argv": ["sh", "-c", BLOCK_NEW_SSH]}},
            {"name": "firewall", "portcullis.hardening.firewall": {"allow": CHANGED, "confirm_timeout": 20}}],
            fresh=False, control_dir=control_dir)
        rc, results = completed.returncode, results["firewall"]
        took = time.monotonic() - started
    finally:
        stop_masters(control_dir)
    assert rc != 0, results
    assert took >= 20, took  # the rollback timer, not an early failure
    for host in lab.hosts:
        result = results[host.name]
        assert result.get("failed") is True and result.get("unreachable") is not True, result
        assert result["rolled_back"] is True and result["confirmed"] is False, result
        assert "its rollback timer put the previous configuration back" in result["msg"], result["msg"]
        assert "a new connection works again" in result["msg"], result["msg"]
        assert "dport 9100" in result["rules"]  # it was applied, then undone
    for host in lab.hosts:
        wait_for(lambda host=host: host.ssh("nft list table inet portcullis_test_blocker", check=False).returncode
                 != 0, 60, "the blocker gone on %s" % host.name)
        after = snapshot(host)
        assert after["own"] == before[host.name]["own"], host.name
        assert after["foreign"] == before[host.name]["foreign"]
        assert after["persisted"] == before[host.name]["persisted"]  # never confirmed, never persisted
        assert after["conf"] == before[host.name]["conf"]
        assert not rollback_left(after)
    assert_all_reachable(lab)
    assert_reach(lab, BASELINE_REACH)


@contextlib.contextmanager
def nft_replaced(host, stand_in):
    """/usr/sbin/nft replaced by `stand_in` (the original kept at /usr/sbin/nft.real), put back whatever happens."""
    original = host.ssh("sha256sum /usr/sbin/nft").stdout.split()[0]
    host.ssh("test ! -e /usr/sbin/nft.real && cat > /usr/sbin/nft.portcullis-test && chmod 755 "
             "/usr/sbin/nft.portcullis-test && mv /usr/sbin/nft /usr/sbin/nft.real && "
             "mv /usr/sbin/nft.portcullis-test /usr/sbin/nft", input_text=stand_in)
    try:
        yield
    finally:
        host.ssh("if [ -e /usr/sbin/nft.real ]; then mv -f /usr/sbin/nft.real /usr/sbin/nft; fi")
        assert host.ssh("sha256sum /usr/sbin/nft").stdout.split()[0] == original


def test_failing_nft_apply_leaves_the_previous_rules(lab):
    ensure(lab, BASELINE)
    broken, healthy = lab.host("bookworm"), lab.host("trixie")
    before = snapshot(broken)
    with nft_replaced(broken, NFT_APPLY_FAILS):
        rc, results = firewall(lab, {"allow": CHANGED, "confirm_timeout": 30})
    assert rc != 0
    result = results[broken.name]
    assert result.get("failed") is True and "rollback" not in result, result
    assert "applying the new rules" in result["msg"] and "simulated failure of nft -f" in result["msg"], result["msg"]
    # The other host is not held back by the broken one.
    assert results[healthy.name]["changed"] is True and results[healthy.name]["confirmed"] is True

    after = snapshot(broken)
    assert after["own"] == before["own"]
    assert after["ruleset"] == before["ruleset"]
    assert after["persisted"] == before["persisted"] and after["conf"] == before["conf"]
    assert after["rollback_timers"].strip() == "", after["rollback_timers"]  # disarmed
    assert not rollback_left(after)
    assert "armed" not in after["state_files"]  # nothing left armed
    # The module's record still matches the live table: the previous allowlist changes nothing.
    rc, results = firewall(lab, {"allow": BASELINE, "confirm_timeout": 30}, hosts=broken.name)
    assert rc == 0 and results[broken.name]["changed"] is False, results
    ensure(lab, BASELINE)
    assert_all_reachable(lab)


def test_syntax_error_leaves_the_previous_rules(lab):
    """nft -c -f rejects the new table (a stand-in nft misspells "accept" in it): nothing changes.

    The module's options cannot produce a syntax error (comments are cleaned and cut, sources and ports
    validated), so the stand-in injects one into the very file the module validates, and the real nft
    rejects it.
    """
    ensure(lab, BASELINE)
    before = {host.name: snapshot(host) for host in lab.hosts}
    with contextlib.ExitStack() as stack:
        for host in lab.hosts:
            stack.enter_context(nft_replaced(host, NFT_SYNTAX_ERROR))
        rc, results = firewall(lab, {"allow": CHANGED, "confirm_timeout": 30})
    assert rc != 0
    for host in lab.hosts:
        result = results[host.name]
        assert result.get("failed") is True and "rollback" not in result, result
        assert "validating the new rules (nothing was changed)" in result["msg"], result["msg"]
        assert "syntax error" in result["msg"], result["msg"]
    assert_unchanged(lab, before)
    assert_all_reachable(lab)


def test_invalid_port_range_fails_before_anything_changes(lab):
    ensure(lab, BASELINE)
    before = {host.name: snapshot(host) for host in lab.hosts}
    rc, results = firewall(lab, {"allow": [{"port": 22}, {"port": "100-90"}]})
    assert rc != 0
    for result in results.values():
        assert result["failed"] is True and "invocation" not in result, result  # the module never ran
        assert result["msg"] == "allow[1].port: '100-90' is a range whose start is above its end"
    assert_unchanged(lab, before)
    assert_all_reachable(lab)


@pytest.mark.parametrize("args, message", [
    ({"allow": [{"port": 22, "protocol": "icmp"}]}, "allow[0].protocol: 'icmp' must be one of: tcp, udp"),
    ({"allow": BASELINE, "confirm_timeout": -1}, "confirm_timeout: -1 must be within 0-3600 seconds"),
    ({"allow": [{"port": 8080}], "keep_management_port": False},
     "This connection uses port 22/tcp and keep_management_port=false, but no allow entry opens 22/tcp: applying "
     "would cut it. Allow the port in allow, or keep the management port"),
], ids=["protocol-icmp", "confirm-timeout-negative", "closing-this-connection"])
def test_bad_input_fails_naming_the_field(lab, args, message):
    ensure(lab, BASELINE)
    before = {host.name: snapshot(host) for host in lab.hosts}
    rc, results = firewall(lab, args)
    assert rc != 0
    for result in results.values():
        assert result["failed"] is True and "invocation" not in result, result
        assert result["msg"] == message
    assert_unchanged(lab, before)
    assert_all_reachable(lab)


def test_an_entry_for_the_other_family_does_not_count_for_this_connection(lab):
    # 22 for IPv6 only while the controller comes over IPv4: the host sees that on this SSH session and refuses
    # before anything changes, naming the entry.
    ensure(lab, BASELINE)
    before = {host.name: snapshot(host) for host in lab.hosts}
    rc, results = firewall(lab, {"allow": [{"port": 22, "family": "ipv6"}, {"port": 8080}],
                                 "keep_management_port": False})
    assert rc != 0
    for result in results.values():
        assert result["failed"] is True, result
        assert result["msg"] == ("keep_management_port: false, but allow[0] opens 22/tcp for IPv6 only, but this "
                                 "connection uses IPv4: applying would cut this connection (nothing was changed)")
    assert_unchanged(lab, before)
    assert_all_reachable(lab)


def test_absent_removes_only_what_the_firewall_added(lab):
    ensure(lab, BASELINE)
    before = {host.name: snapshot(host) for host in lab.hosts}
    rc, results = firewall(lab, {"state": "absent"})
    assert rc == 0, results
    for host in lab.hosts:
        result, after, original = results[host.name], snapshot(host), lab.original[host.name]
        assert result["changed"] is True, result
        assert result["diff"] == {"before": before[host.name]["own"], "after": ""}
        assert after["own"] is None and OWN_TABLE not in after["tables"]
        assert after["persisted"] is None
        assert after["ruleset"] == without_own_table(before[host.name]["ruleset"])
        assert after["foreign"] == original["foreign"]
        assert after["conf"] == original["conf"], "the rest of /etc/nftables.conf must stay as Debian shipped it"
        assert not rollback_left(after)
    assert_reach(lab, NO_FIREWALL)

    again = {host.name: snapshot(host) for host in lab.hosts}
    rc, results = firewall(lab, {"state": "absent"})
    assert rc == 0 and all(result["changed"] is False for result in results.values()), results
    assert_unchanged(lab, again)
    assert_all_reachable(lab)
