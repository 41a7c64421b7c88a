/* libFuzzer target: IDX images + labels through the loader's own parsing path. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#define _GNU_SOURCE /* memmem */
#include "kilt-data-private.h"

#include <string.h>

int LLVMFuzzerTestOneInput (const guint8 *data, size_t size);

/* Input: an images file, the marker "KLBL", a labels file; either may be gzip, as on disk. */
int
LLVMFuzzerTestOneInput (const guint8 *data, size_t size)
{
  const guint8 *mark = size >= 4 ? memmem (data, size, "KLBL", 4) : NULL;
  const guint8 *parts[2] = { data, NULL };
  gsize lens[2] = { size, 0 };
  guint8 *owned[2] = { NULL, NULL };
  KiltShape shape = { 0, 0, 0 };
  KiltSplit split = { 0 };
  KiltIdxArray arr;
  KiltIdxLabelSeen seen = { -1, NULL, 0, 0 };

  if (mark)
    {
      lens[0] = (gsize)(mark - data);
      parts[1] = mark + 4;
      lens[1] = size - lens[0] - 4;
    }
  for (guint k = 0; k < 2; k++)
    if (parts[k] && kilt_data_is_gzip (parts[k], lens[k]))
      {
        if (!kilt_data_gunzip ("fuzz", parts[k], lens[k], 1 << 24, &owned[k], &lens[k], NULL))
          goto out;
        parts[k] = owned[k];
      }
  if (kilt_idx_parse ("fuzz", parts[0], lens[0], &arr, NULL) && arr.count > 0)
    (void)arr.data[arr.count - 1];
  if (parts[1])
    {
      guint n_classes = lens[1] > 0 ? parts[1][lens[1] - 1] % 16 : 0;
      if (kilt_idx_fill_split ("fuzz-images", parts[0], lens[0], "fuzz-labels", parts[1], lens[1],
                               lens[1] % 5, &shape, n_classes, &seen, &split, NULL))
        kilt_split_clear (&split);
    }
out:
  g_free (owned[0]);
  g_free (owned[1]);
  return 0;
}
