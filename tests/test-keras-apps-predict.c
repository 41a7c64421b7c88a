/* Every keras.applications network with weights that are not Keras' initial ones: Kilt's
 * forward pass predicts what Keras predicted (issue 11). */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "config.h"

#include "kilt-test-util.h"
#include "kilt-error.h"
#include "kilt-exec.h"
#include "kilt-keras-file.h"
#include "kilt-keras.h"

#include <gio/gio.h>
#include <glib/gstdio.h>
#include <hdf5.h>
#include <json-glib/json-glib.h>
#include <math.h>
#include <string.h>

/* Float32 on both sides through up to a few hundred layers. The measure is the largest
 * |Kilt - Keras| over both inputs' outputs divided by the largest |Keras output|: the outputs
 * are softmax probabilities, some of them 1e-4 or less, whose own relative error is float
 * noise of the logits; relative to the largest output the figure stays meaningful at any
 * scale and still sees any error in a probability that matters. */
#define TOLERANCE 1e-4

/* The networks CI runs, 15 s on two cores: every family from at least one Keras, and every
 * weights layout the 70 use (Keras 3's class-named groups, Keras 2's layer groups, tf.keras'
 * DenseNet names with a slash, ConvNeXt's nested Sequentials, SeparableConv2D in Xception and
 * NASNet, EfficientNet's Normalization with its integer count). All 70 take 80 to 92 s (113 s
 * with PoCL's kernel cache cold), about the 90 s this test may add to the suite:
 * KILT_TEST_APPS_PREDICT=all runs them. */
static const char *const ci_subset[] = {
  "keras3-vgg16",
  "keras2-resnet50",
  "keras3-resnet50v2",
  "keras2-inceptionv3",
  "keras2-inceptionresnetv2",
  "keras3-xception",
  "keras2-mobilenet",
  "keras3-mobilenetv2",
  "keras2-mobilenetv3small",
  "keras3-mobilenetv3large",
  "keras2-densenet121",
  "keras2-nasnetmobile",
  "keras2-efficientnetb0",
  "keras3-efficientnetb0",
  "keras2-efficientnetv2b0",
  "keras3-efficientnetv2b0",
  "keras2-convnexttiny",
  "keras3-convnexttiny",
};

static char *
apps_file (const char *name)
{
  return g_build_filename (KILT_SOURCE_DIR, "tests", "data", "keras", "apps", name, NULL);
}

/* The gzip file at @path, uncompressed. */
static char *
gunzip_text (const char *path)
{
  g_autoptr (GFile) file = g_file_new_for_path (path);
  g_autoptr (GError) error = NULL;
  g_autoptr (GFileInputStream) in = g_file_read (file, NULL, &error);
  g_autoptr (GZlibDecompressor) z = NULL;
  g_autoptr (GInputStream) plain = NULL;
  g_autoptr (GOutputStream) out = g_memory_output_stream_new_resizable ();

  g_assert_no_error (error);
  z = g_zlib_decompressor_new (G_ZLIB_COMPRESSOR_FORMAT_GZIP);
  plain = g_converter_input_stream_new (G_INPUT_STREAM (in), G_CONVERTER (z));
  g_assert_cmpint (
      g_output_stream_splice (out, plain, G_OUTPUT_STREAM_SPLICE_CLOSE_SOURCE, NULL, &error), >, 0);
  g_assert_no_error (error);
  g_assert_true (g_output_stream_write (out, "", 1, NULL, &error) == 1);
  g_assert_true (g_output_stream_close (out, NULL, &error));
  return g_memory_output_stream_steal_data (G_MEMORY_OUTPUT_STREAM (out));
}

/* ---- the recipe (make-keras-apps-weights.py computes the same bits) ----------------------- */

static guint64
fnv1a64 (const char *text)
{
  guint64 h = 0xCBF29CE484222325ull;

  for (const guchar *p = (const guchar *)text; *p; p++)
    h = (h ^ *p) * 0x100000001B3ull;
  return h;
}

/* Element i of the variable seeded @seed: splitmix64's finalizer of seed + (i + 1) * golden,
 * its top 24 bits as u in [-1, 1), then a + b * u. b * u is exact in double (24-bit a and b
 * by 24-bit u), so the one rounding to float is the script's, whether or not the compiler
 * fuses the multiply-add. */
