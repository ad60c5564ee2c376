# Copyright (c) Portcullis contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""A host for unit tests: real files under a temporary root, and a command runner that plays systemd.

`systemd-run --on-calendar` arms a timer (nothing runs until the test calls fire()); `systemd-run --wait` and
fire() run the rollback script for real with /bin/sh, with stand-ins for systemctl, nft and semanage first on
PATH (they only log their argument lists), so the script's file work is real and nothing touches this machine's
services or firewall. Other commands answer from `responses`, a list of (argv prefix, (rc, out, err)) pairs; an
answer may also be a function of the argument list (hook()), which returns (rc, out, err), or None to let the
next matching answer (or the default) decide.

Two small models, each off until a test turns it on:
- nft (with_nft()): the Portcullis table is live in a file; `nft -f SCRIPT` from the module and from the rollback
  script alike replaces it with what the script creates, and `nft [-j] list table inet portcullis` lists it (the
  JSON with new handles after every load, as the kernel gives them). Without it nft answers rc=0 and prints nothing.
- enabled units (track_enabled()): `systemctl enable/disable` from the module change what `is-enabled` answers.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess

from ansible_collections.portcullis.hardening.plugins.module_utils._host import Host
from ansible_collections.portcullis.hardening.plugins.module_utils._nftables import removal_script

STAND_INS = ("systemctl", "nft", "semanage", "sshd", "ufw", "firewall-cmd")
# What nft says when the Portcullis table does not exist (nft 1.0.6 and 1.1.3 alike).
NFT_ABSENT = (1, "", "Error: No such file or directory\nlist table inet portcullis\n                ^^^^^^^^^^\n")
NFT_LIST = ["nft", "list", "table", "inet", "portcullis"]
NFT_JSON_LIST = ["nft", "-j", "list", "table", "inet", "portcullis"]


class FakeSystem:
    def __init__(self, root, responses=()):
        self.root = str(root)
        self.calls = []
        self.timers = {}  # unit -> argv of the service the timer starts
        self.stopped = []
        self.responses = list(responses)
        self.enabled = None  # a set of unit names once track_enabled() is called
        self.bin = os.path.join(self.root, ".fake-bin")
        self.log = os.path.join(self.root, ".fake-bin.log")
        self.nft_dir = os.path.join(self.root, ".fake-nft")
        self.nft_live = os.path.join(self.nft_dir, "live.nft")
        self.nft_loads = 0
        os.makedirs(self.bin, exist_ok=True)
        for name in STAND_INS:
            path = os.path.join(self.bin, name)
            with open(path, "w") as stream:
                stream.write('#!/bin/sh\necho "%s $*" >> %s\n' % (name, shlex.quote(self.log)))
                if name == "nft":  # the nft model, when on: the rollback script's `nft -f` loads for real
                    stream.write('if [ "$1" = -f ] && [ -d %s ]; then cp -- "$2" %s; fi\n'
                                 % (shlex.quote(self.nft_dir), shlex.quote(self.nft_live)))
            os.chmod(path, 0o755)

    def respond(self, prefix, rc=0, out="", err=""):
        self.responses.insert(0, (list(prefix), (rc, out, err)))

    def hook(self, prefix, function):
        """Answer commands starting with `prefix` with function(argv) -> (rc, out, err), or None to pass."""
        self.responses.insert(0, (list(prefix), function))

    # --- the nft model ---------------------------------------------------------------------------

    def with_nft(self, table_text=None):
        """Turn the nft model on, with `table_text` as the live Portcullis table (None: there is none)."""
        os.makedirs(self.nft_dir, exist_ok=True)
        if table_text is None:
            if os.path.exists(self.nft_live):
                os.unlink(self.nft_live)
        else:
            with open(self.nft_live, "w") as stream:
                stream.write(removal_script() + table_text)
        return self

    def live_table(self):
        """The live Portcullis table's text, or None when there is none."""
        try:
            with open(self.nft_live) as stream:
                script = stream.read()
        except FileNotFoundError:
            return None
        head = removal_script()
        assert script.startswith(head), "the table was loaded with a script that does not replace it: %r" % script
        return script[len(head):] or None

    def _nft(self, argv):
        if argv[:2] == ["nft", "-f"]:
            with open(argv[2]) as source, open(self.nft_live, "w") as target:
                target.write(source.read())
            self.nft_loads += 1
            return 0, "", ""
        if argv[:3] == ["nft", "-c", "-f"]:
            return (0, "", "") if os.path.exists(argv[3]) else (1, "", "Error: No such file or directory")
        text = self.live_table()
        if argv in (NFT_LIST, NFT_JSON_LIST) and text is None:
            return NFT_ABSENT
        if argv == NFT_LIST:
            return 0, text, ""
        if argv == NFT_JSON_LIST:
            handle = 100 * (self.nft_loads + 1)
            items = [{"metainfo": {"version": "1.0.6", "json_schema_version": 1}},
                     {"table": {"family": "inet", "name": "portcullis", "handle": handle}}]
            items += [{"rule": {"family": "inet", "table": "portcullis", "text": line.strip(),
                                "handle": handle + number}}
                      for number, line in enumerate(text.splitlines(), 1) if line.strip()]
            return 0, json.dumps({"nftables": items}), ""
        return 0, "", ""

    # --- enabled units ---------------------------------------------------------------------------

    def track_enabled(self, *units):
        """Turn the enabled-units model on, with `units` enabled."""
        self.enabled = set(units)
        return self

    def script_commands(self):
        """What the rollback script ran through the stand-ins, one string a command."""
        if not os.path.exists(self.log):
            return []
        with open(self.log) as stream:
            return [line.rstrip("\n") for line in stream]

    def run_script(self, argv):
        env = dict(os.environ, PATH="%s:/usr/bin:/bin" % self.bin)
        done = subprocess.run(argv, capture_output=True, text=True, check=False, env=env)
        return done.returncode, done.stdout, done.stderr

    def fire(self, unit=None):
        """The timer elapses: its service runs the script (as systemd would)."""
        unit = unit or sorted(self.timers)[-1]
        argv = self.timers.pop(unit)
        return self.run_script(argv)

    def __call__(self, argv):
        argv = list(argv)
        self.calls.append(argv)
        for prefix, answer in self.responses:
            if argv[:len(prefix)] == prefix:
                if not callable(answer):
                    return answer
                got = answer(argv)
                if got is not None:
                    return got
        if argv[0] == "nft" and os.path.isdir(self.nft_dir):
            return self._nft(argv)
        if self.enabled is not None and argv[:2] == ["systemctl", "is-enabled"]:
            return (0, "enabled\n", "") if argv[-1] in self.enabled else (1, "disabled\n", "")
        if self.enabled is not None and argv[:2] in (["systemctl", "enable"], ["systemctl", "disable"]):
            (self.enabled.add if argv[1] == "enable" else self.enabled.discard)(argv[-1])
            return 0, "", ""
        if argv[0] == "systemd-run":
            unit = argv[argv.index("--unit") + 1]
            command = argv[argv.index("/bin/sh"):]
            if "--wait" in argv:
                return self.run_script(command)
            self.timers[unit + ".timer"] = command
            return 0, "", ""
        if argv[:2] == ["systemctl", "is-active"]:
            return (0, "", "") if argv[-1] in self.timers else (3, "", "")
        if argv[:2] == ["systemctl", "stop"]:
            self.stopped.append(argv[2])
            self.timers.pop(argv[2], None)
            return 0, "", ""
        if argv[0] == "/bin/sh":
            return self.run_script(argv)
        return 0, "", ""


