#!/usr/bin/env bash
# On the GPU machine: one card, the PoCL CPU beside it, and MPI ranks on that card (issues 13
# and 16 until machines with several GPUs are lent). Phases, in the order given:
#   paircnn, pairresnet
#          cifar10_cnn and ResNet-20 on CIFAR-10: the GPU alone, then --devices GPU,CPU (the
#          engine's own choice: both, or the fastest alone and why), then both kept
#          (KILT_DIST_KEEP_ALL=1) to show what the CPU would cost
#   mpicnn, mpiresnet
#          mpirun -np 2 on the one card at the same global batch as the GPU alone (same curve)
#   big    kilt-cli bench of ResNet-50 at 224 (imported from bench/models/keras3-resnet50.json)
#   torch  bench/torch_peer.py for the same workloads (one GPU: DDP needs several)
# Usage (repository root, .devpack/dev.tar.xz holding .device/ with .device/ompi from
# bench/carry-openmpi.sh, and cifar10-jpeg.tar.gz in .devpack/):
#   tar xJf .devpack/dev.tar.xz && bench/gpu-scale.sh [PHASE...]
# Results go to $OUT, line by line; every step has a time limit.
set -uo pipefail
source .device/remote.sh
source .device/ompi/env.sh
export KILT_DATA_DIR=$PWD/resources KILT_RUNS_DB=/tmp/runs.db KILT_CACHE_DIR=/tmp/kilt-cache
out=${OUT:-/tmp/out}
mkdir -p "$out"
t0=$SECONDS
say () { echo "[$((SECONDS - t0)) s] $*" | tee -a "$out/phases.txt"; }
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader > "$out/gpu.txt"
kilt-cli devices > "$out/devices.txt" 2>&1
gpu=${GPU:-$(awk '/^\[[0-9]+\]/ {id=$2} /name:.*(NVIDIA|H100|H200)/ {print id; exit}' "$out/devices.txt")}
cpu=$(awk '/^\[[0-9]+\]/ {id=$2} /name:.*CPU\)/ {print id; exit}' "$out/devices.txt")
say "GPU $gpu, CPU $cpu: $(cat "$out/gpu.txt")"
if [ ! -d /tmp/cifar10 ]; then
  mkdir -p /tmp/cifar10 && tar xzf .devpack/cifar10-jpeg.tar.gz -C /tmp/cifar10
fi
data=$(dirname "$(find /tmp/cifar10 -maxdepth 3 -name train -type d | head -1)")
mpirun=(mpirun -np 2 --oversubscribe --allow-run-as-root)

# tr NAME [ENV=V...] -- kilt-cli train options: the human-readable lines into NAME.txt
tr () {
  local name=$1 envs=()
  shift
  while [ "$1" != "--" ]; do envs+=("$1"); shift; done
  shift
  env "${envs[@]}" timeout "${LIMIT:-150}" stdbuf -oL kilt-cli train --data "$data" --seed 7 \
    --optimizer rmsprop --lr 0.0001 --decay 0.000001 "$@" > "$out/$name.txt" 2>&1
  say "$name: rc $? ($*)"
  grep -E "^(Data-parallel|Measured|Training on|epoch|Finished|MPI)|warning" "$out/$name.txt" | cut -c1-400 | tee -a "$out/phases.txt"
}

pair () {
  for m in "$@"; do
    set -- $m
    tr "one-$1-b$2" -- --model "$1" --batch "$2" --epochs 3 --device "$gpu"
    tr "pair-$1-b$2" -- --model "$1" --batch "$2" --epochs 3 --devices "$gpu,$cpu"
    tr "pairkeep-$1-b$2" KILT_DIST_KEEP_ALL=1 -- --model "$1" --batch "$2" --epochs 2 --devices "$gpu,$cpu"
  done
}
phase_paircnn () { pair "cifar10_cnn 512" "cifar10_cnn 128"; }
phase_pairresnet () { pair "resnet20 128" "resnet20 512"; }
mpi () {
  for m in "$@"; do
    set -- $m
    [ -f "$out/one-$1-b$2.txt" ] || tr "one-$1-b$2" -- --model "$1" --batch "$2" --epochs 3 --device "$gpu"
    timeout 160 "${mpirun[@]}" stdbuf -oL kilt-cli train --data "$data" --seed 7 \
      --optimizer rmsprop --lr 0.0001 --decay 0.000001 --model "$1" --batch "$2" --epochs 3 \
      --device "$gpu" --mpi > "$out/mpi2-$1-b$2.txt" 2>&1
    say "mpi2-$1-b$2 under mpirun: rc $?"
    grep -E "^(Rank|Training on|epoch|Finished|MPI)|warning|rror" "$out/mpi2-$1-b$2.txt" | cut -c1-400 | tee -a "$out/phases.txt"
    # One rank: the MPI path's own cost, without two processes sharing the card.
    timeout 160 mpirun -np 1 --allow-run-as-root stdbuf -oL kilt-cli train --data "$data" --seed 7 \
      --optimizer rmsprop --lr 0.0001 --decay 0.000001 --model "$1" --batch "$2" --epochs 3 \
      --device "$gpu" --mpi > "$out/mpi1-$1-b$2.txt" 2>&1
    say "mpi1-$1-b$2 under mpirun: rc $?"
    grep -E "^(epoch|Finished)|rror" "$out/mpi1-$1-b$2.txt" | cut -c1-400 | tee -a "$out/phases.txt"
  done
}
phase_mpicnn () { mpi "cifar10_cnn 512"; }
phase_mpiresnet () { mpi "resnet20 128"; }
phase_big () {
  timeout 200 stdbuf -oL kilt-cli bench --device "$gpu" --model bench/models/keras3-resnet50.json \
    --batch 64 --steps 20 --json > "$out/kilt-bench-resnet50.jsonl" 2> "$out/kilt-bench-resnet50.err"
  say "bench resnet50: rc $?"
  cut -c1-600 "$out/kilt-bench-resnet50.jsonl" | tail -3
  tail -3 "$out/kilt-bench-resnet50.err"
}
phase_torch () {
  tp () { timeout 200 stdbuf -oL python3 bench/torch_peer.py --modes fp32 tf32 "$@" 2>/dev/null | tee -a "$out/torch-bench.jsonl" | cut -c1-300; }
  tp --model resnet50 --batch 64 --steps 30
  tp --model cifar10_cnn --batch 128 512 --steps 200
  tp --model resnet20 --batch 128 512 --steps 200
}
for phase in "${@:-paircnn mpicnn pairresnet mpiresnet big torch}"; do
  for p in $phase; do
    say "phase $p"
    "phase_$p"
  done
done
say "done"
# The device tool brings back a few files: everything in one archive.
tar czf /tmp/scale.tgz -C "$out" . && find "$out" -type f -delete && mv /tmp/scale.tgz "$out/"
