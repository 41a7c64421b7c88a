/* Implicit-GEMM convolution for GPUs: out = act(A * G + bias) (+ beta * out), where G is the
 * column matrix of an image that is never written out. Entry (k, n) of G is the image value
 * under tap k = (c, i, j) for output column n = (b, oy, ox), 0 in the padding. The forward pass
 * is A = the weights (F x C kh kw) over the input; the data gradient of a stride-1 convolution
 * is the same product with A = the weights flipped and transposed, over the output gradient
 * padded by kh - 1 - pt. im2col + GEMM wrote, read and (in backward) rewrote that matrix: for
 * cifar10_cnn's second convolution at batch 256 it is 265 MB each way.
 *
 * A work-group of 256 work-items computes a TM x TN tile of the output (TM = 32 or 64 rows of
 * A, TN = 8192 / TM columns), IGEMM_TK taps at a time through local memory. The work-items
 * form an 8 x 32 grid, each with an RM x RN block of accumulators (RM = TM / 8, RN = TN / 32).
 * A warp is 4 x 8 of that grid, so that its reads of a k-row of A and of B touch 4 and 8
 * distinct vectors. The next tile's global loads are issued into registers before the current
 * tile's products, which hides their latency behind the arithmetic. */
/* SPDX-License-Identifier: GPL-3.0-or-later */

/* Built only where the device has the local memory and group size (KILT_IGEMM, set by
 * kilt-context.c). The helpers are static and always inlined: a plain C99 inline function
 * with two callers was left out of line, without a definition, by clang for NVPTX (checked
 * with clang + libclc + ptxas for sm_90), and inlining makes the tile sizes constants. */
#ifdef KILT_IGEMM

#define IGEMM_TK      16
#define IGEMM_THREADS 256

/* KILT_IGEMM_ARGS (common.cl, which kernels/gemm-tf32.cl's TF32 convolution shares) says what
 * the arguments are. */
#define KILT_IGEMM_PASS                                                                            \
  out, out_off, out_bs, A, a_off, a_ms, a_cs, a_flip, img, img_off, img_bs, img_cs, bias,          \
      bias_off, has_bias, M, N, IC, IH, IW, kh, kw, sh, sw, pt, pl, OW, OP, act, alpha, beta

/* A row of the tap table: image offset, tap row i, tap column j, offset in a row of A. A tap
 * past K gets a row far outside the image, so that every bounds test fails on it. */
static inline __attribute__ ((always_inline)) void
kilt_igemm_taps (__local int4 *tab, uint k0, uint K, uint kh, uint kw, uint img_cs, uint IW,
                 uint a_cs, int a_flip)
{
  uint l = get_local_id (0);

  if (l < IGEMM_TK)
    {
      uint k = k0 + l, khkw = kh * kw;
      int4 e = (int4) (0, -(1 << 20), 0, 0);

      if (k < K)
        {
          uint c = k / khkw, t = k - c * khkw, i = t / kw, j = t - i * kw;
          e = (int4) ((int) (c * img_cs + i * IW + j), (int) i, (int) j,
                      (int) (c * a_cs + (a_flip ? khkw - 1 - t : t)));
        }
      tab[l] = e;
    }
}

/* The four lanes of @v into dst[0..3] (vstore4 into a private array kept it in memory). */
static inline __attribute__ ((always_inline)) void
kilt_igemm_unpack (float4 v, float *dst)
{
  dst[0] = v.x;
  dst[1] = v.y;
  dst[2] = v.z;
  dst[3] = v.w;
}

/* Inside KILT_IGEMM_KERNEL: the global loads of the tile of taps K0 .. K0 + IGEMM_TK, through
 * its tap table TB, into the registers av (A) and bv (B). */
#define KILT_IGEMM_LOAD(TB, K0) \
  do \
    { \
      _Pragma ("unroll") \
      for (uint r = 0; r < AR; r++) \
        { \
          uint kk = ak0 + r * AKS; \
          av[r] = a_in && (K0) + kk < K ? A[a_row + (TB)[kk].w] : 0.0f; \
        } \
      _Pragma ("unroll") \
      for (uint r = 0; r < BR; r++) \
        { \
          int4 e = (TB)[br0 + r * BRS]; \
          int y = y0 + e.y, x = x0 + e.z; \
          bv[r] = (uint) y < IH && (uint) x < IW ? img[base + e.x] : 0.0f; \
        } \
    } \
  while (0)

/* A kernel for one tile shape. A macro rather than a function of TM and TN: with the sizes
 * constant from the start, clang (for NVPTX and PoCL alike) keeps the accumulators and the
 * staged loads in registers. As a function inlined into two kernels, they stayed in a stack
 * frame of 80-368 bytes per work-item (clang + libclc + ptxas for sm_90). */
