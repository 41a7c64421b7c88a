/* Writes a model's weights as a Keras 3 .weights.h5 (layers/<class key>/vars/<i>). */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#define G_LOG_DOMAIN "kilt-keras-weights"

#include "kilt-keras-weights.h"
#include "kilt-error.h"
#include "kilt-keras-weights-private.h"

#include <errno.h>
#include <glib/gstdio.h>
#include <hdf5.h>
#include <string.h>

#define MAX_VARS_PER_LAYER 64

static gboolean
write_dataset (hid_t group, const char *name, const Var *v, const float *data)
{
  hsize_t dims[4];
  hid_t space, d;
  herr_t r;

  for (guint i = 0; i < v->rank; i++)
    dims[i] = v->dims[i];
  space = H5Screate_simple ((int)v->rank, dims, NULL);
  if (space < 0)
    return FALSE;
  d = H5Dcreate2 (group, name, H5T_IEEE_F32LE, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  H5Sclose (space);
  if (d < 0)
    return FALSE;
  r = H5Dwrite (d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, data);
  H5Dclose (d);
  return r >= 0;
}

static gboolean
make_group (hid_t parent, const char *name, hid_t *out)
{
  *out = H5Gcreate2 (parent, name, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  return *out >= 0;
}

/* The group at @path under @parent ("bidirectional/forward_layer"), opening the parts that
 * exist (a Bidirectional's halves and its own group share the first) and making the rest. */
static gboolean
open_or_make_path (hid_t parent, const char *path, hid_t *out)
{
  g_auto (GStrv) parts = g_strsplit (path, "/", -1);
  hid_t cur = -1;

  for (guint i = 0; parts[i]; i++)
    {
      hid_t base = cur >= 0 ? cur : parent, next;
      if (H5Lexists (base, parts[i], H5P_DEFAULT) > 0)
        next = H5Gopen2 (base, parts[i], H5P_DEFAULT);
      else
        next = H5Gcreate2 (base, parts[i], H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
      if (cur >= 0)
        H5Gclose (cur);
      if (next < 0)
        return FALSE;
      cur = next;
    }
  *out = cur;
  return cur >= 0;
}

/* One layer's group layers/<key>/vars with its variables 0, 1, ... in Keras' order. */
static gboolean
write_layer (hid_t layers, const KiltNode *node, const LayerInfo *li, const float *params,
             const float *state, const guint *perm, guint *n_tensors, GError **error)
{
  Var vars[MAX_VARS_PER_LAYER];
  guint n_vars = 0, index = 0;
  ExpectFunc expect = kilt_keras_find_expect (node->type);
  hid_t g = -1, vg = -1, cell = -1;
  gboolean ok = FALSE;

  /* (The parts of a SeparableConv2D share the layer's group and its vars.) */
  if (!open_or_make_path (layers, li->key, &g) || !open_or_make_path (g, "vars", &vg))
    goto out;
  /* LSTM and GRU: Keras 3 keeps the variables in the cell's group, layers/lstm/cell/vars, and
   * an empty vars group of the layer's own. */
  if (node->type == KILT_LAYER_LSTM || node->type == KILT_LAYER_GRU)
    {
      H5Gclose (vg);
      vg = -1;
      if (!make_group (g, "cell", &cell) || !make_group (cell, "vars", &vg))
        goto out;
    }
  if (expect == NULL)
    {
      ok = TRUE;
      goto out;
    }
  /* The table points into the buffers it is given; here they are only read. */
  if (!expect (node, li, (float *)params + node->param_offset, (float *)state + node->state_offset,
               vars, &n_vars, error))
    goto out;
  for (guint i = 0; i < n_vars; i++)
    {
      g_autofree float *buf = NULL;
      g_autofree char *name = NULL;
      if (!vars[i].present)
        continue;
      /* Another part's variable keeps its place in Keras' order: that part writes it. */
      if (vars[i].elsewhere)
        {
          index++;
          continue;
        }
      buf = g_new0 (float, vars[i].n + 1);
      kilt_keras_place (&vars[i], buf, vars[i].dst, perm, FALSE);
      name = g_strdup_printf ("%u", index++);
      if (!write_dataset (vg, name, &vars[i], buf))
        goto out;
      (*n_tensors)++;
    }
  ok = TRUE;
out:
  if (vg >= 0)
    H5Gclose (vg);
  if (cell >= 0)
    H5Gclose (cell);
  if (g >= 0)
    H5Gclose (g);
  return ok;
}

gboolean
kilt_keras_weights_write (KiltModel *model, const char *keras_json, const float *params,
                          const float *state, const char *path, guint *n_tensors, GError **error)
{
  g_autoptr (GHashTable) infos = NULL;
  g_autofree char *tmp = NULL;
  guint **perm = NULL;
  gboolean channels_first = FALSE, ok = FALSE;
  guint count = 0;
  hid_t f = -1, layers = -1, vars = -1;

  g_return_val_if_fail (model->built, FALSE);
  /* A layer of a nested model goes where Keras 3 keeps it, in its model's group
   * (layers/functional/layers/sequential/layers/conv2d/vars): LayerInfo.key says so, and
   * write_layer makes the groups on the way. */
  infos = kilt_keras_layer_infos (model, keras_json, &channels_first);
  perm = kilt_keras_feature_orders (model, channels_first, path, error);
  if (perm == NULL)
    return FALSE;
  /* Written beside @path and renamed over it: a failed export leaves no half file. */
  tmp = g_strdup_printf ("%s.part", path);
  kilt_keras_h5_lock ();
  H5Eset_auto2 (H5E_DEFAULT, NULL, NULL);
  f = H5Fcreate (tmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  if (f < 0 || !make_group (f, "layers", &layers) || !make_group (f, "vars", &vars))
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_IO, "%s: cannot be written", tmp);
      goto out;
    }
  for (guint i = 1; i < kilt_model_n_nodes (model); i++)
    {
      KiltNode *node = kilt_model_node (model, i);
      LayerInfo *li = g_hash_table_lookup (infos, node->name);
      if (li == NULL)
        {
          g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_MODEL,
                       "%s: layer %s is not in the Keras architecture given", path, node->name);
          goto out;
        }
      if (!write_layer (layers, node, li, params, state,
                        node->n_inputs ? perm[node->inputs[0]] : NULL, &count, error))
        {
          if (error && *error == NULL)
            g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_IO,
                         "%s: layer %s cannot be written", tmp, node->name);
          goto out;
        }
    }
  ok = TRUE;
out:
  if (vars >= 0)
    H5Gclose (vars);
  if (layers >= 0)
    H5Gclose (layers);
  if (f >= 0 && H5Fclose (f) < 0 && ok)
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_IO, "%s: cannot be written", tmp);
      ok = FALSE;
    }
  kilt_keras_h5_unlock ();
  kilt_keras_free_orders (model, perm);
  if (ok && g_rename (tmp, path) != 0)
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_IO, "%s: cannot be written: %s",
                   path, g_strerror (errno));
      ok = FALSE;
    }
  if (!ok)
    g_unlink (tmp);
  if (ok && n_tensors)
    *n_tensors = count;
  return ok;
}
