/* The forward pass of Conv2D on CPU devices (PoCL) at stride 1, without dilation or groups, as
 * a direct convolution. The input is first copied into a zero-bordered plane per (sample,
 * channel), wide enough that every vector load of a tile stays inside it; the convolution then
 * reads it as the GEMM kernels read B, with no column matrix (im2col wrote it and the GEMM read
 * it back: im2col was 14.5% of cifar10_cnn's device time on two cores, half of it the forward
 * pass's), and writes its output in place with bias and activation (no scatter). The
 * gradient of the input is the same convolution run on the output's gradient, padded, with the
 * weights flipped and transposed (kilt_conv_flip); the weight gradient is a direct reduction
 * over the two padded copies (kilt_conv_wgrad_direct), except for layers of under 8 input
 * channels, which keep im2col + GEMM. */
/* SPDX-License-Identifier: GPL-3.0-or-later */

/* n floats of a row: d = s (linear), s where ys > 0 (ReLU) or s times the derivative at ys,
 * 16 at a time and then one by one. */
inline void
kilt_pad_copy (__global float *d, __global const float *s, __global const float *ys, uint n,
               int act, float alpha)
{
  uint i = 0;
  if (act == KILT_ACT_LINEAR)
    for (; i + 16 <= n; i += 16)
      vstore16 (vload16 (0, s + i), 0, d + i);
  else if (act == KILT_ACT_RELU)
    for (; i + 16 <= n; i += 16)
      vstore16 (select ((float16)0.0f, vload16 (0, s + i), vload16 (0, ys + i) > 0.0f), 0,
                d + i);
  for (; i < n; i++)
    d[i] = act == KILT_ACT_LINEAR ? s[i]
           : act == KILT_ACT_RELU ? (ys[i] > 0.0f ? s[i] : 0.0f)
                                  : s[i] * kilt_act_grad (act, ys[i], alpha);
}

/* n zeros from d, 16 at a time. */
inline void
kilt_pad_zero (__global float *d, uint n)
{
  uint i = 0;
  for (; i + 16 <= n; i += 16)
    vstore16 ((float16)0.0f, 0, d + i);
  for (; i < n; i++)
    d[i] = 0.0f;
}

/* dst (planes of Hp x Wp from dst_off) = src (planes of H x W from src_off) placed at (pt, pl),
 * zeros around it; with an activation, src times its derivative at y (the layer's output,
 * laid out as src): the output gradient through the activation, for the input gradient. One
 * work-item per destination plane, a row at a time in 16-wide copies (PoCL ran a work-item
 * per row as scalar copies; bench/NOTES.md section 19 has both timed). */
__kernel void
kilt_conv_pad_rows (__global float *dst, const ulong dst_off, __global const float *src, const ulong src_off,
                    __global const float *y, const int act, const float alpha, const uint planes,
                    const uint H, const uint W, const uint Hp, const uint Wp, const uint pt,
                    const uint pl)
{
  uint p = get_global_id (0);
  if (p >= planes)
    return;
  __global float *d = dst + dst_off + (size_t) p * Hp * Wp;
  size_t row = src_off + (size_t) p * H * W;
  kilt_pad_zero (d, pt * Wp + pl);
  for (uint r = 0; r < H; r++)
    {
      __global float *dr = d + (size_t) (pt + r) * Wp + pl;
      kilt_pad_copy (dr, src + row + (size_t) r * W, y + row + (size_t) r * W, W, act, alpha);
      /* This row's right border and the next one's left, or the bottom rows after the last. */
      kilt_pad_zero (dr + W, r + 1 < H ? Wp - W : Wp - W - pl + (Hp - pt - H) * Wp);
    }
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
                  const uint b0, const int act, const float alpha, const float beta,
                  const uint r0, const uint r1)
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
#define KILT_DIRECT_TAP(row, j, ka)                                                                \
  do                                                                                               \
    {                                                                                              \
      float8 b0 = vload8 (0, (row) + (j)), b1 = vload8 (1, (row) + (j));                           \
      KILT_GEMM_STEP4 (b0, b1, a0[ka], a1[ka], a2[ka], a3[ka]);                                    \
      KILT_GEMM_WIDE_STEP (b0, b1, ka);                                                            \
    }                                                                                              \
  while (0)
  /* Only the padded rows r0 .. r1 - 1 hold data: the kernel rows ki0 .. ki1 - 1 meet them. The
   * rows above and below are zeros, which a valid convolution's input gradient has kh - 1 of
   * on each side: conv2d_3's in cifar10_cnn, 15 rows from 13, spent 13% of its taps on them. */
  uint ki0 = oy < r0 ? r0 - oy : 0, ki1 = min (kh, r1 > oy ? r1 - oy : 0u);
