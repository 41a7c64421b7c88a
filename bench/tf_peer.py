#!/usr/bin/env python3
# The TensorFlow/Keras peer for kilt-cli bench: the models of bench/torch_peer.py built as
# Keras builds them (NHWC), Keras' RMSprop, synthetic data in memory, warm-up steps, then
# timed steps; one JSON line per (model, batch, mode) with torch_peer.py's keys.
# SPDX-License-Identifier: GPL-3.0-or-later
#
# Modes (each one a complete training step: forward, loss, backward, RMSprop update):
#   keras         model.train_on_batch after model.compile() with Keras' default
#                 jit_compile="auto", which Keras 3 resolves to no XLA on a machine without a
#                 GPU (TensorFlow's graph executor, oneDNN kernels)
#   keras_xla     the same with jit_compile=True (XLA's CPU backend)
#   function      a tf.function step written out (GradientTape + optimizer.apply_gradients)
#   function_xla  the same step with jit_compile=True
# Usage: tf_peer.py [--model cifar10_cnn] [--batch 32 ...] [--steps 30] [--warmup 20]
#                   [--modes ...] [--threads N]
import argparse, json, os, sys, time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep stdout/stderr to the JSON lines
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import tensorflow as tf
import keras
from keras import layers


def cifar10_cnn():
    # Keras' cifar10_cnn example: 'same' then 'valid' padding in each pair.
    return keras.Sequential([
        keras.Input((32, 32, 3)),
        layers.Conv2D(32, 3, padding="same", activation="relu"),
        layers.Conv2D(32, 3, activation="relu"),
        layers.MaxPooling2D(2), layers.Dropout(0.25),
        layers.Conv2D(64, 3, padding="same", activation="relu"),
        layers.Conv2D(64, 3, activation="relu"),
        layers.MaxPooling2D(2), layers.Dropout(0.25),
        layers.Flatten(), layers.Dense(512, activation="relu"), layers.Dropout(0.5),
        layers.Dense(10, activation="softmax")])


def mnist_cnn():
    return keras.Sequential([
        keras.Input((28, 28, 1)),
        layers.Conv2D(32, 3, activation="relu"), layers.Conv2D(64, 3, activation="relu"),
        layers.MaxPooling2D(2), layers.Dropout(0.25), layers.Flatten(),
        layers.Dense(128, activation="relu"), layers.Dropout(0.5),
        layers.Dense(10, activation="softmax")])


def mlp():
    # resources/presets/mlp.json (Keras' mnist_mlp) on 28x28x1.
    return keras.Sequential([
        keras.Input((28, 28, 1)), layers.Flatten(),
        layers.Dense(512, activation="relu"), layers.Dropout(0.2),
        layers.Dense(512, activation="relu"), layers.Dropout(0.2),
        layers.Dense(10, activation="softmax")])


MODELS = {"cifar10_cnn": (cifar10_cnn, (32, 32, 3)), "mnist_cnn": (mnist_cnn, (28, 28, 1)),
          "mlp": (mlp, (28, 28, 1))}
MODES = ("keras", "keras_xla", "function", "function_xla")


def keras_rmsprop():
    # Keras 2's RMSprop(lr=1e-4, decay=1e-6): lr_t = lr / (1 + decay t), rho 0.9. Keras 3 has
    # no 'decay' argument; InverseTimeDecay with decay_steps=1 gives the same lr_t. Keras 3
    # adds eps inside the square root (Keras 2: outside): the same work per step.
    lr = keras.optimizers.schedules.InverseTimeDecay(1e-4, decay_steps=1, decay_rate=1e-6)
    return keras.optimizers.RMSprop(learning_rate=lr, rho=0.9, epsilon=1e-7)


def bench(model_name, batch, steps, warmup, mode):
    make, shape = MODELS[model_name]
    keras.utils.set_random_seed(1)
    model = make()
    opt = keras_rmsprop()
    loss_fn = keras.losses.SparseCategoricalCrossentropy()
    n = max(steps, 1)
    x = tf.random.uniform((n, batch) + shape, dtype=tf.float32)
    y = tf.random.uniform((n, batch), maxval=10, dtype=tf.int32)
    xs = [x[i] for i in range(n)]  # slice once: the step, not the slicing, is timed
    ys = [y[i] for i in range(n)]

    if mode.startswith("keras"):
        model.compile(optimizer=opt, loss=loss_fn,
                      jit_compile="auto" if mode == "keras" else True)
        jit = bool(model.jit_compile)

        def fn(xb, yb):
            return model.train_on_batch(xb, yb)
    else:
        jit = mode == "function_xla"

        @tf.function(jit_compile=jit)
        def fn(xb, yb):
            with tf.GradientTape() as tape:
                loss = loss_fn(yb, model(xb, training=True))
            grads = tape.gradient(loss, model.trainable_variables)
            opt.apply_gradients(zip(grads, model.trainable_variables))
            return loss

    for i in range(warmup):  # warm-up (and tracing / XLA compilation)
        fn(xs[i % n], ys[i % n])
    t0 = time.perf_counter()
    for i in range(steps):
        loss = fn(xs[i], ys[i])
    float(loss)  # the last step's result is on the host: all steps done
    dt = time.perf_counter() - t0
    return {"peer": "tensorflow", "tensorflow": tf.__version__, "keras": keras.__version__,
            "mode": mode, "jit": jit, "model": model_name, "batch": batch, "steps": steps,
            "warmup": warmup, "step_ms": dt * 1e3 / steps, "samples_per_s": steps * batch / dt,
            "device": "cpu", "loss": float(loss)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="cifar10_cnn", choices=sorted(MODELS))
    ap.add_argument("--batch", type=int, nargs="+", default=[32])
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--modes", nargs="+", default=["keras", "function"], choices=MODES)
    ap.add_argument("--threads", type=int, default=0,
                    help="intra-op threads (0: TensorFlow's default, one per core)")
    a = ap.parse_args()
    tf.config.set_visible_devices([], "GPU")
    if a.threads:
        tf.config.threading.set_intra_op_parallelism_threads(a.threads)
    threads = {"intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
               "inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads(),
               "cores": os.cpu_count(),
               "onednn": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "default")}
    for batch in a.batch:
        for mode in a.modes:
            try:
                r = bench(a.model, batch, a.steps, a.warmup, mode)
            except Exception as e:  # a mode that cannot run here is reported, not fatal
                r = {"peer": "tensorflow", "mode": mode, "model": a.model, "batch": batch,
                     "error": str(e).splitlines()[0][:200] if str(e) else type(e).__name__}
            r.update(threads)
            print(json.dumps(r), flush=True)


if __name__ == "__main__":
    main()
