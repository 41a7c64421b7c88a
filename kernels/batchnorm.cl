/* Batch normalisation over (batch, channels, spatial) tensors: per-channel statistics and the
 * element-wise normalise and backward steps. */
/* SPDX-License-Identifier: GPL-3.0-or-later */

/* Tree sum over a work-group whose size is a power of two; every item gets the total. The
 * fixed pairing makes the result the same on every run. */
inline float kilt_bn_group_sum (__local float *buf, float v)
{
  uint lid = get_local_id (0), size = get_local_size (0);
  buf[lid] = v;
  barrier (CLK_LOCAL_MEM_FENCE);
  for (uint stride = size / 2; stride > 0; stride /= 2)
    {
      if (lid < stride)
        buf[lid] += buf[lid + stride];
      barrier (CLK_LOCAL_MEM_FENCE);
    }
  float total = buf[0];
  barrier (CLK_LOCAL_MEM_FENCE);
  return total;
}

/* Batch statistics in two levels, so that a channel with many elements (a 16-channel
 * 32 x 32 map at batch 128 has 131,072) is spread over many work-groups, not one.
 *
 * Level one: work-group (g, c) of a (groups x channels) grid takes the g-th of @groups equal
 * slices of channel c's n = batch * spatial elements and writes its slice's mean and sum of
 * squared deviations (two passes over the slice, which the second reads from cache) to
 * part[(c * groups + g) * 2]. */
__kernel void kilt_bn_stats_partial (__global const float *x, const uint batch,
                                     const uint channels, const uint spatial, const uint groups,
                                     __global float *part, const uint part_off,
                                     __local float *buf)
{
  uint g = get_group_id (0), c = get_group_id (1), lid = get_local_id (0);
  uint size = get_local_size (0), n = batch * spatial, slice = (n + groups - 1) / groups;
  uint lo = min (g * slice, n), hi = min (lo + slice, n);
  float acc = 0.0f;

  for (uint j = lo + lid; j < hi; j += size)
    acc += x[((size_t) (j / spatial) * channels + c) * spatial + j % spatial];
  float mean = hi > lo ? kilt_bn_group_sum (buf, acc) / (float) (hi - lo) : 0.0f;

  acc = 0.0f;
  for (uint j = lo + lid; j < hi; j += size)
    {
      float d = x[((size_t) (j / spatial) * channels + c) * spatial + j % spatial] - mean;
      acc += d * d;
    }
  float m2 = hi > lo ? kilt_bn_group_sum (buf, acc) : 0.0f;
  if (lid == 0)
    {
      part[part_off + (c * groups + g) * 2] = mean;
      part[part_off + (c * groups + g) * 2 + 1] = m2;
    }
}

/* Level two, one work-item per channel: the slices merge by Chan et al.'s rule (the sum of
 * squared deviations gains count * (slice mean - mean)^2 per slice), which keeps the two-pass
 * accuracy. Mean and 1/sqrt(var + eps) (biased variance) go to saved[c] and
 * saved[channels + c]; with @update, the running statistics at state[state_off] (mean, then
 * variance) move by Keras' momentum rule. The running variance takes the unbiased estimate
 * n / (n - 1) * var, as tf.keras' fused batch norm and PyTorch do, so inference matches
 * models trained there. */
__kernel void kilt_bn_stats_finish (__global const float *part, const uint part_off,
                                    const uint batch, const uint channels, const uint spatial,
                                    const uint groups, __global float *saved,
                                    __global float *state, const uint state_off,
                                    const float momentum, const float eps, const int update)
{
  uint c = get_global_id (0);
  if (c >= channels)
    return;
  uint n = batch * spatial, slice = (n + groups - 1) / groups;
  __global const float *p = part + part_off + (size_t) c * groups * 2;
  float mean = 0.0f, m2 = 0.0f;

  for (uint g = 0; g < groups; g++)
    {
      uint lo = min (g * slice, n), cnt = min (lo + slice, n) - lo;
      mean += (float) cnt * p[2 * g];
    }
  mean /= (float) n;
  for (uint g = 0; g < groups; g++)
    {
      uint lo = min (g * slice, n), cnt = min (lo + slice, n) - lo;
      float d = p[2 * g] - mean;
      m2 += p[2 * g + 1] + (float) cnt * d * d;
    }
  float var = m2 / (float) n;

  saved[c] = mean;
  saved[channels + c] = 1.0f / sqrt (var + eps);
  if (update)
    {
      __global float *rm = state + state_off + c, *rv = rm + channels;
      *rm = momentum * *rm + (1.0f - momentum) * mean;
      float unbiased = n > 1 ? var * (float) n / (float) (n - 1) : var;
      *rv = momentum * *rv + (1.0f - momentum) * unbiased;
    }
}

/* y = gamma * (x - mean) * istd + beta. stats[stats_off + c] is the mean; the value at
 * stats_off + channels + c is 1/sqrt(var + eps) or, when @stats_are_var, the variance. */
