# Copyright (c) Portcullis contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import unicodedata
import xml.etree.ElementTree as ET

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ansible_collections.portcullis.hardening.plugins.module_utils._text import printable

BIDI_CONTROLS = "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"


@pytest.mark.parametrize("text, shown", [
    ("sshd", "sshd"),
    ("/usr/sbin/nginx -g daemon on; master_process on;", "/usr/sbin/nginx -g daemon on; master_process on;"),
    ("r\u00e9solveur \u2603 \u6771\u4eac \U0001f642", "r\u00e9solveur \u2603 \u6771\u4eac \U0001f642"),
    ("\u00a0no-break space", "\u00a0no-break space"),
    ("C:\\path \\x1b", "C:\\path \\x1b"),  # backslashes stay
    ("\x1b]0;pwned\x07", "\\x1b]0;pwned\\x07"),  # set the terminal's title
    ("\x1b[2J\x1b[H", "\\x1b[2J\\x1b[H"),  # clear the screen
    ("ok\rFAKE", "ok\\rFAKE"),  # overwrite the line
    ("a\nb\tc", "a\\nb\\tc"),
    ("\x00\x08\x7f", "\\x00\\x08\\x7f"),
    ("\x9b31m\x85\x9d", "\\x9b31m\\x85\\x9d"),  # C1: CSI, NEL, OSC
    ("\u202eexe.txt", "\\u202eexe.txt"),  # right-to-left override
    ("\u2066x\u2069 \u200e\u200f\u061c", "\\u2066x\\u2069 \\u200e\\u200f\\u061c"),
    ("line\u2028para\u2029", "line\\u2028para\\u2029"),
    ("\ud800 \ufffe\uffff", "\\ud800 \\ufffe\\uffff"),  # a lone surrogate, noncharacters
    (22, "22"),
    (None, "None"),
])
def test_printable(text, shown):
    assert printable(text) == shown


@settings(max_examples=200, deadline=None, derandomize=True)
@given(st.text(alphabet=st.characters(codec=None) | st.sampled_from(BIDI_CONTROLS + "\x1b\x9b\r\n")))
def test_printable_text_has_nothing_that_controls_a_reader(text):
    shown = printable(text)
    assert not any(unicodedata.category(char) in ("Cc", "Cs", "Zl", "Zp") or char in BIDI_CONTROLS
                   for char in shown)
    assert printable(shown) == shown
    shown.encode("utf-8")  # writable
    ET.fromstring("<a>%s</a>" % shown.replace("&", "&amp;").replace("<", "&lt;"))  # valid XML 1.0
    if shown == text:  # only what needs no escape is left alone
        assert not any(unicodedata.category(char) in ("Cc", "Cs") for char in text)
