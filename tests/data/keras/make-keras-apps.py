#!/usr/bin/env python3
# Writes every keras.applications network (weights=None) at a small input as model.to_json(),
# with Keras' own parameter counts and per-layer output shapes beside it, gzip-compressed into
# tests/data/keras/apps/ for test-keras's /keras/applications (issue 11: every application of
# Keras 3 and of tf.keras 2.15 must import with Keras' counts and shapes).
# SPDX-License-Identifier: GPL-3.0-or-later
#
# Not part of the build: run by hand, once per Keras, in throwaway virtual environments:
#   python3 -m venv /tmp/k3 && /tmp/k3/bin/pip install keras jax scipy h5py
#   KERAS_BACKEND=jax /tmp/k3/bin/python tests/data/keras/make-keras-apps.py keras3
#   python3 -m venv /tmp/tf215 && /tmp/tf215/bin/pip install tensorflow-cpu==2.15.1
#   /tmp/tf215/bin/python tests/data/keras/make-keras-apps.py keras2
# With --size default instead of the small sizes, it writes the default-size files to the
# directory given after it (for a check by hand: they are too big to commit).
import gzip
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, here)
from importlib import import_module  # noqa: E402

counts = import_module("make-keras-json").counts

# name: (constructor, the smallest input Keras accepts without weights, the default input)
APPS = {
    "vgg16": ("VGG16", 32, 224), "vgg19": ("VGG19", 32, 224),
    "resnet50": ("ResNet50", 32, 224), "resnet101": ("ResNet101", 32, 224),
    "resnet152": ("ResNet152", 32, 224), "resnet50v2": ("ResNet50V2", 32, 224),
    "resnet101v2": ("ResNet101V2", 32, 224), "resnet152v2": ("ResNet152V2", 32, 224),
    "inceptionv3": ("InceptionV3", 75, 299), "inceptionresnetv2": ("InceptionResNetV2", 75, 299),
    "xception": ("Xception", 71, 299), "mobilenet": ("MobileNet", 32, 224),
    "mobilenetv2": ("MobileNetV2", 32, 224), "mobilenetv3small": ("MobileNetV3Small", 32, 224),
    "mobilenetv3large": ("MobileNetV3Large", 32, 224), "densenet121": ("DenseNet121", 32, 224),
    "densenet169": ("DenseNet169", 32, 224), "densenet201": ("DenseNet201", 32, 224),
    "nasnetmobile": ("NASNetMobile", 32, 224),
    "efficientnetb0": ("EfficientNetB0", 32, 224), "efficientnetb1": ("EfficientNetB1", 32, 240),
    "efficientnetb2": ("EfficientNetB2", 32, 260), "efficientnetb3": ("EfficientNetB3", 32, 300),
    "efficientnetb4": ("EfficientNetB4", 32, 380), "efficientnetb5": ("EfficientNetB5", 32, 456),
    "efficientnetb6": ("EfficientNetB6", 32, 528), "efficientnetb7": ("EfficientNetB7", 32, 600),
    "efficientnetv2b0": ("EfficientNetV2B0", 32, 224),
    "efficientnetv2b1": ("EfficientNetV2B1", 32, 240),
    "efficientnetv2b2": ("EfficientNetV2B2", 32, 260),
    "efficientnetv2b3": ("EfficientNetV2B3", 32, 300),
    "efficientnetv2s": ("EfficientNetV2S", 32, 384), "efficientnetv2m": ("EfficientNetV2M", 32, 480),
    "efficientnetv2l": ("EfficientNetV2L", 32, 480), "convnexttiny": ("ConvNeXtTiny", 32, 224),
}


def main():
    prefix = sys.argv[1]
    default = len(sys.argv) > 2 and sys.argv[2] == "--size"
    outdir = sys.argv[4] if default else os.path.join(here, "apps")
    if prefix == "keras3":
        import keras as K
        version = K.__version__
    else:
        import tensorflow as tf
        K = tf.keras
        version = "tf.keras " + tf.__version__
    os.makedirs(outdir, exist_ok=True)
    for name, (ctor, small, full) in APPS.items():
        if not hasattr(K.applications, ctor):
            print(f"{prefix}: no {ctor}", file=sys.stderr)
            continue
        size = full if default else small
        # classes=10 at the small size: the suite's models are CIFAR-sized; the default size
        # keeps ImageNet's 1000.
        m = getattr(K.applications, ctor)(weights=None, input_shape=(size, size, 3),
                                          classes=1000 if default else 10)
        info = counts(m)
        info["keras_version"] = version
        info["input_size"] = size
        base = os.path.join(outdir, f"{prefix}-{name}")
        with gzip.open(base + ".json.gz", "wt", compresslevel=9) as f:
            f.write(m.to_json())
            f.write("\n")
        with gzip.open(base + ".counts.json.gz", "wt", compresslevel=9) as f:
            json.dump(info, f, separators=(",", ":"))
            f.write("\n")
        print(f"{prefix}-{name}: {size}x{size}, {info['count_params']} parameters")
        K.backend.clear_session()


if __name__ == "__main__":
    main()
