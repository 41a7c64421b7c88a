/* Max and average pooling (valid or Keras "same" padding) and global average pooling, NCHW. */
/* SPDX-License-Identifier: GPL-3.0-or-later */

/* One work-item per output element, over (OW, OH, planes): no integer division, which on a
 * CPU (PoCL) cost more than the pooling itself. Padding never takes part: max looks only at
 * real pixels, average divides by how many real pixels the window covers (as Keras does). Max
 * pooling records the winner's index within the plane (the first of equal maxima). */
__kernel void kilt_pool_forward (__global float *out, __global int *arg, __global const float *x,
                                 const uint planes, const uint H, const uint W, const uint OH,
                                 const uint OW, const uint kh, const uint kw, const uint sh,
                                 const uint sw, const uint pt, const uint pl, const int is_max)
{
  uint ox = get_global_id (0), oy = get_global_id (1), bc = get_global_id (2);
  if (ox >= OW || oy >= OH || bc >= planes)
    return;
  size_t gid = ((size_t) bc * OH + oy) * OW + ox;
  __global const float *plane = x + (size_t) bc * H * W;
  int y0 = (int) (oy * sh) - (int) pt, x0 = (int) (ox * sw) - (int) pl;
  int ylo = max (y0, 0), yhi = min (y0 + (int) kh, (int) H);
  int xlo = max (x0, 0), xhi = min (x0 + (int) kw, (int) W);
  float best = 0.0f;
  int bi = -1;
  for (int y = ylo; y < yhi; y++)
    for (int xx = xlo; xx < xhi; xx++)
      {
        float v = plane[y * (int) W + xx];
        if (is_max)
          {
            if (bi < 0 || v > best)
              {
                best = v;
                bi = y * (int) W + xx;
              }
          }
        else
          best += v;
      }
  if (is_max)
    {
      out[gid] = best;
      arg[gid] = bi;
    }
  else
    out[gid] = best / (float) ((yhi - ylo) * (xhi - xlo));
}

/* One work-item per input element: gathers every output whose window holds it, so
 * overlapping windows need no atomics. din = beta * din + that sum. */
__kernel void kilt_pool_backward (__global float *din, __global const float *dout,
                                  __global const int *arg, const uint n, const uint H,
                                  const uint W, const uint OH, const uint OW, const uint kh,
                                  const uint kw, const uint sh, const uint sw, const uint pt,
                                  const uint pl, const int is_max, const float beta)
{
  uint gid = get_global_id (0);
  if (gid >= n)
    return;
  int xx = (int) (gid % W), y = (int) ((gid / W) % H);
  uint bc = gid / (W * H);
  int ty = y + (int) pt, tx = xx + (int) pl;
  int oy_lo = ty - (int) kh + 1 <= 0 ? 0 : (ty - (int) kh + (int) sh) / (int) sh;
  int oy_hi = min (ty / (int) sh, (int) OH - 1);
  int ox_lo = tx - (int) kw + 1 <= 0 ? 0 : (tx - (int) kw + (int) sw) / (int) sw;
  int ox_hi = min (tx / (int) sw, (int) OW - 1);
  size_t obase = (size_t) bc * OH * OW;
  float acc = 0.0f;
  for (int oy = oy_lo; oy <= oy_hi; oy++)
    for (int ox = ox_lo; ox <= ox_hi; ox++)
      {
        size_t o = obase + (size_t) oy * OW + ox;
        if (is_max)
          {
            if (arg[o] == y * (int) W + xx)
              acc += dout[o];
          }
        else
          {
            int y0 = oy * (int) sh - (int) pt, x0 = ox * (int) sw - (int) pl;
            int cy = min (y0 + (int) kh, (int) H) - max (y0, 0);
            int cx = min (x0 + (int) kw, (int) W) - max (x0, 0);
            acc += dout[o] / (float) (cy * cx);
          }
      }
  din[gid] = beta == 0.0f ? acc : beta * din[gid] + acc;
}

/* Max pooling whose windows tile the plane (strides equal to the window, no padding before):
 * one work-item per output writes its whole window, the gradient at the recorded winner and 0
 * elsewhere, so each input is written once, without the search over covering windows (and its
 * integer divisions) that kilt_pool_backward does per input. The last window of a row or column
 * also takes the pixels past it that no window covers. din = beta * din + that. */
