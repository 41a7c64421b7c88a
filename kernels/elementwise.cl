/* Element-wise kernels: fills, scaled copies, fused bias + activation and its backward. */
/* SPDX-License-Identifier: GPL-3.0-or-later */

__kernel void kilt_fill (__global float *x, const float v, const uint n)
{
  uint i = get_global_id (0);
  if (i < n)
    x[i] = v;
}

/* y = beta * y + alpha * x */
__kernel void kilt_axpby (__global float *y, __global const float *x, const float alpha,
                          const float beta, const uint n)
{
  uint i = get_global_id (0);
  if (i < n)
    y[i] = (beta == 0.0f ? 0.0f : beta * y[i]) + alpha * x[i];
}

/* In place: y[b, c, s] = act (y[b, c, s] + bias[c]) for a (batch, channels, spatial) tensor. */
__kernel void kilt_bias_act (__global float *y, __global const float *bias, const uint bias_off,
                             const uint channels, const uint spatial, const uint n, const int act,
                             const float alpha, const int has_bias)
{
  uint i = get_global_id (0);
  if (i >= n)
    return;
  float v = y[i];
  if (has_bias)
    v += bias[bias_off + (i / spatial) % channels];
  y[i] = kilt_act (act, v, alpha);
}

/* dz = beta * dz + dy * act'(y); dz may alias dy when beta is 0. */
__kernel void kilt_act_backward (__global float *dz, __global const float *dy,
                                 __global const float *y, const uint n, const int act,
                                 const float alpha, const float beta)
{
  uint i = get_global_id (0);
  if (i < n)
    {
      float g = dy[i] * kilt_act_grad (act, y[i], alpha);
      dz[i] = beta == 0.0f ? g : beta * dz[i] + g;
    }
}

/* y = act (x), element-wise (not softmax). */
__kernel void kilt_act_forward (__global float *y, __global const float *x, const uint n,
                                const int act, const float alpha)
{
  uint i = get_global_id (0);
  if (i < n)
    y[i] = kilt_act (act, x[i], alpha);
}

/* db[c] = sum over batch and spatial of dz[b, c, s]; one work-item per channel, written at
 * db[bias_off + c] (overwrites: each step's gradient buffer is written once). */
__kernel void kilt_bias_grad (__global float *db, const uint bias_off, __global const float *dz,
                              const uint batch, const uint channels, const uint spatial)
{
  uint c = get_global_id (0);
  if (c >= channels)
    return;
  float acc = 0.0f;
  for (uint b = 0; b < batch; b++)
    {
      __global const float *p = dz + ((size_t) b * channels + c) * spatial;
      for (uint s = 0; s < spatial; s++)
        acc += p[s];
    }
  db[bias_off + c] = acc;
}

/* Row-wise softmax in place over (rows, cols); one work-item per row. */
__kernel void kilt_softmax_rows (__global float *y, const uint rows, const uint cols)
{
  uint r = get_global_id (0);
  if (r >= rows)
    return;
  __global float *p = y + (size_t) r * cols;
  float m = p[0];
  for (uint j = 1; j < cols; j++)
    m = fmax (m, p[j]);
  float s = 0.0f;
  for (uint j = 0; j < cols; j++)
    {
      float e = exp (p[j] - m);
      p[j] = e;
      s += e;
    }
  float inv = 1.0f / s;
  for (uint j = 0; j < cols; j++)
    p[j] *= inv;
}

/* In place on dy: dz_j = y_j * (dy_j - sum_k dy_k y_k), per row. */
__kernel void kilt_softmax_backward_rows (__global float *dy, __global const float *y,
                                          const uint rows, const uint cols)
{
  uint r = get_global_id (0);
  if (r >= rows)
    return;
  __global float *d = dy + (size_t) r * cols;
  __global const float *p = y + (size_t) r * cols;
  float dot = 0.0f;
  for (uint j = 0; j < cols; j++)
    dot += d[j] * p[j];
  for (uint j = 0; j < cols; j++)
    d[j] = p[j] * (d[j] - dot);
}
