#!/usr/bin/env bash
# A longer fuzzing run than CI's (tests/fuzz/run-fuzz.sh, 20 s a target at 20 KB): every fuzz
# target for MINUTES minutes at inputs up to MAX_LEN bytes (default 4 MiB: the caps make big
# inputs cheap to refuse, and this checks that they do), then a results file
# bench/results/fuzz-<date>.md with each target's executions, executions per second, coverage,
# corpus, peak memory and the crashes found (with the files libFuzzer wrote for them).
# BUILD is a configured build whose engine library the model target links (default build-test).
# The corpus stays in BUILD/fuzz/corpus-*, so a second soak starts where the first ended.
# Usage: bench/fuzz-soak.sh [MINUTES] [MAX_LEN] [BUILD]
# SPDX-License-Identifier: GPL-3.0-or-later
set -uo pipefail
cd "$(dirname "$0")/.."
minutes=${1:-10}
max_len=${2:-$((4 << 20))}
build=${3:-build-test}
targets=${KILT_FUZZ_TARGETS:-idx cifar csv model checkpoint folder}
[ -f "$build/build.ninja" ] || { echo "fuzz-soak: $build is not a configured build"; exit 2; }
ninja -C "$build" engine/libkilt-engine.a >/dev/null || exit 2
date=$(date -u +%Y-%m-%d)
results=bench/results/fuzz-$date.md
fuzz="$build/fuzz"
mkdir -p "$fuzz"

start=$SECONDS
# Only this soak's logs count.
for t in $targets; do rm -f "$fuzz/fuzz-$t.log"; done
KILT_FUZZ_TARGETS=$targets KILT_FUZZ_MAX_LEN=$max_len \
  tests/fuzz/run-fuzz.sh . "$build" $((minutes * 60))
status=$?

{
  echo "## Soak at $(date -u +%H:%M) UTC"
  echo
  echo "bench/fuzz-soak.sh $minutes $max_len $build: $minutes min per target, -max_len=$max_len,"
  echo "-rss_limit_mb=2048, libFuzzer + ASan + UBSan (clang $(clang -dumpversion 2>/dev/null)),"
  echo "on $(nproc) cores ($(uname -m), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs))"
  echo "at commit $(git rev-parse --short HEAD). Total $(((SECONDS - start) / 60)) min."
  echo
  echo "| target | executions | exec/s | coverage (edges) | features | corpus | peak RSS MB | crashes |"
  echo "|---|---:|---:|---:|---:|---|---:|---|"
  for t in $targets; do
    log="$fuzz/fuzz-$t.log"
    [ -f "$log" ] || { echo "| $t | not run | | | | | | |"; continue; }
    execs=$(grep -m1 'stat::number_of_executed_units' "$log" | awk '{print $2}')
    rate=$(grep -m1 'stat::average_exec_per_sec' "$log" | awk '{print $2}')
    rss=$(grep -m1 'stat::peak_rss_mb' "$log" | awk '{print $2}')
    last=$(grep -E '^#[0-9]+[[:space:]].*cov: ' "$log" | tail -1)
    cov=$(sed -n 's/.*cov: \([0-9]*\).*/\1/p' <<<"$last")
    ft=$(sed -n 's/.*ft: \([0-9]*\).*/\1/p' <<<"$last")
    corp=$(sed -n 's/.*corp: \([^ ]*\).*/\1/p' <<<"$last")
    found=$(sed -n 's/.*Test unit written to \.\/\(.*\)$/\1/p' "$log" | tr '\n' ' ')
    why=$(grep -m1 -E '^SUMMARY: |ERROR: libFuzzer' "$log" | cut -c1-120)
    echo "| $t | ${execs:-?} | ${rate:-?} | ${cov:-?} | ${ft:-?} | ${corp:-?} | ${rss:-?} | ${found:-none}${why:+ ($why)} |"
  done
} >"$results.tmp"
# A second soak the same day adds to the file.
[ -f "$results" ] || printf '# Fuzzing soaks, %s\n\nMade by bench/fuzz-soak.sh; CI runs each target 20 s at 20 KB (tests/fuzz/run-fuzz.sh).\n' "$date" >"$results"
{ echo; cat "$results.tmp"; } >>"$results"
rm -f "$results.tmp"
echo "fuzz-soak: figures in $results"
exit $status
