/* kilt-cli predict: a model's class scores and top classes for images, image folders, CSV rows
 * or NumPy arrays, printed or written as CSV, JSON or .npy. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "config.h"

#include "kilt-cli.h"
#include "kilt-error.h"
#include "kilt-exec.h"
#include "kilt-report.h"

#include <json-glib/json-glib.h>
#include "kilt-npy.h"

#include <gdk-pixbuf/gdk-pixbuf.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

/* Inputs are decoded all at once: at most this many samples, and images of at most this many
 * pixels a side before scaling (as the image-folder loader refuses). */
#define PREDICT_MAX_SAMPLES 1000000
#define PREDICT_MAX_SIDE    32768
#define PREDICT_BATCH       64

typedef struct
{
  GPtrArray *names; /* per sample: "file" or "file:row" */
  GArray *values;   /* floats, sample after sample, channels first */
} Inputs;

static gboolean
add_image (Inputs *in, const char *path, const KiltShape *shape, double scale, GError **error)
{
  g_autoptr (GdkPixbuf) pb = NULL;
  int w = 0, h = 0, nch, stride;
  const guint8 *px;
  gsize plane = (gsize)shape->h * shape->w, base = in->values->len;

  if (shape->c != 1 && shape->c != 3)
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_INVALID,
                   "%s: the model takes %u channels; images give 1 (gray) or 3 (RGB)", path,
                   shape->c);
      return FALSE;
    }
  if (gdk_pixbuf_get_file_info (path, &w, &h) == NULL)
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_DATA,
                   "%s: not an image gdk-pixbuf can read", path);
      return FALSE;
    }
  if (w <= 0 || h <= 0 || w > PREDICT_MAX_SIDE || h > PREDICT_MAX_SIDE)
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_DATA,
                   "%s: the image is %dx%d; Kilt takes at most %d pixels a side", path, w, h,
                   PREDICT_MAX_SIDE);
      return FALSE;
    }
  /* Stretched to the model's input, as the image-folder loader does without a crop. */
  pb = gdk_pixbuf_new_from_file_at_scale (path, (int)shape->w, (int)shape->h, FALSE, error);
  if (pb == NULL)
    {
      g_prefix_error (error, "%s: ", path);
      return FALSE;
    }
  if (gdk_pixbuf_get_width (pb) != (int)shape->w || gdk_pixbuf_get_height (pb) != (int)shape->h
      || gdk_pixbuf_get_bits_per_sample (pb) != 8 || gdk_pixbuf_get_n_channels (pb) < 3)
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_DATA, "%s: unsupported pixel layout",
                   path);
      return FALSE;
    }
  px = gdk_pixbuf_read_pixels (pb);
  stride = gdk_pixbuf_get_rowstride (pb);
  nch = gdk_pixbuf_get_n_channels (pb);
  g_array_set_size (in->values, base + kilt_shape_size (shape));
  for (guint y = 0; y < shape->h; y++)
    for (guint x = 0; x < shape->w; x++)
      {
        const guint8 *p = px + (gsize)y * stride + (gsize)x * nch;
        float *out = &g_array_index (in->values, float, base + (gsize)y * shape->w + x);
        if (shape->c == 1)
          out[0] = (float)(scale * ((299.0 * p[0] + 587.0 * p[1] + 114.0 * p[2]) / 1000.0));
        else
          for (guint c = 0; c < 3; c++)
            out[c * plane] = (float)(scale * p[c]);
      }
  g_ptr_array_add (in->names, g_strdup (path));
  return TRUE;
}

/* Rows of numbers, comma-separated, one sample a row; a first row that is not numbers is a
 * header. Every row holds exactly the model's input size. */