__kernel void kilt_bn_apply (__global float *y, __global const float *x,
                             __global const float *params, const uint param_off,
                             __global const float *stats, const uint stats_off,
                             const uint channels, const uint spatial, const uint n,
                             const float eps, const int stats_are_var)
{
  uint i = get_global_id (0);
  if (i >= n)
    return;
  uint c = (i / spatial) % channels;
  float s = stats[stats_off + channels + c];
  float istd = stats_are_var ? 1.0f / sqrt (s + eps) : s;
  y[i] = params[param_off + c] * (x[i] - stats[stats_off + c]) * istd
         + params[param_off + channels + c];
}

/* Level one of dgamma = sum dy * xhat and dbeta = sum dy: work-group (g, c) sums the g-th
 * slice of channel c into part[(c * groups + g) * 2] (dgamma's share, then dbeta's). */
__kernel void kilt_bn_backward_partial (__global const float *dy, __global const float *x,
                                        __global const float *saved, const uint batch,
                                        const uint channels, const uint spatial,
                                        const uint groups, __global float *part,
                                        const uint part_off, __local float *buf)
{
  uint g = get_group_id (0), c = get_group_id (1), lid = get_local_id (0);
  uint size = get_local_size (0), n = batch * spatial, slice = (n + groups - 1) / groups;
  uint lo = min (g * slice, n), hi = min (lo + slice, n);
  float mean = saved[c], istd = saved[channels + c];
  float sdy = 0.0f, sdyx = 0.0f;

  for (uint j = lo + lid; j < hi; j += size)
    {
      size_t at = ((size_t) (j / spatial) * channels + c) * spatial + j % spatial;
      float d = dy[at];
      sdy += d;
      sdyx += d * (x[at] - mean) * istd;
    }
  sdy = kilt_bn_group_sum (buf, sdy);
  sdyx = kilt_bn_group_sum (buf, sdyx);
  if (lid == 0)
    {
      part[part_off + (c * groups + g) * 2] = sdyx;
      part[part_off + (c * groups + g) * 2 + 1] = sdy;
    }
}

/* Level two, one work-item per channel: the slices' sums, written (not added) at
 * grads[param_off + c] (dgamma) and grads[param_off + channels + c] (dbeta). */
__kernel void kilt_bn_backward_finish (__global const float *part, const uint part_off,
                                       const uint channels, const uint groups,
                                       __global float *grads, const uint param_off)
{
  uint c = get_global_id (0);
  if (c >= channels)
    return;
  __global const float *p = part + part_off + (size_t) c * groups * 2;
  float sdyx = 0.0f, sdy = 0.0f;
  for (uint g = 0; g < groups; g++)
    {
      sdyx += p[2 * g];
      sdy += p[2 * g + 1];
    }
  grads[param_off + c] = sdyx;
  grads[param_off + channels + c] = sdy;
}

/* dx = beta * dx + gamma * istd / N * (N * dy - dbeta - xhat * dgamma), N = batch * spatial,
 * with dgamma and dbeta as kilt_bn_backward_finish left them in grads (at grad_off). */
__kernel void kilt_bn_backward_apply (__global float *dx, __global const float *dy,
                                      __global const float *x, __global const float *saved,
                                      __global const float *params,
                                      __global const float *grads, const uint param_off,
                                      const uint grad_off, const uint channels,
                                      const uint spatial, const uint n, const float count,
                                      const float beta)
{
  uint i = get_global_id (0);
  if (i >= n)
    return;
  uint c = (i / spatial) % channels;
  float mean = saved[c], istd = saved[channels + c];
  float xhat = (x[i] - mean) * istd;
  float g = params[param_off + c] * istd / count
            * (count * dy[i] - grads[grad_off + channels + c] - xhat * grads[grad_off + c]);
  dx[i] = beta == 0.0f ? g : beta * dx[i] + g;
}

/* A frozen layer's backward, through the inference transform: dx = beta dx + gamma[c] dy /
 * sqrt (var[c] + eps), with the running variance at state[state_off + channels + c]. */
__kernel void kilt_bn_backward_frozen (__global float *dx, __global const float *dy,
                                       __global const float *params, const uint param_off,
                                       __global const float *state, const uint state_off,
                                       const uint channels, const uint spatial, const uint n,
                                       const float eps, const float beta)
{
  uint i = get_global_id (0);
  if (i >= n)
    return;
  uint c = (i / spatial) % channels;
  float g = params[param_off + c] * dy[i] / sqrt (state[state_off + channels + c] + eps);
  dx[i] = beta == 0.0f ? g : beta * dx[i] + g;
}

/* Normalization (Keras' preprocessing layer, adapted): y = (x - mean[c]) / max (sqrt (var[c]),
 * eps) with mean, var the node's state; dx = beta dx + dy / max (sqrt (var[c]), eps). */