__kernel void kilt_maxpool_backward_tiles (__global float *din, __global const float *dout,
                                           __global const int *arg, const uint planes,
                                           const uint H, const uint W, const uint OH,
                                           const uint OW, const uint kh, const uint kw,
                                           const float beta)
{
  uint ox = get_global_id (0), oy = get_global_id (1), bc = get_global_id (2);
  if (ox >= OW || oy >= OH || bc >= planes)
    return;
  size_t gid = ((size_t) bc * OH + oy) * OW + ox;
  __global float *plane = din + (size_t) bc * H * W;
  int win = arg[gid];
  float g = dout[gid];
  uint y0 = oy * kh, x0 = ox * kw;
  uint y1 = oy == OH - 1 ? H : min (y0 + kh, H), x1 = ox == OW - 1 ? W : min (x0 + kw, W);
  for (uint y = y0; y < y1; y++)
    for (uint x = x0; x < x1; x++)
      {
        uint i = y * W + x;
        float v = (int) i == win ? g : 0.0f;
        plane[i] = beta == 0.0f ? v : beta * plane[i] + v;
      }
}

/* CPU variants of the two tiling max-pooling kernels (PoCL runs a group's work-items in a
 * loop on one thread): a work-item per output row (oy, plane) walks the row's windows, reading
 * and writing whole input rows. Per output the element kernels above cost a gathered 2 x 2
 * load and masked branches across work-items: on PoCL mnist_cnn's pooling (128 x 64 planes of
 * 24 x 24) moved 0.9 GB/s. The same windows, the same first-of-equal-maxima order. */
__kernel void kilt_maxpool_tiles_rows (__global float *out, __global int *arg,
                                       __global const float *x, const uint planes, const uint H,
                                       const uint W, const uint OH, const uint OW, const uint kh,
                                       const uint kw)
{
  uint oy = get_global_id (0), bc = get_global_id (1);
  if (oy >= OH || bc >= planes)
    return;
  __global const float *plane = x + (size_t) bc * H * W;
  size_t o = ((size_t) bc * OH + oy) * OW;
  uint y0 = oy * kh, y1 = min (y0 + kh, H);
  for (uint ox = 0; ox < OW; ox++)
    {
      uint x0 = ox * kw, x1 = min (x0 + kw, W);
      float best = plane[y0 * W + x0];
      int bi = (int) (y0 * W + x0);
      for (uint y = y0; y < y1; y++)
        for (uint xx = x0; xx < x1; xx++)
          {
            float v = plane[y * W + xx];
            if (v > best)
              {
                best = v;
                bi = (int) (y * W + xx);
              }
          }
      out[o + ox] = best;
      arg[o + ox] = bi;
    }
}

__kernel void kilt_maxpool_backward_tiles_rows (__global float *din, __global const float *dout,
                                                __global const int *arg, const uint planes,
                                                const uint H, const uint W, const uint OH,
                                                const uint OW, const uint kh, const uint kw,
                                                const float beta)
{
  uint oy = get_global_id (0), bc = get_global_id (1);
  if (oy >= OH || bc >= planes)
    return;
  __global float *plane = din + (size_t) bc * H * W;
  size_t o = ((size_t) bc * OH + oy) * OW;
  uint y0 = oy * kh, y1 = oy == OH - 1 ? H : min (y0 + kh, H);
  /* The rows this row of windows owns (and, for the last, the rows past it): cleared or
   * scaled as whole contiguous runs, then each window's gradient added at its winner, which
   * lies in them. Writing every pixel with a comparison ran at 2.5 GB/s on PoCL. */
  __global float *rows = plane + (size_t) y0 * W;
  uint n = (y1 - y0) * W;
  if (beta == 0.0f)
    for (uint i = 0; i < n; i++)
      rows[i] = 0.0f;
  else if (beta != 1.0f)
    for (uint i = 0; i < n; i++)
      rows[i] *= beta;
  for (uint ox = 0; ox < OW; ox++)
    plane[arg[o + ox]] += dout[o + ox];
}

/* out[bc] = mean of plane bc; one work-group per plane, a tree sum in local memory. The
 * group size must be a power of two of at most 256. */
