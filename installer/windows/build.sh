#!/usr/bin/env bash
# Builds Kilt for Windows in MSYS2's UCRT64 environment and gathers a self-contained folder
# (kilt.exe, kilt-cli.exe, every DLL they load, GTK's data, Kilt's presets and sample), then
# the installer from installer/windows/kilt.nsi when NSIS is present.
#
# NOT BUILT OR TESTED HERE: written for MSYS2 (https://www.msys2.org) on Windows 10/11 and
# never run on this Debian machine. See installer/windows/BUILD.md for what to expect.
#
# Usage, from the "MSYS2 UCRT64" shell in the source tree:
#   installer/windows/build.sh [--with-pocl]
# --with-pocl also bundles PoCL (a CPU OpenCL device, ~150 MB with its clang and LLVM).
# SPDX-License-Identifier: GPL-3.0-or-later
set -euo pipefail

if [ "${MSYSTEM:-}" != UCRT64 ]; then
  echo "Run this from the MSYS2 UCRT64 shell (MSYSTEM is '${MSYSTEM:-unset}')." >&2
  exit 1
fi
with_pocl=0
[ "${1:-}" = --with-pocl ] && with_pocl=1

src=$(cd "$(dirname "$0")/../.." && pwd)
work=$src/build-windows
stage=$work/Kilt
p=mingw-w64-ucrt-x86_64

# 1. Packages. libcsv is the one dependency MSYS2 does not package (step 2).
pkgs=("$p-cc" "$p-meson" "$p-ninja" "$p-pkgconf" "$p-glib2" "$p-gtk4" "$p-libadwaita"
  "$p-json-glib" "$p-sqlite3" "$p-cairo" "$p-gdk-pixbuf2" "$p-librsvg" "$p-zlib" "$p-hdf5" "$p-libzip"
  "$p-clblast" "$p-opencl-icd" "$p-opencl-headers" "$p-adwaita-icon-theme" "$p-ntldd"
  "$p-nsis" curl)
[ $with_pocl = 1 ] && pkgs+=("$p-pocl")
pacman -S --needed --noconfirm "${pkgs[@]}"

# 2. libcsv 3.0.3: one C file, built as a DLL with an import library meson's
#    find_library('csv') finds in the UCRT64 prefix.
if [ ! -f "$MINGW_PREFIX/lib/libcsv.dll.a" ]; then
  mkdir -p "$work/libcsv"
  curl -fsSL https://github.com/rgamble/libcsv/archive/refs/tags/v3.0.3.tar.gz |
    tar -xz -C "$work/libcsv" --strip-components=1
  (cd "$work/libcsv" &&
    gcc -O2 -shared -o libcsv-3.dll libcsv.c -Wl,--out-implib,libcsv.dll.a &&
    install -Dm755 libcsv-3.dll "$MINGW_PREFIX/bin/libcsv-3.dll" &&
    install -Dm644 libcsv.dll.a "$MINGW_PREFIX/lib/libcsv.dll.a" &&
    install -Dm644 csv.h "$MINGW_PREFIX/include/csv.h")
fi

# 3. Kilt, installed into the staging folder: bin\, share\kilt\ (presets, sample), the
#    schema, icons, desktop file and metainfo. The engine finds share\kilt relative to the
#    program (G_OS_WIN32 in kilt-dataset.c and kilt-model-json.c), so the folder can move.
rm -rf "$stage"
if [ ! -f "$work/build/build.ninja" ]; then
  meson setup "$work/build" "$src" --buildtype=release -Dgui=true \
    --prefix="$(cygpath -m "$stage")"
fi
ninja -C "$work/build" app/kilt-cli.exe ui/kilt.exe
meson install -C "$work/build" --no-rebuild --strip
for f in COPYING LICENSE; do
  [ -f "$src/$f" ] && install -Dm644 "$src/$f" "$stage/share/doc/kilt/COPYING"
done

