# Copyright (c) Portcullis contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The lab harness every end-to-end suite uses (pytest integration tests and Molecule's testinfra tests): probes
from the controller, each on a new connection, and bounded waits.

The lab's hosts (Host) are reached over real SSH with the lab's ssh_config, each call on a new connection, and
ansible runs with the JSON callback (run_play, Host.module). A Lab is either the shared test lab (`make
integration` starts it; its state dir is $PORTCULLIS_LAB_DIR), read from its state dir, or a lab of a suite's
own (own_lab), started with $PORTCULLIS_LAB (run by $PORTCULLIS_LAB_PYTHON) in a temporary state dir and always
taken down by the container and network ids it recorded.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import errno
import glob
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import pytest
import yaml

PROBE_TIMEOUT = 3
# The shared test lab's state dir (`make integration` sets it).
LAB_DIR = os.environ.get("PORTCULLIS_LAB_DIR", "")
RELEASES = ("bookworm", "trixie")
LAB_UP_TIMEOUT = 2700  # the first `up` builds the images with debootstrap
PLAYBOOK_TIMEOUT = 600
# A fresh SSH connection for every call: a reused ControlPersist master would hide a lockout.
FRESH_SSH = "-o ControlMaster=no -o ControlPath=none"
# The change engine's state: armed/ while a change waits for its confirmation, history/<token>/ once it ended.
STATE_DIR = "/var/lib/portcullis"
# Drops new connections to 22 (an established master connection goes on), and removes itself after 30 s: a unit
# that sleeps, not a timer, since every daemon-reload (such as a `systemctl enable`) restarts a transient timer's
# --on-active countdown.
BLOCK_NEW_SSH = ("nft add table inet portcullis_test_blocker && nft add chain inet portcullis_test_blocker input "
                 "'{ type filter hook input priority -10; }' && nft add rule inet portcullis_test_blocker input "
                 "tcp dport 22 ct state new drop && systemd-run --quiet --collect --unit portcullis-test-unblock "
                 "sh -c 'sleep 30; nft delete table inet portcullis_test_blocker'")

# The engine's history on a host, oldest first: [{token, kind, description, armed_at, by, at, status}].
HISTORY = r"""
import json, os
root = "/var/lib/portcullis/history"

def text(*path):
    try:
        with open(os.path.join(root, *path)) as stream:
            return stream.read().strip()
    except OSError:
        return ""

entries = []
for token in sorted(os.listdir(root)) if os.path.isdir(root) else []:
    try:
        manifest = json.loads(text(token, "manifest.json"))
    except ValueError:
        continue
    by, status = text(token, "started", "by").split(), text(token, "started", "status")
    entries.append({"token": token, "kind": manifest.get("kind"), "description": manifest.get("description"),
                    "armed_at": manifest.get("armed_at"), "by": by[0] if by else None,
                    "at": int(by[1]) if len(by) > 1 and by[1].isdigit() else None,
                    "status": int(status) if status.isdigit() else None})
print(json.dumps(sorted(entries, key=lambda entry: (entry["armed_at"] or 0, entry["at"] or 0))))
"""


# --- probes and waits -----------------------------------------------------------------------------

