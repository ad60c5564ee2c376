# Copyright (c) Portcullis contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""sshd_config, ssh.socket and SELinux text for moving SSH to another port: parsing and the edits planned.

The configurations are in-memory file trees read through the same read(path)/expand(pattern) seam the module
uses on a host: Debian's (the main file includes /etc/ssh/sshd_config.d/*.conf), one without Include (the
edits go into a marked block of the main file), Match blocks, several Port lines, ListenAddress lines with
and without ports, IPv6.
"""

from __future__ import annotations

import difflib
import fnmatch
import ipaddress
import posixpath

import pytest

from ansible_collections.portcullis.hardening.plugins.module_utils._sshd import (
    BLOCK_BEGIN,
    BLOCK_END,
    DISABLED,
    MAX_INCLUDE_DEPTH,
    SSHD_CONFIG,
    SshdConfigError,
    apply_edits,
    config_lines,
    directive,
    format_listen_address,
    is_sshd_process,
    is_systemd_manager,
    join_lines,
    parse_addresses,
    parse_listen_property,
    parse_port_range,
    parse_semanage_ports,
    plan_config,
    port_type,
    read_layout,
    selinux_commands,
    selinux_mode,
    socket_drop_in,
    socket_listens,
    split_listen_address,
    sshd_listener,
    stream_port,
)

MAIN = SSHD_CONFIG
DROP_IN_DIR = "/etc/ssh/sshd_config.d"
OWN_DROP_IN = DROP_IN_DIR + "/portcullis-ssh-port.conf"
OWN_HEADER = ("# Managed by portcullis.hardening.ssh_port: the port(s) sshd listens on. "
              "Changes here are overwritten.\n")

# Debian 12's /etc/ssh/sshd_config (shortened), with a Port line an operator added after the Include.
DEBIAN_MAIN = """\
# This is the sshd server system-wide configuration file.  See
# sshd_config(5) for more information.

