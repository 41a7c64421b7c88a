#!/usr/bin/env bash
# Builds the fuzz targets with clang (libFuzzer + AddressSanitizer + UBSan) and runs each for a
# bounded time from seeds cut from real files: the data-set parsers (IDX, CIFAR, CSV), model
# files (Keras to_json and Kilt JSON) and checkpoints. The parsers under test are compiled with
# the fuzzer's instrumentation; what else the model target needs comes from the engine library
# of BUILD. The image-folder target writes each input as a folder of images (under TMPDIR) and
# loads it, twice when it goes through the decoded-image cache.
# Usage: run-fuzz.sh SRC BUILD [SECONDS]; KILT_FUZZ_TARGETS picks targets, KILT_FUZZ_MAX_LEN
# sets -max_len (20000 bytes here; bench/fuzz-soak.sh runs megabytes).
# SPDX-License-Identifier: GPL-3.0-or-later
set -euo pipefail
src=$(cd "$1" && pwd)
build=$(cd "$2" && pwd)
seconds=${3:-20}
max_len=${KILT_FUZZ_MAX_LEN:-20000}
out="$build/fuzz"
mkdir -p "$out"
cd "$out"

cc=${CLANG:-clang}
flags=(-g -O1 -Wall -Werror -Wno-unused-parameter -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
  -I"$src/engine" -I"$src/engine/data" -I"$src/engine/layers" -I"$src/engine/import" -I"$build"
  -DCL_TARGET_OPENCL_VERSION=120 -DCL_USE_DEPRECATED_OPENCL_1_2_APIS)
pkgs=(glib-2.0 gio-2.0 gdk-pixbuf-2.0 zlib OpenCL clblast json-glib-1.0)
read -r -a pc_cflags <<<"$(pkg-config --cflags "${pkgs[@]}")"
read -r -a pc_libs <<<"$(pkg-config --libs "${pkgs[@]}")"
data_sources=("$src"/engine/data/kilt-dataset.c "$src"/engine/data/kilt-data-{idx,cifar,csv,cache,folder}.c
  "$src"/engine/kilt-error.c)
model_sources=("$src"/engine/import/kilt-keras{,-layers,-util}.c "$src"/engine/kilt-model-json.c "$src"/engine/kilt-json-limits.c
  "$build"/engine/libkilt-engine.a)
# The checkpoint reader allocates through the data sets' kilt_data_try_alloc.
checkpoint_sources=("$src"/engine/kilt-checkpoint.c "${data_sources[@]}")

# Seeds: the first few real samples of the bundled sample, and real CSV text.
python3 - "$src" "$out" <<'PY'
import gzip, os, struct, sys
src, out = sys.argv[1], sys.argv[2]
os.makedirs(f"{out}/seeds-idx", exist_ok=True)
os.makedirs(f"{out}/seeds-csv", exist_ok=True)
def head(name, n):
    d = gzip.open(f"{src}/resources/sample/{name}").read()
    nd = d[3]
    dims = list(struct.unpack(">" + "I" * nd, d[4:4 + 4 * nd]))
    per = 1
    for x in dims[1:]:
        per *= x
    dims[0] = n
    return d[:4] + struct.pack(">" + "I" * nd, *dims) + d[4 + 4 * nd:4 + 4 * nd + n * per]
for n in (1, 3):
    im = head("train-images-idx3-ubyte.gz", n)
    lb = head("train-labels-idx1-ubyte.gz", n)
    open(f"{out}/seeds-idx/raw{n}", "wb").write(im + b"KLBL" + lb)
    open(f"{out}/seeds-idx/gz{n}", "wb").write(gzip.compress(im, mtime=0) + b"KLBL" + lb)
iris = open(f"{src}/tests/data/iris.csv").read().splitlines()
open(f"{out}/seeds-csv/iris", "w").write("\n".join(iris[:12]) + "\n")
open(f"{out}/seeds-csv/iris-split", "w").write(
    "\n".join(iris[:8]) + "\n--\n" + "\n".join([iris[0]] + iris[60:64]) + "\n")
open(f"{out}/seeds-csv/iris-semi", "w").write(
    "\n".join(l.replace(",", ";") for l in iris[95:110]) + "\n")
PY
mkdir -p seeds-cifar seeds-model seeds-checkpoint seeds-folder
read -r -a pixbuf_cflags <<<"$(pkg-config --cflags gdk-pixbuf-2.0)"
read -r -a pixbuf_libs <<<"$(pkg-config --libs gdk-pixbuf-2.0)"
"$cc" -O1 "${pixbuf_cflags[@]}" "$src/tests/fuzz/make-folder-seeds.c" "${pixbuf_libs[@]}" \
  -o make-folder-seeds
./make-folder-seeds seeds-folder
cp "$src"/tests/fuzz/seeds/*.bin seeds-cifar/
cp "$src"/resources/presets/*.json seeds-model/
for f in "$src"/tests/data/keras/*.json; do
  case $f in *.counts.json) ;; *) cp "$f" seeds-model/ ;; esac
done
# Checkpoints as Kilt writes them: version 2 with a device and two layers' algorithms, and
# version 1 (no trailer).
python3 - <<'PY'
import struct
def ckpt(version, params, state, opt, device=b"", algos=()):
    h = b"KILTCKPT" + struct.pack("<IIII", version, 3, 42, 0)
    h += struct.pack("<QQQQQ", 123, 0xfeed, len(params), len(state), len(opt))
    body = struct.pack(f"<{len(params) + len(state) + len(opt)}f", *params, *state, *opt)
    if version == 1:
        return h + body
    tail = struct.pack("<I", len(device)) + device + struct.pack("<I", len(algos))
    return h + body + tail + b"".join(struct.pack("<5I", *a) for a in algos)
open("seeds-checkpoint/v2", "wb").write(
    ckpt(2, [0.5, -1.0, 2.0], [1.0], [0.1] * 6, b"nvidia/h100/0", [(1, 2, 32, 1, 32), (4, 1, 32, 2, 32)]))
open("seeds-checkpoint/v1", "wb").write(ckpt(1, [0.25] * 4, [], [0.0] * 4))
PY

status=0
for t in ${KILT_FUZZ_TARGETS:-idx cifar csv model checkpoint folder}; do
  case $t in
    model) sources=("${model_sources[@]}") ;;
    checkpoint) sources=("${checkpoint_sources[@]}") ;;
    *) sources=("${data_sources[@]}") ;;
  esac
  "$cc" "${flags[@]}" "${pc_cflags[@]}" "$src/tests/fuzz/fuzz-$t.c" "${sources[@]}" \
    "${pc_libs[@]}" -lcsv -lm -o "fuzz-$t"
  mkdir -p "corpus-$t"
  echo "fuzz-$t: ${seconds} s"
  if ! ASAN_OPTIONS=detect_leaks=1 ./"fuzz-$t" -max_total_time="$seconds" -max_len="$max_len" \
      -rss_limit_mb=2048 -print_final_stats=1 "corpus-$t" "seeds-$t" \
      >"fuzz-$t.log" 2>&1; then
    echo "fuzz-$t FAILED:"
    tail -60 "fuzz-$t.log"
    status=1
  else
    grep -E 'stat::number_of_executed_units|cov:' "fuzz-$t.log" | tail -2
  fi
done
exit $status
