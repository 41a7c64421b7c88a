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
