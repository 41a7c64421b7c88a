#!/usr/bin/env python3
# Writes the Keras model.to_json() files test-keras reads, with what Keras itself reports about
# each model (parameter counts, output shapes) in a *.counts.json beside it.
# SPDX-License-Identifier: GPL-3.0-or-later
#
# Not part of the build: run by hand in a throwaway virtual environment, e.g.
#   python3 -m venv /tmp/kvenv && /tmp/kvenv/bin/pip install tensorflow-cpu tf-keras
#   /tmp/kvenv/bin/python tests/data/keras/make-keras-json.py tests/data/keras
# tf_keras is Keras 2 (tf.keras' format); keras is Keras 3. The "legacy" file is the Keras 2
# Sequential file rewritten the way Keras 2.0-2.1 saved Sequential models (config = a bare
# list of layers, batch_input_shape on the first layer), since those versions no longer install.
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")


def build_all(K, layers, keras3):
    models = {}

    def inp(shape):
        return layers.Input(shape=shape)

    # Keras' examples/cifar10_cnn.py
    m = K.Sequential()
    m.add(inp((32, 32, 3)))
    m.add(layers.Conv2D(32, (3, 3), padding="same"))
    m.add(layers.Activation("relu"))
    m.add(layers.Conv2D(32, (3, 3)))
    m.add(layers.Activation("relu"))
    m.add(layers.MaxPooling2D(pool_size=(2, 2)))
    m.add(layers.Dropout(0.25))
    m.add(layers.Conv2D(64, (3, 3), padding="same"))
    m.add(layers.Activation("relu"))
    m.add(layers.Conv2D(64, (3, 3)))
    m.add(layers.Activation("relu"))
    m.add(layers.MaxPooling2D(pool_size=(2, 2)))
    m.add(layers.Dropout(0.25))
    m.add(layers.Flatten())
    m.add(layers.Dense(512))
    m.add(layers.Activation("relu"))
    m.add(layers.Dropout(0.5))
    m.add(layers.Dense(10))
    m.add(layers.Activation("softmax"))
    models["cifar10_cnn"] = m

    # Keras' examples/mnist_cnn.py
    m = K.Sequential()
    m.add(inp((28, 28, 1)))
    m.add(layers.Conv2D(32, kernel_size=(3, 3), activation="relu"))
    m.add(layers.Conv2D(64, (3, 3), activation="relu"))
    m.add(layers.MaxPooling2D(pool_size=(2, 2)))
    m.add(layers.Dropout(0.25))
    m.add(layers.Flatten())
    m.add(layers.Dense(128, activation="relu"))
    m.add(layers.Dropout(0.5))
    m.add(layers.Dense(10, activation="softmax"))
    models["mnist_cnn"] = m

    # Keras' examples/mnist_mlp.py
    m = K.Sequential()
    m.add(inp((784,)))
    m.add(layers.Dense(512, activation="relu"))
    m.add(layers.Dropout(0.2))
    m.add(layers.Dense(512, activation="relu"))
    m.add(layers.Dropout(0.2))
    m.add(layers.Dense(10, activation="softmax"))
    models["mnist_mlp"] = m

    # A functional residual network using every other supported layer.
    x_in = layers.Input(shape=(24, 20, 3), name="image")
    x = layers.Conv2D(16, 3, padding="same", kernel_initializer="he_normal", use_bias=False)(x_in)
    x = layers.BatchNormalization()(x)
    x = layers.ReLU()(x)
    y = layers.Conv2D(16, 3, padding="same")(x)
    y = layers.BatchNormalization(momentum=0.9, epsilon=1e-5)(y)
    y = layers.LeakyReLU(0.1)(y)
    y = layers.Conv2D(16, 3, padding="same")(y)
    x = layers.Add()([x, y])
    x = layers.Activation("relu")(x)
    a = layers.Conv2D(8, 1, strides=2, activation="relu")(x)
    b = layers.AveragePooling2D(pool_size=2)(x)
    b = layers.Conv2D(12, 3, padding="same", activation="tanh")(b)
    x = layers.Concatenate()([a, b])
    x = layers.MaxPooling2D(pool_size=(3, 3), strides=(2, 2), padding="same")(x)
    g = layers.GlobalAveragePooling2D()(x)
    f = layers.Flatten()(layers.MaxPooling2D(pool_size=2)(x))
    x = layers.Concatenate()([g, f])
    x = layers.Dense(32)(x)
    x = layers.BatchNormalization()(x)
    x = layers.Activation("sigmoid")(x)
    x = layers.Dropout(0.3)(x)
    x = layers.Dense(5)(x)
    x = layers.Softmax()(x)
    models["residual"] = K.Model(x_in, x, name="residual")

    # Keras' cifar10_resnet.py, ResNet-20 v1 (the 1x1 projections of shortcut option B).
    def rl(t, filters=16, kernel_size=3, strides=1, activation="relu", bn=True):
        t = layers.Conv2D(filters, kernel_size, strides=strides, padding="same",
                          kernel_initializer="he_normal",
                          kernel_regularizer=K.regularizers.l2(1e-4))(t)
        if bn:
            t = layers.BatchNormalization()(t)
        if activation is not None:
            t = layers.Activation(activation)(t)
        return t

    x_in = layers.Input(shape=(32, 32, 3))
    x = rl(x_in)
    filters = 16
    for stack in range(3):
        for block in range(3):
            strides = 2 if stack > 0 and block == 0 else 1
            y = rl(x, filters, strides=strides)
            y = rl(y, filters, activation=None)
            if stack > 0 and block == 0:
                x = rl(x, filters, kernel_size=1, strides=strides, activation=None, bn=False)
            x = layers.add([x, y])
            x = layers.Activation("relu")(x)
        filters *= 2
    x = layers.AveragePooling2D(pool_size=8)(x)
    x = layers.Flatten()(x)
    x = layers.Dense(10, activation="softmax", kernel_initializer="he_normal")(x)
    models["resnet20"] = K.Model(x_in, x, name="resnet20")

    # Unsupported: a layer Kilt does not have, and an option it does not take.
    m = K.Sequential()
    m.add(inp((28, 28, 1)))
    m.add(layers.Conv2D(8, 3, activation="relu"))
    m.add(layers.GaussianNoise(0.1, name="noise"))
    m.add(layers.Flatten())
    m.add(layers.Dense(10, activation="softmax"))
    models["unsupported_layer"] = m

    m = K.Sequential()
    m.add(inp((28, 28, 1)))
    m.add(layers.Conv2D(8, 3, name="conv"))
    m.add(layers.BatchNormalization(renorm=True, name="renorm"))
    m.add(layers.Flatten())
    m.add(layers.Dense(10, activation="softmax"))
    models["unsupported_option"] = m

    # Issue 11's first layers, at awkward sizes: padding and cropping in each spelling, and
    # activations Conv2D and Dense do not fold in (Kilt adds an Activation node after them).
    m = K.Sequential()
    m.add(inp((13, 11, 3)))
    m.add(layers.ZeroPadding2D(((1, 2), (0, 3)), name="pad_sides"))
    m.add(layers.Conv2D(4, 3, activation="swish", name="conv_swish"))
    m.add(layers.ZeroPadding2D(2, name="pad_2"))
    m.add(layers.Cropping2D(((1, 0), (2, 1)), name="crop_sides"))
    m.add(layers.Cropping2D(1, name="crop_1"))
    m.add(layers.ZeroPadding2D((1, 2), name="pad_hw"))
    m.add(layers.Cropping2D((2, 1), name="crop_hw"))
    m.add(layers.Conv2D(2, 3, strides=2, activation="gelu", name="conv_gelu"))
    m.add(layers.Flatten())
    m.add(layers.Dense(5, activation="hard_sigmoid", name="dense_hard_sigmoid"))
    m.add(layers.Dense(3, activation="softmax"))
    models["padding"] = m

    m = K.Sequential()
    m.add(inp((12,)))
    m.add(layers.Dense(9, activation="elu", name="dense_elu"))
    names = ["selu", "softplus", "softsign", "exponential", "swish", "gelu", "hard_sigmoid",
             "linear", "leaky_relu", "relu6", "tanh", "sigmoid", "relu"]
    if keras3:
        names += ["silu", "hard_silu", "hard_swish"]
    for a in names:
        m.add(layers.Activation(a, name="act_" + a))
    m.add(layers.ReLU(max_value=6.0, name="relu_6"))
    m.add(layers.ReLU(max_value=4.0, threshold=0.5, negative_slope=0.1, name="relu_all"))
    m.add(layers.ReLU(negative_slope=0.2, name="relu_leaky"))
    m.add(layers.ELU(alpha=0.5, name="elu_layer"))
    m.add(layers.LeakyReLU(name="leaky_default"))
    m.add(layers.Dense(4, activation="softmax"))
    models["activations"] = m

    # The blocks MobileNet and EfficientNet build from: rescaling, BatchNormalization without
    # gamma or beta, squeeze-and-excitation (keepdims or Reshape, then Multiply), dropout per
    # channel.
    x_in = layers.Input(shape=(15, 13, 3), name="image")
    x = layers.Rescaling(1.0 / 127.5, offset=-1, name="rescale")(x_in)
    x = layers.Normalization(name="norm")(x)
    x = layers.Conv2D(8, 3, padding="same", use_bias=False, name="stem")(x)
    x = layers.BatchNormalization(scale=False, name="bn_no_scale")(x)
    x = layers.ReLU(6.0, name="stem_relu6")(x)
    s = layers.GlobalAveragePooling2D(keepdims=True, name="se_squeeze")(x)
    s = layers.Conv2D(2, 1, activation="relu", name="se_reduce")(s)
    s = layers.Conv2D(8, 1, activation="hard_sigmoid", name="se_expand")(s)
    x = layers.Multiply(name="se_excite")([x, s])
    t = layers.GlobalAveragePooling2D(name="se2_squeeze")(x)
    t = layers.Reshape((1, 1, 8), name="se2_reshape")(t)
    t = layers.Dense(8, activation="sigmoid", name="se2_gate")(layers.Flatten()(t))
    t = layers.Reshape((1, 1, -1), name="se2_back")(t)
    x = layers.Multiply(name="se2_excite")([t, x])
    x = layers.Dropout(0.2, noise_shape=(None, 1, 1, 8), name="drop_channels")(x)
    x = layers.SpatialDropout2D(0.1, name="spatial_drop")(x)
    x = layers.BatchNormalization(center=False, name="bn_no_center")(x)
    x = layers.BatchNormalization(center=False, scale=False, name="bn_neither")(x)
    g = layers.GlobalMaxPooling2D(name="head_max")(x)
    x = layers.GlobalAveragePooling2D(keepdims=True, name="head_pool")(x)
    x = layers.Reshape((8,), name="head_flat")(x)
    x = layers.Concatenate(name="head_cat")([x, g])
    x = layers.Dense(3, activation="softmax", name="head")(x)
    models["blocks"] = K.Model(x_in, x, name="blocks")

    # DepthwiseConv2D (depth_multiplier, strides, dilation) and SeparableConv2D, as MobileNet,
    # Xception and EfficientNet use them, at odd sizes.
    m = K.Sequential()
    m.add(inp((17, 15, 5)))
    m.add(layers.DepthwiseConv2D(3, depth_multiplier=2, strides=2, padding="same",
                                 activation="relu", name="dw_stride"))
    m.add(layers.DepthwiseConv2D((3, 2), dilation_rate=2, use_bias=False, name="dw_dilated"))
    m.add(layers.DepthwiseConv2D(1, activation="relu6", name="dw_relu6"))
    m.add(layers.SeparableConv2D(6, 3, padding="same", activation="swish", name="sep"))
    m.add(layers.SeparableConv2D(4, (2, 3), strides=2, depth_multiplier=3, use_bias=False,
                                 name="sep_stride"))
    m.add(layers.Flatten())
    m.add(layers.Dense(3, activation="softmax"))
    models["separable"] = m

    # The other element-wise merges.
    a_in = layers.Input(shape=(6, 5, 4), name="image")
    a = layers.Conv2D(4, 3, padding="same", name="left")(a_in)
    b = layers.Conv2D(4, 1, name="right")(a_in)
    c = layers.Conv2D(4, 3, padding="same", dilation_rate=1, name="third")(a_in)
    d = layers.Subtract(name="sub")([a, b])
    e = layers.Average(name="avg")([a, b, c])
    f = layers.Maximum(name="max")([d, e, c])
    g = layers.Minimum(name="min")([f, a])
    g = layers.UpSampling2D((2, 3), name="up")(g)
    g = layers.LayerNormalization(epsilon=1e-6, name="ln")(g)
    g = layers.LayerNormalization(center=False, name="ln_no_beta")(g)
    x = layers.Flatten()(g)
    x = layers.Dense(3, activation="softmax")(x)
    models["merges"] = K.Model(a_in, x, name="merges")

    # A whole application, weights=None at a small input (issue 11: every one must import
    # with Keras' counts and shapes; this one is committed, the others are checked by hand).
    models["app-mobilenetv2"] = K.applications.MobileNetV2(
        weights=None, input_shape=(32, 32, 3), classes=10)

    # (After the application, so that its automatic layer names stay as they were.)
    # 1-D layers on sequences (steps, channels): every padding of Conv1D, the 1-D poolings
    # with strides and padding, global poolings with keepdims.
    s_in = inp((17, 5))
    s = layers.Conv1D(6, 4, padding="causal", dilation_rate=3, name="c_causal")(s_in)
    s = layers.Conv1D(6, 3, strides=2, padding="same", groups=3, activation="swish",
                      name="c_same")(s)
    s = layers.MaxPooling1D(3, strides=2, padding="same", name="p_max")(s)
    s = layers.AveragePooling1D(2, name="p_avg")(s)
    s = layers.Conv1D(8, 2, use_bias=False, name="c_valid")(s)
    k = layers.GlobalAveragePooling1D(keepdims=True, name="g_keep")(s)
    k = layers.Flatten(name="k_flat")(k)
    m1 = layers.GlobalMaxPooling1D(name="g_max")(s)
    x = layers.Concatenate(name="cat")([k, m1])
    x = layers.Dense(4, activation="softmax")(x)
    models["sequence"] = K.Model(s_in, x, name="sequence")

    return models