static gboolean
add_csv (Inputs *in, const char *path, gsize size, GError **error)
{
  g_autoptr (GMappedFile) map = g_mapped_file_new (path, FALSE, error);
  const char *p, *end;
  guint line = 0;

  if (map == NULL)
    return FALSE;
  p = g_mapped_file_get_contents (map);
  end = p + g_mapped_file_get_length (map);
  while (p && p < end)
    {
      const char *eol = memchr (p, '\n', (gsize)(end - p));
      g_autofree char *text = g_strndup (p, eol ? (gsize)(eol - p) : (gsize)(end - p));
      g_auto (GStrv) cells = NULL;
      gsize base = in->values->len;
      guint n;
      gboolean numeric = TRUE;

      p = eol ? eol + 1 : end;
      line++;
      g_strstrip (text);
      if (*text == '\0')
        continue;
      cells = g_strsplit (text, ",", (gint)MIN (size + 2, G_MAXINT));
      n = g_strv_length (cells);
      if (n != size)
        {
          if (line == 1)
            continue; /* a header, or a label column the caller will see on line 2 */
          g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_DATA,
                       "%s:%u: %s%u values; the model takes %zu", path, line,
                       n > size ? "more than " : "", MIN (n, (guint)size), size);
          return FALSE;
        }
      g_array_set_size (in->values, base + size);
      for (guint i = 0; i < n && numeric; i++)
        {
          char *stop = NULL;
          double v;
          g_strstrip (cells[i]);
          v = g_ascii_strtod (cells[i], &stop);
          if (stop == cells[i] || *stop != '\0' || !isfinite (v))
            numeric = FALSE;
          else
            g_array_index (in->values, float, base + i) = (float)v;
        }
      if (!numeric)
        {
          g_array_set_size (in->values, base);
          if (line == 1)
            continue;
          g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_DATA,
                       "%s:%u: a value that is not a finite number", path, line);
          return FALSE;
        }
      if (in->names->len >= PREDICT_MAX_SAMPLES)
        {
          g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_DATA, "%s: more than %d samples",
                       path, PREDICT_MAX_SAMPLES);
          return FALSE;
        }
      g_ptr_array_add (in->names, g_strdup_printf ("%s:%u", path, line));
    }
  return TRUE;
}

/* A .npy array of samples, as Keras' model.predict takes them: (N, ...) with the model's input
 * after the first axis, channels last (N, H, W, C) or first (N, C, H, W); values as they are
 * (no scaling). A model whose input is a single sample's shape also takes one sample without
 * the N axis. */
static gboolean
add_npy (Inputs *in, const char *path, KiltModel *model, GError **error)
{
  const KiltShape *shape = &kilt_model_node (model, 0)->out_shape;
  gsize size = kilt_shape_size (shape), plane = (gsize)shape->h * shape->w;
  KiltNpy a = { 0 };
  guint64 n = 0, hwc[3] = { shape->h, shape->w, shape->c },
          chw[3] = { shape->c, shape->h, shape->w };
  gboolean last = FALSE, ok = FALSE;
  guint lead = 1;

  if (!kilt_npy_read (path, (guint64)PREDICT_MAX_SAMPLES * size, &a, error))
    return FALSE;
  /* The sample's axes: all but the first, or all of them for a single sample. */
  for (guint pass = 0; pass < 2 && !ok; pass++)
    {
      guint r;
      lead = pass == 0 ? 1 : 0;
      if (a.rank < lead)
        continue;
      r = a.rank - lead;
      n = lead ? a.shape[0] : 1;
      if (r == 3 && memcmp (a.shape + lead, chw, sizeof chw) == 0
          && !(model->keras_json && memcmp (a.shape + lead, hwc, sizeof hwc) == 0))
        ok = TRUE, last = FALSE;
      else if (r == 3 && memcmp (a.shape + lead, hwc, sizeof hwc) == 0)
        ok = TRUE, last = shape->c > 1;
      else if (r == 2 && shape->c == 1 && a.shape[lead] == shape->h
               && a.shape[lead + 1] == shape->w)
        ok = TRUE;
      else if (r == 1 && a.shape[lead] == size)
        ok = TRUE;
    }
  if (!ok)
    {
      GString *got = g_string_new (NULL);
      for (guint i = 0; i < a.rank; i++)
        g_string_append_printf (got, "%s%" G_GUINT64_FORMAT, i ? ", " : "", a.shape[i]);
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_DATA,
                   "%s: an array of shape (%s); the model takes (N, %u, %u, %u) (channels last, "
                   "as Keras), (N, %u, %u, %u) or (N, %zu)",
                   path, got->str, shape->h, shape->w, shape->c, shape->c, shape->h, shape->w,
                   size);
      g_string_free (got, TRUE);
      kilt_npy_clear (&a);
      return FALSE;
    }
  if (in->names->len + n > PREDICT_MAX_SAMPLES)
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_DATA, "%s: more than %d samples",
                   path, PREDICT_MAX_SAMPLES);
      kilt_npy_clear (&a);
      return FALSE;
    }
  for (guint64 s = 0; s < n; s++)
    {
      const float *src = a.data + s * size;
      gsize base = in->values->len;
      g_array_set_size (in->values, base + size);
      if (last)
        for (gsize p = 0; p < plane; p++)
          for (guint c = 0; c < shape->c; c++)
            g_array_index (in->values, float, base + c * plane + p) = src[p * shape->c + c];
      else
        memcpy (&g_array_index (in->values, float, base), src, size * sizeof (float));
      g_ptr_array_add (in->names, lead ? g_strdup_printf ("%s[%" G_GUINT64_FORMAT "]", path, s)
                                       : g_strdup (path));
    }
  kilt_npy_clear (&a);
  return TRUE;
}

