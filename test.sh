#!/usr/bin/env bash
# Builds Kilt and runs every test suite (the UI suite under Xvfb); ends with "N passed, N failed".
# SPDX-License-Identifier: GPL-3.0-or-later
set -uo pipefail
cd "$(dirname "$0")"
installer/deps.sh --test || exit 1
exec tests/run-all.sh "$@"