def build_nested(K, layers):
    """Models nested in models (Keras 3 only: tf_keras nests the same way in its JSON, but is
    not in the venv these were written with)."""
    models = {}
    # Transfer learning's usual shape: a pre-trained base (a functional model) inside a
    # Sequential with a new head.
    base = K.applications.MobileNetV2(weights=None, include_top=False, input_shape=(32, 32, 3))
    models["nested-mobilenetv2"] = K.Sequential(
        [layers.Input((32, 32, 3)), base, layers.GlobalAveragePooling2D(), layers.Dense(10)],
        name="transfer")

    # Nesting two deep, a frozen block, residual wiring inside and around the nested parts, and
    # names that clash across levels ("conv", "fc": the inner ones become "SCOPE/NAME").
    s_in = layers.Input((12, 10, 3))
    stem = K.Sequential([layers.Input((12, 10, 3)), layers.Conv2D(8, 3, padding="same",
                                                                  name="conv"),
                         layers.LayerNormalization(epsilon=1e-6, name="stem_ln")], name="stem")
    b_in = layers.Input((12, 10, 8))
    inner = K.Sequential([layers.Input((12, 10, 8)), layers.Conv2D(8, 1, name="conv"),
                          layers.BatchNormalization(name="inner_bn")], name="inner")
    t = inner(b_in)
    t = layers.Add(name="block_add")([t, b_in])
    block = K.Model(b_in, layers.Activation("relu", name="block_relu")(t), name="block")
    frozen = K.Sequential([layers.Input((12, 10, 8)), layers.Conv2D(4, 3, strides=2, name="fc")],
                          name="frozen")
    frozen.trainable = False
    x = stem(s_in)
    y = block(x)
    x = layers.Add(name="outer_add")([x, y])
    x = frozen(x)
    x = layers.Flatten(name="flat")(x)
    x = layers.Dense(5, activation="softmax", name="fc")(x)
    models["nested-blocks"] = K.Model(s_in, x, name="nested_blocks")

    # ConvNeXtTiny at a small input: its stem and downsampling blocks are nested Sequentials,
    # its pointwise layers Dense on images, and it has LayerScale (28,589,128 parameters at
    # any input size).
    models["app-convnexttiny"] = K.applications.ConvNeXtTiny(weights=None,
                                                             input_shape=(32, 32, 3))
    return models


