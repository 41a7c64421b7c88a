#!/usr/bin/env python3
# Writes the Keras model files with weights that test-keras-weights reads, and what Keras
# predicts for them on a few fixed random inputs (weights-*.predict.json beside them).
# SPDX-License-Identifier: GPL-3.0-or-later
#
# Not part of the build: run by hand in a throwaway virtual environment, e.g.
#   python3 -m venv /tmp/kvenv && /tmp/kvenv/bin/pip install tensorflow-cpu tf-keras
#   /tmp/kvenv/bin/python tests/data/keras/make-keras-weights.py tests/data/keras
# tf_keras is Keras 2 (tf.keras' format); keras is Keras 3. For each model and each Keras:
#   weights-kerasN-NAME.json          the architecture (model.to_json ())
#   weights-keras2-NAME.h5            model.save (): model_config + model_weights (Keras 2)
#   weights-keras2-NAME-only.h5       model.save_weights () (Keras 2, weights only; MLP, CNN)
#   weights-keras3-NAME.keras         model.save (): config.json + model.weights.h5 (Keras 3)
#   weights-keras3-NAME.weights.h5    model.save_weights () (Keras 3; MLP, CNN)
#   weights-kerasN-NAME.predict.json  inputs (channels-last, flat) and model.predict () outputs
# The weights are random draws, not Keras' initial values (zero biases, unit gamma, zero
# mean, unit variance would hide a swapped or misplaced variable).
#
# With --check-export KILT_CLI (after the files exist), it checks Kilt's export instead:
# kilt-cli export writes each Keras 3 model's weights as a .weights.h5 and the model as a
# .keras, Keras loads them and must predict what it predicted before; and an MLP trained for an epoch in
# Kilt, exported from its checkpoint, must predict in Keras what kilt-cli predict prints.
import json
import os
import struct
import sys
import zlib

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np  # noqa: E402

N_INPUTS = 3
SAVE_WEIGHTS = ("mlp", "cnn")


