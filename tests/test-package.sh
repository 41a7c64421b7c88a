#!/usr/bin/env bash
# Suite `package`: builds the Debian package from a copy of the tree, installs it with apt,
# runs kilt-cli and the window from the installed files only, and removes it again.
# Needs root (CI runs as root) and apt; skips (77) with the reason otherwise.
# Usage: tests/test-package.sh SOURCE_DIR
# SPDX-License-Identifier: GPL-3.0-or-later
set -euo pipefail
src=$(cd "${1:-$(dirname "$0")/..}" && pwd)

skip () { echo "SKIP: $*"; exit 77; }
step () { printf '# %s (%ds)\n' "$*" "$SECONDS"; }
fail () { echo "FAIL: $*"; exit 1; }

[ "$(id -u)" -eq 0 ] || skip "installing a package needs root (CI runs as root)"
command -v apt-get >/dev/null || skip "apt-get is missing: not a Debian system"
if dpkg-query -W -f='${Status}' kilt 2>/dev/null | grep -q 'install ok installed'; then
  skip "a kilt package is already installed; not replacing it"
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/kilt-pkg-test.XXXXXX")
installed=0
before=$tmp/packages-before
cleanup ()
{
  if [ $installed = 1 ]; then
    dpkg -r kilt >/dev/null || echo "FAIL: dpkg -r kilt failed"
    # Whatever apt pulled in for the package goes too, so the machine is left as found.
    dpkg-query -W -f='${Package}\n' | sort >"$tmp/packages-after"
    extra=$(comm -13 "$before" "$tmp/packages-after" | tr '\n' ' ')
    if [ -n "${extra// /}" ]; then
      echo "# removing what apt installed for kilt: $extra"
      DEBIAN_FRONTEND=noninteractive apt-get remove -y -qq $extra >/dev/null || true
    fi
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT

# A copy of the tree (what git tracks plus new files it does not ignore), deleted once the
# package is built: the installed programs then cannot fall back on the sources' presets or
# sample data, so what passes below passed from /usr.
step "copying the tree"
mkdir "$tmp/src"
if git -C "$src" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  (cd "$src" && git ls-files -z --cached --others --exclude-standard |
    while IFS= read -r -d '' f; do [ -e "$f" ] && printf '%s\0' "$f"; done |
    tar --null -T - -cf -) | tar -C "$tmp/src" -xf -
else
  (cd "$src" && tar --exclude='./build*' --exclude=./.git -cf - .) | tar -C "$tmp/src" -xf -
fi

step "building the package (release build of kilt and kilt-cli)"
KILT_DEB_BUILDDIR=$tmp/src/build-deb "$tmp/src/installer/build-deb.sh" "$tmp/out" >"$tmp/build.log" 2>&1 ||
  { tail -40 "$tmp/build.log"; fail "installer/build-deb.sh failed"; }
deb=$(ls "$tmp"/out/kilt_*.deb)
rm -rf "$tmp/src"
echo "# built $(basename "$deb"), $(du -k "$deb" | cut -f1) KiB"
dpkg-deb -f "$deb" Depends | tr ',' '\n' | sed 's/^ */#   depends: /'
# libhdf5 and libzip: Keras weights (.h5, .weights.h5, .keras).
for need in libgtk-4-1 libadwaita-1-0 libclblast1 ocl-icd-libopencl1 libhdf5-103 libzip4; do
  dpkg-deb -f "$deb" Depends | grep -q "$need" || fail "Depends lacks $need"
done
dpkg-deb -f "$deb" Recommends | grep -q 'pocl-opencl-icd | opencl-icd' ||
  fail "Recommends lacks pocl-opencl-icd | opencl-icd"
# kilt-cli tune runs CLBlast's tuners from this package.
dpkg-deb -f "$deb" Suggests | grep -q 'clblast-utils' || fail "Suggests lacks clblast-utils"
if dpkg-deb -c "$deb" | grep -E 'gschemas.compiled|icon-theme.cache|mimeinfo.cache'; then
  fail "the package ships a cache that the system's dpkg triggers own"
fi

step "installing it with apt-get"
dpkg-query -W -f='${Package}\n' | sort >"$before"
installed=1
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$deb" \
  >"$tmp/apt.log" 2>&1 || { cat "$tmp/apt.log"; fail "apt-get install failed"; }

for f in /usr/bin/kilt /usr/bin/kilt-cli /usr/share/applications/org.kilt.Kilt.desktop \
  /usr/share/metainfo/org.kilt.Kilt.metainfo.xml /usr/share/glib-2.0/schemas/org.kilt.Kilt.gschema.xml \
  /usr/share/icons/hicolor/scalable/apps/org.kilt.Kilt.svg \
  /usr/share/icons/hicolor/symbolic/apps/org.kilt.Kilt-symbolic.svg \
  /usr/share/kilt/presets/lenet5.json /usr/share/kilt/sample/train-images-idx3-ubyte.gz; do
  dpkg -S "$f" >/dev/null 2>&1 || fail "$f is not in the installed package"
done
if ldd /usr/bin/kilt /usr/bin/kilt-cli | grep -q 'not found'; then
  ldd /usr/bin/kilt /usr/bin/kilt-cli | grep 'not found'
  fail "an installed program misses a library"
fi
if command -v desktop-file-validate >/dev/null; then
  desktop-file-validate /usr/share/applications/org.kilt.Kilt.desktop || fail "desktop file"
fi
if command -v appstreamcli >/dev/null; then
  appstreamcli validate --no-net /usr/share/metainfo/org.kilt.Kilt.metainfo.xml >/dev/null ||
    fail "metainfo"
fi
# libglib2.0-0's dpkg trigger compiles the schema into the system's gschemas.compiled.
gsettings list-keys org.kilt.Kilt >/dev/null || fail "the GSettings schema was not compiled"

# The programs run as a first-time user would: fresh config, data and cache folders, and
# nothing from the build or source tree on any path.
export HOME=$tmp/home XDG_CONFIG_HOME=$tmp/home/.config XDG_DATA_HOME=$tmp/home/.local/share
export XDG_CACHE_HOME=$tmp/home/.cache
unset KILT_DATA_DIR KILT_SOURCE_DIR KILT_CACHE_DIR KILT_DEVICE GSETTINGS_SCHEMA_DIR POCL_CACHE_DIR
mkdir -p "$HOME"
cd "$tmp"

step "kilt-cli --version"
out=$(/usr/bin/kilt-cli --version) || fail "kilt-cli --version"
echo "$out" | sed 's/^/#   /'
want=$(dpkg-deb -f "$deb" Version)
echo "$out" | head -1 | grep -qx "kilt-cli $want" || fail "kilt-cli --version does not say $want"

step "kilt-cli devices"
out=$(/usr/bin/kilt-cli devices) || { echo "$out"; fail "kilt-cli devices found no usable device"; }
echo "$out" | sed 's/^/#   /'
echo "$out" | grep -q '^\[0\] ' || fail "kilt-cli devices listed no device"

step "kilt-cli summary --list (presets from /usr/share/kilt)"
out=$(/usr/bin/kilt-cli summary --list) || fail "kilt-cli summary --list"
for p in lenet5 mlp cifar10_cnn; do
  echo "$out" | grep -qx "$p" || fail "preset $p not found: $out"
done

step "kilt-cli train --epochs 1 (the sample data from /usr/share/kilt)"
/usr/bin/kilt-cli train --epochs 1 >"$tmp/train.log" 2>&1 || { cat "$tmp/train.log"; fail "train"; }
sed 's/^/#   /' "$tmp/train.log"
grep -q '^Data: sample' "$tmp/train.log" || fail "train did not load the bundled sample"
grep -q '^Finished after' "$tmp/train.log" || fail "train did not finish"

step "kilt under Xvfb: starts, shows its window, ends on SIGTERM"
if [ ! -x /usr/bin/kilt ]; then
  fail "/usr/bin/kilt is missing"
elif ! command -v xvfb-run >/dev/null || ! command -v xwininfo >/dev/null; then
  echo "# skipped the window check: xvfb-run or xwininfo (x11-utils) is missing"
else
  cat >"$tmp/smoke.sh" <<'EOF'
#!/usr/bin/env bash
# Runs inside xvfb-run: starts kilt, waits for its window, checks it is still up after 3 s,
# then sends SIGTERM and reports how it ended.
export GTK_A11Y=none NO_AT_BRIDGE=1 G_DEBUG=fatal-criticals
/usr/bin/kilt >"$1/kilt.log" 2>&1 &
pid=$!
shown=0
for _ in $(seq 1 100); do
  if xwininfo -root -tree 2>/dev/null | grep -q '"Kilt"'; then shown=1; break; fi
  kill -0 $pid 2>/dev/null || break
  sleep 0.1
done
sleep 3
if ! kill -0 $pid 2>/dev/null; then
  wait $pid; echo "kilt exited early with status $?"; exit 1
fi
[ $shown = 1 ] || { echo "kilt is running but showed no window titled Kilt"; kill -KILL $pid; exit 1; }
kill -TERM $pid
for _ in $(seq 1 50); do kill -0 $pid 2>/dev/null || break; sleep 0.1; done
if kill -0 $pid 2>/dev/null; then
  echo "kilt did not end within 5 s of SIGTERM"; kill -KILL $pid; exit 1
fi
wait $pid
status=$?
# 143: ended by the SIGTERM itself (GApplication installs no handler); 0: a handler quit.
[ $status = 143 ] || [ $status = 0 ] || { echo "kilt ended with status $status"; exit 1; }
echo "window shown, up for 3 s, ended on SIGTERM with status $status"
EOF
  chmod +x "$tmp/smoke.sh"
  bus=()
  command -v dbus-run-session >/dev/null && bus=(dbus-run-session --)
  if ! timeout 60 xvfb-run -a -s "-screen 0 1280x900x24" "${bus[@]}" "$tmp/smoke.sh" "$tmp" \
    >"$tmp/smoke.out" 2>&1; then
    cat "$tmp/smoke.out" "$tmp/kilt.log" 2>/dev/null
    fail "the window smoke test"
  fi
  sed 's/^/#   /' "$tmp/smoke.out"
  if grep -q 'CRITICAL\|ERROR' "$tmp/kilt.log"; then
    cat "$tmp/kilt.log"
    fail "kilt logged a critical error on start-up"
  fi
fi

step "removing the package"
cd /
installed=0
dpkg -r kilt >/dev/null || fail "dpkg -r kilt"
dpkg-query -W -f='${Package}\n' | sort >"$tmp/packages-after"
extra=$(comm -13 "$before" "$tmp/packages-after" | tr '\n' ' ')
if [ -n "${extra// /}" ]; then
  echo "# removing what apt installed for kilt: $extra"
  DEBIAN_FRONTEND=noninteractive apt-get remove -y -qq $extra >/dev/null
fi
[ ! -e /usr/bin/kilt-cli ] || fail "/usr/bin/kilt-cli is still there after dpkg -r"
echo "ok: built, installed, ran from /usr and removed in ${SECONDS}s"
