/* Losses: per-sample loss, correctness and output gradient, then an in-order sum into the
 * metrics buffer, with no host synchronisation. See engine/kilt-loss.h for the layout. */
/* SPDX-License-Identifier: GPL-3.0-or-later */

/* Must match KiltLossType in engine/kilt-model.h. */
#define KILT_LOSS_SOFTMAX_CE 0
#define KILT_LOSS_BCE 1
#define KILT_LOSS_MSE 2

/* Keras' epsilon: probabilities are clipped to [eps, 1 - eps] before the log. */
#define KILT_LOSS_EPS 1e-7f

/* One work-item per row of the batch. Rows below n_valid write their loss and correctness at
 * metrics[4 + r] and metrics[4 + batch + r] and the gradient of the mean loss over n_valid rows
 * into dout; later rows (a partial last batch) get a zero gradient and nothing else.
 * smoothing (softmax cross-entropy only) is Keras' label_smoothing: the target is
 * onehot (1 - s) + s / n_out. */
__kernel void kilt_loss_rows (__global const float *out, __global const float *targets,
                              __global float *dout, __global float *metrics, const uint batch,
                              const uint n_valid, const uint n_out, const int loss,
                              const float smoothing)
{
  uint r = get_global_id (0);
  if (r >= batch)
    return;
  __global const float *p = out + (size_t) r * n_out;
  __global float *d = dout + (size_t) r * n_out;
  if (r >= n_valid)
    {
      for (uint j = 0; j < n_out; j++)
        d[j] = 0.0f;
      return;
    }

  float scale = 1.0f / (float) n_valid, l = 0.0f, correct = 0.0f;
  if (loss == KILT_LOSS_SOFTMAX_CE)
    {
      /* A label outside [0, n_out) has no one-hot entry: it costs -log(eps) and never counts
       * as correct, and its gradient pushes every probability down. */
      float t = targets[r];
      int label = (t >= 0.0f && t < (float) n_out) ? (int) t : -1;
      uint best = 0;
      bool nan_seen = false;
      /* Without smoothing on = 1 and off = 0 exactly: the plain one-hot figures to the bit. */
      float on = 1.0f - smoothing, off = smoothing / (float) n_out, spread = 0.0f;
      for (uint j = 0; j < n_out; j++)
        {
          if (p[j] > p[best])
            best = j;
          nan_seen |= isnan (p[j]);
          /* The gradient w.r.t. the pre-softmax logits: the softmax backward is skipped. */
          d[j] = (p[j] - ((int) j == label ? on : 0.0f) - off) * scale;
          if (smoothing != 0.0f)
            spread += log (clamp (p[j], KILT_LOSS_EPS, 1.0f - KILT_LOSS_EPS));
        }
      float pl = label >= 0 ? p[label] : 0.0f;
      /* clamp () turns NaN into eps: a diverged model would report a finite loss. */
      l = nan_seen ? NAN : -on * log (clamp (pl, KILT_LOSS_EPS, 1.0f - KILT_LOSS_EPS)) - off * spread;
      correct = label >= 0 && (int) best == label ? 1.0f : 0.0f;
    }
  else if (loss == KILT_LOSS_BCE)
    {
      float inv = scale / (float) n_out;
      for (uint j = 0; j < n_out; j++)
        {
          float pj = clamp (p[j], KILT_LOSS_EPS, 1.0f - KILT_LOSS_EPS);
          float t = targets[(size_t) r * n_out + j];
          l -= isnan (p[j]) ? NAN : t * log (pj) + (1.0f - t) * log (1.0f - pj);
          d[j] = (pj - t) / (pj * (1.0f - pj)) * inv;
          correct += (p[j] > 0.5f) == (t > 0.5f) ? 1.0f : 0.0f;
        }
      l /= (float) n_out;
      correct /= (float) n_out;
    }
  else
    {
      float inv = 2.0f * scale / (float) n_out;
      for (uint j = 0; j < n_out; j++)
        {
          float e = p[j] - targets[(size_t) r * n_out + j];
          l += e * e;
          d[j] = e * inv;
        }
      l /= (float) n_out;
    }
  metrics[4 + r] = l;
  metrics[4 + batch + r] = correct;
}

/* A single work-item adds the per-row values in row order, so the sums are the same on every
 * run and device ordering cannot change them. */
__kernel void kilt_loss_reduce (__global float *metrics, const uint batch, const uint n_valid)
{
  if (get_global_id (0) != 0)
    return;
  float l = 0.0f, c = 0.0f;
  for (uint r = 0; r < n_valid; r++)
    {
      l += metrics[4 + r];
      c += metrics[4 + batch + r];
    }
  metrics[0] += l;
  metrics[1] += c;
  metrics[2] += (float) n_valid;
}
