/* DepthwiseConv2D: each input channel c convolved with its own depth_multiplier filters,
 * output channel c * dm + m, as Keras orders them. Weights w[c][m][ky][kx]. Direct loops:
 * a depthwise layer does kh kw multiply-adds per output, too few for a GEMM to pay. */
/* SPDX-License-Identifier: GPL-3.0-or-later */

/* One work-item per output (ox, oy, b * C * dm + o). Input row iy = oy sh - pad_t + ky dh. */
__kernel void kilt_dw_forward (__global float *y, __global const float *x,
                               __global const float *w, const uint w_off, const uint channels,
                               const uint dm, const uint ih, const uint iw, const uint oh,
                               const uint ow, const uint kh, const uint kw, const uint sh,
                               const uint sw, const uint dh, const uint dw, const uint pad_t,
                               const uint pad_l, const uint planes)
{
  uint ox = get_global_id (0), oy = get_global_id (1), p = get_global_id (2);
  if (ox >= ow || oy >= oh || p >= planes)
    return;
  uint o = p % (channels * dm), b = p / (channels * dm), c = o / dm;
  __global const float *xp = x + ((size_t) b * channels + c) * ih * iw;
  __global const float *wp = w + w_off + (size_t) o * kh * kw;
  float acc = 0.0f;
  for (uint ky = 0; ky < kh; ky++)
    {
      int iy = (int) (oy * sh + ky * dh) - (int) pad_t;
      if (iy < 0 || iy >= (int) ih)
        continue;
      for (uint kx = 0; kx < kw; kx++)
        {
          int ix = (int) (ox * sw + kx * dw) - (int) pad_l;
          if (ix >= 0 && ix < (int) iw)
            acc += xp[iy * iw + ix] * wp[ky * kw + kx];
        }
    }
  y[((size_t) p * oh + oy) * ow + ox] = acc;
}

/* dx = beta dx + the sum over m, ky, kx of dz at the outputs that read (iy, ix). */
__kernel void kilt_dw_backward_input (__global float *dx, __global const float *dz,
                                      __global const float *w, const uint w_off,
                                      const uint channels, const uint dm, const uint ih,
                                      const uint iw, const uint oh, const uint ow,
                                      const uint kh, const uint kw, const uint sh, const uint sw,
                                      const uint dh, const uint dw, const uint pad_t,
                                      const uint pad_l, const uint planes, const float beta)
{
  uint ix = get_global_id (0), iy = get_global_id (1), p = get_global_id (2);
  if (ix >= iw || iy >= ih || p >= planes)
    return;
  uint c = p % channels, b = p / channels;
  float acc = 0.0f;
  for (uint m = 0; m < dm; m++)
    {
      uint o = c * dm + m;
      __global const float *zp = dz + ((size_t) b * channels * dm + o) * oh * ow;
      __global const float *wp = w + w_off + (size_t) o * kh * kw;
      for (uint ky = 0; ky < kh; ky++)
        {
          int ny = (int) iy + (int) pad_t - (int) (ky * dh);
          if (ny < 0 || ny % (int) sh)
            continue;
          uint oy = (uint) ny / sh;
          if (oy >= oh)
            continue;
          for (uint kx = 0; kx < kw; kx++)
            {
              int nx = (int) ix + (int) pad_l - (int) (kx * dw);
              if (nx < 0 || nx % (int) sw)
                continue;
              uint ox = (uint) nx / sw;
              if (ox < ow)
                acc += zp[oy * ow + ox] * wp[ky * kw + kx];
            }
        }
    }
  size_t at = ((size_t) p * ih + iy) * iw + ix;
  dx[at] = beta == 0.0f ? acc : beta * dx[at] + acc;
}

/* dw[o][ky][kx] = the sum over batch and outputs of dz x, written (not added) at
 * grads[g_off + ...]. One group of KILT_DW_GROUP work-items per weight, each summing a strided
 * share of every sample's outputs (consecutive work-items read consecutive outputs), then a
 * tree in local memory: a weight sums batch x oh x ow products (401,408 for MobileNetV2's
 * first depthwise layer at batch 32), far too many for one work-item. The order is fixed, so
 * the result is the same run to run. */
#define KILT_DW_GROUP 128
__kernel __attribute__ ((reqd_work_group_size (KILT_DW_GROUP, 1, 1))) void
kilt_dw_backward_weight (__global float *grads, const uint g_off, __global const float *dz,
                         __global const float *x, const uint batch, const uint channels,
                         const uint dm, const uint ih, const uint iw, const uint oh,
                         const uint ow, const uint kh, const uint kw, const uint sh,
                         const uint sw, const uint dh, const uint dw, const uint pad_t,
                         const uint pad_l)
{
  __local float part[KILT_DW_GROUP];
  uint i = get_group_id (0), lid = get_local_id (0), per = oh * ow;
  uint kx = i % kw, ky = (i / kw) % kh, o = i / (kw * kh), c = o / dm;
  float acc = 0.0f;

  for (uint b = 0; b < batch; b++)
    {
      __global const float *xp = x + ((size_t) b * channels + c) * ih * iw;
      __global const float *zp = dz + ((size_t) b * channels * dm + o) * per;
      for (uint r = lid; r < per; r += KILT_DW_GROUP)
        {
          uint oy = r / ow, ox = r - oy * ow;
          int iy = (int) (oy * sh + ky * dh) - (int) pad_t;
          int ix = (int) (ox * sw + kx * dw) - (int) pad_l;
          if (iy >= 0 && iy < (int) ih && ix >= 0 && ix < (int) iw)
            acc += zp[r] * xp[iy * (int) iw + ix];
        }
    }
  part[lid] = acc;
  barrier (CLK_LOCAL_MEM_FENCE);
  for (uint s = KILT_DW_GROUP / 2; s > 0; s >>= 1)
    {
      if (lid < s)
        part[lid] += part[lid + s];
      barrier (CLK_LOCAL_MEM_FENCE);
    }
  if (lid == 0)
    grads[g_off + i] = part[0];
}
