# Copyright (c) Portcullis contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Portcullis lab: throw-away Debian hosts (podman + systemd) reachable over real SSH.

Run ``lab/portcullis_lab.py --help``; see lab/README.md.
"""