#define KILT_IGEMM_KERNEL(NAME, TM, TN) \
__kernel __attribute__ ((reqd_work_group_size (IGEMM_THREADS, 1, 1))) void \
NAME (KILT_IGEMM_ARGS) \
{ \
  __local float4 As4[IGEMM_TK * (TM) / 4], Bs4[IGEMM_TK * (TN) / 4]; \
  __local int4 tab[2 * IGEMM_TK]; \
  __local float *As = (__local float *) As4, *Bs = (__local float *) Bs4; \
  const uint RM = TM / 8, RN = TN / 32; \
  const uint AKS = IGEMM_THREADS / TM, AR = IGEMM_TK / AKS; \
  const uint BRS = IGEMM_THREADS / TN, BR = IGEMM_TK / BRS; \
  uint l = get_local_id (0), lane = l & 31, w = l >> 5; \
  uint tm = (w & 1) * 4 + (lane >> 3), tn = (w >> 1) * 8 + (lane & 7); \
  uint m0 = get_group_id (1) * TM, n0 = get_group_id (0) * TN; \
  uint K = IC * kh * kw, tiles = (K + IGEMM_TK - 1) / IGEMM_TK; \
  /* The A loader: row am, taps ak0 + r * AKS. The B loader: column bc, taps br0 + r * BRS. */ \
  uint am = l % TM, ak0 = l / TM, bc = l % TN, br0 = l / TN; \
  bool a_in = m0 + am < M; \
  ulong a_row = a_off + (ulong) (a_in ? m0 + am : 0) * a_ms; \
  uint n = n0 + bc; \
  int y0 = -(1 << 28), x0 = 0; \
  long base = 0; \
  float av[IGEMM_TK * (TM) / IGEMM_THREADS], bv[IGEMM_TK * (TN) / IGEMM_THREADS]; \
  float acc[(TM) / 8][(TN) / 32]; \
 \
  if (n < N) \
    { \
      uint b = n / OP, p = n - b * OP, oy = p / OW, ox = p - oy * OW; \
      y0 = (int) (oy * sh) - pt; \
      x0 = (int) (ox * sw) - pl; \
      base = (long) img_off + (long) b * img_bs + (long) y0 * IW + x0; \
    } \
  _Pragma ("unroll") \
  for (uint i = 0; i < RM; i++) \
    _Pragma ("unroll") \
    for (uint j = 0; j < RN; j++) \
      acc[i][j] = 0.0f; \
 \
  kilt_igemm_taps (tab, 0, K, kh, kw, img_cs, IW, a_cs, a_flip); \
  barrier (CLK_LOCAL_MEM_FENCE); \
  KILT_IGEMM_LOAD (tab, 0); \
 \
  for (uint t = 0; t < tiles; t++) \
    { \
      __local int4 *next = tab + ((t + 1) & 1) * IGEMM_TK; \
      uint k1 = (t + 1) * IGEMM_TK; \
 \
      _Pragma ("unroll") \
      for (uint r = 0; r < AR; r++) \
        As[(ak0 + r * AKS) * TM + am] = av[r]; \
      _Pragma ("unroll") \
      for (uint r = 0; r < BR; r++) \
        Bs[(br0 + r * BRS) * TN + bc] = bv[r]; \
      kilt_igemm_taps (next, k1, K, kh, kw, img_cs, IW, a_cs, a_flip); \
      barrier (CLK_LOCAL_MEM_FENCE); \
      if (t + 1 < tiles) \
        KILT_IGEMM_LOAD (next, k1); \
      _Pragma ("unroll") \
      for (uint kk = 0; kk < IGEMM_TK; kk++) \
        { \
          __local const float4 *a4 = (__local const float4 *) (As + kk * TM + tm * RM); \
          __local const float4 *b4 = (__local const float4 *) (Bs + kk * TN + tn * RN); \
          float a[(TM) / 8], b[(TN) / 32]; \
          _Pragma ("unroll") \
          for (uint q = 0; q < RM / 4; q++) \
            kilt_igemm_unpack (a4[q], a + 4 * q); \
          _Pragma ("unroll") \
          for (uint q = 0; q < RN / 4; q++) \
            kilt_igemm_unpack (b4[q], b + 4 * q); \
          _Pragma ("unroll") \
          for (uint i = 0; i < RM; i++) \
            _Pragma ("unroll") \
            for (uint j = 0; j < RN; j++) \
              acc[i][j] = fma (a[i], b[j], acc[i][j]); \
        } \
      barrier (CLK_LOCAL_MEM_FENCE); \
    } \
 \
  _Pragma ("unroll") \
  for (uint j = 0; j < RN; j++) \
    { \
      uint nj = n0 + tn * RN + j; \
      if (nj >= N) \
        break; \
      uint b = nj / OP, p = nj - b * OP; \
      ulong o = out_off + (ulong) b * out_bs + p; \
      _Pragma ("unroll") \
      for (uint i = 0; i < RM; i++) \
        { \
          uint m = m0 + tm * RM + i; \
          if (m >= M) \
            break; \
          float v = kilt_act (act, acc[i][j] + (has_bias ? bias[bias_off + m] : 0.0f), alpha); \
          ulong d = o + (ulong) m * OP; \
          out[d] = beta == 0.0f ? v : fma (beta, out[d], v); \
        } \
    } \
}