def probe(address, protocol, port):
    """One new connection (TCP) or exchange (UDP) from the controller to a lab address."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    if protocol == "tcp":
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.settimeout(PROBE_TIMEOUT)
            try:
                sock.connect((address, port))
            except socket.timeout:
                return "filtered"
            except ConnectionRefusedError:
                return "refused"
            except OSError as exc:
                # A firewall's ICMP "administratively prohibited" (firewalld's reject): no route, or not permitted.
                if exc.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EACCES, errno.EPERM):
                    return "rejected"
                raise
            return "open"
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.settimeout(PROBE_TIMEOUT)
        sock.connect((address, port))
        for _attempt in range(2):  # UDP may lose a datagram
            try:
                sock.send(b"portcullis-test probe\n")
                if sock.recv(2048):
                    return "answered"
            except socket.timeout:
                continue
            except ConnectionRefusedError:
                return "refused"
    return "silent"


def probe_all(targets):
    """probe() every (address, protocol, port) of `targets` at once: {target: what it gave}."""
    targets = list(targets)
    if not targets:
        return {}
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(targets)) as pool:
        futures = {target: pool.submit(probe, *target) for target in targets}
        return {target: future.result() for target, future in futures.items()}


def molecule_lab_ipv6(testinfra_host, firewall="none"):
    """A Molecule scenario's lab host (testinfra `host`): its IPv6 address as the lab's inventory records it, checked
    against the host's own addresses, or None (an IPv4-only lab). The release groups hold the hosts' variables;
    a flavour group (ufw, firewalld) only names them."""
    hostvars = testinfra_host.ansible.get_variables()
    inventory = os.path.join(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"], "lab", "inventory.yml")
    with open(inventory, encoding="utf-8") as stream:
        groups = yaml.safe_load(stream)["all"]["children"]["portcullis_lab"]["children"]
    lab_hosts = {}
    for group in groups.values():
        lab_hosts.update({name: variables for name, variables in group["hosts"].items() if variables})
    lab_host = lab_hosts[hostvars["inventory_hostname"]]
    assert lab_host["ansible_host"] == hostvars["ansible_host"]
    assert lab_host.get("portcullis_lab_firewall", "none") == firewall
    address = lab_host.get("portcullis_lab_ipv6")
    if address:
        assert address in testinfra_host.check_output("ip -6 -o addr show scope global"), "not the host's address"
    return address


def ss_sockets(text):
    """{(protocol, family, address, port)} of every socket in `ss -H -lntu` output: a bound device dropped
    (127.0.0.53%lo, [fe80::1]%eth0), and * (an IPv6 socket bound to :: that accepts IPv4 too) as ::."""
    sockets = set()
    for line in text.splitlines():
        fields = line.split()
        if not fields:
            continue
        address, port = fields[4].rsplit(":", 1)
        address = address.split("%", 1)[0].strip("[]")
        if address == "*":
            address = "::"
        sockets.add((fields[0], "ipv6" if ":" in address else "ipv4", address, int(port)))
    return sockets


def wait_for(condition, seconds, what):
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("%s: not within %d s" % (what, seconds))
        time.sleep(1)


def in_background(function, *args, **kwargs):
    """Run function(*args, **kwargs) in a thread of its own; its Future."""
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    future = pool.submit(function, *args, **kwargs)
    pool.shutdown(wait=False)
    return future


# --- ansible --------------------------------------------------------------------------------------

def ansible_env(**extra):
    """Environment for ansible commands: fresh SSH connections, the lab's host keys checked."""
    return dict(os.environ, **dict({"ANSIBLE_SSH_ARGS": FRESH_SSH, "ANSIBLE_HOST_KEY_CHECKING": "True",
                                    "ANSIBLE_CALLBACK_RESULT_FORMAT": "json"}, **extra))


def collections_path():
    """Where ansible finds portcullis.hardening: ANSIBLE_COLLECTIONS_PATH, else the PYTHONPATH entry; or None."""
    if os.environ.get("ANSIBLE_COLLECTIONS_PATH"):
        return os.environ["ANSIBLE_COLLECTIONS_PATH"]
    for entry in os.environ.get("PYTHONPATH", "").split(os.pathsep):
        if entry and os.path.isdir(os.path.join(entry, "ansible_collections", "portcullis", "hardening")):
            return entry
    return None


def collection_tarball():
    """The tarball `make collection` built: $PORTCULLIS_TARBALL (the Makefile sets it), else next to the install."""
    path = os.environ.get("PORTCULLIS_TARBALL")
    if not path:
        found = sorted(glob.glob(os.path.join(collections_path() or ".", "..", "portcullis-hardening-*.tar.gz")))
        path = found[-1] if found else ""
    if not os.path.isfile(path):
        pytest.fail("no collection tarball: set PORTCULLIS_TARBALL to build/portcullis-hardening-*.tar.gz "
                    "(`make integration` does)", pytrace=False)
    return path


def _json_output(completed, what):
    try:
        return json.loads(completed.stdout)
    except ValueError:
        raise AssertionError("%s printed no JSON (rc=%d): %s %s" % (
            what, completed.returncode, completed.stdout[-3000:], completed.stderr[-3000:])) from None


