#!/usr/bin/env python3
# The PlaidML peer for kilt-cli bench: Keras 2.2.4's cifar10_cnn (the model and optimizer of
# the article Kilt's speed goal comes from) on PlaidML 0.7, synthetic data in memory,
# model.train_on_batch timed after warm-up steps; one JSON line per (device, batch) with
# bench/torch_peer.py's keys. See bench/results/plaidml.md for the setup (Python 3.7 venv).
# SPDX-License-Identifier: GPL-3.0-or-later
#
# Devices (--device, several allowed):
#   llvm    PlaidML's own CPU backend ("llvm_cpu.0": Tile compiled by LLVM, no OpenCL)
#   opencl  PoCL through the OpenCL ICD loader. PlaidML 0.7 drops OpenCL devices whose type is
#           CPU and knows no hardware settings for PoCL, so this mode (1) builds a small
#           library named libOpenCL.so that forwards to the system's ICD loader and reports the
#           device's type as GPU, and loads it before PlaidML dlopens libOpenCL.so, and (2)
#           writes a PlaidML config with one hardware entry for PoCL (--threads etc. below).
import argparse, ctypes, json, os, subprocess, sys, tempfile, time

CACHE = os.path.join(os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")),
                     "kilt-plaidml-peer")

SHIM_C = r"""
/* Forwards to the system's OpenCL ICD loader; reports CPU devices as GPUs for PlaidML 0.7. */
#define CL_TARGET_OPENCL_VERSION 120
#include <CL/cl.h>
#include <dlfcn.h>
static void *real (const char *name)
{
  static void *lib;
  if (!lib)
    lib = dlopen ("libOpenCL.so.1", RTLD_NOW | RTLD_LOCAL);
  return lib ? dlsym (lib, name) : 0;
}
cl_int clGetDeviceInfo (cl_device_id d, cl_device_info p, size_t n, void *v, size_t *r)
{
  cl_int (*f) (cl_device_id, cl_device_info, size_t, void *, size_t *) = real ("clGetDeviceInfo");
  cl_int e = f (d, p, n, v, r);
  if (e == CL_SUCCESS && p == CL_DEVICE_TYPE && v && n >= sizeof (cl_device_type))
    *(cl_device_type *) v = CL_DEVICE_TYPE_GPU;
  return e;
}
"""


def load_shim():
    # The other cl* symbols resolve through the shim's dependency on libOpenCL.so.1 (dlsym on
    # a handle searches its dependencies); its soname makes PlaidML's dlopen("libOpenCL.so")
    # return this already-loaded library.
    os.makedirs(CACHE, exist_ok=True)
    so = os.path.join(CACHE, "libOpenCL.so")
    src = os.path.join(CACHE, "shim.c")
    if not os.path.exists(so) or open(src).read() != SHIM_C:
        with open(src, "w") as f:
            f.write(SHIM_C)
        subprocess.check_call(["cc", "-shared", "-fPIC", "-O1", "-o", so, src,
                               "-Wl,-soname,libOpenCL.so", "-Wl,--no-as-needed",
                               "-l:libOpenCL.so.1", "-ldl"])
    ctypes.CDLL(so, mode=ctypes.RTLD_GLOBAL)


def write_config(a):
    # PlaidML's shipped config plus one hardware entry that matches PoCL's pthread device.
    import plaidml
    base = os.path.join(sys.prefix, "share", "plaidml", "config.json")
    cfg = json.load(open(base))
    settings = {"threads": a.threads, "vec_size": a.vec_size, "mem_width": a.mem_width,
                "max_mem": a.max_mem, "max_regs": a.max_regs, "goal_groups": a.goal_groups,
                "goal_flops_per_byte": a.goal_flops_per_byte}
    cfg["platform"]["hardware_configs"].append(
        {"description": "PoCL pthread (kilt bench)", "sel": {"name_regex": ".*pthread.*"},
         "settings": settings})
    path = os.path.join(CACHE, "plaidml-pocl.json")
    with open(path, "w") as f:
        json.dump(cfg, f, indent=1)
    return path, settings


