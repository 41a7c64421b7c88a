#!/usr/bin/env python3
# Rebuilds the bundled sample from Debian's dataset-fashion-mnist: the first 1,000 training and
# first 250 test images with their labels, as gzip IDX files (deterministic bytes: mtime 0).
# SPDX-License-Identifier: GPL-3.0-or-later
import gzip, struct, sys

src = sys.argv[1] if len(sys.argv) > 1 else "/usr/share/datasets/fashion-mnist"
for prefix, n in (("train", 1000), ("t10k", 250)):
    for kind, idx in (("images", 3), ("labels", 1)):
        data = gzip.open(f"{src}/{prefix}-{kind}-idx{idx}-ubyte.gz").read()
        ndims = data[3]
        dims = list(struct.unpack(">" + "I" * ndims, data[4:4 + 4 * ndims]))
        per = 1
        for d in dims[1:]:
            per *= d
        dims[0] = n
        out = data[:4] + struct.pack(">" + "I" * ndims, *dims)
        out += data[4 + 4 * ndims:4 + 4 * ndims + n * per]
        with open(f"{prefix}-{kind}-idx{idx}-ubyte.gz", "wb") as f:
            f.write(gzip.compress(out, compresslevel=9, mtime=0))
