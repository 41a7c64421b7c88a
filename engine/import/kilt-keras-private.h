/* What the parts of the Keras JSON importer share: the import's state and its helpers. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

#include "kilt-keras.h"

#include <json-glib/json-glib.h>

G_BEGIN_DECLS

#define KILT_KERAS_MAX_DIM (1u << 24)
/* How deep models may nest in one another (a base in a Sequential, blocks in the base). */
#define KILT_KERAS_MAX_NESTING 16

typedef enum
{
  FORMAT_UNKNOWN,
  FORMAT_CHANNELS_LAST,
  FORMAT_CHANNELS_FIRST,
} DataFormat;

/* One Keras layer entry, whatever the file's generation. */
typedef struct
{
  const char *name;
  const char *class_name;
  JsonObject *config;
  JsonObject *layer;  /* the whole entry (its inbound_nodes hold constant operands) */
  GPtrArray *inbound; /* const char*: names of the layers it reads (functional models) */
  guint n_calls;      /* how many times the layer is called (shared layers: more than one) */
  guint position;     /* 1-based, in the file's layers list */
  gboolean named;     /* the file gave a name (else it is the class name) */
  int state;          /* ordering: 0 unseen, 1 on the stack, 2 done */
} Entry;

/* The Keras mask a Kilt node's output carries: which steps of its sequence later layers skip,
 * as a step mask reads it (KiltLayerConfig.step_mask) from node @src's output. */
typedef struct
{
  guint src; /* G_MAXUINT: no mask; KERAS_MASK_MIXED: the combined masks of a merge */
  KiltStepMask kind;
  float value;
} KerasMask;
#define KERAS_MASK_MIXED (G_MAXUINT - 1)

typedef struct
{
  const char *source;
  KiltModel *model;
  GString *notes;
  DataFormat format;
  GArray *rank;          /* guint per Kilt node: 2 (vector) or 4 (image), with the batch */
  GHashTable *node_of;   /* Keras layer name -> Kilt node index + 1 */
  const Entry *cur;      /* the layer being converted, for messages */
  gboolean keras3;       /* written by Keras 3 (whose hard_sigmoid differs from Keras 2's) */
  GHashTable *name_uses; /* layer name -> how many layers at any depth of nesting have it */
  guint depth;           /* how many nested models the layer being converted is inside */
  GArray *mask;          /* KerasMask per Kilt node */
  KerasMask made;        /* the mask the layer being converted makes (Embedding, Masking) */
} Import;

/* Messages: "SOURCE: layer NAME (CLASS): ..." and notes of the same form. */
void keras_set_error (GError **error, const Import *imp, const char *fmt, ...) G_GNUC_PRINTF (3, 4);
void keras_add_note (Import *imp, const char *fmt, ...) G_GNUC_PRINTF (2, 3);

/* JSON access; a member holding null reads as absent (Keras writes null for "not set"). */
JsonNode *keras_member (JsonObject *o, const char *key);
gboolean keras_node_is (JsonNode *n, GType type);
const char *keras_member_string (JsonObject *o, const char *key);
JsonObject *keras_member_object (JsonObject *o, const char *key);
JsonArray *keras_member_array (JsonObject *o, const char *key);
char *keras_render (JsonNode *n);
const char *keras_object_class (JsonNode *n);

/* Typed options; an absent one leaves *out as it was. */
gboolean keras_get_int (const Import *imp, JsonNode *n, const char *key, guint min, guint *out,
                        GError **error);
gboolean keras_get_pair (const Import *imp, JsonObject *cfg, const char *key, guint *a, guint *b,
                         GError **error);
gboolean keras_get_double (const Import *imp, JsonObject *cfg, const char *key, double lo,
                           double hi, double *out, GError **error);
gboolean keras_get_bool (const Import *imp, JsonObject *cfg, const char *key, gboolean *out,
                         GError **error);

/* Options many layers share. */
gboolean keras_check_data_format (Import *imp, JsonObject *cfg, GError **error);
/* Sets out->activation (and alpha where the function has one) from Keras' name, as the
 * file's Keras version defines it. */
gboolean keras_get_activation_name (Import *imp, const char *name, KiltLayerConfig *out,
                                    GError **error);
gboolean keras_get_activation (Import *imp, JsonObject *cfg, KiltLayerConfig *out, GError **error);
void keras_note_weight_options (Import *imp, JsonObject *cfg, const char *prefix, KiltInit *init);
gboolean keras_get_padding (Import *imp, JsonObject *cfg, gboolean *same, GError **error);
gboolean keras_is_channel_axis (const Import *imp, gint64 axis, guint rank);
gboolean keras_get_axis (Import *imp, JsonObject *cfg, const char *key, gint64 def, gint64 *axis,
                         GError **error);

/* Masks (kilt-keras-mask.c). Before a node for the layer being converted is added: a layer
 * that skips masked steps (LSTM, GRU, GlobalAveragePooling1D) whose input carries a mask gets
 * its source as a last input (@cfg, @n_inputs and @inputs change, @inputs holding room for
 * one more); sets @out to the mask the node's output carries, as Keras propagates it. A layer
 * that would use a mask Kilt cannot is refused by name. */
gboolean keras_mask_for_node (Import *imp, KiltLayerType type, KiltLayerConfig *cfg,
                              guint *n_inputs, guint *inputs, KerasMask *out, GError **error);
/* No mask. */
KerasMask keras_mask_none (void);

/* The graph being built. */
guint keras_node_rank (const Import *imp, guint node);
gboolean keras_add_node (Import *imp, KiltLayerType type, const KiltLayerConfig *cfg,
                         guint n_inputs, const guint *inputs, guint rank, GError **error);
/* The same, named "LAYER/@suffix" (@suffix NULL: the layer's name). */
gboolean keras_add_node_as (Import *imp, const char *suffix, KiltLayerType type,
                            const KiltLayerConfig *cfg, guint n_inputs, const guint *inputs,
                            guint rank, GError **error);
/* A further node for the same Keras layer, named "LAYER/@suffix" (Keras names hold no '/'),
 * reading the layer's last node; the layer's name then stands for it. */
gboolean keras_add_extra_node (Import *imp, KiltLayerType type, const KiltLayerConfig *cfg,
                               const char *suffix, GError **error);

/* One call of a Keras layer, as its converter sees it; the converter may change @rank
 * (the output's: 2 for vectors, 3 for sequences (steps, channels), which Kilt holds as
 * (channels, 1, steps), 4 for images). */
typedef struct
{
  JsonObject *c;
  const char *cls;
  guint n_inputs;
  const guint *inputs;
  guint rank;
  guint filters; /* SeparableConv2D's pointwise filters */
  guint causal;  /* Conv1D with causal padding: the steps to pad on the left */
} KerasCall;

/* Adds the Kilt node(s) for one Keras layer @e reading @inputs (Kilt node indices), through
 * the converter table of kilt-keras-layers.c. */
gboolean keras_convert_layer (Import *imp, const Entry *e, guint n_inputs, const guint *inputs,
                              GError **error);

/* The Kilt node names (NAME/these) of a Bidirectional's forward and backward halves, from its
 * config @c; free with g_free. */
void keras_bidirectional_names (JsonObject *c, char **forward, char **backward);

/* Converts nested model @e (Sequential or functional) reading Kilt node @inputs[0] into the
 * model's graph, layer by layer; its name then stands for its output (kilt-keras.c). */
gboolean keras_convert_nested (Import *imp, const Entry *e, guint n_inputs, const guint *inputs,
                               GError **error);

G_END_DECLS