Include /etc/ssh/sshd_config.d/*.conf

Port 2200
#Port 22
#AddressFamily any
#ListenAddress 0.0.0.0
#ListenAddress ::

KbdInteractiveAuthentication no
UsePAM yes
X11Forwarding yes
PrintMotd no
AcceptEnv LANG LC_*
Subsystem\tsftp\t/usr/lib/openssh/sftp-server

# Example of overriding settings on a per-user basis
Match User anoncvs
\tX11Forwarding no
\tAllowTcpForwarding no
\tPermitTTY no
\tForceCommand cvs server
"""

# A configuration without Include (older releases, hand-written ones).
PLAIN_MAIN = """\
# sshd configuration
Port 22
ListenAddress 0.0.0.0
ListenAddress ::
PermitRootLogin prohibit-password
Subsystem sftp internal-sftp

Match Group sftponly
    ChrootDirectory /srv/%u
    ForceCommand internal-sftp
"""


class Files:
    """An in-memory file tree: read(path) -> text or None, expand(pattern) -> sorted matching paths."""

    def __init__(self, files):
        self.files = dict(files)
        self.expanded = []

    def read(self, path):
        return self.files.get(path)

    def expand(self, pattern):
        self.expanded.append(pattern)
        directory, name = posixpath.split(pattern)
        return sorted(path for path in self.files
                      if posixpath.dirname(path) == directory and fnmatch.fnmatchcase(posixpath.basename(path), name))

    def layout(self, main=MAIN):
        return read_layout(main, self.read, self.expand)

    def write(self, edits):
        for path, text in edits.items():
            if text is None:
                self.files.pop(path, None)
            else:
                self.files[path] = text


def layout_of(files):
    return Files(files).layout()


def disabled(target, line):
    return (DISABLED % target) + line


def addresses_of(layout):
    return [(address, port, rest) for _line, address, port, rest in layout.listen_addresses()]


def replan_is_empty(layout, edits, ports, listen_addresses=None, moved_ports=()):
    """Whether planning again, on the configuration once `edits` are written, asks for nothing more."""
    return plan_config(apply_edits(layout, edits), ports, listen_addresses, moved_ports) == {}


# --- directive -----------------------------------------------------------------------------------

@pytest.mark.parametrize("line, expected", [
    ("Port 22", ("port", "22")),
    ("port 22", ("port", "22")),
    ("PORT=22", ("port", "22")),
    ("Port = 2222", ("port", "2222")),
    ("  Port\t2222  ", ("port", "2222")),
    ("ListenAddress [::1]:22 rdomain foo", ("listenaddress", "[::1]:22 rdomain foo")),
    ("Subsystem\tsftp\t/usr/lib/openssh/sftp-server", ("subsystem", "sftp\t/usr/lib/openssh/sftp-server")),
    ("Include /etc/ssh/sshd_config.d/*.conf", ("include", "/etc/ssh/sshd_config.d/*.conf")),
    ("Match User anoncvs", ("match", "User anoncvs")),
    ("Port", ("port", "")),
    # The blanks sshd strips: a "\r" anywhere around (a CRLF file), a form feed only at the end.
    ("Port 22\r", ("port", "22")),
    ("\r Port\r2222\t\f", ("port", "2222")),
    ("Port =\r22", ("port", "22")),
    # A form feed or U+2028 at the start is no blank to sshd: that is no Port line (sshd -t rejects it).
    ("\fPort 22", ("\fport 22", "")),
    ("\u2028Port 22", ("\u2028port 22", "")),
])
def test_directive(line, expected):
    assert directive(line) == expected


@pytest.mark.parametrize("line", ["", "   ", "\t", "# Port 22", "   #Port 22", "#", "\r", "#Port 22\r",
                                  "\r\t# note\u2028Port 2222"])
def test_directive_comments_and_blanks_are_none(line):
    assert directive(line) is None


# --- ListenAddress text --------------------------------------------------------------------------

@pytest.mark.parametrize("value, expected", [
    ("0.0.0.0", ("0.0.0.0", None, "")),
    ("0.0.0.0:22", ("0.0.0.0", 22, "")),
    ("192.0.2.10:2200 rdomain red", ("192.0.2.10", 2200, "rdomain red")),
    ("192.0.2.10 rdomain red", ("192.0.2.10", None, "rdomain red")),
    ("host.example:2200", ("host.example", 2200, "")),
    ("host.example", ("host.example", None, "")),
    ("::", ("::", None, "")),
    ("2001:db8::10", ("2001:db8::10", None, "")),
    ("[::]", ("::", None, "")),
    ("[::]:22", ("::", 22, "")),
    ("[::1]:22 rdomain foo", ("::1", 22, "rdomain foo")),
    ("[2001:db8::10]:2222", ("2001:db8::10", 2222, "")),
    ("", ("", None, "")),
])
def test_split_listen_address(value, expected):
    assert split_listen_address(value) == expected


@pytest.mark.parametrize("address, port, expected", [
    ("0.0.0.0", None, "0.0.0.0"),
    ("0.0.0.0", 2222, "0.0.0.0:2222"),
    ("::", None, "::"),
    ("::", 2222, "[::]:2222"),
    ("2001:db8::10", 22, "[2001:db8::10]:22"),
    ("host.example", 2200, "host.example:2200"),
])
def test_format_listen_address(address, port, expected):
    assert format_listen_address(address, port) == expected


@pytest.mark.parametrize("address", ["0.0.0.0", "192.0.2.10", "::", "::1", "2001:db8::10", "host.example"])
@pytest.mark.parametrize("port", [None, 22, 2222])
def test_format_and_split_round_trip(address, port):
    assert split_listen_address(format_listen_address(address, port)) == (address, port, "")


# --- reading the layout ----------------------------------------------------------------------------

def debian_files(**drop_ins):
    files = {MAIN: DEBIAN_MAIN}
    for name, text in drop_ins.items():
        files["%s/%s.conf" % (DROP_IN_DIR, name.replace("_", "-"))] = text
    return files


def test_read_layout_debian_reads_drop_ins_in_sorted_order():
    files = Files(debian_files(**{"50_cloud_init": "PasswordAuthentication no\n", "10_a": "Port 22\n"}))
    layout = files.layout()
    assert layout.main_path == MAIN
    assert layout.includes == [DROP_IN_DIR + "/*.conf"]
    assert layout.order == [MAIN, DROP_IN_DIR + "/10-a.conf", DROP_IN_DIR + "/50-cloud-init.conf"]
    assert layout.texts[DROP_IN_DIR + "/10-a.conf"] == "Port 22\n"
    assert files.expanded == [DROP_IN_DIR + "/*.conf"]


def test_read_layout_drop_in_path_when_the_main_file_includes_the_directory():
    assert layout_of(debian_files()).drop_in_path() == OWN_DROP_IN


def test_read_layout_missing_main_file_raises():
    with pytest.raises(SshdConfigError, match="/etc/ssh/sshd_config does not exist"):
        layout_of({})


def test_read_layout_relative_include_is_relative_to_etc_ssh():
    files = Files({MAIN: "Include sshd_config.d/*.conf\n", DROP_IN_DIR + "/a.conf": "Port 2200\n"})
    layout = files.layout()
    assert layout.includes == [DROP_IN_DIR + "/*.conf"]
    assert files.expanded == [DROP_IN_DIR + "/*.conf"]
    assert layout.order == [MAIN, DROP_IN_DIR + "/a.conf"]
    assert layout.drop_in_path() == OWN_DROP_IN
    assert layout.ports() == [2200]


def test_read_layout_include_with_several_patterns_and_normalised_paths():
    layout = layout_of({
        MAIN: "Include extra.conf /etc/ssh/./more/../other.conf\n",
        "/etc/ssh/extra.conf": "Port 2200\n",
        "/etc/ssh/other.conf": "Port 2300\n",
    })
    assert layout.includes == ["/etc/ssh/extra.conf", "/etc/ssh/other.conf"]
    assert layout.order == [MAIN, "/etc/ssh/extra.conf", "/etc/ssh/other.conf"]
    assert layout.ports() == [2200, 2300]
    assert layout.drop_in_path() is None  # neither pattern reads portcullis-ssh-port.conf


def test_read_layout_include_keyword_is_case_insensitive():
    layout = layout_of({MAIN: "include=/etc/ssh/sshd_config.d/*.conf\n", DROP_IN_DIR + "/a.conf": "Port 2200\n"})
    assert layout.order == [MAIN, DROP_IN_DIR + "/a.conf"]
    assert layout.drop_in_path() == OWN_DROP_IN


def test_read_layout_include_inside_match_is_ignored():
    files = Files({
        MAIN: "Port 22\nMatch User bob\n    Include /etc/ssh/sshd_config.d/*.conf\n",
        DROP_IN_DIR + "/a.conf": "Port 2200\n",
    })
    layout = files.layout()
    assert files.expanded == []
    assert layout.includes == []
    assert layout.order == [MAIN]
    assert layout.drop_in_path() is None
    assert layout.ports() == [22]


def test_read_layout_nested_includes_are_read_where_their_line_is():
    layout = layout_of({
        MAIN: "Include /etc/ssh/a.conf\nInclude /etc/ssh/c.conf\n",
        "/etc/ssh/a.conf": "Include /etc/ssh/b.conf\nPort 2201\n",
        "/etc/ssh/b.conf": "Port 2202\n",
        "/etc/ssh/c.conf": "Port 2203\n",
    })
    assert layout.order == [MAIN, "/etc/ssh/a.conf", "/etc/ssh/b.conf", "/etc/ssh/c.conf"]
    assert layout.includes == ["/etc/ssh/a.conf", "/etc/ssh/c.conf"]  # the main file's own
    assert layout.ports() == [2201, 2202, 2203]


def test_read_layout_include_loop_reads_each_file_once():
    layout = layout_of({
        MAIN: "Include /etc/ssh/a.conf\nPort 22\n",
        "/etc/ssh/a.conf": "Include /etc/ssh/sshd_config\nInclude /etc/ssh/a.conf\nPort 2200\n",
    })
    assert layout.order == [MAIN, "/etc/ssh/a.conf"]
    assert layout.ports() == [22, 2200]


def test_read_layout_skips_unreadable_and_unmatched_includes():
    files = Files({MAIN: "Include /etc/ssh/none/*.conf\nInclude /etc/ssh/gone.conf\n"})
    files.expand = lambda pattern: ["/etc/ssh/gone.conf"] if pattern == "/etc/ssh/gone.conf" else []
    layout = files.layout()
    assert layout.order == [MAIN]
    assert set(layout.texts) == {MAIN}
    assert layout.ports() == [22]


def chain(length):
    files = {MAIN: "Include /etc/ssh/level1.conf\n"}
    for level in range(1, length + 1):
        files["/etc/ssh/level%d.conf" % level] = "Include /etc/ssh/level%d.conf\n" % (level + 1)
    return files


def test_read_layout_include_depth_limit():
    layout = layout_of(chain(MAX_INCLUDE_DEPTH))
    assert len(layout.order) == MAX_INCLUDE_DEPTH + 1
    with pytest.raises(SshdConfigError, match="Include nested deeper than %d levels" % MAX_INCLUDE_DEPTH):
        layout_of(chain(MAX_INCLUDE_DEPTH + 1))


@pytest.mark.parametrize("includes, expected", [
    (["/etc/ssh/sshd_config.d/*.conf"], OWN_DROP_IN),
    (["/etc/ssh/sshd_config.d/*"], OWN_DROP_IN),
    (["/etc/ssh/sshd_config.d/portcullis-*.conf"], OWN_DROP_IN),
    (["/etc/ssh/sshd_config.d/[0-9]*.conf"], None),
    (["/etc/ssh/*/x.conf"], None),  # a glob in the directory: no single place to write
    (["/etc/ssh/crypto.conf"], None),
    ([], None),
    (["/etc/ssh/crypto.conf", "/etc/ssh/local.d/*.conf", "/etc/ssh/sshd_config.d/*.conf"],
     "/etc/ssh/local.d/portcullis-ssh-port.conf"),
])
def test_drop_in_path(includes, expected):
    text = "".join("Include %s\n" % pattern for pattern in includes)
    assert layout_of({MAIN: text}).drop_in_path() == expected


# --- ports and global lines ------------------------------------------------------------------------

def test_ports_default_22_when_no_port_line():
    assert layout_of({MAIN: "#Port 2222\nPermitRootLogin no\n"}).ports() == [22]


def test_ports_collects_every_file_sorted_without_duplicates():
    layout = layout_of(debian_files(**{"10_a": "Port 22\nPort 2200\n", "20_b": "port 22\nPORT=2300\n"}))
    assert layout.ports() == [22, 2200, 2300]


def test_ports_ignore_match_blocks_in_every_file():
    layout = layout_of(debian_files(**{"10_a": "Port 2201\nMatch Address 10.0.0.0/8\n    Port 2299\n"}))
    assert layout.ports() == [2200, 2201]
    assert [line.where() for line in layout.global_lines("port")] == [
        "/etc/ssh/sshd_config:6", DROP_IN_DIR + "/10-a.conf:1"]


def test_ports_accept_a_trailing_comment():
    assert layout_of({MAIN: "Port 2200 # the old one\n"}).ports() == [2200]


