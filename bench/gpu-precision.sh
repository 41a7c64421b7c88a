#!/usr/bin/env bash
# On the GPU machine: the device doctor (the TF32 GEMM of both tile builds against the
# reference), Kilt at fp32 and tf32 and PyTorch (eager FP32, TF32, torch.compile) on the same
# workloads in one call, and the article's run at tf32. Carry .device/ made by
# ../shared/device/prepare.sh with the presets in .device/res/presets, bench/torch_peer.py in
# .device/ and cifar10-jpeg.tar.gz; run: source .device/remote.sh && bench/gpu-precision.sh
set -uo pipefail
export KILT_DATA_DIR=$PWD/.device/res KILT_RUNS_DB=/tmp/runs.db KILT_CACHE_DIR=/tmp/kilt-cache
out=${OUT:-/tmp/out}; mkdir -p "$out"
dev=$(kilt-cli devices | awk '/^\[[0-9]+\]/ {id=$2} /name:.*(NVIDIA|H100|H200)/ {print id; exit}')
timeout 120 kilt-cli devices --test --device "$dev" 2>&1 | tee "$out/doctor.txt" | grep -E "tf32|GEMM|verdict" | head -4
kb () { timeout 150 stdbuf -oL kilt-cli bench --device "$dev" --steps 300 --json "$@" 2>>"$out/bench.err" | tee -a "$out/kilt-bench.jsonl" | python3 -c "
import json,sys
for l in sys.stdin:
  r=json.loads(l); print('kilt',r['model'],r['batch'],r['precision'],r.get('step_ms'),r.get('busy_percent'),r.get('check_ok'),r.get('check_grad_rel'),r.get('error','')[:300])"; }
for p in fp32 tf32; do
  kb --model cifar10_cnn --batch 32 --precision $p
  kb --model cifar10_cnn --batch 256 --precision $p
  kb --model resnet20 --batch 128 --precision $p
  kb --model vgg16 --batch 16 --steps 40 --precision $p
done
tp () { timeout 200 stdbuf -oL python3 .device/torch_peer.py --modes fp32 tf32 compiled "$@" 2>/dev/null | tee -a "$out/torch-bench.jsonl" | python3 -c "
import json,sys
for l in sys.stdin:
  r=json.loads(l); print('torch',r['model'],r['batch'],r['mode'],r.get('step_ms'),r.get('error',''))"; }
tp --model cifar10_cnn --batch 32 256 --steps 300
tp --model resnet20 --batch 128 --steps 300
tp --model vgg16 --batch 16 --steps 40
mkdir -p /tmp/cifar10 && tar xzf .device/cifar10-jpeg.tar.gz -C /tmp/cifar10
root=/tmp/cifar10; [ -d $root/train ] || root=$(dirname "$(find /tmp/cifar10 -maxdepth 3 -name train -type d | head -1)")
timeout 100 stdbuf -oL kilt-cli train --device "$dev" --data "$root" --model cifar10_cnn --epochs 10 --batch 32 \
  --optimizer rmsprop --lr 0.0001 --decay 0.000001 --precision tf32 --json > "$out/kilt-train-tf32.jsonl" 2> "$out/kilt-train-tf32.err"
echo "train rc $?"; grep -E '"event":"(finished)"' "$out/kilt-train-tf32.jsonl" | cut -c1-200; grep -E '"epoch":10' "$out/kilt-train-tf32.jsonl" | cut -c1-200