def build_all(K):
    L = K.layers
    models = {}

    m = K.Sequential(name="mlp")
    m.add(L.Input(shape=(20,)))
    m.add(L.Dense(16, activation="relu", name="hidden1"))
    m.add(L.Dropout(0.3))
    m.add(L.Dense(8, activation="tanh", name="hidden2"))
    m.add(L.Dense(4, activation="softmax", name="out"))
    models["mlp"] = m

    # Conv2D + BatchNormalization + a Dense after a Flatten of a multi-channel image: Keras
    # flattens (h, w, c), Kilt (c, h, w).
    m = K.Sequential(name="cnn")
    m.add(L.Input(shape=(10, 10, 3)))
    m.add(L.Conv2D(6, 3, padding="same", activation="relu"))
    m.add(L.BatchNormalization())
    m.add(L.MaxPooling2D(2))
    m.add(L.Conv2D(8, 3, use_bias=False))
    m.add(L.BatchNormalization(momentum=0.9, epsilon=1e-5))
    m.add(L.Activation("relu"))
    m.add(L.Flatten())
    m.add(L.Dense(12, activation="relu"))
    m.add(L.Dropout(0.5))
    m.add(L.Dense(5, activation="softmax"))
    models["cnn"] = m

    # Functional: a residual block, a strided 1x1 projection, a Concatenate of a pooled
    # vector and a flattened image, and a BatchNormalization of that vector.
    x_in = L.Input(shape=(8, 8, 4), name="image")
    x = L.Conv2D(8, 3, padding="same", name="stem")(x_in)
    x = L.BatchNormalization(name="stem_bn")(x)
    x = L.ReLU()(x)
    y = L.Conv2D(8, 3, padding="same")(x)
    y = L.BatchNormalization()(y)
    y = L.LeakyReLU(0.1)(y)
    y = L.Conv2D(8, 3, padding="same")(y)
    x = L.Add()([x, y])
    x = L.Activation("relu")(x)
    x = L.Conv2D(6, 1, strides=2, activation="tanh")(x)
    g = L.GlobalAveragePooling2D()(x)
    f = L.Flatten()(L.MaxPooling2D(2)(x))
    x = L.Concatenate()([g, f])
    x = L.Dense(10)(x)
    x = L.BatchNormalization()(x)
    x = L.Activation("sigmoid")(x)
    x = L.Dense(3)(x)
    x = L.Softmax()(x)
    models["residual"] = K.Model(x_in, x, name="residual")

    # BatchNormalization without beta (center) and without gamma (scale): Keras leaves the
    # variable out of the file.
    m = K.Sequential(name="bn_options")
    m.add(L.Input(shape=(6, 6, 2)))
    m.add(L.Conv2D(4, 3))
    m.add(L.BatchNormalization(center=False))
    m.add(L.BatchNormalization(scale=False))
    m.add(L.Flatten())
    m.add(L.Dense(3, activation="softmax"))
    models["bn_options"] = m

    # DepthwiseConv2D (depth_multiplier 2, with and without bias) after an adapted
    # Normalization, whose mean, variance and count are weights in both Kerases.
    norm = L.Normalization()
    norm.adapt(np.random.default_rng(3).normal(0.5, 2.0, (64, 8, 8, 3)).astype(np.float32))
    m = K.Sequential(name="depthwise")
    m.add(L.Input(shape=(8, 8, 3)))
    m.add(norm)
    m.add(L.DepthwiseConv2D(3, depth_multiplier=2, padding="same"))
    m.add(L.BatchNormalization())
    m.add(L.ReLU())
    m.add(L.DepthwiseConv2D(3, use_bias=False))
    m.add(L.Flatten())
    m.add(L.Dense(4, activation="softmax"))
    models["depthwise"] = m

    # Conv2D with dilation_rate and groups (issue 11): the kernel is (kh, kw, C / groups, F).
    m = K.Sequential(name="conv_groups")
    m.add(L.Input(shape=(9, 9, 4)))
    m.add(L.Conv2D(6, 3, padding="same", dilation_rate=2, groups=2, activation="relu"))
    m.add(L.Conv2D(4, (2, 3), dilation_rate=(2, 1), groups=2, use_bias=False))
    m.add(L.Conv2D(6, 1, groups=2, activation="tanh"))
    m.add(L.Flatten())
    m.add(L.Dense(3, activation="softmax"))
    models["conv_groups"] = m

    # Conv2DTranspose: strides above the kernel size (gaps), same and valid padding, an
    # activation it does not fuse (swish: an Activation node after it in Kilt).
    m = K.Sequential(name="conv_transpose")
    m.add(L.Input(shape=(3, 4, 2)))
    m.add(L.Conv2DTranspose(3, 2, strides=3, activation="tanh"))
    m.add(L.Conv2DTranspose(4, 3, strides=2, padding="same", activation="relu"))
    m.add(L.Conv2DTranspose(2, (2, 3), use_bias=False, activation="swish"))
    m.add(L.Flatten())
    m.add(L.Dense(3, activation="softmax"))
    models["conv_transpose"] = m

    # 1-D layers on a (steps, channels) input: Conv1D with causal padding and dilation, strides
    # and groups, the 1-D poolings, BatchNormalization over the channels, and a Flatten of a
    # sequence (Keras flattens steps-major) before the Dense.
    x_in = L.Input(shape=(20, 3), name="series")
    a = L.Conv1D(4, 3, padding="causal", dilation_rate=2, activation="relu", name="causal")(x_in)
    a = L.BatchNormalization(name="bn")(a)
    a = L.MaxPooling1D(2, name="max")(a)
    a = L.Conv1D(6, 3, strides=2, padding="same", groups=2, name="strided")(a)
    b = L.AveragePooling1D(3, strides=1, padding="same", name="avg")(a)
    b = L.Conv1D(4, 2, use_bias=False, activation="tanh", name="valid")(b)
    g1 = L.GlobalMaxPooling1D(name="gmax")(b)
    g2 = L.GlobalAveragePooling1D(name="gavg")(a)
    f = L.Flatten(name="flat")(b)
    x = L.Concatenate(name="cat")([g1, g2, f])
    x = L.Dense(3, activation="softmax", name="out")(x)
    models["conv1d"] = K.Model(x_in, x, name="conv1d")

    # UpSampling2D bilinear (TensorFlow's resize, half-pixel centres) and Permute of an image
    # (its Flatten then sees Keras' order of the permuted tensor).
    m = K.Sequential(name="permute_bilinear")
    m.add(L.Input(shape=(4, 5, 3)))
    m.add(L.UpSampling2D((2, 3), interpolation="bilinear"))
    m.add(L.Conv2D(4, 3, activation="relu"))
    m.add(L.Permute((3, 1, 2)))
    m.add(L.UpSampling2D((3, 1), interpolation="bilinear"))
    m.add(L.Conv2D(3, 2))
    m.add(L.Permute((2, 1, 3)))
    m.add(L.Flatten())
    m.add(L.Dense(3, activation="softmax"))
    models["permute_bilinear"] = m

    # Permute of a sequence: (steps, channels) to (channels, steps).
    m = K.Sequential(name="permute_seq")
    m.add(L.Input(shape=(6, 4)))
    m.add(L.Permute((2, 1)))
    m.add(L.Conv1D(3, 2, activation="tanh"))
    m.add(L.Flatten())
    m.add(L.Dense(3, activation="softmax"))
    models["permute_seq"] = m

    # Embedding: ids (steps,) to the sequence (steps, output_dim), then a text classifier's
    # average over the steps; and Conv1D + Flatten after it (Keras flattens steps-major).
    m = K.Sequential(name="embedding")
    m.add(L.Input(shape=(12,)))
    m.add(L.Embedding(50, 8))
    m.add(L.GlobalAveragePooling1D())
    m.add(L.Dense(3, activation="softmax"))
    models["embedding"] = m
    m = K.Sequential(name="embedding_conv")
    m.add(L.Input(shape=(9,)))
    m.add(L.Embedding(30, 4))
    m.add(L.Conv1D(5, 3, activation="relu"))
    m.add(L.Flatten())
    m.add(L.Dense(3, activation="softmax"))
    models["embedding_conv"] = m

    # ConvNeXt's pieces: Dense on an image (applied at every pixel: Kilt's 1x1 Conv2D) and
    # LayerScale (a learned per-channel gamma) on a residual branch. LayerScale is the
    # application's own class, not in keras.layers.
    layer_scale = layer_scale_class(K)
    if layer_scale is not None:
        x_in = L.Input(shape=(5, 4, 6), name="image")
        x = L.Dense(8, name="pw_1")(x_in)
        x = L.Activation("gelu", name="gelu")(x)
        x = L.Dense(6, name="pw_2")(x)
        x = layer_scale(1e-6, 6, name="scale")(x)
        x = L.Add(name="add")([x_in, x])
        x = L.GlobalAveragePooling2D(name="gap")(x)
        x = L.Dense(3, activation="softmax", name="out")(x)
        models["layer_scale"] = K.Model(x_in, x, name="layer_scale")

    # Nested models (Keras 3's weights files keep a nested model's layers in groups under
    # the model's own, layers/functional/layers/sequential/layers/conv2d; Keras 2's .h5 puts
    # all of them in the top-level model's group, base/conv/kernel:0): a Sequential inside a
    # functional base inside a Sequential, a residual across the nesting, and a name ("conv")
    # at two depths, which Kilt gives as "inner/conv" and "conv".
    if True:
        inner = K.Sequential([L.Input((6, 6, 3)), L.Conv2D(4, 3, padding="same", name="conv"),
                              L.BatchNormalization(name="bn")], name="inner")
        b_in = L.Input((6, 6, 3), name="base_in")
        x = L.ReLU(name="relu")(inner(b_in))
        x = L.Conv2D(3, 1, name="proj")(x)
        base = K.Model(b_in, L.Add(name="res")([x, b_in]), name="base")
        models["nested"] = K.Sequential(
            [L.Input((6, 6, 3)), base, L.Conv2D(2, 3, name="conv"), L.Flatten(name="flat"),
             L.Dense(3, activation="softmax", name="out")], name="nested")
    # (Last, so the models above keep their seeds.)
    # Recurrent layers on sequences (steps, features): LSTM and GRU (reset_after true, Keras 3's
    # and tf2's default, and false) returning the last state, and a stack that returns every
    # step's (after a Conv1D, going backwards, with hard_sigmoid gates: Keras 2's and 3's
    # hard_sigmoid differ, each file its own).
    m = K.Sequential(name="lstm")
    m.add(L.Input(shape=(7, 5)))
    m.add(L.LSTM(6, name="lstm"))
    m.add(L.Dense(3, activation="softmax"))
    models["lstm"] = m
    m = K.Sequential(name="gru")
    m.add(L.Input(shape=(7, 5)))
    m.add(L.GRU(5, name="gru"))
    m.add(L.Dense(3, activation="softmax"))
    models["gru"] = m
    m = K.Sequential(name="gru_reset_before")
    m.add(L.Input(shape=(6, 3)))
    m.add(L.GRU(4, reset_after=False, go_backwards=True, name="gru"))
    m.add(L.Dense(2, activation="softmax"))
    models["gru_reset_before"] = m
    m = K.Sequential(name="rnn_stack")
    m.add(L.Input(shape=(9, 4)))
    m.add(L.Conv1D(6, 3, activation="relu"))
    m.add(L.LSTM(5, return_sequences=True, name="lstm_seq"))
    m.add(L.GRU(3, return_sequences=True, go_backwards=True, recurrent_activation="hard_sigmoid",
                name="gru_seq"))
    m.add(L.LSTM(4, use_bias=False, name="lstm_last"))
    m.add(L.Dense(3, activation="softmax"))
    models["rnn_stack"] = m
    # Bidirectional: concatenated halves returning every step, then summed last states.
    m = K.Sequential(name="bidirectional")
    m.add(L.Input(shape=(6, 3)))
    m.add(L.Bidirectional(L.LSTM(4, return_sequences=True), name="bi_lstm"))
    m.add(L.Bidirectional(L.GRU(3), merge_mode="sum", name="bi_gru"))
    m.add(L.Dense(2, activation="softmax"))
    models["bidirectional"] = m
    # Masks: Embedding(mask_zero) before an LSTM giving every step, averaged over the kept
    # steps; before Dropout and a GRU giving its last state; before Bidirectional LSTM and a
    # reset-before GRU. Their inputs are padded (PADDED below), not random ids.
    m = K.Sequential(name="masked_lstm")
    m.add(L.Input(shape=(8,)))
    m.add(L.Embedding(12, 5, mask_zero=True))
    m.add(L.LSTM(4, return_sequences=True, name="lstm"))
    m.add(L.GlobalAveragePooling1D())
    m.add(L.Dense(3, activation="softmax"))
    models["masked_lstm"] = m
    m = K.Sequential(name="masked_gru")
    m.add(L.Input(shape=(8,)))
    m.add(L.Embedding(12, 4, mask_zero=True))
    m.add(L.Dropout(0.3))
    m.add(L.GRU(5, name="gru"))
    m.add(L.Dense(3, activation="softmax"))
    models["masked_gru"] = m
    m = K.Sequential(name="masked_bidirectional")
    m.add(L.Input(shape=(8,)))
    m.add(L.Embedding(12, 4, mask_zero=True))
    m.add(L.Bidirectional(L.LSTM(3, return_sequences=True), name="bi_lstm"))
    m.add(L.Bidirectional(L.GRU(3, reset_after=False), name="bi_gru"))
    m.add(L.Dense(2, activation="softmax"))
    models["masked_bidirectional"] = m
    # Masking on float sequences: mask_value 0 before an LSTM giving its last state; 0.5
    # before Dropout, a Bidirectional GRU giving every step and the mean over the kept steps.
    m = K.Sequential(name="masking_lstm")
    m.add(L.Input(shape=(7, 3)))
    m.add(L.Masking(0.0))
    m.add(L.LSTM(4, name="lstm"))
    m.add(L.Dense(3, activation="softmax"))
    models["masking_lstm"] = m
    m = K.Sequential(name="masking_bi_mean")
    m.add(L.Input(shape=(7, 3)))
    m.add(L.Masking(0.5))
    m.add(L.Dropout(0.2))
    m.add(L.Bidirectional(L.GRU(3, return_sequences=True), name="bi_gru"))
    m.add(L.GlobalAveragePooling1D())
    m.add(L.Dense(2, activation="softmax"))
    models["masking_bi_mean"] = m

    # The layers with weights of Xception, NASNet and ConvNeXt that the others lack:
    # SeparableConv2D (two Kilt nodes, one Keras group of three variables; with a depth
    # multiplier, and without a bias), LayerNormalization (and without beta), and a
    # Normalization of constants (no variables at all).
    m = K.Sequential(name="separable_norms")
    m.add(L.Input(shape=(9, 9, 3)))
    m.add(L.Normalization(mean=[0.2, 0.5, -0.1], variance=[0.5, 2.0, 1.5]))
    m.add(L.SeparableConv2D(5, 3, depth_multiplier=2, padding="same", activation="relu"))
    m.add(L.LayerNormalization(epsilon=1e-3))
    m.add(L.SeparableConv2D(4, 3, strides=2, use_bias=False))
    m.add(L.LayerNormalization(center=False))
    m.add(L.GlobalAveragePooling2D())
    m.add(L.Dense(3, activation="softmax"))
    models["separable_norms"] = m

    # tf.keras names DenseNet's layers "conv1/conv": h5py keeps them as group conv in group
    # conv1. Keras 3 refuses a slash in a name.
    if not str(getattr(K, "__version__", "")).startswith("3"):
        x_in = L.Input(shape=(6,))
        x = L.Dense(5, activation="relu", name="block1/dense")(x_in)
        x = L.BatchNormalization(name="block1/bn")(x)
        x = L.Dense(3, activation="softmax", name="out")(x)
        models["slash_names"] = K.Model(x_in, x, name="slash_names")
    return models


