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

/* One work-group per channel: mean and 1/sqrt(var + eps) of the batch (biased variance, two
 * passes for accuracy) into saved[c] and saved[channels + c]; with @update, the running
 * statistics at state[state_off] (mean, then variance) move by Keras' momentum rule. The
 * running variance takes the unbiased estimate n / (n - 1) * var, as tf.keras' fused batch
 * norm and PyTorch do, so inference matches models trained there. */
__kernel void kilt_bn_stats (__global const float *x, const uint batch, const uint channels,
                             const uint spatial, __global float *saved, __global float *state,
                             const uint state_off, const float momentum, const float eps,
                             const int update, __local float *buf)
{
  uint c = get_group_id (0), lid = get_local_id (0), size = get_local_size (0);
  uint n = batch * spatial;
  float acc = 0.0f;

  for (uint j = lid; j < n; j += size)
    acc += x[((size_t) (j / spatial) * channels + c) * spatial + j % spatial];
  float mean = kilt_bn_group_sum (buf, acc) / (float) n;

  acc = 0.0f;
  for (uint j = lid; j < n; j += size)
    {
      float d = x[((size_t) (j / spatial) * channels + c) * spatial + j % spatial] - mean;
      acc += d * d;
    }
  float var = kilt_bn_group_sum (buf, acc) / (float) n;

  if (lid == 0)
    {
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

/* One work-group per channel: dgamma = sum dy * xhat and dbeta = sum dy, written (not added)
 * at grads[param_off + c] and grads[param_off + channels + c]. */
__kernel void kilt_bn_backward_reduce (__global const float *dy, __global const float *x,
                                       __global const float *saved, const uint batch,
                                       const uint channels, const uint spatial,
                                       __global float *grads, const uint param_off,
                                       __local float *buf)
{
  uint c = get_group_id (0), lid = get_local_id (0), size = get_local_size (0);
  uint n = batch * spatial;
  float mean = saved[c], istd = saved[channels + c];
  float sdy = 0.0f, sdyx = 0.0f;

  for (uint j = lid; j < n; j += size)
    {
      size_t at = ((size_t) (j / spatial) * channels + c) * spatial + j % spatial;
      float g = dy[at];
      sdy += g;
      sdyx += g * (x[at] - mean) * istd;
    }
  sdy = kilt_bn_group_sum (buf, sdy);
  sdyx = kilt_bn_group_sum (buf, sdyx);
  if (lid == 0)
    {
      grads[param_off + c] = sdyx;
      grads[param_off + channels + c] = sdy;
    }
}

/* dx = beta * dx + gamma * istd / N * (N * dy - dbeta - xhat * dgamma), N = batch * spatial,
 * with dgamma and dbeta as kilt_bn_backward_reduce left them in grads. */
__kernel void kilt_bn_backward_apply (__global float *dx, __global const float *dy,
                                      __global const float *x, __global const float *saved,
                                      __global const float *params,
                                      __global const float *grads, const uint param_off,
                                      const uint channels, const uint spatial, const uint n,
                                      const float count, const float beta)
{
  uint i = get_global_id (0);
  if (i >= n)
    return;
  uint c = (i / spatial) % channels;
  float mean = saved[c], istd = saved[channels + c];
  float xhat = (x[i] - mean) * istd;
  float g = params[param_off + c] * istd / count
            * (count * dy[i] - grads[param_off + channels + c] - xhat * grads[param_off + c]);
  dx[i] = beta == 0.0f ? g : beta * dx[i] + g;
}
