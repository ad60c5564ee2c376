# Copyright (c) Portcullis contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""portcullis.hardening.service_port end to end on the test lab: the lab's web server moves from 8080 to 8081.

Its port is set on the ExecStart line of its unit file, so the module edits that line (regexp + line),
restarts the service, and the controller proves the new port with a new TCP connection before committing.
Faults: the new port blocked by a rule that was there before (rolled back), a port another process holds, a
regexp that matches nothing (both refused before any change). Each test puts the unit back as it was.
"""

from __future__ import annotations

import json

import pytest

from ansible_collections.portcullis.hardening.plugins.plugin_utils._probe import try_connect

UNIT = "portcullis-rogue-web.service"
UNIT_FILE = "/etc/systemd/system/" + UNIT
EXEC_START = "ExecStart=/usr/local/bin/portcullis-rogue --proto tcp --address 0.0.0.0 --port %d --workers 2"


def move_args(port, old=8080, **extra):
    args = {"service": UNIT, "path": UNIT_FILE, "regexp": "^ExecStart=.*--port %d( |$)" % old,
            "line": EXEC_START % port, "port": port, "confirm_timeout": 30}
    args.update(extra)
    return json.dumps(args)


def tcp_state(address, port):
    """What a new TCP connection from the controller gets: open, closed or filtered."""
    return try_connect(address, port, 3)[0]


def unit_state(lab_host):
    """The unit file, where the web server listens, and what Portcullis left in its state directory."""
    return lab_host.ssh("sha256sum %s; ss -H -ltn 'sport = :8080 or sport = :8081' | awk '{print $4}' | sort; "
                        "ls /var/lib/portcullis 2>/dev/null | grep -v firewall.json || true" % UNIT_FILE).stdout


@pytest.fixture
def web(lab_host):
    """The web server on 8080 before the test, and again after it (the unit file as the lab wrote it)."""
    original = lab_host.ssh(["cat", UNIT_FILE]).stdout
    assert (EXEC_START % 8080) in original
    yield lab_host
    if lab_host.ssh(["cat", UNIT_FILE]).stdout != original:
        lab_host.ssh("sed -i 's/--port [0-9]* --workers/--port 8080 --workers/' %s && systemctl daemon-reload && "
                     "systemctl restart %s" % (UNIT_FILE, UNIT))
    assert lab_host.ssh(["cat", UNIT_FILE]).stdout == original


def test_check_mode_shows_the_edit_and_changes_nothing(web):
    before = unit_state(web)
    result = web.module("portcullis.hardening.service_port", move_args(8081), extra=["--check", "--diff"])
    assert result["changed"] and result["previous_port"] == 8080
    assert result["diff"][0]["after_header"] == UNIT_FILE
    assert (EXEC_START % 8081) in result["diff"][0]["after"]
    assert unit_state(web) == before


def test_moves_the_web_server_and_back(web):
    address = web.address
    result = web.module("portcullis.hardening.service_port", move_args(8081))
    assert result.get("changed") and not result.get("failed"), result.get("msg")
    assert result["steps"] == ["plan", "apply", "probe %s port 8081 from the controller: open" % address, "commit"]
    assert result["listening_before"] == ["0.0.0.0:8080"] and result["listening_after"] == ["0.0.0.0:8081"]
    assert tcp_state(address, 8081) == "open" and tcp_state(address, 8080) == "closed"
    again = web.module("portcullis.hardening.service_port", move_args(8081, old=8081))
    assert not again["changed"] and again["steps"] == ["plan"]
    back = web.module("portcullis.hardening.service_port", move_args(8080, old=8081))
    assert back["changed"] and back["listening_after"] == ["0.0.0.0:8080"]
    assert tcp_state(address, 8080) == "open"


def test_new_port_blocked_by_an_existing_rule_rolls_back(web):
    before = unit_state(web)
    web.ssh("nft add table inet portcullis_test_blocker && nft add chain inet portcullis_test_blocker input "
            "'{ type filter hook input priority -10; }' && nft add rule inet portcullis_test_blocker input "
            "tcp dport 8081 drop")
    try:
        result = web.module("portcullis.hardening.service_port", move_args(8081))
    finally:
        web.ssh("nft delete table inet portcullis_test_blocker")
    assert result["failed"] and result["failed_step"] == "probe" and result["rolled_back"]
    assert "got filtered, not open" in result["msg"]
    assert "The previous configuration was restored (%s listens on 0.0.0.0:8080 again)" % UNIT in result["msg"]
    assert unit_state(web) == before


def test_bad_input_is_refused_before_any_change(web):
    before = unit_state(web)
    taken = web.module("portcullis.hardening.service_port", move_args(6379))  # the lab's loopback cache
    assert taken["failed"] and "port 6379/tcp is already taken by portcullis-rogu[" in taken["msg"]
    unmatched = web.module("portcullis.hardening.service_port", move_args(8081, old=9))
    assert unmatched["failed"] and "regexp: '^ExecStart=.*--port 9( |$)' matches no line of %s" % UNIT_FILE \
        in unmatched["msg"]
    both = web.module("portcullis.hardening.service_port", json.dumps(
        {"service": UNIT, "port": 8081, "path": UNIT_FILE, "regexp": "x", "line": "y", "socket_unit": "a.socket"}))
    assert both["failed"] and "mutually exclusive: path|socket_unit" in both["msg"]
    unresolved = web.module("portcullis.hardening.service_port", move_args(8081, probe_address="no-such-host.invalid"))
    assert unresolved["failed"] and unresolved["msg"].startswith(
        "probe_address: probe address 'no-such-host.invalid' cannot be resolved")
    assert unit_state(web) == before
