#!/usr/bin/env bash
# On the GPU machine: the two TF32 paths that have not yet run on a GPU (bench/NOTES.md §18),
# checked and then timed against what runs by default, in one call:
#   - correctness on real mma.sync: test-layers-conv -p /layers/conv2d/implicit-gemm-tf32 and
#     test-gemm -p /gemm/tf32-layout (put both in .device/bin with prepare.sh);
#   - the per-layout GEMM (KILT_TF32_KERNEL=layout) against the one kernel for every layout,
#     bench-gemm tf32 on the square and VGG16 block-3 shapes, with NVIDIA's register counts;
#   - kilt-cli bench --precision tf32 on VGG16 and ResNet-50 (224x224, batch 32) and cifar10_cnn
#     b256: base (defaults), conv (KILT_TF32_CONV=1), lay1conv (both switches).
# Usage (repository root, after ../shared/device/prepare.sh build-rel/app/kilt-cli
#   build-rel/tests/test-gemm build-rel/tests/bench-gemm build-rel/tests/test-layers-conv):
#   source .device/remote.sh && bench/gpu-tf32.sh
# Results go to $OUT: phases.txt (a line per step, then the summary), bench-*.jsonl, gemm-*.txt.
set -uo pipefail
export KILT_DATA_DIR=$PWD/resources KILT_RUNS_DB=/tmp/runs.db KILT_CACHE_DIR=/tmp/kilt-cache KILT_BACKTRACE=1
out=${OUT:-/tmp/out}; mkdir -p "$out"; t0=$SECONDS
say () { echo "[$((SECONDS - t0)) s] $*" | tee -a "$out/phases.txt"; }
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader > "$out/gpu.txt"
dev=$(kilt-cli devices | awk '/^\[[0-9]+\]/ {id=$2} /name:.*(NVIDIA|H100|H200)/ {print id; exit}')
say "device $dev: $(cat "$out/gpu.txt")"
export KILT_DEVICE=$dev
timeout 60 test-layers-conv -p /layers/conv2d/implicit-gemm-tf32 > "$out/test-conv-tf32.txt" 2>&1; say "test-layers-conv tf32 igemm: rc $? $(grep -c 'tf32 igemm' "$out/test-conv-tf32.txt") cases"
timeout 60 test-gemm -p /gemm/tf32-layout > "$out/test-gemm-tf32.txt" 2>&1; say "test-gemm /gemm/tf32-layout: rc $? $(grep -h 'cases failed' "$out/test-gemm-tf32.txt" | tr '\n' ' ')"
KILT_TF32_KERNEL=layout KILT_TF32_OPTIONS="-cl-nv-verbose" timeout 40 bench-gemm tf32 2 1 square > "$out/verbose.txt" 2>&1; say "verbose rc $?"
for v in "lay1:KILT_TF32_KERNEL=layout" "any::"; do
  name=${v%%:*}; envs=${v#*:}; envs=${envs#:}
  for sh in square "b3 fwd" "b3 dX" "b3 dW"; do env $envs timeout 30 bench-gemm tf32 10 2 "$sh" >> "$out/gemm-$name.txt" 2>&1; done; say "bench-gemm $name rc $?"
done
grep -h "TFLOP\|square\|b3 " "$out"/gemm-*.txt >> "$out/phases.txt"
run () { # name envs model batch steps
  env $2 timeout 100 kilt-cli bench --device "$dev" --model "$3" --batch $4 --steps $5 --precision tf32 --json >> "$out/bench-$1.jsonl" 2>> "$out/bench.err"; say "kilt $3 b$4 tf32 $1 rc $?"
}
run base "" bench/models/keras3-vgg16.json 32 6
run lay1conv "KILT_TF32_KERNEL=layout KILT_TF32_CONV=1" bench/models/keras3-vgg16.json 32 6
run conv KILT_TF32_CONV=1 bench/models/keras3-vgg16.json 32 6
run base "" cifar10_cnn 256 40
run lay1conv "KILT_TF32_KERNEL=layout KILT_TF32_CONV=1" cifar10_cnn 256 40
run base "" bench/models/keras3-resnet50.json 32 6
run lay1conv "KILT_TF32_KERNEL=layout KILT_TF32_CONV=1" bench/models/keras3-resnet50.json 32 6
python3 - "$out" <<'PY' | tee -a "$out/phases.txt"
import json,sys,glob,os
for f in sorted(glob.glob(sys.argv[1]+"/bench-*.jsonl")):
    for l in open(f):
        d=json.loads(l); print(os.path.basename(f), d.get("model"), d.get("input_chw"), d.get("batch"), d.get("precision"), "MFLOP/sample", round(d.get("train_mflop_per_sample",0),1), "step_ms", round(d.get("step_ms",0),3), "busy", round(d.get("busy_percent") or 0,1), "check_ok", d.get("check_ok"))
        for L in d.get("layers",[]):
            if L.get("forward_ms",0)+L.get("backward_ms",0) > 0.05*d.get("step_ms",1): print("   ", L.get("layer"), round(L.get("forward_ms",0),3), round(L.get("backward_ms",0),3), L.get("algo",""))
PY
