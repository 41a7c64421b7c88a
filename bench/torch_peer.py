#!/usr/bin/env python3
# The PyTorch peer for kilt-cli bench: the same models, batch sizes and optimizer, timed the
# same way (synthetic data already on the device, warm-up steps first, then timed steps).
# SPDX-License-Identifier: GPL-3.0-or-later
import argparse, json, sys, time

import torch
import torch.nn as nn
import torch.nn.functional as F


def cifar10_cnn(c=3, n=10):
    # Keras' cifar10_cnn: padding 'same' then 'valid', as in the example.
    return nn.Sequential(
        nn.Conv2d(c, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 32, 3), nn.ReLU(),
        nn.MaxPool2d(2), nn.Dropout(0.25),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.Conv2d(64, 64, 3), nn.ReLU(),
        nn.MaxPool2d(2), nn.Dropout(0.25),
        nn.Flatten(), nn.Linear(64 * 6 * 6, 512), nn.ReLU(), nn.Dropout(0.5), nn.Linear(512, n))


def mnist_cnn(c=1, n=10):
    return nn.Sequential(
        nn.Conv2d(c, 32, 3), nn.ReLU(), nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Dropout(0.25), nn.Flatten(), nn.Linear(64 * 12 * 12, 128), nn.ReLU(),
        nn.Dropout(0.5), nn.Linear(128, n))


class Block(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.c1 = nn.Conv2d(cin, cout, 3, stride, 1)
        self.b1 = nn.BatchNorm2d(cout, momentum=0.01, eps=1e-3)
        self.c2 = nn.Conv2d(cout, cout, 3, 1, 1)
        self.b2 = nn.BatchNorm2d(cout, momentum=0.01, eps=1e-3)
        self.proj = nn.Conv2d(cin, cout, 1, stride) if stride != 1 or cin != cout else None

    def forward(self, x):
        y = F.relu(self.b1(self.c1(x)))
        y = self.b2(self.c2(y))
        return F.relu(y + (self.proj(x) if self.proj is not None else x))


def resnet20(c=3, n=10):
    layers = [nn.Conv2d(c, 16, 3, 1, 1), nn.BatchNorm2d(16, momentum=0.01, eps=1e-3), nn.ReLU()]
    cin = 16
    for stage, cout in enumerate((16, 32, 64)):
        for b in range(3):
            layers.append(Block(cin, cout, 2 if (b == 0 and stage > 0) else 1))
            cin = cout
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, n)]
    return nn.Sequential(*layers)


def mlp(c=1, n=10):
    # Keras' mnist_mlp (Kilt's preset mlp): 784 features in, as from a CSV of pixel columns.
    return nn.Sequential(
        nn.Flatten(), nn.Linear(c * 28 * 28, 512), nn.ReLU(), nn.Dropout(0.2),
        nn.Linear(512, 512), nn.ReLU(), nn.Dropout(0.2), nn.Linear(512, n))


def vgg16(c=3, n=1000):
    # keras.applications.VGG16 with its top (Kilt's preset vgg16), at 224x224.
    layers, cin = [], c
    for cout, convs in ((64, 2), (128, 2), (256, 3), (512, 3), (512, 3)):
        for _ in range(convs):
            layers += [nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU()]
            cin = cout
        layers.append(nn.MaxPool2d(2))
    layers += [nn.Flatten(), nn.Linear(512 * 7 * 7, 4096), nn.ReLU(), nn.Linear(4096, 4096),
               nn.ReLU(), nn.Linear(4096, n)]
    return nn.Sequential(*layers)


class Bottleneck(nn.Module):
    # keras.applications.ResNet50's block: the stride in the first 1x1 convolution, biases in
    # every convolution, BatchNormalization with Keras' epsilon 1.001e-5.
    def __init__(self, cin, mid, stride, shortcut):
        super().__init__()
        bn = lambda ch: nn.BatchNorm2d(ch, momentum=0.01, eps=1.001e-5)
        self.body = nn.Sequential(
            nn.Conv2d(cin, mid, 1, stride), bn(mid), nn.ReLU(),
            nn.Conv2d(mid, mid, 3, 1, 1), bn(mid), nn.ReLU(),
            nn.Conv2d(mid, 4 * mid, 1), bn(4 * mid))
        self.short = nn.Sequential(nn.Conv2d(cin, 4 * mid, 1, stride), bn(4 * mid)) if shortcut else None

    def forward(self, x):
        return F.relu(self.body(x) + (self.short(x) if self.short is not None else x))


def resnet50(c=3, n=1000):
    # keras.applications.ResNet50 with its top (bench/models/keras3-resnet50.json), at 224x224.
    layers = [nn.ZeroPad2d(3), nn.Conv2d(c, 64, 7, 2), nn.BatchNorm2d(64, momentum=0.01, eps=1.001e-5),
              nn.ReLU(), nn.ZeroPad2d(1), nn.MaxPool2d(3, 2)]
    cin = 64
    for mid, blocks, stride in ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)):
        for b in range(blocks):
            layers.append(Bottleneck(cin, mid, stride if b == 0 else 1, b == 0))
            cin = 4 * mid
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2048, n)]
    return nn.Sequential(*layers)


