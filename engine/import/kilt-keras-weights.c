/* Keras weights (HDF5: Keras 2 model.save / save_weights .h5, Keras 3 .weights.h5) onto a model. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#define G_LOG_DOMAIN "kilt-keras-weights"

#include "kilt-keras-weights.h"
#include "kilt-keras-weights-private.h"
#include "kilt-error.h"
#include "kilt-json-limits.h"
#include "kilt-model-json.h"

#include <errno.h>
#include <hdf5.h>
#include <json-glib/json-glib.h>
#include <math.h>
#include <string.h>
#ifdef G_OS_UNIX
#include <sys/wait.h>
#include <unistd.h>
#endif

/* Far above any real layer's variable count (BatchNormalization has 4) and any model's layer
 * list; an attribute that claims more is refused before it is read. */
#define MAX_VARS_PER_LAYER 64
#define MAX_NAME_BYTES     4096

/* libhdf5 as Debian builds it is not thread-safe: every use goes through this lock. */

static void
h5_quiet (void)
{
  /* HDF5 prints its error stack to stderr by default; Kilt says what failed itself. */
  H5Eset_auto2 (H5E_DEFAULT, NULL, NULL);
}

static void set_error (GError **error, const char *path, const char *fmt, ...) G_GNUC_PRINTF (3, 4);

static void
set_error (GError **error, const char *path, const char *fmt, ...)
{
  g_autofree char *msg = NULL;
  va_list ap;

  va_start (ap, fmt);
  msg = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_MODEL, "%s: %s", path, msg);
}

gboolean
kilt_keras_weights_is_hdf5 (const char *path)
{
  static const guint8 sig[8] = { 0x89, 'H', 'D', 'F', '\r', '\n', 0x1a, '\n' };
  guint8 buf[8];
  FILE *f = fopen (path, "rb");
  gboolean ok;

  if (f == NULL)
    return FALSE;
  ok = fread (buf, 1, 8, f) == 8 && memcmp (buf, sig, 8) == 0;
  fclose (f);
  return ok;
}

/* Opens the file, or the in-memory image of one (read-only, not copied). */
static hid_t
h5_open (const char *path, const void *image, gsize image_len, GError **error)
{
  hid_t fapl, f;

  if (image == NULL)
    {
      if (!kilt_keras_weights_is_hdf5 (path))
        {
          if (!g_file_test (path, G_FILE_TEST_IS_REGULAR))
            set_error (error, path, "no such file");
          else
            set_error (error, path, "not an HDF5 file (no HDF5 signature at its start)");
          return H5I_INVALID_HID;
        }
      f = H5Fopen (path, H5F_ACC_RDONLY, H5P_DEFAULT);
      if (f < 0)
        set_error (error, path, "HDF5 cannot open the file: it is truncated or damaged");
      return f;
    }
  if (image_len < 8 || image_len > KILT_KERAS_MAX_WEIGHTS_IMAGE)
    {
      set_error (error, path, "the HDF5 image is %zu bytes; expected 8 to %zu", image_len,
                 KILT_KERAS_MAX_WEIGHTS_IMAGE);
      return H5I_INVALID_HID;
    }
  fapl = H5Pcreate (H5P_FILE_ACCESS);
  H5Pset_fapl_core (fapl, 1 << 20, 0);
  /* HDF5 copies the image (a second copy of a .keras file's weights, in the reader's child). */
  H5Pset_file_image (fapl, (void *)image, image_len);
  f = H5Fopen (path, H5F_ACC_RDONLY, fapl);
  H5Pclose (fapl);
  if (f < 0)
    set_error (error, path, "HDF5 cannot read the weights: the file is truncated or damaged");
  return f;
}

/* A string from a string-typed attribute or element (fixed or variable length). */
static char *
attr_read_strings (hid_t obj, const char *name, guint max, guint *n_out, char ***out,
                   const char *path, GError **error)
{
  hid_t attr = -1, type = -1, space = -1, mem = -1;
  hssize_t n;
  char **strs = NULL;
  gboolean ok = FALSE;

  *out = NULL;
  *n_out = 0;
  attr = H5Aopen (obj, name, H5P_DEFAULT);
  if (attr < 0)
    {
      set_error (error, path, "attribute %s cannot be read", name);
      return NULL;
    }
  type = H5Aget_type (attr);
  space = H5Aget_space (attr);
  n = space < 0 ? -1 : H5Sget_simple_extent_npoints (space);
  /* h5py writes an empty list (a layer without weights) as an empty array of floats. */
  if (n == 0 && type >= 0)
    {
      strs = g_new0 (char *, 1);
      ok = TRUE;
      goto out;
    }
  if (type < 0 || space < 0 || H5Tget_class (type) != H5T_STRING)
    {
      set_error (error, path, "attribute %s is not text", name);
      goto out;
    }
  if (n < 0 || (guint64)n > max || H5Sget_simple_extent_ndims (space) > 1)
    {
      set_error (error, path,
                 "attribute %s holds %" G_GINT64_FORMAT " strings; expected at most %u", name,
                 (gint64)n, max);
      goto out;
    }
  strs = g_new0 (char *, n + 1);
  if (H5Tis_variable_str (type) > 0)
    {
      char **raw = g_new0 (char *, n + 1);
      mem = H5Tcopy (H5T_C_S1);
      H5Tset_size (mem, H5T_VARIABLE);
      H5Tset_cset (mem, H5Tget_cset (type));
      if (H5Aread (attr, mem, raw) < 0)
        {
          g_free (raw);
          set_error (error, path, "attribute %s cannot be read", name);
          goto out;
        }
      ok = TRUE;
      for (hssize_t i = 0; i < n; i++)
        {
          if (raw[i] == NULL || strlen (raw[i]) > KILT_KERAS_MAX_CONFIG_BYTES)
            ok = FALSE;
          else
            strs[i] = g_strdup (raw[i]);
        }
      H5Dvlen_reclaim (mem, space, H5P_DEFAULT, raw);
      g_free (raw);
      if (!ok)
        {
          set_error (error, path, "attribute %s holds an empty or oversized string", name);
          goto out;
        }
    }
  else
    {
      gsize size = H5Tget_size (type);
      g_autofree char *buf = NULL;
      if (size == 0 || size > KILT_KERAS_MAX_CONFIG_BYTES
          || size * (gsize)MAX (n, 1) > KILT_KERAS_MAX_CONFIG_BYTES)
        {
          set_error (error, path, "attribute %s has strings of %zu bytes; too large", name, size);
          goto out;
        }
      mem = H5Tcopy (H5T_C_S1);
      H5Tset_size (mem, size);
      H5Tset_strpad (mem, H5T_STR_NULLPAD);
      buf = g_malloc0 (size * (gsize)MAX (n, 1) + 1);
      if (H5Aread (attr, mem, buf) < 0)
        {
          set_error (error, path, "attribute %s cannot be read", name);
          goto out;
        }
      for (hssize_t i = 0; i < n; i++)
        strs[i] = g_strndup (buf + i * size, size);
    }
  ok = TRUE;
  for (hssize_t i = 0; i < n; i++)
    if (!g_utf8_validate (strs[i], -1, NULL))
      {
        set_error (error, path, "attribute %s holds text that is not UTF-8", name);
        ok = FALSE;
        break;
      }
out:
  if (mem >= 0)
    H5Tclose (mem);
  if (space >= 0)
    H5Sclose (space);
  if (type >= 0)
    H5Tclose (type);
  H5Aclose (attr);
  if (!ok)
    {
      g_strfreev (strs);
      return NULL;
    }
  *out = strs;
  *n_out = (guint)n;
  return (char *)strs;
}

