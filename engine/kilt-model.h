/* A model: a directed acyclic graph of layer nodes, its loss, and the flat parameter layout. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

#include "kilt-layer.h"

G_BEGIN_DECLS

typedef enum
{
  KILT_LOSS_SOFTMAX_CROSS_ENTROPY, /* categorical; the last node ends in softmax */
  KILT_LOSS_BINARY_CROSS_ENTROPY,  /* sigmoid outputs, 0/1 targets */
  KILT_LOSS_MSE,                   /* regression */
} KiltLossType;

/* Far above any real network (ResNet-152 has about 500 layers); loaders refuse more before
 * converting anything, so a hostile file is cheap to turn down. */
#define KILT_MODEL_MAX_LAYERS 100000

/* A run of trainable parameters: @n floats at @param_offset in the parameter buffer, whose
 * gradients (and optimizer state) are at @grad_offset in the gradient buffer. The optimizer
 * leaves a run alone when @fixed (a whitening kernel: it has a gradient, never an update), or
 * from 0-based epoch @until_epoch on when that is not 0 (a whitening bias); it steps it at
 * the run's rate times @lr_multiplier and the weight decay over it (its layers'). */
typedef struct
{
  gsize param_offset, grad_offset, n;
  gboolean fixed;
  guint until_epoch;
  float lr_multiplier;
} KiltParamRange;

typedef struct
{
  char *name;
  GPtrArray *nodes;                   /* KiltNode*, owned; every node's inputs come earlier */
  GHashTable *by_name;                /* node name -> KiltNode*, the first of that name */
  guint name_seq[KILT_LAYER_N_TYPES]; /* next suffix to try for a default name, per type */
  KiltLossType loss;
  gsize n_params; /* after kilt_model_build () */
  gsize n_state;
  /* After kilt_model_build (): the trainable parameters (those of nodes not frozen), which
   * alone have gradients and optimizer state, and the runs they form in the parameter buffer
   * (one when nothing, or only a first part of the model, is frozen). */
  gsize n_grads;
  KiltParamRange *grad_ranges;
  guint n_grad_ranges;
  gboolean built;
  /* Starting weights that came with the model (an imported Keras file), or NULL: whoever runs
   * the model uploads these instead of initialising, while their sizes match the built model.
   * See kilt_model_set_weights (). */
  float *weights_params;
  float *weights_state;
  gsize weights_n_params, weights_n_state;
  char *weights_note; /* "weights loaded from X: N tensors, M parameters" */
  /* The Keras architecture (model.to_json () text) the model was imported from, or NULL. It
   * travels in Kilt's JSON of the model (to runs and the worker) so that the trained model
   * can go back out as a .keras file with Keras' own layer names; a model changed since
   * (a new head, another input size) no longer matches it, which export checks. */
  char *keras_json;
} KiltModel;

KiltModel *kilt_model_new (const char *name);
void kilt_model_free (KiltModel *model);

/* Adds a node; returns its index. Input nodes take @shape; others take @inputs (earlier
 * indices). A NULL @name becomes "<type>_<n>", a name no node has yet. Invalidates a previous
 * build. */
guint kilt_model_add_input (KiltModel *model, const char *name, KiltShape shape);
guint kilt_model_add (KiltModel *model, KiltLayerType type, const char *name,
                      const KiltLayerConfig *cfg, guint n_inputs, const guint *inputs);
/* Sequential shorthand: input is the last node added. */
guint kilt_model_append (KiltModel *model, KiltLayerType type, const KiltLayerConfig *cfg);

/* Infers every shape, checks the graph (one input, one output, inputs earlier, counts right,
 * at most KILT_MODEL_MAX_LAYERS after the input), and lays out parameters. Errors name the
 * node. */
gboolean kilt_model_build (KiltModel *model, GError **error);

/* Drops every node from index @n_nodes on (at least the input stays); the model must be built
 * again. */
void kilt_model_truncate (KiltModel *model, guint n_nodes);

KiltNode *kilt_model_node (KiltModel *model, guint index);
KiltNode *kilt_model_output (KiltModel *model);
guint kilt_model_n_nodes (KiltModel *model);
/* The first node named @name, or NULL; constant time. */
KiltNode *kilt_model_find (KiltModel *model, const char *name);

/* Gives @model starting weights (takes @params and @state, n_params and n_state floats of the
 * built model, and copies @note). NULL @params drops them. */
void kilt_model_set_weights (KiltModel *model, float *params, float *state, const char *note);
/* The starting weights, or FALSE when there are none or they no longer fit the built model
 * (its layout changed after they were set). Borrowed pointers. */
gboolean kilt_model_get_weights (KiltModel *model, const float **params, const float **state);

/* Freezes (@trainable FALSE) or unfreezes node @index; a built model's gradient layout
 * follows at once (the parameter layout never changes). */
void kilt_model_set_trainable (KiltModel *model, guint index, gboolean trainable);
/* Number of nodes with parameters that are frozen. */
guint kilt_model_n_frozen (KiltModel *model);

/* Seeded initialisation of host copies (n_params and n_state floats). */
void kilt_model_init_params (KiltModel *model, guint64 seed, float *params, float *state);

/* Forward FLOPs per sample (multiply-add = 2). */
guint64 kilt_model_flops (KiltModel *model);

/* Number of output classes (softmax / binary: the output size). */
guint kilt_model_n_outputs (KiltModel *model);

/* A fingerprint of the built structure (types, shapes, parameter layout), for checkpoints. */
guint64 kilt_model_hash (KiltModel *model);

const char *kilt_loss_name (KiltLossType loss);
gboolean kilt_loss_from_name (const char *name, KiltLossType *out);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (KiltModel, kilt_model_free)

G_END_DECLS
