/* A model's layer table: output shapes, parameters, FLOPs and memory, as rows or as text. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

#include "kilt-model.h"

G_BEGIN_DECLS

typedef struct
{
  char *name;
  const char *type;    /* "Conv2D" (static) */
  char *inputs;        /* names of the layers it reads, ", "-separated ("" for the input) */
  KiltShape out_shape; /* per sample, channels first */
  gsize params;        /* parameter floats (trainable unless frozen) */
  gsize state;         /* non-trainable floats (running statistics) */
  gboolean frozen;     /* trainable = false: params count as non-trainable */
  guint64 flops;       /* forward, per sample; a multiply-add counts 2 */
  guint64 act_bytes;   /* device bytes this layer holds for training at the batch size:
                        * its activations, their gradients and values kept for backward */
} KiltSummaryRow;

typedef struct
{
  char *model_name;
  KiltLossType loss;
  guint batch;
  gboolean is_chain;       /* every layer reads the one before: no "Connected to" column */
  GArray *rows;            /* KiltSummaryRow */
  gsize total_params;      /* trainable: the parameters of layers not frozen, but for whitening
                            * kernels */
  gsize total_state;       /* non-trainable: running statistics, frozen layers' parameters
                            * and whitening kernels */
  guint64 total_flops;     /* forward, per sample */
  guint64 total_act_bytes; /* sum of act_bytes */
} KiltSummary;

/* The table for a built model at @batch (for the memory column). */
KiltSummary *kilt_summary_new (KiltModel *model, guint batch);
void kilt_summary_free (KiltSummary *summary);

/* Keras-like text (as `kilt-cli summary` prints it). Caller frees. */
char *kilt_summary_to_text (const KiltSummary *summary);

/* Shape as Keras prints it, batch first and channels last: "(None, 32, 32, 3)", "(None, 10)".
 * Caller frees. */
char *kilt_summary_format_shape (const KiltShape *shape);

/* "1.25 M", "20.7 G", "896": a count with an SI prefix. Caller frees. */
char *kilt_summary_format_count (guint64 count);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (KiltSummary, kilt_summary_free)

G_END_DECLS
