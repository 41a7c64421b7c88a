/* Device memory accounting: every buffer has a category; live and peak bytes per category. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

#include <glib.h>
#include <CL/cl.h>

G_BEGIN_DECLS

typedef enum
{
  KILT_MEM_WEIGHTS,
  KILT_MEM_GRADIENTS,
  KILT_MEM_OPTIMIZER,
  KILT_MEM_ACTIVATIONS,
  KILT_MEM_WORKSPACE,
  KILT_MEM_DATASET,
  KILT_MEM_N_CATEGORIES
} KiltMemCategory;

/* Counters readable from any thread (atomics). */
typedef struct
{
  gint64 live[KILT_MEM_N_CATEGORIES];
  gint64 peak[KILT_MEM_N_CATEGORIES];
  gint64 live_total;
  gint64 peak_total;
} KiltMemStats;

typedef struct _KiltContext KiltContext;

typedef struct
{
  cl_mem mem;
  gsize bytes;
  KiltMemCategory category;
  char *label;
  KiltContext *ctx;
} KiltBuffer;

const char *kilt_mem_category_name (KiltMemCategory category);

/* Allocates @bytes on the context's device, touches it so a late failure shows now, and
 * accounts it. The message names @label_fmt ("layer conv2d_3 activations"), the size and the
 * device. Subject to the context's budget and to fault injection. Free with kilt_buffer_free. */
KiltBuffer *kilt_buffer_new (KiltContext *ctx, KiltMemCategory category, gsize bytes,
                             GError **error, const char *label_fmt, ...) G_GNUC_PRINTF (5, 6);
void kilt_buffer_free (KiltBuffer *buffer);

/* Blocking copies, for set-up and tests (never inside a training step). */
gboolean kilt_buffer_write (KiltBuffer *buffer, gsize offset, const void *src, gsize bytes,
                            GError **error);
gboolean kilt_buffer_read (KiltBuffer *buffer, gsize offset, void *dst, gsize bytes,
                           GError **error);

/* A consistent snapshot of the context's counters (callable from any thread). */
void kilt_mem_stats_snapshot (const KiltMemStats *stats, KiltMemStats *out);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (KiltBuffer, kilt_buffer_free)

G_END_DECLS
