# Copyright (c) Portcullis contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""systemd as the collection uses it: unit properties, a unit's restart sequence, transient timers.

Pure argument lists and parsers, plus small readers that take a Host (module_utils/_host.py). Private to the
collection.
"""

from __future__ import annotations

import time

SYSTEMCTL = "systemctl"
DAEMON_RELOAD = [SYSTEMCTL, "daemon-reload"]


def parse_show(text):
    """`systemctl show --property=...` output: {name: [values]} (a property may repeat, e.g. Listen)."""
    values = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            values.setdefault(key, []).append(value)
    return values


def unit_properties(host, unit, names):
    """{property: [values]} of one unit; empty when systemctl fails (no systemd, no such unit)."""
    rc, out, _err = host.run([SYSTEMCTL, "show", unit] + ["--property=%s" % name for name in names])
    return parse_show(out) if rc == 0 else {}


def first(properties, name, default=""):
    return (properties.get(name) or [default])[0]


def is_active(host, unit):
    rc, _out, _err = host.run([SYSTEMCTL, "is-active", "--quiet", unit])
    return rc == 0


def is_enabled(host, unit):
    rc, _out, _err = host.run([SYSTEMCTL, "is-enabled", "--quiet", unit])
    return rc == 0


def restart_sequence(service, socket=None, accept=False, verb="restart"):
    """How to make `service` take a new configuration: argument lists, run in order.

    Under socket activation the socket holds the port: with Accept=yes (one process per connection) only the
    socket restarts; with Accept=no systemd refuses to restart the socket while the service runs, so both stop
    and both start (the service's KillMode=process keeps open sessions alive). `verb` is restart or reload.
    """
    if socket:
        if accept:
            return [DAEMON_RELOAD, [SYSTEMCTL, "restart", socket]]
        return [DAEMON_RELOAD, [SYSTEMCTL, "stop", socket], [SYSTEMCTL, "stop", service],
                [SYSTEMCTL, "start", socket], [SYSTEMCTL, "start", service]]
    return [DAEMON_RELOAD, [SYSTEMCTL, verb, service]]


def stop_and_disable(unit):
    return [[SYSTEMCTL, "disable", "--now", unit]]


def calendar_time(seconds):
    """A moment (seconds since the epoch) as an OnCalendar= event systemd reads in any time zone."""
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(seconds))


def timer_argv(unit, at, argv, description):
    """systemd-run arming a transient timer that runs `argv` once at `at` (seconds since the epoch), outside this
    session. An absolute time, not --on-active: every daemon-reload (a `systemctl enable`) restarts an --on-active
    countdown, and the timer would fire later than the change's expires_at says."""
    return ["systemd-run", "--unit", unit, "--on-calendar=%s" % calendar_time(at), "--timer-property=AccuracySec=1s",
            "--property=Type=oneshot", "--description", description] + list(argv)


def run_now_argv(unit, argv, description):
    """systemd-run running `argv` now as a unit of its own (outside this SSH session), waiting for its end."""
    return ["systemd-run", "--unit", unit, "--wait", "--quiet", "--property=Type=oneshot", "--description",
            description] + list(argv)