@pytest.mark.parametrize("text, where, value", [
    ("# header\nPermitRootLogin no\nPort ssh\n", "/etc/ssh/sshd_config:3", "ssh"),
    ("Port 0\n", "/etc/ssh/sshd_config:1", "0"),
    ("Port 65536\n", "/etc/ssh/sshd_config:1", "65536"),
    ("\n\nPort\n", "/etc/ssh/sshd_config:3", ""),
])
def test_ports_bad_value_names_file_and_line(text, where, value):
    with pytest.raises(SshdConfigError) as error:
        layout_of({MAIN: text}).ports()
    assert str(error.value) == "%s: Port %r is not a port number (1-65535)" % (where, value)


def test_ports_bad_value_in_a_drop_in_names_the_drop_in():
    with pytest.raises(SshdConfigError, match="^/etc/ssh/sshd_config.d/50-bad.conf:2: Port '22x'"):
        layout_of(debian_files(**{"50_bad": "# x\nPort 22x\n"})).ports()


def test_ports_bad_value_inside_match_is_not_read():
    assert layout_of({MAIN: "Port 22\nMatch User bob\n  Port nonsense\n"}).ports() == [22]


def test_global_lines_record_path_number_and_arguments():
    layout = layout_of({MAIN: "Port 22\n# c\nListenAddress [::1]:22 rdomain foo\nMatch all\nListenAddress 1.2.3.4\n"})
    (line,) = layout.global_lines("listenaddress")
    assert (line.path, line.number, line.keyword, line.arguments, line.where()) == (
        MAIN, 2, "listenaddress", "[::1]:22 rdomain foo", "/etc/ssh/sshd_config:3")
    assert addresses_of(layout) == [("::1", 22, "rdomain foo")]


# --- planning: Debian layout (Include present) -----------------------------------------------------------

def test_plan_debian_writes_own_drop_in_and_comments_out_every_other_port():
    layout = layout_of(debian_files(**{"50_cloud_init": "PasswordAuthentication no\nPort 22\n"}))
    edits = plan_config(layout, [2222], moved_ports=[22, 2200])
    assert sorted(edits) == [MAIN, DROP_IN_DIR + "/50-cloud-init.conf", OWN_DROP_IN]
    assert edits[OWN_DROP_IN] == OWN_HEADER + "Port 2222\n"
    assert edits[DROP_IN_DIR + "/50-cloud-init.conf"] == (
        "PasswordAuthentication no\n" + disabled(OWN_DROP_IN, "Port 22") + "\n")
    assert edits[MAIN] == DEBIAN_MAIN.replace("\nPort 2200\n", "\n" + disabled(OWN_DROP_IN, "Port 2200") + "\n")
    assert BLOCK_BEGIN not in edits[MAIN]  # the main file only loses its Port line
    after = apply_edits(layout, edits)
    assert after.ports() == [2222]
    assert replan_is_empty(layout, edits, [2222], moved_ports=[22, 2200])
    assert replan_is_empty(layout, edits, [2222])


def test_plan_debian_commented_lines_say_where_the_port_is_set():
    edits = plan_config(layout_of(debian_files()), [2222])
    assert ("# disabled by portcullis.hardening.ssh_port (the port is set in "
            "/etc/ssh/sshd_config.d/portcullis-ssh-port.conf): Port 2200") in edits[MAIN].splitlines()


def test_plan_debian_keeps_the_commented_default_lines():
    edits = plan_config(layout_of(debian_files()), [2222])
    lines = edits[MAIN].splitlines()
    for line in ("#Port 22", "#ListenAddress 0.0.0.0", "#ListenAddress ::", "Include /etc/ssh/sshd_config.d/*.conf"):
        assert line in lines


def test_plan_nothing_to_comment_out_touches_only_the_drop_in():
    layout = layout_of({MAIN: "Include /etc/ssh/sshd_config.d/*.conf\nUsePAM yes\n"})
    edits = plan_config(layout, [2222], moved_ports=[22])
    assert edits == {OWN_DROP_IN: OWN_HEADER + "Port 2222\n"}
    assert apply_edits(layout, edits).ports() == [2222]


def test_plan_several_ports_sorted_in_the_drop_in():
    layout = layout_of(debian_files())
    edits = plan_config(layout, [2222, 22])
    assert edits[OWN_DROP_IN] == OWN_HEADER + "Port 22\nPort 2222\n"
    assert apply_edits(layout, edits).ports() == [22, 2222]


def test_plan_transition_then_final_on_debian():
    """Old and new port first (the transition), then the new one only: no duplicate, no leftover."""
    layout = layout_of(debian_files(**{"10_admin": "Port 22\n"}))
    transition = plan_config(layout, [22, 2200, 2222], moved_ports=[22, 2200])
    during = apply_edits(layout, transition)
    assert during.ports() == [22, 2200, 2222]
    assert [line.path for line in during.global_lines("port")] == [OWN_DROP_IN] * 3
    final = plan_config(during, [2222], moved_ports=[22, 2200])
    assert sorted(final) == [OWN_DROP_IN]  # the other files were dealt with in the transition
    after = apply_edits(during, final)
    assert after.ports() == [2222]
    assert [line.arguments for line in after.global_lines("port")] == ["2222"]
    assert replan_is_empty(during, final, [2222], moved_ports=[22, 2200])


def test_plan_keyword_case_insensitive_port_lines_are_commented_out():
    layout = layout_of({MAIN: "Include /etc/ssh/sshd_config.d/*.conf\nport 22\nPORT=2200\n"})
    edits = plan_config(layout, [2222], moved_ports=[22, 2200])
    assert edits[MAIN].splitlines()[1:] == [disabled(OWN_DROP_IN, "port 22"), disabled(OWN_DROP_IN, "PORT=2200")]
    assert apply_edits(layout, edits).ports() == [2222]


def test_plan_leaves_port_and_listen_address_inside_match_untouched():
    match = "Match Address 10.0.0.0/8\n    Port 2299\n    ListenAddress 10.0.0.1:22\n"
    layout = layout_of({MAIN: "Include /etc/ssh/sshd_config.d/*.conf\nPort 22\n" + match})
    edits = plan_config(layout, [2222], moved_ports=[22])
    assert edits[MAIN] == "Include /etc/ssh/sshd_config.d/*.conf\n" + disabled(OWN_DROP_IN, "Port 22") + "\n" + match
    assert edits[OWN_DROP_IN] == OWN_HEADER + "Port 2222\n"


def test_plan_match_in_a_drop_in_protects_only_the_lines_after_it():
    drop_in = "Port 2201\nMatch User bob\n    Port 2299\n"
    layout = layout_of(debian_files(**{"20_x": drop_in}))
    edits = plan_config(layout, [2222], moved_ports=[2200, 2201])
    assert edits[DROP_IN_DIR + "/20-x.conf"] == disabled(OWN_DROP_IN, "Port 2201") + "\nMatch User bob\n    Port 2299\n"


def test_plan_keeps_listen_addresses_without_port():
    main = "Include /etc/ssh/sshd_config.d/*.conf\nListenAddress 0.0.0.0\nListenAddress ::\nPort 22\n"
    layout = layout_of({MAIN: main})
    edits = plan_config(layout, [2222], moved_ports=[22])
    assert edits[MAIN].splitlines() == main.splitlines()[:3] + [disabled(OWN_DROP_IN, "Port 22")]
    assert edits[OWN_DROP_IN] == OWN_HEADER + "Port 2222\n"
    assert addresses_of(apply_edits(layout, edits)) == [("0.0.0.0", None, ""), ("::", None, "")]