class InvertedResidual(nn.Module):
    # keras.applications.MobileNetV2's block: 1x1 expansion (not in the first block), 3x3
    # depthwise, 1x1 projection without activation; BatchNormalization with Keras' momentum
    # 0.999 and epsilon 1e-3; a residual where the shape stays.
    def __init__(self, cin, cout, stride, t):
        super().__init__()
        bn = lambda ch: nn.BatchNorm2d(ch, momentum=0.001, eps=1e-3)
        mid = cin * t
        parts = [nn.Conv2d(cin, mid, 1, bias=False), bn(mid), nn.ReLU6()] if t != 1 else []
        parts += [nn.Conv2d(mid, mid, 3, stride, 1, groups=mid, bias=False), bn(mid), nn.ReLU6(),
                  nn.Conv2d(mid, cout, 1, bias=False), bn(cout)]
        self.body = nn.Sequential(*parts)
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        return x + self.body(x) if self.residual else self.body(x)


def mobilenetv2(c=3, n=1000):
    # keras.applications.MobileNetV2 (alpha 1) with its top, at 224x224: 3,504,872 trainable
    # parameters, as Keras reports (its total adds the BatchNormalization statistics).
    bn = lambda ch: nn.BatchNorm2d(ch, momentum=0.001, eps=1e-3)
    layers = [nn.Conv2d(c, 32, 3, 2, 1, bias=False), bn(32), nn.ReLU6()]
    cin = 32
    for t, cout, blocks, stride in ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
                                    (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)):
        for b in range(blocks):
            layers.append(InvertedResidual(cin, cout, stride if b == 0 else 1, t))
            cin = cout
    layers += [nn.Conv2d(cin, 1280, 1, bias=False), bn(1280), nn.ReLU6(),
               nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(1280, n)]
    return nn.Sequential(*layers)


MODELS = {"cifar10_cnn": (cifar10_cnn, (3, 32, 32)), "mnist_cnn": (mnist_cnn, (1, 28, 28)),
          "resnet20": (resnet20, (3, 32, 32)), "mlp": (mlp, (1, 28, 28)),
          "vgg16": (vgg16, (3, 224, 224)), "resnet50": (resnet50, (3, 224, 224)),
          "mobilenetv2": (mobilenetv2, (3, 224, 224))}


def keras_rmsprop(params, lr=1e-4, decay=1e-6):
    # Keras: a = rho a + (1 - rho) g^2; p -= lr_t g / (sqrt(a) + eps), lr_t = lr / (1 + decay t).
    opt = torch.optim.RMSprop(params, lr=lr, alpha=0.9, eps=1e-7)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: 1.0 / (1.0 + decay * t))
    return opt, sched


def bench(model_name, batch, steps, mode, device):
    make, shape = MODELS[model_name]
    torch.manual_seed(1)
    model = make().to(device)
    opt, sched = keras_rmsprop(model.parameters())
    x = torch.rand(steps, batch, *shape, device=device)
    classes = 1000 if model_name in ("vgg16", "resnet50", "mobilenetv2") else 10
    y = torch.randint(0, classes, (steps, batch), device=device)

    def step(xb, yb):
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(xb), yb)
        loss.backward()
        opt.step()
        sched.step()
        return loss

    fn = step
    if mode == "compiled":
        fn = torch.compile(step, mode="reduce-overhead")
    for i in range(min(steps, 20)):  # warm-up (and compilation)
        fn(x[i], y[i])
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    sync()
    t0 = time.perf_counter()
    for i in range(steps):
        fn(x[i], y[i])
    sync()
    dt = time.perf_counter() - t0
    params = sum(p.numel() for p in model.parameters())
    return {"peer": "pytorch", "torch": torch.__version__, "mode": mode, "model": model_name,
            "input_chw": list(shape), "params": params, "batch": batch, "steps": steps, "step_ms": dt * 1e3 / steps,
            "samples_per_s": steps * batch / dt,
            "device": torch.cuda.get_device_name() if device == "cuda" else "cpu"}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="cifar10_cnn")
    ap.add_argument("--batch", type=int, nargs="+", default=[32])
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--modes", nargs="+", default=["fp32", "tf32", "compiled"])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    a = ap.parse_args()
    for batch in a.batch:
        for mode in a.modes:
            tf32 = mode != "fp32"
            torch.backends.cuda.matmul.allow_tf32 = tf32
            torch.backends.cudnn.allow_tf32 = tf32
            try:
                r = bench(a.model, batch, a.steps, mode, a.device)
            except Exception as e:  # a mode that cannot run here is reported, not fatal
                r = {"peer": "pytorch", "mode": mode, "model": a.model, "batch": batch,
                     "error": str(e).splitlines()[0][:200]}
            r["tf32"] = tf32
            print(json.dumps(r), flush=True)


if __name__ == "__main__":
    main()
