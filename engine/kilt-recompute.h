/* Activation recompute: which layers a training step keeps, and how the others share buffers. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

#include "kilt-model.h"

G_BEGIN_DECLS

/* Buffers sharing a slot start at multiples of this many bytes: a sub-buffer's origin must
 * be a multiple of the device's CL_DEVICE_MEM_BASE_ADDR_ALIGN (128 bytes on PoCL here); a
 * device that asks for more fails the executor with an error naming the layer. */
#define KILT_RECOMPUTE_ALIGN 4096

/* How a training step holds its activations for the backward pass. */
typedef enum
{
  KILT_MEMORY_AUTO,      /* keep everything when it fits, otherwise recompute */
  KILT_MEMORY_KEEP,      /* keep every layer's activations (never recompute) */
  KILT_MEMORY_RECOMPUTE, /* keep the fewest checkpoints: the least memory */
} KiltMemoryMode;

const char *kilt_memory_mode_name (KiltMemoryMode mode); /* "auto", "keep", "recompute" */
gboolean kilt_memory_mode_from_name (const char *name, KiltMemoryMode *out);

/* A layout of a training executor's per-node buffers. The nodes between two checkpoints (the
 * kept nodes) form a segment; the backward pass recomputes each segment's forward from the
 * checkpoint before it, just before the backward of the checkpoint that ends it (the last
 * segment's forward is still there and is not recomputed). Every buffer, a checkpoint's too,
 * lives only from when it is written to when it is last read, and buffers never alive at
 * once share device memory: each lies at an offset in a device buffer ("slot") as large as
 * the largest buffer it holds, beside or in place of others. */
typedef struct
{
  guint n_nodes;
  guint8 *keep; /* per node: 1 at a checkpoint, whose activations the backward pass reads as
                 * the forward pass left them (always node 0 and the output's owner) */
  /* Per node, the slot of its activations, saved values and activation gradient (G_MAXUINT:
   * it has none); without recompute (keep NULL) there are no slots. */
  guint *slot_out, *slot_saved, *slot_dout;
  guint64 *off_out, *off_saved, *off_dout; /* and where in it (KILT_RECOMPUTE_ALIGN apart) */
  guint n_slots;
  guint64 *slot_bytes;
  guint8 *slot_grad;   /* per slot: 1 when it holds activation gradients only */
  guint64 act_bytes;   /* the slots that hold activations or saved values (or, keep NULL,
                        * every node's own) */
  guint64 grad_bytes;  /* the slots that hold activation gradients only (or, keep NULL, every
                        * node's own) */
  guint8 *redo;        /* per node: 1 at a checkpoint whose segment the backward pass redoes just
                        * before the checkpoint's own backward */
  guint last_kept;     /* the output's owner: the last segment ends there */
  guint n_blocks;      /* the pieces between places a checkpoint may go */
  guint n_blocks_kept; /* blocks of which nothing is recomputed */
  guint64 recompute_flops; /* forward FLOPs per sample that the backward pass redoes */
  guint64 forward_flops;   /* the model's forward FLOPs per sample */
} KiltRecompute;

/* Per node, 1 where a checkpoint may go: a node that is not folded into another, with no
 * edge of the graph passing over it (every later node reads only it or later nodes).
 * Node 0 and the output's owner are always 1. Caller frees. */
guint8 *kilt_recompute_cuts (KiltModel *model);

/* The layout of built @model at @batch keeping the nodes where @keep is 1 (NULL: every node,
 * which recomputes nothing: the executor's plain layout). @keep must be 1 only where
 * kilt_recompute_cuts () is; node 0 and the output's owner are kept whatever it says. Without
 * @training there are no gradients. */
KiltRecompute *kilt_recompute_new (KiltModel *model, guint batch, gboolean training,
                                   const guint8 *keep);
void kilt_recompute_free (KiltRecompute *layout);

/* The share of a training step's compute that the recompute adds, in percent (a step is
 * taken as three forward passes: forward, and backward at twice its cost). */
double kilt_recompute_percent (const KiltRecompute *layout);

/* A recompute layout for @model at @batch whose activation and gradient bytes stay within
 * @budget, redoing the least compute; with @least_memory (or when none stays within), the
 * one that needs the least memory instead. Never NULL. */
KiltRecompute *kilt_recompute_choose (KiltModel *model, guint batch, guint64 budget,
                                      gboolean least_memory);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (KiltRecompute, kilt_recompute_free)

G_END_DECLS
