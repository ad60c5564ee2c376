# Copyright (c) Portcullis contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Build the lab images (debootstrap + podman import), cached by a recipe hash."""

import glob
import hashlib
import json
import os
import queue
import shutil
import signal
import subprocess
import tempfile
import threading
import time

from .context import IMAGE_FILES_DIR
from .util import LabError, file_lock, log, run, tail, warn

RELEASES = ("bookworm", "trixie")
# Firewall flavours: "none" is the plain image; the others add a host firewall (configured at `up`, see hosts.py).
FIREWALLS = ("none", "ufw", "firewalld")
VARIANT = "minbase"
# netbase is required: without /etc/protocols nft cannot resolve "ipv6-icmp".
# iptables (iptables-nft) lets portcullis-lab-publish write the rules dockerd writes, with dockerd's tool.
INCLUDE = ("openssh-server", "python3", "iproute2", "nftables", "sudo", "systemd-sysv", "netbase", "iptables")
# Extra packages per firewall flavour (debootstrap --include resolves their Depends, not their Recommends).
# debootstrap's resolver does not follow virtual packages, so the build fails unless their providers are named:
# polkitd (a Depends of firewalld) needs "default-logind | logind" (libpam-systemd), and on trixie firewalld,
# polkitd and libpam-systemd need "default-dbus-system-bus | dbus-system-bus" (dbus; bookworm's firewalld
# depends on dbus itself).
FIREWALL_PACKAGES = {"none": (), "ufw": ("ufw",), "firewalld": ("firewalld", "libpam-systemd", "dbus")}
RECIPE_LABEL = "portcullis.recipe"
ROGUE_UNITS = tuple("portcullis-rogue-%s.service" % name for name in ("web", "udp", "v6", "loopback"))
IMPORT_CHANGES = ('CMD ["/lib/systemd/systemd"]',)
# Runs inside the new root file system (chroot) after lab/image/ was copied in.
CHROOT_SCRIPT = """\
set -eu
systemctl enable ssh.service
systemctl disable %s
apt-get clean
rm -f /etc/ssh/ssh_host_*
: > /etc/machine-id
""" % " ".join(ROGUE_UNITS)
# Sandboxing settings that make systemd >= 257 (trixie) use seccomp, see FIREWALLD_CHROOT.
SECCOMP_SETTINGS = ("SystemCallFilter=", "SystemCallArchitectures=", "RestrictAddressFamilies=", "LockPersonality=no",
                    "MemoryDenyWriteExecute=no", "PrivateDevices=no", "ProtectClock=no", "ProtectHostname=no",
                    "ProtectKernelLogs=no", "ProtectKernelModules=no", "ProtectKernelTunables=no",
                    "RestrictNamespaces=no", "RestrictRealtime=no", "RestrictSUIDSGID=no")
# firewalld asks polkit (org.freedesktop.PolicyKit1, D-Bus activated) at start.  In a container without
# CAP_SYS_ADMIN, systemd >= 257 cannot start a unit that has User= and any seccomp-based sandboxing setting
# ("Failed to keep CAP_SYS_ADMIN: Operation not permitted", status=217/USER): polkit.service is one, so firewalld
# would wait for polkit and fail.  The drop-in clears exactly those settings; polkitd still runs as user polkitd,
# with the unit's other sandboxing.  systemd 252 (bookworm) starts the unit as it is, so it gets no drop-in.
# The firewalld package enables firewalld.service itself; the check makes a build fail rather than ship an image
# where it would not start.
FIREWALLD_CHROOT = """\
if dpkg --compare-versions "$(dpkg-query -W -f '${Version}' systemd)" ge 257; then
    mkdir -p /etc/systemd/system/polkit.service.d
    cat > /etc/systemd/system/polkit.service.d/portcullis-lab-container.conf <<'EOF'
# Written by the portcullis lab image build: in a container without CAP_SYS_ADMIN, systemd >= 257 cannot
# start a User= unit with seccomp-based sandboxing (status=217/USER), and firewalld needs polkit.
[Service]
%s
EOF
fi
systemctl enable --quiet firewalld.service
systemctl is-enabled --quiet firewalld.service
""" % "\n".join(SECCOMP_SETTINGS)
# Appended to CHROOT_SCRIPT per flavour.  ufw needs nothing here: `up` enables it.
FIREWALL_CHROOT = {"none": "", "ufw": "", "firewalld": FIREWALLD_CHROOT}
DEBOOTSTRAP_TIMEOUT = 1800
HEARTBEAT = 10
# debootstrap "I: <Word> ..." lines that start a phase worth reporting.
PHASES = ("Retrieving", "Extracting", "Installing", "Unpacking", "Configuring", "Base")


