#!/usr/bin/env bash
# On the GPU machine: the big networks of issues 11 and 12 at 224x224, batch 32, imported from
# the Keras files in bench/models (VGG16, ResNet-50, MobileNetV2, written by Keras 3 with
# weights=None), at fp32 and tf32, and PyTorch's same networks (bench/torch_peer.py) in the
# same call. Phases, in the order given (default: kilt torch):
#   kilt   kilt-cli bench, each with its first-step check; --json lines name the input, FLOP per
#          sample, precision and the device's busy share
#   torch  bench/torch_peer.py --modes fp32 tf32 for the same three
#   doctor the device doctor (`kilt-cli devices --test`) on the GPU: every layer, the RNNs and
#          Embedding included, against the C reference on NVIDIA's compiler
#   recompute  VGG16 b32 with --memory recompute (activations packed at offsets in shared slots,
#          sub-buffers on NVIDIA's driver), and tests/test-recompute on the GPU when it was put
#          in .device/bin (its gradients against the kept path's)
# Usage (repository root, after ../shared/device/prepare.sh build-rel/app/kilt-cli):
#   source .device/remote.sh && bench/gpu-big.sh [PHASE...]
# Results go to $OUT line by line, packed at the end into one big.tgz.
set -uo pipefail
export KILT_DATA_DIR=$PWD/resources KILT_RUNS_DB=/tmp/runs.db KILT_CACHE_DIR=/tmp/kilt-cache
out=${OUT:-/tmp/out}
mkdir -p "$out"
t0=$SECONDS
say () { echo "[$((SECONDS - t0)) s] $*" | tee -a "$out/phases.txt"; }
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader > "$out/gpu.txt"
dev=$(kilt-cli devices | awk '/^\[[0-9]+\]/ {id=$2} /name:.*(NVIDIA|H100|H200)/ {print id; exit}')
say "device $dev: $(cat "$out/gpu.txt")"
models="vgg16 resnet50 mobilenetv2"

phase_kilt () {
  for m in $models; do
    for p in fp32 tf32; do
      timeout 240 stdbuf -oL kilt-cli bench --device "$dev" --model "bench/models/keras3-$m.json" \
        --batch 32 --steps 20 --precision $p --json >> "$out/kilt-big.jsonl" 2>> "$out/kilt-big.err"
      say "kilt $m b32 $p: rc $?"
    done
  done
  python3 -c 'import json,sys
for l in open(sys.argv[1]):
    d=json.loads(l)
    print(d.get("model"), d.get("input_chw"), d.get("batch"), d.get("precision"), "train MFLOP/sample", d.get("train_mflop_per_sample"), "step_ms", round(d.get("step_ms",0),2), "busy %", d.get("busy_percent"), "check_ok", d.get("check_ok"))' "$out/kilt-big.jsonl" | tee -a "$out/phases.txt"
}
phase_torch () {
  for m in $models; do
    timeout 240 stdbuf -oL python3 bench/torch_peer.py --modes fp32 tf32 --model $m --batch 32 \
      --steps 30 2>> "$out/torch-big.err" | tee -a "$out/torch-big.jsonl" | cut -c1-300
    say "torch $m b32: rc $?"
  done
}
phase_doctor () {
  timeout 200 kilt-cli devices --test --device "$dev" > "$out/doctor.txt" 2>&1
  say "doctor: rc $?, $(grep -c -i 'fail' "$out/doctor.txt") lines saying fail"
  grep -i -E "verdict|fail" "$out/doctor.txt" | head -20 | tee -a "$out/phases.txt"
}
phase_recompute () {
  timeout 240 stdbuf -oL kilt-cli bench --device "$dev" --model bench/models/keras3-vgg16.json \
    --batch 32 --steps 10 --memory recompute --json >> "$out/kilt-recompute.jsonl" \
    2>> "$out/kilt-recompute.err"
  say "kilt vgg16 b32 recompute: rc $?"
  if command -v test-recompute > /dev/null; then
    KILT_DEVICE=$dev timeout 240 test-recompute > "$out/test-recompute.txt" 2>&1
    say "test-recompute on $dev: rc $?, $(grep -c '^ok' "$out/test-recompute.txt") ok, $(grep -c '^not ok' "$out/test-recompute.txt") not ok"
  fi
}
for phase in ${@:-kilt torch}; do
  say "phase $phase"
  "phase_$phase"
done
say "done"
tar czf /tmp/big.tgz -C "$out" . && find "$out" -type f -delete && mv /tmp/big.tgz "$out/"
