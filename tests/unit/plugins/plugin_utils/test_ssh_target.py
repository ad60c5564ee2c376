# Copyright (c) Portcullis contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The port and host the controller's ssh really uses (`ssh -G` through a fake runner, and the real ssh on a
made-up host), and the host key a server presents (a paramiko server on 127.0.0.1, loopback only)."""

from __future__ import annotations

import io
import os
import shlex
import shutil
import socket
import subprocess
import sys
import threading
import time

import paramiko
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ansible_collections.portcullis.hardening.plugins.plugin_utils import _ssh_target
from ansible_collections.portcullis.hardening.plugins.plugin_utils._ssh_target import (
    PARAMIKO_MISSING,
    SSH_G_TIMEOUT,
    SshTarget,
    SshTargetError,
    fingerprint,
    host_key_algorithms,
    presented_host_key,
    same_host_key,
    ssh_config,
    ssh_config_port,
)

# What `ssh -G` prints (shortened): one "keyword value" per line, keywords in lower case.
SSH_G_OUTPUT = """\
host web1
user deploy
hostname 192.0.2.10
port 2200
addressfamily any
identityfile ~/.ssh/id_ed25519
identityfile ~/.ssh/id_rsa
hostkeyalias web1-old
proxyjump bastion.example
"""


class Runner:
    """The run(argv, timeout) seam: records each call, answers (rc, stdout, stderr) or raises."""

    def __init__(self, answer=(0, SSH_G_OUTPUT, "")):
        self.answer = answer
        self.calls = []

    def __call__(self, argv, timeout):
        self.calls.append((argv, timeout))
        if isinstance(self.answer, BaseException):
            raise self.answer
        return self.answer


# --- ssh -G ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("settings, argv", [
    ({}, ["ssh", "-G", "--", "web1"]),
    ({"port": 2222, "user": "deploy"}, ["ssh", "-G", "-o", "Port=2222", "-o", 'User="deploy"', "--", "web1"]),
    ({"port": "2222"}, ["ssh", "-G", "-o", "Port=2222", "--", "web1"]),
    # Ansible's order, which decides (ssh takes the first value): ssh_args, port and user, common, extra.
    ({"ssh_args": "-C -o ControlMaster=auto -o ControlPersist=60s -F /etc/portcullis/ssh_config",
      "port": 22, "user": "deploy",
      "ssh_common_args": "-o ProxyJump='jump@bastion.example:2022'", "ssh_extra_args": "-p 2200"},
     ["ssh", "-G", "-C", "-o", "ControlMaster=auto", "-o", "ControlPersist=60s", "-F", "/etc/portcullis/ssh_config",
      "-o", "Port=22", "-o", 'User="deploy"', "-o", "ProxyJump=jump@bastion.example:2022", "-p", "2200",
      "--", "web1"]),
    ({"ssh_args": '-o "ProxyCommand=ssh -W %h:%p jump"  ', "ssh_common_args": None, "ssh_extra_args": ""},
     ["ssh", "-G", "-o", "ProxyCommand=ssh -W %h:%p jump", "--", "web1"]),
    ({"ssh_executable": "/opt/openssh/bin/ssh", "user": ""}, ["/opt/openssh/bin/ssh", "-G", "--", "web1"]),
])
def test_ssh_config_runs_ssh_g_with_the_connection_options(settings, argv):
    run = Runner()
    ssh_config("web1", run=run, **settings)
    assert run.calls == [(argv, SSH_G_TIMEOUT)]


def test_ssh_config_reads_what_ssh_prints():
    assert ssh_config("web1", port=22, run=Runner()) == SshTarget(
        host="web1", hostname="192.0.2.10", port=2200, user="deploy", hostkeyalias="web1-old",
        proxyjump="bastion.example", proxycommand=None, fallback=None)


def test_ssh_config_without_a_host_key_alias_or_proxy():
    target = ssh_config("web1", run=Runner((0, "user root\nhostname web1\nport 22\n", "")))
    assert (target.hostname, target.port, target.user, target.hostkeyalias, target.proxyjump) == (
        "web1", 22, "root", None, None)


def test_ssh_config_port():
    run = Runner()
    assert ssh_config_port("web1", "deploy", 22, "-F /dev/null", run=run) == 2200
    assert run.calls[0][0] == ["ssh", "-G", "-F", "/dev/null", "-o", "Port=22", "-o", 'User="deploy"', "--", "web1"]


@pytest.mark.parametrize("port, expected", [(None, 22), (2222, 2222)])
def test_ssh_config_falls_back_only_when_ssh_is_not_installed(port, expected):
    target = ssh_config("web1", user="deploy", port=port, run=Runner(FileNotFoundError(2, "No such file", "ssh")))
    assert (target.hostname, target.port, target.user) == ("web1", expected, "deploy")
    assert target.fallback == ("ssh is not installed on the controller, so its configuration could not be read: "
                               "assuming port %d" % expected)


@pytest.mark.parametrize("answer, message", [
    ((255, "", "Pseudo-terminal will not be allocated because stdin is not a terminal.\r\n"
      "Can't open user config file /nowhere: No such file or directory\n"),
     r"^`ssh -G -F /nowhere -- web1` failed \(rc=255\): Can't open user config file /nowhere: No such file"),
    ((255, "", ""), r"failed \(rc=255\): no message$"),
    ((0, "user root\nhostname web1\n", ""), r"^`ssh -G -F /nowhere -- web1` printed no port$"),
    ((0, "port twenty-two\n", ""), r"printed no port$"),
    (subprocess.TimeoutExpired(["ssh"], SSH_G_TIMEOUT), r"^`ssh -G -F /nowhere -- web1` did not answer within 10 s$"),
    (PermissionError(13, "Permission denied", "ssh"), r"^`ssh -G -F /nowhere -- web1` cannot be run: .*Permission"),
])
def test_ssh_config_errors(answer, message):
    with pytest.raises(SshTargetError, match=message):
        ssh_config("web1", ssh_args="-F /nowhere", run=Runner(answer))


@pytest.mark.skipif(shutil.which("ssh") is None, reason="OpenSSH's ssh is not installed")
def test_ssh_config_with_the_real_ssh(tmp_path):
    """`ssh -G` prints the configuration and connects nowhere; -F replaces ~/.ssh/config and /etc/ssh/ssh_config."""
    config = tmp_path / "ssh config"
    config.write_text("Host portcullis-made-up-host.invalid\n    HostName 192.0.2.44\n    Port 2299\n"
                      "    User lab\n    HostKeyAlias lab-alias\n")
    ssh_args = "-F %s" % shlex.quote(str(config))
    target = ssh_config("portcullis-made-up-host.invalid", ssh_args=ssh_args)
    assert target == SshTarget(host="portcullis-made-up-host.invalid", hostname="192.0.2.44", port=2299, user="lab",
                               hostkeyalias="lab-alias")
    # The inventory's port and user come after ssh_args, before ssh_common_args: the first value counts.
    assert ssh_config_port("portcullis-made-up-host.invalid", port=2200, ssh_args=ssh_args) == 2200
    assert ssh_config_port("portcullis-made-up-host.invalid", port=2200, ssh_args=ssh_args + " -o Port=2301") == 2301
    assert ssh_config_port("portcullis-made-up-host.invalid", ssh_args=ssh_args, ssh_extra_args="-p 2302") == 2302
    assert ssh_config_port("portcullis-made-up-host.invalid", port=2200, ssh_args=ssh_args,
                           ssh_common_args="-p 2303") == 2200
    assert ssh_config("another-made-up-host.invalid", user="ops", ssh_args=ssh_args).user == "ops"
    with pytest.raises(SshTargetError, match=r"failed \(rc=255\): .*Bad configuration option"):
        ssh_config("portcullis-made-up-host.invalid", ssh_args=ssh_args + " -o NoSuchOption=1")


# --- host keys: a server on 127.0.0.1 that goes as far as the key exchange -------------------------------

def ed25519_key():
    """paramiko cannot generate Ed25519 keys: generate one with cryptography and load it."""
    pem = Ed25519PrivateKey.generate().private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                                     serialization.NoEncryption())
    return paramiko.Ed25519Key(file_obj=io.StringIO(pem.decode("ascii")))


@pytest.fixture(scope="module")
def keys():
    return {"ed25519": ed25519_key(), "ecdsa": paramiko.ECDSAKey.generate(), "rsa": paramiko.RSAKey.generate(2048),
            "other_ed25519": ed25519_key()}


class KeyServer:
    """Presents `host_keys` to every client on a loopback port; accepts no login. One client at a time, each
    given at most CLIENT_SECONDS."""

    CLIENT_SECONDS = 5

    def __init__(self, host_keys, speak_ssh=True):
        self.host_keys = host_keys
        self.speak_ssh = speak_ssh
        self.clients = 0
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(4)
        self.listener.settimeout(0.1)
        self.port = self.listener.getsockname()[1]
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        while not self.stopping.is_set():
            try:
                connection, _peer = self.listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            self.clients += 1
            if self.speak_ssh:
                self.negotiate(connection)
            else:  # a silent TCP service: no banner, ever
                self.stopping.wait(self.CLIENT_SECONDS)
            connection.close()

    def negotiate(self, connection):
        transport = paramiko.Transport(connection)
        for key in self.host_keys:
            transport.add_server_key(key)
        try:
            transport.start_server(server=paramiko.ServerInterface())
        except (paramiko.SSHException, EOFError, OSError):
            pass  # the client asked for a key type this server lacks
        deadline = time.monotonic() + self.CLIENT_SECONDS
        while transport.is_active() and time.monotonic() < deadline and not self.stopping.is_set():
            time.sleep(0.02)
        transport.close()

    def stop(self):
        self.stopping.set()
        self.listener.close()
        self.thread.join(self.CLIENT_SECONDS + 1)
        assert not self.thread.is_alive()


@pytest.fixture
def servers():
    started = []

    def start(*host_keys, speak_ssh=True):
        server = KeyServer(host_keys, speak_ssh)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def test_presented_host_key_in_paramikos_order(servers, keys):
    server = servers(keys["rsa"], keys["ecdsa"], keys["ed25519"])
    assert presented_host_key("127.0.0.1", server.port, 5) == ("ssh-ed25519", keys["ed25519"].get_base64())
    assert server.clients == 1


@pytest.mark.parametrize("key_types, expected", [
    (("ssh-rsa",), "rsa"),
    (("rsa-sha2-256",), "rsa"),
    (("ecdsa-sha2-nistp256",), "ecdsa"),
    (("ssh-ed25519", "ssh-rsa"), "ed25519"),
    (("ecdsa-sha2-nistp521", "ssh-rsa"), "rsa"),          # the first type the server has
])
def test_presented_host_key_of_a_pinned_type(servers, keys, key_types, expected):
    server = servers(keys["rsa"], keys["ecdsa"], keys["ed25519"])
    key = keys[expected]
    assert presented_host_key("127.0.0.1", server.port, 5, key_types) == (key.get_name(), key.get_base64())


def test_presented_host_key_of_a_type_the_server_lacks(servers, keys):
    server = servers(keys["rsa"])
    with pytest.raises(SshTargetError, match=r"^127\.0\.0\.1:%d: " % server.port):
        presented_host_key("127.0.0.1", server.port, 5, ("ssh-ed25519",))


def test_presented_host_key_of_a_closed_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(SshTargetError, match=r"^127\.0\.0\.1:%d: cannot connect: " % port):
        presented_host_key("127.0.0.1", port, 2)


def test_presented_host_key_of_a_service_that_never_speaks_ssh_is_bounded(servers):
    server = servers(speak_ssh=False)
    started = time.monotonic()
    with pytest.raises(SshTargetError, match=r"^127\.0\.0\.1:%d: " % server.port):
        presented_host_key("127.0.0.1", server.port, 0.5)
    assert time.monotonic() - started < 4


def test_presented_host_key_needs_paramiko(monkeypatch):
    monkeypatch.setattr(_ssh_target, "HAS_PARAMIKO", False)
    with pytest.raises(SshTargetError, match="^%s$" % PARAMIKO_MISSING.replace("(", r"\(").replace(")", r"\)")):
        presented_host_key("127.0.0.1", 22, 1)


def test_the_module_imports_without_paramiko():
    """ansible-test's import test loads plugins without optional packages: the import must be guarded."""
    code = ("import sys; sys.modules['paramiko'] = None\n"
            "from ansible_collections.portcullis.hardening.plugins.plugin_utils import _ssh_target\n"
            "print(_ssh_target.HAS_PARAMIKO, _ssh_target.paramiko)\n")
    argv = [sys.executable, "-c", code]
    # S603: the test's own interpreter, and a fixed program.
    out = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=60,  # noqa: S603
                         env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))).stdout
    assert out == "False None\n"


