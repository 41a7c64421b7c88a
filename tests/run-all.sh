#!/usr/bin/env bash
# Configures the test builds, runs every meson test suite (the ui suite under Xvfb), the engine
# and data suites again under AddressSanitizer + UBSan, then the package suite (a .deb built,
# installed, run and removed), and ends with the line "N passed, N failed" from meson's own
# results. Arguments go to the first `meson test` (test names or --suite X) and skip the
# sanitizer and package passes. KILT_SKIP_ASAN=1 / KILT_SKIP_PACKAGE=1 skip those passes.
# SPDX-License-Identifier: GPL-3.0-or-later
set -uo pipefail
cd "$(dirname "$0")/.."
export GTK_A11Y=none GSK_RENDERER=cairo NO_AT_BRIDGE=1
status=0
logs=()
times=()
start=$SECONDS
mark=$SECONDS

lap () # label: records the seconds since the last lap
{
  times+=("$1 $((SECONDS - mark)) s")
  mark=$SECONDS
}

build () # dir, meson options...
{
  local dir=$1
  shift
  if [ ! -f "$dir/build.ninja" ]; then
    meson setup "$dir" "$@" >/dev/null || return 1
  fi
  ninja -C "$dir" || return 1
}

if build build-test --buildtype=debugoptimized -Donnx=enabled -Dmpi=enabled; then
  lap "build"
  xvfb=()
  if [ -z "${DISPLAY:-}" ] && command -v xvfb-run >/dev/null; then
    xvfb=(xvfb-run -a -s "-screen 0 1280x900x24")
  fi
  args=("$@")
  [ $# -eq 0 ] && args=(--no-suite package)
  "${xvfb[@]}" meson test -C build-test --print-errorlogs --num-processes 1 "${args[@]}" || status=1
  cp build-test/meson-logs/testlog.json build-test/meson-logs/testlog-main.json 2>/dev/null
  logs+=(build-test/meson-logs/testlog-main.json)
  lap "suites"
else
  echo "FAILED: the test build did not compile"
  status=2
fi

# The sanitizer pass: our code must show no error and no leak (tests/lsan.supp names what the
# OpenCL driver and the GTK stack themselves leak). The engine and data suites, and the window's
# test once (about 70 s under ASan; a tree configured before it was here gets the GUI turned on).
if [ $# -eq 0 ] && [ "${KILT_SKIP_ASAN:-0}" != 1 ]; then
  if [ -f build-asan/build.ninja ] && python3 -c 'import json, sys
sys.exit(not any(o["name"] == "gui" and o["value"] is False for o in json.load(open(sys.argv[1]))))' \
      build-asan/meson-info/intro-buildoptions.json 2>/dev/null; then
    meson configure build-asan -Dgui=true >/dev/null
  fi
  if build build-asan -Db_sanitize=address,undefined -Db_lundef=false --buildtype=debug -Donnx=enabled; then
    lap "asan-build"
    asan_test () # meson test arguments
    {
      KILT_TEST_SANITIZER=1 ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:use_sigaltstack=0 \
      UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
      LSAN_OPTIONS=suppressions=$PWD/tests/lsan.supp \
        meson test -C build-asan --print-errorlogs --num-processes 1 "$@"
    }
    # PoCL's compiled kernels from the plain pass: PoCL builds them with LLVM, which under
    # ASan's allocator ran test-gemm's cold build of CLBlast's kernels past its 120 s limit on a
    # loaded machine (2.5 s warm). The cold build stays tested in the plain pass.
    if [ -d build-test/test-cache/pocl ]; then
      rm -rf build-asan/test-cache/pocl
      mkdir -p build-asan/test-cache
      cp -r build-test/test-cache/pocl build-asan/test-cache/pocl
    fi
    # The summary below counts from the logs, so a failure here needs no status of its own.
    asan_test --suite engine --suite data --no-suite slow
    cp build-asan/meson-logs/testlog.json build-asan/meson-logs/testlog-asan.json
    logs+=(build-asan/meson-logs/testlog-asan.json)
    # LeakSanitizer itself sometimes dies while it stops a process's threads at exit ("Tracer
    # caught signal", "LeakSanitizer has encountered a fatal error": google/sanitizers#1353), and
    # PoCL leaves worker threads running. That is the tool failing, not a leak found, so such a
    # test runs once more; its second result is the one counted, and the summary says so.
    again=$(python3 - build-asan/meson-logs/testlog-asan.json <<'PY'
import json, sys
for line in open(sys.argv[1]):
    r = json.loads(line)
    text = (r.get("stdout") or "") + (r.get("stderr") or "")
    if r.get("result") not in ("OK", "SKIP", "EXPECTEDFAIL") and (
            "LeakSanitizer has encountered a fatal error" in text
            or "Tracer caught signal" in text):
        print(r["name"].split(" / ")[-1])
PY
)
    if [ -n "$again" ]; then
      echo "LeakSanitizer failed as a tool in: $again; running again"
      asan_test $again
      cp build-asan/meson-logs/testlog.json build-asan/meson-logs/testlog-asan-again.json
      logs+=(build-asan/meson-logs/testlog-asan-again.json)
    fi
    # The window under Xvfb, as in the plain pass, with GL off (it draws with cairo): GTK opens
    # the display through Mesa's EGL otherwise, whose DRI driver leaks a table from a
    # pthread_once and is unloaded by the exit, so that no suppression can name it. The slow
    # unwinder (8 frames) at each allocation: GLib's quark block that tests/lsan.supp names is
    # allocated where the fast one stops short (95 s against 56 s here).
    xvfb_asan=()
    if [ -z "${DISPLAY:-}" ] && command -v xvfb-run >/dev/null; then
      xvfb_asan=(xvfb-run -a -s "-screen 0 1280x900x24")
    fi
    GDK_DEBUG=gl-disable KILT_TEST_SANITIZER=1 \
    ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:use_sigaltstack=0:fast_unwind_on_malloc=0:malloc_context_size=8 \
    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    LSAN_OPTIONS=suppressions=$PWD/tests/lsan.supp \
      "${xvfb_asan[@]}" meson test -C build-asan --print-errorlogs --num-processes 1 test-ui
    cp build-asan/meson-logs/testlog.json build-asan/meson-logs/testlog-asan-ui.json
    logs+=(build-asan/meson-logs/testlog-asan-ui.json)
    lap "asan-suites"
  else
    echo "FAILED: the sanitizer build did not compile"
    status=2
  fi
fi

# The package pass last: it makes its own release build and installs into the system (root
# only; it skips with the reason otherwise).
if [ $# -eq 0 ] && [ "${KILT_SKIP_PACKAGE:-0}" != 1 ] && [ -f build-test/build.ninja ]; then
  meson test -C build-test --print-errorlogs --num-processes 1 --suite package || status=1
  cp build-test/meson-logs/testlog.json build-test/meson-logs/testlog-package.json 2>/dev/null
  logs+=(build-test/meson-logs/testlog-package.json)
  lap "package"
fi
times+=("total $((SECONDS - start)) s")
printf 'Times:'
printf ' %s;' "${times[@]}"
echo

python3 - "${logs[@]}" <<'PY' || status=1
import json, re, sys
results = {}  # name -> (result, record, log); a later log (a run again) replaces an earlier
again = []
for path in sys.argv[1:]:
    tag = "asan:" if "asan" in path else ""
    try:
        lines = open(path).read().splitlines()
    except OSError:
        results["no results in " + path] = ("ERROR", {}, path)
        continue
    for line in lines:
        r = json.loads(line)
        name = tag + r.get("name", "?")
        if name in results:
            again.append(f"{name}: {results[name][0]} the first time, {r.get('result')} again")
        results[name] = (r.get("result"), r, path)
passed = failed = 0
skipped = []
skip_line = re.compile(r"^ok \d+ (\S+) # SKIP ?(.*)$")
for name, (res, r, path) in results.items():
    if res in ("OK", "EXPECTEDFAIL"):
        passed += 1
        # GLib test cases skipped inside a passing program (data that is absent, slow runs).
        for m in filter(None, map(skip_line.match, (r.get("stdout") or "").splitlines())):
            skipped.append(f"{name} {m.group(1)} ({m.group(2) or 'no reason given'})")
    elif res == "SKIP":
        why = [l for l in (r.get("stdout") or "").splitlines() if "SKIP" in l.upper()]
        skipped.append(f"{name} ({why[-1].strip() if why else 'no reason given'})")
    else:
        failed += 1
        print("FAILED:", name, res)
        # The end of its output here too: CI shows only the tail of the whole run, where
        # meson's --print-errorlogs copy has long scrolled away.
        for l in ((r.get("stdout") or "") + (r.get("stderr") or "")).splitlines()[-40:]:
            print("  |", l[:300])
for s in skipped:
    print("skipped:", s)
for a in again:
    print("ran again after LeakSanitizer failed as a tool:", a)
print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
PY
[ $status -eq 0 ] || exit 1