__kernel void kilt_norm_forward (__global float *y, __global const float *x,
                                 __global const float *state, const uint state_off,
                                 const uint channels, const uint spatial, const uint n,
                                 const float eps)
{
  uint i = get_global_id (0);
  if (i >= n)
    return;
  uint c = (i / spatial) % channels;
  y[i] = (x[i] - state[state_off + c]) / fmax (sqrt (state[state_off + channels + c]), eps);
}

__kernel void kilt_norm_backward (__global float *dx, __global const float *dy,
                                  __global const float *state, const uint state_off,
                                  const uint channels, const uint spatial, const uint n,
                                  const float eps, const float beta)
{
  uint i = get_global_id (0);
  if (i >= n)
    return;
  uint c = (i / spatial) % channels;
  float g = dy[i] / fmax (sqrt (state[state_off + channels + c]), eps);
  dx[i] = beta == 0.0f ? g : beta * dx[i] + g;
}

/* LayerNormalization over channels: per position (b, s), mean and 1/sqrt(var + eps) over the C
 * channels (biased variance, as Keras), saved[2 (b sp + s)] and [+ 1]; y = gamma xhat + beta
 * with gamma, beta at params[param_off + c] and [+ C + c] (has_gamma / has_beta: else 1, 0). */
__kernel void kilt_ln_forward (__global float *y, __global const float *x, __global float *saved,
                               __global const float *params, const uint param_off,
                               const int has_gamma, const int has_beta, const uint channels,
                               const uint spatial, const uint positions, const float eps)
{
  uint q = get_global_id (0);
  if (q >= positions)
    return;
  uint b = q / spatial, s = q % spatial;
  __global const float *xp = x + (size_t) b * channels * spatial + s;
  __global float *yp = y + (size_t) b * channels * spatial + s;
  float mean = 0.0f, var = 0.0f;
  for (uint c = 0; c < channels; c++)
    mean += xp[(size_t) c * spatial];
  mean /= (float) channels;
  for (uint c = 0; c < channels; c++)
    {
      float d = xp[(size_t) c * spatial] - mean;
      var += d * d;
    }
  float istd = 1.0f / sqrt (var / (float) channels + eps);
  saved[2 * q] = mean;
  saved[2 * q + 1] = istd;
  uint beta_at = param_off + (has_gamma ? channels : 0);
  for (uint c = 0; c < channels; c++)
    {
      float g = has_gamma ? params[param_off + c] : 1.0f;
      float bb = has_beta ? params[beta_at + c] : 0.0f;
      yp[(size_t) c * spatial] = g * (xp[(size_t) c * spatial] - mean) * istd + bb;
    }
}

/* dx = beta dx + istd / C (C g dy - sum g dy - xhat sum g dy xhat), per position. */
__kernel void kilt_ln_backward_input (__global float *dx, __global const float *dy,
                                      __global const float *x, __global const float *saved,
                                      __global const float *params, const uint param_off,
                                      const int has_gamma, const uint channels,
                                      const uint spatial, const uint positions, const float beta)
{
  uint q = get_global_id (0);
  if (q >= positions)
    return;
  uint b = q / spatial, s = q % spatial;
  size_t base = (size_t) b * channels * spatial + s;
  float mean = saved[2 * q], istd = saved[2 * q + 1], s1 = 0.0f, s2 = 0.0f;
  for (uint c = 0; c < channels; c++)
    {
      size_t at = base + (size_t) c * spatial;
      float g = (has_gamma ? params[param_off + c] : 1.0f) * dy[at];
      s1 += g;
      s2 += g * (x[at] - mean) * istd;
    }
  for (uint c = 0; c < channels; c++)
    {
      size_t at = base + (size_t) c * spatial;
      float g = (has_gamma ? params[param_off + c] : 1.0f) * dy[at];
      float xhat = (x[at] - mean) * istd;
      float v = istd / (float) channels * ((float) channels * g - s1 - xhat * s2);
      dx[at] = beta == 0.0f ? v : beta * dx[at] + v;
    }
}

/* dgamma[c] = sum dy xhat, dbeta[c] = sum dy over batch and positions, written at grads. */
__kernel void kilt_ln_backward_params (__global float *grads, const uint param_off,
                                       const int has_gamma, const int has_beta,
                                       __global const float *dy, __global const float *x,
                                       __global const float *saved, const uint batch,
                                       const uint channels, const uint spatial)
{
  uint c = get_global_id (0);
  if (c >= channels)
    return;
  float sg = 0.0f, sb = 0.0f;
  for (uint b = 0; b < batch; b++)
    for (uint s = 0; s < spatial; s++)
      {
        size_t at = ((size_t) b * channels + c) * spatial + s;
        uint q = b * spatial + s;
        sg += dy[at] * (x[at] - saved[2 * q]) * saved[2 * q + 1];
        sb += dy[at];
      }
  if (has_gamma)
    grads[param_off + c] = sg;
  if (has_beta)
    grads[param_off + (has_gamma ? channels : 0) + c] = sb;
}
