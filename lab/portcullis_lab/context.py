# Copyright (c) Portcullis contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The lab context: one state directory, its files, its podman settings and state.json."""

import hashlib
import json
import os

from .util import CONTAINERS_CONF, LabError, run, write_file

LAB_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REPO_ROOT = os.path.dirname(LAB_DIR)
IMAGE_FILES_DIR = os.path.join(LAB_DIR, "image")
STATE_VERSION = 1


def default_state_dir():
    """Return $PORTCULLIS_LAB_DIR, or ``<repo>/.lab``."""
    return os.environ.get("PORTCULLIS_LAB_DIR") or os.path.join(REPO_ROOT, ".lab")


class Lab:
    """Everything tied to one state directory.

    Several labs (the demo one, each Molecule scenario) can coexist: each has
    its own state dir, SSH key, inventory and containers.  Container and
    network names carry ``suffix``, a short hash of the state dir path.
    """

    def __init__(self, state_dir):
        self.dir = os.path.abspath(state_dir)
        self.suffix = hashlib.sha256(os.path.realpath(self.dir).encode()).hexdigest()[:6]
        self.containers_conf = self.path("containers.conf")
        self.state_file = self.path("state.json")
        self.key = self.path("id_ed25519")
        self.known_hosts = self.path("known_hosts")
        self.ssh_config = self.path("ssh_config")
        self.default_inventory = self.path("inventory.yml")
        self.lock_file = self.path("lock")

    def path(self, *names):
        """Return a path inside the state dir."""
        return os.path.join(self.dir, *names)

    def ensure_dir(self):
        """Create the state dir (mode 0700) and its containers.conf if missing."""
        os.makedirs(self.dir, mode=0o700, exist_ok=True)
        current = None
        if os.path.exists(self.containers_conf):
            with open(self.containers_conf) as handle:
                current = handle.read()
        if current != CONTAINERS_CONF:
            write_file(self.containers_conf, CONTAINERS_CONF)

    # -- podman ---------------------------------------------------------------

    def env(self):
        """Environment for podman: ours, with CONTAINERS_CONF pointing at the lab's file."""
        env = dict(os.environ)
        env["CONTAINERS_CONF"] = self.containers_conf
        return env

    def podman(self, *args, check=True, timeout=120, input_text=None):
        """Run ``podman ARGS`` with the lab's containers.conf; see util.run."""
        return run(["podman"] + list(args), check=check, timeout=timeout, env=self.env(),
                   input_text=input_text, what="podman " + " ".join(args[:2]))

    def inspect(self, kind, ident):
        """Return podman's inspect dict for a container/network/image, or None if gone."""
        proc = self.podman(kind, "inspect", ident, check=False)
        if proc.returncode != 0:
            return None
        data = json.loads(proc.stdout or "[]")
        return data[0] if data else None

    # -- state.json -----------------------------------------------------------

    def load_state(self):
        """Return the recorded state (empty skeleton when there is none)."""
        state = {"version": STATE_VERSION, "network": None, "hosts": {}}
        if os.path.exists(self.state_file):
            try:
                with open(self.state_file) as handle:
                    state.update(json.load(handle))
            except (OSError, ValueError) as exc:
                raise LabError("cannot read %s (%s); fix or delete it" % (self.state_file, exc)) from None
        return state

    def save_state(self, state):
        """Persist *state* atomically (called after every change, so ids are never lost)."""
        write_file(self.state_file, json.dumps(state, indent=2, sort_keys=True) + "\n", mode=0o600)