# Padded id sequences (0 is padding) for the masked models: right-padded, left-padded, none,
# one real step, holes, the first row again left-padded (which must predict the same), and,
# where no mean over the kept steps divides by zero, every step padding.
PADDED = [[3, 5, 1, 7, 0, 0, 0, 0], [0, 0, 0, 4, 9, 2, 11, 6], [2, 8, 3, 5, 1, 6, 4, 9],
          [7, 0, 0, 0, 0, 0, 0, 0], [0, 3, 0, 6, 0, 0, 2, 0], [0, 0, 0, 0, 3, 5, 1, 7]]
PADDED_EMPTY = [0] * 8


def layer_scale_class(K):
    import importlib
    for module in (K.__name__ + ".src.applications.convnext",):
        try:
            return importlib.import_module(module).LayerScale
        except (ImportError, AttributeError):
            pass
    return None


def randomize(model, rng):
    for layer in model.layers:
        ws = layer.get_weights()
        if not ws:
            continue
        names = [w.name.split("/")[-1].split(":")[0] for w in layer.weights]
        new = []
        for name, w in zip(names, ws):
            if name == "count":  # Normalization's sample count: Kilt keeps, never uses it
                new.append(w)
            elif "variance" in name:
                new.append(rng.uniform(0.5, 1.5, w.shape).astype(np.float32))
            elif "embeddings" in name:  # a trained table: rows far apart, not +-0.05
                new.append(rng.standard_normal(w.shape).astype(np.float32))
            elif "gamma" in name:
                new.append(rng.uniform(0.5, 1.5, w.shape).astype(np.float32))
            else:
                fan = max(1, int(np.prod(w.shape[:-1])))
                new.append((rng.standard_normal(w.shape) / np.sqrt(fan)).astype(np.float32))
        layer.set_weights(new)
        # Normalization computes with statistics it derives from its weights after adapt ();
        # load_model derives them again, so predict () must see the new ones too.
        if layer.__class__.__name__ == "Normalization":
            layer.finalize_state()


