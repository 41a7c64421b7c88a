/* Inverted dropout with a counter-based mask: nothing is stored between forward and backward. */
/* SPDX-License-Identifier: GPL-3.0-or-later */

/* The element is kept when its uniform draw is at least @rate; engine/layers/kilt-dropout.c
 * computes the same draw on the host (kilt_hash_uniform) for the reference. */
inline float kilt_dropout_factor (uint seed, uint step, uint i, float rate, float scale)
{
  return kilt_uniform (seed, step, i) >= rate ? scale : 0.0f;
}

/* y = x * mask * scale over n floats; @group consecutive elements share one draw (1; a
 * channel's plane for SpatialDropout2D and noise_shape (None, 1, 1, C); a whole sample).
 * Element i draws as element @first + i of the whole batch: a replica that holds a slice of
 * the global batch (engine/dist) drops what one device holding all of it would. */
__kernel void kilt_dropout_forward (__global float *y, __global const float *x, const uint n,
                                    const uint seed, const uint step, const float rate,
                                    const float scale, const uint group, const uint first)
{
  uint i = get_global_id (0);
  if (i < n)
    y[i] = x[i] * kilt_dropout_factor (seed, step, (first + i) / group, rate, scale);
}

/* dx = beta * dx + dy * mask * scale, the mask drawn again from (seed, step, i). */
__kernel void kilt_dropout_backward (__global float *dx, __global const float *dy, const uint n,
                                     const uint seed, const uint step, const float rate,
                                     const float scale, const float beta, const uint group,
                                     const uint first)
{
  uint i = get_global_id (0);
  if (i < n)
    {
      float g = dy[i] * kilt_dropout_factor (seed, step, (first + i) / group, rate, scale);
      dx[i] = beta == 0.0f ? g : beta * dx[i] + g;
    }
}
