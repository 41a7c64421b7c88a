#!/usr/bin/env bash
# The big-input cases of issue 14 through kilt-cli under resource limits, as a hostile user
# would run them on a small machine: `ulimit -v` (2 GiB of address space) and `ulimit -s`
# (1 MiB of stack). A 2.2M-column CSV, JSON nested 100,000 deep (Kilt and Keras formats), a
# 60,000-layer Keras chain, an IDX label of 2^31-1, gzip bombs (4 GiB of zeros in 4 MB, a
# header that declares 9 GB, and 2.4 GB declared and delivered), and a PNG whose header
# declares 20000 x 20000 pixels. Each must end with exit status 1 or 2 and a message naming
# its file (the chain, a valid model, with its table), never by a signal, and within seconds.
# The inputs are made here, cheaply.
# Skips (77) under AddressSanitizer or ThreadSanitizer, which reserve terabytes of address
# space and so cannot start under `ulimit -v`.
# Usage: tests/test-limits.sh KILT_CLI
# SPDX-License-Identifier: GPL-3.0-or-later
set -uo pipefail
cli=${1:-${KILT_CLI:-}}
vmem_kib=${KILT_LIMITS_VMEM_KIB:-$((2 << 20))}
stack_kib=${KILT_LIMITS_STACK_KIB:-1024}

skip () { echo "1..0 # SKIP $*"; exit 77; }
[ -x "$cli" ] || { echo "not ok - no kilt-cli given ($cli)"; exit 1; }
if [ "${KILT_TEST_SANITIZER:-0}" = 1 ] || ldd "$cli" 2>/dev/null | grep -Eq 'lib(a|t)san'; then
  skip "a sanitizer build cannot run under ulimit -v (it reserves terabytes of address space)"
fi
command -v python3 >/dev/null || skip "python3 makes the inputs and is missing"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/kilt-limits.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
export KILT_CACHE_DIR="$tmp/cache" XDG_CONFIG_HOME="$tmp/config" XDG_DATA_HOME="$tmp/data"

python3 - "$tmp" <<'PY' || { echo "not ok - making the inputs failed"; exit 1; }
import gzip, os, struct, sys, zlib
t = sys.argv[1]
def put(rel, data):
    p = os.path.join(t, rel)
    os.makedirs(os.path.dirname(p), exist_ok=True)
    with open(p, "wb") as f:
        f.write(data)
def idx(kind, dims, payload):
    return bytes([0, 0, kind, len(dims)]) + struct.pack(">" + "I" * len(dims), *dims) + payload
# 1: 2.2M columns (8.8 MB): a stack array of one float per column crashed collect_rows.
row = ",".join(["0"] * 2200000)
put("wide.csv", (row + ",a\n" + row + ",b\n").encode())
# 2: 100,000 levels of nesting overflowed the recursive JSON parser (Kilt and Keras files).
depth = 100000
put("deep-kilt.json", b'{"format": "kilt-model", "version": 1, "name": ' + b"[" * depth
    + b"]" * depth + b"}")
put("deep-keras.json", b'{"class_name": "Sequential", "config": {"name": "s", "layers": '
    + b"[" * depth + b"]" * depth + b"}}")
# 3: a 60,000-layer functional chain overflowed the import's recursive visit.
layers = ['{"class_name": "InputLayer", "name": "a0", "config": {"name": "a0", '
          '"batch_input_shape": [null, 4]}, "inbound_nodes": []}']
layers += ['{"class_name": "Activation", "name": "a%d", "config": {"name": "a%d", '
           '"activation": "relu"}, "inbound_nodes": [[["a%d", 0, 0, {}]]]}' % (i, i, i - 1)
           for i in range(1, 60001)]
put("chain.json", ('{"class_name": "Functional", "config": {"name": "chain", "layers": ['
                   + ", ".join(layers) + '], "input_layers": [["a0", 0, 0]], '
                   '"output_layers": [["a60000", 0, 0]]}}').encode())
# 4: an int32 label of 2^31 - 1 made Kilt build 2^31 class names.
images = idx(0x08, [4, 5, 5], bytes(range(100)))
put("huge-label/train-images-idx3-ubyte", images)
put("huge-label/train-labels-idx1-ubyte",
    idx(0x0C, [4], struct.pack(">4i", 0, 1, 2, 2**31 - 1)))
# 5: a gzip bomb, 4 GiB of zeros in 4 MB (256 gzip members of 16 MiB each) after a header
# that declares 100 pixels; and a header that declares 100000 x 300 x 300 (9 GB).
member = gzip.compress(bytes(16 << 20), 9, mtime=0)
with open(os.path.join(t, "bomb.bin"), "wb") as f:
    f.write(gzip.compress(images, mtime=0))
    for _ in range(256):
        f.write(member)
