/* How a trained classifier does per class: per-sample predictions, confusion matrix, metrics. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#define G_LOG_DOMAIN "kilt-evaluation"

#include "config.h"

#include "kilt-evaluation.h"

#include "kilt-batcher.h"
#include "kilt-checkpoint.h"
#include "kilt-error.h"
#include "kilt-exec.h"
#include "kilt-ids.h"
#include "kilt-gemm-tf32.h"
#include "kilt-json-limits.h"

#include <gdk-pixbuf/gdk-pixbuf.h>
#include <math.h>
#include <string.h>

/* Images larger than this a side are refused before decoding (as the folder loader does). */
#define CLASSIFY_MAX_SIDE 32768
/* Keras' epsilon, as the loss kernel clips with it. */
#define LOSS_EPS 1e-7

static void
misclassified_clear (gpointer data)
{
  g_clear_pointer (&((KiltMisclassified *)data)->path, g_free);
}

KiltEvaluation *
kilt_evaluation_new (guint n_classes, const char *const *class_names, guint64 n_samples)
{
  KiltEvaluation *ev = g_new0 (KiltEvaluation, 1);
  gsize nc = n_classes;

  g_return_val_if_fail (n_classes > 0 && n_classes <= KILT_EVALUATION_MAX_CLASSES, NULL);
  ev->split = KILT_SPLIT_TEST;
  ev->n_classes = n_classes;
  ev->class_names = g_new0 (char *, nc + 1);
  for (guint i = 0; i < n_classes; i++)
    {
      gboolean have = class_names && class_names[i];
      ev->class_names[i] = have ? g_strdup (class_names[i]) : g_strdup_printf ("%u", i);
      if (have && class_names[i + 1] == NULL)
        class_names = NULL; /* fewer names than classes: number the rest */
    }
  ev->n_samples = n_samples;
  ev->truth = g_new0 (gint32, MAX (n_samples, 1));
  ev->predicted = g_new0 (guint32, MAX (n_samples, 1));
  ev->probability = g_new0 (float, MAX (n_samples, 1));
  ev->p_truth = g_new0 (float, MAX (n_samples, 1));
  ev->confusion = g_new0 (guint64, nc * nc);
  ev->support = g_new0 (guint64, nc);
  ev->n_predicted = g_new0 (guint64, nc);
  ev->precision = g_new0 (double, nc);
  ev->recall = g_new0 (double, nc);
  ev->f1 = g_new0 (double, nc);
  ev->misclassified = g_array_new (FALSE, FALSE, sizeof (KiltMisclassified));
  g_array_set_clear_func (ev->misclassified, misclassified_clear);
  ev->loss = NAN;
  return ev;
}

void
kilt_evaluation_free (KiltEvaluation *ev)
{
  if (ev == NULL)
    return;
  g_strfreev (ev->class_names);
  g_free (ev->truth);
  g_free (ev->predicted);
  g_strfreev (ev->paths);
  g_free (ev->probability);
  g_free (ev->p_truth);
  g_free (ev->confusion);
  g_free (ev->support);
  g_free (ev->n_predicted);
  g_free (ev->precision);
  g_free (ev->recall);
  g_free (ev->f1);
  g_array_unref (ev->misclassified);
  g_free (ev);
}

/* Everything that follows from the matrix alone, so that an evaluation read back from JSON
 * shows the very figures the one that wrote it did. */
static void
figures_from_matrix (KiltEvaluation *ev)
{
  guint nc = ev->n_classes;

  ev->correct = 0;
  memset (ev->support, 0, sizeof (guint64) * nc);
  memset (ev->n_predicted, 0, sizeof (guint64) * nc);
  for (guint t = 0; t < nc; t++)
    for (guint p = 0; p < nc; p++)
      {
        guint64 v = ev->confusion[(gsize)t * nc + p];
        ev->support[t] += v;
        ev->n_predicted[p] += v;
        if (t == p)
          ev->correct += v;
      }
  for (guint c = 0; c < nc; c++)
    {
      double tp = (double)ev->confusion[(gsize)c * nc + c];
      ev->precision[c] = ev->n_predicted[c] ? tp / (double)ev->n_predicted[c] : NAN;
      ev->recall[c] = ev->support[c] ? tp / (double)ev->support[c] : NAN;
      if (isnan (ev->precision[c]) || isnan (ev->recall[c]))
        ev->f1[c] = NAN;
      else if (ev->precision[c] + ev->recall[c] == 0)
        ev->f1[c] = 0;
      else
        ev->f1[c] = 2 * ev->precision[c] * ev->recall[c] / (ev->precision[c] + ev->recall[c]);
    }
  ev->accuracy = ev->n_samples ? (double)ev->correct / (double)ev->n_samples : NAN;
}

