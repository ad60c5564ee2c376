# Copyright (c) Portcullis contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Where the controller's SSH connection to a host really goes, and which host key answers there.

ssh_config() asks OpenSSH itself (`ssh -G`, which prints the configuration and connects nowhere) for the
host name, port, user and host key alias of a connection, given the options Ansible's ssh connection passes:
~/.ssh/config, `-F`, `-p` and `-o Port=` all count, as they do for the real connection.
presented_host_key() reads the host key a server presents in the key exchange, without logging in;
same_host_key() asks two ports for the same key type and compares, to tell that a new port is served by
the same sshd before the controller switches to it.

Private to the collection: controller side, for the action plugins.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import logging
import shlex
import socket
import subprocess

from ansible_collections.portcullis.hardening.plugins.module_utils._procnet import endpoint_text

try:
    import paramiko
except ImportError:  # optional: only the host key functions need it
    paramiko = None
    HAS_PARAMIKO = False
else:
    HAS_PARAMIKO = True

DEFAULT_PORT = 22
SSH_G_TIMEOUT = 10
PARAMIKO_MISSING = "reading a host key needs the Python package paramiko on the controller (pip install paramiko)"
# paramiko names an RSA key ssh-rsa; servers present it under these algorithms (the ssh-rsa algorithm itself,
# SHA-1, is refused by OpenSSH 8.8+ and no longer offered by recent paramiko).
KEY_TYPE_ALGORITHMS = {"ssh-rsa": ("rsa-sha2-512", "rsa-sha2-256", "ssh-rsa")}
# paramiko logs a failed key exchange as an error; the exception says the same, so keep it off stderr.
LOG_CHANNEL = "portcullis.hardening.ssh_target"
logging.getLogger(LOG_CHANNEL).addHandler(logging.NullHandler())


class SshTargetError(Exception):
    """`ssh -G` failed, or a host key could not be read; the message says where and why."""


@dataclasses.dataclass(frozen=True)
class SshTarget:
    """Where `ssh host` goes, as `ssh -G` prints it. fallback says why these are defaults instead (ssh is not
    installed), for the caller to warn; proxyjump or proxycommand set means the controller does not reach
    hostname:port directly."""

    host: str
    hostname: str
    port: int
    user: str | None = None
    hostkeyalias: str | None = None
    proxyjump: str | None = None
    proxycommand: str | None = None
    fallback: str | None = None


def subprocess_run(argv, timeout):
    """(rc, stdout, stderr) of an argument list run without a shell; FileNotFoundError when the program does
    not exist, subprocess.TimeoutExpired after `timeout` seconds."""
    # S603: an argument list, no shell; the program and options are the connection's own settings.
    completed = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout,  # noqa: S603
                               check=False, encoding="utf-8", errors="replace")
    return completed.returncode, completed.stdout, completed.stderr


def split_ssh_args(text):
    """Arguments from an ssh_args-style text, as Ansible's ssh connection splits them (shlex, no empty ones)."""
    return [word.strip() for word in shlex.split(text or "") if word.strip()]


def ssh_g_command(host, user=None, port=None, ssh_args="", ssh_common_args="", ssh_extra_args="",
                  ssh_executable="ssh"):
    """`ssh -G` with the options Ansible's ssh connection gives ssh, in its order, which decides: ssh takes the
    first value of each option. ssh_args, then -o Port= and -o User= (ansible_port, ansible_user), then
    ssh_common_args and ssh_extra_args, then the host (after "--": a host is never an option)."""
    argv = [ssh_executable, "-G"] + split_ssh_args(ssh_args)
    if port is not None:
        argv += ["-o", "Port=%d" % int(port)]
    if user:
        argv += ["-o", 'User="%s"' % user]
    return argv + split_ssh_args(ssh_common_args) + split_ssh_args(ssh_extra_args) + ["--", host]


def parse_ssh_g(text):
    """`ssh -G` output -> {keyword: first value}; keywords are lower case, one per line."""
    values = {}
    for line in text.splitlines():
        keyword, _sep, value = line.partition(" ")
        if keyword and keyword not in values:
            values[keyword] = value.strip()
    return values


def ssh_config(host, user=None, port=None, ssh_args="", *, ssh_common_args="", ssh_extra_args="",
               ssh_executable="ssh", run=subprocess_run, timeout=SSH_G_TIMEOUT):
    """The SshTarget of an ssh connection to `host` with these settings (ansible_host, ansible_user,
    ansible_port, ansible_ssh_args...; None or "" when unset), from `ssh -G`.

    Falls back only when ssh is not installed: to `port`, or 22, with fallback saying so. Raises
    SshTargetError when ssh rejects the options or its configuration, or does not answer within `timeout`
    (a `Match exec` command of the configuration runs during -G too).
    """
    argv = ssh_g_command(host, user, port, ssh_args, ssh_common_args, ssh_extra_args, ssh_executable)
    try:
        rc, out, err = run(argv, timeout)
    except FileNotFoundError:
        port = DEFAULT_PORT if port is None else int(port)
        return SshTarget(host, host, port, user or None, fallback=(
            "%s is not installed on the controller, so its configuration could not be read: assuming port %d"
            % (ssh_executable, port)))
    except subprocess.TimeoutExpired:
        raise SshTargetError("`%s` did not answer within %d s" % (shlex.join(argv), timeout))
    except OSError as exc:  # installed, but cannot be run
        raise SshTargetError("`%s` cannot be run: %s" % (shlex.join(argv), exc))
    if rc != 0:
        message = " ".join(line.strip() for line in err.splitlines()
                           if line.strip() and not line.startswith("Pseudo-terminal will not be allocated"))
        raise SshTargetError("`%s` failed (rc=%d): %s" % (shlex.join(argv), rc, message or "no message"))
    values = parse_ssh_g(out)
    try:
        ssh_port = int(values["port"])
    except (KeyError, ValueError):
        raise SshTargetError("`%s` printed no port" % shlex.join(argv))
    return SshTarget(
        host=host,
        hostname=values.get("hostname") or host,
        port=ssh_port,
        user=values.get("user"),
        hostkeyalias=values.get("hostkeyalias"),
        proxyjump=values.get("proxyjump"),
        proxycommand=values.get("proxycommand"),
    )


