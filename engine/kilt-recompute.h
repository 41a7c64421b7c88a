/* Activation recompute: which layers a training step keeps, and how the others share buffers. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

#include "kilt-model.h"

G_BEGIN_DECLS

/* How a training step holds its activations for the backward pass. */
typedef enum
{
  KILT_MEMORY_AUTO,      /* keep everything when it fits, otherwise recompute */
  KILT_MEMORY_KEEP,      /* keep every layer's activations (never recompute) */
  KILT_MEMORY_RECOMPUTE, /* keep the fewest checkpoints: the least memory */
} KiltMemoryMode;

const char *kilt_memory_mode_name (KiltMemoryMode mode); /* "auto", "keep", "recompute" */
gboolean kilt_memory_mode_from_name (const char *name, KiltMemoryMode *out);

/* A layout of a training executor's per-node buffers. Kept nodes (the checkpoints) own their
 * activations, saved values and activation gradients for the whole step. The nodes between
 * two checkpoints form a segment; the segments share buffers ("slots"): the i-th largest
 * buffer of every segment goes into slot i, sized for the largest of them. The backward pass
 * recomputes each segment's forward from its first checkpoint before running the segment's
 * backward (the last segment's forward is still in its slots and is not recomputed). */
typedef struct
{
  guint n_nodes;
  guint8 *keep; /* per node: 1 owns its buffers (always node 0 and the output's owner) */
  /* Per node not kept: the slot of its activations, saved values and activation gradient
   * (G_MAXUINT: it has none); act_* slots hold the first two, grad_* the last. */
  guint *slot_out, *slot_saved, *slot_dout;
  guint n_act_slots, n_grad_slots;
  guint64 *act_slot_bytes, *grad_slot_bytes;
  guint64 act_bytes;   /* all the activations and saved values the layout allocates */
  guint64 grad_bytes;  /* all the activation gradients */
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