#define KILT_DIRECT_ROW3(row, kb)                                                                  \
  do                                                                                               \
    {                                                                                              \
      KILT_DIRECT_TAP (row, 0, kb);                                                                \
      KILT_DIRECT_TAP (row, 1, (kb) + 1);                                                          \
      KILT_DIRECT_TAP (row, 2, (kb) + 2);                                                          \
    }                                                                                              \
  while (0)
  if (kh == 3 && kw == 3 && ki0 == 0 && ki1 == 3)
    /* The common 3 x 3 kernel with its nine taps unrolled: the loops over kernel rows and
     * columns reloaded their counters from the stack every three taps. */
    for (uint c = 0, kb = 0; c < C; c++, kb += 9, plane += (size_t) Hp * Wp)
      {
        KILT_DIRECT_ROW3 (plane, kb);
        KILT_DIRECT_ROW3 (plane + Wp, kb + 3);
        KILT_DIRECT_ROW3 (plane + 2 * Wp, kb + 6);
      }
  else if (kw == 3)
    for (uint c = 0; c < C; c++, plane += (size_t) Hp * Wp)
      for (uint i = ki0; i < ki1; i++)
        KILT_DIRECT_ROW3 (plane + (size_t) i * Wp, (c * kh + i) * 3);
  else
    for (uint c = 0; c < C; c++, plane += (size_t) Hp * Wp)
      for (uint i = ki0; i < ki1; i++)
        {
          __global const float *row = plane + (size_t) i * Wp;
          uint kb = (c * kh + i) * kw;
          for (uint j = 0; j < kw; j++)
            KILT_DIRECT_TAP (row, j, kb + j);
        }
#undef KILT_DIRECT_ROW3
#undef KILT_DIRECT_TAP
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

/* The sum of a vector's 16 lanes. */
inline float
kilt_sum16 (float16 v)
{
  float8 h = v.lo + v.hi;
  float4 q = h.lo + h.hi;
  return q.x + q.y + q.z + q.w;
}

/* grads (the weights, F x C x kh x kw from g_off, then F biases) = beta grads + the sum over
 * a chunk's samples, rows y and columns x of dz (f, y, x) x (c, y + i, x + j), from the padded
 * planes of the workspace: dz's as the input gradient pads them (F per sample, of Hd x Wd, dz
 * (y, x) at (y + dt, x + dl), zero after its OW columns up to ntx 16) and the input's as the
 * forward pass does (C per sample, of Hp x Wp). No column matrix: im2col, the gather of dz
 * and the sum of split-K parts were a quarter of cifar10_cnn's device time on two cores. A
 * work-item: 4 filters x 3 taps (c, i, j0 .. j0 + 2) of a kernel row, each a 16-wide sum
 * across x added up at the end, and for tap group 0 the bias's sums of dz. Over (tap groups
 * C kh ceil (kw / 3), filter tiles): the work-items next to each other read the same dz. */