def model_parts(model):
    """A model's layers and, in a Keras 3 functional model, the operations its file lists as
    layers too (ConvNeXt's `x + y` is an Add in the JSON, not in model.layers)."""
    if hasattr(model, "operations") and model.__class__.__name__ != "Sequential":
        return model.operations
    return model.layers


def flat_layers(model, uses, scope=None):
    """A model's layers with nested models' layers in their place, named as Kilt names them."""
    out = []
    for layer in model_parts(model):
        if hasattr(layer, "layers") and hasattr(layer, "inputs"):
            out += flat_layers(layer, uses, layer.name)
            continue
        if scope is not None and layer.__class__.__name__ == "InputLayer":
            continue
        name = layer.name if scope is None or uses[layer.name] < 2 else f"{scope}/{layer.name}"
        out.append((name, layer))
    return out


def name_uses(model, uses, nested=False):
    for layer in model_parts(model):
        if hasattr(layer, "layers") and hasattr(layer, "inputs"):
            name_uses(layer, uses, True)
        elif not (nested and layer.__class__.__name__ == "InputLayer"):
            uses[layer.name] = uses.get(layer.name, 0) + 1
    return uses


def shape_list(s):
    if isinstance(s, list):  # several outputs: not in these models
        raise SystemExit("unexpected multi-output layer")
    return [d for d in tuple(s)]


