# Copyright (c) Portcullis contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Host side of the firewall: read the own nftables table, plan, apply and persist through the change engine.

The live table changes under an armed change (module_utils/_transaction.py); persisting happens at commit, while
still armed, so a failure there, a reboot or a lost controller all end with the previous table, live and on disk.
Everything goes through a Host (module_utils/_host.py). Private to the collection.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex

from ansible_collections.portcullis.hardening.plugins.module_utils._allowlist import covering_published, opens_port
from ansible_collections.portcullis.hardening.plugins.module_utils._host import PortcullisError
from ansible_collections.portcullis.hardening.plugins.module_utils._nftables import (
    NFTABLES_CONF,
    PERSIST_PATH as PERSIST_FILE,
    apply_script,
    ensure_include,
    normalise_listing,
    remove_include,
    removal_script,
    rollback_script,
    table_absent,
)
from ansible_collections.portcullis.hardening.plugins.module_utils._procnet import endpoint_text
from ansible_collections.portcullis.hardening.plugins.module_utils._published import describe, port_range
from ansible_collections.portcullis.hardening.plugins.module_utils._systemd import (
    SYSTEMCTL,
    first,
    is_enabled,
    unit_properties,
)
from ansible_collections.portcullis.hardening.plugins.module_utils._transaction import (
    RUN_DIR,
    STATE_DIR,
    RolledBack,
)

KIND = "firewall"
NFT = "nft"
NFTABLES_SERVICE = "nftables.service"
STATE_FILE = STATE_DIR + "/firewall.json"
ROLLBACK_FILE = "firewall-rollback.nft"
NEW_CONF = "#!/usr/sbin/nft -f\n"
# Keys of the state file that the ufw and firewalld backends (module_utils/_backends.py) keep.
OTHER_BACKENDS = ("ufw", "firewalld")


class FirewallError(PortcullisError):
    """A firewall step that failed; the message says which and what is left on the host."""


def sha256(text):
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def exec_start_config(properties):
    """The file nftables.service loads (`nft -f FILE`, `-fFILE`, `--file FILE`, `--file=FILE` in its ExecStart), or
    None."""
    for value in properties.get("ExecStart", []):
        argv_text = value.partition("argv[]=")[2].partition(" ;")[0]
        try:
            argv = shlex.split(argv_text)
        except ValueError:
            continue
        for index, word in enumerate(argv):
            if word in ("-f", "--file"):
                if index + 1 < len(argv):
                    return argv[index + 1]
            elif word.startswith("--file="):
                return word.split("=", 1)[1]
            elif word.startswith("-f") and not word.startswith("--"):
                return word[2:]
    return None


class Nftables:
    """The firewall-related state of one Host: the own table, nftables.service and the persisted files."""

    def __init__(self, host):
        self.host = host

    def live_table(self):
        """(text listing, normalised JSON listing) of the own table, or (None, None) when it does not exist."""
        rc, out, err = self.host.run([NFT, "-j", "list", "table", "inet", "portcullis"])
        if rc != 0:
            if table_absent(rc, err):
                return None, None
            raise FirewallError("reading the portcullis table failed (nft -j list table inet portcullis, rc=%d): %s"
                                % (rc, err.strip()))
        text = self.host.check([NFT, "list", "table", "inet", "portcullis"], "listing the portcullis table",
                               FirewallError)
        return text, normalise_listing(out)

    def load(self, script, step, check_only=False):
        """`nft [-c] -f` a script (written under /run/portcullis, removed afterwards)."""
        path = "%s/firewall-%d.nft" % (RUN_DIR, os.getpid())
        self.host.makedirs(RUN_DIR, mode=0o700)
        self.host.write_private(path, script)
        try:
            self.host.check([NFT] + (["-c"] if check_only else []) + ["-f", self.host.path(path)], step, FirewallError)
        finally:
            self.host.remove(path)

    def service_enabled(self):
        return is_enabled(self.host, NFTABLES_SERVICE)

    def config_path(self):
        """The file nftables.service loads at boot (Debian: /etc/nftables.conf; RHEL, Fedora:
        /etc/sysconfig/nftables.conf), or a FirewallError when no boot-time load is there to persist into."""
        properties = unit_properties(self.host, NFTABLES_SERVICE, ["LoadState", "ExecStart"])
        if first(properties, "LoadState") != "loaded":
            raise FirewallError("persist: %s is not installed on this host, so the rules would not survive a reboot; "
                                "install the nftables package, or set persist: false (nothing was changed)"
                                % NFTABLES_SERVICE)
        path = exec_start_config(properties)
        if not path:
            raise FirewallError("persist: %s does not load a file with `nft -f` (ExecStart: %s), so Portcullis cannot "
                                "tell where to persist; set persist: false (nothing was changed)"
                                % (NFTABLES_SERVICE, "; ".join(properties.get("ExecStart", [])) or "none"))
        return path

    # --- Portcullis's own record -----------------------------------------------------------------

    def state(self):
        text = self.host.read(STATE_FILE)
        try:
            return json.loads(text) if text else {}
        except ValueError:
            return {}

    def save_state(self, state):
        self.host.makedirs(STATE_DIR, mode=0o700)
        self.host.write_private(STATE_FILE, json.dumps(state, sort_keys=True, indent=1) + "\n")