__kernel void
kilt_conv_wgrad_direct (__global float *grads, const uint g_off, const int has_bias,
                        const float beta, __global const float *ws, const ulong dz_off,
                        const uint Hd, const uint Wd, const uint dt, const uint dl,
                        const ulong x_off, const uint Hp, const uint Wp, const uint F,
                        const uint C, const uint kh, const uint kw, const uint OH,
                        const uint ntx, const uint nb)
{
  uint t = get_global_id (0), f0 = get_global_id (1) * 4;
  uint jg = (kw + 2) / 3;
  if (t >= C * kh * jg || f0 >= F)
    return;
  uint c = t / (kh * jg), i = (t / jg) % kh, j0 = (t % jg) * 3;
  uint nj = min (kw - j0, 3u);
  /* Taps past the kernel's last column read the last one's vectors again (inside the plane),
   * and filters past F the last filter's: both are computed and not stored. */
  uint s1 = min (1u, nj - 1), s2 = min (2u, nj - 1);
  size_t dzs = (size_t) Hd * Wd, xs = (size_t) Hp * Wp;
  size_t fs1 = (size_t) (min (f0 + 1, F - 1) - f0) * dzs;
  size_t fs2 = (size_t) (min (f0 + 2, F - 1) - f0) * dzs;
  size_t fs3 = (size_t) (min (f0 + 3, F - 1) - f0) * dzs;
  int bias = has_bias && t == 0;
  float16 a00 = 0.0f, a01 = 0.0f, a02 = 0.0f, a10 = 0.0f, a11 = 0.0f, a12 = 0.0f;
  float16 a20 = 0.0f, a21 = 0.0f, a22 = 0.0f, a30 = 0.0f, a31 = 0.0f, a32 = 0.0f;
  float16 z0s = 0.0f, z1s = 0.0f, z2s = 0.0f, z3s = 0.0f;
  for (uint b = 0; b < nb; b++)
    {
      __global const float *d = ws + dz_off + ((size_t) b * F + f0) * dzs + (size_t) dt * Wd + dl;
      __global const float *xr = ws + x_off + ((size_t) b * C + c) * xs + (size_t) i * Wp + j0;
      for (uint y = 0; y < OH; y++, d += Wd, xr += Wp)
        for (uint x0 = 0; x0 < ntx * 16; x0 += 16)
          {
            float16 z0 = vload16 (0, d + x0), z1 = vload16 (0, d + fs1 + x0);
            float16 z2 = vload16 (0, d + fs2 + x0), z3 = vload16 (0, d + fs3 + x0);
            float16 v0 = vload16 (0, xr + x0), v1 = vload16 (0, xr + x0 + s1);
            float16 v2 = vload16 (0, xr + x0 + s2);
            a00 = fma (z0, v0, a00);
            a01 = fma (z0, v1, a01);
            a02 = fma (z0, v2, a02);
            a10 = fma (z1, v0, a10);
            a11 = fma (z1, v1, a11);
            a12 = fma (z1, v2, a12);
            a20 = fma (z2, v0, a20);
            a21 = fma (z2, v1, a21);
            a22 = fma (z2, v2, a22);
            a30 = fma (z3, v0, a30);
            a31 = fma (z3, v1, a31);
            a32 = fma (z3, v2, a32);
            if (bias)
              {
                z0s += z0;
                z1s += z1;
                z2s += z2;
                z3s += z3;
              }
          }
    }
  size_t K = (size_t) C * kh * kw, w = ((size_t) c * kh + i) * kw + j0;
  __global float *gw = grads + g_off;
#define KILT_WGRAD_ROW(r, v0, v1, v2, zs)                                                         \
  if (f0 + r < F)                                                                                 \
    {                                                                                             \
      __global float *o = gw + (f0 + r) * K + w;                                                  \
      float s[3] = { kilt_sum16 (v0), kilt_sum16 (v1), kilt_sum16 (v2) };                        \
      for (uint j = 0; j < nj; j++)                                                               \
        o[j] = beta != 0.0f ? beta * o[j] + s[j] : s[j];                                          \
      if (bias)                                                                                   \
        {                                                                                         \
          float sb = kilt_sum16 (zs);                                                             \
          gw[F * K + f0 + r] = beta != 0.0f ? beta * gw[F * K + f0 + r] + sb : sb;                \
        }                                                                                         \
    }
  KILT_WGRAD_ROW (0, a00, a01, a02, z0s);
  KILT_WGRAD_ROW (1, a10, a11, a12, z1s);
  KILT_WGRAD_ROW (2, a20, a21, a22, z2s);
  KILT_WGRAD_ROW (3, a30, a31, a32, z3s);
#undef KILT_WGRAD_ROW
}
