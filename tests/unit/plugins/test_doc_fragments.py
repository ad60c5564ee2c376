# Copyright (c) Portcullis contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The allowlist entry is documented once per option name; both texts and the argument spec must agree."""

from __future__ import annotations

import yaml

from ansible_collections.portcullis.hardening.plugins.doc_fragments.allowlist import ModuleDocFragment
from ansible_collections.portcullis.hardening.plugins.module_utils._allowlist import ENTRY_SPEC


def test_allow_is_the_allowlist_under_another_name():
    allowlist = yaml.safe_load(ModuleDocFragment.DOCUMENTATION)["options"]["allowlist"]
    allow = yaml.safe_load(ModuleDocFragment.ALLOW)["options"]["allow"]
    as_allow = yaml.safe_load(yaml.safe_dump(allowlist).replace("O(allowlist[]", "O(allow[]"))
    assert allow == as_allow


def test_documented_entry_matches_the_argument_spec():
    suboptions = yaml.safe_load(ModuleDocFragment.DOCUMENTATION)["options"]["allowlist"]["suboptions"]
    assert set(suboptions) == set(ENTRY_SPEC)
    for name, spec in ENTRY_SPEC.items():
        for field in ("type", "elements", "choices", "default", "required"):
            assert suboptions[name].get(field) == spec.get(field), (name, field)
