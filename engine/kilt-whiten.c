/* Data-initialised whitening convolutions (airbench's first layer), on the host. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#define G_LOG_DOMAIN "kilt-whiten"

#include "kilt-whiten.h"
#include "kilt-batcher.h"
#include "kilt-eigen.h"
#include "kilt-error.h"

#include <math.h>
#include <string.h>

/* Adds the patches of one image (C x H x W) to @cov (upper triangle only). */
static void
add_image (const float *img, const KiltShape *sh, guint kh, guint kw, double *cov, double *patch)
{
  guint k = sh->c * kh * kw;

  for (guint y = 0; y + kh <= sh->h; y++)
    for (guint x = 0; x + kw <= sh->w; x++)
      {
        for (guint c = 0; c < sh->c; c++)
          for (guint i = 0; i < kh; i++)
            for (guint j = 0; j < kw; j++)
              patch[(c * kh + i) * kw + j] = img[((gsize)c * sh->h + y + i) * sh->w + x + j];
        for (guint a = 0; a < k; a++)
          for (guint b = a; b < k; b++)
            cov[a * k + b] += patch[a] * patch[b];
      }
}

static void
finish_covariance (double *cov, guint k, double count)
{
  for (guint a = 0; a < k; a++)
    for (guint b = a; b < k; b++)
      cov[b * k + a] = cov[a * k + b] = cov[a * k + b] / count;
}

void
kilt_whiten_patch_covariance (const float *x, gsize n, const KiltShape *shape, guint kh, guint kw,
                              double *cov)
{
  guint k = shape->c * kh * kw;
  gsize size = kilt_shape_size (shape);
  g_autofree double *patch = g_new (double, k);

  g_return_if_fail (kh <= shape->h && kw <= shape->w && n > 0);
  memset (cov, 0, sizeof (double) * k * k);
  for (gsize s = 0; s < n; s++)
    add_image (x + s * size, shape, kh, kw, cov, patch);
  finish_covariance (cov, k, (double)n * (shape->h - kh + 1) * (shape->w - kw + 1));
}

gboolean
kilt_whiten_filters (const double *cov, guint k, double epsilon, float *weights,
                     double *eigenvalues, GError **error)
{
  g_autofree double *values = g_new (double, k);
  g_autofree double *vectors = g_new (double, (gsize)k *k);

  if (!kilt_eigen_symmetric (cov, k, values, vectors, error))
    return FALSE;
  for (guint i = 0; i < k; i++)
    {
      /* A covariance is positive semi-definite; rounding can leave a null direction just
       * below 0, which epsilon must still keep off a division by zero. */
      double scale = 1.0 / sqrt (MAX (values[i], 0.0) + epsilon);
      for (guint j = 0; j < k; j++)
        {
          weights[(gsize)i * k + j] = (float)(vectors[(gsize)j * k + i] * scale);
          weights[(gsize)(k + i) * k + j] = -weights[(gsize)i * k + j];
        }
      if (eigenvalues)
        eigenvalues[i] = values[i];
    }
  return TRUE;
}

gboolean
kilt_whiten_model_has (KiltModel *model)
{
  for (guint i = 1; i < kilt_model_n_nodes (model); i++)
    if (kilt_model_node (model, i)->type == KILT_LAYER_CONV2D
        && kilt_model_node (model, i)->cfg.init == KILT_INIT_WHITEN)
      return TRUE;
  return FALSE;
}

static gboolean
init_node (KiltModel *model, KiltNode *node, const KiltDataset *data, const float *norm,
           float *params, GString *summary, GError **error)
{
  const KiltShape *sh = &node->in_shape[0];
  const KiltLayerConfig *c = &node->cfg;
  guint k = sh->c * c->kh * c->kw;
  gsize n = MIN ((gsize)c->whiten_samples, data->train.n), size = kilt_shape_size (sh);
  g_autofree double *cov = g_new0 (double, (gsize)k *k);
  g_autofree double *patch = g_new (double, k);
  g_autofree float *img = g_new (float, size);
  g_autofree double *values = g_new (double, k);

  if (node->inputs[0] != 0 || kilt_model_node (model, 0)->type != KILT_LAYER_INPUT)
    {
      kilt_layer_set_error (error, node,
                            "a whitening Conv2D must read the model's input (the images its "
                            "filters are computed from), not %s",
                            kilt_model_node (model, node->inputs[0])->name);
      return FALSE;
    }
  if (c->units != 2 * k || c->groups > 1 || c->dil_h > 1 || c->dil_w > 1)
    {
      kilt_layer_set_error (error, node,
                            "a whitening Conv2D needs 2 x channels x kernel height x kernel "
                            "width = %u filters (the eigenvectors of its patches and their "
                            "negatives) and neither groups nor dilation; it has %u filters",
                            2 * k, c->units);
      return FALSE;
    }
  if (data->train.n == 0 || kilt_shape_size (&data->shape) != size)
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_DATA,
                   "layer %s: the whitening initialiser needs training images of the model's "
                   "input shape",
                   node->name);
      return FALSE;
    }
  for (gsize s = 0; s < n; s++)
    {
      for (gsize i = 0; i < size; i++)
        {
          guint ch = (guint)(i / ((gsize)sh->h * sh->w));
          double v = data->type == KILT_SAMPLE_U8 ? data->train.u8[s * size + i]
                                                  : data->train.f32[s * size + i];
          img[i] = (float)(v * norm[2 * ch] + norm[2 * ch + 1]);
        }
      add_image (img, sh, c->kh, c->kw, cov, patch);
    }
  finish_covariance (cov, k, (double)n * (sh->h - c->kh + 1) * (sh->w - c->kw + 1));
  if (!kilt_whiten_filters (cov, k, c->whiten_epsilon, params + node->param_offset, values, error))
    {
      g_prefix_error (error, "layer %s: whitening: ", node->name);
      return FALSE;
    }
  if (summary)
    g_string_append_printf (summary,
                            "%sWhitening layer %s set from %" G_GSIZE_FORMAT
                            " training images' %ux%u patches (eigenvalues %.3g to %.3g, "
                            "epsilon %g); its kernel stays, its bias trains %u epoch%s",
                            summary->len ? "\n" : "", node->name, n, c->kh, c->kw, values[0],
                            values[k - 1], c->whiten_epsilon, c->whiten_bias_epochs,
                            c->whiten_bias_epochs == 1 ? "" : "s");
  return TRUE;
}

gboolean
kilt_whiten_init (KiltModel *model, const KiltDataset *data, KiltPreprocess preprocess,
                  float *params, GString *summary, GError **error)
{
  g_autofree float *norm = NULL;

  g_return_val_if_fail (model->built, FALSE);
  if (!kilt_whiten_model_has (model))
    return TRUE;
  norm = kilt_batcher_norm_table (data, preprocess, error);
  if (norm == NULL)
    return FALSE;
  for (guint i = 1; i < kilt_model_n_nodes (model); i++)
    {
      KiltNode *node = kilt_model_node (model, i);
      if (node->type == KILT_LAYER_CONV2D && node->cfg.init == KILT_INIT_WHITEN
          && !init_node (model, node, data, norm, params, summary, error))
        return FALSE;
    }
  return TRUE;
}
