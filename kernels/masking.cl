/* Keras' Masking: the steps whose features all equal mask_value become zeros; the mask they
 * make is what later layers' step masks read again from this layer's input. */
/* SPDX-License-Identifier: GPL-3.0-or-later */

/* y = x where step t of sample b is kept, else 0; one work-item per (feature, step, sample). */
__kernel void kilt_masking_forward (__global float *y, __global const float *x,
                                    const uint features, const uint steps, const uint batch,
                                    const float value)
{
  uint f = get_global_id (0), t = get_global_id (1), b = get_global_id (2);
  if (f >= features || t >= steps || b >= batch)
    return;
  size_t i = ((size_t) b * features + f) * steps + t;
  y[i] = kilt_step_kept (x, 2, value, features, b, t, steps) ? x[i] : 0.0f;
}

/* dx = beta dx + (kept ? dy : 0): the mask is piecewise constant, so it passes no gradient. */
__kernel void kilt_masking_backward (__global float *dx, __global const float *dy,
                                     __global const float *x, const uint features,
                                     const uint steps, const uint batch, const float value,
                                     const float beta)
{
  uint f = get_global_id (0), t = get_global_id (1), b = get_global_id (2);
  if (f >= features || t >= steps || b >= batch)
    return;
  size_t i = ((size_t) b * features + f) * steps + t;
  float g = kilt_step_kept (x, 2, value, features, b, t, steps) ? dy[i] : 0.0f;
  dx[i] = beta == 0.0f ? g : beta * dx[i] + g;
}