def image_ref(release, firewall="none"):
    """Return the local image name of *release* in flavour *firewall*."""
    return "localhost/portcullis-lab:%s" % _tag(release, firewall)


def _tag(release, firewall):
    """Image tag (also used in build file names): ``<release>`` or ``<release>-<firewall>``."""
    if firewall not in FIREWALLS:
        raise LabError("unknown firewall flavour %r (known: %s)" % (firewall, ", ".join(FIREWALLS)))
    return release if firewall == "none" else "%s-%s" % (release, firewall)


def include(firewall="none"):
    """Return the packages debootstrap installs for flavour *firewall*."""
    return INCLUDE + FIREWALL_PACKAGES[firewall]


def chroot_script(firewall="none"):
    """Return the script run in the new root file system for flavour *firewall*."""
    return CHROOT_SCRIPT + FIREWALL_CHROOT[firewall]


def _image_files():
    """Yield (relative path, mode, absolute path) of every file under lab/image/, sorted."""
    for root, dirs, names in os.walk(IMAGE_FILES_DIR):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for name in sorted(names):
            path = os.path.join(root, name)
            # Only the executable bit counts (git keeps nothing else; umask must not change the hash).
            mode = 0o755 if os.stat(path).st_mode & 0o111 else 0o644
            yield os.path.relpath(path, IMAGE_FILES_DIR), mode, path


def recipe_hash(release, firewall="none"):
    """Hash everything that determines an image: release, flavour, packages, script and baked files.

    The "none" flavour hashes exactly what it did before flavours existed, so its cached images stay valid.
    """
    files = []
    for rel, mode, path in _image_files():
        with open(path, "rb") as handle:
            files.append([rel, mode, hashlib.sha256(handle.read()).hexdigest()])
    recipe = {"release": release, "variant": VARIANT, "include": list(include(firewall)),
              "chroot_script": chroot_script(firewall), "import_changes": list(IMPORT_CHANGES), "files": files}
    if firewall != "none":
        recipe["firewall"] = firewall
        recipe["firewall_packages"] = list(FIREWALL_PACKAGES[firewall])
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()


# -- mirror discovery ----------------------------------------------------------

def _host_codename():
    """Return the host's Debian codename from /etc/os-release."""
    try:
        with open("/etc/os-release") as handle:
            for line in handle:
                key, _sep, value = line.strip().partition("=")
                if key == "VERSION_CODENAME":
                    return value.strip("\"'")
    except OSError:
        pass
    raise LabError("cannot read VERSION_CODENAME from /etc/os-release (the lab needs a Debian host)")


def _deb822_entries(path):
    """Yield (types, uris, suites) for each enabled stanza of a deb822 .sources file."""
    with open(path) as handle:
        text = handle.read()
    for stanza in text.split("\n\n"):
        fields, key = {}, None
        for line in stanza.splitlines():
            if line.startswith("#") or not line.strip():
                continue
            if line[0] in " \t" and key:
                fields[key] += " " + line.strip()
                continue
            key, _sep, value = line.partition(":")
            key = key.strip().lower()
            fields[key] = value.strip()
        if fields.get("enabled", "yes").lower() == "no":
            continue
        yield fields.get("types", "").split(), fields.get("uris", "").split(), fields.get("suites", "").split()


def _one_line_entries(path):
    """Yield (types, uris, suites) for each ``deb URI suite ...`` line of a .list file."""
    with open(path) as handle:
        for line in handle:
            words = line.split("#", 1)[0].split()
            if words and words[0] == "deb":
                words = [w for w in words[1:] if not (w.startswith("[") or w.endswith("]") or "=" in w)]
                if len(words) >= 2:
                    yield ["deb"], [words[0]], [words[1]]


