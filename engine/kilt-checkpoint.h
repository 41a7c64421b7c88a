/* Checkpoints: weights, running statistics, optimizer state, position and seed, in one file. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

typedef struct
{
  guint64 n_params;
  guint64 n_state;
  guint64 n_opt_state;
  guint32 epochs_done; /* completed epochs */
  guint64 global_step; /* optimizer iterations done */
  guint32 seed;
  guint64 model_hash; /* kilt_checkpoint_model_hash () of the model it belongs to */
  float *params;
  float *state;
  float *opt_state;
} KiltCheckpoint;

/* Written atomically (temp file + rename): the file is the old one or the new one. */
gboolean kilt_checkpoint_save (const KiltCheckpoint *ckpt, const char *path, GError **error);
/* Checks the magic, version and every size against the file's length. */
KiltCheckpoint *kilt_checkpoint_load (const char *path, GError **error);
void kilt_checkpoint_free (KiltCheckpoint *ckpt);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (KiltCheckpoint, kilt_checkpoint_free)

G_END_DECLS