def run_play(inventory, tasks, hosts, extra_args=(), fresh=True, control_dir=None, timeout=PLAYBOOK_TIMEOUT, **env):
    """Run one play of `tasks` on `hosts` with the JSON callback; return (CompletedProcess, {task name: {host:
    result}}). Fresh SSH connections, unless fresh=False (then Ansible's default, a ControlPersist master reused by
    every task, in control_dir). `env`: more environment variables."""
    workdir = tempfile.mkdtemp(prefix="portcullis-play-")
    try:
        playbook = os.path.join(workdir, "play.yml")
        with open(playbook, "w", encoding="utf-8") as stream:  # JSON is YAML
            json.dump([{"name": "Portcullis test", "hosts": hosts, "gather_facts": False, "tasks": tasks}], stream,
                      indent=1)
        play_env = ansible_env(ANSIBLE_STDOUT_CALLBACK="ansible.posix.json", ANSIBLE_LOAD_CALLBACK_PLUGINS="1",
                               ANSIBLE_SSH_CONTROL_PATH_DIR=control_dir or os.path.join(workdir, "cp"), **env)
        if not fresh:
            play_env.pop("ANSIBLE_SSH_ARGS", None)
        completed = subprocess.run(["ansible-playbook", "-i", inventory, playbook] + list(extra_args),
                                   capture_output=True, text=True, timeout=timeout, env=play_env, check=False)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    output = _json_output(completed, "ansible-playbook")
    results = {}
    for play in output["plays"]:
        for task in play["tasks"]:
            results[task["task"]["name"]] = task["hosts"]
    return completed, results


def run_module(inventory, pattern, name, args="", become_user=None, extra=(), timeout=300, **env):
    """Run one module with `ansible` on the hosts `pattern` matches (JSON callback, fresh SSH connections, pipelining);
    return {host: result}. args: a string (k=v or JSON) or a dict; extra: more ansible arguments (--check, --diff)."""
    command = ["ansible", pattern, "-i", inventory, "-m", name] + list(extra)
    if args:
        command += ["-a", args if isinstance(args, str) else json.dumps(args)]
    if become_user:
        command += ["--become", "--become-user", become_user]
    module_env = ansible_env(ANSIBLE_LOAD_CALLBACK_PLUGINS="1", ANSIBLE_STDOUT_CALLBACK="ansible.posix.json",
                             ANSIBLE_PIPELINING="1", **env)
    completed = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=module_env, check=False)
    output = _json_output(completed, "ansible %s on %s" % (name, pattern))
    return output["plays"][0]["tasks"][0]["hosts"]


def stop_masters(control_dir):
    """Stop the ControlPersist masters ansible left in `control_dir` (by their sockets), then remove it."""
    for name in os.listdir(control_dir):
        subprocess.run(["ssh", "-o", "ControlPath=" + os.path.join(control_dir, name), "-O", "exit", "unused"],
                       capture_output=True, text=True, timeout=30, check=False)
    shutil.rmtree(control_dir, ignore_errors=True)


# --- the lab --------------------------------------------------------------------------------------

