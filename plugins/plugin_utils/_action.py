# Copyright (c) Portcullis contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""What the collection's action plugins share: which connections reach a host over the network,
validating a task's arguments against its module's spec on the controller, and running something over a
new connection.

Private to the collection.
"""

from __future__ import annotations

import re

from ansible.errors import AnsibleError
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

SSH_CONNECTIONS = ("ssh", "ansible.builtin.ssh")
# Connections whose target is a network address: the controller can probe it and open new connections to it.
NETWORK_CONNECTIONS = SSH_CONNECTIONS + ("paramiko", "paramiko_ssh", "ansible.builtin.paramiko_ssh",
                                         "ansible.netcommon.libssh")


def validated(args, argument_spec):
    """The task's arguments as the module will see them (types converted, defaults filled).

    Raises ValueError naming every bad argument, so that nothing runs on the host with bad input.
    """
    result = ArgumentSpecValidator(argument_spec).validate(args)
    if result.error_messages:
        raise ValueError("; ".join(result.error_messages))
    return result.validated_parameters


# ssh arguments for a connection of its own: no ControlMaster to reuse, none to leave behind.
FRESH_SSH_ARGS = "-o ControlMaster=no -o ControlPath=none"
_CONTROL_OPTIONS = re.compile(r"(?i)-o\s*['\"]?Control(?:Master|Persist|Path)\s*=?\s*[^\s'\"]*['\"]?")


def fresh_ssh_args(ssh_args):
    """`ssh_args` for a connection of its own: the operator's options (a ProxyJump, ciphers...) without their
    connection sharing, after FRESH_SSH_ARGS (ssh takes the first value of an option)."""
    kept = " ".join(_CONTROL_OPTIONS.sub(" ", ssh_args or "").split())
    return (FRESH_SSH_ARGS + " " + kept).strip()


def connection_port(connection):
    """The TCP port a connection uses, or None when it does not go over the network."""
    if connection.transport not in NETWORK_CONNECTIONS:
        return None
    try:
        return int(connection.get_option("port") or 22)
    except (AnsibleError, KeyError, TypeError, ValueError):
        return 22


def on_a_new_connection(connection, function, connect_timeout, port=None):
    """Run `function` over a new connection (to `port` when given): a cached one may outlive a lockout.

    For SSH: no ControlMaster to reuse, pipelining (one connection, not sftp, then scp, then piped, each
    waiting out the connect timeout) and no reconnection retries, so an answer comes within
    `connect_timeout`. Returns what `function` returns, or a failed, unreachable result when the
    connection fails. The connection's options are put back afterwards.
    """
    connection.reset()
    fresh = {}
    if connection.transport in SSH_CONNECTIONS:
        fresh = {"ssh_args": fresh_ssh_args(connection.get_option("ssh_args")), "pipelining": True,
                 "reconnection_retries": 0,
                 "timeout": int(connect_timeout)}
    if port is not None:
        fresh["port"] = port
    saved = {}
    for option, value in fresh.items():
        saved[option] = connection.get_option(option)
        connection.set_option(option, value)
    try:
        return function()
    except AnsibleError as exc:  # unreachable, or refused: the new connection failed
        return {"failed": True, "unreachable": True, "msg": str(exc)}
    finally:
        for option, value in saved.items():
            connection.set_option(option, value)
        connection.reset()