def find_mirror():
    """Return the Debian mirror URI the host's apt uses for its main suite (not -security)."""
    codename = _host_codename()
    sources = [(p, _deb822_entries) for p in sorted(glob.glob("/etc/apt/sources.list.d/*.sources"))]
    sources += [(p, _one_line_entries) for p in ["/etc/apt/sources.list"]
                + sorted(glob.glob("/etc/apt/sources.list.d/*.list"))]
    for path, reader in sources:
        if not os.path.isfile(path):
            continue
        for types, uris, suites in reader(path):
            if "deb" in types and codename in suites and not any(s.endswith("-security") for s in suites):
                for uri in uris:
                    if uri.split(":", 1)[0] in ("http", "https", "file"):
                        return uri.rstrip("/")
    raise LabError("no apt source for suite %r found in /etc/apt/sources.list(.d); "
                   "cannot choose a mirror for debootstrap" % codename)


# -- build ---------------------------------------------------------------------

def image_recipe(lab, release, firewall="none"):
    """Return (image id, recipe label) of the local image, or (None, None) if missing."""
    info = lab.inspect("image", image_ref(release, firewall))
    if not info:
        return None, None
    labels = (info.get("Config") or {}).get("Labels") or {}
    return info.get("Id"), labels.get(RECIPE_LABEL)


def build(lab, releases, firewalls=("none",), force=False):
    """Build the images of *releases* x *firewalls* whose recipe changed (or all with *force*)."""
    unknown = [firewall for firewall in firewalls if firewall not in FIREWALLS]
    if unknown:
        raise LabError("unknown firewall flavour(s) %s (known: %s)" % (", ".join(unknown), ", ".join(FIREWALLS)))
    wanted = [(release, firewall) for firewall in firewalls for release in releases]
    lock_dir = "/run/lock" if os.path.isdir("/run/lock") else tempfile.gettempdir()
    with file_lock(os.path.join(lock_dir, "portcullis-lab-build.lock"), "the image build lock",
                   timeout=2 * len(wanted) * DEBOOTSTRAP_TIMEOUT):
        mirror = None
        for release, firewall in wanted:
            ref = image_ref(release, firewall)
            want = recipe_hash(release, firewall)
            old_id, have = image_recipe(lab, release, firewall)
            if have == want and not force:
                log("image %s is up to date (recipe %s)" % (ref, want[:12]))
                continue
            reason = "missing" if not old_id else "rebuild forced" if have == want else "recipe changed"
            log("image %s: %s, building (recipe %s)" % (ref, reason, want[:12]))
            mirror = mirror or find_mirror()
            _build_one(lab, release, firewall, want, mirror)
        # Drop superseded (untagged) lab images that no container uses any more.
        for image_id in lab_image_ids(lab, dangling=True):
            lab.podman("rmi", image_id, check=False)


def lab_image_ids(lab, dangling=False):
    """Return the ids of the images this tool built (optionally only the untagged ones)."""
    args = ["images", "--quiet", "--no-trunc", "--filter", "label=" + RECIPE_LABEL]
    if dangling:
        args += ["--filter", "dangling=true"]
    return sorted(set(lab.podman(*args).stdout.split()))


def _build_one(lab, release, firewall, recipe, mirror):
    """debootstrap *release* with the packages of *firewall*, customise it and import it into podman."""
    started = time.monotonic()
    tag = _tag(release, firewall)
    workdir = tempfile.mkdtemp(prefix="build-%s-" % tag, dir=lab.dir)
    rootfs = os.path.join(workdir, "rootfs")
    log_path = lab.path("build-%s.log" % tag)
    try:
        _debootstrap(release, include(firewall), rootfs, mirror, log_path, tag)
        log("build %s: customising the root file system" % tag)
        _customise(rootfs, chroot_script(firewall))
        log("build %s: importing into podman as %s" % (tag, image_ref(release, firewall)))
        _import(lab, rootfs, release, firewall, recipe)
    finally:
        _remove_tree(workdir)
    log("build %s: done in %.0fs" % (tag, time.monotonic() - started))