os.makedirs(os.path.join(t, "bomb"))
os.rename(os.path.join(t, "bomb.bin"), os.path.join(t, "bomb/train-images-idx3-ubyte.gz"))
labels = idx(0x08, [4], bytes([0, 1, 2, 0]))
# A gzip IDX that declares 60000 x 200 x 200 (2.4 GB, under the 4 GiB cap) and inflates to
# it: more than `ulimit -v` allows, which was GLib's abort (SIGTRAP) in the gzip reader.
os.makedirs(os.path.join(t, "big-idx"))
with open(os.path.join(t, "big-idx/train-images-idx3-ubyte.gz"), "wb") as f:
    f.write(gzip.compress(idx(0x08, [60000, 200, 200], b""), mtime=0))
    for _ in range(2400000000 // (16 << 20) + 1):
        f.write(member)
put("big-idx/train-labels-idx1-ubyte", idx(0x08, [60000], bytes(i % 10 for i in range(60000))))
put("bomb/train-labels-idx1-ubyte.gz", gzip.compress(labels, mtime=0))
put("declared/train-images-idx3-ubyte.gz",
    gzip.compress(idx(0x08, [100000, 300, 300], bytes(range(100))), mtime=0))
put("declared/train-labels-idx1-ubyte.gz", gzip.compress(labels, mtime=0))
# 6: a PNG whose header declares 20000 x 20000 pixels (1.2 GB decoded) with a few real rows.
def chunk(kind, body):
    return struct.pack(">I", len(body)) + kind + body + struct.pack(
        ">I", zlib.crc32(kind + body) & 0xffffffff)
png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 20000, 20000, 8, 2, 0, 0, 0))
png += chunk(b"IDAT", zlib.compress(bytes((1 + 3 * 20000) * 16), 9)) + chunk(b"IEND", b"")
put("huge-png/cats/big.png", png)
put("huge-png/dogs/big.png", png)
PY

n=0
failed=0
# expect NAME WANT_RC TEXT... -- kilt-cli ARGS: runs under the limits, checks the exit status
# (never a signal), that stderr (or, for status 0, stdout) holds each TEXT, and the time.
expect ()
{
  local name=$1 want=$2 texts=() rc out err t0 ms ok=1
  shift 2
  while [ "$1" != -- ]; do texts+=("$1"); shift; done
  shift
  n=$((n + 1))
  t0=${EPOCHREALTIME/./}
  (
    ulimit -v "$vmem_kib" || exit 125
    ulimit -s "$stack_kib" || exit 125
    exec timeout -s KILL 120 "$cli" "$@"
  ) >"$tmp/$name.out" 2>"$tmp/$name.err"
  rc=$?
  ms=$(((${EPOCHREALTIME/./} - t0) / 1000))
  out=$(head -c 4000 "$tmp/$name.out")
  err=$(head -c 4000 "$tmp/$name.err")
  if [ $rc -gt 128 ]; then
    echo "# $name: killed by signal $((rc - 128)) ($(kill -l $((rc - 128)) 2>/dev/null))"
    ok=0
  elif [ $rc -ne "$want" ]; then
    echo "# $name: exit status $rc, expected $want"
    ok=0
  fi
  for t in "${texts[@]}"; do
    if [ "$want" -eq 0 ]; then
      grep -qF -- "$t" "$tmp/$name.out" || { echo "# $name: no '$t' in its output"; ok=0; }
    else
      grep -qF -- "$t" "$tmp/$name.err" || { echo "# $name: no '$t' in its error"; ok=0; }
    fi
  done
  if [ $ok = 1 ]; then
    echo "ok $n $name (exit $rc in $ms ms)"
    [ "$want" -eq 0 ] || echo "#   ${err:0:400}"
  else
    failed=$((failed + 1))
    echo "not ok $n $name"
    echo "#   stderr: ${err:0:1500}"
    echo "#   stdout: ${out:0:300}"
  fi
}

echo "# limits: ulimit -v $vmem_kib KiB, ulimit -s $stack_kib KiB"
# The limits bind: 3 GiB cannot be had under them (else every case below proves nothing).
if (ulimit -v "$vmem_kib" && ulimit -s "$stack_kib" &&
    python3 -c "bytearray(3 << 30)") 2>/dev/null; then
  echo "not ok - 3 GiB were allocated under ulimit -v $vmem_kib: the limit does not bind"
  exit 1
fi
expect wide-csv 1 "wide.csv" "more than 100000 fields" -- data info "$tmp/wide.csv"
expect deep-kilt-json 1 "deep-kilt.json" "nesting deeper than 512 levels" -- \
  summary "$tmp/deep-kilt.json"
expect deep-keras-json 1 "deep-keras.json" "nesting deeper than 512 levels" -- \
  summary "$tmp/deep-keras.json"
expect keras-chain-60000 0 "a59999" "a60000" -- summary "$tmp/chain.json"
expect idx-huge-label 1 "train-labels-idx1-ubyte" "label 2147483647" -- \
  data info "$tmp/huge-label"
expect gzip-bomb 1 "train-images-idx3-ubyte.gz" "decompresses to more than" -- \
  data info "$tmp/bomb"
expect gzip-declared-9gb 1 "train-images-idx3-ubyte.gz" "100000 x 300 x 300" -- \
  data info "$tmp/declared"
expect gzip-2.4gb-declared 1 "train-images-idx3-ubyte.gz" "not enough memory for" -- \
  data info "$tmp/big-idx"
expect png-20000x20000 1 "big.png" "20000 x 20000 pixels" -- data info "$tmp/huge-png"
echo "1..$n"
[ $failed -eq 0 ] || { echo "# $failed of $n failed"; exit 1; }
