#!/usr/bin/env python3
# Writes the small .npy files test-npy reads, with NumPy itself, so the reader is checked
# against what NumPy really writes rather than against Kilt's own idea of the format.
# SPDX-License-Identifier: GPL-3.0-or-later
#
# Not part of the build and never run in CI: run by hand (any NumPy will do), then commit
# the files, e.g.
#   python3 tests/data/npy/make-npy.py tests/data/npy
# The values follow formulas of the flat (C-order) index i, which test-npy.c computes again
# in C: keep the two in step when changing either.
import os
import sys

import numpy as np
from numpy.lib import format as npformat


def idx(shape):
    return np.arange(int(np.prod(shape, dtype=np.int64)), dtype=np.int64).reshape(shape)


def main(out):
    def save(name, a):
        np.save(os.path.join(out, name), a, allow_pickle=(a.dtype == object))

    def save_version(name, a, version):
        with open(os.path.join(out, name), "wb") as f:
            npformat.write_array(f, a, version=version)

    # float32 (2, 3, 4), C order: 0.25 i - 3.
    save("f4-c.npy", (0.25 * idx((2, 3, 4)) - 3).astype("<f4"))
    # float64 big-endian (3, 5): 1 / (i + 1) - 0.5 (not exact in float32: rounding is checked).
    save("f8-be.npy", (1.0 / (idx((3, 5)) + 1) - 0.5).astype(">f8"))
    # uint8 (4, 4): 37 i mod 256.
    save("u1.npy", ((37 * idx((4, 4))) % 256).astype("|u1"))
    # int64 (6,): (i - 3) 2^33 + i, wider than float32's 24 bits and negative at first.
    save("i8.npy", ((idx((6,)) - 3) * 2**33 + idx((6,))).astype("<i8"))
    # int16 big-endian (5,): 1000 (i - 2).
    save("i2-be.npy", (1000 * (idx((5,)) - 2)).astype(">i2"))
    # bool (7,): i mod 3 == 0.
    save("b1.npy", (idx((7,)) % 3 == 0))
    # A rank-0 float32: 2.5.
    save("f4-scalar.npy", np.array(2.5, dtype="<f4"))
    # Format versions 2.0 and 3.0 (4-byte header length), float32 (5,): 0.25 i - 3.
    save_version("f4-v2.npy", (0.25 * idx((5,)) - 3).astype("<f4"), (2, 0))
    save_version("f4-v3.npy", (0.25 * idx((5,)) - 3).astype("<f4"), (3, 0))
    # Refused: Fortran order, complex numbers and Python objects.
    save("f4-fortran.npy", np.asfortranarray((0.25 * idx((2, 3)) - 3).astype("<f4")))
    save("c8.npy", (idx((3,)) + 1j).astype("<c8"))
    save("object.npy", np.array([1, "a", None], dtype=object))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__)))
