#!/usr/bin/env python3
# Runs a Kilt-exported ONNX model in onnxruntime and compares its outputs (test-onnx-export).
#   onnx-check.py version
#   onnx-check.py compare MODEL.onnx INPUT.f32 EXPECTED.f32 BATCH TOLERANCE
#       raw little-endian float32 inputs (NCHW, as Kilt has them) and Kilt's outputs
#   onnx-check.py keras MODEL.onnx PREDICT.json TOLERANCE
#       Keras' inputs (channels-last) and Keras' predictions, from make-keras-weights.py
# The error is max |onnxruntime - expected| / max |expected|; exit 1 when over TOLERANCE,
# 2 when onnxruntime or numpy cannot be imported.
# SPDX-License-Identifier: GPL-3.0-or-later
import json
import sys

try:
    import numpy as np
    import onnxruntime as ort
except ImportError as e:
    print(f"onnxruntime and numpy are needed ({e}); installer/deps.sh --test installs them "
          "into ~/.cache/kilt/test-venv")
    sys.exit(2)


def session(path):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    # Graph rewrites (fusions) are onnxruntime's business; check the file as written.
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])


def run(sess, x):
    inp = sess.get_inputs()[0]
    dims = inp.shape[1:]
    if not isinstance(inp.shape[0], str):
        sys.exit(f"the input's batch dimension is {inp.shape[0]}, not symbolic")
    x = x.reshape((x.shape[0], *dims)).astype(np.float32)
    return sess.run(None, {inp.name: x})[0]


def verdict(y, expected, tol, what):
    y = y.reshape(expected.shape[0], -1).astype(np.float64)
    expected = expected.reshape(expected.shape[0], -1).astype(np.float64)
    if y.shape != expected.shape:
        print(f"{what}: onnxruntime gives {y.shape}, expected {expected.shape}")
        return 1
    if not np.all(np.isfinite(y)):
        print(f"{what}: onnxruntime's output is not finite")
        return 1
    scale = max(float(np.max(np.abs(expected))), 1e-30)
    err = float(np.max(np.abs(y - expected))) / scale
    worst = np.unravel_index(int(np.argmax(np.abs(y - expected))), y.shape)
    print(f"{what}: output {y.shape}, max |expected| {scale:.4g}, relative error {err:.3g} "
          f"(tolerance {tol:g}; worst at {tuple(int(i) for i in worst)}: "
          f"{y[worst]:.7g} against {expected[worst]:.7g})")
    return 0 if err <= tol else 1


def main(argv):
    if len(argv) >= 1 and argv[0] == "version":
        print(f"onnxruntime {ort.__version__}, numpy {np.__version__}")
        return 0
    if len(argv) == 6 and argv[0] == "compare":
        _, model, xin, yout, batch, tol = argv
        batch = int(batch)
        x = np.fromfile(xin, dtype="<f4").reshape(batch, -1)
        expected = np.fromfile(yout, dtype="<f4").reshape(batch, -1)
        return verdict(run(session(model), x), expected, float(tol), "against Kilt")
    if len(argv) == 4 and argv[0] == "keras":
        _, model, predict, tol = argv
        with open(predict) as f:
            p = json.load(f)
        shape = p["input_shape"]
        x = np.array(p["inputs"], dtype=np.float32).reshape(-1, *shape)
        if len(shape) == 3:  # Keras' (H, W, C) to Kilt's (C, H, W)
            x = x.transpose(0, 3, 1, 2)
        elif len(shape) == 2:  # a sequence, (steps, C), to Kilt's (C, 1, steps)
            x = x.transpose(0, 2, 1)
        expected = np.array(p["outputs"], dtype=np.float64)
        return verdict(run(session(model), x), expected, float(tol), "against Keras")
    print(__doc__ or "usage: see the comment at the top", file=sys.stderr)
    return 64


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
