#!/usr/bin/env bash
# Compiles kernels/gemm-tf32.cl as NVIDIA's driver does (KILT_PTX) with clang-15's NVPTX target
# and checks the PTX of both builds (64 x 64 and 128 x 128 tiles): the tensor-core instructions
# are there, unrolled (a warp's 2 x 4 or 4 x 4 mma tiles, two 8-deep steps of a 16-deep slice),
# inputs rounded with cvt.rna.tf32, and nothing in a stack frame (.local): a work-item's 32 or
# 64 accumulators must stay in registers, or the kernel runs at a fraction of its speed. With
# the CUDA toolkit's ptxas, also assembles each for sm_80 (the first GPUs with TF32) and fails
# on spills. Skips (77) without clang-15 and libclc.
# SPDX-License-Identifier: GPL-3.0-or-later
set -uo pipefail
src=${1:?usage: $0 gemm-tf32.cl}
clang=$(command -v clang-15 || true)
clc=/usr/lib/clc/nvptx64--nvidiacl.bc
if [ -z "$clang" ] || [ ! -f "$clc" ]; then
  echo "SKIP: needs clang-15 and libclc-15 ($clc)"
  exit 77
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
bad=0
ptxas=$(command -v ptxas || true)
[ -n "$ptxas" ] || { [ -x /usr/local/cuda/bin/ptxas ] && ptxas=/usr/local/cuda/bin/ptxas; }
# The two builds kilt-gemm-tf32.c makes, and how many mma.sync each slice unrolls to; then the
# big tile with its cp.async pipeline (KILT_TF32_OPTIONS="-DTF_CPASYNC -DTF_STAGES=2"; three
# stages pass the 48 KB of static local memory ptxas allows), whose copies must be there as
# cp.async and its rounding at the fragments.
big="-DTF_BM=128 -DTF_BN=128 -DTF_WM=64 -DTF_WN=32"
# Then kilt_gemm_tf32_lay, built per layout (TF_TA, TF_TB; TF_VA, TF_VB: 16-byte loads), of
# which a sample: both tiles, each operand along K and along M or N, scalar and vector loads,
# one and two stages.
lay="-DTF_LAYOUT -DTF_TA"
for build in "64::16" "128:$big:32" "128-cp.async:$big -DTF_CPASYNC -DTF_STAGES=2:32" \
  "64-lay-NN:$lay=0 -DTF_TB=0 -DTF_VA=1 -DTF_VB=1:16" \
  "128-lay-NN:$big $lay=0 -DTF_TB=0 -DTF_VA=1 -DTF_VB=1:32" \
  "128-lay-TN:$big $lay=1 -DTF_TB=0 -DTF_VA=1 -DTF_VB=0:32" \
  "128-lay-NT-2:$big $lay=0 -DTF_TB=1 -DTF_VA=0 -DTF_VB=1 -DTF_STAGES=2:32" \
  "64-lay-TT:$lay=1 -DTF_TB=1 -DTF_VA=1 -DTF_VB=1:16" \
  "32x128-conv:-DTF_CONV $lay=0 -DTF_TB=0 -DTF_VA=0 -DTF_VB=0 -DTF_BM=32 -DTF_BN=128 -DTF_WM=32 -DTF_WN=32:16" \
  "128-conv:-DTF_CONV $big $lay=0 -DTF_TB=0 -DTF_VA=0 -DTF_VB=0:32" \
  "64-conv-wgrad:-DTF_CONV $lay=0 -DTF_TB=1 -DTF_VA=0 -DTF_VB=0:16" \
  "128-conv-wgrad:-DTF_CONV $big $lay=0 -DTF_TB=1 -DTF_VA=0 -DTF_VB=0:32"; do
  tile=${build%%:*}; rest=${build#*:}; opts=${rest%:*}; want=${rest##*:}
  # The convolution (TF_CONV) is built after common.cl, as kilt-gemm-tf32.c builds it.
  cat "$(dirname "$src")/common.cl" "$src" > "$work/conv-tf32.cl"
  in=$src
  case $opts in *TF_CONV*) in=$work/conv-tf32.cl ;; esac
  # shellcheck disable=SC2086
  if ! "$clang" -x cl -cl-std=CL1.2 -Xclang -finclude-default-header -target nvptx64--nvidiacl \
    -Xclang -mlink-builtin-bitcode -Xclang "$clc" \
    -Xclang -target-cpu -Xclang sm_80 -Xclang -target-feature -Xclang +ptx70 \
    -DKILT_PTX -DKILT_ASM=__asm__ $opts -O3 -S -o "$work/tf32.ptx" "$in" 2> "$work/clang.log"; then
    cat "$work/clang.log"
    echo "FAILED: gemm-tf32.cl (build $tile) does not compile for NVPTX with KILT_PTX"
    exit 1
  fi
  mma=$(grep -c 'mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32' "$work/tf32.ptx")
  cvt=$(grep -c 'cvt.rna.tf32.f32' "$work/tf32.ptx")
  locals=$(grep -c '\.local' "$work/tf32.ptx")
  echo "$tile: mma.sync m16n8k8 tf32: $mma, cvt.rna.tf32: $cvt, .local: $locals"
  [ "$mma" -eq "$want" ] || { echo "FAILED: expected $want unrolled mma.sync, found $mma"; bad=1; }
  [ "$cvt" -ge 16 ] || { echo "FAILED: expected the 16 loads of a slice rounded, found $cvt"; bad=1; }
  [ "$locals" -eq 0 ] || { echo "FAILED: the kernel keeps values in a stack frame"; bad=1; }
  case $opts in
    *TF_VA=1*TF_VB=1*)
      v4=$(grep -c 'ld.global.v4' "$work/tf32.ptx")
      echo "  16-byte loads: $v4"
      [ "$v4" -ge 2 ] || { echo "FAILED: no 16-byte global loads in the PTX"; bad=1; } ;;
    *TF_CPASYNC*)
      cp=$(grep -c 'cp.async.ca.shared.global' "$work/tf32.ptx")
      wait=$(grep -c 'cp.async.wait_group 0' "$work/tf32.ptx")
      echo "  cp.async: $cp, wait_group 0: $wait"
      [ "$cp" -ge 2 ] && [ "$wait" -ge 1 ] || { echo "FAILED: no cp.async pipeline in the PTX"; bad=1; } ;;
  esac
  if [ -n "$ptxas" ]; then
    if ! "$ptxas" -arch=sm_80 -v "$work/tf32.ptx" -o "$work/tf32.cubin" > "$work/ptxas.log" 2>&1; then
      cat "$work/ptxas.log"
      echo "FAILED: ptxas refused the TF32 kernel (build $tile) for sm_80"
      bad=1
    fi
    grep -E "registers|spill" "$work/ptxas.log"
    if grep -qE "[1-9][0-9]* bytes (spill|stack)" "$work/ptxas.log"; then
      echo "FAILED: the TF32 kernel (build $tile) spills"
      bad=1
    fi
  fi
done
[ -n "$ptxas" ] || echo "(no ptxas: the PTX was not assembled)"
[ $bad -eq 0 ] && echo "PASS"
exit $bad