def plan(desired_text, nft):
    """Compare the live own table with the desired one. Reads only."""
    live_text, live_normal = nft.live_table()
    state = nft.state()
    current = (live_normal is not None and state.get("desired_sha256") == sha256(desired_text)
               and state.get("live") == live_normal)
    return {"live_text": live_text, "table_changed": not current}


def persistence_plan(desired_text, nft):
    """What persisting `desired_text` would change: {file, include, service} -> bool, plus the config path."""
    conf_path = nft.config_path()
    conf = nft.host.read(conf_path)
    new_conf, include_changed = ensure_include(conf if conf is not None else NEW_CONF, PERSIST_FILE)
    return {"file": nft.host.read(PERSIST_FILE) != apply_script(desired_text),
            "include": include_changed or conf is None, "service": not nft.service_enabled(),
            "config": conf_path, "_new_conf": new_conf, "_conf_created": conf is None}


def persistence_summary(persistence):
    return dict((key, value) for key, value in persistence.items() if not key.startswith("_"))


def persist(desired_text, nft, persistence):
    """Write the persisted table, the include line and enable the service, as planned; remember what Portcullis
    created so that state=absent removes exactly that."""
    state = nft.state()
    if persistence["file"]:
        if not nft.host.isdir(os.path.dirname(PERSIST_FILE)):
            state["created_dir"] = os.path.dirname(PERSIST_FILE)
        nft.host.write(PERSIST_FILE, apply_script(desired_text), default_mode=0o644)
    if persistence["include"]:
        if persistence["_conf_created"]:
            state["created_conf"] = persistence["config"]
        nft.host.write(persistence["config"], persistence["_new_conf"], default_mode=0o755)
    if persistence["service"]:
        nft.host.check([SYSTEMCTL, "enable", NFTABLES_SERVICE], "enabling %s for boot" % NFTABLES_SERVICE,
                       FirewallError)
        state["enabled_service"] = True  # so that state=absent disables it again, and only then
    nft.save_state(state)


def undo_commands(nft, change_files):
    """(live commands, boot commands, files) that undo a firewall change: the previous table back, and the
    service disabled again when persisting it enabled it."""
    live = [[NFT, "-f", change_files]]
    boot = []
    if not nft.service_enabled():
        disable = [SYSTEMCTL, "disable", NFTABLES_SERVICE]
        live.append(disable)
        boot.append(disable)
    return live, boot


def persisted_paths(nft, persist_rules):
    """The files a firewall change may write: backed up when it is armed."""
    paths = [STATE_FILE]
    if persist_rules:
        paths += [PERSIST_FILE, nft.config_path()]
    return paths


def record_live(desired_text, nft):
    _live_text, live_normal = nft.live_table()
    state = nft.state()
    state.update(desired_sha256=sha256(desired_text), live=live_normal)
    nft.save_state(state)


