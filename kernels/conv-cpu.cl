/* The forward pass of Conv2D on CPU devices (PoCL) at stride 1, without dilation or groups, as
 * a direct convolution. The input is first copied into a zero-bordered plane per (sample,
 * channel), wide enough that every vector load of a tile stays inside it; the convolution then
 * reads it as the GEMM kernels read B, with no column matrix (im2col wrote it and the GEMM read
 * it back: im2col was 14.5% of cifar10_cnn's device time on two cores, half of it the forward
 * pass's), and writes its output in place with bias and activation (no scatter). The
 * gradient of the input is the same convolution run on the output's gradient, padded, with the
 * weights flipped and transposed (kilt_conv_flip); the weight gradient keeps im2col + GEMM. */
/* SPDX-License-Identifier: GPL-3.0-or-later */

/* dst (planes of Hp x Wp from dst_off) = src (planes of H x W from src_off) placed at (pt, pl),
 * zeros around it; with an activation, src times its derivative at y (the layer's output,
 * laid out as src): the output gradient through the activation, for the input gradient. One
 * work-item per destination row, over (Hp, planes). */
__kernel void
kilt_conv_pad_rows (__global float *dst, const ulong dst_off, __global const float *src, const ulong src_off,
                    __global const float *y, const int act, const float alpha, const uint planes,
                    const uint H, const uint W, const uint Hp, const uint Wp, const uint pt,
                    const uint pl)
{
  uint r = get_global_id (0), p = get_global_id (1);
  if (r >= Hp || p >= planes)
    return;
  __global float *d = dst + dst_off + ((size_t) p * Hp + r) * Wp;
  if (r < pt || r - pt >= H)
    {
      for (uint x = 0; x < Wp; x++)
        d[x] = 0.0f;
      return;
    }
  size_t row = src_off + ((size_t) p * H + (r - pt)) * W;
  __global const float *s = src + row;
  __global const float *ys = y + row;
  uint x = 0;
  for (; x < pl; x++)
    d[x] = 0.0f;
  if (act == KILT_ACT_LINEAR)
    for (uint i = 0; i < W; i++)
      d[pl + i] = s[i];
  else if (act == KILT_ACT_RELU)
    for (uint i = 0; i < W; i++)
      d[pl + i] = ys[i] > 0.0f ? s[i] : 0.0f;
  else
    for (uint i = 0; i < W; i++)
      d[pl + i] = s[i] * kilt_act_grad (act, ys[i], alpha);
  for (x = pl + W; x < Wp; x++)
    d[x] = 0.0f;
}

/* dst (C, F, kh, kw) = W (F, C, kh, kw) at w_off with each kernel turned by 180 degrees: the
 * weights that convolve a layer's output gradient into its input gradient. */
__kernel void
kilt_conv_flip (__global float *dst, const ulong dst_off, __global const float *params, const uint w_off,
                const uint F, const uint C, const uint kh, const uint kw)
{
  uint t = get_global_id (0), f = get_global_id (1);
  uint taps = kh * kw;
  if (t >= C * taps || f >= F)
    return;
  uint c = t / taps, i = (t % taps) / kw, j = t % kw;
  dst[dst_off + ((size_t) c * F + f) * taps + (kh - 1 - i) * kw + (kw - 1 - j)]
      = params[w_off + (size_t) f * C * taps + t];
}

/* One row of a 16-wide output tile: bias, activation, then the @cols of it inside the row,
 * added to beta times what is there when beta is not 0. */
inline void
kilt_direct_store16 (__global float *c, uint cols, float8 v0, float8 v1, float bias, int act,
                     float alpha, float beta)
{
  v0 += bias;
  v1 += bias;
  if (act == KILT_ACT_RELU)
    {
      v0 = fmax (v0, 0.0f);
      v1 = fmax (v1, 0.0f);
    }
  float t[16];
  vstore8 (v0, 0, t);
  vstore8 (v1, 1, t);
  if (act != KILT_ACT_RELU && act != KILT_ACT_LINEAR)
    for (uint j = 0; j < 16; j++)
      t[j] = kilt_act (act, t[j], alpha);
  if (beta != 0.0f)
    for (uint j = 0; j < cols; j++)
      t[j] += beta * c[j];
  if (cols >= 16)
    {
      vstore8 (vload8 (0, t), 0, c);
      vstore8 (vload8 (1, t), 1, c);
      return;
    }
  for (uint j = 0; j < cols; j++)
    c[j] = t[j];
}