def counts(model):
    trainable = sum(int(w.shape.num_elements()) if hasattr(w.shape, "num_elements")
                    else int(__import__("numpy").prod(w.shape)) for w in model.trainable_weights)
    out = {"count_params": int(model.count_params()), "trainable_params": trainable, "layers": []}
    for name, layer in flat_layers(model, name_uses(model, {})):
        out["layers"].append({"name": name, "class_name": layer.__class__.__name__,
                              "output_shape": shape_list(layer.output.shape),
                              "params": int(layer.count_params())
                              if hasattr(layer, "count_params") else 0})
    return out


def dump(prefix, models, version, outdir):
    for name, m in models.items():
        base = os.path.join(outdir, f"{prefix}-{name}")
        with open(base + ".json", "w") as f:
            f.write(m.to_json())
            f.write("\n")
        info = counts(m)
        info["keras_version"] = version
        with open(base + ".counts.json", "w") as f:
            json.dump(info, f, indent=1)
            f.write("\n")


def main():
    outdir = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__))

    import tf_keras as k2
    dump("keras2", build_all(k2, k2.layers, False), k2.__version__, outdir)

    import keras as k3
    dump("keras3", build_all(k3, k3.layers, True), k3.__version__, outdir)
    dump("keras3", build_nested(k3, k3.layers), k3.__version__, outdir)

    # Keras 2.0-2.1: Sequential config was the bare list of layers.
    with open(os.path.join(outdir, "keras2-mnist_cnn.json")) as f:
        doc = json.load(f)
    layers = [l for l in doc["config"]["layers"] if l["class_name"] != "InputLayer"]
    first_in = [l for l in doc["config"]["layers"] if l["class_name"] == "InputLayer"][0]
    layers[0]["config"]["batch_input_shape"] = first_in["config"]["batch_input_shape"]
    layers[0]["config"]["dtype"] = "float32"
    legacy = {"class_name": "Sequential", "config": layers, "keras_version": "2.1.6",
              "backend": "tensorflow"}
    with open(os.path.join(outdir, "legacy-mnist_cnn.json"), "w") as f:
        json.dump(legacy, f)
        f.write("\n")
    with open(os.path.join(outdir, "keras2-mnist_cnn.counts.json")) as f:
        info = json.load(f)
    info["layers"] = [l for l in info["layers"] if l["class_name"] != "InputLayer"]
    with open(os.path.join(outdir, "legacy-mnist_cnn.counts.json"), "w") as f:
        json.dump(info, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
