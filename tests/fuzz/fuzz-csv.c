/* libFuzzer target: CSV text through kilt_csv_parse with several option sets. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#define _GNU_SOURCE /* memmem */
#include "kilt-data-private.h"

#include <string.h>

int LLVMFuzzerTestOneInput (const guint8 *data, size_t size);

int
LLVMFuzzerTestOneInput (const guint8 *data, size_t size)
{
  const guint8 *mark = size >= 4 ? memmem (data, size, "\n--\n", 4) : NULL;
  gsize train_len = mark ? (gsize)(mark - data) : size;
  KiltLoadOptions opts;
  KiltDataset *ds;

  kilt_load_options_init (&opts);
  for (guint round = 0; round < 3; round++)
    {
      opts.drop_bad_rows = round > 0;
      opts.task = round == 2 ? KILT_TASK_REGRESSION : KILT_TASK_CLASSIFICATION;
      opts.label_column = round == 1 ? "0" : NULL;
      opts.header = round == 2 ? KILT_HEADER_NO : KILT_HEADER_AUTO;
      opts.max_samples = round == 1 ? 3 : 0;
      /* Text after a "--" line is a test file, read with the training file's statistics. */
      ds = kilt_csv_parse ("fuzz-train", (const char *)data, train_len, mark ? "fuzz-test" : NULL,
                           mark ? (const char *)mark + 4 : NULL, mark ? size - train_len - 4 : 0,
                           &opts, NULL);
      if (ds)
        {
          g_autofree char *text = NULL;
          kilt_dataset_compute_stats (ds);
          kilt_dataset_compute_hash (ds);
          text = kilt_dataset_describe (ds);
          if (ds->train.n > 2)
            kilt_dataset_split_validation (ds, 0.5, 1, NULL);
          kilt_dataset_free (ds);
        }
    }
  return 0;
}
