#!/usr/bin/env python3
# Sets every weight of every keras.applications network (the architectures make-keras-apps.py
# wrote) from a hash recipe both Keras and Kilt compute bit for bit, runs model.predict () on
# two inputs made the same way, and writes per model tests/data/keras/apps/PREFIX-NAME.predict.json.gz:
# the recipe (per variable: the HDF5 path Keras' own save_weights () file keeps it under, its
# layer and index, shape, dtype and the a, b of a + b * u) and Keras' predictions, for
# test-keras-apps-predict (issue 11: with weights that are not Keras' initial ones, every
# application predicts what Keras predicts). Big networks' weights cannot be committed; this
# recipe is a few kilobytes.
# SPDX-License-Identifier: GPL-3.0-or-later
#
# Not part of the build: run by hand, once per Keras, in the virtual environments of
# make-keras-apps.py:
#   KERAS_BACKEND=jax /tmp/k3/bin/python tests/data/keras/make-keras-apps-weights.py keras3
#   /tmp/tf215/bin/python tests/data/keras/make-keras-apps-weights.py keras2
# Optional further arguments name the applications to write (default: all).
#
# The recipe, element i (C order, in Keras' own layout) of the variable whose seed text is
# "LAYER:INDEX" (its layer's name and its index in layer.weights):
#   s = FNV-1a 64 of the seed text's UTF-8 bytes
#   z = splitmix64 finalizer of (s + (i + 1) * 0x9E3779B97F4A7C15), all mod 2^64
#   u = ((z >> 40) - 2^23) / 2^23, in [-1, 1), exact in float32
#   value = float32 (a + b * u), a and b float32; b * u is exact in double (24 + 24 bits), so
#   computing in double and rounding once gives the same float everywhere, fused or not.
# The inputs are the same with seed text "input" over the (2, h, w, 3) array.
import gzip
import hashlib
import json
import math
import os
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, here)
from importlib import import_module  # noqa: E402

import h5py  # noqa: E402
import numpy as np  # noqa: E402

APPS = import_module("make-keras-apps").APPS
N_INPUTS = 2
GOLDEN = np.uint64(0x9E3779B97F4A7C15)
M1 = np.uint64(0xBF58476D1CE4E5B9)
M2 = np.uint64(0x94D049BB133111EB)


