/* Checkpoints: weights, running statistics, optimizer state, position and seed, in one file. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

/* The algorithm one layer chose on the device (KiltNode.algo and .algo_dw, and the batch size
 * each was measured at), so that a resumed run computes as the uninterrupted one did. */
/* The largest algorithm number a checkpoint may hold (KILT_CONV_ALGO_IGEMM; 0: none chosen). */
#define KILT_CHECKPOINT_MAX_ALGO 2u
/* The most epochs a run may train (kilt-cli's --epochs) and a checkpoint may say it has done. */
#define KILT_CHECKPOINT_MAX_EPOCHS 1000000u

typedef struct
{
  guint32 node;
  guint32 algo;
  guint32 algo_batch;
  guint32 algo_dw;
  guint32 algo_dw_batch;
} KiltCheckpointAlgo;

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
  /* Version 2: the device the algorithms were chosen on (NULL: none recorded) and the choices
   * (KiltCheckpointAlgo; NULL or empty when no layer had a choice). */
  char *device_id;
  GArray *algos;
} KiltCheckpoint;

/* Written atomically (temp file + rename): the file is the old one or the new one. */
gboolean kilt_checkpoint_save (const KiltCheckpoint *ckpt, const char *path, GError **error);
/* Checks the magic, version and every size against the file's length. Reads versions 1 (no
 * algorithms) and 2. */
KiltCheckpoint *kilt_checkpoint_load (const char *path, GError **error);
/* The same from bytes already read; @path names them in messages. */
KiltCheckpoint *kilt_checkpoint_load_data (const char *buf, gsize len, const char *path,
                                           GError **error);
void kilt_checkpoint_free (KiltCheckpoint *ckpt);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (KiltCheckpoint, kilt_checkpoint_free)

G_END_DECLS