static gboolean
is_image_name (const char *name)
{
  static const char *const ext[]
      = { ".png", ".jpg", ".jpeg", ".bmp", ".gif", ".ppm", ".pgm", ".tif", ".tiff", ".webp", NULL };
  g_autofree char *lower = g_ascii_strdown (name, -1);

  for (guint i = 0; ext[i]; i++)
    if (g_str_has_suffix (lower, ext[i]))
      return TRUE;
  return FALSE;
}

static int
compare_names (gconstpointer a, gconstpointer b)
{
  return strcmp (*(char *const *)a, *(char *const *)b);
}

/* The image files under @dir, in its sub-folders too (an image folder's classes), sorted. */
static gboolean
list_images (const char *dir, GPtrArray *paths, guint depth, GError **error)
{
  g_autoptr (GDir) d = g_dir_open (dir, 0, error);
  g_autoptr (GPtrArray) names = g_ptr_array_new_with_free_func (g_free);
  const char *name;

  if (d == NULL)
    return FALSE;
  while ((name = g_dir_read_name (d)))
    if (name[0] != '.')
      g_ptr_array_add (names, g_strdup (name));
  g_ptr_array_sort (names, compare_names);
  for (guint i = 0; i < names->len; i++)
    {
      g_autofree char *path = g_build_filename (dir, names->pdata[i], NULL);
      if (g_file_test (path, G_FILE_TEST_IS_DIR) && !g_file_test (path, G_FILE_TEST_IS_SYMLINK))
        {
          if (depth < 8 && !list_images (path, paths, depth + 1, error))
            return FALSE;
        }
      else if (is_image_name (names->pdata[i]))
        {
          if (paths->len >= PREDICT_MAX_SAMPLES)
            {
              g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_DATA,
                           "%s: more than %d images", dir, PREDICT_MAX_SAMPLES);
              return FALSE;
            }
          g_ptr_array_add (paths, g_steal_pointer (&path));
        }
    }
  return TRUE;
}

