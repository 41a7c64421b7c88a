#!/usr/bin/env bash
# On the GPU machine: Kilt and PyTorch side by side on one card. Phases, in the order given
# (default: kilt torch train):
#   tune   kilt-cli tune (CLBlast's tuner; carry clblast_tuner_xgemm in .device/bin)
#   kilt   kilt-cli bench for every workload (no --data: random inputs of each model's own
#          input shape, as PyTorch's peer uses; each line names its input and FLOP per sample)
#   torch  bench/torch_peer.py for every workload (TORCH_MODES, default "fp32 tf32 compiled")
#   train  the article's accuracy run in Kilt, then in PyTorch
#   algo   cifar10_cnn and ResNet-20 with each convolution algorithm forced (KILT_CONV_IGEMM=0,
#          1) and chosen by timing, to see what the implicit-GEMM kernels do on this card
# Results go to $OUT (the device tool brings them back). Every phase has a time limit and
# writes line by line, so a phase cut short still leaves what it measured.
# Usage (repository root, after ../shared/device/prepare.sh build-rel/app/kilt-cli and copying
# cifar10-jpeg.tar.gz into .device/):  source .device/remote.sh && bench/gpu-run.sh [PHASE...]
set -uo pipefail
export KILT_DATA_DIR=$PWD/resources KILT_RUNS_DB=/tmp/runs.db KILT_CACHE_DIR=/tmp/kilt-cache
out=${OUT:-/tmp/out}
mkdir -p "$out"
t0=$SECONDS
say () { echo "[$((SECONDS - t0)) s] $*" | tee -a "$out/phases.txt"; }
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader > "$out/gpu.txt"
dev=$(kilt-cli devices | awk '/^\[[0-9]+\]/ {id=$2} /name:.*(NVIDIA|H100|H200)/ {print id; exit}')
say "device $dev: $(cat "$out/gpu.txt")"
kb () { timeout 120 stdbuf -oL kilt-cli bench --device "$dev" --steps 300 --json "$@" | tee -a "$out/kilt-bench.jsonl" | cut -c1-200; }
tp () { timeout 200 stdbuf -oL python3 bench/torch_peer.py --steps 300 --modes ${TORCH_MODES:-fp32 tf32 compiled} "$@" 2>/dev/null | tee -a "$out/torch-bench.jsonl" | cut -c1-200; }

phase_tune () {
  timeout 300 stdbuf -oL kilt-cli tune --device "$dev" --model cifar10_cnn --batch 256 --steps 100 \
    --minutes "${TUNE_MINUTES:-2.5}" 2>&1 | tee "$out/kilt-tune.txt"
  kilt-cli tune --device "$dev" --show | tee -a "$out/kilt-tune.txt"
  cp ~/.config/kilt/clblast/*.json "$out/" 2>/dev/null
}
phase_kilt () {
  # Every op against the reference first, convolutions with each algorithm.
  timeout 120 kilt-cli devices --test --device "$dev" 2>&1 | tee "$out/doctor.txt" | grep -E "Conv|verdict"
  kb --model cifar10_cnn --batch 32
  kb --model cifar10_cnn --batch 128
  kb --model cifar10_cnn --batch 256
  kb --model mnist_cnn --batch 128
  kb --model resnet20 --batch 128
  kb --model vgg16 --batch 16 --steps 40
  # The MLP on a CSV data set: the bundled Fashion-MNIST sample as 784 pixel columns.
  python3 bench/idx-to-csv.py resources/sample/train-images-idx3-ubyte.gz \
    resources/sample/train-labels-idx1-ubyte.gz /tmp/fashion-sample.csv
  kb --model mlp --batch 128 --data /tmp/fashion-sample.csv
}
phase_algo () {
  for m in "cifar10_cnn 32" "cifar10_cnn 256" "resnet20 128"; do
    set -- $m
    for a in 0 1 measure; do
      say "KILT_CONV_IGEMM=$a (the bench line below)"
      KILT_CONV_IGEMM=$a G_MESSAGES_DEBUG=kilt-conv2d kb --model "$1" --batch "$2"
    done
  done
}
phase_torch () {
  tp --model cifar10_cnn --batch 32 128 256
  tp --model mnist_cnn --batch 128
  tp --model resnet20 --batch 128
  tp --model mlp --batch 128
  tp --model vgg16 --batch 16 --steps 40
}
phase_train () {
  mkdir -p /tmp/cifar10 && tar xzf .device/cifar10-jpeg.tar.gz -C /tmp/cifar10
  root=/tmp/cifar10; [ -d $root/train ] || root=$(dirname "$(find /tmp/cifar10 -maxdepth 3 -name train -type d | head -1)")
  say "extracted to $root"
  timeout "${KILT_LIMIT:-170}" stdbuf -oL kilt-cli train --device "$dev" --data "$root" --model cifar10_cnn \
    --epochs 10 --batch 32 --optimizer rmsprop --lr 0.0001 --decay 0.000001 --json \
    > "$out/kilt-train.jsonl" 2> "$out/kilt-train.err"
  say "kilt train: rc $?"
  grep -E '"event":"(epoch|finished|failed)"' "$out/kilt-train.jsonl" | cut -c1-300
  timeout "${TORCH_LIMIT:-150}" stdbuf -oL python3 bench/torch_cifar10_train.py "$root" > "$out/torch-train.jsonl" 2>&1
  say "torch train: rc $?"
  tail -3 "$out/torch-train.jsonl"
}
for phase in "${@:-kilt torch train}"; do
  for p in $phase; do
    say "phase $p"
    "phase_$p"
  done
done
say "done"