def test_same_host_key_of_one_server_on_two_ports(servers, keys):
    old = servers(keys["rsa"], keys["ed25519"])
    new = servers(keys["rsa"], keys["ed25519"])
    same, detail = same_host_key("127.0.0.1", old.port, new.port, 5)
    assert same
    assert detail == "127.0.0.1:%d and 127.0.0.1:%d present the same ssh-ed25519 host key %s" % (
        old.port, new.port, keys["ed25519"].fingerprint)


def test_same_host_key_pins_the_type_the_old_port_presented(servers, keys):
    """Without the pin, the new port would present its ECDSA key, and a comparison would fail for no reason."""
    old = servers(keys["rsa"])
    new = servers(keys["rsa"], keys["ecdsa"])
    same, detail = same_host_key("127.0.0.1", old.port, new.port, 5)
    assert same, detail
    assert "ssh-rsa host key %s" % keys["rsa"].fingerprint in detail


def test_same_host_key_with_a_key_type_preference(servers, keys):
    old = servers(keys["rsa"], keys["ed25519"])
    new = servers(keys["rsa"], keys["other_ed25519"])
    assert not same_host_key("127.0.0.1", old.port, new.port, 5)[0]
    assert same_host_key("127.0.0.1", old.port, new.port, 5, key_types=("ssh-rsa",))[0]