static gboolean
add_input (Inputs *in, const char *path, KiltModel *model, double scale, GError **error)
{
  const KiltShape *shape = &kilt_model_node (model, 0)->out_shape;
  g_autofree char *lower = g_ascii_strdown (path, -1);

  if (g_file_test (path, G_FILE_TEST_IS_DIR))
    {
      g_autoptr (GPtrArray) paths = g_ptr_array_new_with_free_func (g_free);
      if (!list_images (path, paths, 0, error))
        return FALSE;
      if (paths->len == 0)
        {
          g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_DATA,
                       "%s: a folder with no images in it (or in its sub-folders)", path);
          return FALSE;
        }
      for (guint i = 0; i < paths->len; i++)
        if (!add_image (in, paths->pdata[i], shape, scale, error))
          return FALSE;
      return TRUE;
    }
  if (g_str_has_suffix (lower, ".csv"))
    return add_csv (in, path, kilt_shape_size (shape), error);
  if (g_str_has_suffix (lower, ".npy"))
    return add_npy (in, path, model, error);
  return add_image (in, path, shape, scale, error);
}

/* The scores as @path's extension says: .npy (float32, N x classes), .json (a list of
 * {input, scores, top, labels}) or .csv (input, prediction, then a score per class). */
static gboolean
write_scores (const char *path, const Inputs *in, const float *out, guint n_out, const guint *order,
              guint k, char **labels, GError **error)
{
  guint n = in->names->len, n_labels = labels ? g_strv_length (labels) : 0;
  g_autofree char *lower = g_ascii_strdown (path, -1);
  g_autoptr (GString) s = g_string_new (NULL);
  g_autoptr (GError) local = NULL;

  if (g_str_has_suffix (lower, ".npy"))
    {
      guint64 shape[2] = { n, n_out };
      return kilt_npy_write_f32 (path, out, shape, 2, error);
    }
  if (g_str_has_suffix (lower, ".json"))
    {
      g_autoptr (JsonBuilder) b = json_builder_new ();
      g_autoptr (JsonGenerator) gen = json_generator_new ();
      g_autoptr (JsonNode) root = NULL;
      g_autofree char *text = NULL;
      json_builder_begin_array (b);
      for (guint i = 0; i < n; i++)
        {
          g_autofree char *name = g_utf8_make_valid (in->names->pdata[i], -1);
          json_builder_begin_object (b);
          json_builder_set_member_name (b, "input");
          json_builder_add_string_value (b, name);
          json_builder_set_member_name (b, "scores");
          json_builder_begin_array (b);
          for (guint j = 0; j < n_out; j++)
            json_builder_add_double_value (b, out[(gsize)i * n_out + j]);
          json_builder_end_array (b);
          json_builder_set_member_name (b, "top");
          json_builder_begin_array (b);
          for (guint j = 0; j < k; j++)
            json_builder_add_int_value (b, order[(gsize)i * k + j]);
          json_builder_end_array (b);
          if (n_labels)
            {
              json_builder_set_member_name (b, "labels");
              json_builder_begin_array (b);
              for (guint j = 0; j < k; j++)
                {
                  guint c = order[(gsize)i * k + j];
                  if (c < n_labels)
                    json_builder_add_string_value (b, labels[c]);
                  else
                    json_builder_add_null_value (b);
                }
              json_builder_end_array (b);
            }
          json_builder_end_object (b);
        }
      json_builder_end_array (b);
      root = json_builder_get_root (b);
      json_generator_set_root (gen, root);
      json_generator_set_pretty (gen, TRUE);
      text = json_generator_to_data (gen, NULL);
      g_string_append (s, text);
      g_string_append_c (s, '\n');
    }
  else if (g_str_has_suffix (lower, ".csv"))
    {
      g_string_append (s, "input,prediction");
      for (guint j = 0; j < n_out; j++)
        {
          g_string_append_c (s, ',');
          if (j < n_labels)
            kilt_csv_append_field (s, labels[j]);
          else
            g_string_append_printf (s, "%u", j);
        }
      g_string_append_c (s, '\n');
      for (guint i = 0; i < n; i++)
        {
          guint c = order[(gsize)i * k];
          kilt_csv_append_field (s, in->names->pdata[i]);
          g_string_append_c (s, ',');
          if (c < n_labels)
            kilt_csv_append_field (s, labels[c]);
          else
            g_string_append_printf (s, "%u", c);
          for (guint j = 0; j < n_out; j++)
            g_string_append_printf (s, ",%.9g", out[(gsize)i * n_out + j]);
          g_string_append_c (s, '\n');
        }
    }
  else
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_INVALID,
                   "%s: give --output a .csv, .json or .npy file", path);
      return FALSE;
    }
  if (!g_file_set_contents (path, s->str, (gssize)s->len, &local))
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_IO, "cannot write %s: %s", path,
                   local->message);
      return FALSE;
    }
  return TRUE;
}

