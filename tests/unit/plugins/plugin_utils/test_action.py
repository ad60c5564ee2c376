# Copyright (c) Portcullis contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The action plugins check a task's arguments with its module's spec before anything runs on the host."""

from __future__ import annotations

import pytest

from ansible_collections.portcullis.hardening.plugins.modules import firewall, port_audit
from ansible_collections.portcullis.hardening.plugins.plugin_utils._action import (
    FRESH_SSH_ARGS,
    fresh_ssh_args,
    validated,
)


def test_arguments_are_typed_and_defaulted_as_the_module_sees_them():
    params = validated({"probe": "yes", "probe_timeout": "2.5", "probe_ports": ["2222"]}, port_audit.ARGUMENT_SPEC)
    assert (params["probe"], params["probe_timeout"], params["probe_ports"], params["probe_concurrency"]) == (
        True, 2.5, [2222], 32)


@pytest.mark.parametrize("spec, args, words", [
    (port_audit.ARGUMENT_SPEC, {"probe_timeout": "soon"}, ["probe_timeout", "float"]),
    (port_audit.ARGUMENT_SPEC, {"probe_ports": ["ssh"]}, ["probe_ports", "int"]),
    (firewall.ARGUMENT_SPEC, {"policy": "accept"}, ["policy", "accept", "drop, reject"]),
    (firewall.ARGUMENT_SPEC, {"confirm_timeout": "a minute"}, ["confirm_timeout", "int"]),
])
def test_bad_arguments_fail_naming_the_option(spec, args, words):
    with pytest.raises(ValueError) as error:
        validated(args, spec)
    for word in words:
        assert word in str(error.value), str(error.value)


@pytest.mark.parametrize("operator, kept", [
    (None, ""),
    ("-C -o ControlMaster=auto -o ControlPersist=60s", "-C"),  # Ansible's default
    ("-o ProxyJump=bastion -o ControlPath=/tmp/cp-%h -o 'ControlPersist=yes'", "-o ProxyJump=bastion"),
    ("-o controlmaster=auto -oControlPersist=10m -o Ciphers=aes256-gcm@openssh.com",
     "-o Ciphers=aes256-gcm@openssh.com"),
])
def test_a_new_connection_keeps_the_operators_ssh_options_but_never_shares_one(operator, kept):
    args = fresh_ssh_args(operator)
    assert args.startswith(FRESH_SSH_ARGS)  # ssh takes the first value of an option
    assert args[len(FRESH_SSH_ARGS):].strip() == kept
