# Copyright (c) Portcullis contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The role's argument spec, its defaults and the module it drives must agree."""

from __future__ import annotations

import os

import yaml

from ansible_collections.portcullis.hardening.plugins.module_utils._allowlist import ENTRY_SPEC
from ansible_collections.portcullis.hardening.plugins.modules import listening_ports

ROLE = os.path.join(os.path.dirname(__file__), "..", "..", "..", "roles", "ports")


def load(relative):
    with open(os.path.join(ROLE, relative)) as handle:
        return yaml.safe_load(handle)


def test_discovery_options_match_the_module():
    spec = load("meta/argument_specs.yml")["argument_specs"]["main"]["options"]
    module_options = yaml.safe_load(listening_ports.DOCUMENTATION)["options"]
    for role_option, module_option in (("portcullis_discover_protocols", "protocols"),
                                       ("portcullis_discover_families", "families")):
        for field in ("type", "elements", "choices", "default"):
            assert spec[role_option][field] == module_options[module_option][field], (role_option, field)


def test_defaults_file_matches_the_spec():
    spec = load("meta/argument_specs.yml")["argument_specs"]["main"]["options"]
    defaults = load("defaults/main.yml")
    # Options without a default (portcullis_management_port: the current connection's port) stay undefined.
    assert set(defaults) == {name for name, option in spec.items() if "default" in option}
    for name, value in defaults.items():
        assert spec[name]["default"] == value, name


def test_allowlist_options_validate_every_field_of_the_shared_entry_spec():
    """The role's spec checks each entry's fields as module_utils/_allowlist.py declares them (the deeper checks, such
    as host bits in sources, are the role's validate phase, on the controller), in every entry point."""
    specs = load("meta/argument_specs.yml")["argument_specs"]
    for entry, spec in specs.items():
        for option in ("portcullis_allowlist", "portcullis_allowlist_extra"):
            if option not in spec["options"]:
                continue
            option_spec = spec["options"][option]
            assert (option_spec["type"], option_spec["elements"], option_spec["default"]) == ("list", "dict", []), entry
            assert set(option_spec["options"]) == set(ENTRY_SPEC), (entry, option)
            for field, field_spec in ENTRY_SPEC.items():
                for key in ("type", "choices", "default", "required", "elements"):
                    assert option_spec["options"][field].get(key) == field_spec.get(key), (entry, option, field, key)