static gboolean
run_model (KiltModel *model, const char *device_id, const Inputs *in, float *out, GError **error)
{
  g_autoptr (KiltDeviceList) devices = kilt_device_list_new ();
  const KiltDeviceInfo *info;
  KiltContext *ctx;
  KiltExecutor *exec = NULL;
  const float *params, *state;
  g_autofree float *init_p = NULL, *init_s = NULL;
  gsize in_size = kilt_shape_size (&kilt_model_node (model, 0)->out_shape);
  guint n_out = kilt_model_n_outputs (model), n = in->names->len;
  guint batch = MIN (n, PREDICT_BATCH);
  gboolean ok = FALSE;

  if (!kilt_model_get_weights (model, &params, &state))
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_INVALID,
                   "model %s has no weights: give a Keras .h5 or .keras file as --model, or "
                   "--weights",
                   model->name);
      return FALSE;
    }
  info = device_id ? kilt_device_list_find (devices, device_id)
                   : kilt_device_list_choose_default (devices, error);
  if (info == NULL)
    {
      if (device_id)
        g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_NO_DEVICE,
                     "No OpenCL device matches \"%s\" (or several do); `kilt-cli devices` lists "
                     "them",
                     device_id);
      return FALSE;
    }
  if (!(ctx = kilt_context_new (info, error)))
    return FALSE;
  exec = kilt_executor_new (ctx, model, batch, FALSE, error);
  if (exec == NULL || !kilt_executor_upload (exec, params, state, error))
    goto out;
  for (guint b = 0; b < n; b += batch)
    {
      guint m = MIN (batch, n - b);
      cl_int err = clEnqueueWriteBuffer (
          ctx->queue, kilt_executor_input (exec), CL_TRUE, 0, sizeof (float) * m * in_size,
          &g_array_index (in->values, float, (gsize)b *in_size), 0, NULL, NULL);
      if (err == CL_SUCCESS && !kilt_executor_forward (exec, FALSE, error))
        goto out;
      if (err == CL_SUCCESS)
        err = clEnqueueReadBuffer (ctx->queue, kilt_model_output (model)->out, CL_TRUE, 0,
                                   sizeof (float) * m * n_out, out + (gsize)b * n_out, 0, NULL,
                                   NULL);
      if (err != CL_SUCCESS)
        {
          g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_OPENCL,
                       "copying samples %u to %u on %s failed (OpenCL error %d)", b + 1, b + m,
                       info->name, err);
          goto out;
        }
    }
  ok = TRUE;
out:
  kilt_executor_free (exec);
  kilt_context_free (ctx);
  return ok;
}

