/* The ONNX graph being written: the messages of protobuf-c's generated bindings, the values of
 * Kilt's nodes, and the helpers the layer mappings build them with. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

#include "kilt-model.h"
#include "onnx.pb-c.h"

G_BEGIN_DECLS

typedef struct
{
  KiltModel *model;
  const float *params, *state;
  GPtrArray *arena;     /* everything allocated for the messages, freed at the end */
  GPtrArray *ops;       /* Onnx__NodeProto* */
  GPtrArray *inits;     /* Onnx__TensorProto* */
  GHashTable *names;    /* value names taken */
  const char **value;   /* per Kilt node: the ONNX value holding its output */
  guint *rank;          /* per Kilt node: 2 ((batch, C), for 1x1 values) or 4 (NCHW) */
  const KiltNode *node; /* the layer being written, for names and errors */
} KiltOnnxGraph;

/* Memory owned by the graph (freed with its arena). */
gpointer kilt_onnx_alloc (KiltOnnxGraph *e, gsize size);
char *kilt_onnx_strdup (KiltOnnxGraph *e, const char *s);
/* A value name no other value has: "<layer>/<what>" (@what NULL: the layer's own name). */
const char *kilt_onnx_name (KiltOnnxGraph *e, const char *what);

/* Initializers; each returns its name. @data is borrowed (it outlives the export). */
const char *kilt_onnx_floats (KiltOnnxGraph *e, const char *what, const float *data, gsize n,
                              const gint64 *dims, guint rank);
const char *kilt_onnx_fill (KiltOnnxGraph *e, const char *what, float v, gsize n,
                            const gint64 *dims, guint rank);
const char *kilt_onnx_scalar (KiltOnnxGraph *e, float v);
const char *kilt_onnx_ints (KiltOnnxGraph *e, const char *what, const gint64 *v, guint n);
/* Per-channel values shaped to broadcast over a value of @rank: (1, C) or (1, C, 1, 1). */
const char *kilt_onnx_channels (KiltOnnxGraph *e, const char *what, const float *data, guint c,
                                guint rank);

/* An operator writing @out from the NULL-terminated inputs ("" for an optional one left
 * out), or from a list. */
Onnx__NodeProto *kilt_onnx_op (KiltOnnxGraph *e, const char *op_type, const char *out,
                               const char *in0, ...) G_GNUC_NULL_TERMINATED;
Onnx__NodeProto *kilt_onnx_op_n (KiltOnnxGraph *e, const char *op_type, const char *out,
                                 const char *const *ins, guint n_in);
void kilt_onnx_attr_int (KiltOnnxGraph *e, Onnx__NodeProto *n, const char *name, gint64 v);
void kilt_onnx_attr_float (KiltOnnxGraph *e, Onnx__NodeProto *n, const char *name, float v);
void kilt_onnx_attr_ints (KiltOnnxGraph *e, Onnx__NodeProto *n, const char *name, const gint64 *v,
                          guint count);
void kilt_onnx_attr_string (KiltOnnxGraph *e, Onnx__NodeProto *n, const char *name, const char *v);
void kilt_onnx_attr_floats (KiltOnnxGraph *e, Onnx__NodeProto *n, const char *name, const float *v,
                            guint count);
void kilt_onnx_attr_strings (KiltOnnxGraph *e, Onnx__NodeProto *n, const char *name,
                             const char *const *v, guint count);

/* Values of rank 2 ((batch, C), for 1x1 values) or 4 (NCHW), converted where a layer needs
 * the other; @out NULL: a new name. */
const char *kilt_onnx_to4 (KiltOnnxGraph *e, const char *x, guint rank);
const char *kilt_onnx_to2 (KiltOnnxGraph *e, const char *x, guint rank, const char *out);
/* Input @i of the layer being written, and its rank; input 0 as NCHW or as (batch, C). */
const char *kilt_onnx_in (KiltOnnxGraph *e, guint i, guint *rank);
const char *kilt_onnx_in4 (KiltOnnxGraph *e);
const char *kilt_onnx_in2 (KiltOnnxGraph *e);

/* A float tensor's type, (batch, C) or (batch, C, H, W) with a symbolic batch. */
Onnx__ValueInfoProto *kilt_onnx_value_info (KiltOnnxGraph *e, const char *name, const KiltShape *s,
                                            guint rank);
/* Packs @model into @path (through a temporary file renamed there); *@bytes: its size. */
gboolean kilt_onnx_write (Onnx__ModelProto *model, const char *path, gsize *bytes, GError **error);

G_END_DECLS
