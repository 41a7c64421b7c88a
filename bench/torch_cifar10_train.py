#!/usr/bin/env python3
# The article's run in PyTorch, for the accuracy comparison: Keras' cifar10_cnn, RMSprop as
# Keras (lr 1e-4, rho 0.9, eps 1e-7, decay 1e-6 per step), batch 32, no augmentation, 10
# epochs, pixels scaled to [0, 1], on the CIFAR-10 image folder (train/<class>/*.jpg,
# test/<class>/*.jpg). Prints one JSON line per epoch and a final one.
# SPDX-License-Identifier: GPL-3.0-or-later
import argparse, json, os, sys, time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(__file__))
from torch_peer import cifar10_cnn, keras_rmsprop  # noqa: E402


def decode(path):
    try:
        from torchvision.io import decode_jpeg, read_file
        return decode_jpeg(read_file(path)).numpy()  # C x H x W
    except ImportError:
        from PIL import Image
        return np.asarray(Image.open(path).convert("RGB")).transpose(2, 0, 1)


def load_split(root):
    classes = sorted(os.listdir(root))
    xs, ys = [], []
    for ci, c in enumerate(classes):
        for f in sorted(os.listdir(os.path.join(root, c))):
            xs.append(decode(os.path.join(root, c, f)))
            ys.append(ci)
    return np.stack(xs), np.array(ys, dtype=np.int64)


def glorot_zero_bias(m):
    # Keras' initialisers: Glorot-uniform kernels, zero biases.
    if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
        torch.nn.init.xavier_uniform_(m.weight)
        torch.nn.init.zeros_(m.bias)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("data")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--batch", type=int, default=32)
    a = ap.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    t0 = time.perf_counter()
    xtr, ytr = load_split(os.path.join(a.data, "train"))
    xte, yte = load_split(os.path.join(a.data, "test"))
    load_s = time.perf_counter() - t0
    dev = "cuda"
    xtr = torch.tensor(xtr, device=dev).float() / 255
    xte = torch.tensor(xte, device=dev).float() / 255
    ytr = torch.tensor(ytr, device=dev)
    yte = torch.tensor(yte, device=dev)
    torch.manual_seed(1)
    model = cifar10_cnn().to(dev)
    model.apply(glorot_zero_bias)
    opt, sched = keras_rmsprop(model.parameters())
    n = xtr.shape[0]
    total = 0.0
    for epoch in range(a.epochs):
        model.train()
        torch.cuda.synchronize()
        t = time.perf_counter()
        perm = torch.randperm(n, device=dev)
        loss_sum = torch.zeros((), device=dev)
        correct = torch.zeros((), device=dev)
        for i in range(0, n, a.batch):
            idx = perm[i:i + a.batch]
            out = model(xtr[idx])
            loss = F.cross_entropy(out, ytr[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            loss_sum += loss.detach() * idx.numel()
            correct += (out.argmax(1) == ytr[idx]).sum()
        torch.cuda.synchronize()
        dt = time.perf_counter() - t
        total += dt
        model.eval()
        with torch.no_grad():
            te_correct = sum((model(xte[i:i + 1000]).argmax(1) == yte[i:i + 1000]).sum().item()
                             for i in range(0, xte.shape[0], 1000))
        print(json.dumps({"peer": "pytorch", "epoch": epoch + 1, "seconds": dt,
                          "loss": loss_sum.item() / n, "accuracy": correct.item() / n,
                          "test_accuracy": te_correct / xte.shape[0]}), flush=True)
    print(json.dumps({"peer": "pytorch", "final": True, "train_seconds": total,
                      "load_seconds": load_s, "test_accuracy": te_correct / xte.shape[0],
                      "torch": torch.__version__, "device": torch.cuda.get_device_name()}))


if __name__ == "__main__":
    main()