def ssh_config_port(host, user=None, port=None, ssh_args="", *, ssh_common_args="", ssh_extra_args="",
                    ssh_executable="ssh", run=subprocess_run):
    """The port an ssh connection to `host` with these settings uses (ssh_config() also says why, when it
    falls back to a default)."""
    return ssh_config(host, user, port, ssh_args, ssh_common_args=ssh_common_args, ssh_extra_args=ssh_extra_args,
                      ssh_executable=ssh_executable, run=run).port


# --- host keys ---------------------------------------------------------------------------------

def fingerprint(key_base64):
    """A key's fingerprint as OpenSSH prints it: SHA256:<base64 without padding>."""
    digest = hashlib.sha256(base64.b64decode(key_base64)).digest()
    return "SHA256:" + base64.b64encode(digest).decode("ascii").rstrip("=")


def host_key_algorithms(key_types, known):
    """The host key algorithms that ask for `key_types` (key types as presented_host_key() names them, or
    algorithm names), in that order, among the `known` ones."""
    algorithms = []
    for key_type in key_types:
        for algorithm in KEY_TYPE_ALGORITHMS.get(key_type, (key_type,)):
            if algorithm in known and algorithm not in algorithms:
                algorithms.append(algorithm)
    if not algorithms:
        raise SshTargetError("no host key algorithm for %s (paramiko knows %s)"
                             % (", ".join(key_types), ", ".join(known)))
    return algorithms


def presented_host_key(address, port, timeout, key_types=None):
    """(key type, base64 of the key) that the SSH server on address:port presents in the key exchange; nothing
    is sent after it, no login is tried.

    key_types: the key types to ask for, in order of preference (such as ("ssh-ed25519",), or the type an
    earlier answer named); a server presents one key per type. None: paramiko's default order. Raises
    SshTargetError when paramiko is missing, nothing answers within `timeout`, or the server is no SSH server
    or has no key of those types.
    """
    if not HAS_PARAMIKO:
        raise SshTargetError(PARAMIKO_MISSING)
    where = endpoint_text(address, port)
    try:
        sock = socket.create_connection((address, port), timeout=timeout)
    except OSError as exc:
        raise SshTargetError("%s: cannot connect: %s" % (where, exc))
    transport = None
    try:
        transport = paramiko.Transport(sock)
        transport.set_log_channel(LOG_CHANNEL + ".paramiko")
        transport.banner_timeout = transport.handshake_timeout = timeout
        if key_types:
            options = transport.get_security_options()
            options.key_types = host_key_algorithms(key_types, options.key_types)
        transport.start_client(timeout=timeout)
        if not transport.is_active():
            raise SshTargetError("%s: the SSH key exchange failed" % where)
        try:
            key = transport.get_remote_server_key()
        except paramiko.SSHException:  # start_client() returns when the timeout passes
            raise SshTargetError("%s: no SSH key exchange within %s s" % (where, timeout))
        return key.get_name(), key.get_base64()
    except (paramiko.SSHException, EOFError, OSError) as exc:
        raise SshTargetError("%s: %s" % (where, str(exc) or type(exc).__name__))
    finally:
        if transport is not None:
            transport.close()
        sock.close()


def same_host_key(address, old_port, new_port, timeout, key_types=None):
    """(True, detail) when new_port presents the host key that old_port presents, asked for the same key type;
    (False, detail) when it presents another key or none of that type, or when either port cannot be asked:
    detail says which. A name is resolved once, so that both ports are asked at the same address."""
    try:
        address = socket.getaddrinfo(address, old_port, type=socket.SOCK_STREAM)[0][4][0]
    except OSError as exc:
        return False, "%s cannot be resolved: %s" % (address, exc)
    old_where, new_where = endpoint_text(address, old_port), endpoint_text(address, new_port)
    try:
        old_type, old_key = presented_host_key(address, old_port, timeout, key_types)
    except SshTargetError as exc:
        return False, "cannot read the host key the old port presents: %s" % exc
    try:
        new_type, new_key = presented_host_key(address, new_port, timeout, (old_type,))
    except SshTargetError as exc:
        return False, "%s presents its %s host key, %s none of that type: %s" % (old_where, old_type, new_where, exc)
    if (new_type, new_key) == (old_type, old_key):
        return True, "%s and %s present the same %s host key %s" % (
            old_where, new_where, old_type, fingerprint(old_key))
    return False, "%s presents the %s host key %s, %s another one, %s %s: not the same server" % (
        old_where, old_type, fingerprint(old_key), new_where, new_type, fingerprint(new_key))