static int
compare_misclassified (gconstpointer a, gconstpointer b)
{
  const KiltMisclassified *x = a, *y = b;

  if (x->probability != y->probability)
    return x->probability > y->probability ? -1 : 1;
  return x->index < y->index ? -1 : x->index > y->index;
}

gboolean
kilt_evaluation_tally (KiltEvaluation *ev, GError **error)
{
  guint nc = ev->n_classes;
  double loss = 0;

  g_return_val_if_fail (ev->truth != NULL, FALSE);
  memset (ev->confusion, 0, sizeof (guint64) * nc * nc);
  g_array_set_size (ev->misclassified, 0);
  for (guint64 i = 0; i < ev->n_samples; i++)
    {
      gint32 t = ev->truth[i];
      guint32 p = ev->predicted[i];
      if (t < 0 || (guint)t >= nc || p >= nc)
        {
          g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_DATA,
                       "sample %" G_GUINT64_FORMAT " has %s %d; the classes are 0 to %u", i,
                       t < 0 || (guint)t >= nc ? "label" : "predicted class",
                       t < 0 || (guint)t >= nc ? t : (int)p, nc - 1);
          return FALSE;
        }
      ev->confusion[(gsize)t * nc + p]++;
      loss -= log (CLAMP ((double)ev->p_truth[i], LOSS_EPS, 1 - LOSS_EPS));
      if ((guint)t != p)
        {
          KiltMisclassified m
              = { i, (guint)t, p, ev->probability[i], ev->paths ? g_strdup (ev->paths[i]) : NULL };
          g_array_append_val (ev->misclassified, m);
        }
    }
  g_array_sort (ev->misclassified, compare_misclassified);
  ev->loss = ev->n_samples ? loss / (double)ev->n_samples : NAN;
  figures_from_matrix (ev);
  return TRUE;
}

/* ---- running a split on a device ---------------------------------------------------------- */

typedef struct
{
  KiltDeviceList *devices;
  KiltContext *ctx;
  KiltExecutor *exec;
  KiltBuffer *targets;
  KiltCheckpoint *ck;
  guint batch;
} Runner;

static void
runner_clear (Runner *r)
{
  kilt_executor_free (r->exec);
  kilt_buffer_free (r->targets);
  kilt_context_free (r->ctx);
  if (r->devices)
    kilt_device_list_free (r->devices);
  kilt_checkpoint_free (r->ck);
  memset (r, 0, sizeof *r);
}

/* The model is a classifier of @data's classes and takes its samples. */
static gboolean
check_classifier (KiltModel *model, const KiltDataset *data, GError **error)
{
  KiltNode *out = kilt_model_output (model);
  KiltShape in = kilt_model_node (model, 0)->out_shape;
  guint n_out = kilt_model_n_outputs (model);

  if (data->n_classes == 0)
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_DATA,
                   "data set %s has numeric targets; a confusion matrix needs classes", data->name);
      return FALSE;
    }
  if (data->n_classes > KILT_EVALUATION_MAX_CLASSES)
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_DATA,
                   "data set %s has %u classes; an evaluation takes at most %u", data->name,
                   data->n_classes, KILT_EVALUATION_MAX_CLASSES);
      return FALSE;
    }
  if (model->loss != KILT_LOSS_SOFTMAX_CROSS_ENTROPY || out->cfg.activation != KILT_ACT_SOFTMAX)
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_MODEL,
                   "model %s: an evaluation per class needs a softmax classifier (its last "
                   "layer %s ends in %s, loss %s)",
                   model->name, out->name,
                   out->cfg.activation == KILT_ACT_SOFTMAX ? "a softmax" : "no softmax",
                   kilt_loss_name (model->loss));
      return FALSE;
    }
  if (n_out != data->n_classes)
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_MODEL,
                   "model %s has %u outputs but data set %s has %u classes", model->name, n_out,
                   data->name, data->n_classes);
      return FALSE;
    }
  if (in.c != data->shape.c || in.h != data->shape.h || in.w != data->shape.w)
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_MODEL,
                   "model %s takes %ux%ux%u (channels x height x width) inputs but data set %s "
                   "has %ux%ux%u samples",
                   model->name, in.c, in.h, in.w, data->name, data->shape.c, data->shape.h,
                   data->shape.w);
      return FALSE;
    }
  return TRUE;
}