def masked_sequences(model, rng):
    """Random (7, 3) sequences whose masked steps hold mask_value in every feature: padding
    after, before, holes, one step kept, and (without a mean after) none kept; kept steps
    hold mask_value in some features too, which keeps them."""
    value = model.layers[0].mask_value
    x = rng.uniform(-1, 1, (5, 7, 3)).astype(np.float32)
    x[:, ::2, 1] = value
    kept = [[1, 1, 1, 1, 0, 0, 0], [0, 0, 1, 1, 1, 1, 1], [1, 0, 1, 0, 0, 1, 0],
            [0, 0, 0, 1, 0, 0, 0], [0, 0, 0, 0, 0, 0, 0]]
    for i, k in enumerate(kept):
        for t, on in enumerate(k):
            if not on:
                x[i, t, :] = value
    return x if model.name == "masking_lstm" else x[:4]


def predictions(model, rng):
    shape = tuple(model.input_shape[1:])
    first = model.layers[0]
    if model.name.startswith("masking"):
        x = masked_sequences(model, rng)
    elif model.name.startswith("masked"):
        rows = PADDED + ([] if model.name == "masked_lstm" else [PADDED_EMPTY])
        x = np.array(rows, np.float32)
    elif first.__class__.__name__ == "Embedding":
        # Ids, each row of the table likely more than once.
        x = rng.integers(0, first.input_dim, (N_INPUTS,) + shape).astype(np.float32)
    else:
        x = rng.uniform(-1, 1, (N_INPUTS,) + shape).astype(np.float32)
    y = model.predict(x, verbose=0)
    return {"input_shape": list(shape), "inputs": [[float(v) for v in s.ravel()] for s in x],
            "outputs": [[float(v) for v in s.ravel()] for s in y]}


