# Copyright (c) Portcullis contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Text from a host made safe to show to people: process names, command lines, units, addresses, messages.

Private to the collection: pure functions, no AnsibleModule.
"""

from __future__ import annotations

import re

# What must not reach a terminal or a page as it is: C0 and C1 controls and DEL (escape sequences, a carriage
# return that overwrites the line), line and paragraph separators, bidirectional embeddings, overrides, isolates
# and marks (text shown in another order than it is, "Trojan Source"), lone surrogates (no encoding writes them)
# and the noncharacters U+FFFE and U+FFFF. Every character XML 1.0 cannot carry is among them, so printable text
# is valid XML character data too.
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069\ud800-\udfff\ufffe\uffff]")
_SHORT = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}


def _escape(match):
    char = match.group()
    if char in _SHORT:
        return _SHORT[char]
    code = ord(char)
    return "\\x%02x" % code if code < 0x100 else "\\u%04x" % code


def printable(text):
    """`text` (any value, as str() writes it) with those characters as visible escapes: \\x1b, \\n, \\u202e.

    Every other character stays, printable Unicode and backslashes included, so ordinary text is unchanged and
    printable(printable(text)) == printable(text).
    """
    return _UNPRINTABLE.sub(_escape, str(text))
