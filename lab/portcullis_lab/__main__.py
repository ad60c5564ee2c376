# Copyright (c) Portcullis contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Allow ``python3 -m portcullis_lab`` (from the lab/ directory)."""

import sys

from .cli import main

sys.exit(main())