/* Two tile shapes: 32 x 256 for up to 32 rows (cifar10_cnn's 32-filter layers would leave half
 * of a 64-row tile idle), 64 x 128 above. Launch over (ceil(N / TN) * 256, ceil(M / TM)) with
 * groups of (256, 1). */
KILT_IGEMM_KERNEL (kilt_conv_igemm_32, 32, 256)
KILT_IGEMM_KERNEL (kilt_conv_igemm_64, 64, 128)

/* The weight gradient (split-K): part s of the inner dimension, columns n in [s len, (s + 1)
 * len) of the chunk, gives parts[s] (F x Kc) = dz (F x np, rows np apart) times the column
 * matrix G (Kc x np) transposed, G's row K all ones when Kc > K (the bias gradient).
 * kilt_conv_sum_parts then adds the parts into the gradients. A work-group computes a TF x 64
 * tile of one part, TF = 32 (128 work-items) or 64 (256), each work-item 4 x 4 outputs, going
 * down the part's columns IGEMM_TK at a time. The group's 64 taps are decoded once; the columns'
 * (sample, row, column) as they come, into a table that alternates like the taps above. */
/* (KILT_IGEMM_WGRAD_ARGS: in common.cl, shared with kernels/gemm-tf32.cl.) */
#define KILT_IGEMM_WGRAD_PASS                                                                      \
  parts, parts_off, dz, dz_off, np, len, img, img_off, img_bs, img_cs, F, Kc, IC, IH, IW, kh, kw,  \
      sh, sw, pt, pl, OW, OP

#define IGEMM_TKC 64

/* Columns n0 .. n0 + IGEMM_TK of the chunk: (offset of the window's corner in the image, its
 * top row, its left column, 1 when n is inside the part). */
static inline __attribute__ ((always_inline)) void
kilt_igemm_columns (__local int4 *cols, uint n0, uint n_hi, uint img_bs, uint IW, uint sh, uint sw,
                    int pt, int pl, uint OW, uint OP)
{
  uint l = get_local_id (0);

  if (l < IGEMM_TK)
    {
      uint n = n0 + l;
      int4 e = (int4) (0, 0, 0, 0);

      if (n < n_hi)
        {
          uint b = n / OP, p = n - b * OP, oy = p / OW, ox = p - oy * OW;
          int y0 = (int) (oy * sh) - pt, x0 = (int) (ox * sw) - pl;
          e = (int4) ((int) (b * img_bs) + y0 * (int) IW + x0, y0, x0, 1);
        }
      cols[l] = e;
    }
}

