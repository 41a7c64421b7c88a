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
  /* Version 3: the optimizer whose state opt_state holds, as KiltOptimizerType + 1 (0: not
   * recorded, as in versions 1 and 2), and a token of the run that wrote the file (0: none), so
   * that a run resumes only from its own weights. */
  guint32 optimizer;
  guint64 run_token;
  guint32 version; /* the file's, when loaded; 0 for one made in memory */
} KiltCheckpoint;

/* What a checkpoint file says of itself, read without loading or verifying its arrays. */
typedef struct
{
  guint32 version;
  guint32 epochs_done;
  guint64 global_step;
  guint64 model_hash;
  guint32 optimizer; /* as KiltCheckpoint.optimizer */
  guint64 run_token; /* 0 before version 3 */
} KiltCheckpointInfo;

/* Writes version 3, crash-safe: a temporary file beside @path, flushed to disk (fsync), then
 * renamed over @path, and the folder flushed; the file is the old one or the new one, also
 * after a crash or a full disk. Refuses weights that are not finite (NaN or infinity) and an
 * epoch count above KILT_CHECKPOINT_MAX_EPOCHS. */
gboolean kilt_checkpoint_save (const KiltCheckpoint *ckpt, const char *path, GError **error);
/* Checks the magic, version and every size against the file's length, version 3's CRC-32 over
 * everything before it, that every weight and state value is finite and that the epoch count
 * is sane. Reads versions 1 (no algorithms), 2 (no checksum, optimizer or run token) and 3. */
KiltCheckpoint *kilt_checkpoint_load (const char *path, GError **error);
/* The header (and version 3's run token) of the checkpoint at @path, reading a few bytes;
 * nothing is verified beyond the magic, version and size. */
gboolean kilt_checkpoint_read_info (const char *path, KiltCheckpointInfo *out, GError **error);
/* The same from bytes already read; @path names them in messages. */
KiltCheckpoint *kilt_checkpoint_load_data (const char *buf, gsize len, const char *path,
                                           GError **error);
void kilt_checkpoint_free (KiltCheckpoint *ckpt);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (KiltCheckpoint, kilt_checkpoint_free)

G_END_DECLS
