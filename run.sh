#!/usr/bin/env bash
# Quick start: installs what Kilt needs, builds it, and runs the main job: the window when
# there is a display, otherwise `kilt-cli train` on the bundled sample data.
# SPDX-License-Identifier: GPL-3.0-or-later
set -euo pipefail
cd "$(dirname "$0")"
installer/deps.sh
[ -f build/build.ninja ] || meson setup build --buildtype=release >/dev/null
ninja -C build >/dev/null
if [ -n "${DISPLAY:-}${WAYLAND_DISPLAY:-}" ] && [ -x build/ui/kilt ]; then
  exec build/ui/kilt "$@"
fi
exec build/app/kilt-cli train "$@"