def write_png(path, rgb):
    """An 8-bit RGB PNG of an (h, w, 3) uint8 array, without an imaging library."""
    h, w, _ = rgb.shape
    raw = b"".join(b"\0" + rgb[y].tobytes() for y in range(h))

    def chunk(kind, data):
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
                + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


def image_predictions(m, rng, base):
    """Two random images as PNG files and Keras' predictions on them scaled by 1/255, for
    kilt-cli predict (which decodes, scales and reorders them to channels first)."""
    shape = tuple(m.input_shape[1:])
    imgs = rng.integers(0, 256, (2,) + shape, dtype=np.uint8)
    names = []
    for i, img in enumerate(imgs):
        name = f"{os.path.basename(base)}-{i}.png"
        write_png(os.path.join(os.path.dirname(base), name), img)
        names.append(name)
    y = m.predict(imgs.astype(np.float32) / 255, verbose=0)
    return {"images": names, "outputs": [[float(v) for v in s.ravel()] for s in y]}


def dump(K, prefix, outdir, seed, only=None):
    for i, (name, m) in enumerate(build_all(K).items()):
        if only and name not in only:
            continue
        rng = np.random.default_rng(seed + i)
        randomize(m, rng)
        base = os.path.join(outdir, f"weights-{prefix}-{name}")
        with open(base + ".json", "w") as f:
            f.write(m.to_json())
            f.write("\n")
        # save_weights files only for two models: the layout is the same as inside the whole
        # files, and each HDF5 file costs tens of KB of structure.
        if prefix == "keras2":
            m.save(base + ".h5")
            if name in SAVE_WEIGHTS:
                m.save_weights(base + "-only.h5")
        else:
            m.save(base + ".keras")
            if name in SAVE_WEIGHTS:
                m.save_weights(base + ".weights.h5")
        pred = predictions(m, rng)
        if prefix == "keras3" and name == "cnn":
            pred["image_inputs"] = image_predictions(m, rng, base)
        pred["keras_version"] = getattr(K, "__version__", None) or __import__("keras").__version__
        pred["count_params"] = int(m.count_params())
        with open(base + ".predict.json", "w") as f:
            json.dump(pred, f, separators=(",", ":"))
            f.write("\n")
        # The files read back by Keras itself give the same predictions.
        again = K.models.load_model(base + (".h5" if prefix == "keras2" else ".keras"))
        n = len(pred["inputs"])
        x = np.array(pred["inputs"], np.float32).reshape((n,) + tuple(pred["input_shape"]))
        assert np.allclose(again.predict(x, verbose=0).reshape(n, -1),
                           np.array(pred["outputs"]), atol=1e-6), base


