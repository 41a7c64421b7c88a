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
