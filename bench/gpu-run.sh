#!/usr/bin/env bash
# On the GPU machine: every benchmark workload, Kilt and PyTorch side by side on one card, then
# the article's accuracy run in both. Results go to $OUT (the device tool brings them back).
# Usage (repository root, after ../shared/device/prepare.sh build-rel/app/kilt-cli and copying
# cifar10-jpeg.tar.gz into .device/):  source .device/remote.sh && bench/gpu-run.sh [quick]
set -uo pipefail
export KILT_DATA_DIR=$PWD/resources KILT_RUNS_DB=/tmp/runs.db KILT_CACHE_DIR=/tmp/kilt-cache
out=${OUT:-/tmp/out}
mkdir -p "$out"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader > "$out/gpu.txt"
dev=$(kilt-cli devices | awk '/^\[[0-9]+\]/ {id=$2} /name:.*(NVIDIA|H100|H200)/ {print id; exit}')
kb () { kilt-cli bench --device "$dev" --steps 300 --json "$@" | tee -a "$out/kilt-bench.jsonl"; }
kb --model cifar10_cnn --batch 32
kb --model cifar10_cnn --batch 128
kb --model cifar10_cnn --batch 256
kb --model mnist_cnn --batch 128
kb --model resnet20 --batch 128
tp () { python3 bench/torch_peer.py --steps 300 "$@" 2>/dev/null | tee -a "$out/torch-bench.jsonl"; }
tp --model cifar10_cnn --batch 32 128 256
tp --model mnist_cnn --batch 128
tp --model resnet20 --batch 128
[ "${1:-}" = quick ] && exit 0
mkdir -p /tmp/cifar10 && tar xzf .device/cifar10-jpeg.tar.gz -C /tmp/cifar10
root=/tmp/cifar10; [ -d $root/train ] || root=$(dirname "$(find /tmp/cifar10 -maxdepth 3 -name train -type d | head -1)")
( time kilt-cli train --device "$dev" --data "$root" --model cifar10_cnn --epochs 10 --batch 32 \
    --optimizer rmsprop --lr 0.0001 --decay 0.000001 --json ) > "$out/kilt-train.jsonl" 2> "$out/kilt-train.err"
grep -E '"event":"(epoch|finished)"' "$out/kilt-train.jsonl" | cut -c1-400
python3 bench/torch_cifar10_train.py "$root" 2>&1 | tee "$out/torch-train.jsonl"
