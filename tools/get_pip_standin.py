# Copyright (c) Portcullis contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Stand-in for the get-pip.py bootstrap script that ansible-test downloads.

ansible-test bootstraps pip in each sanity venv by running a downloaded get-pip.py, from a host this
lab cannot reach. `make sanity` copies this file to the cache path ansible-test reads instead
(~/.ansible/test/cache/get_pip_<version>.py). Like get-pip.py, it installs pip into the running
interpreter and then the requirement specifiers it is given (e.g. pip==24.2), from the package index.
"""

from __future__ import annotations

import subprocess
import sys

# get-pip.py options that are not pip options.
GET_PIP_ONLY_OPTIONS = {"--no-setuptools", "--no-wheel"}


def main():
    arguments = [arg for arg in sys.argv[1:] if arg not in GET_PIP_ONLY_OPTIONS]
    subprocess.check_call([sys.executable, "-m", "ensurepip", "--default-pip"])
    if arguments:
        subprocess.check_call([sys.executable, "-m", "pip", "install"] + arguments)


if __name__ == "__main__":
    main()
