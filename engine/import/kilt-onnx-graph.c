/* Building ONNX messages with protobuf-c: names, initializers, operators, attributes, value
 * types, ranks, and writing the packed model to a file. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "kilt-onnx-private.h"
#include "kilt-error.h"

#include <errno.h>
#include <glib/gstdio.h>
#include <stdio.h>
#include <string.h>

/* protobuf's hard limit on one message. */
#define ONNX_MAX_BYTES ((gsize)G_MAXINT32)

gpointer
kilt_onnx_alloc (KiltOnnxGraph *e, gsize size)
{
  gpointer p = g_malloc0 (size);

  g_ptr_array_add (e->arena, p);
  return p;
}

char *
kilt_onnx_strdup (KiltOnnxGraph *e, const char *s)
{
  char *p = g_strdup (s);

  g_ptr_array_add (e->arena, p);
  return p;
}

/* A value name no other value has: "<layer>/<what>" (@what NULL: the layer's own name). */
const char *
kilt_onnx_name (KiltOnnxGraph *e, const char *what)
{
  g_autofree char *base
      = what ? g_strdup_printf ("%s/%s", e->node->name, what) : g_strdup (e->node->name);
  char *name = kilt_onnx_strdup (e, base);

  for (guint i = 1; g_hash_table_contains (e->names, name); i++)
    {
      g_autofree char *numbered = g_strdup_printf ("%s_%u", base, i);
      name = kilt_onnx_strdup (e, numbered);
    }
  g_hash_table_add (e->names, name);
  return name;
}

/* ---- tensors ------------------------------------------------------------------------------- */

static Onnx__TensorProto *
kilt_onnx_tensor (KiltOnnxGraph *e, const char *name, int32_t type, const gint64 *dims, guint rank)
{
  Onnx__TensorProto *t = kilt_onnx_alloc (e, sizeof *t);

  onnx__tensor_proto__init (t);
  t->name = (char *)name;
  t->has_data_type = TRUE;
  t->data_type = type;
  t->n_dims = rank;
  t->dims = kilt_onnx_alloc (e, sizeof (int64_t) * MAX (rank, 1));
  for (guint i = 0; i < rank; i++)
    t->dims[i] = dims[i];
  g_ptr_array_add (e->inits, t);
  return t;
}

/* A float initializer holding @n values of @data. The weights themselves are not copied on a
 * little-endian machine (the model's buffers outlive the export). */
const char *
kilt_onnx_floats (KiltOnnxGraph *e, const char *what, const float *data, gsize n,
                  const gint64 *dims, guint rank)
{
  const char *name = kilt_onnx_name (e, what);
  Onnx__TensorProto *t
      = kilt_onnx_tensor (e, name, ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT, dims, rank);

  t->has_raw_data = TRUE;
  t->raw_data.len = n * sizeof (float);
#if G_BYTE_ORDER == G_LITTLE_ENDIAN
  t->raw_data.data = (uint8_t *)data;
#else
  {
    guint32 *copy = kilt_onnx_alloc (e, n * sizeof (float));
    memcpy (copy, data, n * sizeof (float));
    for (gsize i = 0; i < n; i++)
      copy[i] = GUINT32_TO_LE (copy[i]);
    t->raw_data.data = (uint8_t *)copy;
  }
#endif
  return name;
}

/* A float initializer of @n copies of @v. */
const char *
kilt_onnx_fill (KiltOnnxGraph *e, const char *what, float v, gsize n, const gint64 *dims,
                guint rank)
{
  float *data = kilt_onnx_alloc (e, sizeof (float) * MAX (n, 1));

  for (gsize i = 0; i < n; i++)
    data[i] = v;
  return kilt_onnx_floats (e, what, data, n, dims, rank);
}

const char *
kilt_onnx_scalar (KiltOnnxGraph *e, float v)
{
  return kilt_onnx_fill (e, "const", v, 1, NULL, 0);
}

const char *
kilt_onnx_ints (KiltOnnxGraph *e, const char *what, const gint64 *v, guint n)
{
  const char *name = kilt_onnx_name (e, what);
  gint64 dims[1] = { n };
  Onnx__TensorProto *t = kilt_onnx_tensor (e, name, ONNX__TENSOR_PROTO__DATA_TYPE__INT64, dims, 1);

  t->n_int64_data = n;
  t->int64_data = kilt_onnx_alloc (e, sizeof (int64_t) * MAX (n, 1));
  for (guint i = 0; i < n; i++)
    t->int64_data[i] = v[i];
  return name;
}

/* Per-channel values shaped to broadcast over a value of @rank: (1, C) or (1, C, 1, 1). */
const char *
kilt_onnx_channels (KiltOnnxGraph *e, const char *what, const float *data, guint c, guint rank)
{
  gint64 dims[4] = { 1, c, 1, 1 };

  return kilt_onnx_floats (e, what, data, c, dims, rank);
}

/* ---- operators ----------------------------------------------------------------------------- */

/* An operator with @n_in inputs (NULL-terminated varargs after @in0; "" for an optional input
 * left out) writing @out. */
