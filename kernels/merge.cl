/* Merge layers: element-wise sum of several inputs, and concatenation along channels. */
/* SPDX-License-Identifier: GPL-3.0-or-later */

/* y = x0 + x1 + ... over n floats, for 2 to 8 inputs (unused buffers may repeat x0). The sum
 * runs in input order, as the reference adds. */
__kernel void kilt_add_n (__global float *y, const uint n, const uint n_inputs,
                          __global const float *x0, __global const float *x1,
                          __global const float *x2, __global const float *x3,
                          __global const float *x4, __global const float *x5,
                          __global const float *x6, __global const float *x7)
{
  uint i = get_global_id (0);
  if (i >= n)
    return;
  float v = x0[i] + x1[i];
  if (n_inputs > 2)
    v += x2[i];
  if (n_inputs > 3)
    v += x3[i];
  if (n_inputs > 4)
    v += x4[i];
  if (n_inputs > 5)
    v += x5[i];
  if (n_inputs > 6)
    v += x6[i];
  if (n_inputs > 7)
    v += x7[i];
  y[i] = v;
}

/* Copies one input (batch, c_in, spatial) into channels [c_off, c_off + c_in) of the output
 * (batch, c_out, spatial). */
__kernel void kilt_concat_forward (__global float *y, __global const float *x, const uint c_in,
                                   const uint c_out, const uint c_off, const uint spatial,
                                   const uint n)
{
  uint i = get_global_id (0);
  if (i >= n)
    return;
  uint per = c_in * spatial, b = i / per, r = i % per;
  y[(size_t) b * c_out * spatial + (size_t) c_off * spatial + r] = x[i];
}

/* dx = beta * dx + the slice of dy that the input filled. */
__kernel void kilt_concat_backward (__global float *dx, __global const float *dy, const uint c_in,
                                    const uint c_out, const uint c_off, const uint spatial,
                                    const uint n, const float beta)
{
  uint i = get_global_id (0);
  if (i >= n)
    return;
  uint per = c_in * spatial, b = i / per, r = i % per;
  float g = dy[(size_t) b * c_out * spatial + (size_t) c_off * spatial + r];
  dx[i] = beta == 0.0f ? g : beta * dx[i] + g;
}

/* Multiply: an input of a channel's value per plane (C, 1, 1) against (C, H, W) reads element
 * i / group (group = H W), so SE blocks' broadcasts need no copy. y[i] = x[i / group]. */
__kernel void kilt_mul_copy (__global float *y, __global const float *x, const uint n,
                             const uint group)
{
  uint i = get_global_id (0);
  if (i < n)
    y[i] = x[i / group];
}

/* y[i] *= x[i / group]. */
__kernel void kilt_mul_inplace (__global float *y, __global const float *x, const uint n,
                                const uint group)
{
  uint i = get_global_id (0);
  if (i < n)
    y[i] *= x[i / group];
}

/* dx[j] = beta dx[j] + the sum of w over the group of j, for j < m (m x group = len (w)). */
__kernel void kilt_mul_group_sum (__global float *dx, __global const float *w, const uint m,
                                  const uint group, const float beta)
{
  uint j = get_global_id (0);
  if (j >= m)
    return;
  float acc = 0.0f;
  for (uint s = 0; s < group; s++)
    acc += w[(size_t) j * group + s];
  dx[j] = beta == 0.0f ? acc : beta * dx[j] + acc;
}

/* Subtract, Average, Maximum, Minimum of 2 to 8 inputs (codes as KiltMergeOp in
 * engine/layers/kilt-merge.c): y[i] over x0..x{n_inputs-1}; unused buffers may repeat x0. */
#define KILT_MERGE_SUBTRACT 0
#define KILT_MERGE_AVERAGE 1
#define KILT_MERGE_MAXIMUM 2
#define KILT_MERGE_MINIMUM 3

static inline float kilt_merge_at (uint k, uint i, __global const float *x0,
                                   __global const float *x1, __global const float *x2,
                                   __global const float *x3, __global const float *x4,
                                   __global const float *x5, __global const float *x6,
                                   __global const float *x7)
{
  switch (k)
    {
    case 0: return x0[i];
    case 1: return x1[i];
    case 2: return x2[i];
    case 3: return x3[i];
    case 4: return x4[i];
    case 5: return x5[i];
    case 6: return x6[i];
    default: return x7[i];
    }
}

/* The input Maximum / Minimum takes at element i: the first extreme, as the reference. */
static inline uint kilt_merge_pick (int op, uint n_inputs, uint i, __global const float *x0,
                                    __global const float *x1, __global const float *x2,
                                    __global const float *x3, __global const float *x4,
                                    __global const float *x5, __global const float *x6,
                                    __global const float *x7)
{
  uint best = 0;
  float v = x0[i];
  for (uint k = 1; k < n_inputs; k++)
    {
      float u = kilt_merge_at (k, i, x0, x1, x2, x3, x4, x5, x6, x7);
      if (op == KILT_MERGE_MAXIMUM ? u > v : u < v)
        {
          v = u;
          best = k;
        }
    }
  return best;
}

__kernel void kilt_merge_forward (__global float *y, const uint n, const uint n_inputs,
                                  const int op, __global const float *x0,
                                  __global const float *x1, __global const float *x2,
                                  __global const float *x3, __global const float *x4,
                                  __global const float *x5, __global const float *x6,
                                  __global const float *x7)
{
  uint i = get_global_id (0);
  if (i >= n)
    return;
  if (op == KILT_MERGE_SUBTRACT)
    y[i] = x0[i] - x1[i];
  else if (op == KILT_MERGE_AVERAGE)
    {
      float s = 0.0f;
      for (uint k = 0; k < n_inputs; k++)
        s += kilt_merge_at (k, i, x0, x1, x2, x3, x4, x5, x6, x7);
      y[i] = s / (float) n_inputs;
    }
  else
    y[i] = kilt_merge_at (kilt_merge_pick (op, n_inputs, i, x0, x1, x2, x3, x4, x5, x6, x7), i,
                          x0, x1, x2, x3, x4, x5, x6, x7);
}

/* dx (input @which) = beta dx + its share of dy. */
__kernel void kilt_merge_backward (__global float *dx, __global const float *dy, const uint n,
                                   const uint n_inputs, const int op, const uint which,
                                   const float beta, __global const float *x0,
                                   __global const float *x1, __global const float *x2,
                                   __global const float *x3, __global const float *x4,
                                   __global const float *x5, __global const float *x6,
                                   __global const float *x7)
{
  uint i = get_global_id (0);
  if (i >= n)
    return;
  float g;
  if (op == KILT_MERGE_SUBTRACT)
    g = which == 0 ? dy[i] : -dy[i];
  else if (op == KILT_MERGE_AVERAGE)
    g = dy[i] / (float) n_inputs;
  else
    g = kilt_merge_pick (op, n_inputs, i, x0, x1, x2, x3, x4, x5, x6, x7) == which ? dy[i] : 0.0f;
  dx[i] = beta == 0.0f ? g : beta * dx[i] + g;
}