static inline __attribute__ ((always_inline)) void
kilt_igemm_wgrad_body (const uint TF, const uint THREADS, __local float *As, __local float *Bs,
                       __local int4 *taps, __local int4 *cols, KILT_IGEMM_WGRAD_ARGS)
{
  const uint AS = TF + 4, BS = IGEMM_TKC + 4, ROWS = THREADS / IGEMM_TK;
  uint l = get_local_id (0), tf = l / 16, tkc = l % 16;
  uint f0 = get_group_id (1) * TF, kc0 = get_group_id (0) * IGEMM_TKC, s = get_group_id (2);
  uint K = IC * kh * kw, khkw = kh * kw;
  uint n_lo = min (np, s * len), n_hi = min (np, n_lo + len);
  uint tiles = (n_hi - n_lo + IGEMM_TK - 1) / IGEMM_TK;
  /* The loaders: column kk of the tile, rows r0 + r * ROWS of dz and of G. */
  uint kk = l % IGEMM_TK, r0 = l / IGEMM_TK;
  float acc[4][4];

  for (uint q = l; q < IGEMM_TKC; q += THREADS)
    {
      uint k = kc0 + q;
      int4 e = (int4) (0, -(1 << 20), 0, 0);

      if (k < K)
        {
          uint c = k / khkw, t = k - c * khkw, i = t / kw, j = t - i * kw;
          e = (int4) ((int) (c * img_cs + i * IW + j), (int) i, (int) j, 0);
        }
      else if (k < Kc)
        e = (int4) (0, 0, 0, 1);
      taps[q] = e;
    }
  for (uint i = 0; i < 4; i++)
    for (uint j = 0; j < 4; j++)
      acc[i][j] = 0.0f;
  kilt_igemm_columns (cols, n_lo, n_hi, img_bs, IW, sh, sw, pt, pl, OW, OP);
  barrier (CLK_LOCAL_MEM_FENCE);

  for (uint t = 0; t < tiles; t++)
    {
      __local int4 *cur = cols + (t & 1) * IGEMM_TK;
      uint n = n_lo + t * IGEMM_TK + kk;
      int4 c = cur[kk];

      for (uint r = 0; r < TF / ROWS; r++)
        {
          uint f = f0 + r0 + r * ROWS;
          As[kk * AS + r0 + r * ROWS] = f < F && n < n_hi ? dz[dz_off + (ulong) f * np + n] : 0.0f;
        }
      for (uint r = 0; r < IGEMM_TKC / ROWS; r++)
        {
          int4 e = taps[r0 + r * ROWS];
          int y = c.y + e.y, x = c.z + e.z;
          float v = e.w ? 1.0f : ((uint) y < IH && (uint) x < IW ? img[img_off + c.x + e.x] : 0.0f);
          Bs[kk * BS + r0 + r * ROWS] = c.w ? v : 0.0f;
        }
      kilt_igemm_columns (cols + ((t + 1) & 1) * IGEMM_TK, n_lo + (t + 1) * IGEMM_TK, n_hi,
                          img_bs, IW, sh, sw, pt, pl, OW, OP);
      barrier (CLK_LOCAL_MEM_FENCE);
      for (uint q = 0; q < IGEMM_TK; q++)
        {
          float4 a = *(__local const float4 *) (As + q * AS + tf * 4);
          float4 b = *(__local const float4 *) (Bs + q * BS + tkc * 4);
          acc[0][0] = fma (a.x, b.x, acc[0][0]);
          acc[0][1] = fma (a.x, b.y, acc[0][1]);
          acc[0][2] = fma (a.x, b.z, acc[0][2]);
          acc[0][3] = fma (a.x, b.w, acc[0][3]);
          acc[1][0] = fma (a.y, b.x, acc[1][0]);
          acc[1][1] = fma (a.y, b.y, acc[1][1]);
          acc[1][2] = fma (a.y, b.z, acc[1][2]);
          acc[1][3] = fma (a.y, b.w, acc[1][3]);
          acc[2][0] = fma (a.z, b.x, acc[2][0]);
          acc[2][1] = fma (a.z, b.y, acc[2][1]);
          acc[2][2] = fma (a.z, b.z, acc[2][2]);
          acc[2][3] = fma (a.z, b.w, acc[2][3]);
          acc[3][0] = fma (a.w, b.x, acc[3][0]);
          acc[3][1] = fma (a.w, b.y, acc[3][1]);
          acc[3][2] = fma (a.w, b.z, acc[3][2]);
          acc[3][3] = fma (a.w, b.w, acc[3][3]);
        }
      barrier (CLK_LOCAL_MEM_FENCE);
    }

  for (uint i = 0; i < 4; i++)
    {
      uint f = f0 + tf * 4 + i;
      if (f >= F)
        break;
      for (uint j = 0; j < 4; j++)
        {
          uint kc = kc0 + tkc * 4 + j;
          if (kc < Kc)
            parts[parts_off + ((ulong) s * F + f) * Kc + kc] = acc[i][j];
        }
    }
}

/* Launch over (ceil(Kc / 64) * THREADS, ceil(F / TF), parts) with groups of (THREADS, 1, 1). */
__kernel __attribute__ ((reqd_work_group_size (128, 1, 1))) void
kilt_conv_igemm_wgrad_32 (KILT_IGEMM_WGRAD_ARGS)
{
  __local float4 As[IGEMM_TK * (32 + 4) / 4], Bs[IGEMM_TK * (IGEMM_TKC + 4) / 4];
  __local int4 taps[IGEMM_TKC], cols[2 * IGEMM_TK];

  kilt_igemm_wgrad_body (32, 128, (__local float *) As, (__local float *) Bs, taps, cols,
                         KILT_IGEMM_WGRAD_PASS);
}

__kernel __attribute__ ((reqd_work_group_size (256, 1, 1))) void
kilt_conv_igemm_wgrad_64 (KILT_IGEMM_WGRAD_ARGS)
{
  __local float4 As[IGEMM_TK * (64 + 4) / 4], Bs[IGEMM_TK * (IGEMM_TKC + 4) / 4];
  __local int4 taps[IGEMM_TKC], cols[2 * IGEMM_TK];

  kilt_igemm_wgrad_body (64, 256, (__local float *) As, (__local float *) Bs, taps, cols,
                         KILT_IGEMM_WGRAD_PASS);
}

#endif /* KILT_IGEMM */