static gboolean
has_attr (hid_t obj, const char *name)
{
  return H5Aexists (obj, name) > 0;
}

static gboolean
has_link (hid_t obj, const char *name)
{
  return H5Lexists (obj, name, H5P_DEFAULT) > 0;
}

/* ---- what the file holds ------------------------------------------------------------------ */

typedef struct
{
  char *name; /* Keras 2: "kernel" (the part after the layer's prefix, without ":0");
               * Keras 3: "0", "1", ... */
  char *h5path;
} FileVar;

typedef struct
{
  char *name;      /* Keras 2: the layer's name; Keras 3: the group's (class-based) name */
  GPtrArray *vars; /* FileVar* */
  gboolean used;
} FileLayer;

static void
file_var_free (gpointer p)
{
  FileVar *v = p;

  g_free (v->name);
  g_free (v->h5path);
  g_free (v);
}

static void
file_layer_free (gpointer p)
{
  FileLayer *l = p;

  g_free (l->name);
  g_ptr_array_unref (l->vars);
  g_free (l);
}

static FileLayer *
file_layer_new (const char *name)
{
  FileLayer *l = g_new0 (FileLayer, 1);

  l->name = g_strdup (name);
  l->vars = g_ptr_array_new_with_free_func (file_var_free);
  return l;
}

/* "conv2d/kernel:0" -> "kernel"; "block/conv/bias:0" -> "bias". */
static char *
short_var_name (const char *full)
{
  const char *slash = strrchr (full, '/');
  const char *base = slash ? slash + 1 : full;
  const char *colon = strrchr (base, ':');

  return colon ? g_strndup (base, colon - base) : g_strdup (base);
}

/* A layer name of Keras 2's layer_names, which is also the path of its group: tf.keras'
 * DenseNets name layers "conv1/conv" (h5py makes group conv1, then conv in it), so a slash
 * may separate parts, but no part is empty, "." or "..". */
static gboolean
plain_layer_name (const char *name)
{
  g_auto (GStrv) parts = NULL;

  if (name[0] == '\0' || strlen (name) > MAX_NAME_BYTES)
    return FALSE;
  parts = g_strsplit (name, "/", -1);
  for (guint i = 0; parts[i]; i++)
    if (parts[i][0] == '\0' || g_str_equal (parts[i], ".") || g_str_equal (parts[i], ".."))
      return FALSE;
  return TRUE;
}

/* Keras 2: @root (the file, or its model_weights group) has layer_names; each layer's group
 * has weight_names, paths of datasets inside that group. The group of a model nested in the
 * model (a name in @nested) holds the weights of all the layers inside it, at any depth, as
 * "INNER/kernel:0": those become layers "GROUP/INNER". */