# 4. Every DLL the two programs load from the UCRT64 prefix (not Windows' own).
prefix_win=$(cygpath -m "$MINGW_PREFIX" | tr '[:upper:]' '[:lower:]')
for exe in "$stage/bin/kilt.exe" "$stage/bin/kilt-cli.exe"; do
  ntldd -R "$exe" | tr '\\' '/' | awk '{print $3}' | while read -r dll; do
    case "$(echo "$dll" | tr '[:upper:]' '[:lower:]')" in
      "$prefix_win"/bin/*) cp -u "$(cygpath -u "$dll")" "$stage/bin/" ;;
    esac
  done
done
# The Khronos ICD loader: kilt starts (and says "no OpenCL driver") even where no driver
# installed a system OpenCL.dll; drivers register in HKLM\SOFTWARE\Khronos\OpenCL\Vendors.
cp -u "$MINGW_PREFIX/bin/OpenCL.dll" "$stage/bin/"

# 5. What GTK reads at run time: its schemas (compiled together with Kilt's), the Adwaita and
#    hicolor icon themes, and the image loaders (PNG/JPEG for data sets, SVG for icons).
mkdir -p "$stage/share/glib-2.0/schemas" "$stage/share/icons" "$stage/lib"
cp -u "$MINGW_PREFIX"/share/glib-2.0/schemas/org.gtk.*.xml "$stage/share/glib-2.0/schemas/"
glib-compile-schemas "$stage/share/glib-2.0/schemas"
cp -ru "$MINGW_PREFIX/share/icons/Adwaita" "$MINGW_PREFIX/share/icons/hicolor" "$stage/share/icons/"
gtk4-update-icon-cache -f -t "$stage/share/icons/hicolor" || true
cp -ru "$MINGW_PREFIX/lib/gdk-pixbuf-2.0" "$stage/lib/"
for dll in "$stage"/lib/gdk-pixbuf-2.0/2.10.0/loaders/*.dll; do
  [ -e "$dll" ] || continue
  ntldd -R "$dll" | tr '\\' '/' | awk '{print $3}' | while read -r dep; do
    case "$(echo "$dep" | tr '[:upper:]' '[:lower:]')" in
      "$prefix_win"/bin/*) cp -u "$(cygpath -u "$dep")" "$stage/bin/" ;;
    esac
  done
done
GDK_PIXBUF_MODULEDIR="$stage/lib/gdk-pixbuf-2.0/2.10.0/loaders" gdk-pixbuf-query-loaders |
  sed "s|$(cygpath -m "$stage")/||" >"$stage/lib/gdk-pixbuf-2.0/2.10.0/loaders.cache"

# 6. Optional PoCL: pocl.dll, the clang it runs beside it, its kernel library. kilt.nsi
#    registers it as an ICD when this folder holds it.
if [ $with_pocl = 1 ]; then
  cp -u "$MINGW_PREFIX/bin/pocl.dll" "$MINGW_PREFIX/bin/clang.exe" "$stage/bin/"
  ntldd -R "$MINGW_PREFIX/bin/pocl.dll" "$MINGW_PREFIX/bin/clang.exe" | tr '\\' '/' |
    awk '{print $3}' | while read -r dep; do
      case "$(echo "$dep" | tr '[:upper:]' '[:lower:]')" in
        "$prefix_win"/bin/*) cp -u "$(cygpath -u "$dep")" "$stage/bin/" ;;
      esac
    done
  cp -ru "$MINGW_PREFIX/share/pocl" "$stage/share/"
fi

# 7. Smoke test of the folder as it will be installed, with the prefix off PATH.
(PATH="$stage/bin:/usr/bin" "$stage/bin/kilt-cli.exe" --version)

# 8. The installer.
version=$(meson introspect --projectinfo "$work/build" | sed -n 's/.*"version": *"\([^"]*\)".*/\1/p')
if command -v makensis >/dev/null; then
  makensis -DVERSION="$version" -DSTAGE="$(cygpath -w "$stage")" \
    -DOUTFILE="$(cygpath -w "$work/kilt-$version-setup.exe")" "$(cygpath -w "$src/installer/windows/kilt.nsi")"
  echo "Installer: $work/kilt-$version-setup.exe"
else
  echo "makensis not found: the folder $stage runs as it is (bin\\kilt.exe)."
fi