static void
recipe_values (const char *seed_text, gsize n, float a, float b, float *out)
{
  guint64 seed = fnv1a64 (seed_text);

  for (gsize i = 0; i < n; i++)
    {
      guint64 z = seed + (guint64)(i + 1) * 0x9E3779B97F4A7C15ull;
      double u;
      z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
      z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
      z ^= z >> 31;
      u = (double)((gint64)(z >> 40) - (1 << 23)) / (double)(1 << 23);
      out[i] = (float)((double)a + (double)b * u);
    }
}

typedef struct
{
  const char *path, *seed, *dtype;
  guint rank;
  hsize_t dims[8];
  gsize n;
  float a, b;
} RecipeVar;

typedef struct
{
  JsonParser *parser;
  JsonObject *root;
  gboolean keras2;
  GArray *vars; /* RecipeVar */
  guint in_shape[3];
  float in_a, in_b;
  guint n_out_rows, out_size;
  double *outputs;
} Recipe;

static void
recipe_load (Recipe *r, const char *stem)
{
  g_autofree char *name = g_strconcat (stem, ".predict.json.gz", NULL);
  g_autofree char *path = apps_file (name);
  g_autofree char *text = gunzip_text (path);
  g_autoptr (GError) error = NULL;
  JsonArray *vars, *shape, *input, *outs;

  r->parser = json_parser_new ();
  g_assert_true (json_parser_load_from_data (r->parser, text, -1, &error));
  g_assert_no_error (error);
  r->root = json_node_get_object (json_parser_get_root (r->parser));
  r->keras2 = g_str_equal (json_object_get_string_member (r->root, "layout"), "keras2");
  shape = json_object_get_array_member (r->root, "input_shape");
  g_assert_cmpuint (json_array_get_length (shape), ==, 3);
  for (guint i = 0; i < 3; i++)
    r->in_shape[i] = (guint)json_array_get_int_element (shape, i);
  input = json_object_get_array_member (r->root, "input");
  r->in_a = (float)json_array_get_double_element (input, 0);
  r->in_b = (float)json_array_get_double_element (input, 1);
  outs = json_object_get_array_member (r->root, "outputs");
  r->n_out_rows = json_array_get_length (outs);
  r->out_size = json_array_get_length (json_array_get_array_element (outs, 0));
  r->outputs = g_new (double, (gsize)r->n_out_rows * r->out_size);
  for (guint s = 0; s < r->n_out_rows; s++)
    {
      JsonArray *row = json_array_get_array_element (outs, s);
      g_assert_cmpuint (json_array_get_length (row), ==, r->out_size);
      for (guint i = 0; i < r->out_size; i++)
        r->outputs[s * r->out_size + i] = json_array_get_double_element (row, i);
    }
  vars = json_object_get_array_member (r->root, "variables");
  r->vars = g_array_new (FALSE, TRUE, sizeof (RecipeVar));
  for (guint i = 0; i < json_array_get_length (vars); i++)
    {
      /* [h5 path, seed text, shape, a, b, dtype] */
      JsonArray *e = json_array_get_array_element (vars, i);
      JsonArray *dims = json_array_get_array_element (e, 2);
      RecipeVar v = { 0 };
      v.path = json_array_get_string_element (e, 0);
      v.seed = json_array_get_string_element (e, 1);
      v.rank = json_array_get_length (dims);
      g_assert_cmpuint (v.rank, <=, G_N_ELEMENTS (v.dims));
      v.n = 1;
      for (guint d = 0; d < v.rank; d++)
        v.n *= (v.dims[d] = (hsize_t)json_array_get_int_element (dims, d));
      v.a = (float)json_array_get_double_element (e, 3);
      v.b = (float)json_array_get_double_element (e, 4);
      v.dtype = json_array_get_string_element (e, 5);
      g_array_append_val (r->vars, v);
    }
}

static void
recipe_clear (Recipe *r)
{
  g_array_unref (r->vars);
  g_free (r->outputs);
  g_object_unref (r->parser);
}

/* ---- the weights file, as Keras' own save_weights () lays it out ------------------------- */

/* The group at @path's parent, opening the parts that exist and making the rest (as h5py
 * does); the dataset's own name back in *@base. */
