/* Runs a built model on a device for one batch size: buffers, forward and backward passes. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

#include "kilt-model.h"
#include "kilt-recompute.h"

G_BEGIN_DECLS

typedef struct _KiltExecutor KiltExecutor;

/* Called by kilt_executor_backward () once node @node's backward pass is enqueued (fused
 * nodes too), so the gradients of nodes >= @node can be taken while earlier ones compute. */
typedef void (*KiltBackwardHook) (KiltExecutor *exec, guint node, gpointer data);

struct _KiltExecutor
{
  KiltExec ex;      /* what layers see */
  KiltModel *model; /* borrowed; must outlive the executor */
  KiltBuffer *params;
  KiltBuffer *grads; /* NULL for inference-only executors */
  KiltBuffer *state;
  KiltBuffer *workspace;
  GPtrArray *node_buffers;        /* KiltBuffer*, owned: activations, gradients, saved */
  KiltRecompute *layout;          /* NULL: every node keeps its buffers (no recompute) */
  GPtrArray *slots;               /* KiltBuffer*, owned: the recomputed segments' shared ones */
  GPtrArray *views;               /* cl_mem, owned: the nodes' sub-buffers of the slots */
  KiltBackwardHook backward_hook; /* NULL: none */
  gpointer backward_hook_data;
};

/* Whether the executor folds node @i (an Activation) into its input, a Conv2D or Dense with a
 * linear activation whose only consumer it is. $KILT_NO_FUSE turns this off. */
gboolean kilt_executor_fuses (KiltModel *model, guint i);

/* The bytes an executor for @model at @batch on @info's device allocates, per memory category
 * (the planner's figures; they match what kilt_executor_new () really allocates). */
void kilt_executor_plan (KiltModel *model, guint batch, gboolean training,
                         const KiltDeviceInfo *info, guint64 bytes[KILT_MEM_N_CATEGORIES]);

/* The same for a training executor that keeps only the nodes where @keep is 1 (a
 * KiltRecompute's keep; NULL: all) and recomputes the others in the backward pass. */
void kilt_executor_plan_recompute (KiltModel *model, guint batch, const KiltDeviceInfo *info,
                                   const guint8 *keep, guint64 bytes[KILT_MEM_N_CATEGORIES]);

/* Allocates everything for @batch (no allocation happens later). With @training FALSE no
 * gradients are kept. */
KiltExecutor *kilt_executor_new (KiltContext *ctx, KiltModel *model, guint batch, gboolean training,
                                 GError **error);
/* A training executor with activation recompute: only the nodes where @keep is 1 keep their
 * buffers through the step (see KiltRecompute); NULL @keep is kilt_executor_new (). */
KiltExecutor *kilt_executor_new_recompute (KiltContext *ctx, KiltModel *model, guint batch,
                                           const guint8 *keep, GError **error);
void kilt_executor_free (KiltExecutor *exec);

/* Copies host parameters and state to the device (blocking; set-up only). */
gboolean kilt_executor_upload (KiltExecutor *exec, const float *params, const float *state,
                               GError **error);
gboolean kilt_executor_download (KiltExecutor *exec, float *params, float *state, GError **error);

/* The input node's activation buffer (batch x input shape floats), for the data gatherer. */
cl_mem kilt_executor_input (KiltExecutor *exec);

/* Enqueues the forward pass (nothing waits). Profiling tags are node * 3 + phase. */
gboolean kilt_executor_forward (KiltExecutor *exec, gboolean training, GError **error);
/* Enqueues the backward pass; the output node's dout must hold d(loss)/d(output) (or the
 * pre-softmax gradient when ex.softmax_fused_node names it). With recompute, it first redoes
 * each segment's forward from its checkpoint (so the activations of nodes that are not kept
 * are not what forward left once it returns; the output's are). */
gboolean kilt_executor_backward (KiltExecutor *exec, GError **error);

typedef enum
{
  KILT_PHASE_FORWARD,
  KILT_PHASE_BACKWARD,
  KILT_PHASE_UPDATE,
} KiltPhase;

#define KILT_PROF_TAG(node, phase) ((int)(node)*3 + (int)(phase))

G_END_DECLS