def fnv1a64(text):
    h = 0xCBF29CE484222325
    for byte in text.encode("utf-8"):
        h = ((h ^ byte) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def uniform(seed_text, n):
    """u in [-1, 1) for elements 0 .. n-1 of the variable @seed_text, as float64 (exact)."""
    with np.errstate(over="ignore"):
        z = np.uint64(fnv1a64(seed_text)) + (np.arange(1, n + 1, dtype=np.uint64) * GOLDEN)
        z = (z ^ (z >> np.uint64(30))) * M1
        z = (z ^ (z >> np.uint64(27))) * M2
        z = z ^ (z >> np.uint64(31))
    return ((z >> np.uint64(40)).astype(np.int64) - (1 << 23)).astype(np.float64) / (1 << 23)


def values(seed_text, shape, a, b, dtype):
    n = int(np.prod(shape, dtype=np.int64))
    v = np.float64(np.float32(a)) + np.float64(np.float32(b)) * uniform(seed_text, n)
    v = v.astype(np.float32).reshape(shape)
    return v.astype(dtype) if dtype != np.float32 else v


def f32(x):
    """x rounded to float32, as the shortest decimal text that reads back as that float."""
    x = float(np.float32(x))
    for digits in range(1, 10):
        t = float(f"{x:.{digits}g}")
        if np.float32(t) == np.float32(x):
            return t
    return x


def leaf_layers(model):
    """Every layer that owns variables, nested models' layers in their place."""
    for layer in model.layers:
        if hasattr(layer, "layers") and layer.weights:
            yield from leaf_layers(layer)
        elif layer.weights:
            yield layer


def short_name(w):
    return w.name.split("/")[-1].split(":")[0]


# Input scale per application (Kilt and Keras are given the same numbers): networks that
# preprocess inside the model take pixels in [0, 255); the others take what their
# preprocess_input gives: caffe (BGR minus the mean, about +-128), tf ([-1, 1]) or torch
# (standardised, about +-2).
RAW = ("efficientnet", "convnext", "mobilenetv3")
CAFFE = ("vgg", "resnet50", "resnet101", "resnet152")
TORCH = ("densenet",)


def input_scale(name):
    if name.startswith(RAW):
        return 127.5, 127.5
    if name.startswith(CAFFE) and not name.endswith("v2"):
        return 0.0, 128.0
    if name.startswith(TORCH):
        return 0.0, 2.0
    return 0.0, 1.0


def ab_for(layer, w):
    """(a, b) of the variable: kernels uniform in +-sqrt(3 / fan_in) (variance 1 / fan_in,
    which keeps the deep ReLU and swish networks' activations within a few decades), biases and
    shifts small, scales around 1, BatchNormalization's variance in [0.5, 1.5]."""
    cls = type(layer).__name__
    name = short_name(w)
    shape = tuple(int(d) for d in w.shape)
    if cls == "Normalization":
        # After Rescaling(1/255) (EfficientNet): a mean around 0.45 and a variance around 0.06
        # (std 0.25), close to ImageNet's; count is not used in inference.
        return {"mean": (0.45, 0.05), "variance": (0.06, 0.02), "count": (1000.0, 0.0)}[name]
    if cls == "BatchNormalization":
        return {"gamma": (1.0, 0.25), "beta": (0.0, 0.1), "moving_mean": (0.0, 0.1),
                "moving_variance": (1.0, 0.5)}[name]
    if cls == "LayerNormalization":
        return {"gamma": (1.0, 0.25), "beta": (0.0, 0.1)}[name]
    if cls == "LayerScale":
        # Keras starts it at 1e-6, which would hide every ConvNeXt block: a real scale.
        return (0.3, 0.2)
    if len(shape) <= 1:
        return (0.0, 0.1)  # biases
    if cls == "DepthwiseConv2D" or name == "depthwise_kernel":
        fan_in = shape[0] * shape[1]
    else:  # Conv2D (HWIO, a grouped one's I per group), Dense, a pointwise kernel
        fan_in = int(np.prod(shape[:-1]))
    return (0.0, math.sqrt(3.0 / fan_in))


def set_recipe(model):
    """Sets every variable by the recipe; returns [layer, index, seed, variable, a, b] for
    each, and the last layer with variables (the classifier)."""
    out = []
    layers = list(leaf_layers(model))
    last = layers[-1]
    for layer in layers:
        new = []
        for index, w in enumerate(layer.weights):
            a, b = ab_for(layer, w)
            seed = f"{layer.name}:{index}"
            out.append([layer, index, seed, w, f32(a), f32(b)])
            new.append(values(seed, tuple(int(d) for d in w.shape), f32(a), f32(b),
                              np.dtype(getattr(w.dtype, "name", w.dtype))))
        layer.set_weights(new)
        if type(layer).__name__ == "Normalization":
            layer.finalize_state()
    return out, last


def calibrate_last(model, K, recipe, last, x):
    """The classifier's kernel scale: logits with a standard deviation near 2 over the inputs,
    so the softmax is neither flat nor saturated and a wrong weight anywhere shows."""
    feats = K.Model(model.inputs, last.input).predict(x, verbose=0).reshape(len(x), -1)
    mean_sq = float(np.mean(np.sum(feats.astype(np.float64) ** 2, axis=1)))
    for entry in recipe:
        layer, index, seed, w, a, b = entry
        if layer is last and len(w.shape) >= 2:
            entry[5] = f32(2.0 * math.sqrt(3.0 / max(mean_sq, 1e-30)))
    new = [values(e[2], tuple(int(d) for d in e[3].shape), e[4], e[5], np.float32)
           for e in recipe if e[0] is last]
    last.set_weights(new)
    return math.sqrt(mean_sq)


def h5_paths(model, recipe, prefix):
    """Each variable's dataset path in the file Keras' own save_weights () writes (matched by
    value: every variable's values are distinct), and Keras 2's layer_names / weight_names."""
    suffix = ".weights.h5" if prefix == "keras3" else ".h5"
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "w" + suffix)
        model.save_weights(path)
        by_bytes = {}
        groups = {}
        with h5py.File(path, "r") as f:
            layer_names = [n.decode() if isinstance(n, bytes) else str(n)
                           for n in f.attrs.get("layer_names", [])]

            def visit(name, obj):
                if isinstance(obj, h5py.Dataset):
                    data = np.asarray(obj[()])
                    key = (data.shape, data.tobytes())
                    if key in by_bytes:
                        raise SystemExit(f"{prefix}: two datasets hold the same values: {name}")
                    by_bytes[key] = name
            f.visititems(visit)
            for g in layer_names:
                wn = f[g].attrs.get("weight_names", [])
                groups[g] = [n.decode() if isinstance(n, bytes) else str(n) for n in wn]
    paths = []
    for layer, index, seed, w, a, b in recipe:
        data = np.asarray(w.numpy() if hasattr(w, "numpy") else w)
        key = (data.shape, data.tobytes())
        if key not in by_bytes:
            raise SystemExit(f"{prefix}: variable {seed} is not in Keras' weights file")
        paths.append(by_bytes.pop(key))
    if by_bytes:
        raise SystemExit(f"{prefix}: datasets {sorted(by_bytes.values())[:4]} are in no layer")
    return paths, layer_names, groups