static GPtrArray *
read_keras2 (hid_t root, guint max_layers, GHashTable *nested, const char *path, GError **error)
{
  g_autoptr (GPtrArray) layers = g_ptr_array_new_with_free_func (file_layer_free);
  g_auto (GStrv) names = NULL;
  guint n = 0;

  if (!attr_read_strings (root, "layer_names", max_layers, &n, &names, path, error))
    return NULL;
  for (guint i = 0; i < n; i++)
    {
      g_auto (GStrv) wnames = NULL;
      guint nw = 0;
      hid_t g;
      FileLayer *l;

      if (!plain_layer_name (names[i]))
        {
          set_error (error, path, "layer name %u (\"%.40s\") is not a plain name", i, names[i]);
          return NULL;
        }
      if (!has_link (root, names[i]) || (g = H5Gopen2 (root, names[i], H5P_DEFAULT)) < 0)
        {
          set_error (error, path, "layer %s is listed in layer_names but has no group", names[i]);
          return NULL;
        }
      l = file_layer_new (names[i]);
      g_ptr_array_add (layers, l);
      if (has_attr (g, "weight_names")
          && !attr_read_strings (g, "weight_names", MAX_VARS_PER_LAYER, &nw, &wnames, path, error))
        {
          H5Gclose (g);
          g_prefix_error (error, "layer %s: ", names[i]);
          return NULL;
        }
      H5Gclose (g);
      for (guint j = 0; j < nw; j++)
        {
          FileVar *v = g_new0 (FileVar, 1);
          FileLayer *owner = l;
          g_auto (GStrv) parts = g_strsplit (wnames[j], "/", 3);
          v->name = short_var_name (wnames[j]);
          v->h5path = g_strdup_printf ("%s/%s", names[i], wnames[j]);
          if (g_hash_table_contains (nested, names[i]))
            {
              const char *slash = strrchr (wnames[j], '/');
              g_autofree char *inner = slash ? g_strdup_printf ("%s/%.*s", names[i],
                                                                (int)(slash - wnames[j]), wnames[j])
                                             : NULL;
              if (inner == NULL || slash == wnames[j])
                {
                  set_error (error, path,
                             "nested model %s: weight %s does not name the layer it belongs to",
                             names[i], wnames[j]);
                  file_var_free (v);
                  return NULL;
                }
              /* The weights of one inner layer are listed together. */
              owner = NULL;
              for (guint k = layers->len; k-- > 0 && owner == NULL;)
                if (g_str_equal (((FileLayer *)g_ptr_array_index (layers, k))->name, inner))
                  owner = g_ptr_array_index (layers, k);
              if (owner == NULL)
                {
                  if (layers->len >= max_layers)
                    {
                      set_error (error, path, "more than %u layers in the file", max_layers);
                      file_var_free (v);
                      return NULL;
                    }
                  owner = file_layer_new (inner);
                  g_ptr_array_add (layers, owner);
                }
            }
          /* A Bidirectional's halves: LAYER/forward_lstm/lstm_cell/kernel:0 belongs to the
           * layer LAYER/forward_lstm (the name Kilt gives that half). */
          else if (parts[0] && parts[1] && parts[2] && g_str_equal (parts[0], names[i])
                   && (g_str_has_prefix (parts[1], "forward_")
                       || g_str_has_prefix (parts[1], "backward_")))
            {
              g_autofree char *half = g_strdup_printf ("%s/%s", names[i], parts[1]);
              owner = NULL;
              for (guint k = 0; k < layers->len && owner == NULL; k++)
                if (g_str_equal (((FileLayer *)g_ptr_array_index (layers, k))->name, half))
                  owner = g_ptr_array_index (layers, k);
              if (owner == NULL)
                g_ptr_array_add (layers, owner = file_layer_new (half));
            }
          g_ptr_array_add (owner->vars, v);
        }
    }
  return g_steal_pointer (&layers);
}

typedef struct
{
  GPtrArray *layers;
  guint max;
  gboolean failed;
  const char *path;
  GError **error;
  hid_t root;
  const char *prefix; /* "" at the top; "KEY/layers/" inside a nested model's group */
  guint depth;
} Keras3Walk;

static gboolean walk_keras3 (Keras3Walk *w, const char *group_path);

/* Adds the variables 0, 1, ... of group @vars_path (absent: none) to @l; 1 on failure. */
static herr_t
keras3_add_vars (Keras3Walk *w, FileLayer *l, const char *vars_path)
{
  const char *name = l->name;
  hid_t vg;
  H5G_info_t gi;

  if (H5Lexists (w->root, vars_path, H5P_DEFAULT) <= 0)
    return 0;
  vg = H5Gopen2 (w->root, vars_path, H5P_DEFAULT);
  if (vg < 0 || H5Gget_info (vg, &gi) < 0)
    {
      if (vg >= 0)
        H5Gclose (vg);
      set_error (w->error, w->path, "group %s cannot be read", vars_path);
      w->failed = TRUE;
      return 1;
    }
  H5Gclose (vg);
  if (gi.nlinks > MAX_VARS_PER_LAYER)
    {
      set_error (w->error, w->path, "layer %s has %" G_GUINT64_FORMAT " variables; at most %d",
                 name, (guint64)gi.nlinks, MAX_VARS_PER_LAYER);
      w->failed = TRUE;
      return 1;
    }
  /* Keras 3 names a layer's variables 0, 1, ... in the order the layer made them. */
  for (hsize_t i = 0; i < gi.nlinks; i++)
    {
      g_autofree char *vname = g_strdup_printf ("%" G_GUINT64_FORMAT, (guint64)i);
      g_autofree char *vpath = g_strdup_printf ("%s/%s", vars_path, vname);
      FileVar *v;
      if (H5Lexists (w->root, vpath, H5P_DEFAULT) <= 0)
        {
          set_error (w->error, w->path,
                     "layer %s: its variables are not numbered 0 to %" G_GUINT64_FORMAT " (no %s)",
                     name, (guint64)gi.nlinks - 1, vname);
          w->failed = TRUE;
          return 1;
        }
      v = g_new0 (FileVar, 1);
      v->name = g_steal_pointer (&vname);
      v->h5path = g_steal_pointer (&vpath);
      g_ptr_array_add (l->vars, v);
    }
  return 0;
}