def test_plan_rewrites_listen_addresses_that_pin_a_moved_port_ipv4_and_ipv6():
    main = ("Include /etc/ssh/sshd_config.d/*.conf\n"
            "ListenAddress 0.0.0.0:22\n"
            "ListenAddress [::1]:22 rdomain foo\n"
            "ListenAddress [::]:22\n"
            "ListenAddress 192.0.2.10:2200\n")
    layout = layout_of({MAIN: main})
    edits = plan_config(layout, [2222], moved_ports=[22])
    assert edits[MAIN].splitlines() == [
        "Include /etc/ssh/sshd_config.d/*.conf",
        disabled(OWN_DROP_IN, "ListenAddress 0.0.0.0:22"),
        disabled(OWN_DROP_IN, "ListenAddress [::1]:22 rdomain foo"),
        disabled(OWN_DROP_IN, "ListenAddress [::]:22"),
        "ListenAddress 192.0.2.10:2200",  # its port is not moved
    ]
    assert edits[OWN_DROP_IN] == (OWN_HEADER + "Port 2222\nListenAddress 0.0.0.0\nListenAddress ::1 rdomain foo\n"
                                  "ListenAddress ::\n")
    after = apply_edits(layout, edits)
    assert after.ports() == [2222]
    assert sorted(addresses_of(after)) == [
        ("0.0.0.0", None, ""), ("192.0.2.10", 2200, ""), ("::", None, ""), ("::1", None, "rdomain foo")]
    # IPv6 is not lost on the way.
    assert [address for address, _port, _rest in addresses_of(after) if ":" in address] == ["::1", "::"]
    assert replan_is_empty(layout, edits, [2222], moved_ports=[22])


def test_plan_rewritten_listen_addresses_are_not_duplicated():
    main = "Include /etc/ssh/sshd_config.d/*.conf\nListenAddress 0.0.0.0:22\nListenAddress 0.0.0.0:2200\n"
    layout = layout_of({MAIN: main})
    edits = plan_config(layout, [2222], moved_ports=[22, 2200])
    assert edits[OWN_DROP_IN] == OWN_HEADER + "Port 2222\nListenAddress 0.0.0.0\n"


def test_plan_listen_addresses_in_other_drop_ins_are_rewritten_too():
    layout = layout_of(debian_files(**{"30_listen": "ListenAddress [2001:db8::10]:2200\n"}))
    edits = plan_config(layout, [2222], moved_ports=[2200])
    assert edits[DROP_IN_DIR + "/30-listen.conf"] == disabled(OWN_DROP_IN, "ListenAddress [2001:db8::10]:2200") + "\n"
    assert edits[OWN_DROP_IN] == OWN_HEADER + "Port 2222\nListenAddress 2001:db8::10\n"


def test_plan_listen_addresses_given_replace_every_global_listen_address():
    main = ("Include /etc/ssh/sshd_config.d/*.conf\nListenAddress 0.0.0.0\nListenAddress [::]:22\nPort 22\n"
            "Match User bob\n    ListenAddress 10.9.9.9\n")
    layout = layout_of({MAIN: main})
    wanted = parse_addresses(["192.0.2.10", "2001:db8::10"])
    edits = plan_config(layout, [2222], wanted, moved_ports=[22])
    assert edits[MAIN].splitlines() == [
        "Include /etc/ssh/sshd_config.d/*.conf",
        disabled(OWN_DROP_IN, "ListenAddress 0.0.0.0"),
        disabled(OWN_DROP_IN, "ListenAddress [::]:22"),
        disabled(OWN_DROP_IN, "Port 22"),
        "Match User bob",
        "    ListenAddress 10.9.9.9",
    ]
    assert edits[OWN_DROP_IN] == OWN_HEADER + "Port 2222\nListenAddress 192.0.2.10\nListenAddress 2001:db8::10\n"
    after = apply_edits(layout, edits)
    assert addresses_of(after) == [("192.0.2.10", None, ""), ("2001:db8::10", None, "")]
    assert replan_is_empty(layout, edits, [2222], wanted, moved_ports=[22])


def test_plan_listen_addresses_given_replace_those_of_an_earlier_run():
    layout = layout_of(debian_files())
    first = plan_config(layout, [2222], parse_addresses(["192.0.2.10"]))
    during = apply_edits(layout, first)
    second = plan_config(during, [2222], parse_addresses(["192.0.2.11"]))
    assert second == {OWN_DROP_IN: OWN_HEADER + "Port 2222\nListenAddress 192.0.2.11\n"}


def test_plan_moving_again_keeps_the_addresses_the_own_drop_in_holds():
    layout = layout_of({MAIN: "Include /etc/ssh/sshd_config.d/*.conf\nListenAddress [::]:22\nPort 22\n"})
    first = apply_edits(layout, plan_config(layout, [2222], moved_ports=[22]))
    edits = plan_config(first, [3333], moved_ports=[2222])
    assert edits == {OWN_DROP_IN: OWN_HEADER + "Port 3333\nListenAddress ::\n"}
    assert apply_edits(first, edits).ports() == [3333]


def test_plan_existing_own_drop_in_is_rewritten_not_commented_out():
    layout = layout_of(debian_files(**{"portcullis_ssh_port": OWN_HEADER + "Port 2222\n"}))
    edits = plan_config(layout, [3333], moved_ports=[2222])
    assert edits[OWN_DROP_IN] == OWN_HEADER + "Port 3333\n"
    assert DISABLED.split("(", maxsplit=1)[0] not in edits[OWN_DROP_IN]
    assert apply_edits(layout, edits).ports() == [3333]


def test_plan_debian_on_disk_round_trip_is_idempotent():
    """Write the edits into the file tree, read it again the way the module would, plan again: nothing."""
    files = Files(debian_files(**{"10_a": "Port 22\nListenAddress 0.0.0.0:22\n"}))
    edits = plan_config(files.layout(), [2222], moved_ports=[22, 2200])
    files.write(edits)
    again = files.layout()
    assert again.order == [MAIN, DROP_IN_DIR + "/10-a.conf", OWN_DROP_IN]
    assert again.ports() == [2222]
    assert plan_config(again, [2222], moved_ports=[22, 2200]) == {}
    assert plan_config(again, [2222]) == {}


# --- planning: no Include (marked block in the main file) -------------------------------------------------

def test_plan_without_include_inserts_block_before_first_match():
    layout = layout_of({MAIN: PLAIN_MAIN})
    edits = plan_config(layout, [2222], moved_ports=[22])
    assert list(edits) == [MAIN]
    assert edits[MAIN] == (
        "# sshd configuration\n"
        + disabled(MAIN, "Port 22") + "\n"
        "ListenAddress 0.0.0.0\n"
        "ListenAddress ::\n"
        "PermitRootLogin prohibit-password\n"
        "Subsystem sftp internal-sftp\n"
        "\n"
        + BLOCK_BEGIN + "\nPort 2222\n" + BLOCK_END + "\n"
        "Match Group sftponly\n"
        "    ChrootDirectory /srv/%u\n"
        "    ForceCommand internal-sftp\n")
    after = apply_edits(layout, edits)
    assert after.ports() == [2222]
    assert addresses_of(after) == [("0.0.0.0", None, ""), ("::", None, "")]
    assert replan_is_empty(layout, edits, [2222], moved_ports=[22])


def test_plan_without_include_and_without_match_appends_block():
    layout = layout_of({MAIN: "Port 22\nUsePAM yes\n"})
    edits = plan_config(layout, [2222])
    assert edits[MAIN].splitlines() == [disabled(MAIN, "Port 22"), "UsePAM yes", BLOCK_BEGIN, "Port 2222", BLOCK_END]
    assert edits[MAIN].endswith(BLOCK_END + "\n")
    assert replan_is_empty(layout, edits, [2222])


