# Copyright (c) Portcullis contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""What the collection's action plugins share: which connections reach a host over the network, and
validating a task's arguments against its module's spec on the controller.

Private to the collection.
"""

from __future__ import annotations

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
