/* ZeroPadding2D and Cropping2D: a shifted copy of each channel's plane. */
/* SPDX-License-Identifier: GPL-3.0-or-later */

/* dst[p, y, x] = beta dst + src[p, y + oy, x + ox], or beta dst where that falls outside src.
 * One work-item per destination element; p runs over batch x channels. Padding's forward and
 * cropping's backward shift by minus the top/left amounts, the other two by plus. */
__kernel void kilt_shift2d (__global float *dst, __global const float *src, const uint planes,
                            const uint src_h, const uint src_w, const uint dst_h, const uint dst_w,
                            const int oy, const int ox, const float beta)
{
  uint x = get_global_id (0), y = get_global_id (1), p = get_global_id (2);
  if (x >= dst_w || y >= dst_h || p >= planes)
    return;
  int sy = (int) y + oy, sx = (int) x + ox;
  float v = 0.0f;
  if (sy >= 0 && sx >= 0 && sy < (int) src_h && sx < (int) src_w)
    v = src[((size_t) p * src_h + sy) * src_w + sx];
  size_t d = ((size_t) p * dst_h + y) * dst_w + x;
  dst[d] = beta == 0.0f ? v : beta * dst[d] + v;
}

/* UpSampling2D, nearest: y[p, oy, ox] = x[p, oy / sy, ox / sx]. */
__kernel void kilt_upsample_forward (__global float *y, __global const float *x,
                                     const uint planes, const uint ih, const uint iw,
                                     const uint sy, const uint sx)
{
  uint ox = get_global_id (0), oy = get_global_id (1), p = get_global_id (2);
  uint oh = ih * sy, ow = iw * sx;
  if (ox >= ow || oy >= oh || p >= planes)
    return;
  y[((size_t) p * oh + oy) * ow + ox] = x[((size_t) p * ih + oy / sy) * iw + ox / sx];
}

/* Bilinear upsampling as TensorFlow's resize with half-pixel centres (Keras' UpSampling2D
 * interpolation="bilinear"): output row oy samples input row f = (oy + 0.5) / sy - 0.5,
 * clamped at 0, between rows floor (f) and the next (clamped at the last), weights 1 - l and
 * l for l = f - floor (f); columns likewise. */
static inline void
kilt_bilinear_tap (uint o, uint s, uint n, uint *i0, uint *i1, float *l)
{
  float f = fmax (((float) o + 0.5f) / (float) s - 0.5f, 0.0f);
  uint a = min ((uint) f, n - 1);
  *i0 = a;
  *i1 = min (a + 1, n - 1);
  *l = f - (float) a;
}

__kernel void kilt_upsample_bilinear_forward (__global float *y, __global const float *x,
                                              const uint planes, const uint ih, const uint iw,
                                              const uint sy, const uint sx)
{
  uint ox = get_global_id (0), oy = get_global_id (1), p = get_global_id (2);
  uint oh = ih * sy, ow = iw * sx;
  if (ox >= ow || oy >= oh || p >= planes)
    return;
  uint y0, y1, x0, x1;
  float ly, lx;
  kilt_bilinear_tap (oy, sy, ih, &y0, &y1, &ly);
  kilt_bilinear_tap (ox, sx, iw, &x0, &x1, &lx);
  __global const float *plane = x + (size_t) p * ih * iw;
  float top = plane[y0 * iw + x0] + (plane[y0 * iw + x1] - plane[y0 * iw + x0]) * lx;
  float bottom = plane[y1 * iw + x0] + (plane[y1 * iw + x1] - plane[y1 * iw + x0]) * lx;
  y[((size_t) p * oh + oy) * ow + ox] = top + (bottom - top) * ly;
}

/* The weight output o gives input i along one axis (0 when it does not sample it). */
static inline float
kilt_bilinear_weight (uint o, uint s, uint n, uint i)
{
  uint i0, i1;
  float l;
  kilt_bilinear_tap (o, s, n, &i0, &i1, &l);
  return (i0 == i ? 1.0f - l : 0.0f) + (i1 == i ? l : 0.0f);
}