def test_plan_empty_main_file_gets_only_the_block():
    layout = layout_of({MAIN: ""})
    edits = plan_config(layout, [2222])
    assert edits == {MAIN: BLOCK_BEGIN + "\nPort 2222\n" + BLOCK_END + "\n"}
    assert apply_edits(layout, edits).ports() == [2222]


def test_plan_without_include_replans_replace_the_block_in_place():
    layout = layout_of({MAIN: PLAIN_MAIN})
    during = apply_edits(layout, plan_config(layout, [22, 2222], moved_ports=[22]))
    assert during.ports() == [22, 2222]
    final = plan_config(during, [2222], moved_ports=[22])
    text = final[MAIN]
    assert text.count(BLOCK_BEGIN) == 1 and text.count(BLOCK_END) == 1
    lines = text.splitlines()
    begin = lines.index(BLOCK_BEGIN)
    assert lines[begin:begin + 3] == [BLOCK_BEGIN, "Port 2222", BLOCK_END]
    assert lines[begin + 3] == "Match Group sftponly"
    assert text.count(disabled(MAIN, "Port 22")) == 1
    after = apply_edits(during, final)
    assert after.ports() == [2222]
    assert replan_is_empty(during, final, [2222], moved_ports=[22])


def test_plan_without_include_block_stays_where_it_is_even_after_the_first_match_moved():
    text = "Port 22\n" + BLOCK_BEGIN + "\nPort 2200\n" + BLOCK_END + "\nUsePAM yes\n"
    edits = plan_config(layout_of({MAIN: text}), [2222])
    assert edits[MAIN] == (disabled(MAIN, "Port 22") + "\n" + BLOCK_BEGIN + "\nPort 2222\n" + BLOCK_END
                           + "\nUsePAM yes\n")


def test_plan_without_include_pinned_listen_address_goes_into_the_block_and_stays():
    """The block's own ListenAddress lines are kept when planning again or moving again (regression)."""
    main = "ListenAddress 0.0.0.0:22\nListenAddress [::]:22\nPort 22\nMatch User bob\n    X11Forwarding no\n"
    layout = layout_of({MAIN: main})
    edits = plan_config(layout, [2222], moved_ports=[22])
    lines = edits[MAIN].splitlines()
    assert lines == [
        disabled(MAIN, "ListenAddress 0.0.0.0:22"),
        disabled(MAIN, "ListenAddress [::]:22"),
        disabled(MAIN, "Port 22"),
        BLOCK_BEGIN, "Port 2222", "ListenAddress 0.0.0.0", "ListenAddress ::", BLOCK_END,
        "Match User bob", "    X11Forwarding no",
    ]
    after = apply_edits(layout, edits)
    assert addresses_of(after) == [("0.0.0.0", None, ""), ("::", None, "")]
    assert plan_config(after, [2222], moved_ports=[22]) == {}
    assert plan_config(after, [2222]) == {}
    moved_again = plan_config(after, [3333], moved_ports=[2222])
    assert "\n" + BLOCK_BEGIN + "\nPort 3333\nListenAddress 0.0.0.0\nListenAddress ::\n" + BLOCK_END + "\n" in (
        moved_again[MAIN])
    assert addresses_of(apply_edits(after, moved_again)) == [("0.0.0.0", None, ""), ("::", None, "")]


def test_plan_without_include_listen_addresses_given():
    layout = layout_of({MAIN: PLAIN_MAIN})
    wanted = parse_addresses(["2001:db8::10"])
    edits = plan_config(layout, [2222], wanted, moved_ports=[22])
    lines = edits[MAIN].splitlines()
    assert disabled(MAIN, "ListenAddress 0.0.0.0") in lines
    assert disabled(MAIN, "ListenAddress ::") in lines
    begin = lines.index(BLOCK_BEGIN)
    assert lines[begin:begin + 4] == [BLOCK_BEGIN, "Port 2222", "ListenAddress 2001:db8::10", BLOCK_END]
    after = apply_edits(layout, edits)
    assert addresses_of(after) == [("2001:db8::10", None, "")]
    assert replan_is_empty(layout, edits, [2222], wanted, moved_ports=[22])


def test_plan_include_that_does_not_read_the_drop_in_name_uses_the_block():
    layout = layout_of({MAIN: "Include /etc/ssh/crypto.conf\nPort 22\n", "/etc/ssh/crypto.conf": "Port 2200\n"})
    assert layout.drop_in_path() is None
    edits = plan_config(layout, [2222], moved_ports=[22, 2200])
    assert edits["/etc/ssh/crypto.conf"] == disabled(MAIN, "Port 2200") + "\n"
    assert edits[MAIN] == ("Include /etc/ssh/crypto.conf\n" + disabled(MAIN, "Port 22") + "\n" + BLOCK_BEGIN
                           + "\nPort 2222\n" + BLOCK_END + "\n")
    assert apply_edits(layout, edits).ports() == [2222]
    assert replan_is_empty(layout, edits, [2222], moved_ports=[22, 2200])


def test_plan_without_include_on_disk_round_trip_is_idempotent():
    files = Files({MAIN: PLAIN_MAIN.replace("ListenAddress ::\n", "ListenAddress [::]:22\n")})
    files.write(plan_config(files.layout(), [2222], moved_ports=[22]))
    again = files.layout()
    assert again.ports() == [2222]
    assert ("::", None, "") in addresses_of(again)
    assert plan_config(again, [2222], moved_ports=[22]) == {}


# --- lines as sshd reads them: "\n" only; every byte not edited stays ---------------------------------

@pytest.mark.parametrize("text, lines", [
    ("", []),
    ("\n", [""]),
    ("Port 22", ["Port 22"]),
    ("Port 22\n", ["Port 22"]),
    ("Port 22\r\nUsePAM yes\r\n", ["Port 22\r", "UsePAM yes\r"]),
    ("# a\fb\vc\x1cd\x1de\x1ef\x85g\u2028h\u2029i\nPort 22\n",
     ["# a\fb\vc\x1cd\x1de\x1ef\x85g\u2028h\u2029i", "Port 22"]),
    ("a\rb\n", ["a\rb"]),                                                      # a lone "\r" ends no line
    ("a\n\nb", ["a", "", "b"]),
])
def test_config_lines_split_at_newlines_only(text, lines):
    assert config_lines(text) == lines
    assert join_lines(config_lines(text), text) == text


def changed_lines(old, new):
    """[(lines of `old`, lines of `new` in their place)] for each place the texts differ. Lines are split at "\n"
    only, keeping their "\r" and the last one's lack of a "\n": everything outside these is byte-identical."""
    old_lines, new_lines = old.split("\n"), new.split("\n")
    matcher = difflib.SequenceMatcher(a=old_lines, b=new_lines, autojunk=False)
    return [(old_lines[i1:i2], new_lines[j1:j2]) for tag, i1, i2, j1, j2 in matcher.get_opcodes() if tag != "equal"]


def test_plan_crlf_files_change_only_the_port_lines_and_keep_crlf():
    main = DEBIAN_MAIN.replace("\n", "\r\n")
    other = "# moved by hand\r\nPort 2201\r\nClientAliveInterval 30\r\n"
    layout = layout_of({MAIN: main, DROP_IN_DIR + "/10-other.conf": other})
    assert [line.where() for line in layout.global_lines("port")] == [MAIN + ":6", DROP_IN_DIR + "/10-other.conf:2"]
    edits = plan_config(layout, [2222], moved_ports=[2200, 2201])
    assert changed_lines(main, edits[MAIN]) == [(["Port 2200\r"], [disabled(OWN_DROP_IN, "Port 2200") + "\r"])]
    assert changed_lines(other, edits[DROP_IN_DIR + "/10-other.conf"]) == [
        (["Port 2201\r"], [disabled(OWN_DROP_IN, "Port 2201") + "\r"])]
    assert edits[OWN_DROP_IN] == OWN_HEADER + "Port 2222\n"
    assert apply_edits(layout, edits).ports() == [2222]
    assert replan_is_empty(layout, edits, [2222], moved_ports=[2200, 2201])