def _debootstrap(release, packages, rootfs, mirror, log_path, tag):
    """Run debootstrap, logging everything to *log_path* and reporting progress (lines start with *tag*).

    A line is printed whenever debootstrap enters a new phase (retrieving,
    extracting, unpacking, configuring ...) and every few seconds otherwise.
    """
    cmd = ["debootstrap", "--variant=" + VARIANT, "--include=" + ",".join(packages), release, rootfs, mirror]
    log("build %s: debootstrap %s (full log: %s)" % (tag, " ".join(cmd[1:]), log_path))
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive", LC_ALL="C")
    started = time.monotonic()
    lines = queue.Queue()
    with open(log_path, "w") as log_file:
        try:
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    universal_newlines=True, env=env, start_new_session=True)
        except FileNotFoundError:
            raise LabError("debootstrap not found; run: portcullis_lab.py setup") from None
        threading.Thread(target=_pump, args=(proc.stdout, lines), daemon=True).start()
        phase, count, last_report, last = None, 0, time.monotonic(), ""
        while True:
            try:
                line = lines.get(timeout=1)
            except queue.Empty:
                line = ""
            if line is None:
                break
            now = time.monotonic()
            if now - started > DEBOOTSTRAP_TIMEOUT:
                os.killpg(proc.pid, signal.SIGKILL)
                raise LabError("debootstrap %s took longer than %ss; see %s" % (release, DEBOOTSTRAP_TIMEOUT, log_path))
            if line:
                log_file.write(line)
                last = line.strip()
                word = last[3:].split(" ", 1)[0] if last.startswith("I: ") else None
                count += 1
                if word in PHASES and word != phase:
                    phase = word
                    log("build %s: debootstrap %s" % (tag, last[3:]))
                    last_report = now
                    continue
            if now - last_report >= HEARTBEAT:
                log("build %s: debootstrap ... %s (%d lines so far)" % (tag, last[3:] or last, count))
                last_report = now
        code = proc.wait()
        if code != 0:
            inner = os.path.join(rootfs, "debootstrap", "debootstrap.log")
            if os.path.exists(inner):
                with open(inner, errors="replace") as handle:
                    log_file.write("\n--- %s ---\n%s" % (inner, handle.read()))
    if code != 0:
        with open(log_path, errors="replace") as handle:
            raise LabError("image build failed: debootstrap %s exited %d; last lines of %s:\n%s"
                           % (release, code, log_path, tail(handle.read())))


def _pump(stream, sink):
    """Copy lines from *stream* to the queue *sink*, then put None (end of stream)."""
    for line in stream:
        sink.put(line)
    sink.put(None)


def _customise(rootfs, script):
    """Copy lab/image/ into *rootfs* and run *script* (see chroot_script) inside it."""
    for rel, mode, path in _image_files():
        target = os.path.join(rootfs, rel)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.copyfile(path, target)
        os.chmod(target, mode)
        os.chown(target, 0, 0)
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "DEBIAN_FRONTEND": "noninteractive", "LC_ALL": "C"}
    run(["chroot", rootfs, "/bin/sh", "-c", script], env=env, timeout=300,
        what="customising the image (chroot script)")


def _import(lab, rootfs, release, firewall, recipe):
    """Stream *rootfs* as a tar archive into ``podman import``."""
    cmd = ["podman", "import"]
    for change in IMPORT_CHANGES + ("LABEL %s=%s" % (RECIPE_LABEL, recipe),
                                    "LABEL portcullis.release=%s" % release,
                                    "LABEL portcullis.firewall=%s" % firewall):
        cmd += ["--change", change]
    cmd += ["-", image_ref(release, firewall)]
    tar_path = shutil.which("tar")
    if tar_path is None:
        raise LabError("tar not found (package tar): cannot stream %s into podman import" % rootfs)
    tar = subprocess.Popen([tar_path, "--numeric-owner", "-C", rootfs, "-c", "."], stdout=subprocess.PIPE)
    try:
        imp = subprocess.run(cmd, stdin=tar.stdout, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             universal_newlines=True, env=lab.env(), timeout=600, check=False)
    finally:
        tar.stdout.close()
        tar_code = tar.wait(timeout=60)
    if imp.returncode != 0 or tar_code != 0:
        raise LabError("podman import of %s failed (tar exit %d, podman exit %d):\n%s"
                       % (image_ref(release, firewall), tar_code, imp.returncode, tail(imp.stderr)))


def _remove_tree(path):
    """Delete a build directory, first unmounting anything debootstrap left mounted in it."""
    real = os.path.realpath(path)

    def mounts_below():
        with open("/proc/self/mountinfo") as handle:
            points = [line.split()[4].replace("\\040", " ") for line in handle]
        return sorted((p for p in points if p.startswith(real + os.sep)), key=len, reverse=True)

    for point in mounts_below():
        run(["umount", "-l", point], check=False)
    if mounts_below():
        warn("not deleting %s: still has mounts below it (%s)" % (path, ", ".join(mounts_below())))
        return
    shutil.rmtree(path, ignore_errors=True)
