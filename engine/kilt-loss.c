/* Loss functions on the device (value, accuracy, output gradient) and their plain-C reference. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#define G_LOG_DOMAIN "kilt-loss"

#include "kilt-loss.h"
#include "kilt-context.h"
#include "kilt-error.h"

#include <math.h>

/* The clip bounds as float32 holds them (1 - 1e-7 rounds to 1 - 2^-23), as on the device and
 * in Keras, so that saturated outputs give the same loss here and there. */
#define LOSS_LO ((double)1e-7f)
#define LOSS_HI ((double)(1.0f - 1e-7f))

gsize
kilt_loss_metrics_floats (guint batch)
{
  return 4 + 2 * (gsize)batch;
}

/* A buffer smaller than the call needs would be written out of bounds: refuse it. */
static gboolean
check_size (KiltContext *ctx, cl_mem mem, gsize floats, const char *what, GError **error)
{
  size_t bytes = 0;
  cl_int err = clGetMemObjectInfo (mem, CL_MEM_SIZE, sizeof bytes, &bytes, NULL);

  if (err != CL_SUCCESS)
    {
      kilt_set_cl_error (error, err, ctx->info->name, "querying the size of the loss %s buffer",
                         what);
      return FALSE;
    }
  if (bytes < floats * sizeof (float))
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_INVALID,
                   "the loss %s buffer holds %" G_GSIZE_FORMAT " bytes; %" G_GSIZE_FORMAT
                   " are needed",
                   what, (gsize)bytes, floats * sizeof (float));
      return FALSE;
    }
  return TRUE;
}

gboolean
kilt_loss_enqueue (KiltContext *ctx, KiltLossType loss, guint batch, guint n_valid, guint n_out,
                   cl_mem out, cl_mem targets, cl_mem dout, cl_mem metrics, GError **error)
{
  return kilt_loss_enqueue_smoothed (ctx, loss, 0.0f, batch, n_valid, n_out, out, targets, dout,
                                     metrics, error);
}

gboolean
kilt_loss_check_smoothing (KiltLossType loss, float smoothing, GError **error)
{
  if (!isfinite (smoothing) || smoothing < 0.0f || smoothing >= 1.0f)
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_INVALID,
                   "label smoothing is %g; it must be in [0, 1)", smoothing);
      return FALSE;
    }
  if (smoothing != 0.0f && loss != KILT_LOSS_SOFTMAX_CROSS_ENTROPY)
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_INVALID,
                   "label smoothing %g applies to categorical cross-entropy; this model's loss is "
                   "%s",
                   smoothing, kilt_loss_name (loss));
      return FALSE;
    }
  return TRUE;
}

gboolean
kilt_loss_enqueue_smoothed (KiltContext *ctx, KiltLossType loss, float smoothing, guint batch,
                            guint n_valid, guint n_out, cl_mem out, cl_mem targets, cl_mem dout,
                            cl_mem metrics, GError **error)
{
  gsize n_targets = loss == KILT_LOSS_SOFTMAX_CROSS_ENTROPY ? batch : (gsize)batch * n_out;
  cl_uint b = batch, v = n_valid, no = n_out;
  cl_int err = CL_SUCCESS, type = loss;
  cl_kernel k;

  g_return_val_if_fail (batch > 0 && n_valid > 0 && n_valid <= batch, FALSE);
  g_return_val_if_fail (n_out > 0, FALSE);
  g_return_val_if_fail ((guint)loss <= KILT_LOSS_MSE, FALSE);
  if (!kilt_loss_check_smoothing (loss, smoothing, error))
    return FALSE;

  if (!check_size (ctx, out, (gsize)batch * n_out, "output", error)
      || !check_size (ctx, targets, n_targets, "target", error)
      || !check_size (ctx, dout, (gsize)batch * n_out, "gradient", error)
      || !check_size (ctx, metrics, kilt_loss_metrics_floats (batch), "metrics", error))
    return FALSE;

  k = kilt_context_kernel (ctx, "kilt_loss_rows", error);
  if (!k)
    return FALSE;
  KILT_ARG (k, 0, out, err);
  KILT_ARG (k, 1, targets, err);
  KILT_ARG (k, 2, dout, err);
  KILT_ARG (k, 3, metrics, err);
  KILT_ARG (k, 4, b, err);
  KILT_ARG (k, 5, v, err);
  KILT_ARG (k, 6, no, err);
  KILT_ARG (k, 7, type, err);
  KILT_ARG (k, 8, smoothing, err);
  g_assert (err == CL_SUCCESS);
  if (!kilt_context_launch_1d (ctx, k, batch, error))
    return FALSE;

  k = kilt_context_kernel (ctx, "kilt_loss_reduce", error);
  if (!k)
    return FALSE;
  KILT_ARG (k, 0, metrics, err);
  KILT_ARG (k, 1, b, err);
  KILT_ARG (k, 2, v, err);
  g_assert (err == CL_SUCCESS);
  return kilt_context_launch_1d (ctx, k, 1, error);
}

