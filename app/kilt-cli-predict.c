/* kilt-cli predict: a model's top classes for images or a CSV's rows. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "config.h"

#include "kilt-cli.h"
#include "kilt-error.h"
#include "kilt-exec.h"

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
      = g_option_context_new ("FILE... - a model's top classes for images or CSV rows");
  g_autofree GOptionEntry *entries = NULL;
  g_autoptr (GError) error = NULL;
  g_auto (GStrv) labels = NULL;
  char *labels_path = NULL, *scale_text = NULL;
  int top = 3;
  double scale = 1.0 / 255;
  GOptionEntry extra[] = {
    { "top", 'k', 0, G_OPTION_ARG_INT, &top, "Classes to print per sample (default 3)", "K" },
    { "labels", 0, 0, G_OPTION_ARG_FILENAME, &labels_path, "Class names, one a line", "FILE" },
    { "scale", 0, 0, G_OPTION_ARG_STRING, &scale_text,
      "Factor for image pixels 0..255 (default 1/255, as training scales them)", "F" },
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
  g_option_context_add_main_entries (oc, entries, NULL);
  g_option_context_add_main_entries (oc, extra, NULL);
  g_option_context_set_summary (oc, "Give --model (a Keras .h5 or .keras file, or a model with "
                                    "--weights or --checkpoint) and image files or CSV files of "
                                    "rows.");
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
      fprintf (stderr, "usage: kilt-cli predict --model M [--weights W] FILE... (--top >= 1)\n");
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
    const KiltShape *shape = &kilt_model_node (model, 0)->out_shape;
    for (int i = 1; i < argc; i++)
      {
        gboolean ok = g_str_has_suffix (argv[i], ".csv") || g_str_has_suffix (argv[i], ".CSV")
                          ? add_csv (&in, argv[i], kilt_shape_size (shape), &error)
                          : add_image (&in, argv[i], shape, scale, &error);
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
  for (guint s = 0; s < in.names->len; s++)
    {
      const float *y = out + (gsize)s * n_out;
      g_autofree guint *order = g_new (guint, n_out);
      guint k = MIN ((guint)top, n_out);
      for (guint i = 0; i < n_out; i++)
        order[i] = i;
      /* The k largest, by selection: k is small. */
      for (guint i = 0; i < k; i++)
        for (guint j = i + 1; j < n_out; j++)
          if (y[order[j]] > y[order[i]])
            {
              guint t = order[i];
              order[i] = order[j];
              order[j] = t;
            }
      if (c.json)
        {
          g_autofree char *esc = g_strescape (g_ptr_array_index (in.names, s), NULL);
          printf ("{\"input\": \"%s\", \"scores\": [", esc);
          for (guint i = 0; i < n_out; i++)
            printf ("%s%.7g", i ? ", " : "", y[i]);
          printf ("], \"top\": [");
          for (guint i = 0; i < k; i++)
            printf ("%s%u", i ? ", " : "", order[i]);
          printf ("]}\n");
          continue;
        }
      printf ("%s:", (char *)g_ptr_array_index (in.names, s));
      for (guint i = 0; i < k; i++)
        {
          const char *name = labels && order[i] < g_strv_length (labels) ? labels[order[i]] : NULL;
          if (name)
            printf ("%s %s %.4f", i ? "," : "", name, y[order[i]]);
          else
            printf ("%s %u %.4f", i ? "," : "", order[i], y[order[i]]);
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
  kilt_cli_common_clear (&c);
  return rc;
}