def cifar10_cnn(keras):
    from keras.layers import Activation, Conv2D, Dense, Dropout, Flatten, MaxPooling2D
    m = keras.models.Sequential()
    m.add(Conv2D(32, (3, 3), padding="same", input_shape=(32, 32, 3)))
    m.add(Activation("relu"))
    m.add(Conv2D(32, (3, 3)))
    m.add(Activation("relu"))
    m.add(MaxPooling2D(pool_size=(2, 2)))
    m.add(Dropout(0.25))
    m.add(Conv2D(64, (3, 3), padding="same"))
    m.add(Activation("relu"))
    m.add(Conv2D(64, (3, 3)))
    m.add(Activation("relu"))
    m.add(MaxPooling2D(pool_size=(2, 2)))
    m.add(Dropout(0.25))
    m.add(Flatten())
    m.add(Dense(512))
    m.add(Activation("relu"))
    m.add(Dropout(0.5))
    m.add(Dense(10))
    m.add(Activation("softmax"))
    return m


def bench(keras, np, batch, steps, warmup):
    model = cifar10_cnn(keras)
    # The example's optimizer: RMSprop(lr=1e-4, decay=1e-6), rho 0.9, epsilon K.epsilon().
    opt = keras.optimizers.rmsprop(lr=0.0001, decay=1e-6)
    model.compile(loss="categorical_crossentropy", optimizer=opt, metrics=["accuracy"])
    rng = np.random.RandomState(1)
    n = max(steps, 1)
    x = rng.uniform(size=(n, batch, 32, 32, 3)).astype("float32")
    y = np.eye(10, dtype="float32")[rng.randint(0, 10, size=(n, batch))]
    t0 = time.perf_counter()
    for i in range(warmup):  # warm-up (and PlaidML's kernel compilation)
        model.train_on_batch(x[i % n], y[i % n])
    t_warm = time.perf_counter() - t0
    t0 = time.perf_counter()
    for i in range(steps):
        loss = model.train_on_batch(x[i], y[i])  # returns host values: the step is done
    dt = time.perf_counter() - t0
    return {"step_ms": dt * 1e3 / steps, "samples_per_s": steps * batch / dt,
            "warmup_s": t_warm, "loss": float(loss[0])}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", nargs="+", default=["llvm", "opencl"], choices=["llvm", "opencl"])
    ap.add_argument("--model", default="cifar10_cnn", choices=["cifar10_cnn"])
    ap.add_argument("--batch", type=int, nargs="+", default=[32])
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5)
    # Hardware settings for PoCL (PlaidML's names; the defaults are a guess, not tuned).
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--vec-size", type=int, default=1)
    ap.add_argument("--mem-width", type=int, default=64)
    ap.add_argument("--max-mem", type=int, default=32768)
    ap.add_argument("--max-regs", type=int, default=16384)
    ap.add_argument("--goal-groups", type=int, default=4)
    ap.add_argument("--goal-flops-per-byte", type=int, default=20)
    a = ap.parse_args()
    if len(a.device) > 1:  # one PlaidML device per process: run each in its own
        for d in a.device:
            subprocess.call([sys.executable, __file__, "--device", d] +
                            [arg for arg in sys.argv[1:] if arg not in a.device and arg != "--device"])
        return
    dev = a.device[0]
    extra = {}
    if dev == "opencl":
        load_shim()
        path, extra["hardware_settings"] = write_config(a)
        os.environ["PLAIDML_EXPERIMENTAL"] = "0"
        os.environ["PLAIDML_DEFAULT_CONFIG"] = path
        os.environ["PLAIDML_DEVICE_IDS"] = "opencl_authenticamd_pthread-haswell-amd_epyc.0"
    else:
        os.environ["PLAIDML_DEVICE_IDS"] = "llvm_cpu.0"
    os.environ["KERAS_BACKEND"] = "plaidml.keras.backend"
    import numpy as np
    import plaidml
    import plaidml.keras
    plaidml.keras.install_backend()
    import keras
    for batch in a.batch:
        r = {"peer": "plaidml", "plaidml": plaidml.__version__, "keras": keras.__version__,
             "mode": "train_on_batch", "model": a.model, "batch": batch, "steps": a.steps,
             "warmup": a.warmup, "device": os.environ["PLAIDML_DEVICE_IDS"]}
        try:
            r.update(bench(keras, np, batch, a.steps, a.warmup))
        except Exception as e:  # a device that cannot run here is reported, not fatal
            r["error"] = (str(e).splitlines() or [type(e).__name__])[0][:300]
        r.update(extra)
        print(json.dumps(r), flush=True)


if __name__ == "__main__":
    main()
