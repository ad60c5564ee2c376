# Copyright (c) Portcullis contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""pytest glue for the integration tests: the shared lab's hosts as fixtures (the harness is harness.py).

The shared lab is started by `make integration` (state dir in PORTCULLIS_LAB_DIR); these fixtures only use it.
Suites that change hosts beyond putting them back start a lab of their own (harness.own_lab).
"""

from __future__ import annotations

import os

import pytest

from harness import LAB_DIR, Lab


def _lab_hosts():
    if not LAB_DIR or not os.path.exists(os.path.join(LAB_DIR, "inventory.yml")):
        raise pytest.UsageError("no lab: run `make integration` (or set PORTCULLIS_LAB_DIR to a lab's state dir "
                                "with an inventory.yml)")
    return Lab(LAB_DIR).refresh().hosts


def pytest_generate_tests(metafunc):
    if "lab_host" in metafunc.fixturenames:
        hosts = _lab_hosts()
        metafunc.parametrize("lab_host", hosts, ids=[host.name for host in hosts])


@pytest.fixture(scope="session")
def lab_hosts():
    """Every host of the lab, for tests that act on the whole fleet at once."""
    return _lab_hosts()