static herr_t
keras3_layer_cb (hid_t group, const char *name, const H5L_info_t *info, void *data)
{
  Keras3Walk *w = data;
  g_autofree char *vars_path = NULL;
  FileLayer *l;

  (void)group;
  (void)info;
  if (w->layers->len >= w->max)
    {
      set_error (w->error, w->path, "more than %u layers under layers/", w->max);
      w->failed = TRUE;
      return 1;
    }
  if (strlen (name) > MAX_NAME_BYTES)
    {
      set_error (w->error, w->path, "a layer group's name is longer than %d bytes", MAX_NAME_BYTES);
      w->failed = TRUE;
      return 1;
    }
  {
    /* A nested model's layers are groups under its own: KEY/layers/INNER. */
    g_autofree char *full = g_strconcat (w->prefix, name, NULL);
    g_autofree char *inner = g_strdup_printf ("layers/%s/layers", full);
    l = file_layer_new (full);
    g_ptr_array_add (w->layers, l);
    vars_path = g_strdup_printf ("layers/%s/vars", full);
    /* LSTM and GRU keep their variables in their cell's group: layers/lstm/cell/vars. */
    {
      g_autofree char *cell_group = g_strdup_printf ("layers/%s/cell", full);
      g_autofree char *cell = g_strdup_printf ("%s/vars", cell_group);
      /* (An absent group first: H5Lexists fails on a path through one.) */
      if (H5Lexists (w->root, cell_group, H5P_DEFAULT) > 0
          && H5Lexists (w->root, cell, H5P_DEFAULT) > 0)
        {
          g_free (vars_path);
          vars_path = g_steal_pointer (&cell);
        }
    }
    if (H5Lexists (w->root, inner, H5P_DEFAULT) > 0)
      {
        g_autofree char *prefix = g_strconcat (full, "/layers/", NULL);
        Keras3Walk sub = *w;
        if (w->depth >= KILT_KERAS_WEIGHTS_MAX_NESTING)
          {
            set_error (w->error, w->path, "layer groups nest more than %d deep",
                       KILT_KERAS_WEIGHTS_MAX_NESTING);
            w->failed = TRUE;
            return 1;
          }
        sub.prefix = prefix;
        sub.depth = w->depth + 1;
        if (!walk_keras3 (&sub, inner))
          {
            w->failed = TRUE;
            return 1;
          }
      }
  }
  if (keras3_add_vars (w, l, vars_path))
    return 1;
  /* Bidirectional: its halves' groups, layers/bidirectional/forward_layer/cell/vars, as layers
   * of their own ("bidirectional/forward_layer"). */
  for (guint half = 0; half < 2; half++)
    {
      const char *sub = half ? "backward_layer" : "forward_layer";
      g_autofree char *half_group = g_strdup_printf ("layers/%s/%s", l->name, sub);
      g_autofree char *cell = g_strdup_printf ("%s/cell", half_group);
      g_autofree char *cell_vars = g_strdup_printf ("%s/cell/vars", half_group);
      FileLayer *hl;
      if (H5Lexists (w->root, half_group, H5P_DEFAULT) <= 0)
        continue;
      hl = file_layer_new (half_group + strlen ("layers/"));
      g_ptr_array_add (w->layers, hl);
      if (H5Lexists (w->root, cell, H5P_DEFAULT) > 0 && keras3_add_vars (w, hl, cell_vars))
        return 1;
    }
  return 0;
}

/* Lists the layer groups under @group_path into w->layers, nested models' ones too. */
static gboolean
walk_keras3 (Keras3Walk *w, const char *group_path)
{
  hid_t g = H5Gopen2 (w->root, group_path, H5P_DEFAULT);
  hsize_t idx = 0;
  herr_t r;

  if (g < 0)
    {
      set_error (w->error, w->path, "group %s cannot be read", group_path);
      return FALSE;
    }
  r = H5Literate (g, H5_INDEX_NAME, H5_ITER_INC, &idx, keras3_layer_cb, w);
  H5Gclose (g);
  if (w->failed)
    return FALSE;
  if (r < 0)
    {
      set_error (w->error, w->path, "the %s group cannot be listed: the file is damaged",
                 group_path);
      return FALSE;
    }
  return TRUE;
}

static GPtrArray *
read_keras3 (hid_t root, guint max_layers, const char *path, GError **error)
{
  g_autoptr (GPtrArray) layers = g_ptr_array_new_with_free_func (file_layer_free);
  Keras3Walk w = { layers, max_layers, FALSE, path, error, root, "", 0 };

  if (!walk_keras3 (&w, "layers"))
    return NULL;
  return g_steal_pointer (&layers);
}

/* ---- reading one variable ------------------------------------------------------------------ */

static gboolean
shape_text_matches (hid_t space, const Var *v, char **file_shape)
{
  int nd = H5Sget_simple_extent_ndims (space);
  hsize_t dims[32];
  GString *s = g_string_new ("(");
  gboolean same;

  if (nd < 0 || nd > 32)
    {
      *file_shape = g_string_free (s, TRUE), *file_shape = g_strdup ("(an unreadable shape)");
      return FALSE;
    }
  H5Sget_simple_extent_dims (space, dims, NULL);
  same = (guint)nd == v->rank;
  for (int i = 0; i < nd; i++)
    {
      g_string_append_printf (s, "%s%" G_GUINT64_FORMAT, i ? "," : "", (guint64)dims[i]);
      if (same && dims[i] != v->dims[i])
        same = FALSE;
    }
  g_string_append (s, nd == 1 ? ",)" : ")");
  *file_shape = g_string_free (s, FALSE);
  return same;
}

static char *
var_shape_text (const Var *v)
{
  GString *s = g_string_new ("(");

  for (guint i = 0; i < v->rank; i++)
    g_string_append_printf (s, "%s%zu", i ? "," : "", v->dims[i]);
  g_string_append (s, v->rank == 1 ? ",)" : ")");
  return g_string_free (s, FALSE);
}