static double
clip (double p)
{
  return CLAMP (p, LOSS_LO, LOSS_HI);
}

void
kilt_loss_reference (KiltLossType loss, guint batch, guint n_valid, guint n_out, const double *out,
                     const double *targets, double *dout, double metrics[3])
{
  kilt_loss_reference_smoothed (loss, 0.0, batch, n_valid, n_out, out, targets, dout, metrics);
}

void
kilt_loss_reference_smoothed (KiltLossType loss, double smoothing, guint batch, guint n_valid,
                              guint n_out, const double *out, const double *targets, double *dout,
                              double metrics[3])
{
  double sum_loss = 0, sum_correct = 0;

  for (guint r = 0; r < batch; r++)
    {
      const double *p = out + (gsize)r * n_out;
      double *d = dout ? dout + (gsize)r * n_out : NULL;
      double l = 0, correct = 0;

      if (r >= n_valid)
        {
          for (guint j = 0; d && j < n_out; j++)
            d[j] = 0;
          continue;
        }
      if (loss == KILT_LOSS_SOFTMAX_CROSS_ENTROPY)
        {
          double t = targets[r];
          int label = (t >= 0 && t < n_out) ? (int)t : -1;
          guint best = 0;
          /* The smoothed target y_j = onehot_j (1 - s) + s / n_out, written out in full. */
          for (guint j = 0; j < n_out; j++)
            {
              double y = ((int)j == label ? 1.0 - smoothing : 0.0) + smoothing / n_out;
              if (p[j] > p[best])
                best = j;
              if (d)
                d[j] = (p[j] - y) / n_valid;
              if (y != 0)
                l -= y * log (clip (p[j]));
            }
          if (label < 0)
            l -= (1.0 - smoothing) * log (clip (0.0));
          correct = label >= 0 && (int)best == label;
        }
      else if (loss == KILT_LOSS_BINARY_CROSS_ENTROPY)
        {
          for (guint j = 0; j < n_out; j++)
            {
              double pj = clip (p[j]), t = targets[(gsize)r * n_out + j];
              l -= t * log (pj) + (1 - t) * log (1 - pj);
              if (d)
                d[j] = (pj - t) / (pj * (1 - pj)) / ((double)n_out * n_valid);
              correct += (p[j] > 0.5) == (t > 0.5);
            }
          l /= n_out;
          correct /= n_out;
        }
      else
        {
          for (guint j = 0; j < n_out; j++)
            {
              double e = p[j] - targets[(gsize)r * n_out + j];
              l += e * e;
              if (d)
                d[j] = 2 * e / ((double)n_out * n_valid);
            }
          l /= n_out;
        }
      sum_loss += l;
      sum_correct += correct;
    }
  metrics[KILT_LOSS_METRIC_LOSS] = sum_loss;
  metrics[KILT_LOSS_METRIC_CORRECT] = sum_correct;
  metrics[KILT_LOSS_METRIC_COUNT] = n_valid;
}
