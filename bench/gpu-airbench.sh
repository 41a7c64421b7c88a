#!/usr/bin/env bash
# On the GPU machine: issue 12's airbench94 comparison. Kilt's `train --recipe airbench94` on
# the shared CIFAR-10 JPEG folder, SEEDS seeds at each precision, and Keller Jordan's own
# airbench94 script in PyTorch (bench/airbench_peer.py) on the same folder in the same call.
# Carried in .device/ (none of it committed): cifar10-jpeg.tar.gz from ../shared/datasets, and
# airbench94.py (legacy/airbench94.py of github.com/KellerJordan/cifar10-airbench).
# Usage (repository root): source .device/remote.sh && bench/gpu-airbench.sh [PHASE...]
#   phases: kilt (fp32), kilt-tf32, torch; default all three. SEEDS (default 5) per phase.
# Results go to $OUT line by line (airbench.txt: one line per run), packed into airbench.tgz.
set -uo pipefail
export KILT_DATA_DIR=$PWD/resources KILT_RUNS_DB=/tmp/runs.db KILT_CACHE_DIR=/tmp/kilt-cache
out=${OUT:-/tmp/out}
seeds=${SEEDS:-5}
mkdir -p "$out"
t0=$SECONDS
say () { echo "[$((SECONDS - t0)) s] $*" | tee -a "$out/airbench.txt"; }
data=/tmp/cifar10
if [ ! -d "$data/train" ]; then
  mkdir -p "$data" && tar xzf .device/cifar10-jpeg.tar.gz -C "$data" || exit 1
fi
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader > "$out/gpu.txt"
dev=$(kilt-cli devices | awk '/^\[[0-9]+\]/ {id=$2} /name:.*(NVIDIA|H100|H200)/ {print id; exit}')
say "device $dev: $(cat "$out/gpu.txt")"

# One run: the epochs' seconds summed, the wall time of the process (loading, the whitening
# init and evaluation included) and the test accuracy with flip TTA, from train's --json.
kilt_run () {
  local prec=$1 seed=$2 log="$out/kilt-$1-seed$2.jsonl" start=$SECONDS
  timeout 240 kilt-cli train --recipe airbench94 --data "$data" --device "$dev" --seed "$seed" \
    --precision "$prec" --json > "$log" 2> "$out/kilt-$prec-seed$seed.err"
  local rc=$?
  python3 - "$log" "$prec" "$seed" "$rc" "$((SECONDS - start))" << 'EOF' | tee -a "$out/airbench.txt"
import json, sys
log, prec, seed, rc, wall = sys.argv[1:]
epochs, acc, status = [], None, None
for line in open(log):
    try:
        d = json.loads(line)
    except ValueError:
        continue
    if d.get("event") == "epoch" or ("seconds" in d and "val_accuracy" in d):
        epochs.append(d.get("seconds", 0.0))
    if "test_accuracy" in d:
        acc, status = d["test_accuracy"], d.get("status")
print(json.dumps({"kilt": "airbench94", "precision": prec, "seed": int(seed), "rc": int(rc),
                  "status": status, "test_accuracy_tta": acc, "epochs": len(epochs),
                  "train_seconds": round(sum(epochs), 3), "wall_seconds": int(wall)}))
EOF
}
phase_kilt () { for s in $(seq "$seeds"); do kilt_run fp32 "$s"; done; }
phase_kilt-tf32 () { for s in $(seq "$seeds"); do kilt_run tf32 "$s"; done; }
phase_torch () {
  timeout 300 python3 bench/airbench_peer.py --script .device/airbench94.py --data "$data" \
    --runs "$seeds" 2> "$out/torch-airbench.err" | tee -a "$out/airbench.txt"
  say "torch airbench94: rc $?"
}
for phase in ${@:-kilt kilt-tf32 torch}; do
  say "phase $phase"
  "phase_$phase"
done
say "done"
tar czf /tmp/airbench.tgz -C "$out" . && find "$out" -type f -delete && mv /tmp/airbench.tgz "$out/"