def test_same_host_key_of_another_server(servers, keys):
    old = servers(keys["ed25519"])
    new = servers(keys["other_ed25519"])
    same, detail = same_host_key("127.0.0.1", old.port, new.port, 5)
    assert not same
    assert detail == ("127.0.0.1:%d presents the ssh-ed25519 host key %s, 127.0.0.1:%d another one, ssh-ed25519 %s: "
                      "not the same server" % (old.port, keys["ed25519"].fingerprint, new.port,
                                               keys["other_ed25519"].fingerprint))


def test_same_host_key_when_the_new_port_lacks_the_type(servers, keys):
    old = servers(keys["ed25519"], keys["rsa"])
    new = servers(keys["rsa"])
    same, detail = same_host_key("127.0.0.1", old.port, new.port, 5)
    assert not same
    assert detail.startswith("127.0.0.1:%d presents its ssh-ed25519 host key, 127.0.0.1:%d none of that type: "
                             % (old.port, new.port))


def test_same_host_key_when_the_old_port_does_not_answer(servers, keys):
    new = servers(keys["ed25519"])
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    same, detail = same_host_key("127.0.0.1", closed, new.port, 2)
    assert not same
    assert detail.startswith("cannot read the host key the old port presents: 127.0.0.1:%d: cannot connect" % closed)
    assert new.clients == 0


