#!/usr/bin/env bash
# On the GPU machine: the article's run (cifar10_cnn, 10 epochs, batch 32, Keras' RMSprop, no
# augmentation) in Kilt and then in PyTorch, each within a time limit. Results go to $OUT.
set -uo pipefail
export KILT_DATA_DIR=$PWD/resources KILT_RUNS_DB=/tmp/runs.db KILT_CACHE_DIR=/tmp/kilt-cache
out=${OUT:-/tmp/out}
mkdir -p "$out" /tmp/cifar10
tar xzf .device/cifar10-jpeg.tar.gz -C /tmp/cifar10
root=/tmp/cifar10; [ -d $root/train ] || root=$(dirname "$(find /tmp/cifar10 -maxdepth 3 -name train -type d | head -1)")
dev=$(kilt-cli devices | awk '/^\[[0-9]+\]/ {id=$2} /name:.*(NVIDIA|H100|H200)/ {print id; exit}')
SECONDS=0
timeout ${KILT_LIMIT:-100} kilt-cli train --device "$dev" --data "$root" --model cifar10_cnn --epochs 10 --batch 32 \
  --optimizer rmsprop --lr 0.0001 --decay 0.000001 | tee "$out/kilt-train.txt"
echo "kilt wall: $SECONDS s" | tee -a "$out/kilt-train.txt"
timeout ${TORCH_LIMIT:-110} python3 bench/torch_cifar10_train.py "$root" 2>&1 | tee "$out/torch-train.jsonl"