static gboolean
read_var (hid_t f, const FileVar *fv, const KiltNode *node, const Var *v, const guint *perm,
          const char *path, KiltKerasWeightsInfo *info, GError **error)
{
  g_autofree float *buf = NULL;
  g_autofree char *fshape = NULL, *want = NULL;
  gsize n = 1;
  hid_t d, space, type;
  gboolean ok = FALSE;

  if (H5Lexists (f, fv->h5path, H5P_DEFAULT) <= 0
      || (d = H5Dopen2 (f, fv->h5path, H5P_DEFAULT)) < 0)
    {
      set_error (error, path, "layer %s: variable %s (%s) is not a dataset in the file", node->name,
                 v->name, fv->h5path);
      return FALSE;
    }
  space = H5Dget_space (d);
  type = H5Dget_type (d);
  want = var_shape_text (v);
  if (space < 0 || type < 0)
    {
      set_error (error, path, "layer %s: variable %s cannot be read", node->name, v->name);
      goto out;
    }
  if (H5Tget_class (type) != H5T_FLOAT && H5Tget_class (type) != H5T_INTEGER)
    {
      set_error (error, path, "layer %s: variable %s is not numbers", node->name, v->name);
      goto out;
    }
  if (!shape_text_matches (space, v, &fshape))
    {
      set_error (error, path, "layer %s (%s): variable %s has shape %s; the model expects %s",
                 node->name, node->klass->name, v->name, fshape, want);
      goto out;
    }
  for (guint i = 0; i < v->rank; i++)
    n *= v->dims[i];
  g_assert (n == v->n);
  buf = g_new (float, n + 1);
  if (H5Dread (d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0)
    {
      set_error (error, path,
                 "layer %s: variable %s cannot be read: the file is truncated or "
                 "damaged",
                 node->name, v->name);
      goto out;
    }
  for (gsize i = 0; i < n; i++)
    if (!isfinite (buf[i]))
      {
        set_error (error, path, "layer %s: variable %s holds %g at element %zu", node->name,
                   v->name, (double)buf[i], i);
        goto out;
      }
  kilt_keras_place (v, buf, v->dst, perm, TRUE);
  info->n_tensors++;
  info->n_values += n;
  ok = TRUE;
out:
  if (type >= 0)
    H5Tclose (type);
  if (space >= 0)
    H5Sclose (space);
  H5Dclose (d);
  return ok;
}

/* ---- putting it together -------------------------------------------------------------------- */

static gboolean
map_layers (KiltModel *model, hid_t root, GPtrArray *layers, gboolean keras3, GHashTable *infos,
            guint **perm, const char *path, float *params, float *state, KiltKerasWeightsInfo *info,
            GError **error)
{
  g_autoptr (GHashTable) by_name = g_hash_table_new (g_str_hash, g_str_equal);

  for (guint i = 0; i < layers->len; i++)
    {
      FileLayer *l = g_ptr_array_index (layers, i);
      if (g_hash_table_contains (by_name, l->name))
        {
          set_error (error, path, "layer %s is in the file twice", l->name);
          return FALSE;
        }
      g_hash_table_insert (by_name, l->name, l);
    }
  for (guint i = 0; i < kilt_model_n_nodes (model); i++)
    {
      KiltNode *node = kilt_model_node (model, i);
      LayerInfo *li = g_hash_table_lookup (infos, node->name);
      LayerInfo fallback = { .center = TRUE, .scale = TRUE };
      ExpectFunc expect = kilt_keras_find_expect (node->type);
      Var vars[MAX_VARS_PER_LAYER];
      guint n_vars = 0, n_present = 0;
      FileLayer *l;
      const char *key;

      if (li == NULL)
        li = &fallback;
      key = keras3 ? li->key : li->key2 ? li->key2 : li->part_of ? li->part_of : node->name;
      l = key ? g_hash_table_lookup (by_name, key) : NULL;
      if (expect == NULL)
        {
          if (node->n_params || node->n_state)
            {
              set_error (error, path,
                         "layer %s (%s) has parameters, but Kilt cannot read Keras weights for "
                         "%s layers yet",
                         node->name, node->klass->name, node->klass->name);
              return FALSE;
            }
          if (l && l->vars->len > 0)
            {
              set_error (error, path,
                         "layer %s has %u variables in the file; the model's %s layer %s has none",
                         l->name, l->vars->len, node->klass->name, node->name);
              return FALSE;
            }
          if (l)
            l->used = TRUE;
          continue;
        }
      if (!expect (node, li, params + node->param_offset, state + node->state_offset, vars, &n_vars,
                   error))
        {
          g_prefix_error (error, "%s: ", path);
          return FALSE;
        }
      for (guint v = 0; v < n_vars; v++)
        n_present += vars[v].present;
      /* A layer with nothing to read (a Normalization of constants) needs no group. */
      if (l == NULL && n_present == 0)
        continue;
      if (l == NULL)
        {
          if (keras3)
            set_error (error, path,
                       "the model's layer %s (%s) has no weights in the file (expected a group "
                       "layers/%s)",
                       node->name, node->klass->name, key ? key : "?");
          else if (li->key2)
            {
              /* key2 is "OUTER/NAME": Keras 2 keeps it in OUTER's group as NAME/... */
              const char *slash = strchr (li->key2, '/');
              set_error (error, path,
                         "the model's layer %s (%s) has no weights in the file (expected them "
                         "in nested model %.*s's group, as %s/...)",
                         node->name, node->klass->name, (int)(slash - li->key2), li->key2,
                         slash + 1);
            }
          else
            set_error (error, path, "the model's layer %s (%s) has no weights in the file",
                       node->name, node->klass->name);
          return FALSE;
        }
      l->used = TRUE;
      if (keras3)
        {
          /* Keras 3 lists only the variables the layer made, in order, without names. */
          guint fi = 0;
          if (l->vars->len != n_present)
            {
              GString *names = g_string_new (NULL);
              for (guint v = 0; v < n_vars; v++)
                if (vars[v].present)
                  g_string_append_printf (names, "%s%s", names->len ? ", " : "", vars[v].name);
              set_error (error, path,
                         "layer %s (%s, group layers/%s) has %u variables in the file; the model "
                         "expects %u (%s)",
                         node->name, node->klass->name, key, l->vars->len, n_present, names->str);
              g_string_free (names, TRUE);
              return FALSE;
            }
          for (guint v = 0; v < n_vars; v++)
            {
              FileVar *fv;
              if (!vars[v].present)
                continue;
              fv = g_ptr_array_index (l->vars, fi++);
              if (!vars[v].elsewhere
                  && !read_var (root, fv, node, &vars[v], perm[node->inputs[0]], path, info, error))
                return FALSE;
            }
        }
      else
        {
          gboolean got[MAX_VARS_PER_LAYER] = { FALSE };
          for (guint j = 0; j < l->vars->len; j++)
            {
              FileVar *fv = g_ptr_array_index (l->vars, j);
              guint v;
              for (v = 0; v < n_vars; v++)
                if (g_str_equal (fv->name, vars[v].name))
                  break;
              if (v == n_vars || got[v] || !vars[v].present)
                {
                  set_error (error, path,
                             "layer %s (%s): variable %s in the file is %s for this layer",
                             node->name, node->klass->name, fv->name,
                             v == n_vars ? "not expected" : "given twice");
                  return FALSE;
                }
              got[v] = TRUE;
              if (!vars[v].elsewhere
                  && !read_var (root, fv, node, &vars[v], perm[node->inputs[0]], path, info, error))
                return FALSE;
            }
          for (guint v = 0; v < n_vars; v++)
            if (!got[v] && vars[v].present)
              {
                set_error (error, path, "layer %s (%s): variable %s is missing in the file",
                           node->name, node->klass->name, vars[v].name);
                return FALSE;
              }
        }
      for (guint v = 0; v < n_vars; v++)
        if (!vars[v].present && vars[v].dst)
          for (gsize k = 0; k < vars[v].n; k++)
            vars[v].dst[k] = vars[v].fill;
      /* (A SeparableConv2D is one layer of the file, in two nodes.) */
      info->n_layers += li->part_of == NULL;
    }
  for (guint i = 0; i < layers->len; i++)
    {
      FileLayer *l = g_ptr_array_index (layers, i);
      if (!l->used && l->vars->len > 0)
        {
          set_error (error, path, "layer %s in the file (%u variables) is not in the model",
                     l->name, l->vars->len);
          return FALSE;
        }
    }
  return TRUE;
}

/* @infos and @perm come from the caller: they are made before the reader's child is forked,
 * which then runs nothing but HDF5 and plain allocation (json-glib's GObjects take locks
 * another thread may have held at the fork). */
static gboolean
read_direct (KiltModel *model, GHashTable *infos, guint **perm, GHashTable *nested_groups,
             const char *path, const void *image, gsize image_len, float *params, float *state,
             KiltKerasWeightsInfo *info, GError **error)
{
  g_autoptr (GPtrArray) layers = NULL;
  gboolean keras3 = FALSE, ok = FALSE;
  guint max_layers = MIN (KILT_MODEL_MAX_LAYERS, 4 * kilt_model_n_nodes (model) + 64);
  hid_t f, root = H5I_INVALID_HID;

  memset (info, 0, sizeof *info);
  h5_quiet ();
  f = h5_open (path, image, image_len, error);
  if (f < 0)
    goto out;
  if (has_link (f, "layers") && !has_attr (f, "layer_names"))
    {
      keras3 = TRUE;
      root = H5Gopen2 (f, "/", H5P_DEFAULT);
      if (root >= 0)
        layers = read_keras3 (root, max_layers, path, error);
    }
  else if (has_attr (f, "layer_names"))
    {
      root = H5Gopen2 (f, "/", H5P_DEFAULT);
      if (root >= 0)
        layers = read_keras2 (root, max_layers, nested_groups, path, error);
    }
  else if (has_link (f, "model_weights"))
    {
      root = H5Gopen2 (f, "model_weights", H5P_DEFAULT);
      if (root >= 0)
        {
          if (!has_attr (root, "layer_names"))
            set_error (error, path, "model_weights has no layer_names attribute");
          else
            layers = read_keras2 (root, max_layers, nested_groups, path, error);
        }
    }
  else
    {
      set_error (error, path,
                 "an HDF5 file without Keras weights (expected a layers group, Keras 3, or a "
                 "layer_names attribute or model_weights group, Keras 2)");
      goto out;
    }
  if (layers == NULL)
    {
      if (error && *error == NULL)
        set_error (error, path, "the file's groups cannot be read");
      goto out;
    }
  info->keras3 = keras3;
  ok = map_layers (model, root, layers, keras3, infos, perm, path, params, state, info, error);
out:
  if (root >= 0)
    H5Gclose (root);
  if (f >= 0)
    H5Fclose (f);
  return ok;
}

static char *
config_direct (const char *path, GError **error)
{
  g_auto (GStrv) strs = NULL;
  char *json = NULL;
  guint n = 0;
  hid_t f;

  h5_quiet ();
  f = h5_open (path, NULL, 0, error);
  if (f >= 0)
    {
      if (has_attr (f, "model_config")
          && attr_read_strings (f, "model_config", 1, &n, &strs, path, error))
        {
          if (n == 1)
            json = g_strdup (strs[0]);
          else
            set_error (error, path, "the model_config attribute is empty");
        }
      H5Fclose (f);
    }
  return json;
}

/* ---- HDF5 in a child process ---------------------------------------------------------------- */

/* libhdf5 trusts a file's structure: a damaged global heap, for one, makes 1.10's H5Aread
 * dereference wild addresses (a flipped byte in a Keras 2 .h5 crashed the test). Every
 * read therefore runs in a forked child, which sends its result through a pipe; a child that
 * dies is an error naming the file, never the caller's crash. */
/* What a reader sends back: pieces of memory, written one after the other without a copy. */
typedef struct
{
  const void *ptr;
  gsize len;
} Segment;

/* Fills @segs (Segment) with its result; the memory stays valid until the process ends (the
 * child) or @owned is freed (in process): it adds what it allocates there. */
typedef gboolean (*IsolatedFunc) (gpointer data, GArray *segs, GPtrArray *owned, GError **error);

typedef struct
{
  guint32 magic;
  guint32 ok;
  guint64 len;
} IsolatedHeader;

#define ISOLATED_MAGIC 0x4b48354bu

static gsize
segments_len (const Segment *seg, guint n)
{
  gsize len = 0;

  for (guint i = 0; i < n; i++)
    len += seg[i].len;
  return len;
}

#ifdef G_OS_UNIX
static gboolean
write_all (int fd, const void *data, gsize len)
{
  const guint8 *p = data;

  while (len > 0)
    {
      gssize w = write (fd, p, MIN (len, (gsize)1 << 30));
      if (w < 0 && errno == EINTR)
        continue;
      if (w <= 0)
        return FALSE;
      p += w;
      len -= (gsize)w;
    }
  return TRUE;
}

static gsize
read_all (int fd, void *data, gsize len)
{
  guint8 *p = data;
  gsize got = 0;

  while (got < len)
    {
      gssize r = read (fd, p + got, MIN (len - got, (gsize)1 << 30));
      if (r < 0 && errno == EINTR)
        continue;
      if (r <= 0)
        break;
      got += (gsize)r;
    }
  return got;
}
#endif

/* Runs @fn in a child and puts its result into @dest (@n_dest pieces that it must fill
 * exactly) or, with @dest NULL, into @out. */
static gboolean
isolated (IsolatedFunc fn, gpointer data, const char *path, const Segment *dest, guint n_dest,
          GByteArray *out, GError **error)
{
  gsize want = dest ? segments_len (dest, n_dest) : 0;
#ifdef G_OS_UNIX
  IsolatedHeader h = { 0 };
  int fds[2], status = 0;
  pid_t pid;
  gboolean ok = FALSE;

  if (g_getenv ("KILT_HDF5_IN_PROCESS") == NULL)
    {
      if (pipe (fds) != 0)
        {
          set_error (error, path, "cannot start the HDF5 reader: %s", g_strerror (errno));
          return FALSE;
        }
      /* No thread of this process is inside HDF5 while it forks. */
      kilt_keras_h5_lock ();
      pid = fork ();
      if (pid == 0)
        {
          GArray *segs = g_array_new (FALSE, FALSE, sizeof (Segment));
          GPtrArray *owned = g_ptr_array_new ();
          GError *e = NULL;
          close (fds[0]);
          h.magic = ISOLATED_MAGIC;
          h.ok = fn (data, segs, owned, &e);
          if (!h.ok)
            {
              Segment m = { e ? e->message : "failed", strlen (e ? e->message : "failed") };
              g_array_set_size (segs, 0);
              g_array_append_val (segs, m);
            }
          h.len = segments_len ((Segment *)segs->data, segs->len);
          if (!write_all (fds[1], &h, sizeof h))
            _exit (3);
          for (guint i = 0; i < segs->len; i++)
            if (!write_all (fds[1], g_array_index (segs, Segment, i).ptr,
                            g_array_index (segs, Segment, i).len))
              _exit (3);
          _exit (0);
        }
      kilt_keras_h5_unlock ();
      close (fds[1]);
      if (pid < 0)
        {
          close (fds[0]);
          set_error (error, path, "cannot start the HDF5 reader: %s", g_strerror (errno));
          return FALSE;
        }
      if (read_all (fds[0], &h, sizeof h) == sizeof h && h.magic == ISOLATED_MAGIC)
        {
          if (h.ok && dest)
            {
              ok = h.len == want;
              for (guint i = 0; ok && i < n_dest; i++)
                ok = read_all (fds[0], (void *)dest[i].ptr, dest[i].len) == dest[i].len;
            }
          else if (h.len <= KILT_KERAS_MAX_CONFIG_BYTES + 16)
            {
              g_byte_array_set_size (out, (guint)h.len);
              ok = read_all (fds[0], out->data, (gsize)h.len) == h.len;
            }
        }
      close (fds[0]);
      while (waitpid (pid, &status, 0) < 0 && errno == EINTR)
        ;
      if (!ok || !WIFEXITED (status) || WEXITSTATUS (status) != 0)
        {
          if (WIFSIGNALED (status))
            set_error (error, path,
                       "HDF5 failed on the file (its reader died of signal %d): the file is "
                       "damaged",
                       WTERMSIG (status));
          else
            set_error (error, path, "HDF5 failed on the file: the file is damaged");
          g_byte_array_set_size (out, 0);
          return FALSE;
        }
      if (!h.ok)
        {
          /* The child's message, which names the file already. */
          g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_MODEL, "%.*s", (int)out->len,
                       (const char *)out->data);
          g_byte_array_set_size (out, 0);
          return FALSE;
        }
      return TRUE;
    }
#endif
  /* In this process: where there is no fork, and for debugging the reader itself (gdb,
   * sanitizers) with $KILT_HDF5_IN_PROCESS. */
  {
    g_autoptr (GArray) segs = g_array_new (FALSE, FALSE, sizeof (Segment));
    g_autoptr (GPtrArray) owned = g_ptr_array_new_with_free_func (g_free);
    gboolean r;
    kilt_keras_h5_lock ();
    r = fn (data, segs, owned, error);
    kilt_keras_h5_unlock ();
    if (!r)
      return FALSE;
    if (dest && segments_len ((Segment *)segs->data, segs->len) != want)
      {
        set_error (error, path, "the HDF5 reader gave another size than expected");
        return FALSE;
      }
    for (guint i = 0, d = 0; i < segs->len; i++)
      {
        const Segment *sg = &g_array_index (segs, Segment, i);
        if (dest)
          {
            /* The reader's pieces are the destination's, one for one. */
            g_assert (d < n_dest && dest[d].len == sg->len);
            memcpy ((void *)dest[d++].ptr, sg->ptr, sg->len);
          }
        else
          g_byte_array_append (out, sg->ptr, (guint)sg->len);
      }
    return TRUE;
  }
}