int
kilt_cli_predict (int argc, char **argv)
{
  KiltCliCommon c;
  g_autoptr (GOptionContext) oc
      = g_option_context_new ("INPUT... - a model's class scores for images, image folders, CSV "
                              "rows or .npy arrays");
  g_autofree GOptionEntry *entries = NULL;
  g_autoptr (GError) error = NULL;
  g_auto (GStrv) labels = NULL;
  char *labels_path = NULL, *scale_text = NULL, *out_path = NULL;
  g_autofree guint *order = NULL;
  int top = 3;
  double scale = 1.0 / 255;
  GOptionEntry extra[] = {
    { "top", 'k', 0, G_OPTION_ARG_INT, &top, "Classes to print per sample (default 3)", "K" },
    { "labels", 0, 0, G_OPTION_ARG_FILENAME, &labels_path, "Class names, one a line", "FILE" },
    { "scale", 0, 0, G_OPTION_ARG_STRING, &scale_text,
      "Factor for image pixels 0..255 (default 1/255, as training scales them)", "F" },
    { "output", 'o', 0, G_OPTION_ARG_FILENAME, &out_path,
      "Write every sample's scores to a .csv, .json or .npy (float32, samples x classes) file "
      "instead of printing the top classes",
      "FILE" },
    { NULL },
  };
  Inputs in
      = { g_ptr_array_new_with_free_func (g_free), g_array_new (FALSE, FALSE, sizeof (float)) };
  g_autofree float *out = NULL;
  KiltModel *model = NULL;
  KiltDataset *ds = NULL;
  guint n_out;
  int rc = 1;

  kilt_cli_common_init (&c);
  entries = kilt_cli_common_entries (&c);
  /* -o is --output, as in export and report: predict trains nothing. */
  for (GOptionEntry *e = entries; e->long_name; e++)
    if (e->short_name == 'o')
      e->short_name = 0;
  g_option_context_add_main_entries (oc, entries, NULL);
  g_option_context_add_main_entries (oc, extra, NULL);
  g_option_context_set_summary (
      oc, "Give --model (a Keras .h5 or .keras file, or a model with --weights or --checkpoint) "
          "and inputs: image files, folders of images (their sub-folders too, in name order), CSV "
          "files of rows, or NumPy .npy arrays of samples as Keras' model.predict takes them "
          "((N, H, W, C), channels last, or (N, C, H, W); values as they are, images are scaled "
          "by --scale).");
  if (!kilt_cli_common_parse (&c, oc, &argc, &argv, &error))
    {
      fprintf (stderr, "kilt-cli predict: %s\n", error->message);
      rc = 2;
      goto done;
    }
  if (scale_text)
    {
      char *stop = NULL;
      scale = g_ascii_strtod (scale_text, &stop);
      if (stop == scale_text || *stop || !isfinite (scale) || scale <= 0 || scale > 1e6)
        {
          fprintf (stderr, "kilt-cli predict: --scale wants a number in (0, 1e6], not %s\n",
                   scale_text);
          rc = 2;
          goto done;
        }
    }
  if (argc < 2 || top < 1)
    {
      fprintf (stderr, "usage: kilt-cli predict --model M [--weights W] INPUT... [-o "
                       "out.csv|out.json|out.npy] (--top >= 1)\n");
      rc = 2;
      goto done;
    }
  if (labels_path)
    {
      g_autofree char *text = NULL;
      if (!g_file_get_contents (labels_path, &text, NULL, &error))
        {
          fprintf (stderr, "kilt-cli predict: %s\n", error->message);
          goto done;
        }
      g_strchomp (text);
      labels = g_strsplit (text, "\n", -1);
    }
  /* --replace-head sizes the head to --data's classes, as in the training run; their names
   * label the scores unless --labels gives others. */
  if (c.replace_head && c.data && !(ds = kilt_cli_load_data (&c, &error)))
    {
      fprintf (stderr, "kilt-cli predict: %s\n", error->message);
      goto done;
    }
  if (ds && labels == NULL && ds->class_names)
    labels = g_strdupv (ds->class_names);
  if (!(model = kilt_cli_load_model (&c, ds, &error))
      || !kilt_cli_checkpoint_weights (&c, model, &error))
    {
      fprintf (stderr, "kilt-cli predict: %s\n", error->message);
      goto done;
    }
  {
    for (int i = 1; i < argc; i++)
      {
        gboolean ok = add_input (&in, argv[i], model, scale, &error);
        if (!ok)
          {
            fprintf (stderr, "kilt-cli predict: %s\n", error->message);
            goto done;
          }
      }
  }
  if (in.names->len == 0)
    {
      fprintf (stderr, "kilt-cli predict: no samples in the files given\n");
      goto done;
    }
  /* A model that reads ids: an id outside the table would read zeros on the device; name it
   * instead, as training does. */
  for (guint i = 1; i < kilt_model_n_nodes (model); i++)
    {
      const KiltNode *node = kilt_model_node (model, i);
      gsize size = kilt_shape_size (&kilt_model_node (model, 0)->out_shape);
      if (node->type != KILT_LAYER_EMBEDDING || node->inputs[0] != 0)
        continue;
      for (gsize k = 0; k < (gsize)in.names->len * size; k++)
        {
          float v = g_array_index (in.values, float, k);
          if (v >= 0 && v < node->cfg.input_dim && v == floorf (v))
            continue;
          fprintf (stderr,
                   "kilt-cli predict: %s holds %.9g at value %zu (counting from 1); layer %s "
                   "(Embedding) takes whole-number ids from 0 to %u\n",
                   (const char *)g_ptr_array_index (in.names, k / size), v, k % size + 1,
                   node->name, node->cfg.input_dim - 1);
          goto done;
        }
    }
  n_out = kilt_model_n_outputs (model);
  out = g_new (float, (gsize)in.names->len *n_out);
  if (!run_model (model, c.device, &in, out, &error))
    {
      fprintf (stderr, "kilt-cli predict: %s\n", error->message);
      goto done;
    }
  /* Each sample's k largest, by selection: k is small. */
  top = MIN ((guint)top, n_out);
  order = g_new (guint, (gsize)in.names->len * top);
  for (guint s = 0; s < in.names->len; s++)
    {
      const float *y = out + (gsize)s * n_out;
      guint *o = order + (gsize)s * top;
      g_autofree guint *all = g_new (guint, n_out);
      for (guint i = 0; i < n_out; i++)
        all[i] = i;
      for (guint i = 0; i < (guint)top; i++)
        {
          for (guint j = i + 1; j < n_out; j++)
            if (y[all[j]] > y[all[i]])
              {
                guint t = all[i];
                all[i] = all[j];
                all[j] = t;
              }
          o[i] = all[i];
        }
    }
  if (out_path)
    {
      if (!write_scores (out_path, &in, out, n_out, order, (guint)top, labels, &error))
        {
          fprintf (stderr, "kilt-cli predict: %s\n", error->message);
          goto done;
        }
      printf ("Wrote %s: %u samples x %u scores (%s)\n", out_path, in.names->len, n_out,
              model->weights_note ? model->weights_note : "the model's weights");
      rc = 0;
      goto done;
    }
  for (guint s = 0; s < in.names->len; s++)
    {
      const float *y = out + (gsize)s * n_out;
      const guint *o = order + (gsize)s * top;
      guint k = (guint)top;
      if (c.json)
        {
          g_autofree char *esc = g_strescape (g_ptr_array_index (in.names, s), NULL);
          printf ("{\"input\": \"%s\", \"scores\": [", esc);
          for (guint i = 0; i < n_out; i++)
            printf ("%s%.7g", i ? ", " : "", y[i]);
          printf ("], \"top\": [");
          for (guint i = 0; i < k; i++)
            printf ("%s%u", i ? ", " : "", o[i]);
          printf ("]}\n");
          continue;
        }
      printf ("%s:", (char *)g_ptr_array_index (in.names, s));
      for (guint i = 0; i < k; i++)
        {
          const char *name = labels && o[i] < g_strv_length (labels) ? labels[o[i]] : NULL;
          if (name)
            printf ("%s %s %.4f", i ? "," : "", name, y[o[i]]);
          else
            printf ("%s %u %.4f", i ? "," : "", o[i], y[o[i]]);
        }
      printf ("\n");
    }
  rc = 0;
done:
  kilt_model_free (model);
  kilt_dataset_free (ds);
  g_ptr_array_unref (in.names);
  g_array_unref (in.values);
  g_free (labels_path);
  g_free (scale_text);
  g_free (out_path);
  kilt_cli_common_clear (&c);
  return rc;
}