/* Device, weights and an inference executor for @batch rows. */
static gboolean
runner_open (Runner *r, KiltModel *model, const KiltDataset *data, const KiltTrainConfig *config,
             guint batch, GError **error)
{
  const KiltDeviceInfo *info;
  const float *wp = NULL, *ws = NULL;

  r->batch = batch;
  if (!model->built && !kilt_model_build (model, error))
    return FALSE;
  if (!check_classifier (model, data, error))
    return FALSE;
  if (config->checkpoint_path)
    {
      if (!(r->ck = kilt_checkpoint_load (config->checkpoint_path, error)))
        return FALSE;
      if (r->ck->model_hash != kilt_model_hash (model) || r->ck->n_params != model->n_params
          || r->ck->n_state != model->n_state)
        {
          g_set_error (
              error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_MODEL,
              "checkpoint %s holds the weights of another model than %s (%" G_GUINT64_FORMAT
              " parameters; %s has %zu)",
              config->checkpoint_path, model->name, r->ck->n_params, model->name, model->n_params);
          return FALSE;
        }
      wp = r->ck->params;
      ws = r->ck->state;
    }
  else if (!kilt_model_get_weights (model, &wp, &ws))
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_INVALID,
                   "evaluating model %s needs a checkpoint with its trained weights", model->name);
      return FALSE;
    }
  r->devices = kilt_device_list_new ();
  if (config->device_id)
    {
      if (!(info = kilt_device_list_find (r->devices, config->device_id)))
        {
          g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_NO_DEVICE,
                       "No OpenCL device matches \"%s\" (or several do); `kilt-cli devices` "
                       "lists them",
                       config->device_id);
          return FALSE;
        }
    }
  else if (!(info = kilt_device_list_choose_default (r->devices, error)))
    return FALSE;
  if (!(r->ctx = kilt_context_new (info, error)))
    return FALSE;
  r->ctx->profiling = FALSE;
  if (config->precision != KILT_PRECISION_FP32
      && !kilt_context_set_precision (r->ctx, config->precision, error))
    return FALSE;
  r->exec = kilt_executor_new (r->ctx, model, batch, FALSE, error);
  if (r->exec == NULL || !kilt_executor_upload (r->exec, wp, ws, error))
    return FALSE;
  r->targets
      = kilt_buffer_new (r->ctx, KILT_MEM_WORKSPACE, 4 * (gsize)batch * MAX (data->n_targets, 1),
                         error, "the batch targets (evaluation)");
  return r->targets != NULL;
}

typedef void (*RowFunc) (guint64 sample, const float *scores, guint n_out, gpointer user_data);

/* Every sample of @split through the model, in split order; @row gets each one's outputs.
 * With @tta_flip, the mean of each image's outputs and its mirror's, as the trainer's flip
 * test-time augmentation. */