__kernel void kilt_global_avg_pool_forward (__global float *out, __global const float *x,
                                            const uint spatial)
{
  __local float part[256];
  uint bc = get_group_id (0), l = get_local_id (0), ls = get_local_size (0);
  __global const float *plane = x + (size_t) bc * spatial;
  float acc = 0.0f;
  for (uint i = l; i < spatial; i += ls)
    acc += plane[i];
  part[l] = acc;
  barrier (CLK_LOCAL_MEM_FENCE);
  for (uint s = ls / 2; s > 0; s /= 2)
    {
      if (l < s)
        part[l] += part[l + s];
      barrier (CLK_LOCAL_MEM_FENCE);
    }
  if (l == 0)
    out[bc] = part[0] / (float) spatial;
}

__kernel void kilt_global_avg_pool_backward (__global float *din, __global const float *dout,
                                             const uint n, const uint spatial, const float beta)
{
  uint gid = get_global_id (0);
  if (gid >= n)
    return;
  float g = dout[gid / spatial] / (float) spatial;
  din[gid] = beta == 0.0f ? g : beta * din[gid] + g;
}

/* GlobalMaxPooling2D: one work-item per plane; the first maximum wins, as in the reference. */
__kernel void kilt_global_max_pool_forward (__global float *out, __global const float *x,
                                            const uint planes, const uint spatial)
{
  uint bc = get_global_id (0);
  if (bc >= planes)
    return;
  __global const float *plane = x + (size_t) bc * spatial;
  float m = plane[0];
  for (uint i = 1; i < spatial; i++)
    m = plane[i] > m ? plane[i] : m;
  out[bc] = m;
}

/* din = beta din + dout at the plane's (first) maximum, found again in the kept input. */
__kernel void kilt_global_max_pool_backward (__global float *din, __global const float *dout,
                                             __global const float *x, const uint planes,
                                             const uint spatial, const float beta)
{
  uint bc = get_global_id (0);
  if (bc >= planes)
    return;
  __global const float *plane = x + (size_t) bc * spatial;
  __global float *d = din + (size_t) bc * spatial;
  uint arg = 0;
  for (uint i = 1; i < spatial; i++)
    arg = plane[i] > plane[arg] ? i : arg;
  for (uint i = 0; i < spatial; i++)
    {
      float g = i == arg ? dout[bc] : 0.0f;
      d[i] = beta == 0.0f ? g : beta * d[i] + g;
    }
}

/* GlobalAveragePooling1D with a step mask (Keras' masks): the mean of a channel over the kept
 * steps, 0 / 0 (NaN) where none is, as Keras divides. One work-item per (sample, channel). */
__kernel void
kilt_global_avg_pool_masked_forward (__global float *out, __global const float *x,
                                     const uint channels, const uint steps, const uint batch,
                                     __global const float *mk, const int mk_kind,
                                     const float mk_value, const uint mk_feats)
{
  uint c = get_global_id (0), b = get_global_id (1);
  if (c >= channels || b >= batch)
    return;
  __global const float *plane = x + ((size_t)b * channels + c) * steps;
  float acc = 0.0f, n = 0.0f;
  for (uint t = 0; t < steps; t++)
    if (kilt_step_kept (mk, mk_kind, mk_value, mk_feats, b, t, steps))
      {
        acc += plane[t];
        n += 1.0f;
      }
  out[(size_t)b * channels + c] = acc / n;
}

/* din = beta din + dout / kept steps at the kept steps, 0 at the masked ones. */
__kernel void
kilt_global_avg_pool_masked_backward (__global float *din, __global const float *dout,
                                      const uint channels, const uint steps, const uint batch,
                                      const float beta, __global const float *mk, const int mk_kind,
                                      const float mk_value, const uint mk_feats)
{
  uint c = get_global_id (0), b = get_global_id (1);
  if (c >= channels || b >= batch)
    return;
  __global float *plane = din + ((size_t)b * channels + c) * steps;
  float n = 0.0f;
  for (uint t = 0; t < steps; t++)
    n += kilt_step_kept (mk, mk_kind, mk_value, mk_feats, b, t, steps) ? 1.0f : 0.0f;
  float g = dout[(size_t)b * channels + c] / n;
  for (uint t = 0; t < steps; t++)
    {
      float v = kilt_step_kept (mk, mk_kind, mk_value, mk_feats, b, t, steps) ? g : 0.0f;
      plane[t] = beta == 0.0f ? v : beta * plane[t] + v;
    }
}