Onnx__NodeProto *
kilt_onnx_op (KiltOnnxGraph *e, const char *op_type, const char *out, const char *in0, ...)
{
  Onnx__NodeProto *n = kilt_onnx_alloc (e, sizeof *n);
  const char *ins[8];
  guint n_in = 0;
  va_list ap;

  onnx__node_proto__init (n);
  va_start (ap, in0);
  for (const char *s = in0; s && n_in < G_N_ELEMENTS (ins); s = va_arg (ap, const char *))
    ins[n_in++] = s;
  va_end (ap);
  n->op_type = (char *)op_type;
  n->n_input = n_in;
  n->input = kilt_onnx_alloc (e, sizeof (char *) * MAX (n_in, 1));
  for (guint i = 0; i < n_in; i++)
    n->input[i] = (char *)ins[i];
  n->n_output = 1;
  n->output = kilt_onnx_alloc (e, sizeof (char *));
  n->output[0] = (char *)out;
  n->name = (char *)out;
  g_ptr_array_add (e->ops, n);
  return n;
}

/* The same with an input list. */
Onnx__NodeProto *
kilt_onnx_op_n (KiltOnnxGraph *e, const char *op_type, const char *out, const char *const *ins,
                guint n_in)
{
  Onnx__NodeProto *n = kilt_onnx_op (e, op_type, out, NULL, NULL);

  n->n_input = n_in;
  n->input = kilt_onnx_alloc (e, sizeof (char *) * MAX (n_in, 1));
  for (guint i = 0; i < n_in; i++)
    n->input[i] = (char *)ins[i];
  return n;
}

static Onnx__AttributeProto *
kilt_onnx_attr (KiltOnnxGraph *e, Onnx__NodeProto *n, const char *name,
                Onnx__AttributeProto__AttributeType type)
{
  Onnx__AttributeProto *a = kilt_onnx_alloc (e, sizeof *a);
  Onnx__AttributeProto **list = kilt_onnx_alloc (e, sizeof (*list) * (n->n_attribute + 1));

  onnx__attribute_proto__init (a);
  a->name = (char *)name;
  a->has_type = TRUE;
  a->type = type;
  if (n->n_attribute)
    memcpy (list, n->attribute, sizeof (*list) * n->n_attribute);
  list[n->n_attribute++] = a;
  n->attribute = list;
  return a;
}

void
kilt_onnx_attr_int (KiltOnnxGraph *e, Onnx__NodeProto *n, const char *name, gint64 v)
{
  Onnx__AttributeProto *a = kilt_onnx_attr (e, n, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT);

  a->has_i = TRUE;
  a->i = v;
}

void
kilt_onnx_attr_float (KiltOnnxGraph *e, Onnx__NodeProto *n, const char *name, float v)
{
  Onnx__AttributeProto *a
      = kilt_onnx_attr (e, n, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT);

  a->has_f = TRUE;
  a->f = v;
}

void
kilt_onnx_attr_ints (KiltOnnxGraph *e, Onnx__NodeProto *n, const char *name, const gint64 *v,
                     guint count)
{
  Onnx__AttributeProto *a
      = kilt_onnx_attr (e, n, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS);

  a->n_ints = count;
  a->ints = kilt_onnx_alloc (e, sizeof (int64_t) * MAX (count, 1));
  for (guint i = 0; i < count; i++)
    a->ints[i] = v[i];
}

void
kilt_onnx_attr_string (KiltOnnxGraph *e, Onnx__NodeProto *n, const char *name, const char *v)
{
  Onnx__AttributeProto *a
      = kilt_onnx_attr (e, n, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRING);

  a->has_s = TRUE;
  a->s.data = (uint8_t *)v;
  a->s.len = strlen (v);
}

void
kilt_onnx_attr_floats (KiltOnnxGraph *e, Onnx__NodeProto *n, const char *name, const float *v,
                       guint count)
{
  Onnx__AttributeProto *a
      = kilt_onnx_attr (e, n, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOATS);

  a->n_floats = count;
  a->floats = kilt_onnx_alloc (e, sizeof (float) * MAX (count, 1));
  for (guint i = 0; i < count; i++)
    a->floats[i] = v[i];
}

/* @v: static strings (the attribute points at them). */
void
kilt_onnx_attr_strings (KiltOnnxGraph *e, Onnx__NodeProto *n, const char *name,
                        const char *const *v, guint count)
{
  Onnx__AttributeProto *a
      = kilt_onnx_attr (e, n, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRINGS);

  a->n_strings = count;
  a->strings = kilt_onnx_alloc (e, sizeof (ProtobufCBinaryData) * MAX (count, 1));
  for (guint i = 0; i < count; i++)
    {
      a->strings[i].data = (uint8_t *)v[i];
      a->strings[i].len = strlen (v[i]);
    }
}

/* ---- ranks: 1x1 values travel as (batch, C), others as NCHW -------------------------------- */

const char *
kilt_onnx_to4 (KiltOnnxGraph *e, const char *x, guint rank)
{
  static const gint64 axes[] = { 2, 3 };
  const char *out;

  if (rank == 4)
    return x;
  out = kilt_onnx_name (e, "nchw");
  kilt_onnx_op (e, "Unsqueeze", out, x, kilt_onnx_ints (e, "axes", axes, 2), NULL);
  return out;
}