def check_export(cli, outdir):
    import subprocess
    import tempfile
    import keras as K
    tmp = tempfile.mkdtemp()
    worst = 0.0
    for name in ("mlp", "cnn", "residual", "bn_options", "depthwise", "embedding_conv", "lstm",
                 "gru", "gru_reset_before", "rnn_stack", "bidirectional", "masked_lstm",
                 "masked_gru", "masked_bidirectional", "masking_lstm", "masking_bi_mean", "nested"):
        base = os.path.join(outdir, f"weights-keras3-{name}")
        out = os.path.join(tmp, f"{name}.weights.h5")
        subprocess.run([cli, "export", "--model", base + ".keras", "--output", out], check=True)
        with open(base + ".json") as f:
            m = K.models.model_from_json(f.read())
        m.load_weights(out)
        with open(base + ".predict.json") as f:
            pred = json.load(f)
        x = np.array(pred["inputs"], np.float32).reshape((-1,) + tuple(pred["input_shape"]))
        d = float(np.abs(m.predict(x, verbose=0).reshape(len(x), -1) - np.array(pred["outputs"])).max())
        print(f"export {name}: Keras on Kilt's export, max abs difference {d:.3g}")
        worst = max(worst, d)
        # The whole model as a .keras archive, read by keras.saving.load_model.
        arch = os.path.join(tmp, f"{name}.keras")
        subprocess.run([cli, "export", "--model", base + ".keras", "--output", arch], check=True)
        m = K.saving.load_model(arch)
        d = float(np.abs(m.predict(x, verbose=0).reshape(len(x), -1) - np.array(pred["outputs"])).max())
        print(f"export {name}.keras: keras.saving.load_model, max abs difference {d:.3g}")
        worst = max(worst, d)
    # tf.keras' nested model (its .h5 keeps every inner layer in the base's group) leaves Kilt
    # in Keras 3's layout: Keras 3's build of the same architecture loads it and predicts what
    # tf.keras did.
    out = os.path.join(tmp, "k2-nested.weights.h5")
    subprocess.run([cli, "export", "--model", os.path.join(outdir, "weights-keras2-nested.h5"),
                    "--output", out], check=True)
    with open(os.path.join(outdir, "weights-keras3-nested.json")) as f:
        m = K.models.model_from_json(f.read())
    m.load_weights(out)
    with open(os.path.join(outdir, "weights-keras2-nested.predict.json")) as f:
        pred = json.load(f)
    x = np.array(pred["inputs"], np.float32).reshape((-1,) + tuple(pred["input_shape"]))
    d = float(np.abs(m.predict(x, verbose=0).reshape(len(x), -1) - np.array(pred["outputs"])).max())
    print(f"export of tf.keras' nested model, loaded by Keras 3: max abs difference {d:.3g}")
    worst = max(worst, d)
    # A model trained in Kilt leaves it: train the MLP an epoch from its Keras weights.
    base = os.path.join(outdir, "weights-keras3-mlp")
    rng = np.random.default_rng(5)
    rows = rng.uniform(-1, 1, (64, 20)).astype(np.float32)
    csv = os.path.join(tmp, "train.csv")
    with open(csv, "w") as f:
        f.write(",".join(f"x{i}" for i in range(20)) + ",label\n")
        for i, r in enumerate(rows):
            f.write(",".join(f"{v:.6f}" for v in r) + f",c{i % 4}\n")
    ck = os.path.join(tmp, "mlp.ckpt")
    env = dict(os.environ, XDG_DATA_HOME=tmp, XDG_CONFIG_HOME=tmp)
    subprocess.run([cli, "train", "--model", base + ".keras", "--data", csv, "--epochs", "1",
                    "--lr", "0.05", "-o", "sgd", "--checkpoint", ck], check=True, env=env,
                   stdout=subprocess.DEVNULL)
    out = os.path.join(tmp, "trained.weights.h5")
    subprocess.run([cli, "export", "--model", base + ".json", "--checkpoint", ck, "--output", out],
                   check=True)
    inputs = os.path.join(tmp, "inputs.csv")
    with open(inputs, "w") as f:
        for r in rows[:5]:
            f.write(",".join(f"{v:.9g}" for v in r) + "\n")
    kilt = subprocess.run([cli, "predict", "--json", "--model", base + ".json", "--checkpoint",
                           ck, inputs], check=True, capture_output=True, text=True).stdout
    kilt_y = np.array([json.loads(l)["scores"] for l in kilt.splitlines() if l.strip()])
    with open(base + ".json") as f:
        m = K.models.model_from_json(f.read())
    m.load_weights(out)
    keras_y = m.predict(np.array([[float(v) for v in l.split(",")] for l in open(inputs)],
                                 np.float32), verbose=0)
    before = np.array(json.load(open(base + ".predict.json"))["outputs"])
    d = float(np.abs(keras_y - kilt_y).max())
    print(f"export of a Kilt-trained MLP: Keras vs kilt-cli predict, max abs difference {d:.3g}")
    worst = max(worst, d)
    assert worst < 1e-4, worst
    # Training moved the weights: Keras' predictions are not those of the untrained model.
    m0 = K.models.load_model(base + ".keras")
    moved = float(np.abs(m0.predict(rows[:5], verbose=0) - keras_y).max())
    print(f"training moved the outputs by up to {moved:.3g}")
    assert moved > 1e-3 and before.shape[1] == keras_y.shape[1]


