# Copyright (c) Portcullis contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import os

import pytest

from ansible_collections.portcullis.hardening.plugins.module_utils import _procscan
from ansible_collections.portcullis.hardening.plugins.module_utils._procscan import (
    describe_process,
    scan_socket_owners,
    uid_from_status,
    unit_from_cgroup,
)

from .fakeproc import FakeProc


@pytest.mark.parametrize("text, unit", [
    ("0::/system.slice/ssh.service\n", "ssh.service"),
    ("0::/init.scope\n", "init.scope"),
    ("0::/user.slice/user-1000.slice/session-4.scope\n", "session-4.scope"),
    ("0::/user.slice/user-1000.slice/user@1000.service/app.slice/syncthing.service\n", "syncthing.service"),
    ("0::/system.slice/nginx.service/workers\n", "nginx.service"),
    # Hybrid hierarchy (the lab's hosts): unified line present, v1 lines too.
    ("12:pids:/system.slice/cron.service\n1:name=systemd:/system.slice/cron.service\n"
     "0::/system.slice/cron.service\n", "cron.service"),
    # Legacy v1 only.
    ("4:memory:/\n1:name=systemd:/system.slice/rsyslog.service\n", "rsyslog.service"),
    # Hybrid with an empty unified path falls back to name=systemd.
    ("1:name=systemd:/system.slice/cups.socket\n0::/\n", "cups.socket"),
    # Not under systemd (a container without it, or a kernel thread).
    ("0::/\n", None),
    ("0::/docker/3f2a9c\n", None),
    ("", None),
])
def test_unit_from_cgroup(text, unit):
    assert unit_from_cgroup(text) == unit


def test_scan_maps_inodes_to_every_holder(tmp_path):
    proc = FakeProc(tmp_path)
    proc.process(100, "nginx", [501, 502])            # master holds both sockets
    proc.process(101, "nginx", [501, 502])            # pre-forked workers share them
    proc.process(102, "nginx", [501])
    proc.process(200, "bash", [])                     # no wanted socket
    proc.process(300, "other", [999])                 # socket that is not listening
    os.makedirs(os.path.join(proc.root, "self"))      # non-pid entries are ignored
    result = scan_socket_owners(proc.flush(), {501, 502, 0})
    assert result.pids_by_inode == {501: [100, 101, 102], 502: [100, 101]}
    assert result.scanned == 5
    assert result.complete


def test_scan_reports_unreadable_fd_tables(tmp_path, monkeypatch):
    proc = FakeProc(tmp_path)
    proc.process(10, "sshd", [7])
    proc.process(11, "postgres", [8])
    root = proc.flush()
    real_listdir = os.listdir

    def listdir(path):
        if path == os.path.join(root, "11", "fd"):
            raise PermissionError(13, "Permission denied", path)
        return real_listdir(path)

    monkeypatch.setattr(_procscan.os, "listdir", listdir)
    result = scan_socket_owners(root, {7, 8})
    assert result.pids_by_inode == {7: [10]}
    assert result.unreadable == [11]
    assert not result.complete


def test_scan_survives_processes_exiting(tmp_path, monkeypatch):
    proc = FakeProc(tmp_path)
    proc.process(10, "gone-before-listdir", [7])
    proc.process(11, "gone-before-readlink", [7])
    proc.process(12, "stays", [7])
    root = proc.flush()
    real_listdir, real_readlink = os.listdir, os.readlink

    def listdir(path):
        if path == os.path.join(root, "10", "fd"):
            raise FileNotFoundError(2, "No such file or directory", path)
        return real_listdir(path)

    def readlink(path):
        if path.startswith(os.path.join(root, "11", "fd")):
            raise FileNotFoundError(2, "No such file or directory", path)
        return real_readlink(path)

    monkeypatch.setattr(_procscan.os, "listdir", listdir)
    monkeypatch.setattr(_procscan.os, "readlink", readlink)
    result = scan_socket_owners(root, {7})
    assert result.pids_by_inode == {7: [12]}
    assert result.unreadable == []


def test_scan_of_missing_proc_root(tmp_path):
    result = scan_socket_owners(str(tmp_path / "nowhere"), {1})
    assert result.pids_by_inode == {} and result.scanned == 0


def test_describe_process(tmp_path):
    proc = FakeProc(tmp_path)
    proc.process(42, "sshd", [1], cgroup="0::/system.slice/ssh.service\n", cmdline=["sshd: /usr/sbin/sshd -D [listener] 0 of 10-100 startups"])
    proc.process(43, "python3", [2], cmdline=["/usr/bin/python3", "-m", "http.server", "8080"], cgroup=None,
                 uid=1000, exe="/usr/bin/python3.11")
    root = proc.flush()
    assert describe_process(root, 42) == {
        "pid": 42, "name": "sshd", "unit": "ssh.service",
        "cmdline": "sshd: /usr/sbin/sshd -D [listener] 0 of 10-100 startups",
        "uid": 0, "exe": "/usr/sbin/sshd", "exe_deleted": False}
    assert describe_process(root, 43) == {
        "pid": 43, "name": "python3", "unit": None, "cmdline": "/usr/bin/python3 -m http.server 8080",
        "uid": 1000, "exe": "/usr/bin/python3.11", "exe_deleted": False}
    assert describe_process(root, 44) is None  # exited


def test_describe_process_unreadable_exe_and_status(tmp_path):
    """Another user's process seen without privileges has no readable exe; a kernel thread has none at all."""
    proc = FakeProc(tmp_path)
    proc.process(50, "kworker/0:1", [], cgroup=None, cmdline=[""], exe=None, uid=None)
    process = describe_process(proc.flush(), 50)
    assert (process["uid"], process["exe"], process["exe_deleted"]) == (None, None, False)


def test_describe_process_executable_replaced_by_an_upgrade(tmp_path):
    proc = FakeProc(tmp_path)
    proc.process(60, "sshd", [], exe="/usr/sbin/sshd (deleted)")
    process = describe_process(proc.flush(), 60)
    assert (process["exe"], process["exe_deleted"]) == ("/usr/sbin/sshd", True)


def test_describe_process_exe_link_refused(tmp_path, monkeypatch):
    proc = FakeProc(tmp_path)
    proc.process(70, "postgres", [], uid=110)
    root = proc.flush()
    real_readlink = os.readlink

    def readlink(path):
        if path == os.path.join(root, "70", "exe"):
            raise PermissionError(13, "Permission denied", path)
        return real_readlink(path)

    monkeypatch.setattr(_procscan.os, "readlink", readlink)
    process = describe_process(root, 70)
    assert (process["uid"], process["exe"]) == (110, None)


@pytest.mark.parametrize("text, uid", [
    ("Name:\tsshd\nUmask:\t0022\nState:\tS (sleeping)\nUid:\t0\t0\t0\t0\nGid:\t0\t0\t0\t0\n", 0),
    # Real uid first: a set-uid program run by a user has real 1000, effective 0.
    ("Name:\tsu\nUid:\t1000\t0\t0\t0\n", 1000),
    ("Name:\tx\nUid:\n", None),
    ("Name:\tx\nUid:\tabc\t0\t0\t0\n", None),
    ("Name:\tx\n", None),
    ("", None),
])
def test_uid_from_status(text, uid):
    assert uid_from_status(text) == uid