def test_plan_crlf_file_without_include_gets_a_crlf_block_and_replans_to_nothing():
    main = PLAIN_MAIN.replace("\n", "\r\n")
    layout = layout_of({MAIN: main})
    edits = plan_config(layout, [2222], moved_ports=[22])
    assert changed_lines(main, edits[MAIN]) == [
        (["Port 22\r"], [disabled(MAIN, "Port 22") + "\r"]),
        ([], [BLOCK_BEGIN + "\r", "Port 2222\r", BLOCK_END + "\r"]),   # before the Match block, CRLF too
    ]
    assert edits[MAIN].split("\n")[10] == "Match Group sftponly\r"
    after = apply_edits(layout, edits)
    assert after.ports() == [2222]
    assert plan_config(after, [2222], moved_ports=[22]) == {}
    moved_again = plan_config(after, [3333], moved_ports=[2222])
    assert changed_lines(edits[MAIN], moved_again[MAIN]) == [(["Port 2222\r"], ["Port 3333\r"])]


def test_plan_form_feed_and_line_separators_stay_inside_their_comment():
    """str.splitlines() would cut this comment at \f, \v, \x1c-\x1e, \x85, U+2028 and U+2029 and write the pieces
    back as lines of their own, and `PermitRootLogin yes` would become a setting."""
    comment = "# notes\fpage 2\v\x1c\x1d\x1e\x85\u2028PermitRootLogin yes\u2029PasswordAuthentication yes"
    main = "Include /etc/ssh/sshd_config.d/*.conf\n" + comment + "\nPort 22\nUsePAM yes\n"
    layout = layout_of({MAIN: main})
    assert [line.where() for line in layout.global_lines("port")] == [MAIN + ":3"]  # sshd's line numbers
    assert layout.global_lines("permitrootlogin") == []
    edits = plan_config(layout, [2222], moved_ports=[22])
    assert changed_lines(main, edits[MAIN]) == [(["Port 22"], [disabled(OWN_DROP_IN, "Port 22")])]
    assert edits[MAIN].split("\n")[1] == comment
    assert apply_edits(layout, edits).global_lines("permitrootlogin") == []


def test_bad_port_value_is_reported_on_the_line_sshd_counts():
    with pytest.raises(SshdConfigError, match=r"sshd_config:3: Port 'x'"):
        layout_of({MAIN: "# a\u2028b\x85c\nUsePAM yes\nPort x\n"}).ports()


def test_plan_file_without_final_newline_keeps_that_when_its_last_line_is_edited():
    main = "Include /etc/ssh/sshd_config.d/*.conf\nUsePAM yes\nPort 22"
    edits = plan_config(layout_of({MAIN: main}), [2222], moved_ports=[22])
    assert edits[MAIN] == "Include /etc/ssh/sshd_config.d/*.conf\nUsePAM yes\n" + disabled(OWN_DROP_IN, "Port 22")


def test_plan_file_without_final_newline_keeps_that_when_the_block_is_appended():
    main = "Port 22\r\nUsePAM yes"
    layout = layout_of({MAIN: main})
    edits = plan_config(layout, [2222])
    assert edits[MAIN] == (disabled(MAIN, "Port 22") + "\r\nUsePAM yes\r\n" + BLOCK_BEGIN + "\r\nPort 2222\r\n"
                           + BLOCK_END)
    assert replan_is_empty(layout, edits, [2222])
    moved_again = plan_config(apply_edits(layout, edits), [3333], moved_ports=[2222])
    assert changed_lines(edits[MAIN], moved_again[MAIN]) == [(["Port 2222\r"], ["Port 3333\r"])]
    assert moved_again[MAIN].endswith("\r\n" + BLOCK_END)


def test_plan_file_without_final_newline_and_a_match_block():
    main = "Port 22\nMatch User bob\n    X11Forwarding no"
    edits = plan_config(layout_of({MAIN: main}), [2222])
    assert edits[MAIN] == (disabled(MAIN, "Port 22") + "\n" + BLOCK_BEGIN + "\nPort 2222\n" + BLOCK_END
                           + "\nMatch User bob\n    X11Forwarding no")


def test_plan_edited_line_keeps_its_own_ending_in_a_file_of_mixed_endings():
    main = "Include /etc/ssh/sshd_config.d/*.conf\nPort 22\r\nPort 2200\nUsePAM yes\r\n"
    edits = plan_config(layout_of({MAIN: main}), [2222], moved_ports=[22, 2200])
    assert edits[MAIN] == ("Include /etc/ssh/sshd_config.d/*.conf\n" + disabled(OWN_DROP_IN, "Port 22") + "\r\n"
                           + disabled(OWN_DROP_IN, "Port 2200") + "\nUsePAM yes\r\n")


def test_plan_untouched_crlf_file_is_not_rewritten():
    layout = layout_of(debian_files(**{"10_crypto": "Ciphers aes256-gcm@openssh.com\r\n"}))
    edits = plan_config(layout, [2222], moved_ports=[2200])
    assert DROP_IN_DIR + "/10-crypto.conf" not in edits


# --- apply_edits -----------------------------------------------------------------------------------

def test_apply_edits_replaces_adds_and_deletes_files():
    layout = layout_of(debian_files(**{"10_a": "Port 2201\n", "20_b": "Port 2202\n"}))
    after = apply_edits(layout, {DROP_IN_DIR + "/10-a.conf": None, DROP_IN_DIR + "/20-b.conf": "Port 2203\n",
                                 OWN_DROP_IN: "Port 2204\n"})
    assert after.order == [MAIN, DROP_IN_DIR + "/20-b.conf", OWN_DROP_IN]
    assert DROP_IN_DIR + "/10-a.conf" not in after.texts
    assert after.ports() == [2200, 2203, 2204]
    assert after.includes == layout.includes
    # The layout it started from is unchanged.
    assert layout.ports() == [2200, 2201, 2202]


def test_apply_edits_without_edits_is_the_same_configuration():
    layout = layout_of(debian_files())
    after = apply_edits(layout, {})
    assert (after.texts, after.order, after.ports()) == (layout.texts, layout.order, layout.ports())


# --- ssh.socket ------------------------------------------------------------------------------------

def test_parse_listen_property():
    text = ("Listen=[::]:22 (Stream)\n"
            "Listen=0.0.0.0:22 (Stream)\n"
            "  Listen=/run/sshd.sock (Stream)  \n"
            "Listen=vsock:4294967295:22 (Stream)\n"
            "Listen=[::]:514 (Datagram)\n"
            "Listen=not a listen line\n"
            "Accept=no\n")
    assert parse_listen_property(text) == [
        ("[::]:22", "Stream"), ("0.0.0.0:22", "Stream"), ("/run/sshd.sock", "Stream"),
        ("vsock:4294967295:22", "Stream"), ("[::]:514", "Datagram")]
    assert parse_listen_property("") == []


@pytest.mark.parametrize("address, expected", [
    ("[::]:22", 22),
    ("0.0.0.0:2222", 2222),
    ("22", 22),
    ("[fe80::1%eth0]:22", 22),
    ("/run/sshd.sock", None),
    ("vsock:4294967295:22", None),
    ("@abstract", None),
])
def test_stream_port(address, expected):
    assert stream_port(address) == expected


