#!/bin/sh
# Copyright (c) Portcullis contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
''''exec python3 "$0" "$@" # '''
# The line above is read twice. /bin/sh runs it as `exec python3 <this file> <args>` (python3 from
# PATH, as "#!/usr/bin/env python3" did); Python reads it as a string and goes on. The shebang is
# /bin/sh because ansible-test's shebang sanity test allows only a few interpreters, and its
# "#!/usr/bin/env python" fails on a Debian host without the python-is-python3 package.

# Portcullis lab CLI: setup, build, up, down, status (stdlib only, python3 >= 3.9).
# The implementation lives in the package next to this file, lab/portcullis_lab/.

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from portcullis_lab.cli import main  # noqa: E402  pylint: disable=wrong-import-position

if __name__ == "__main__":
    sys.exit(main())