class Host:
    """One lab host, reached over real SSH with the lab's ssh_config, each call on a new connection."""

    def __init__(self, lab, name, hostvars):
        self.lab = lab
        self.name = name
        self.hostvars = hostvars

    @property
    def inventory(self):
        return self.lab.inventory

    @property
    def address(self):
        return self.hostvars["ansible_host"]

    @property
    def ipv6(self):
        return self.hostvars.get("portcullis_lab_ipv6")

    @property
    def release(self):
        return self.hostvars["portcullis_lab_release"]

    @property
    def firewall(self):
        """The host's firewall flavour: none, ufw (active, 22/tcp allowed) or firewalld (running)."""
        return self.hostvars.get("portcullis_lab_firewall", "none")

    @property
    def container_id(self):
        return self.hostvars["portcullis_lab_container_id"]

    def ssh(self, command, check=True, timeout=120, input_text=None, ipv6=False, port=None, connect_timeout=10):
        """Run a command on the host over a new SSH connection (to `port`, over IPv6 with ipv6=True); return the
        CompletedProcess. command: a shell command line, or an argument list (quoted for the remote shell)."""
        if not isinstance(command, str):
            command = shlex.join(command)
        argv = (["ssh", "-F", self.lab.ssh_config] + FRESH_SSH.split()
                + ["-o", "BatchMode=yes", "-o", "ConnectTimeout=%d" % connect_timeout]
                + (["-p", str(port)] if port else []) + [self.name + ("-v6" if ipv6 else ""), "--", command])
        completed = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, input=input_text,
                                   check=False)
        if check and completed.returncode != 0:
            raise AssertionError("ssh %s%s %r failed (rc=%d): %s%s" % (
                self.name, " -p %d" % port if port else "", command, completed.returncode, completed.stdout[-2000:],
                completed.stderr[-2000:]))
        return completed

    def console(self, command, check=True, timeout=120):
        """Run a shell command in the host's container through `podman exec` by its id, not over SSH: for when SSH
        cannot reach the host, or the lab's files do not know its address yet (after a restart, until up())."""
        completed = self.lab.podman("exec", self.container_id, "sh", "-c", command, timeout=timeout, check=False)
        if check and completed.returncode != 0:
            raise AssertionError("podman exec %s %r failed (rc=%d): %s%s" % (
                self.name, command, completed.returncode, completed.stdout[-2000:], completed.stderr[-2000:]))
        return completed

    def reachable(self, ipv6=False, port=None):
        """Whether a new SSH connection gets in and runs a command."""
        try:
            return self.ssh("true", check=False, timeout=30, ipv6=ipv6, port=port).returncode == 0
        except subprocess.TimeoutExpired:
            return False

    def module(self, name, args="", become_user=None, extra=(), **env):
        """Run a module on the host through `ansible` (a new SSH connection); return its result dict.

        extra: more ansible arguments, such as ["--check", "--diff"]; env: more environment variables.
        """
        return self.lab.module(name, args, hosts=self.name, become_user=become_user, extra=extra, **env)[self.name]

    def probe(self, expected):
        """Probe every (protocol, version, port) of `expected` from the controller; return what each gave."""
        keys = [key for key in expected if key[1] == 4 or self.ipv6]
        reached = probe_all((self.ipv6 if key[1] == 6 else self.address, key[0], key[2]) for key in keys)
        return {key: reached[(self.ipv6 if key[1] == 6 else self.address, key[0], key[2])] for key in keys}

    def expected(self, expected):
        """The entries of `expected` that apply to this host (IPv6 ones only when it has an IPv6 address)."""
        return {key: value for key, value in expected.items() if key[1] == 4 or self.ipv6}

    def armed(self):
        """Whether a change is armed (waiting for its confirmation) on the host."""
        return self.ssh("test -d %s/armed" % STATE_DIR, check=False).returncode == 0

    def history(self, console=False):
        """The change engine's history, oldest first: [{token, kind, description, armed_at, by, at, status}]
        (read through podman exec with console=True)."""
        return json.loads((self.console if console else self.ssh)("python3 -c %s" % shlex.quote(HISTORY)).stdout)


def _lab_command():
    lab = os.environ.get("PORTCULLIS_LAB", "")
    python = os.environ.get("PORTCULLIS_LAB_PYTHON") or sys.executable
    if not lab or not os.path.isfile(lab):
        pytest.fail("set PORTCULLIS_LAB to lab/portcullis_lab.py (and PORTCULLIS_LAB_PYTHON); `make integration` "
                    "does", pytrace=False)
    return [python, lab]


