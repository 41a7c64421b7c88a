#!/usr/bin/env bash
# Fails when a C file of ours differs from what clang-format (with the checked-in config) makes.
# SPDX-License-Identifier: GPL-3.0-or-later
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v clang-format >/dev/null; then
  echo "clang-format is not installed"
  exit 77
fi
files=$(git ls-files '*.c' '*.h' 2>/dev/null || find app engine ui tests -name '*.[ch]')
bad=0
for f in $files; do
  if ! clang-format --dry-run --Werror "$f" >/dev/null 2>&1; then
    echo "needs formatting: $f (run clang-format -i $f)"
    bad=1
  fi
done
exit $bad
