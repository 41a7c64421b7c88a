#!/usr/bin/env python3
# Writes train.csv and test.csv beside this script: a small real text-classification data set
# of integer word ids, for an Embedding model. Each row is a window of WINDOW words from one
# of four licence texts Debian ships in /usr/share/common-licenses, labelled by the licence it
# came from. Words are lower-cased runs of letters and digits; the VOCAB most frequent words of
# the training text are ids 1 to VOCAB (ties by first appearance), every other word is id 0.
# Each text is cut into blocks of BLOCK words; every fifth block is for testing. Training
# windows lie inside the training blocks (overlapping, a stride of STRIDE), test windows inside
# the test blocks (not overlapping), so no window shares a word of the text with one of the
# other split, while both splits sample every part of each licence.
# SPDX-License-Identifier: GPL-3.0-or-later
#
# Not part of the build: run once by hand (python3 make-license-words.py); its output is
# committed.
import collections
import os
import re

SOURCES = ("GPL-3", "Apache-2.0", "MPL-2.0", "GFDL-1.3")
WINDOW = 16
STRIDE = 8
BLOCK = 64
VOCAB = 500
PER_CLASS_TRAIN = 150
PER_CLASS_TEST = 30


def words(name):
    with open(os.path.join("/usr/share/common-licenses", name), encoding="utf-8") as f:
        return re.findall(r"[a-z0-9]+", f.read().lower())


def even(items, n):
    """n items spread evenly over the list (all of them when it is shorter)."""
    if len(items) <= n:
        return items
    return [items[i * len(items) // n] for i in range(n)]


def main():
    out = os.path.dirname(os.path.abspath(__file__))
    texts = {name: words(name) for name in SOURCES}
    counts = collections.Counter()
    first = {}

    def blocks(name, test):
        n = len(texts[name])
        return [(b, min(b + BLOCK, n)) for b in range(0, n, BLOCK) if ((b // BLOCK) % 5 == 4) == test]

    for name in SOURCES:
        for lo, hi in blocks(name, False):
            for w in texts[name][lo:hi]:
                counts[w] += 1
                first.setdefault(w, len(first))
    vocab = sorted(counts, key=lambda w: (-counts[w], first[w]))[:VOCAB]
    ids = {w: i + 1 for i, w in enumerate(vocab)}
    header = ",".join(f"w{i}" for i in range(WINDOW)) + ",licence\n"
    for split in ("train", "test"):
        rows = []
        for name in SOURCES:
            w = texts[name]
            step = STRIDE if split == "train" else WINDOW
            starts = [s for lo, hi in blocks(name, split == "test")
                      for s in range(lo, hi - WINDOW + 1, step)]
            keep = even(starts, PER_CLASS_TRAIN if split == "train" else PER_CLASS_TEST)
            for s in keep:
                rows.append(",".join(str(ids.get(x, 0)) for x in w[s : s + WINDOW]) + "," + name)
        with open(os.path.join(out, f"{split}.csv"), "w") as f:
            f.write(header)
            f.write("\n".join(rows) + "\n")
        print(f"{split}.csv: {len(rows)} windows of {WINDOW} word ids (vocabulary {VOCAB} + 0)")


if __name__ == "__main__":
    main()