class Lab:
    """A lab by its state dir: the shared one (Lab(LAB_DIR).refresh()), or one of a suite's own (own_lab)."""

    def __init__(self, state_dir):
        self.dir = state_dir
        self.inventory = os.path.join(state_dir, "inventory.yml")
        self.ssh_config = os.path.join(state_dir, "ssh_config")
        self.hosts = []
        self.original = {}  # host name -> what a suite recorded before its first change
        self.firewall = "none"  # the hosts' firewall flavour: what up() last asked for, or what refresh() read

    def cli(self, *args, timeout=600):
        completed = subprocess.run(_lab_command() + ["--state-dir", self.dir] + list(args), capture_output=True,
                                   text=True, timeout=timeout, check=False)
        if completed.returncode != 0:
            raise AssertionError("portcullis_lab.py --state-dir %s %s failed (rc=%d): %s%s" % (
                self.dir, " ".join(args), completed.returncode, completed.stdout[-3000:], completed.stderr[-3000:]))
        return completed.stdout

    def refresh(self):
        """Read the hosts from the lab's inventory (addresses, container ids); return the lab."""
        listing = subprocess.run(["ansible-inventory", "-i", self.inventory, "--list"], capture_output=True,
                                 text=True, timeout=120, check=True)
        hostvars = json.loads(listing.stdout)["_meta"]["hostvars"]
        self.hosts = [Host(self, name, hostvars[name]) for name in sorted(hostvars)]
        flavours = {host.firewall for host in self.hosts}
        if len(flavours) == 1:
            self.firewall = flavours.pop()
        return self

    def up(self, releases=RELEASES, firewall=None):
        """Start (or refresh after a restart) the hosts; re-read inventory, addresses and keys.

        firewall: the hosts' flavour, none, ufw or firewalld; by default the lab's current one (none for a new
        lab), so a plain up() after a restart keeps the hosts (the lab tool removes hosts of another flavour).
        `up` enables and starts the lab's rogue listener units again (and ufw/firewalld, on such hosts)."""
        firewall = firewall or self.firewall
        self.cli("up", "--release", *releases, "--firewall", firewall, timeout=LAB_UP_TIMEOUT)
        self.firewall = firewall
        self.refresh()
        assert sorted(host.release for host in self.hosts) == sorted(releases)
        assert all(host.firewall == firewall for host in self.hosts)

    def down(self):
        """Remove the containers and the network, by the ids the lab recorded."""
        self.cli("down")

    def host(self, release):
        return [host for host in self.hosts if host.release == release][0]

    def podman(self, *args, timeout=180, check=True):
        """podman with the lab's containers.conf; the CompletedProcess."""
        env = dict(os.environ, CONTAINERS_CONF=os.path.join(self.dir, "containers.conf"))
        return subprocess.run(["podman"] + list(args), capture_output=True, text=True, timeout=timeout, env=env,
                              check=check)

    def restart(self, host):
        """Restart the host's container by its id, as a reboot. It comes back with new addresses: call up() to
        refresh the lab's files (which also enables and starts the rogue listener units again)."""
        self.podman("restart", host.container_id)

    def env(self, **extra):
        """`extra`, and where ansible finds portcullis.hardening (when known)."""
        found = collections_path()
        return dict(extra, ANSIBLE_COLLECTIONS_PATH=found) if found else dict(extra)

    def playbook(self, tasks, hosts="all", extra_args=(), fresh=True, control_dir=None, **env):
        """Run a play of `tasks` with the JSON callback; return (CompletedProcess, {task name: {host: result}})."""
        return run_play(self.inventory, tasks, hosts, extra_args, fresh=fresh, control_dir=control_dir,
                        timeout=PLAYBOOK_TIMEOUT, **self.env(**env))

    def module(self, name, args="", hosts="all", become_user=None, extra=(), **env):
        """Run one module on `hosts` through `ansible`; return {host: result}."""
        return run_module(self.inventory, hosts, name, args, become_user=become_user, extra=extra,
                          **self.env(**env))


def _interrupt(signum, _frame):
    raise KeyboardInterrupt("signal %d" % signum)


@contextlib.contextmanager
def own_lab(prepare=None, prefix="portcullis-lab-", releases=RELEASES, firewall="none"):
    """A lab of the caller's own, in a temporary state dir: up, then prepare(lab), yielded, and taken down at the
    end by the container and network ids it recorded, whatever happened in between.

    firewall: the hosts' flavour: none, ufw (active, 22/tcp allowed) or firewalld (running, zone public); the
    hosts are then portcullis-<release>-<firewall>-1, in the inventory groups <release> and <firewall>.

    SIGTERM (a `timeout` around the run, a CI job cancelled) becomes a KeyboardInterrupt meanwhile, after which
    pytest still tears the fixtures down, so the containers go too. The state dir is kept when `down` failed: it
    records what is left to remove.
    """
    if not collections_path():
        pytest.fail("set ANSIBLE_COLLECTIONS_PATH (or PYTHONPATH) to the collections dir holding "
                    "portcullis.hardening", pytrace=False)
    state_dir = tempfile.mkdtemp(prefix=prefix)
    lab = Lab(state_dir)
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        lab.up(releases, firewall)
        if prepare is not None:
            prepare(lab)
        yield lab
    finally:
        try:
            lab.down()
            shutil.rmtree(state_dir)
        finally:
            signal.signal(signal.SIGTERM, previous)