def test_socket_listens_transition_then_final():
    assert socket_listens([("[::]:22", "Stream")], [22, 2222], [22]) == [("[::]:22", "Stream"), ("[::]:2222", "Stream")]
    assert socket_listens([("[::]:22", "Stream")], [2222], [22]) == [("[::]:2222", "Stream")]
    # From the transition's entries to the final ones: no duplicate of the new port.
    during = [("[::]:22", "Stream"), ("[::]:2222", "Stream")]
    assert socket_listens(during, [2222], [22]) == [("[::]:2222", "Stream")]


def test_socket_listens_keeps_address_family_and_plain_ports():
    listens = [("0.0.0.0:22", "Stream"), ("[::]:22", "Stream"), ("22", "Stream")]
    assert socket_listens(listens, [2222], [22]) == [("0.0.0.0:2222", "Stream"), ("[::]:2222", "Stream"),
                                                     ("2222", "Stream")]


def test_socket_listens_keeps_entries_that_are_not_moved_in_place():
    listens = [("/run/sshd.sock", "Stream"), ("[::]:22", "Stream"), ("[::]:514", "Datagram"),
               ("vsock:4294967295:22", "Stream"), ("[::]:2200", "Stream"), ("[::]:22", "Datagram")]
    assert socket_listens(listens, [2222], [22]) == [
        ("/run/sshd.sock", "Stream"), ("[::]:2222", "Stream"), ("[::]:514", "Datagram"),
        ("vsock:4294967295:22", "Stream"), ("[::]:2200", "Stream"), ("[::]:22", "Datagram")]


def test_socket_listens_without_a_moved_entry_adds_the_new_ones_at_the_end():
    assert socket_listens([("/run/sshd.sock", "Stream")], [2222], [22]) == [("/run/sshd.sock", "Stream")]
    listens = [("/run/sshd.sock", "Stream")]
    assert socket_listens(listens, [2222], [22], parse_addresses(["192.0.2.10"])) == [
        ("/run/sshd.sock", "Stream"), ("192.0.2.10:2222", "Stream")]


def test_socket_listens_with_listen_addresses():
    listens = [("[::]:22", "Stream"), ("[::]:514", "Datagram")]
    wanted = parse_addresses(["192.0.2.10", "2001:db8::10"])
    assert socket_listens(listens, [22, 2222], [22], wanted) == [
        ("192.0.2.10:22", "Stream"), ("192.0.2.10:2222", "Stream"),
        ("[2001:db8::10]:22", "Stream"), ("[2001:db8::10]:2222", "Stream"), ("[::]:514", "Datagram")]
    assert socket_listens(listens, [2222], [22], wanted) == [
        ("192.0.2.10:2222", "Stream"), ("[2001:db8::10]:2222", "Stream"), ("[::]:514", "Datagram")]


def test_socket_listens_with_listen_addresses_is_idempotent():
    """Once the socket listens where asked, asking again changes nothing (regression: it doubled the entries)."""
    wanted = parse_addresses(["192.0.2.10", "2001:db8::10"])
    first = socket_listens([("[::]:22", "Stream")], [2222], [22], wanted)
    assert socket_listens(first, [2222], [], wanted) == first
    assert socket_drop_in(socket_listens(first, [2222], [], wanted)) == socket_drop_in(first)


def test_socket_listens_with_listen_addresses_replaces_a_wildcard_on_the_same_port():
    listens = [("[::]:2222", "Stream")]
    assert socket_listens(listens, [2222], [], parse_addresses(["192.0.2.10"])) == [("192.0.2.10:2222", "Stream")]


def test_socket_drop_in():
    text = socket_drop_in([("[::]:2222", "Stream"), ("[::]:514", "Datagram"), ("/run/x.fifo", "FIFO"),
                           ("/dev/x", "Special"), ("/run/seq", "SequentialPacket")])
    lines = text.splitlines()
    assert all(line.startswith("#") for line in lines[:2])
    assert lines[2:] == ["[Socket]", "ListenStream=", "ListenStream=[::]:2222", "ListenDatagram=[::]:514",
                         "ListenFIFO=/run/x.fifo", "ListenSpecial=/dev/x", "ListenSequentialPacket=/run/seq"]
    assert text.endswith("\n")


def test_socket_drop_in_empty_assignment_comes_before_every_entry():
    lines = socket_drop_in([("0.0.0.0:2222", "Stream")]).splitlines()
    assert lines.index("[Socket]") < lines.index("ListenStream=") < lines.index("ListenStream=0.0.0.0:2222")


def test_socket_drop_in_unknown_type_raises():
    with pytest.raises(SshdConfigError, match=r"ssh.socket listens on \[::\]:22 \(Bogus\)"):
        socket_drop_in([("[::]:2222", "Stream"), ("[::]:22", "Bogus")])


# --- SELinux -------------------------------------------------------------------------------------------

SEMANAGE = (
    "ssh_port_t                     tcp      22\n"
    "http_port_t                    tcp      80, 81, 443, 488, 8008, 8009, 8443, 9000\n"
    "unreserved_port_t              tcp      61000-65535, 1024-32767\n"
    "unreserved_port_t              udp      61000-65535, 1024-32767\n"
    "ephemeral_port_t               tcp      32768-60999\n"
    "xserver_port_t                 tcp      6000-6020\n"
)


@pytest.mark.parametrize("text, expected", [
    (None, "disabled"),
    ("1\n", "enforcing"),
    ("1", "enforcing"),
    ("0\n", "permissive"),
])
def test_selinux_mode(text, expected):
    assert selinux_mode(text) == expected


def test_parse_semanage_ports():
    assert parse_semanage_ports(SEMANAGE) == [
        ("ssh_port_t", "tcp", 22, 22),
        ("http_port_t", "tcp", 80, 80), ("http_port_t", "tcp", 81, 81), ("http_port_t", "tcp", 443, 443),
        ("http_port_t", "tcp", 488, 488), ("http_port_t", "tcp", 8008, 8008), ("http_port_t", "tcp", 8009, 8009),
        ("http_port_t", "tcp", 8443, 8443), ("http_port_t", "tcp", 9000, 9000),
        ("unreserved_port_t", "tcp", 61000, 65535), ("unreserved_port_t", "tcp", 1024, 32767),
        ("unreserved_port_t", "udp", 61000, 65535), ("unreserved_port_t", "udp", 1024, 32767),
        ("ephemeral_port_t", "tcp", 32768, 60999),
        ("xserver_port_t", "tcp", 6000, 6020),
    ]


def test_parse_semanage_ports_skips_headers_and_garbage():
    text = ("SELinux Port Type              Proto    Port Number\n"
            "\n"
            "odd_port_t                     tcp      12, x, 13-y, , 14\n"
            "short_line_t\n"
            "other_port_t                   icmp     1\n")
    assert parse_semanage_ports(text) == [("odd_port_t", "tcp", 12, 12), ("odd_port_t", "tcp", 14, 14)]


@pytest.mark.parametrize("port, protocol, expected", [
    (22, "tcp", "ssh_port_t"),
    (8443, "tcp", "http_port_t"),
    (2222, "tcp", "unreserved_port_t"),
    (62000, "tcp", "unreserved_port_t"),
    (40000, "tcp", "ephemeral_port_t"),
    (6010, "tcp", "xserver_port_t"),
    (22, "udp", None),
    (2222, "udp", "unreserved_port_t"),
    (1000, "tcp", None),
])
def test_port_type(port, protocol, expected):
    assert port_type(parse_semanage_ports(SEMANAGE), port, protocol) == expected


