#!/usr/bin/env bash
# Builds a Debian package of Kilt from this tree: a release build with prefix /usr in a build
# folder of its own, installed into a staging folder, with Depends computed by dpkg-shlibdeps.
# Usage: installer/build-deb.sh [OUTPUT_DIR]   (default: the current folder)
# Environment: KILT_DEB_BUILDDIR (default: build-deb in the source tree), DEBFULLNAME/DEBEMAIL
# for the Maintainer field. Needs meson, ninja, dpkg-dev (dpkg-shlibdeps) and the -dev
# packages installer/deps.sh installs; no root (dpkg-deb --root-owner-group).
# SPDX-License-Identifier: GPL-3.0-or-later
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
out=$(mkdir -p "${1:-.}" && cd "${1:-.}" && pwd)
build=${KILT_DEB_BUILDDIR:-$src/build-deb}

for tool in meson ninja dpkg-deb dpkg-shlibdeps dpkg-architecture python3; do
  if ! command -v "$tool" >/dev/null; then
    echo "build-deb: $tool is missing (installer/deps.sh --test installs it)" >&2
    exit 1
  fi
done

if [ ! -f "$build/build.ninja" ]; then
  meson setup "$build" "$src" --prefix=/usr --buildtype=release -Dgui=true -Dmpi=enabled >/dev/null
fi

# Only what gets installed: the test programs in the same tree are not part of the package.
mapfile -t targets < <(meson introspect --targets "$build" | python3 -c '
import json, os, sys
build = sys.argv[1]
for t in json.load(sys.stdin):
    if t.get("installed"):
        for f in t["filename"]:
            print(os.path.relpath(f, build))
' "$build")
ninja -C "$build" "${targets[@]}"

stage=$(mktemp -d "${TMPDIR:-/tmp}/kilt-deb.XXXXXX")
trap 'rm -rf "$stage"' EXIT
root=$stage/root
meson install -C "$build" --no-rebuild --strip --destdir "$root" >/dev/null
# Caches the system's dpkg triggers own (glib's schemas, GTK's icon cache, desktop database):
# a package that shipped them would overwrite every other program's entries.
find "$root" \( -name gschemas.compiled -o -name icon-theme.cache -o -name mimeinfo.cache \) -delete

version=$(meson introspect --projectinfo "$build" |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["version"])')
arch=$(dpkg-architecture -qDEB_HOST_ARCH)

# The files a Debian package must carry: its copyright and license pointer.
doc=$root/usr/share/doc/kilt
mkdir -p "$doc"
cat >"$doc/copyright" <<EOF
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: Kilt

Files: *
Copyright: The Kilt developers
License: GPL-3.0-or-later
 On Debian systems the full text of the GNU General Public License version 3 is in
 /usr/share/common-licenses/GPL-3.

Files: usr/share/kilt/sample/*
Copyright: Zalando Research (Fashion-MNIST, a subset)
License: MIT
 See /usr/share/kilt/sample/README.md.
EOF

# dpkg-shlibdeps insists on a debian/control beside it; a minimal one in the staging folder.
mkdir -p "$stage/debian"
printf 'Source: kilt\n\nPackage: kilt\nArchitecture: any\n' >"$stage/debian/control"
elfs=()
while IFS= read -r -d '' f; do
  if [ "$(head -c 4 "$f" | od -An -c | tr -d ' ')" = '177ELF' ]; then
    elfs+=("-e$f")
  fi
done < <(find "$root" -type f -print0)
depends=$(cd "$stage" && dpkg-shlibdeps -O "${elfs[@]}" 2>/dev/null | sed -n 's/^shlibs:Depends=//p')
if [ -z "$depends" ]; then
  echo "build-deb: dpkg-shlibdeps found no dependencies" >&2
  exit 1
fi

size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
mkdir -p "$root/DEBIAN"
cat >"$root/DEBIAN/control" <<EOF
Package: kilt
Version: $version
Architecture: $arch
Maintainer: ${DEBFULLNAME:-The Kilt developers} <${DEBEMAIL:-kilt@localhost}>
Installed-Size: $size
Depends: $depends
Recommends: pocl-opencl-icd | opencl-icd, clinfo
Suggests: clblast-utils
Section: science
Priority: optional
Description: train neural networks on any OpenCL device
 Kilt is a desktop workbench for training neural networks on NVIDIA, AMD and
 Intel GPUs, and on CPUs through PoCL. Pick a device, load a data set (IDX,
 CIFAR-10, image folders, CSV), choose a preset or import a Keras model, and
 watch it train. kilt-cli drives the same engine without a display.
EOF
(cd "$root" && find usr -type f -print0 | sort -z | xargs -0 md5sum) >"$root/DEBIAN/md5sums"

deb=$out/kilt_${version}_$arch.deb
dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >/dev/null
echo "$deb"