static gboolean
runner_forward_split (Runner *r, KiltModel *model, const KiltDataset *data, const KiltSplit *split,
                      KiltPreprocess preprocess, guint32 seed, gboolean tta_flip, RowFunc row,
                      gpointer row_data, KiltProgressFunc progress, gpointer user_data,
                      GCancellable *cancel, GError **error)
{
  guint n_out = kilt_model_n_outputs (model);
  g_autofree float *host = g_new (float, (gsize)r->batch *n_out);
  g_autofree float *mirrored = tta_flip ? g_new (float, (gsize)r->batch *n_out) : NULL;
  /* A model that reads ids gets them as stored, as in training. */
  KiltBatcher *batcher
      = kilt_ids_preprocess (model, preprocess, &preprocess, error)
            ? kilt_batcher_new (r->ctx, data, split, r->batch, preprocess, FALSE, seed, 0, error)
            : NULL;
  const guint32 *order;
  gsize n_order = 0;
  gboolean ok = FALSE;
  guint n_batches;

  if (batcher == NULL || !kilt_batcher_begin_epoch (batcher, 0, FALSE, error))
    goto out;
  if (tta_flip && data->shape.w < 2)
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_INVALID,
                   "flip test-time augmentation mirrors images left to right; %s's samples are "
                   "%u wide",
                   data->name ? data->name : "the data", data->shape.w);
      goto out;
    }
  order = kilt_batcher_order (batcher, &n_order);
  n_batches = kilt_batcher_n_batches (batcher);
  for (guint b = 0; b < n_batches; b++)
    {
      guint n_valid = 0;
      cl_int err;

      if (g_cancellable_is_cancelled (cancel))
        {
          g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_CANCELLED,
                       "evaluation stopped after %u of %u batches", b, n_batches);
          goto out;
        }
      if (!kilt_batcher_gather (batcher, b, kilt_executor_input (r->exec), r->targets->mem,
                                &n_valid, error)
          || !kilt_executor_forward (r->exec, FALSE, error))
        {
          g_prefix_error (error, "evaluating batch %u of %u: ", b + 1, n_batches);
          goto out;
        }
      err = clEnqueueReadBuffer (r->ctx->queue, kilt_model_output (model)->out, CL_TRUE, 0,
                                 sizeof (float) * n_valid * n_out, host, 0, NULL, NULL);
      if (err != CL_SUCCESS)
        {
          g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_OPENCL,
                       "reading the outputs of batch %u of %u on %s failed (OpenCL error %d)",
                       b + 1, n_batches, r->ctx->info->name, err);
          goto out;
        }
      if (tta_flip)
        {
          /* The same batch mirrored, then the mean of the two predictions. */
          kilt_batcher_set_mirror (batcher, TRUE);
          ok = kilt_batcher_gather (batcher, b, kilt_executor_input (r->exec), r->targets->mem,
                                    &n_valid, error)
               && kilt_executor_forward (r->exec, FALSE, error);
          kilt_batcher_set_mirror (batcher, FALSE);
          if (!ok)
            {
              g_prefix_error (error, "evaluating batch %u of %u mirrored: ", b + 1, n_batches);
              goto out;
            }
          ok = FALSE;
          err = clEnqueueReadBuffer (r->ctx->queue, kilt_model_output (model)->out, CL_TRUE, 0,
                                     sizeof (float) * n_valid * n_out, mirrored, 0, NULL, NULL);
          if (err != CL_SUCCESS)
            {
              g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_OPENCL,
                           "reading the mirrored outputs of batch %u of %u on %s failed "
                           "(OpenCL error %d)",
                           b + 1, n_batches, r->ctx->info->name, err);
              goto out;
            }
          for (gsize i = 0; i < (gsize)n_valid * n_out; i++)
            host[i] = 0.5f * (host[i] + mirrored[i]);
        }
      for (guint i = 0; i < n_valid; i++)
        {
          gsize pos = (gsize)b * r->batch + i;
          row (pos < n_order ? order[pos] : pos, host + (gsize)i * n_out, n_out, row_data);
        }
      if (progress)
        progress ((double)(b + 1) / n_batches, "evaluating", user_data);
    }
  ok = TRUE;
out:
  kilt_batcher_free (batcher);
  return ok;
}

static void
record_row (guint64 sample, const float *y, guint n_out, gpointer user_data)
{
  KiltEvaluation *ev = user_data;
  guint best = 0;
  gint32 t;

  if (sample >= ev->n_samples)
    return;
  /* The first of equal maxima, as the loss kernel counts a sample correct. */
  for (guint j = 1; j < n_out; j++)
    if (y[j] > y[best])
      best = j;
  t = ev->truth[sample];
  ev->predicted[sample] = best;
  ev->probability[sample] = y[best];
  ev->p_truth[sample] = t >= 0 && (guint)t < n_out ? y[t] : 0.0f;
}

