#!/usr/bin/env bash
# Compiles the kernel program (the .cl files given, in the engine's order) for an NVIDIA H100
# (sm_90) with clang's NVPTX target, libclc and the CUDA toolkit's ptxas, as a stand-in for
# NVIDIA's own OpenCL compiler, which only runs where the driver is. It fails when the program
# does not compile or link (a plain C99 inline function left out of line did exactly that),
# and when an implicit-GEMM kernel keeps anything in a stack frame or spills: its accumulators
# must live in registers. Prints each kernel's registers. Skips (77) without the tools.
# SPDX-License-Identifier: GPL-3.0-or-later
set -uo pipefail

clang=$(command -v clang-15 || true)
clc=/usr/lib/clc/nvptx64--nvidiacl.bc
ptxas=$(command -v ptxas || true)
[ -n "$ptxas" ] || { [ -x /usr/local/cuda/bin/ptxas ] && ptxas=/usr/local/cuda/bin/ptxas; }
if [ -z "$clang" ] || [ ! -f "$clc" ] || [ -z "$ptxas" ]; then
  echo "SKIP: needs clang-15, libclc-15 ($clc) and ptxas from the CUDA toolkit"
  exit 77
fi
if [ $# -eq 0 ]; then
  echo "usage: $0 KERNEL.cl..."
  exit 2
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cat "$@" > "$work/kilt.cl"
if ! "$clang" -x cl -cl-std=CL1.2 -DKILT_IGEMM -target nvptx64--nvidiacl \
  -Xclang -finclude-default-header -Xclang -mlink-builtin-bitcode -Xclang "$clc" -O3 -S \
  -o "$work/kilt.ptx" "$work/kilt.cl" 2> "$work/clang.log"; then
  cat "$work/clang.log"
  echo "FAILED: the kernels do not compile for NVPTX"
  exit 1
fi
if ! "$ptxas" -arch=sm_90 -v "$work/kilt.ptx" -o "$work/kilt.cubin" > "$work/ptxas.log" 2>&1; then
  tail -20 "$work/ptxas.log"
  echo "FAILED: ptxas refused the program for sm_90"
  exit 1
fi

# ptxas -v: "Compiling entry function 'NAME'", then the stack/spill line, then the registers.
python3 - "$work/ptxas.log" <<'PY'
import re, sys
kernels, name = {}, None
for line in open(sys.argv[1]):
    m = re.search(r"Compiling entry function '(\w+)'", line)
    if m:
        name = m.group(1)
        kernels[name] = {}
        continue
    if name is None:
        continue
    m = re.search(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads", line)
    if m:
        kernels[name]["stack"], kernels[name]["spills"] = int(m.group(1)), int(m.group(2)) + int(m.group(3))
    m = re.search(r"Used (\d+) registers", line)
    if m:
        kernels[name]["registers"] = int(m.group(1))
bad = 0
for name in sorted(kernels):
    k = kernels[name]
    print(f"{name:40s} {k.get('registers', '?'):>4} registers, {k.get('stack', 0)} bytes stack, "
          f"{k.get('spills', 0)} bytes spilled")
    if name.startswith("kilt_conv_igemm") and (k.get("stack", 0) or k.get("spills", 0)):
        print(f"FAILED: {name} keeps values in a stack frame or spills")
        bad = 1
igemm = [n for n in kernels if n.startswith("kilt_conv_igemm")]
if len(igemm) != 4:
    print(f"FAILED: expected the four implicit-GEMM kernels, found {igemm}")
    bad = 1
print(f"{len(kernels)} kernels compiled for sm_90")
sys.exit(bad)
PY
