/* Shared by the Keras weights reader and writer: each layer's Keras class and options, the
 * per-layer-type table of variables, and the feature order after a Flatten. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

#include "kilt-model.h"

G_BEGIN_DECLS

/* How deep nested models' groups may nest in a Keras 3 weights file (as the importer's
 * KILT_KERAS_MAX_NESTING). */
#define KILT_KERAS_WEIGHTS_MAX_NESTING 16

typedef struct
{
  char *class_name;
  char *key; /* Keras 3's group name: the class in snake case, _1, _2 for repeats */
  /* Keras 2 (.h5): inside a nested model, "OUTER/NAME": OUTER is the top-level model layer
   * whose group holds the weights of every layer nested in it, at any depth, under their
   * own names; NULL at the top, where the group is the node's name. */
  char *key2;
  gboolean center; /* BatchNormalization */
  gboolean scale;
  gboolean known; /* the JSON gave this layer */
  /* A node that is one part of a Keras layer (a SeparableConv2D's "NAME/depthwise"): the
   * Keras layer's name, whose group (key, key2) holds the variables of every part; NULL
   * otherwise. */
  char *part_of;
  gboolean use_bias; /* SeparableConv2D: the Keras layer has a bias (its pointwise part's) */
} LayerInfo;

typedef enum
{
  PLACE_COPY,             /* dst[i] = src[i] (permuted by the input's feature order, if any) */
  PLACE_DENSE_KERNEL,     /* (in, units), rows in the input's feature order */
  PLACE_CONV_KERNEL,      /* Keras HWIO (kh, kw, in, out) -> Kilt OIHW */
  PLACE_DEPTHWISE_KERNEL, /* Keras (kh, kw, c, dm) -> Kilt (c, dm, kh, kw) */
  PLACE_CONV1D_KERNEL,    /* Keras (k, in, out) -> Kilt (out, in, 1, k) */
  PLACE_POINTWISE_KERNEL, /* Keras Dense (in, out) on an image -> Kilt 1x1 Conv2D (out, in) */
} Place;

typedef struct
{
  const char *name; /* Keras 2's variable name */
  gboolean present; /* the Keras layer has it (Keras 3 lists only those) */
  guint rank;
  gsize dims[4];
  float *dst; /* NULL: not in Kilt (filled instead) */
  Place place;
  gboolean permute; /* PLACE_COPY over the input's features */
  float fill;       /* when not present */
  gsize n;          /* floats at dst */
  /* In the Keras layer's group but another part's (a SeparableConv2D's pointwise kernel, seen
   * from its depthwise part): counted in Keras 3's order, neither read nor written here. */
  gboolean elsewhere;
} Var;

/* Moves @v's values between Keras' layout (@keras) and Kilt's (@kilt), towards Kilt when
 * @to_kilt, else back (the writer): the one place that knows each Place's index mapping.
 * @perm: the input's feature order (Dense rows, PLACE_COPY with permute), or NULL. */
void kilt_keras_place (const Var *v, float *keras, float *kilt, const guint *perm,
                       gboolean to_kilt);

/* What a node's Keras variables are and where each goes; *n_vars set. FALSE with an error
 * when the node's parameter count is not what the table expects. */
typedef gboolean (*ExpectFunc) (const KiltNode *node, const LayerInfo *li, float *params,
                                float *state, Var *vars, guint *n_vars, GError **error);

/* Node name -> LayerInfo, from the Keras JSON when there is one (may be NULL), else from the
 * model's own types, in the order Keras lists its layers; *channels_first from any layer's
 * data_format. Free with g_hash_table_unref. */
GHashTable *kilt_keras_layer_infos (KiltModel *model, const char *keras_json,
                                    gboolean *channels_first);
/* The table's entry for @type, or NULL: a type with no Keras variables. */
ExpectFunc kilt_keras_find_expect (KiltLayerType type);
/* Per node, NULL or the Keras index of each Kilt feature of its (vector) output; NULL with an
 * error naming @path when the order cannot be followed. Free with kilt_keras_free_orders. */
guint **kilt_keras_feature_orders (KiltModel *model, gboolean channels_first, const char *path,
                                   GError **error);
void kilt_keras_free_orders (KiltModel *model, guint **perm);

/* libhdf5 as Debian builds it is not thread-safe: every use in this process holds this. */
void kilt_keras_h5_lock (void);
void kilt_keras_h5_unlock (void);

G_END_DECLS