KiltEvaluation *
kilt_evaluation_run (KiltModel *model, KiltDataset *data, const KiltTrainConfig *config,
                     KiltProgressFunc progress, gpointer user_data, GCancellable *cancel,
                     GError **error)
{
  const KiltSplit *split;
  Runner r = { 0 };
  KiltEvaluation *ev = NULL;
  guint batch = config->batch ? config->batch : 32;

  /* The samples the run held out, as the trainer carved them (same fraction and seed). */
  if (data->test.n == 0 && data->val.n == 0 && config->val_fraction > 0
      && !kilt_dataset_split_validation (data, config->val_fraction, config->seed, error))
    return NULL;
  split = data->test.n > 0 ? &data->test : &data->val;
  if (split->n == 0)
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_DATA,
                   "data set %s has no test or validation samples to evaluate on", data->name);
      return NULL;
    }
  if (split->labels == NULL)
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_DATA,
                   "data set %s has no class labels to evaluate against", data->name);
      return NULL;
    }
  if (!runner_open (&r, model, data, config, (guint)MIN ((gsize)batch, split->n), error))
    goto fail;
  ev = kilt_evaluation_new (data->n_classes, (const char *const *)data->class_names, split->n);
  ev->split = split == &data->test ? KILT_SPLIT_TEST : KILT_SPLIT_VAL;
  memcpy (ev->truth, split->labels, sizeof (gint32) * split->n);
  ev->paths = split->paths ? g_strdupv (split->paths) : NULL;
  if (!runner_forward_split (&r, model, data, split, config->preprocess, config->seed,
                             config->tta_flip, record_row, ev, progress, user_data, cancel, error)
      || !kilt_evaluation_tally (ev, error))
    goto fail;
  runner_clear (&r);
  return ev;
fail:
  kilt_evaluation_free (ev);
  runner_clear (&r);
  return NULL;
}

/* ---- one file ----------------------------------------------------------------------------- */

/* @path decoded into @data's sample layout: bytes, channels first, stretched to its size. */
static guint8 *
decode_image (const KiltDataset *data, const char *path, GError **error)
{
  const KiltShape *s = &data->shape;
  g_autoptr (GdkPixbuf) pb = NULL;
  int w = 0, h = 0, nch, stride;
  const guint8 *px;
  guint8 *out;
  gsize plane = (gsize)s->h * s->w;

  if (data->type != KILT_SAMPLE_U8 || (s->c != 1 && s->c != 3))
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_INVALID,
                   "%s: data set %s does not hold images (it takes %u-channel %s samples)", path,
                   data->name, s->c, data->type == KILT_SAMPLE_U8 ? "byte" : "number");
      return NULL;
    }
  if (gdk_pixbuf_get_file_info (path, &w, &h) == NULL)
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_DATA,
                   "%s: not an image Kilt can read (PNG, JPEG, BMP...)", path);
      return NULL;
    }
  if (w <= 0 || h <= 0 || w > CLASSIFY_MAX_SIDE || h > CLASSIFY_MAX_SIDE)
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_DATA,
                   "%s: the image is %dx%d; Kilt takes at most %d pixels a side", path, w, h,
                   CLASSIFY_MAX_SIDE);
      return NULL;
    }
  pb = gdk_pixbuf_new_from_file_at_scale (path, (int)s->w, (int)s->h, FALSE, error);
  if (pb == NULL)
    {
      g_prefix_error (error, "%s: ", path);
      return NULL;
    }
  if (gdk_pixbuf_get_width (pb) != (int)s->w || gdk_pixbuf_get_height (pb) != (int)s->h
      || gdk_pixbuf_get_bits_per_sample (pb) != 8 || gdk_pixbuf_get_n_channels (pb) < 3)
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_DATA, "%s: unsupported pixel layout",
                   path);
      return NULL;
    }
  px = gdk_pixbuf_read_pixels (pb);
  stride = gdk_pixbuf_get_rowstride (pb);
  nch = gdk_pixbuf_get_n_channels (pb);
  out = g_new (guint8, kilt_shape_size (s));
  for (guint y = 0; y < s->h; y++)
    for (guint x = 0; x < s->w; x++)
      {
        const guint8 *p = px + (gsize)y * stride + (gsize)x * nch;
        gsize at = (gsize)y * s->w + x;
        if (s->c == 1)
          out[at] = (guint8)((299u * p[0] + 587u * p[1] + 114u * p[2] + 500u) / 1000u);
        else
          for (guint c = 0; c < 3; c++)
            out[c * plane + at] = p[c];
      }
  return out;
}

