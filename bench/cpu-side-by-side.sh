#!/usr/bin/env bash
# On this (CPU) machine: Kilt on PoCL, PyTorch CPU, TensorFlow/Keras CPU and (optionally)
# PlaidML 0.7 on cifar10_cnn, batch 32, Keras' RMSprop, alternating for a few rounds, so that
# what other processes do to the shared cores falls on all alike. PyTorch runs with its default
# thread count and with one thread per core; TensorFlow with its defaults (one intra-op thread
# per core), timing both train_on_batch and a tf.function step.
# Usage (repository root, after a build): bench/cpu-side-by-side.sh [rounds] [steps]
# Needs PyTorch for $PYTHON (default /usr/bin/python3; Debian: apt-get install python3-torch).
# TF_PYTHON: a Python with tensorflow (e.g. a venv's; default /work/venvs/tf/bin/python when
# present), skipped with a message otherwise. PLAIDML_PYTHON: a Python with plaidml-keras 0.7
# (bench/results/plaidml.md); PlaidML is run only when it is set.
# KILT_CLI: the kilt-cli to time (default ./build/app/kilt-cli).
set -uo pipefail
rounds=${1:-3}
steps=${2:-30}
py=${PYTHON:-/usr/bin/python3}
cli=${KILT_CLI:-./build/app/kilt-cli}
tf_py=${TF_PYTHON:-}
if [ -z "$tf_py" ] && [ -x /work/venvs/tf/bin/python ]; then
  tf_py=/work/venvs/tf/bin/python
fi
if [ -n "$tf_py" ] && ! "$tf_py" -c "import tensorflow" 2>/dev/null; then
  echo "# TensorFlow skipped: $tf_py cannot import tensorflow" >&2
  tf_py=
elif [ -z "$tf_py" ]; then
  echo "# TensorFlow skipped: set TF_PYTHON to a Python with tensorflow" >&2
fi
plaidml_py=${PLAIDML_PYTHON:-}
cores=$(nproc)
export KILT_CACHE_DIR=${KILT_CACHE_DIR:-/tmp/kilt-cache}
for r in $(seq "$rounds"); do
  echo "# round $r, load $(cut -d' ' -f1-3 /proc/loadavg)"
  "$cli" bench --steps "$steps" --batch 32 --json 2>/dev/null | grep "\"step_ms\""
  "$py" bench/torch_peer.py --device cpu --modes fp32 --model cifar10_cnn --batch 32 \
    --steps "$steps" 2>/dev/null
  OMP_NUM_THREADS=$cores "$py" bench/torch_peer.py --device cpu --modes fp32 \
    --model cifar10_cnn --batch 32 --steps "$steps" 2>/dev/null | sed "s/}\$/, \"threads\": $cores}/"
  if [ -n "$tf_py" ]; then
    "$tf_py" bench/tf_peer.py --model cifar10_cnn --batch 32 --steps "$steps" --warmup 20 \
      --modes keras function 2>/dev/null
  fi
  if [ -n "$plaidml_py" ]; then
    # Its steps take ~1 s here: a third of the steps keeps a round short.
    "$plaidml_py" bench/plaidml_peer.py --device opencl --batch 32 \
      --steps $(((steps + 2) / 3)) --warmup 3 2>/dev/null | grep "^{"
  fi
  echo "# round $r done, load $(cut -d' ' -f1-3 /proc/loadavg)"
done