static hid_t
parent_group (hid_t f, const char *path, const char **base)
{
  g_auto (GStrv) parts = g_strsplit (path, "/", -1);
  guint n = g_strv_length (parts);
  hid_t cur = H5Gopen2 (f, "/", H5P_DEFAULT);

  *base = strrchr (path, '/') ? strrchr (path, '/') + 1 : path;
  for (guint i = 0; i + 1 < n && cur >= 0; i++)
    {
      hid_t next = H5Lexists (cur, parts[i], H5P_DEFAULT) > 0
                       ? H5Gopen2 (cur, parts[i], H5P_DEFAULT)
                       : H5Gcreate2 (cur, parts[i], H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
      H5Gclose (cur);
      cur = next;
    }
  return cur;
}

/* A fixed-length string array attribute, as h5py writes Keras 2's layer_names and
 * weight_names. */
static void
write_names (hid_t obj, const char *attr_name, JsonArray *names)
{
  guint n = json_array_get_length (names);
  gsize width = 1;
  g_autofree char *buf = NULL;
  hsize_t dims = n;
  hid_t type, space, attr;

  for (guint i = 0; i < n; i++)
    width = MAX (width, strlen (json_array_get_string_element (names, i)));
  buf = g_malloc0 (width * MAX (n, 1));
  for (guint i = 0; i < n; i++)
    memcpy (buf + i * width, json_array_get_string_element (names, i),
            strlen (json_array_get_string_element (names, i)));
  type = H5Tcopy (H5T_C_S1);
  H5Tset_size (type, width);
  H5Tset_strpad (type, H5T_STR_NULLPAD);
  space = H5Screate_simple (1, &dims, NULL);
  attr = H5Acreate2 (obj, attr_name, type, space, H5P_DEFAULT, H5P_DEFAULT);
  g_assert_cmpint (attr, >=, 0);
  g_assert_cmpint (H5Awrite (attr, type, buf), >=, 0);
  H5Aclose (attr);
  H5Sclose (space);
  H5Tclose (type);
}

/* Writes @r's variables at @path: Keras 3's layers/<key>/vars/<i>, or Keras 2's groups named
 * in layer_names with their weight_names. Returns the SHA-256 of every variable's bytes in
 * the recipe's order, as the script computed it from the weights Keras predicted with. */
static char *
write_weights (const Recipe *r, const char *path)
{
  g_autoptr (GChecksum) sum = g_checksum_new (G_CHECKSUM_SHA256);
  hid_t f = H5Fcreate (path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);

  g_assert_cmpint (f, >=, 0);
  if (r->keras2)
    {
      JsonArray *names = json_object_get_array_member (r->root, "layer_names");
      JsonObject *weights = json_object_get_object_member (r->root, "weight_names");
      write_names (f, "layer_names", names);
      for (guint i = 0; i < json_array_get_length (names); i++)
        {
          const char *name = json_array_get_string_element (names, i), *base;
          /* The layer's group (tf.keras' DenseNets name layers "conv1/conv": group conv in
           * group conv1), as the parent of a name inside it. */
          g_autofree char *inside = g_strconcat (name, "/-", NULL);
          hid_t g = parent_group (f, inside, &base);
          g_assert_cmpint (g, >=, 0);
          if (json_object_has_member (weights, name))
            write_names (g, "weight_names", json_object_get_array_member (weights, name));
          H5Gclose (g);
        }
    }
  for (guint i = 0; i < r->vars->len; i++)
    {
      const RecipeVar *v = &g_array_index (r->vars, RecipeVar, i);
      g_autofree float *x = g_new (float, v->n + 1);
      const char *base;
      hid_t g = parent_group (f, v->path, &base), space, d, file_type, mem_type;
      const void *data = x;
      gsize elem = sizeof (float);
      g_autofree gint64 *ints = NULL;
      g_autofree gint32 *ints32 = NULL;

      g_assert_cmpint (g, >=, 0);
      recipe_values (v->seed, v->n, v->a, v->b, x);
      if (g_str_equal (v->dtype, "float32"))
        file_type = H5T_IEEE_F32LE, mem_type = H5T_NATIVE_FLOAT;
      else if (g_str_equal (v->dtype, "int64"))
        {
          ints = g_new (gint64, v->n + 1);
          for (gsize k = 0; k < v->n; k++)
            ints[k] = (gint64)x[k];
          file_type = H5T_STD_I64LE, mem_type = H5T_NATIVE_INT64, data = ints, elem = 8;
        }
      else
        {
          g_assert_cmpstr (v->dtype, ==, "int32");
          ints32 = g_new (gint32, v->n + 1);
          for (gsize k = 0; k < v->n; k++)
            ints32[k] = (gint32)x[k];
          file_type = H5T_STD_I32LE, mem_type = H5T_NATIVE_INT32, data = ints32, elem = 4;
        }
      /* (The host is little-endian, as Keras' bytes are.) */
      g_checksum_update (sum, data, v->n * elem);
      space = v->rank ? H5Screate_simple ((int)v->rank, v->dims, NULL) : H5Screate (H5S_SCALAR);
      d = H5Dcreate2 (g, base, file_type, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
      g_assert_cmpint (d, >=, 0);
      g_assert_cmpint (H5Dwrite (d, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data), >=, 0);
      H5Dclose (d);
      H5Sclose (space);
      H5Gclose (g);
    }
  g_assert_cmpint (H5Fclose (f), >=, 0);
  return g_strdup (g_checksum_get_string (sum));
}

/* ---- the forward pass ---------------------------------------------------------------------- */

/* Kilt's forward pass in inference mode on the test device over the recipe's inputs (made in
 * Keras' channels-last layout, turned to Kilt's channels-first); the largest |Kilt - Keras|
 * divided by the largest |Keras|. */
static double
forward_rel_diff (KiltModel *model, const Recipe *r)
{
  KiltContext *ctx = kilt_test_context ();
  g_autoptr (GError) error = NULL;
  guint h = r->in_shape[0], w = r->in_shape[1], c = r->in_shape[2], n = r->n_out_rows;
  gsize in_size = (gsize)h * w * c, out_n = (gsize)n * r->out_size;
  g_autofree float *nhwc = g_new (float, n *in_size);
  g_autofree float *x = g_new (float, n *in_size);
  g_autofree float *y = g_new (float, out_n);
  const float *params, *state;
  KiltExecutor *exec;
  KiltNode *out;
  double max_diff = 0, max_ref = 0;
  cl_int err;

  g_assert_true (kilt_model_get_weights (model, &params, &state));
  out = kilt_model_output (model);
  g_assert_cmpuint (kilt_shape_size (&out->out_shape), ==, r->out_size);
  recipe_values ("input", n * in_size, r->in_a, r->in_b, nhwc);
  for (guint s = 0; s < n; s++)
    for (guint i = 0; i < h; i++)
      for (guint j = 0; j < w; j++)
        for (guint k = 0; k < c; k++)
          x[s * in_size + ((gsize)k * h + i) * w + j]
              = nhwc[s * in_size + ((gsize)i * w + j) * c + k];
  exec = kilt_executor_new (ctx, model, n, FALSE, &error);
  g_assert_no_error (error);
  g_assert_true (kilt_executor_upload (exec, params, state, &error));
  g_assert_no_error (error);
  err = clEnqueueWriteBuffer (ctx->queue, kilt_executor_input (exec), CL_TRUE, 0,
                              sizeof (float) * n * in_size, x, 0, NULL, NULL);
  g_assert_cmpint (err, ==, CL_SUCCESS);
  g_assert_true (kilt_executor_forward (exec, FALSE, &error));
  g_assert_no_error (error);
  err = clEnqueueReadBuffer (ctx->queue, out->out, CL_TRUE, 0, sizeof (float) * out_n, y, 0, NULL,
                             NULL);
  g_assert_cmpint (err, ==, CL_SUCCESS);
  kilt_executor_free (exec);
  for (gsize i = 0; i < out_n; i++)
    {
      g_assert_true (isfinite (y[i]));
      max_diff = MAX (max_diff, fabs (y[i] - r->outputs[i]));
      max_ref = MAX (max_ref, fabs (r->outputs[i]));
    }
  g_assert_cmpfloat (max_ref, >, 0);
  return max_diff / max_ref;
}

static double worst = 0;
static char *worst_stem = NULL;

static void
check_app (gconstpointer data)
{
  const char *stem = data;
  g_autofree char *json_name = g_strconcat (stem, ".json.gz", NULL);
  g_autofree char *json_path = apps_file (json_name);
  g_autofree char *json = NULL, *notes = NULL, *dir = NULL, *wpath = NULL, *digest = NULL;
  g_autofree char *count = NULL;
  g_autoptr (GError) error = NULL;
  g_autoptr (KiltModel) model = NULL;
  Recipe r = { 0 };
  double rel;
  gboolean ok;
  gint64 t0 = g_get_monotonic_time ();

  if (kilt_test_context () == NULL)
    return;
  recipe_load (&r, stem);
  json = gunzip_text (json_path);
  model
      = kilt_keras_load_data (json, -1, json_name, KILT_LOSS_SOFTMAX_CROSS_ENTROPY, &notes, &error);
  g_assert_no_error (error);
  dir = kilt_test_tmpdir ();
  wpath = g_build_filename (dir, r.keras2 ? "model.h5" : "model.weights.h5", NULL);
  digest = write_weights (&r, wpath);
  /* The values written are, bit for bit, those Keras predicted with. */
  g_assert_cmpstr (digest, ==, json_object_get_string_member (r.root, "sha256"));
  /* What kilt-cli's --weights does with a file beside a JSON architecture. */
  ok = kilt_keras_file_load_weights (model, json, wpath, &error);
  g_assert_no_error (error);
  g_assert_true (ok);
  g_unlink (wpath);
  count = g_strdup_printf (" %" G_GINT64_FORMAT " parameters",
                           json_object_get_int_member (r.root, "count_params"));
  g_assert_true (g_str_has_suffix (model->weights_note, count));
  rel = forward_rel_diff (model, &r);
  g_printerr ("# %s: max |Kilt - Keras| / max |Keras| = %.3g (%u variables, %.1f s)\n", stem, rel,
              r.vars->len, (g_get_monotonic_time () - t0) / 1e6);
  if (rel > worst)
    {
      worst = rel;
      g_free (worst_stem);
      worst_stem = g_strdup (stem);
    }
  g_assert_cmpfloat (rel, <=, TOLERANCE);
  recipe_clear (&r);
}

static gint
compare_names (gconstpointer a, gconstpointer b)
{
  return strcmp (*(const char *const *)a, *(const char *const *)b);
}

int
main (int argc, char **argv)
{
  g_autofree char *dir = NULL;
  g_autoptr (GDir) d = NULL;
  g_autoptr (GPtrArray) stems = g_ptr_array_new_with_free_func (g_free);
  gboolean all = g_strcmp0 (g_getenv ("KILT_TEST_APPS_PREDICT"), "all") == 0;
  const char *name;
  int rc;

  g_test_init (&argc, &argv, NULL);
  dir = g_build_filename (KILT_SOURCE_DIR, "tests", "data", "keras", "apps", NULL);
  d = g_dir_open (dir, 0, NULL);
  g_assert_nonnull (d);
  while ((name = g_dir_read_name (d)) != NULL)
    if (g_str_has_suffix (name, ".predict.json.gz"))
      g_ptr_array_add (stems, g_strndup (name, strlen (name) - strlen (".predict.json.gz")));
  g_ptr_array_sort (stems, compare_names);
  /* A recipe lost from the folder fails here, not silently: 35 networks of each Keras. */
  g_assert_cmpuint (stems->len, ==, 70);
  /* Every network of the subset is there: a renamed file cannot drop it from CI. */
  for (gsize k = 0; k < G_N_ELEMENTS (ci_subset); k++)
    {
      gboolean found = FALSE;
      for (guint i = 0; i < stems->len; i++)
        found |= g_str_equal (stems->pdata[i], ci_subset[k]);
      if (!found)
        g_error ("%s.predict.json.gz is not in %s", ci_subset[k], dir);
    }
  for (guint i = 0; i < stems->len; i++)
    {
      const char *stem = stems->pdata[i];
      gboolean in_ci = FALSE;
      g_autofree char *test_path = g_strconcat ("/keras-apps-predict/", stem, NULL);
      for (gsize k = 0; k < G_N_ELEMENTS (ci_subset); k++)
        in_ci |= g_str_equal (ci_subset[k], stem);
      if (all || in_ci)
        g_test_add_data_func (test_path, stem, check_app);
    }
  rc = g_test_run ();
  if (worst_stem)
    g_printerr ("# worst: %s, %.3g\n", worst_stem, worst);
  kilt_test_context_close ();
  return rc;
}
