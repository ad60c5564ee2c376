# Copyright (c) Portcullis contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Command line: setup, build, up, down, status."""

import argparse
import os
import shutil
import sys
import time

from . import hosts, image
from .context import Lab, default_state_dir
from .util import LabError, file_lock, log, run, tail, warn

# tool -> Debian package providing it
REQUIRED_TOOLS = {"podman": "podman", "runc": "runc", "debootstrap": "debootstrap", "tar": "tar",
                  "ssh": "openssh-client", "ssh-keygen": "openssh-client", "ip": "iproute2"}
SBIN_PATH = "/usr/local/sbin:/usr/sbin:/sbin"
LOCK_TIMEOUT = 3600  # an `up` that builds both images on a slow mirror can hold the lock this long


def _missing_packages():
    """Return the Debian packages whose tools are not installed."""
    path = os.environ.get("PATH", "") + os.pathsep + SBIN_PATH
    return sorted({pkg for tool, pkg in REQUIRED_TOOLS.items() if not shutil.which(tool, path=path)})


def cmd_setup(lab, _args=None):
    """Install missing host packages (apt) and write the lab's containers.conf."""
    missing = _missing_packages()
    if missing:
        log("installing missing host packages: %s" % " ".join(missing))
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        for cmd in (["apt-get", "update"], ["apt-get", "install", "-y", "--no-install-recommends"] + missing):
            try:
                run(cmd, env=env, timeout=1200, what=" ".join(cmd[:2]))
            except LabError as exc:
                raise LabError("%s missing and %s; install %s as root and retry"
                               % (", ".join(missing), " ".join(str(exc).split()),
                                  " ".join(missing))) from None
    lab.ensure_dir()
    proc = lab.podman("info", "--format", "{{.Host.OCIRuntime.Name}}", check=False)
    if proc.returncode != 0:
        raise LabError("podman does not work with %s:\n%s" % (lab.containers_conf, tail(proc.stderr)))
    log("host ready: podman (runtime %s), debootstrap, ssh; state dir %s" % (proc.stdout.strip(), lab.dir))


def cmd_build(lab, args):
    """Build (or reuse) the images of the requested releases."""
    cmd_setup(lab)
    firewalls = getattr(args, "firewall", None) or ["none"]
    if isinstance(firewalls, str):
        firewalls = [firewalls]  # `up --firewall X`: one flavour
    image.build(lab, args.release or image.RELEASES, firewalls, force=getattr(args, "force", False))


def cmd_up(lab, args):
    """Set up, build and start the lab hosts, then write inventory and ssh_config."""
    started = time.monotonic()
    cmd_build(lab, args)
    inventory = os.path.abspath(args.inventory or lab.default_inventory)
    hosts.up(lab, lab.load_state(), args.release or image.RELEASES, args.hosts, args.rogue, inventory,
             firewall=args.firewall)
    log("lab up in %.0fs" % (time.monotonic() - started))


def cmd_down(lab, args):
    """Remove the lab's containers and network (and with --images, the images)."""
    if os.path.isdir(lab.dir):
        hosts.down(lab, lab.load_state())
    if args.images:
        for image_id in image.lab_image_ids(lab):
            log("removing image %s" % image_id[:19])
            proc = lab.podman("rmi", image_id, check=False)
            if proc.returncode != 0:
                warn("image %s kept: %s" % (image_id[:19], " ".join(proc.stderr.split())))
    log("lab down")


def cmd_status(lab, _args):
    """Show the lab's hosts."""
    hosts.status(lab, lab.load_state())


def parse_args(argv):
    """Build the argument parser and parse *argv*."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--state-dir", default=argparse.SUPPRESS, metavar="DIR",
                        help="lab state directory (default: $PORTCULLIS_LAB_DIR or <repo>/.lab)")
    releases = argparse.ArgumentParser(add_help=False)
    releases.add_argument("--release", nargs="+", action="extend", choices=image.RELEASES, metavar="RELEASE",
                          help="Debian release(s): %s (default: all)" % ", ".join(image.RELEASES))

    parser = argparse.ArgumentParser(prog="portcullis_lab.py", parents=[common],
                                     description="Podman + systemd Debian hosts for testing portcullis.hardening.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    sub.add_parser("setup", parents=[common], help="install podman/runc/debootstrap if missing")
    build = sub.add_parser("build", parents=[common, releases], help="build the lab images (cached)")
    build.add_argument("--force", action="store_true", help="rebuild even if the recipe is unchanged")
    build.add_argument("--firewall", nargs="+", action="extend", choices=image.FIREWALLS, metavar="FIREWALL",
                       help="firewall flavour(s) of the images: %s (default: none)" % ", ".join(image.FIREWALLS))
    up = sub.add_parser("up", parents=[common, releases], help="start the lab hosts (idempotent)")
    up.add_argument("--hosts", type=int, default=1, metavar="N", help="hosts per release (default: 1)")
    up.add_argument("--rogue", action=argparse.BooleanOptionalAction, default=True,
                    help="run the rogue listener units (default: on)")
    up.add_argument("--inventory", metavar="PATH", help="inventory to write (default: <state dir>/inventory.yml)")
    up.add_argument("--firewall", choices=image.FIREWALLS, default="none",
                    help="firewall flavour of every host: none, ufw (active, 22/tcp allowed) or firewalld "
                         "(running, zone public) (default: none)")
    down = sub.add_parser("down", parents=[common], help="remove the lab's containers and network")
    down.add_argument("--images", action="store_true", help="also remove the lab images")
    sub.add_parser("status", parents=[common], help="show the lab's hosts")
    args = parser.parse_args(argv)
    if getattr(args, "hosts", 1) < 1:
        parser.error("--hosts must be at least 1")
    if getattr(args, "release", None):
        args.release = list(dict.fromkeys(args.release))
    if isinstance(getattr(args, "firewall", None), list):
        args.firewall = list(dict.fromkeys(args.firewall))
    return args


COMMANDS = {"setup": cmd_setup, "build": cmd_build, "up": cmd_up, "down": cmd_down, "status": cmd_status}


def main(argv=None):
    """Entry point: run one command; expected failures exit 1 with a one-line message."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    lab = Lab(getattr(args, "state_dir", None) or default_state_dir())
    try:
        if os.geteuid() != 0:
            raise LabError("the lab needs root (rootful podman with systemd, debootstrap); run it as root")
        nothing_to_lock = args.command == "down" and not args.images and not os.path.isdir(lab.dir)
        if args.command == "status" or nothing_to_lock:
            COMMANDS[args.command](lab, args)
            return 0
        lab.ensure_dir()
        with file_lock(lab.lock_file, "the lab lock", LOCK_TIMEOUT):
            COMMANDS[args.command](lab, args)
    except LabError as exc:
        print("portcullis-lab: error: %s" % exc, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("portcullis-lab: interrupted", file=sys.stderr)
        return 130
    return 0
