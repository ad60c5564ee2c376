# Copyright (c) Portcullis contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Build fixture /proc trees: socket tables as the kernel prints them, and pid dirs with fd links."""

from __future__ import annotations

import os

TCP_HEADER = ("  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt"
              "   uid  timeout inode")
UDP_HEADER = ("   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt"
              "   uid  timeout inode ref pointer drops")
ZERO4 = "00000000:0000"
ZERO6 = "00000000000000000000000000000000:0000"
# Where the programs a fixture names live on a Debian host; any other name runs from /usr/bin.
EXECUTABLES = {"sshd": "/usr/sbin/sshd", "systemd": "/usr/lib/systemd/systemd"}
DEFAULT = object()


def row(slot, local, remote, state, uid, inode):
    """One table line in the kernel's layout (the fields after inode vary by protocol)."""
    return ("%4d: %s %s %s 00000000:00000000 00:00000000 00000000 %5d        0 %d 1 "
            "0000000000000000 100 0 0 10 0" % (slot, local, remote, state, uid, inode))


class FakeProc:
    def __init__(self, root):
        self.root = str(root)
        os.makedirs(os.path.join(self.root, "net"))
        self.tables = {name: [] for name in ("tcp", "tcp6", "udp", "udp6")}

    def socket(self, table, local, state, uid=0, inode=1000, remote=None):
        remote = remote or (ZERO6 if table.endswith("6") else ZERO4)
        self.tables[table].append(row(len(self.tables[table]), local, remote, state, uid, inode))
        return self

    def process(self, pid, name, inodes, cgroup="0::/system.slice/%s.service\n", cmdline=None,
                other_fds=("/dev/null", "pipe:[77]", "anon_inode:[eventpoll]"), uid=0, exe=DEFAULT):
        """A pid dir. By default the process runs as root from EXECUTABLES (or /usr/bin/<name>);
        uid=None leaves out the status file, exe=None the exe link (as for a kernel thread)."""
        base = os.path.join(self.root, str(pid))
        os.makedirs(os.path.join(base, "fd"))
        targets = list(other_fds) + ["socket:[%d]" % inode for inode in inodes]
        for number, target in enumerate(targets):
            os.symlink(target, os.path.join(base, "fd", str(number)))
        self.write("%d/comm" % pid, name + "\n")
        self.write("%d/cmdline" % pid, "\0".join(cmdline or [name]) + "\0")
        if cgroup is not None:
            self.write("%d/cgroup" % pid, cgroup.replace("%s", name))
        if uid is not None:
            self.write("%d/status" % pid, "Name:\t%s\nUmask:\t0022\nState:\tS (sleeping)\nPid:\t%d\n"
                       "Uid:\t%d\t%d\t%d\t%d\nGid:\t%d\t%d\t%d\t%d\n" % ((name, pid) + (uid,) * 8))
        if exe is DEFAULT:
            exe = EXECUTABLES.get(name, "/usr/bin/" + name)
        if exe is not None:
            os.symlink(exe, os.path.join(base, "exe"))
        return self

    def write(self, relative, text):
        with open(os.path.join(self.root, relative), "w") as handle:
            handle.write(text)

    def flush(self, skip=()):
        for name, rows in self.tables.items():
            if name in skip:
                continue
            header = TCP_HEADER if name.startswith("tcp") else UDP_HEADER
            self.write("net/" + name, "\n".join([header] + rows) + "\n")
        return self.root
