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