/* out (F planes of OH x OW per sample) = act (W * x + bias) + beta out, x padded as above
 * (C planes per sample from xp_off, of Hp = OH + kh - 1 rows of Wp >= ntx 16 + kw - 1). A
 * work-item computes KILT_GEMM_ROWS filters x 16 output columns of one output row: per tap (c, i, j) one
 * element of each filter and 16 contiguous input floats, as the GEMM's outer-product step.
 * Over (filter tiles, OH ntx, samples of the chunk from b0). W is (F, C, kh, kw) at w_off. */
__kernel void
kilt_conv_direct (__global float *out, __global const float *xp, const ulong xp_off,
                  __global const float *params, const uint w_off, const uint bias_off,
                  const int has_bias, const uint C, const uint F, const uint kh, const uint kw,
                  const uint Hp, const uint Wp, const uint OH, const uint OW, const uint ntx,
                  const uint b0, const int act, const float alpha, const float beta)
{
  uint i0 = get_global_id (0) * KILT_GEMM_ROWS, t = get_global_id (1);
  size_t b = get_global_id (2);
  uint oy = t / ntx, x0 = (t % ntx) * 16;
  const uint M = F;
  if (i0 >= F || oy >= OH)
    return;
  uint K = C * kh * kw;
  __global const float *A = params + w_off;
  const size_t ars = K;
  __global const float *a0 = A + i0 * ars;
  __global const float *a1 = A + min (i0 + 1, M - 1) * ars;
  __global const float *a2 = A + min (i0 + 2, M - 1) * ars;
  __global const float *a3 = A + min (i0 + 3, M - 1) * ars;
  KILT_GEMM_WIDE_ROWS (ars)
  float8 c00 = 0.0f, c01 = 0.0f, c10 = 0.0f, c11 = 0.0f;
  float8 c20 = 0.0f, c21 = 0.0f, c30 = 0.0f, c31 = 0.0f;
  __global const float *plane = xp + xp_off + (b * C * Hp + oy) * Wp + x0;
  for (uint c = 0; c < C; c++, plane += (size_t) Hp * Wp)
    for (uint i = 0; i < kh; i++)
      {
        __global const float *row = plane + (size_t) i * Wp;
        uint kb = (c * kh + i) * kw;
        for (uint j = 0; j < kw; j++)
          {
            uint ka = kb + j;
            float8 b0 = vload8 (0, row + j), b1 = vload8 (1, row + j);
            KILT_GEMM_STEP4 (b0, b1, a0[ka], a1[ka], a2[ka], a3[ka]);
            KILT_GEMM_WIDE_STEP (b0, b1, ka);
          }
      }
  uint cols = min (OW - x0, 16u);
  __global float *o = out + (((b0 + b) * F + i0) * OH + oy) * OW + x0;
  size_t ldo = (size_t) OH * OW;
#define KILT_DIRECT_ROW(r, v0, v1)                                                                 \
  if (i0 + r < F)                                                                                  \
  kilt_direct_store16 (o + r * ldo, cols, v0, v1, has_bias ? params[bias_off + i0 + r] : 0.0f,     \
                       act, alpha, beta)
  KILT_DIRECT_ROW (0, c00, c01);
  KILT_DIRECT_ROW (1, c10, c11);
  KILT_DIRECT_ROW (2, c20, c21);
  KILT_DIRECT_ROW (3, c30, c31);
#ifdef KILT_GEMM_WIDE
  KILT_DIRECT_ROW (4, c40, c41);
  KILT_DIRECT_ROW (5, c50, c51);
  KILT_DIRECT_ROW (6, c60, c61);
  KILT_DIRECT_ROW (7, c70, c71);
#endif
#undef KILT_DIRECT_ROW
}
