#!/usr/bin/env bash
# On this (CPU) machine: Kilt on PoCL and PyTorch CPU on cifar10_cnn, batch 32, Keras' RMSprop,
# alternating for a few rounds, so that what other processes do to the shared cores falls on
# both alike. PyTorch runs with its default thread count and with one thread per core.
# Usage (repository root, after a build): bench/cpu-side-by-side.sh [rounds] [steps]
# Needs PyTorch for /usr/bin/python3 (Debian: apt-get install python3-torch).
set -uo pipefail
rounds=${1:-3}
steps=${2:-30}
py=${PYTHON:-/usr/bin/python3}
cores=$(nproc)
export KILT_CACHE_DIR=${KILT_CACHE_DIR:-/tmp/kilt-cache}
for r in $(seq "$rounds"); do
  echo "# round $r, load $(cut -d' ' -f1-3 /proc/loadavg)"
  ./build/app/kilt-cli bench --steps "$steps" --batch 32 --json 2>/dev/null | grep "\"step_ms\""
  "$py" bench/torch_peer.py --device cpu --modes fp32 --model cifar10_cnn --batch 32 \
    --steps "$steps" 2>/dev/null
  OMP_NUM_THREADS=$cores "$py" bench/torch_peer.py --device cpu --modes fp32 \
    --model cifar10_cnn --batch 32 --steps "$steps" 2>/dev/null | sed "s/}\$/, \"threads\": $cores}/"
done