def fake_host(tmp_path, responses=()):
    """(Host on tmp_path, its FakeSystem)."""
    system = FakeSystem(tmp_path, responses)
    return Host(system, root=str(tmp_path), sleep=lambda _seconds: None), system


def host_file(tmp_path, path):
    return os.path.join(str(tmp_path), path.lstrip("/"))


def write_host_file(tmp_path, path, text):
    local = host_file(tmp_path, path)
    os.makedirs(os.path.dirname(local), exist_ok=True)
    with open(local, "w") as stream:
        stream.write(text)
    return local


def read_host_file(tmp_path, path):
    try:
        with open(host_file(tmp_path, path)) as stream:
            return stream.read()
    except (FileNotFoundError, NotADirectoryError):
        return None


# Not the host's: the fake's own files and what a test keeps beside the host's tree.
FAKE_ENTRIES = (".fake-bin", ".fake-bin.log", ".fake-nft")


def tree(tmp_path, ignore=()):
    """{host path: file bytes, or "<dir>", or "-> target" for a symlink} of everything under tmp_path, less the
    fake's own files and the host paths (and what is under them) in `ignore`, and the directories that lead to
    those (their other entries are still listed one by one)."""
    root = str(tmp_path)
    ignored = tuple("/" + name for name in FAKE_ENTRIES) + tuple(path.rstrip("/") for path in ignore)
    found = {}
    for directory, dirs, files in os.walk(root):
        for name in sorted(dirs + files):
            local = os.path.join(directory, name)
            path = "/" + os.path.relpath(local, root)
            if any(path == skip or path.startswith(skip + "/") for skip in ignored):
                continue
            if os.path.islink(local):
                found[path] = "-> " + os.readlink(local)
            elif os.path.isdir(local):
                if not any(skip.startswith(path + "/") for skip in ignored):
                    found[path] = "<dir>"
            else:
                with open(local, "rb") as stream:
                    found[path] = stream.read()
    return found