typedef struct
{
  KiltModel *model;
  GHashTable *infos;
  guint **perm;
  const char *path;
  const void *image;
  gsize image_len;
  KiltKerasWeightsInfo info;
  GHashTable *nested_groups; /* Keras 2: the top-level layers that are models */
} ReadJob;

static gboolean
read_job (gpointer data, GArray *segs, GPtrArray *owned, GError **error)
{
  ReadJob *j = data;
  gsize np = j->model->n_params, ns = j->model->n_state;
  float *params = g_new0 (float, np + 1), *state = g_new0 (float, ns + 1);
  Segment s[3] = { { &j->info, sizeof j->info },
                   { params, np * sizeof (float) },
                   { state, ns * sizeof (float) } };

  g_ptr_array_add (owned, params);
  g_ptr_array_add (owned, state);
  if (!read_direct (j->model, j->infos, j->perm, j->nested_groups, j->path, j->image, j->image_len,
                    params, state, &j->info, error))
    return FALSE;
  g_array_append_vals (segs, s, 3);
  return TRUE;
}

gboolean
kilt_keras_weights_read (KiltModel *model, const char *keras_json, const char *path,
                         const void *image, gsize image_len, float *params, float *state,
                         KiltKerasWeightsInfo *info, GError **error)
{
  g_autoptr (GHashTable) infos = NULL;
  gboolean channels_first = FALSE, ok;
  ReadJob job = { model, NULL, NULL, path, image, image_len, { 0 } };
  g_autoptr (GByteArray) out = g_byte_array_new ();
  KiltKerasWeightsInfo got = { 0 };
  Segment dest[3] = { { &got, sizeof got },
                      { params, model->n_params * sizeof (float) },
                      { state, model->n_state * sizeof (float) } };

  g_autoptr (GHashTable) nested_groups
      = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  GHashTableIter it;
  gpointer value;

  g_return_val_if_fail (model->built, FALSE);
  infos = kilt_keras_layer_infos (model, keras_json, &channels_first);
  g_hash_table_iter_init (&it, infos);
  while (g_hash_table_iter_next (&it, NULL, &value))
    {
      const LayerInfo *li = value;
      if (li->key2)
        g_hash_table_add (nested_groups, g_strndup (li->key2, strcspn (li->key2, "/")));
    }
  job.infos = infos;
  job.nested_groups = nested_groups;
  job.perm = kilt_keras_feature_orders (model, channels_first, path, error);
  if (job.perm == NULL)
    return FALSE;
  /* The error domain's quark is registered here, not first in the child. */
  (void)KILT_ENGINE_ERROR;
  ok = isolated (read_job, &job, path, dest, 3, out, error);
  kilt_keras_free_orders (model, job.perm);
  if (!ok)
    return FALSE;
  if (info)
    *info = got;
  return TRUE;
}

