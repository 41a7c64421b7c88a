#!/usr/bin/env bash
# Configures the test builds, runs every meson test suite (and the engine and data suites again
# under AddressSanitizer + UBSan), and prints the closing "N passed, N failed" line from
# meson's own results.
# SPDX-License-Identifier: GPL-3.0-or-later
set -uo pipefail
cd "$(dirname "$0")/.."
export GTK_A11Y=none GSK_RENDERER=cairo NO_AT_BRIDGE=1
status=0
logs=()

build () # dir, meson options...
{
  local dir=$1
  shift
  if [ ! -f "$dir/build.ninja" ]; then
    meson setup "$dir" "$@" >/dev/null || return 1
  fi
  ninja -C "$dir" || return 1
}

if build build-test --buildtype=debugoptimized; then
  xvfb=()
  if [ -z "${DISPLAY:-}" ] && command -v xvfb-run >/dev/null; then
    xvfb=(xvfb-run -a -s "-screen 0 1280x900x24")
  fi
  "${xvfb[@]}" meson test -C build-test --print-errorlogs --num-processes 1 "$@" || status=1
  logs+=(build-test/meson-logs/testlog.json)
else
  echo "FAILED: the test build did not compile"
  status=2
fi

# The sanitizer pass: our code must show no error and no leak (tests/lsan.supp names what the
# OpenCL driver itself leaks). Skipped when a suite was named on the command line.
if [ $# -eq 0 ] && [ "${KILT_SKIP_ASAN:-0}" != 1 ]; then
  if build build-asan -Db_sanitize=address,undefined -Db_lundef=false -Dgui=false --buildtype=debug; then
    ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    LSAN_OPTIONS=suppressions=$PWD/tests/lsan.supp \
      meson test -C build-asan --print-errorlogs --num-processes 1 --suite engine --suite data \
      --no-suite slow || status=1
    logs+=(build-asan/meson-logs/testlog.json)
  else
    echo "FAILED: the sanitizer build did not compile"
    status=2
  fi
fi

python3 - "${logs[@]}" <<'PY'
import json, sys
passed = failed = skipped = 0
for path in sys.argv[1:]:
    tag = "asan:" if "asan" in path else ""
    try:
        lines = open(path).read().splitlines()
    except OSError:
        lines = []
        failed += 1
        print("FAILED: no results in", path)
    for line in lines:
        r = json.loads(line)
        res = r.get("result")
        if res in ("OK", "EXPECTEDFAIL"):
            passed += 1
        elif res == "SKIP":
            skipped += 1
        else:
            failed += 1
            print("FAILED:", tag + r.get("name", "?"), res)
print(f"{passed} passed, {failed} failed, {skipped} skipped")
PY
[ $status -eq 0 ] || exit 1