typedef struct
{
  float *scores;
} ClassifyOut;

static void
keep_scores (guint64 sample, const float *y, guint n_out, gpointer user_data)
{
  ClassifyOut *o = user_data;

  if (sample == 0)
    o->scores = g_memdup2 (y, sizeof (float) * n_out);
}

gboolean
kilt_evaluation_classify_file (KiltModel *model, KiltDataset *data, const KiltTrainConfig *config,
                               const char *path, float **scores, guint *n_scores, GError **error)
{
  g_autofree guint8 *pixels = NULL;
  gint32 label = 0;
  KiltSplit one = { 0 };
  ClassifyOut o = { NULL };
  Runner r = { 0 };
  gboolean ok;

  *scores = NULL;
  *n_scores = 0;
  if (!(pixels = decode_image (data, path, error)))
    return FALSE;
  one.n = 1;
  one.u8 = pixels;
  one.labels = &label;
  ok = runner_open (&r, model, data, config, 1, error)
       && runner_forward_split (&r, model, data, &one, config->preprocess, config->seed, FALSE,
                                keep_scores, &o, NULL, NULL, NULL, error);
  runner_clear (&r);
  if (!ok || o.scores == NULL)
    {
      g_free (o.scores);
      if (ok)
        g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_OPENCL,
                     "%s: the model gave no output", path);
      return FALSE;
    }
  *scores = o.scores;
  *n_scores = kilt_model_n_outputs (model);
  return TRUE;
}

/* ---- JSON --------------------------------------------------------------------------------- */

JsonNode *
kilt_evaluation_to_json (const KiltEvaluation *ev, guint max_misclassified)
{
  g_autoptr (JsonBuilder) b = json_builder_new ();
  guint nc = ev->n_classes;

  json_builder_begin_object (b);
  kilt_json_add_string (b, "split", kilt_split_kind_name (ev->split));
  kilt_json_add_int (b, "classes", nc);
  kilt_json_add_int (b, "samples", (gint64)ev->n_samples);
  kilt_json_add_int (b, "correct", (gint64)ev->correct);
  kilt_json_add_number (b, "accuracy", ev->accuracy);
  kilt_json_add_number (b, "loss", ev->loss);
  json_builder_set_member_name (b, "class_names");
  json_builder_begin_array (b);
  for (guint c = 0; c < nc; c++)
    kilt_json_add_text (b, ev->class_names[c]);
  json_builder_end_array (b);
  json_builder_set_member_name (b, "confusion");
  json_builder_begin_array (b);
  for (guint t = 0; t < nc; t++)
    {
      json_builder_begin_array (b);
      for (guint p = 0; p < nc; p++)
        json_builder_add_int_value (b, (gint64)ev->confusion[(gsize)t * nc + p]);
      json_builder_end_array (b);
    }
  json_builder_end_array (b);
  json_builder_set_member_name (b, "per_class");
  json_builder_begin_array (b);
  for (guint c = 0; c < nc; c++)
    {
      json_builder_begin_object (b);
      kilt_json_add_string (b, "name", ev->class_names[c]);
      kilt_json_add_number (b, "precision", ev->precision[c]);
      kilt_json_add_number (b, "recall", ev->recall[c]);
      kilt_json_add_number (b, "f1", ev->f1[c]);
      kilt_json_add_int (b, "support", (gint64)ev->support[c]);
      kilt_json_add_int (b, "predicted", (gint64)ev->n_predicted[c]);
      json_builder_end_object (b);
    }
  json_builder_end_array (b);
  kilt_json_add_int (b, "misclassified_total", (gint64)(ev->n_samples - ev->correct));
  json_builder_set_member_name (b, "misclassified");
  json_builder_begin_array (b);
  for (guint i = 0; i < MIN (ev->misclassified->len, max_misclassified); i++)
    {
      const KiltMisclassified *m = &g_array_index (ev->misclassified, KiltMisclassified, i);
      json_builder_begin_object (b);
      kilt_json_add_int (b, "index", (gint64)m->index);
      kilt_json_add_int (b, "true", m->truth);
      kilt_json_add_int (b, "predicted", m->predicted);
      kilt_json_add_number (b, "probability", m->probability);
      if (m->path)
        {
          /* JSON holds UTF-8; a file name in another encoding is shown as best it can be. */
          g_autofree char *shown = g_utf8_make_valid (m->path, -1);
          kilt_json_add_string (b, "path", shown);
        }
      json_builder_end_object (b);
    }
  json_builder_end_array (b);
  json_builder_end_object (b);
  return json_builder_get_root (b);
}