/* dx[p, iy, ix] = beta dx + the sum over the outputs that sampled it, gathered (no atomics):
 * an input row is sampled only by output rows within [(iy - 1) sy, (iy + 2) sy). */
__kernel void kilt_upsample_bilinear_backward (__global float *dx, __global const float *dy,
                                               const uint planes, const uint ih, const uint iw,
                                               const uint sy, const uint sx, const float beta)
{
  uint ix = get_global_id (0), iy = get_global_id (1), p = get_global_id (2);
  uint oh = ih * sy, ow = iw * sx;
  if (ix >= iw || iy >= ih || p >= planes)
    return;
  uint oy_lo = iy > 0 ? (iy - 1) * sy : 0, oy_hi = min ((iy + 2) * sy, oh);
  uint ox_lo = ix > 0 ? (ix - 1) * sx : 0, ox_hi = min ((ix + 2) * sx, ow);
  __global const float *plane = dy + (size_t) p * oh * ow;
  float acc = 0.0f;
  for (uint oy = oy_lo; oy < oy_hi; oy++)
    {
      float wy = kilt_bilinear_weight (oy, sy, ih, iy);
      if (wy == 0.0f)
        continue;
      float row = 0.0f;
      for (uint ox = ox_lo; ox < ox_hi; ox++)
        row += kilt_bilinear_weight (ox, sx, iw, ix) * plane[(size_t) oy * ow + ox];
      acc += wy * row;
    }
  size_t at = ((size_t) p * ih + iy) * iw + ix;
  dx[at] = beta == 0.0f ? acc : beta * dx[at] + acc;
}

/* Permute: out (n, a0, a1, a2) of shape (d0, d1, d2) = in at a0 * st0 + a1 * st1 + a2 * st2,
 * the strides of the input axes each output axis takes; backward moves dout back the same
 * way (a bijection: no two work-items write one element). Over (d2, d1, d0 * batch). */
__kernel void kilt_permute (__global float *dst, __global const float *src, const uint d0,
                            const uint d1, const uint d2, const uint st0, const uint st1,
                            const uint st2, const uint batch, const int back, const float beta)
{
  uint a2 = get_global_id (0), a1 = get_global_id (1), z = get_global_id (2);
  if (a2 >= d2 || a1 >= d1 || z >= d0 * batch)
    return;
  uint n = z / d0, a0 = z - n * d0;
  size_t plane = (size_t) d0 * d1 * d2;
  size_t o = n * plane + ((size_t) a0 * d1 + a1) * d2 + a2;
  size_t i = n * plane + (size_t) a0 * st0 + (size_t) a1 * st1 + (size_t) a2 * st2;
  if (back)
    dst[i] = beta == 0.0f ? src[o] : beta * dst[i] + src[o];
  else
    dst[o] = src[i];
}

/* dx[p, iy, ix] = beta dx + the sum of dy over the sy x sx block it was copied to. */
__kernel void kilt_upsample_backward (__global float *dx, __global const float *dy,
                                      const uint planes, const uint ih, const uint iw,
                                      const uint sy, const uint sx, const float beta)
{
  uint ix = get_global_id (0), iy = get_global_id (1), p = get_global_id (2);
  uint ow = iw * sx;
  if (ix >= iw || iy >= ih || p >= planes)
    return;
  __global const float *row = dy + ((size_t) p * ih * sy + (size_t) iy * sy) * ow + ix * sx;
  float acc = 0.0f;
  for (uint a = 0; a < sy; a++)
    for (uint b = 0; b < sx; b++)
      acc += row[(size_t) a * ow + b];
  size_t at = ((size_t) p * ih + iy) * iw + ix;
  dx[at] = beta == 0.0f ? acc : beta * dx[at] + acc;
}
