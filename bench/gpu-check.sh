#!/usr/bin/env bash
# On the GPU machine: is the engine correct there, and how fast is a first look?
# Usage (from the repository root, after ../shared/device/prepare.sh build-rel/app/kilt-cli):
#   source .device/remote.sh && bench/gpu-check.sh
set -uo pipefail
export KILT_DATA_DIR=$PWD/resources KILT_RUNS_DB=/tmp/runs.db KILT_CACHE_DIR=/tmp/kilt-cache
out=${OUT:-/tmp/out}
mkdir -p "$out"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee "$out/gpu.txt"
clinfo -l
kilt-cli devices 2>&1 | tee "$out/devices.txt"
dev=$(kilt-cli devices | awk '/^\[[0-9]+\]/ {id=$2} /name:.*(NVIDIA|H100|H200)/ {print id; exit}')
echo "GPU device: $dev"
time kilt-cli devices --test 2>&1 | tee "$out/doctor.txt"
for b in 32 256; do
  kilt-cli bench --device "$dev" --model cifar10_cnn --batch $b --steps 200 --json 2>&1 | tee -a "$out/kilt-bench.jsonl"
done
python3 bench/torch_peer.py --model cifar10_cnn --batch 32 256 --steps 200 2>&1 | tee -a "$out/torch-bench.jsonl"