static gboolean
config_job (gpointer data, GArray *segs, GPtrArray *owned, GError **error)
{
  GError *local = NULL;
  char *json = config_direct (data, &local);
  /* A leading byte tells "weights only" (0) from a configuration (1). */
  Segment flag = { json ? "\1" : "\0", 1 }, text = { json, json ? strlen (json) : 0 };

  if (local)
    {
      g_propagate_error (error, local);
      return FALSE;
    }
  if (json)
    g_ptr_array_add (owned, json);
  g_array_append_val (segs, flag);
  if (json)
    g_array_append_val (segs, text);
  return TRUE;
}

char *
kilt_keras_weights_model_config (const char *path, GError **error)
{
  g_autoptr (GByteArray) out = g_byte_array_new ();

  if (!isolated (config_job, (gpointer)path, path, NULL, 0, out, error))
    return NULL;
  if (out->len < 1 || out->data[0] == 0)
    return NULL;
  return g_strndup ((const char *)out->data + 1, out->len - 1);
}

gboolean
kilt_keras_weights_apply (KiltModel *model, const char *keras_json, const char *path,
                          const void *image, gsize image_len, GError **error)
{
  g_autofree float *params = NULL, *state = NULL;
  g_autofree char *note = NULL, *base = NULL;
  KiltKerasWeightsInfo info;

  if (!model->built && !kilt_model_build (model, error))
    return FALSE;
  params = g_new0 (float, model->n_params + 1);
  state = g_new0 (float, model->n_state + 1);
  if (!kilt_keras_weights_read (model, keras_json, path, image, image_len, params, state, &info,
                                error))
    return FALSE;
  base = g_path_get_basename (path);
  note = g_strdup_printf ("weights loaded from %s: %u tensors, %zu parameters", base,
                          info.n_tensors, info.n_values);
  kilt_model_set_weights (model, g_steal_pointer (&params), g_steal_pointer (&state), note);
  return TRUE;
}
