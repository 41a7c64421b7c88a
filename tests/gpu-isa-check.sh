#!/usr/bin/env bash
# Compiles the kernel program (the .cl files given, in the engine's order) for one GPU with
# clang-15 and libclc, as a stand-in for the vendors' OpenCL compilers, which only run where
# their drivers are:
#   sm_90:        an NVIDIA H100, through clang's NVPTX target and the CUDA toolkit's ptxas;
#   gfx906 etc.:  an AMD GPU (GCN or RDNA), through clang's AMDGPU target, as Mesa's and
#                 ROCm's OpenCL do.
# It fails when the program does not compile or link (a plain C99 inline function left out of
# line did exactly that), and when an implicit-GEMM kernel keeps anything in a stack frame,
# scratch memory or spills: its accumulators must live in registers. Prints each kernel's
# registers. Skips (77) without the tools.
# SPDX-License-Identifier: GPL-3.0-or-later
set -uo pipefail

if [ $# -lt 2 ]; then
  echo "usage: $0 sm_90|gfxNNN KERNEL.cl..."
  exit 2
fi
target=$1
shift
clang=$(command -v clang-15 || true)
case $target in
  sm_*) clc=/usr/lib/clc/nvptx64--nvidiacl.bc ;;
  gfx*) clc=/usr/lib/clc/amdgcn--amdhsa.bc ;;
  *) echo "unknown target $target"; exit 2 ;;
esac
if [ -z "$clang" ] || [ ! -f "$clc" ]; then
  echo "SKIP: needs clang-15 and libclc-15 ($clc)"
  exit 77
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cat "$@" > "$work/kilt.cl"
common=(-x cl -cl-std=CL1.2 -DKILT_IGEMM -Xclang -finclude-default-header
  -Xclang -mlink-builtin-bitcode -Xclang "$clc" -O3)

if [[ $target == sm_* ]]; then
  ptxas=$(command -v ptxas || true)
  [ -n "$ptxas" ] || { [ -x /usr/local/cuda/bin/ptxas ] && ptxas=/usr/local/cuda/bin/ptxas; }
  if [ -z "$ptxas" ]; then
    echo "SKIP: needs ptxas from the CUDA toolkit"
    exit 77
  fi
  if ! "$clang" "${common[@]}" -target nvptx64--nvidiacl -S -o "$work/kilt.ptx" "$work/kilt.cl" \
    2> "$work/clang.log"; then
    cat "$work/clang.log"
    echo "FAILED: the kernels do not compile for NVPTX"
    exit 1
  fi
  if ! "$ptxas" -arch="$target" -v "$work/kilt.ptx" -o "$work/kilt.cubin" > "$work/isa.log" 2>&1; then
    tail -20 "$work/isa.log"
    echo "FAILED: ptxas refused the program for $target"
    exit 1
  fi
else
  amd=("${common[@]}" -nogpulib -target amdgcn-amd-amdhsa -mcpu="$target")
  if ! "$clang" "${amd[@]}" -S -o "$work/kilt.s" "$work/kilt.cl" 2> "$work/clang.log"; then
    cat "$work/clang.log"
    echo "FAILED: the kernels do not compile for $target"
    exit 1
  fi
  # Nothing may stay undefined once libclc is linked in (LLVM intrinsics aside).
  "$clang" "${amd[@]}" -S -emit-llvm -o "$work/kilt.ll" "$work/kilt.cl" 2> /dev/null
  if grep '^declare' "$work/kilt.ll" | grep -v '@llvm\.'; then
    echo "FAILED: functions left undefined for $target (above)"
    exit 1
  fi
  cp "$work/kilt.s" "$work/isa.log"
fi

python3 - "$target" "$work/isa.log" <<'PY'
import re, sys
target, log = sys.argv[1], sys.argv[2]
kernels, name = {}, None
for line in open(log):
    # ptxas -v: "Compiling entry function 'NAME'", then the stack/spill line, then registers.
    # AMDGPU assembly: ".amdhsa_kernel NAME", then "; NumVgprs:", "; ScratchSize:" comments.
    m = re.search(r"Compiling entry function '(\w+)'", line) or re.search(r"^\s*\.amdhsa_kernel (\w+)", line)
    if m:
        name = m.group(1)
        kernels[name] = {}
        continue
    if name is None:
        continue
    k = kernels[name]
    m = re.search(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads", line)
    if m:
        k["stack"], k["spills"] = int(m.group(1)), int(m.group(2)) + int(m.group(3))
    m = re.search(r"Used (\d+) registers", line) or re.search(r"^\s*; NumVgprs: (\d+)", line)
    if m:
        k["registers"] = int(m.group(1))
    m = re.search(r"^\s*; ScratchSize: (\d+)", line)
    if m:
        k["stack"] = int(m.group(1))
    m = re.search(r"^\s*; Occupancy: (\d+)", line)
    if m:
        k["waves"] = int(m.group(1))
bad = 0
for name in sorted(kernels):
    k = kernels[name]
    waves = f", {k['waves']} waves per SIMD" if "waves" in k else ""
    print(f"{name:40s} {k.get('registers', '?'):>4} registers, {k.get('stack', 0)} bytes stack, "
          f"{k.get('spills', 0)} bytes spilled{waves}")
    if name.startswith("kilt_conv_igemm") and (k.get("stack", 0) or k.get("spills", 0)):
        print(f"FAILED: {name} keeps values in a stack frame or spills")
        bad = 1
igemm = [n for n in kernels if n.startswith("kilt_conv_igemm")]
if len(igemm) != 4:
    print(f"FAILED: expected the four implicit-GEMM kernels, found {igemm}")
    bad = 1
print(f"{len(kernels)} kernels compiled for {target}")
sys.exit(bad)
PY