const char *
kilt_onnx_to2 (KiltOnnxGraph *e, const char *x, guint rank, const char *out)
{
  Onnx__NodeProto *n;

  if (rank == 2)
    return x;
  n = kilt_onnx_op (e, "Flatten", out ? out : kilt_onnx_name (e, "flat"), x, NULL);
  kilt_onnx_attr_int (e, n, "axis", 1);
  return n->output[0];
}

/* Input @i of the layer being written. */
const char *
kilt_onnx_in (KiltOnnxGraph *e, guint i, guint *rank)
{
  guint src = e->node->inputs[i];

  if (rank)
    *rank = e->rank[src];
  return e->value[src];
}

/* Input 0 as NCHW, or as (batch, C). */
const char *
kilt_onnx_in4 (KiltOnnxGraph *e)
{
  guint r;
  const char *x = kilt_onnx_in (e, 0, &r);

  return kilt_onnx_to4 (e, x, r);
}

const char *
kilt_onnx_in2 (KiltOnnxGraph *e)
{
  guint r;
  const char *x = kilt_onnx_in (e, 0, &r);

  return kilt_onnx_to2 (e, x, r, NULL);
}

/* ---- value types and the file
 * ----------------------------------------------------------------------------- */

/* A float tensor's type: (batch, C) or (batch, C, H, W), the batch symbolic. */
Onnx__ValueInfoProto *
kilt_onnx_value_info (KiltOnnxGraph *e, const char *name, const KiltShape *s, guint rank)
{
  Onnx__ValueInfoProto *v = kilt_onnx_alloc (e, sizeof *v);
  Onnx__TypeProto *type = kilt_onnx_alloc (e, sizeof *type);
  Onnx__TypeProto__Tensor *tensor = kilt_onnx_alloc (e, sizeof *tensor);
  Onnx__TensorShapeProto *shape = kilt_onnx_alloc (e, sizeof *shape);
  gint64 dims[4] = { -1, s->c, s->h, s->w };

  onnx__value_info_proto__init (v);
  onnx__type_proto__init (type);
  onnx__type_proto__tensor__init (tensor);
  onnx__tensor_shape_proto__init (shape);
  shape->n_dim = rank;
  shape->dim = kilt_onnx_alloc (e, sizeof (*shape->dim) * rank);
  for (guint i = 0; i < rank; i++)
    {
      Onnx__TensorShapeProto__Dimension *d = kilt_onnx_alloc (e, sizeof *d);
      onnx__tensor_shape_proto__dimension__init (d);
      if (i == 0)
        {
          d->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM;
          d->dim_param = (char *)"batch";
        }
      else
        {
          d->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
          d->dim_value = dims[i];
        }
      shape->dim[i] = d;
    }
  tensor->has_elem_type = TRUE;
  tensor->elem_type = ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT;
  tensor->shape = shape;
  type->value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE;
  type->tensor_type = tensor;
  v->name = (char *)name;
  v->type = type;
  return v;
}

/* protobuf-c's output sink, into a file. */
typedef struct
{
  ProtobufCBuffer base;
  FILE *f;
  gboolean failed;
} FileSink;

static void
file_sink_append (ProtobufCBuffer *buffer, size_t len, const uint8_t *data)
{
  FileSink *sink = (FileSink *)buffer;

  if (!sink->failed && len > 0 && fwrite (data, 1, len, sink->f) != len)
    sink->failed = TRUE;
}

/* Writes @model next to @path and renames it there, so a failure leaves no half file. */
gboolean
kilt_onnx_write (Onnx__ModelProto *model, const char *path, gsize *bytes, GError **error)
{
  g_autofree char *tmp = g_strdup_printf ("%s.partial", path);
  FileSink sink = { { NULL }, NULL, FALSE };
  int saved = 0;

  *bytes = onnx__model_proto__get_packed_size (model);
  if (*bytes > ONNX_MAX_BYTES)
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_INVALID,
                   "cannot write %s: the model would take %" G_GSIZE_FORMAT
                   " bytes, over protobuf's limit of 2 GiB for one ONNX file",
                   path, *bytes);
      return FALSE;
    }
  if (!(sink.f = g_fopen (tmp, "wb")))
    {
      saved = errno;
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_IO, "cannot write %s: %s", tmp,
                   g_strerror (saved));
      return FALSE;
    }
  sink.base.append = file_sink_append;
  onnx__model_proto__pack_to_buffer (model, &sink.base);
  if (sink.failed)
    saved = errno;
  if (fclose (sink.f) != 0 && !sink.failed)
    {
      sink.failed = TRUE;
      saved = errno;
    }
  if (!sink.failed && g_rename (tmp, path) != 0)
    {
      sink.failed = TRUE;
      saved = errno;
    }
  if (sink.failed)
    {
      g_unlink (tmp);
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_IO, "cannot write %s: %s", path,
                   g_strerror (saved ? saved : EIO));
      return FALSE;
    }
  return TRUE;
}
