# Copyright (c) Portcullis contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The host seam's file writes, on real files under a temporary root."""

from __future__ import annotations

import os

import pytest

from ansible_collections.portcullis.hardening.plugins.module_utils._host import Host, PortcullisError

from .fakehost import host_file, write_host_file


@pytest.fixture
def host(tmp_path):
    return Host(lambda argv: (0, "", ""), root=str(tmp_path))


def test_a_write_goes_through_a_symlink_and_the_link_stays(host, tmp_path):
    target = write_host_file(tmp_path, "/etc/real/nftables.conf", "old\n")
    os.symlink("/etc/real/nftables.conf", host_file(tmp_path, "/etc/nftables.conf"))  # absolute, on the host
    host.write("/etc/nftables.conf", "new\n")
    assert os.path.islink(host_file(tmp_path, "/etc/nftables.conf"))
    with open(target) as stream:
        assert stream.read() == "new\n"


def test_a_write_keeps_owner_group_and_mode(host, tmp_path):
    path = write_host_file(tmp_path, "/etc/ssh/sshd_config", "Port 22\n")
    os.chmod(path, 0o640)
    if os.geteuid() == 0:
        os.chown(path, 4242, 4343)
    host.write("/etc/ssh/sshd_config", "Port 2222\n")
    stat = os.stat(path)
    assert stat.st_mode & 0o7777 == 0o640
    if os.geteuid() == 0:
        assert (stat.st_uid, stat.st_gid) == (4242, 4343)


def test_a_new_file_gets_the_default_mode_and_an_explicit_mode_wins(host, tmp_path):
    host.write("/etc/nftables.d/portcullis.nft", "x\n", default_mode=0o644)
    assert os.stat(host_file(tmp_path, "/etc/nftables.d/portcullis.nft")).st_mode & 0o7777 == 0o644
    host.write_private("/var/lib/portcullis/state.json", "{}\n")
    assert os.stat(host_file(tmp_path, "/var/lib/portcullis/state.json")).st_mode & 0o7777 == 0o600


def test_text_round_trips_byte_for_byte(host, tmp_path):
    text = "Port 22\r\n# a form feed \f and a line separator \u2028 stay\r\nLast line without newline"
    host.write("/etc/ssh/sshd_config", text)
    assert host.read("/etc/ssh/sshd_config") == text
    with open(host_file(tmp_path, "/etc/ssh/sshd_config"), "rb") as stream:
        assert stream.read() == text.encode("utf-8")


def test_no_temporary_file_is_left_behind(host, tmp_path):
    host.write("/etc/a.conf", "a\n")
    assert os.listdir(host_file(tmp_path, "/etc")) == ["a.conf"]


def test_a_missing_file_or_a_file_in_place_of_a_directory_reads_as_absent(host, tmp_path):
    write_host_file(tmp_path, "/etc/nftables.d", "a file where a directory belongs\n")
    assert host.read("/etc/nftables.d/portcullis.nft") is None
    assert host.read("/etc/none") is None
    assert host.backup("/etc/nftables.d/portcullis.nft", "/backup") is False


def test_a_symlink_loop_is_an_error_not_a_hang(host, tmp_path):
    os.makedirs(host_file(tmp_path, "/etc"))
    os.symlink("b", host_file(tmp_path, "/etc/a"))
    os.symlink("a", host_file(tmp_path, "/etc/b"))
    with pytest.raises(PortcullisError) as error:
        host.write("/etc/a", "x")
    assert "too many levels of symbolic links" in str(error.value)


def test_check_names_the_step_the_command_and_what_it_said(tmp_path):
    host = Host(lambda argv: (3, "", "Unit nftables.service not found.\n"), root=str(tmp_path))
    with pytest.raises(PortcullisError) as error:
        host.check(["systemctl", "enable", "nftables.service"], "enabling nftables.service")
    assert str(error.value) == ("enabling nftables.service failed (systemctl enable nftables.service, rc=3): "
                                "Unit nftables.service not found.")
