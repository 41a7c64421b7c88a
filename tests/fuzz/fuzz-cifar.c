/* libFuzzer target: CIFAR-10 and CIFAR-100 batch bytes and class-name lists. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "kilt-data-private.h"

int LLVMFuzzerTestOneInput (const guint8 *data, size_t size);

int
LLVMFuzzerTestOneInput (const guint8 *data, size_t size)
{
  KiltSplit split = { 0 };
  char **names;

  /* The same batch read as CIFAR-10, then appended to as CIFAR-100 (fine and coarse). */
  kilt_cifar_parse_batch ("fuzz", data, size, 1, 0, 10, 0, &split, NULL);
  kilt_cifar_parse_batch ("fuzz", data, size, 2, 1, 100, 3, &split, NULL);
  kilt_cifar_parse_batch ("fuzz", data, size, 2, 0, 20, 0, &split, NULL);
  for (gsize i = 0; i < split.n; i++)
    g_assert (split.labels[i] >= 0 && split.labels[i] < 100);
  kilt_split_clear (&split);
  names = kilt_data_parse_names ((const char *)data, size);
  g_strfreev (names);
  return 0;
}
