#!/usr/bin/env bash
# A ThreadSanitizer pass over the trainer thread, the image decoder pool and the worker
# protocol (issue 14): builds BUILD (default build-tsan) with -Db_sanitize=thread and no GUI,
# runs test-data-folder, test-worker (its kilt-cli workers too), test-trainer-small-device,
# test-trainer's stop, pause, checkpoint and out-of-memory restart cases, and kilt-cli training
# on two PoCL devices once, and prints every race report
# grouped by the first Kilt source line in it. GLib's own synchronisation is made visible by
# bench/tsan-glib-sync.c (LD_PRELOAD); tests/tsan.supp names the uninstrumented libraries
# and why. Not a CI step: it takes several minutes on 2 cores (bench/results/tsan.md).
# Usage: bench/tsan.sh [BUILD]
# SPDX-License-Identifier: GPL-3.0-or-later
set -uo pipefail
cd "$(dirname "$0")/.."
build=${1:-build-tsan}
start=$SECONDS
if [ ! -f "$build/build.ninja" ]; then
  meson setup "$build" -Db_sanitize=thread -Db_lundef=false -Dgui=false --buildtype=debug \
    >/dev/null || exit 2
fi
ninja -C "$build" tests/test-data-folder tests/test-worker tests/test-trainer \
  tests/test-trainer-small app/kilt-cli >/dev/null || exit 2
shim="$PWD/$build/tsan-glib-sync.so"
# shellcheck disable=SC2046
cc -shared -fPIC -O1 -Wall -Werror $(pkg-config --cflags glib-2.0) bench/tsan-glib-sync.c \
  -o "$shim" -ldl || exit 2
logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT
echo "tsan: built in $((SECONDS - start)) s"
export TSAN_OPTIONS="halt_on_error=0:report_signal_unsafe=0:history_size=4:log_path=$logs/tsan:suppressions=$PWD/tests/tsan.supp"
status=0
run () # label, command...
{
  local t0=$SECONDS
  local label=$1
  shift
  if LD_PRELOAD=$shim "$@" >"$logs/$label.out" 2>&1; then
    echo "tsan: $label passed in $((SECONDS - t0)) s"
  else
    echo "tsan: $label FAILED in $((SECONDS - t0)) s"
    tail -20 "$logs/$label.out"
    status=1
  fi
}
run meson-tests meson test -C "$build" --no-rebuild --num-processes 1 test-data-folder \
  test-worker test-trainer-small-device
run trainer-threads env KILT_CACHE_DIR="$PWD/$build/test-cache" \
  POCL_CACHE_DIR="$PWD/$build/test-cache/pocl" "$build/tests/test-trainer" \
  -p /trainer/stop -p /trainer/pause -p /trainer/checkpoint/resume \
  -p /trainer/oom/resume-smaller
# Data-parallel training on two PoCL devices: a replica thread per device and the gradient
# sum overlapped with the backward pass (engine/dist).
run two-devices env KILT_CACHE_DIR="$PWD/$build/test-cache" \
  POCL_CACHE_DIR="$PWD/$build/test-cache/pocl" POCL_DEVICES="pthread pthread" \
  KILT_RUNS_DB="$logs/runs.db" "$build/app/kilt-cli" train --devices 0,1 --epochs 2 \
  --max-samples 256 --batch 32
n=$(cat "$logs"/tsan.* 2>/dev/null | grep -c '^WARNING: ThreadSanitizer')
echo "tsan: $n reports in $((SECONDS - start)) s"
if [ "$n" -gt 0 ]; then
  status=1
  # The first frame in Kilt's sources of each report, counted.
  cat "$logs"/tsan.* | awk '/^WARNING: ThreadSanitizer/ {w=$0; found=0}
    /#[0-9]+ .* \.\.\/(engine|app|tests)\// && !found {print w " at " $2 " " $3; found=1}' |
    sort | uniq -c | sort -rn
  echo "tsan: the first report in full:"
  cat "$logs"/tsan.* | sed -n '/^WARNING: ThreadSanitizer/,/^SUMMARY/p' | head -60
fi
exit $status
