#!/usr/bin/env bash
# Installs the Debian 12 packages Kilt needs to build, run and test (idempotent, quiet when
# everything is already there). Used by run.sh and test.sh; needs root or sudo.
# SPDX-License-Identifier: GPL-3.0-or-later
set -euo pipefail

build=(meson ninja-build pkg-config gcc python3 libglib2.0-dev libgtk-4-dev libadwaita-1-dev
  ocl-icd-opencl-dev opencl-headers libclblast-dev libcairo2-dev libcsv-dev libjson-glib-dev
  libsqlite3-dev libgdk-pixbuf-2.0-dev zlib1g-dev libhdf5-dev libzip-dev
  libprotobuf-c-dev protobuf-c-compiler libonnx-dev libopenmpi-dev)
runtime=(pocl-opencl-icd clinfo openmpi-bin)
testing=(xvfb xauth desktop-file-utils appstream dataset-fashion-mnist clang-format
  poppler-utils libglib2.0-bin dbus-x11 x11-utils dpkg-dev fakeroot clang libclang-rt-14-dev
  clang-15 libclc-15 python3-venv)

want=("${build[@]}" "${runtime[@]}")
if [ "${1:-}" = "--test" ]; then
  want+=("${testing[@]}")
fi

missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "Installing Debian packages: ${missing[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The ONNX export test reads Kilt's files with onnxruntime, which Debian 12 does not package:
# from PyPI into a venv of the user's (not root's site-packages), which test-onnx-export finds.
if [ "${1:-}" = "--test" ]; then
  venv=${KILT_TEST_VENV:-$HOME/.cache/kilt/test-venv}
  if ! "$venv/bin/python3" -c 'import onnxruntime, numpy' 2>/dev/null; then
    echo "Installing onnxruntime and numpy from PyPI into $venv"
    python3 -m venv "$venv"
    "$venv/bin/python3" -m pip install -q --disable-pip-version-check onnxruntime numpy
  fi
fi
