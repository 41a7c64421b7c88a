/* libFuzzer target: checkpoint files. Whatever loads must have arrays of the sizes its header
 * gives, hold only finite values, and save back to the same bytes. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "kilt-checkpoint.h"

#include <glib/gstdio.h>
#include <math.h>
#include <string.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput (const guint8 *data, size_t size);

static char *
save_bytes (const KiltCheckpoint *ck, gsize *len)
{
  g_autofree char *path = g_strdup_printf ("%s/fuzz-%d.ckpt", g_get_tmp_dir (), getpid ());
  char *back = NULL;

  g_assert (kilt_checkpoint_save (ck, path, NULL));
  g_assert (g_file_get_contents (path, &back, len, NULL));
  g_unlink (path);
  return back;
}

static void
assert_same (const KiltCheckpoint *a, const KiltCheckpoint *b)
{
  g_assert (a->epochs_done == b->epochs_done && a->global_step == b->global_step);
  g_assert (a->seed == b->seed && a->model_hash == b->model_hash);
  g_assert (a->n_params == b->n_params && a->n_state == b->n_state);
  g_assert (a->n_opt_state == b->n_opt_state && a->optimizer == b->optimizer);
  g_assert (a->run_token == b->run_token && g_strcmp0 (a->device_id, b->device_id) == 0);
  g_assert (memcmp (a->params, b->params, 4 * a->n_params) == 0);
  g_assert (memcmp (a->state, b->state, 4 * a->n_state) == 0);
  g_assert (memcmp (a->opt_state, b->opt_state, 4 * a->n_opt_state) == 0);
}

int
LLVMFuzzerTestOneInput (const guint8 *data, size_t size)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (KiltCheckpoint) ck
      = kilt_checkpoint_load_data ((const char *)data, size, "fuzz.ckpt", &error);
  g_autoptr (KiltCheckpoint) again = NULL;
  g_autofree char *saved = NULL, *resaved = NULL;
  gsize len = 0, relen = 0;

  if (ck == NULL)
    {
      g_assert (error != NULL && strstr (error->message, "fuzz.ckpt"));
      return 0;
    }
  /* Touch every element (ASan checks the sizes); none is NaN or infinite. */
  for (guint64 i = 0; i < ck->n_params; i++)
    g_assert (isfinite (ck->params[i]));
  for (guint64 i = 0; i < ck->n_state; i++)
    g_assert (isfinite (ck->state[i]));
  for (guint64 i = 0; i < ck->n_opt_state; i++)
    g_assert (isfinite (ck->opt_state[i]));
  g_assert (ck->epochs_done <= KILT_CHECKPOINT_MAX_EPOCHS);

  /* Saving writes version 3; a version-3 file comes back byte for byte. Older versions come
   * back as version 3 holding the same, which saves to the same bytes again. */
  saved = save_bytes (ck, &len);
  if (ck->version == 3)
    g_assert (len == size && memcmp (saved, data, size) == 0);
  again = kilt_checkpoint_load_data (saved, len, "saved.ckpt", &error);
  g_assert (again != NULL && error == NULL && again->version == 3);
  assert_same (ck, again);
  resaved = save_bytes (again, &relen);
  g_assert (relen == len && memcmp (resaved, saved, len) == 0);

  /* Any one byte of a version-3 file changed is caught (the checksum, or a size before it). */
  {
    gsize at = size ? data[size - 1] * 131u % len : 0;
    g_autoptr (KiltCheckpoint) bad = NULL;
    saved[at] ^= 0x5a;
    bad = kilt_checkpoint_load_data (saved, len, "flipped.ckpt", &error);
    g_assert (bad == NULL && error != NULL && strstr (error->message, "flipped.ckpt"));
  }
  return 0;
}