def main():
    if len(sys.argv) > 2 and sys.argv[1] == "--check-export":
        outdir = sys.argv[3] if len(sys.argv) > 3 else os.path.dirname(os.path.abspath(__file__))
        check_export(sys.argv[2], outdir)
        return
    # --only NAME,NAME writes those models alone (the others' .keras archives would change by
    # their timestamps only).
    only = None
    if len(sys.argv) > 2 and sys.argv[1] == "--only":
        only = sys.argv[2].split(",")
        del sys.argv[1:3]
    # --keras 2 or 3 writes one generation (each may live in its own environment: Keras 2 is
    # tf_keras, or keras itself under TensorFlow 2.15).
    which = ("2", "3")
    if len(sys.argv) > 2 and sys.argv[1] == "--keras":
        which = (sys.argv[2],)
        del sys.argv[1:3]
    outdir = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__))
    # Keras 2 is tf_keras beside TensorFlow 2.16 on, or TensorFlow 2.15's own tf.keras; Keras 3
    # is keras from 3.0 on. Either may be missing from the environment: each writes its files.
    k2 = None
    if "2" in which:
        try:
            import tf_keras as k2
        except ImportError:
            try:
                import tensorflow as tf
                k2 = tf.keras if tf.__version__.startswith("2.15") else None
            except ImportError:
                k2 = None
    if k2 is not None:
        k2.__version__ = getattr(k2, "__version__", None) or __import__("keras").__version__
        dump(k2, "keras2", outdir, 1000, only)
    import keras as k3
    if "3" in which and int(k3.__version__.split(".")[0]) >= 3:
        dump(k3, "keras3", outdir, 2000, only)


if __name__ == "__main__":
    main()
