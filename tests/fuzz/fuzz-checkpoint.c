/* libFuzzer target: checkpoint files. Whatever loads must have arrays of the sizes its header
 * gives, and save back to the same bytes. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "kilt-checkpoint.h"

#include <glib/gstdio.h>
#include <string.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput (const guint8 *data, size_t size);

static volatile float sink;

int
LLVMFuzzerTestOneInput (const guint8 *data, size_t size)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (KiltCheckpoint) ck
      = kilt_checkpoint_load_data ((const char *)data, size, "fuzz.ckpt", &error);

  if (ck == NULL)
    {
      g_assert (error != NULL && strstr (error->message, "fuzz.ckpt"));
      return 0;
    }
  /* Touch every element (ASan checks the sizes). */
  for (guint64 i = 0; i < ck->n_params; i++)
    sink += ck->params[i];
  for (guint64 i = 0; i < ck->n_state; i++)
    sink += ck->state[i];
  for (guint64 i = 0; i < ck->n_opt_state; i++)
    sink += ck->opt_state[i];
  /* Version 2 files save back byte for byte but for the header's padding, which is written
   * as zero (version 1 files come back as version 2). */
  if (data[8] == 2)
    {
      g_autofree char *path = g_strdup_printf ("%s/fuzz-%d.ckpt", g_get_tmp_dir (), getpid ());
      g_autofree char *back = NULL;
      g_autofree guint8 *want = g_memdup2 (data, size);
      gsize len = 0;
      memset (want + 20, 0, 4);
      g_assert (kilt_checkpoint_save (ck, path, NULL));
      g_assert (g_file_get_contents (path, &back, &len, NULL));
      g_unlink (path);
      g_assert (len == size && memcmp (back, want, size) == 0);
    }
  return 0;
}
