#!/usr/bin/env python3
# Writes an IDX image/label pair (e.g. resources/sample's Fashion-MNIST subset) as a CSV with one
# column per pixel and the label last: the tabular data set for the MLP benchmark workload.
# Usage: bench/idx-to-csv.py IMAGES.gz LABELS.gz OUT.csv
# SPDX-License-Identifier: GPL-3.0-or-later
import gzip, struct, sys


def main():
    images, labels, out = sys.argv[1:4]
    with gzip.open(images) as f:
        _, n, h, w = struct.unpack(">IIII", f.read(16))
        pixels = f.read(n * h * w)
    with gzip.open(labels) as f:
        f.read(8)
        ys = f.read(n)
    with open(out, "w") as f:
        f.write(",".join(f"p{i}" for i in range(h * w)) + ",label\n")
        for k in range(n):
            row = pixels[k * h * w:(k + 1) * h * w]
            f.write(",".join(str(v) for v in row) + f",{ys[k]}\n")


if __name__ == "__main__":
    main()
