#!/usr/bin/env bash
# Configures a test build, runs every meson test suite, and prints the closing
# "N passed, N failed" line from meson's own results.
# SPDX-License-Identifier: GPL-3.0-or-later
set -uo pipefail
cd "$(dirname "$0")/.."
dir=build-test
if [ ! -f "$dir/build.ninja" ]; then
  meson setup "$dir" --buildtype=debugoptimized >/dev/null || { echo "0 passed, 1 failed"; exit 1; }
fi
if ! ninja -C "$dir"; then
  echo "0 passed, 1 failed"
  exit 1
fi
export GTK_A11Y=none GSK_RENDERER=cairo GTK_THEME=Adwaita
xvfb=()
if [ -z "${DISPLAY:-}" ] && command -v xvfb-run >/dev/null; then
  xvfb=(xvfb-run -a -s "-screen 0 1280x900x24")
fi
"${xvfb[@]}" meson test -C "$dir" --print-errorlogs --num-processes 1 "$@"
status=$?
python3 - "$dir/meson-logs/testlog.json" <<'PY'
import json, sys
passed = failed = skipped = 0
try:
    lines = open(sys.argv[1]).read().splitlines()
except OSError:
    lines = []
for line in lines:
    r = json.loads(line)
    res = r.get("result")
    if res in ("OK", "EXPECTEDFAIL"):
        passed += 1
    elif res == "SKIP":
        skipped += 1
    else:
        failed += 1
        print("FAILED:", r.get("name"), res)
if not lines:
    failed = 1
print(f"{passed} passed, {failed} failed, {skipped} skipped")
PY
[ $status -eq 0 ] || exit 1
