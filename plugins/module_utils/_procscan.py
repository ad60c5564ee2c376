# Copyright (c) Portcullis contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Map socket inodes to the processes holding them, in one pass over /proc/<pid>/fd.

Private to the collection: pure functions over an injected /proc root, no AnsibleModule.
"""

from __future__ import annotations

import os

# Unit types a process can be tracked in; the deepest such component of the cgroup path wins
# (a delegated service such as user@0.service/app.slice/foo.service belongs to foo.service).
UNIT_SUFFIXES = (".service", ".scope", ".socket", ".mount", ".swap")
# What the kernel appends to /proc/<pid>/exe once the executable file is unlinked (replaced by an upgrade).
DELETED_SUFFIX = " (deleted)"


class ScanResult:
    """Processes found per socket inode, and how complete the scan was."""

    def __init__(self):
        self.pids_by_inode = {}
        self.scanned = 0
        self.unreadable = []  # pids whose fd table could not be read (permissions)

    @property
    def complete(self):
        return not self.unreadable


def _read_text(path):
    with open(path, "rb") as handle:
        return handle.read().decode("utf-8", "replace")


def scan_socket_owners(proc_root, inodes):
    """Find every process holding one of `inodes` (socket inode numbers).

    Reads each /proc/<pid>/fd link once and compares it with the wanted link texts, so nothing is
    parsed for the (many) fds that are not wanted sockets. Processes that exit mid-scan are skipped;
    fd tables that cannot be read are reported in `unreadable`, not raised.
    """
    result = ScanResult()
    wanted = {"socket:[%d]" % inode: inode for inode in inodes if inode}
    try:
        entries = os.listdir(proc_root)
    except OSError:
        return result
    for name in entries:
        if not name.isdigit():
            continue
        fd_dir = os.path.join(proc_root, name, "fd")
        try:
            fds = os.listdir(fd_dir)
        except PermissionError:
            result.unreadable.append(int(name))
            continue
        except OSError:  # exited, or a kernel thread without an fd table
            continue
        result.scanned += 1
        if not wanted:
            continue
        found = set()
        for fd in fds:
            try:
                inode = wanted.get(os.readlink(os.path.join(fd_dir, fd)))
            except OSError:  # fd closed or process exited meanwhile
                continue
            if inode is not None:
                found.add(inode)
        for inode in found:
            result.pids_by_inode.setdefault(inode, []).append(int(name))
    result.unreadable.sort()
    for pids in result.pids_by_inode.values():
        pids.sort()
    return result


def unit_from_cgroup(text):
    """The systemd unit a process belongs to, from the text of /proc/<pid>/cgroup.

    Prefers the unified (cgroup v2) line "0::/path"; on v1-only hosts uses the name=systemd line.
    Returns None outside systemd (no unit component in the path).
    """
    unified = legacy = None
    for line in text.splitlines():
        hierarchy, _sep, rest = line.partition(":")
        controllers, _sep, path = rest.partition(":")
        if hierarchy == "0" and controllers == "":
            unified = path
        elif controllers == "name=systemd":
            legacy = path
    for path in (unified, legacy):
        if not path or path == "/":
            continue
        units = [part for part in path.split("/") if part.endswith(UNIT_SUFFIXES)]
        if units:
            return units[-1]
    return None


def uid_from_status(text):
    """The real uid from the text of /proc/<pid>/status ("Uid:" real, effective, saved, filesystem), or None."""
    for line in text.split("\n"):
        if line.startswith("Uid:"):
            fields = line.split()
            try:
                return int(fields[1])
            except (IndexError, ValueError):
                return None
    return None


def executable(proc_root, pid):
    """(path of the program a process runs, whether that file was deleted or replaced since), from
    /proc/<pid>/exe; (None, False) when the link cannot be read: another user's process without privileges,
    or a kernel thread. The kernel resolves the path, so it names no symlink."""
    try:
        target = os.readlink(os.path.join(proc_root, str(pid), "exe"))
    except OSError:
        return None, False
    if target.endswith(DELETED_SUFFIX):
        return target[:-len(DELETED_SUFFIX)], True
    return target, False


def describe_process(proc_root, pid):
    """Name, command line, unit, real uid and executable of one process; None when it exited meanwhile.

    uid and exe are None when they cannot be read; exe_deleted says the executable file was removed or
    replaced (an upgrade) after the process started.
    """
    base = os.path.join(proc_root, str(pid))
    try:
        name = _read_text(os.path.join(base, "comm")).rstrip("\n")
        raw_cmdline = _read_text(os.path.join(base, "cmdline"))
    except OSError:
        return None
    try:
        unit = unit_from_cgroup(_read_text(os.path.join(base, "cgroup")))
    except OSError:
        unit = None
    try:
        uid = uid_from_status(_read_text(os.path.join(base, "status")))
    except OSError:
        uid = None
    exe, exe_deleted = executable(proc_root, pid)
    cmdline = " ".join(part for part in raw_cmdline.split("\0") if part)
    return {"pid": pid, "name": name, "cmdline": cmdline, "unit": unit, "uid": uid, "exe": exe,
            "exe_deleted": exe_deleted}