def remove(nft, check_mode):
    """state=absent: delete the own table and what Portcullis persisted or created; nothing else."""
    live_text, _live_normal = nft.live_table()
    everything = nft.state()
    state = dict((key, value) for key, value in everything.items() if key not in OTHER_BACKENDS)
    conf_path = state.get("created_conf") or exec_start_config(
        unit_properties(nft.host, NFTABLES_SERVICE, ["ExecStart"])) or NFTABLES_CONF
    conf = nft.host.read(conf_path)
    included = conf is not None and remove_include(conf, PERSIST_FILE)[1]
    changed = live_text is not None or nft.host.exists(PERSIST_FILE) or included or bool(state)
    if changed and not check_mode:
        if live_text is not None:
            nft.load(removal_script(), "removing the portcullis table")
        nft.host.remove(PERSIST_FILE)
        if included:
            new_conf = remove_include(conf, PERSIST_FILE)[0]
            if state.get("created_conf") == conf_path and new_conf.strip() in ("", NEW_CONF.strip()):
                nft.host.remove(conf_path)  # Portcullis created it, and nothing else is in it
            else:
                nft.host.write(conf_path, new_conf)
        if state.get("created_dir"):
            nft.host.rmdir(state["created_dir"])  # only when empty: another file there is not ours
        if state.get("enabled_service"):
            nft.host.check([SYSTEMCTL, "disable", NFTABLES_SERVICE], "disabling %s (enabled by Portcullis)"
                           % NFTABLES_SERVICE, FirewallError)
        others = dict((key, value) for key, value in everything.items() if key in OTHER_BACKENDS)
        if others:
            nft.save_state(others)  # what the ufw or firewalld backend recorded is theirs to remove
        else:
            nft.host.remove(STATE_FILE)
    return {"changed": changed, "diff": {"before": live_text or "", "after": ""}}


def rollback_files(live_text):
    """{file name: nft script} that puts the own table back as `live_text` (None: no table)."""
    return {ROLLBACK_FILE: rollback_script(live_text)}


def closing_ports(listeners, rules, kept_ports, established):
    """The ports that listen on the network but that the table will not open, each with its live connections.

    [{"protocol", "port", "listeners": [endpoint text], "established": [peer text]}]: loopback listeners are not
    filtered by an input chain that accepts `lo`, and the kept management ports stay open. An entry limited to some
    sources or a family opens the port (to them): it is not listed.
    """
    closing = {}
    for listener in listeners:
        protocol, port = listener["protocol"], listener["port"]
        if listener["loopback"] or opens_port(rules, protocol, port) or (protocol == "tcp" and port in kept_ports):
            continue
        item = closing.setdefault((protocol, port), {"protocol": protocol, "port": port, "listeners": [],
                                                     "established": []})
        item["listeners"].append(endpoint_text(listener["address"], port))
    for _local, local_port, peer, peer_port in established:
        item = closing.get(("tcp", local_port))
        if item is not None and not peer.is_loopback:
            item["established"].append(endpoint_text(str(peer), peer_port))
    return [closing[key] for key in sorted(closing)]


def closing_warnings(closing):
    """A warning per closing port that live connections use: the table lets them finish (conntrack), but refuses
    every new one, so the clients that hold them lose the service when they reconnect."""
    return ["%d/%s closes: %d established connection%s to it (from %s) may finish, but no new connection will get in" % (
        item["port"], item["protocol"], len(item["established"]), "" if len(item["established"]) == 1 else "s",
        ", ".join(item["established"][:5]) + (" and more" if len(item["established"]) > 5 else ""))
        for item in closing if item["established"]]


def closing_published(published, rules):
    """The published container ports that the forward chain closes (no entry allows them), each as
    {"protocol", "family", "address", "port", "to", "container"}, "to" being the port in words (describe())."""
    closing = []
    for item in published:
        low, high = port_range(item)
        if covering_published(rules, item["protocol"], item["family"], low, high):
            continue
        container = item.get("container") or {}
        closing.append({"protocol": item["protocol"], "family": item["family"], "address": item["address"],
                        "port": item["port"], "to": describe(item), "container": container.get("name")})
    return closing


def apply_armed(engine, token, kind, apply_change):
    """Run `apply_change()` under the armed change `token`; when it fails, roll back now and raise a FirewallError
    that says what the host is in."""
    try:
        apply_change()
    except (PortcullisError, OSError) as exc:
        error = FirewallError("%s; %s" % (exc, engine.rollback_now(token, kind, "apply")))
        error.details = RolledBack.details
        raise error


def armed_result(change, timeout):
    """The `rollback` of a result: what the action plugin confirms, and when the timer fires otherwise."""
    return {"token": change.token, "unit": change.timer, "timeout": timeout, "expires_at": change.expires_at}
