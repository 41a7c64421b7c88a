#!/usr/bin/env python3
# The PyTorch side of issue 12's airbench94 comparison, on the GPU machine: Keller Jordan's own
# airbench94 script (not part of this repository: fetch github.com/KellerJordan/cifar10-airbench
# and pass its legacy/airbench94.py, or airbench94_muon.py, with --script), trained on the same
# CIFAR-10 image folder Kilt trains on, so that both sides see the same JPEG re-encoding.
#
# The script reads cifar10/train.pt and cifar10/test.pt (uint8 NHWC images, int64 labels, the
# class names) from its working folder and downloads CIFAR-10 when they are missing; the machine
# has no network, so this writes them first from --data (train/<class>/*.jpg, test/<class>/*.jpg,
# classes in sorted order as Kilt's image-folder loader takes them), then runs the script's
# main() --runs times and prints one JSON line per run and a summary line.
#
# Usage: python3 bench/airbench_peer.py --script PATH/airbench94.py --data CIFAR_FOLDER
#        [--runs 5] [--work DIR]
import argparse
import contextlib
import importlib.util
import io
import json
import os
import re
import sys
import time


def load_folder(split_dir):
    import numpy as np
    from PIL import Image

    classes = sorted(d for d in os.listdir(split_dir) if os.path.isdir(os.path.join(split_dir, d)))
    images, labels = [], []
    for label, name in enumerate(classes):
        folder = os.path.join(split_dir, name)
        for f in sorted(os.listdir(folder)):
            with Image.open(os.path.join(folder, f)) as im:
                images.append(np.asarray(im.convert("RGB"), dtype=np.uint8))
            labels.append(label)
    return np.stack(images), np.asarray(labels, dtype=np.int64), classes


def write_tensors(data, work):
    import torch

    out = os.path.join(work, "cifar10")
    os.makedirs(out, exist_ok=True)
    shapes = {}
    for split, name in (("train", "train.pt"), ("test", "test.pt")):
        path = os.path.join(out, name)
        images, labels, classes = load_folder(os.path.join(data, split))
        if images.shape[1:] != (32, 32, 3):
            sys.exit(f"airbench_peer: {data}/{split}: images are {images.shape[1:]}, not 32x32x3")
        torch.save({"images": torch.from_numpy(images), "labels": torch.from_numpy(labels),
                    "classes": classes}, path)
        shapes[split] = list(images.shape)
    return shapes


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--script", required=True, help="airbench94.py from KellerJordan/cifar10-airbench")
    ap.add_argument("--data", required=True, help="CIFAR-10 image folder (train/, test/)")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--work", default="/tmp/airbench-work")
    args = ap.parse_args()

    script = os.path.abspath(args.script)
    os.makedirs(args.work, exist_ok=True)
    t0 = time.time()
    shapes = write_tensors(os.path.abspath(args.data), args.work)
    print(json.dumps({"converted": shapes, "seconds": round(time.time() - t0, 1)}), flush=True)
    os.chdir(args.work)

    spec = importlib.util.spec_from_file_location("airbench_script", script)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # defines everything; its __main__ block does not run
    import torch

    takes_model = "model" in mod.main.__code__.co_varnames[: mod.main.__code__.co_argcount]
    model = None
    if takes_model:  # airbench94_muon: one compiled model reused between runs, as its __main__ does
        model = mod.CifarNet().cuda().to(memory_format=torch.channels_last)
        model.compile(mode="max-autotune")
        with contextlib.redirect_stdout(io.StringIO()):
            mod.main("warmup", model)
    accs, times = [], []
    for run in range(args.runs):
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            acc = mod.main(run, model) if takes_model else mod.main(run)
        text = buf.getvalue()
        # The script's table, in its logging_columns_list: the last row's time column is what
        # the script times (whitening init, training and the final TTA evaluation; not the
        # per-epoch evaluations).
        rows = [l for l in text.splitlines() if l.startswith("|") and re.search(r"\d", l)]
        cells = [c.strip() for c in rows[-1].strip("|").split("|")] if rows else []
        names = [c.strip() for c in mod.logging_columns_list]
        col = next((n for n in ("total_time_seconds", "time_seconds") if n in names), None)
        train_time = float(cells[names.index(col)]) if col and len(cells) == len(names) else None
        accs.append(float(acc))
        times.append(train_time)
        print(json.dumps({"run": run, "tta_val_acc": float(acc), "timed_seconds": train_time,
                          "script": os.path.basename(script),
                          "device": torch.cuda.get_device_name(0), "torch": torch.__version__}),
              flush=True)
    n = len(accs)
    mean = sum(accs) / n
    sd = (sum((a - mean) ** 2 for a in accs) / max(n - 1, 1)) ** 0.5
    good = [t for t in times if t is not None]
    print(json.dumps({"summary": os.path.basename(script), "runs": n, "mean_acc": mean,
                      "std_acc": sd, "mean_timed_seconds": sum(good) / len(good) if good else None}),
          flush=True)


if __name__ == "__main__":
    main()