static gboolean
json_count (JsonObject *o, const char *name, guint64 max, guint64 *out, GError **error)
{
  JsonNode *n = json_object_get_member (o, name);
  gint64 v;

  if (n == NULL || !JSON_NODE_HOLDS_VALUE (n) || json_node_get_value_type (n) != G_TYPE_INT64
      || (v = json_node_get_int (n)) < 0 || (guint64)v > max)
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_INVALID,
                   "evaluation: \"%s\" must be a whole number from 0 to %" G_GUINT64_FORMAT, name,
                   max);
      return FALSE;
    }
  *out = (guint64)v;
  return TRUE;
}

/* A number member, NaN when absent or null (to_json writes NaN as null). */
static double
json_number (JsonObject *o, const char *name)
{
  JsonNode *n = json_object_get_member (o, name);

  if (n == NULL || !JSON_NODE_HOLDS_VALUE (n))
    return NAN;
  if (json_node_get_value_type (n) == G_TYPE_INT64)
    return (double)json_node_get_int (n);
  return json_node_get_value_type (n) == G_TYPE_DOUBLE ? json_node_get_double (n) : NAN;
}

KiltEvaluation *
kilt_evaluation_from_json (JsonNode *node, GError **error)
{
  JsonObject *o = node && JSON_NODE_HOLDS_OBJECT (node) ? json_node_get_object (node) : NULL;
  JsonArray *names, *rows, *mis;
  guint64 nc = 0, n = 0, sum = 0;
  const char *split;
  g_autoptr (GPtrArray) name_v = g_ptr_array_new ();
  KiltEvaluation *ev;

  if (o == NULL)
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_INVALID,
                   "evaluation: expected an object");
      return NULL;
    }
  if (!json_count (o, "classes", KILT_EVALUATION_MAX_CLASSES, &nc, error)
      || !json_count (o, "samples", G_MAXINT64, &n, error))
    return NULL;
  names = json_object_has_member (o, "class_names")
              ? json_object_get_array_member (o, "class_names")
              : NULL;
  rows = json_object_has_member (o, "confusion") ? json_object_get_array_member (o, "confusion")
                                                 : NULL;
  mis = json_object_has_member (o, "misclassified")
            ? json_object_get_array_member (o, "misclassified")
            : NULL;
  if (nc == 0 || names == NULL || json_array_get_length (names) != nc || rows == NULL
      || json_array_get_length (rows) != nc || mis == NULL
      || json_array_get_length (mis) > KILT_EVALUATION_MAX_MISCLASSIFIED)
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_INVALID,
                   "evaluation: class_names and confusion must hold %" G_GUINT64_FORMAT
                   " entries (at least 1), misclassified at most %u",
                   nc, KILT_EVALUATION_MAX_MISCLASSIFIED);
      return NULL;
    }
  for (guint i = 0; i < nc; i++)
    {
      JsonNode *e = json_array_get_element (names, i);
      if (!JSON_NODE_HOLDS_VALUE (e) || json_node_get_value_type (e) != G_TYPE_STRING)
        {
          g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_INVALID,
                       "evaluation: class name %u is not a string", i);
          return NULL;
        }
      g_ptr_array_add (name_v, (gpointer)json_node_get_string (e));
    }
  g_ptr_array_add (name_v, NULL);
  ev = kilt_evaluation_new ((guint)nc, (const char *const *)name_v->pdata, n);
  g_clear_pointer (&ev->truth, g_free);
  g_clear_pointer (&ev->predicted, g_free);
  g_clear_pointer (&ev->probability, g_free);
  g_clear_pointer (&ev->p_truth, g_free);
  split = json_object_get_string_member_with_default (o, "split", "test");
  ev->split = g_strcmp0 (split, kilt_split_kind_name (KILT_SPLIT_VAL)) == 0 ? KILT_SPLIT_VAL
                                                                            : KILT_SPLIT_TEST;
  for (guint t = 0; t < nc; t++)
    {
      JsonNode *rn = json_array_get_element (rows, t);
      JsonArray *row = JSON_NODE_HOLDS_ARRAY (rn) ? json_node_get_array (rn) : NULL;
      if (row == NULL || json_array_get_length (row) != nc)
        goto bad_matrix;
      for (guint p = 0; p < nc; p++)
        {
          JsonNode *e = json_array_get_element (row, p);
          gint64 v;
          if (!JSON_NODE_HOLDS_VALUE (e) || json_node_get_value_type (e) != G_TYPE_INT64
              || (v = json_node_get_int (e)) < 0 || (guint64)v > n - sum)
            goto bad_matrix;
          ev->confusion[(gsize)t * nc + p] = (guint64)v;
          sum += (guint64)v;
        }
    }
  if (sum != n)
    goto bad_matrix;
  for (guint i = 0; i < json_array_get_length (mis); i++)
    {
      JsonNode *e = json_array_get_element (mis, i);
      JsonObject *mo = JSON_NODE_HOLDS_OBJECT (e) ? json_node_get_object (e) : NULL;
      guint64 idx = 0, t = 0, p = 0;
      KiltMisclassified m;
      if (mo == NULL)
        {
          g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_INVALID,
                       "evaluation: misclassified entry %u is not an object", i);
          kilt_evaluation_free (ev);
          return NULL;
        }
      if (n == 0 || !json_count (mo, "index", n - 1, &idx, error)
          || !json_count (mo, "true", nc - 1, &t, error)
          || !json_count (mo, "predicted", nc - 1, &p, error))
        {
          if (n == 0)
            g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_INVALID,
                         "evaluation: misclassified samples of an empty split");
          g_prefix_error (error, "misclassified entry %u: ", i);
          kilt_evaluation_free (ev);
          return NULL;
        }
      m.index = idx;
      m.truth = (guint)t;
      m.predicted = (guint)p;
      m.probability = (float)json_number (mo, "probability");
      m.path = NULL;
      if (json_object_has_member (mo, "path"))
        {
          JsonNode *pn = json_object_get_member (mo, "path");
          const char *path
              = JSON_NODE_HOLDS_VALUE (pn) && json_node_get_value_type (pn) == G_TYPE_STRING
                    ? json_node_get_string (pn)
                    : NULL;
          if (path == NULL || !g_utf8_validate (path, -1, NULL))
            {
              g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_INVALID,
                           "evaluation: misclassified entry %u: path is not a string", i);
              kilt_evaluation_free (ev);
              return NULL;
            }
          m.path = g_strdup (path);
        }
      g_array_append_val (ev->misclassified, m);
    }
  figures_from_matrix (ev);
  ev->loss = json_number (o, "loss");
  return ev;

bad_matrix:
  g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_INVALID,
               "evaluation: confusion must be %" G_GUINT64_FORMAT " rows of %" G_GUINT64_FORMAT
               " whole numbers summing to the %" G_GUINT64_FORMAT " samples",
               nc, nc, n);
  kilt_evaluation_free (ev);
  return NULL;
}
