/* One device's part of a data-parallel run, and what replicas do together. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

#include "kilt-batcher.h"
#include "kilt-comm.h"
#include "kilt-exec.h"
#include "kilt-optimizer.h"

G_BEGIN_DECLS

/* Its context, a copy of the model (the first replica's is the trainer's own), the executor,
 * optimizer and data. One replica on one device; several train data-parallel, each on its
 * rows of every global batch, and every one applies the same summed gradients. */
typedef struct
{
  KiltContext *ctx;
  KiltModel *model;
  KiltExecutor *exec;
  KiltOptimizer *opt;
  KiltBatcher *train_batcher;
  KiltBatcher *eval_batcher;
  KiltBatcher *test_batcher; /* the test split when the trainer evaluates the validation split */
  KiltBuffer *targets;
  KiltBuffer *metrics;
  KiltBuffer *eval_metrics;
  /* Evaluation alone builds an inference executor, with no gradient buffers: the loss kernel's
   * gradient output goes here instead (batch x outputs floats, never read). */
  KiltBuffer *eval_dout;
  KiltBuffer *tta_out; /* flip test-time augmentation: the unflipped pass's outputs */
  /* Several replicas: the replica's rows of every global batch (first, share: within this
   * rank's rows), the most its executor holds (cap), this step's real rows, and the device
   * time calibration measured per step. */
  guint first, share, cap;
  guint n_valid;
  double step_ms;
  double busy_ms; /* the sampled steps' device time this epoch (the busy figure) */
} KiltReplica;

/* Frees what the replica holds (the model only when @owns_model) and zeroes it. */
void kilt_replica_clear (KiltReplica *r, gboolean owns_model);

/* A copy of @model for another replica: the same structure and parameter layout (checked by
 * its hash), its own per-device choices. */
KiltModel *kilt_replica_copy_model (KiltModel *model, GError **error);

/* Makes the @n replicas (and, with @comm, every rank's) hold the same weights: parameters
 * and optimizer state as replica @src (of rank 0) has them, non-trainable state (running
 * statistics, which each replica updates from its own rows) averaged over all. Blocking. */
gboolean kilt_replicas_sync (KiltReplica *rep, guint n, guint src, KiltComm *comm, GError **error);

/* Replica @i's device name plus the others' ("NVIDIA H200 + pthread-..."); caller frees. */
char *kilt_replicas_names (const KiltReplica *rep, guint n);

G_END_DECLS
