# Copyright (c) Portcullis contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Host side of the firewall: read the own nftables table, plan, apply with an armed rollback, persist.

Private to the collection. Every command goes through one `run(argv) -> (rc, stdout, stderr)` callable (the
module passes AnsibleModule.run_command) and every file through the paths below, so tests can drive it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import shutil
import tempfile

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

NFT = "nft"
STATE_DIR = "/var/lib/portcullis"
STATE_FILE = STATE_DIR + "/firewall.json"
ROLLBACK_UNIT = "portcullis-firewall-rollback-%s"
TOKEN = re.compile(r"^[0-9a-f]{12}$")


class FirewallError(Exception):
    """A step that failed; the message says which and what is left on the host."""


def sha256(text):
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def write_file(path, text, mode=0o644):
    """Write atomically: a temporary file in the same directory, then rename over the target."""
    directory = os.path.dirname(path)
    os.makedirs(directory, mode=0o755, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=".portcullis-", dir=directory)
    try:
        with os.fdopen(handle, "w") as stream:
            stream.write(text)
        os.chmod(temporary, mode)
        os.rename(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


def file_mode(path, default):
    """The permission bits of an existing file (kept when we rewrite it), or `default`."""
    try:
        return os.stat(path).st_mode & 0o7777
    except FileNotFoundError:
        return default


def read_file(path):
    try:
        with open(path) as stream:
            return stream.read()
    except FileNotFoundError:
        return None


def check_command(run, argv, step, error=FirewallError):
    """Run argv; its stdout, or `error` naming the step, the command, its exit code and what it said."""
    rc, out, err = run(argv)
    if rc != 0:
        raise error("%s failed (%s, rc=%d): %s" % (step, shlex.join(argv), rc, (err or out).strip()))
    return out


class CommandHost:
    """A host reached through one `run(argv) -> (rc, stdout, stderr)` callable; check() raises `error`.

    The base of the firewall's Host and of the ssh_port and service_port hosts.
    """

    error = FirewallError

    def __init__(self, run):
        self.run = run

    def check(self, argv, step):
        return check_command(self.run, argv, step, self.error)


class Host(CommandHost):
    """The firewall-related state of the host, through one command runner."""

    def live_table(self):
        """(text listing, normalised JSON listing) of the own table, or (None, None) when it does not exist."""
        rc, out, err = self.run([NFT, "-j", "list", "table", "inet", "portcullis"])
        if rc != 0:
            if table_absent(rc, err):
                return None, None
            raise FirewallError("reading the portcullis table failed (nft -j list table inet portcullis, rc=%d): %s"
                                % (rc, err.strip()))
        text = self.check([NFT, "list", "table", "inet", "portcullis"], "listing the portcullis table")
        return text, normalise_listing(out)

    def validate(self, script_path):
        self.check([NFT, "-c", "-f", script_path], "validating the new rules (nothing was changed)")

    def apply(self, script_path):
        self.check([NFT, "-f", script_path], "applying the new rules (nft applies all or nothing: the previous "
                   "rules are still in place)")

    def arm_rollback(self, token, script_path, timeout):
        unit = ROLLBACK_UNIT % token
        self.check(["systemd-run", "--unit", unit, "--on-active=%ds" % timeout, "--timer-property=AccuracySec=1s",
                    "--description", "Portcullis: restore the previous firewall unless the change is confirmed",
                    NFT, "-f", script_path], "arming the rollback timer")
        return unit

    def rollback_pending(self, token):
        rc, _out, _err = self.run(["systemctl", "is-active", "--quiet", ROLLBACK_UNIT % token + ".timer"])
        return rc == 0

    def disarm(self, token):
        unit = ROLLBACK_UNIT % token
        # Stopping the timer cancels the rollback; the service unit never ran, or ran already (then it is gone).
        self.run(["systemctl", "stop", unit + ".timer"])
        self.run(["systemctl", "reset-failed", unit + ".timer", unit + ".service"])

    def service_enabled(self):
        rc, _out, _err = self.run(["systemctl", "is-enabled", "--quiet", "nftables.service"])
        return rc == 0

    def enable_service(self):
        self.check(["systemctl", "enable", "nftables.service"], "enabling nftables.service for boot")

    def active_managers(self):
        """Other firewall managers that are running: ufw and firewalld."""
        found = []
        rc, _out, _err = self.run(["systemctl", "is-active", "--quiet", "firewalld.service"])
        if rc == 0:
            found.append("firewalld")
        ufw = shutil.which("ufw", path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")
        if ufw:
            rc, out, _err = self.run([ufw, "status"])
            if rc == 0 and "Status: active" in out:
                found.append("ufw")
        return found


def load_state():
    text = read_file(STATE_FILE)
    try:
        return json.loads(text) if text else {}
    except ValueError:
        return {}


def save_state(state):
    write_file(STATE_FILE, json.dumps(state, sort_keys=True, indent=1) + "\n", mode=0o600)


def conf_with_include():
    """(/etc/nftables.conf text that loads the persisted table, whether that differs from the file as it is)."""
    conf = read_file(NFTABLES_CONF)
    new_conf, changed = ensure_include(conf or "#!/usr/sbin/nft -f\n", PERSIST_FILE)
    return new_conf, changed or conf is None


def persistence_plan(desired_text, host):
    """What persisting `desired_text` would change: {file, include, service} -> bool."""
    return {
        "file": read_file(PERSIST_FILE) != apply_script(desired_text),
        "include": conf_with_include()[1],
        "service": not host.service_enabled(),
    }


def persist(desired_text, host, plan):
    if plan["file"]:
        write_file(PERSIST_FILE, apply_script(desired_text))
    if plan["include"]:
        write_file(NFTABLES_CONF, conf_with_include()[0], mode=file_mode(NFTABLES_CONF, 0o755))
    if plan["service"]:
        host.enable_service()
        # Remembered so that state=absent disables it again, and only then.
        state = load_state()
        state["enabled_service"] = True
        save_state(state)


def unpersist():
    """Remove the own persisted file and the include lines that load it; nothing else."""
    changed = False
    if os.path.exists(PERSIST_FILE):
        os.unlink(PERSIST_FILE)
        changed = True
    conf = read_file(NFTABLES_CONF)
    if conf is not None:
        new_conf, removed = remove_include(conf, PERSIST_FILE)
        if removed:
            write_file(NFTABLES_CONF, new_conf, mode=file_mode(NFTABLES_CONF, 0o755))
            changed = True
    return changed


def plan(desired_text, host):
    """Compare the live own table and the persisted files with the desired table. Reads only."""
    live_text, live_normal = host.live_table()
    state = load_state()
    table_current = (live_normal is not None and state.get("desired_sha256") == sha256(desired_text)
                     and state.get("live") == live_normal)
    return {"live_text": live_text, "table_changed": not table_current}


def clear_stale_rollbacks(host):
    """Delete rollback scripts whose timer fired or was cancelled (a rollback that ran leaves its script)."""
    for name in os.listdir(STATE_DIR) if os.path.isdir(STATE_DIR) else []:
        found = re.match(r"^rollback-([0-9a-f]{12})\.nft$", name)
        if found and not host.rollback_pending(found.group(1)):
            os.unlink(os.path.join(STATE_DIR, name))


def apply_table(desired_text, host, previous_text, confirm_timeout, token):
    """Validate, arm the rollback (when confirming), apply in one transaction, record what is live."""
    os.makedirs(STATE_DIR, mode=0o700, exist_ok=True)
    clear_stale_rollbacks(host)
    pending = os.path.join(STATE_DIR, "pending-%s.nft" % token)
    write_file(pending, apply_script(desired_text), mode=0o600)
    try:
        host.validate(pending)
        rollback = None
        if confirm_timeout:
            rollback_path = os.path.join(STATE_DIR, "rollback-%s.nft" % token)
            write_file(rollback_path, rollback_script(previous_text), mode=0o600)
            host.check([NFT, "-c", "-f", rollback_path], "validating the rollback rules (nothing was changed)")
            rollback = {"token": token, "unit": host.arm_rollback(token, rollback_path, confirm_timeout),
                        "timeout": confirm_timeout}
        try:
            host.apply(pending)
        except FirewallError:
            if rollback:
                host.disarm(token)
                os.unlink(rollback_path)
            raise
    finally:
        os.unlink(pending)
    _live_text, live_normal = host.live_table()
    state = load_state()
    state.update(desired_sha256=sha256(desired_text), live=live_normal)
    save_state(state)
    return rollback


def confirm(token, desired_text, host, persist_rules=True):
    """Over a new connection: cancel the rollback, then persist what is live."""
    if not TOKEN.match(token or ""):
        raise FirewallError("confirm: %r is not a rollback token of this module" % (token,))
    if not host.rollback_pending(token):
        raise FirewallError("confirmation came too late: the rollback timer %s.timer is no longer armed, so the "
                            "previous rules were restored" % (ROLLBACK_UNIT % token))
    host.disarm(token)
    rollback_path = os.path.join(STATE_DIR, "rollback-%s.nft" % token)
    if os.path.exists(rollback_path):
        os.unlink(rollback_path)
    if not persist_rules:
        return {}
    persistence = persistence_plan(desired_text, host)
    persist(desired_text, host, persistence)
    return persistence


def remove(host, check_mode):
    """state=absent: delete the own table and its persistence; nothing else."""
    live_text, _live_normal = host.live_table()
    persisted = os.path.exists(PERSIST_FILE) or remove_include(read_file(NFTABLES_CONF) or "", PERSIST_FILE)[1]
    changed = live_text is not None or persisted
    if changed and not check_mode:
        if live_text is not None:
            os.makedirs(STATE_DIR, mode=0o700, exist_ok=True)
            script = os.path.join(STATE_DIR, "remove.nft")
            write_file(script, removal_script(), mode=0o600)
            try:
                host.apply(script)
            finally:
                os.unlink(script)
        unpersist()
        if load_state().get("enabled_service"):
            host.check(["systemctl", "disable", "nftables.service"], "disabling nftables.service (enabled by us)")
        if os.path.exists(STATE_FILE):
            os.unlink(STATE_FILE)
    return {"changed": changed, "diff": {"before": live_text or "", "after": ""}}