def main():
    prefix = sys.argv[1]
    only = set(sys.argv[2:])
    if prefix == "keras3":
        import keras as K
        version = K.__version__
    else:
        import tensorflow as tf
        K = tf.keras
        version = "tf.keras " + tf.__version__
    outdir = os.path.join(here, "apps")
    for name, (ctor, small, full) in APPS.items():
        if only and name not in only:
            continue
        with gzip.open(os.path.join(outdir, f"{prefix}-{name}.json.gz"), "rt") as f:
            text = f.read()
        try:
            m = K.models.model_from_json(text)
        except (TypeError, ValueError):
            # tf.keras cannot read its own ConvNeXt back (LayerScale is not registered): the
            # constructor make-keras-apps.py used, in a fresh session, names the layers alike.
            K.backend.clear_session()
            m = getattr(K.applications, ctor)(weights=None, input_shape=(small, small, 3),
                                              classes=10)
            want = [lc["config"]["name"] for lc in json.loads(text)["config"]["layers"]]
            if [layer.name for layer in m.layers] != want:
                raise SystemExit(f"{prefix}-{name}: the constructor names layers otherwise")
        shape = tuple(int(d) for d in m.input_shape[1:])
        ia, ib = input_scale(name)
        x = values("input", (N_INPUTS,) + shape, f32(ia), f32(ib), np.float32)
        recipe, last = set_recipe(m)
        feat_rms = calibrate_last(m, K, recipe, last, x)
        y = m.predict(x, verbose=0).reshape(N_INPUTS, -1).astype(np.float64)
        paths, layer_names, groups = h5_paths(m, recipe, prefix)
        digest = hashlib.sha256()
        variables = []
        for (layer, index, seed, w, a, b), path in zip(recipe, paths):
            data = np.asarray(w.numpy() if hasattr(w, "numpy") else w)
            digest.update(np.ascontiguousarray(data).tobytes())
            variables.append([path, seed, [int(d) for d in w.shape], a, b,
                              str(data.dtype)])
        doc = {
            "keras_version": version,
            "layout": prefix,
            "hash": "fnv1a64 seed, splitmix64 of seed + (i + 1) * golden; u = ((z >> 40) - 2^23) / 2^23",
            "input_shape": list(shape),
            "input": [f32(ia), f32(ib)],
            "sha256": digest.hexdigest(),
            "count_params": int(m.count_params()),
            # [h5 path, seed text, shape, a, b, dtype], in the model's layer order
            "variables": variables,
            "outputs": [[float(f"{v:.9g}") for v in row] for row in y],
        }
        if prefix == "keras2":
            doc["layer_names"] = layer_names
            doc["weight_names"] = {g: groups[g] for g in layer_names if groups[g]}
        base = os.path.join(outdir, f"{prefix}-{name}.predict.json.gz")
        # (mtime 0: a second run writes the same bytes.)
        with open(base, "wb") as raw, \
                gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=9, mtime=0) as z:
            z.write((json.dumps(doc, separators=(",", ":")) + "\n").encode("utf-8"))
        print(f"{prefix}-{name}: {len(variables)} variables, features rms {feat_rms:.3g}, "
              f"max p {y.max():.3f}, min p {y.min():.3g}, {os.path.getsize(base)} bytes",
              flush=True)
        K.backend.clear_session()


if __name__ == "__main__":
    main()