def test_port_type_picks_the_narrowest_range_in_any_order():
    records = [("wide_t", "tcp", 1, 65535), ("narrow_t", "tcp", 2222, 2222), ("middle_t", "tcp", 2000, 3000)]
    for ordering in (records, records[::-1], records[1:] + records[:1]):
        assert port_type(ordering, 2222) == "narrow_t"
    assert port_type(records, 2500) == "middle_t"
    assert port_type(records, 80) == "wide_t"


def test_selinux_commands_unlabelled_port():
    assert selinux_commands(2222, None) == (
        [["semanage", "port", "-a", "-t", "ssh_port_t", "-p", "tcp", "2222"]],
        [["semanage", "port", "-d", "-t", "ssh_port_t", "-p", "tcp", "2222"]])


def test_selinux_commands_port_labelled_with_another_type():
    assert selinux_commands(8008, "http_port_t") == (
        [["semanage", "port", "-m", "-t", "ssh_port_t", "-p", "tcp", "8008"]],
        [["semanage", "port", "-m", "-t", "http_port_t", "-p", "tcp", "8008"]])


def test_selinux_commands_port_already_ssh_port_t():
    assert selinux_commands(22, "ssh_port_t") == ([], [])
    assert selinux_commands(2222, "custom_t", wanted="custom_t") == ([], [])


def test_selinux_commands_are_plain_strings():
    apply, undo = selinux_commands(2222, None)
    assert all(isinstance(word, str) for command in apply + undo for word in command)


# --- the kernel and addresses ----------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("32768\t60999\n", (32768, 60999)),
    ("1024 65535", (1024, 65535)),
    (None, None),
    ("", None),
    ("32768\n", None),
    ("a b", None),
    ("1 2 3", None),
])
def test_parse_port_range(text, expected):
    assert parse_port_range(text) == expected


def test_parse_addresses():
    parsed = parse_addresses(["192.0.2.10", "2001:db8::10", "[::1]", "::"])
    assert parsed == [ipaddress.ip_address("192.0.2.10"), ipaddress.ip_address("2001:db8::10"),
                      ipaddress.ip_address("::1"), ipaddress.ip_address("::")]
    assert [str(address) for address in parsed] == ["192.0.2.10", "2001:db8::10", "::1", "::"]
    assert parse_addresses([]) == []


@pytest.mark.parametrize("values, index, bad", [
    (["192.0.2.10:22"], 0, "192.0.2.10:22"),
    (["192.0.2.10", "[::1]:22"], 1, "[::1]:22"),
    (["host.example"], 0, "host.example"),
    (["192.0.2.0/24"], 0, "192.0.2.0/24"),
])
def test_parse_addresses_rejects_ports_names_and_networks(values, index, bad):
    with pytest.raises(SshdConfigError) as error:
        parse_addresses(values, name="listen")
    assert str(error.value).startswith("listen[%d]: %r is not an IPv4 or IPv6 address" % (index, bad))


# --- which listener is sshd's ------------------------------------------------------------------------

SSHD = {"pid": 400, "name": "sshd", "cmdline": "sshd: /usr/sbin/sshd -D [listener] 0 of 10-100 startups",
        "unit": "ssh.service", "uid": 0, "exe": "/usr/sbin/sshd", "exe_deleted": False}
SYSTEMD = {"pid": 1, "name": "systemd", "cmdline": "/sbin/init", "unit": "init.scope", "uid": 0,
           "exe": "/usr/lib/systemd/systemd", "exe_deleted": False}


def process(base=None, **changes):
    return dict(SSHD if base is None else base, **changes)


@pytest.mark.parametrize("changes, expected", [
    ({}, True),
    ({"unit": "sshd.service", "exe": "/usr/bin/sshd"}, True),                # Fedora 42+, Arch
    ({"exe_deleted": True}, True),                                           # upgraded, not restarted yet
    ({"name": "renamed"}, True),                                             # the name is not what counts
    # A user's program called sshd, on a port above 1024.
    ({"uid": 1000, "exe": "/home/mallory/sshd", "unit": "session-3.scope"}, False),
    # The real binary, run by a user.
    ({"uid": 1000, "unit": "user@1000.service"}, False),
    ({"uid": 1000}, False),
    # Root, called sshd, but another program.
    ({"exe": "/tmp/sshd"}, False),
    ({"exe": "/usr/sbin/sshd-session"}, False),
    ({"exe": "/usr/lib/openssh/sshd-session"}, False),                       # a connection, not the listener
    # Root, the real binary, in another unit or none.
    ({"unit": "portcullis-rogue-web.service"}, False),
    ({"unit": "session-1.scope"}, False),                                    # started by hand
    ({"unit": "ssh.socket"}, False),
    ({"unit": None}, False),
    # Not readable (no privileges): not evidence either way, so not sshd.
    ({"exe": None}, False),
    ({"uid": None}, False),
])
def test_is_sshd_process(changes, expected):
    assert is_sshd_process(process(**changes)) is expected


def test_is_sshd_process_with_other_units_and_executables():
    local = process(exe="/usr/local/sbin/sshd", unit="sshd.service")
    assert not is_sshd_process(local)
    assert is_sshd_process(local, executables=("/usr/local/sbin/sshd",))
    assert not is_sshd_process(process(), service_units=("sshd.service",))


@pytest.mark.parametrize("changes, expected", [
    ({}, True),
    ({"exe": "/lib/systemd/systemd"}, True),
    ({"pid": 1834, "uid": 1000, "unit": "init.scope"}, False),               # systemd --user
    ({"pid": 1834}, False),
    ({"uid": 1000}, False),
    ({"exe": "/tmp/systemd"}, False),
    ({"exe": None}, False),
])
def test_is_systemd_manager(changes, expected):
    assert is_systemd_manager(process(SYSTEMD, **changes)) is expected


def listener(port, *processes):
    return {"protocol": "tcp", "family": "ipv4", "address": "0.0.0.0", "port": port, "processes": list(processes)}


ROGUE = process(pid=900, uid=1000, exe="/home/mallory/sshd", unit="session-3.scope")


@pytest.mark.parametrize("held, socket_ports, expected", [
    (listener(22, SSHD), (), True),
    (listener(22, SSHD, process(pid=401)), (), True),                          # a child before it closes it
    (listener(22), (), False),                                                 # holders not readable
    (listener(2222, ROGUE), (), False),
    (listener(22, SSHD, ROGUE), (), False),                                    # shared with another program
    (listener(22, process(exe="/tmp/sshd")), (), False),
    (listener(22, process(unit="portcullis-rogue-web.service")), (), False),
    # Socket activation: systemd alone until the first connection, then systemd and sshd.
    (listener(22, SYSTEMD), (22,), True),
    (listener(22, SYSTEMD, SSHD), (22, 2222), True),
    (listener(22, SYSTEMD), (), False),                                        # not one of ssh.socket's ports
    (listener(8080, SYSTEMD), (22,), False),
    (listener(22, process(SYSTEMD, pid=1834, uid=1000)), (22,), False),        # systemd --user
    (listener(22, process(SYSTEMD, pid=950, exe="/usr/bin/python3")), (22,), False),  # called systemd
    (listener(22, SYSTEMD, ROGUE), (22,), False),
])
def test_sshd_listener(held, socket_ports, expected):
    assert sshd_listener(held, socket_ports) is expected


def test_sshd_listener_passes_the_units_and_executables_on():
    assert not sshd_listener(listener(22, SSHD), service_units=("sshd.service",))
    assert sshd_listener(listener(22, process(exe="/opt/ssh/sbin/sshd")), executables=("/opt/ssh/sbin/sshd",))