def test_same_host_key_of_a_name_that_does_not_resolve():
    same, detail = same_host_key("portcullis-made-up-host.invalid", 22, 2222, 1)
    assert not same and detail.startswith("portcullis-made-up-host.invalid cannot be resolved: ")


def test_fingerprint_as_openssh_prints_it(keys):
    assert fingerprint(keys["ed25519"].get_base64()) == keys["ed25519"].fingerprint
    assert fingerprint(keys["rsa"].get_base64()).startswith("SHA256:")


@pytest.mark.parametrize("key_types, known, expected", [
    (("ssh-rsa",), ("ssh-ed25519", "rsa-sha2-512", "rsa-sha2-256"), ["rsa-sha2-512", "rsa-sha2-256"]),
    (("ssh-rsa",), ("ssh-rsa", "rsa-sha2-256"), ["rsa-sha2-256", "ssh-rsa"]),       # an older paramiko
    (("ssh-ed25519", "ssh-rsa", "ssh-ed25519"), ("rsa-sha2-512", "ssh-ed25519"), ["ssh-ed25519", "rsa-sha2-512"]),
])
def test_host_key_algorithms(key_types, known, expected):
    assert host_key_algorithms(key_types, known) == expected


def test_host_key_algorithms_none_known():
    with pytest.raises(SshTargetError, match=r"^no host key algorithm for ssh-dss \(paramiko knows ssh-ed25519\)$"):
        host_key_algorithms(("ssh-dss",), ("ssh-ed25519",))
