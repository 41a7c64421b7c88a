/* Row-major SGEMM for CPU OpenCL devices (PoCL): register tiles with explicit float8 vectors,
 * so that the device compiler gets AVX-sized fused multiply-adds without having to vectorise
 * across work-items. C = alpha * op(A) op(B) + beta * C, batched over dimension 2. */
/* SPDX-License-Identifier: GPL-3.0-or-later */

/* Tiles: KILT_GEMM_WIDE (set for CPU devices with 32 vector registers, AVX-512's) doubles the
 * outer-product tile to 8 x 16 and the NT tile to 4 x 6, so that 16 and 24 accumulators stay
 * in registers; with AVX2's 16 they would spill, and the tiles stay 4 x 16 and 4 x 3. The host
 * (engine/kilt-gemm.c) sizes its grids by the same choice. */
#ifdef KILT_GEMM_WIDE
#define KILT_GEMM_ROWS    8
#define KILT_GEMM_NT_COLS 6
#else
#define KILT_GEMM_ROWS    4
#define KILT_GEMM_NT_COLS 3
#endif

/* Every variant takes the same arguments; offsets and strides in floats. Each work-item owns
 * one tile of C; dimension 0 walks the tile rows, so that the work-items of one group (run
 * one after the other by PoCL on one thread) share a panel of B, which stays in L1. */
#define KILT_GEMM_ARGS                                                                             \
  const uint M, const uint N, const uint K, const float alpha, __global const float *A,            \
      const ulong a_off, const uint lda, const ulong a_stride, __global const float *B,            \
      const ulong b_off, const uint ldb, const ulong b_stride, const float beta, __global float *C, \
      const ulong c_off, const uint ldc, const ulong c_stride

/* Stores one row of a 16-wide tile: @cols of it are inside C. beta == 0 never reads C, which
 * may hold anything (NaN included) before an overwrite. */
inline void
kilt_gemm_store16 (__global float *c, uint cols, float8 v0, float8 v1, float alpha, float beta)
{
  v0 *= alpha;
  v1 *= alpha;
  if (cols >= 16)
    {
      if (beta != 0.0f)
        {
          v0 = fma ((float8) (beta), vload8 (0, c), v0);
          v1 = fma ((float8) (beta), vload8 (1, c), v1);
        }
      vstore8 (v0, 0, c);
      vstore8 (v1, 1, c);
      return;
    }
  float t[16];
  vstore8 (v0, 0, t);
  vstore8 (v1, 1, t);
  for (uint j = 0; j < cols; j++)
    c[j] = beta == 0.0f ? t[j] : fma (beta, c[j], t[j]);
}

/* The 4 x 16 outer-product step: one row of B (two float8) against four elements of op(A). */
#define KILT_GEMM_STEP4(b0, b1, x0, x1, x2, x3)                                                    \
  do                                                                                               \
    {                                                                                              \
      float8 a_;                                                                                   \
      a_ = (float8) (x0);                                                                          \
      c00 = fma (a_, b0, c00);                                                                     \
      c01 = fma (a_, b1, c01);                                                                     \
      a_ = (float8) (x1);                                                                          \
      c10 = fma (a_, b0, c10);                                                                     \
      c11 = fma (a_, b1, c11);                                                                     \
      a_ = (float8) (x2);                                                                          \
      c20 = fma (a_, b0, c20);                                                                     \
      c21 = fma (a_, b1, c21);                                                                     \
      a_ = (float8) (x3);                                                                          \
      c30 = fma (a_, b0, c30);                                                                     \
      c31 = fma (a_, b1, c31);                                                                     \
    }                                                                                              \
  while (0)

/* The wide tile's rows 4-7: their row pointers, accumulators, step and stores (nothing in
 * the narrow tile). */
#ifdef KILT_GEMM_WIDE
#define KILT_GEMM_WIDE_ROWS(ars)                                                                   \
  __global const float *a4 = A + min (i0 + 4, M - 1) * ars;                                        \
  __global const float *a5 = A + min (i0 + 5, M - 1) * ars;                                        \
  __global const float *a6 = A + min (i0 + 6, M - 1) * ars;                                        \
  __global const float *a7 = A + min (i0 + 7, M - 1) * ars;                                        \
  float8 c40 = 0.0f, c41 = 0.0f, c50 = 0.0f, c51 = 0.0f;                                           \
  float8 c60 = 0.0f, c61 = 0.0f, c70 = 0.0f, c71 = 0.0f;
#define KILT_GEMM_WIDE_STEP(b0, b1, ka)                                                            \
  do                                                                                               \
    {                                                                                              \
      float8 w_;                                                                                   \
      w_ = (float8) (a4[ka]);                                                                      \
      c40 = fma (w_, b0, c40);                                                                     \
      c41 = fma (w_, b1, c41);                                                                     \
      w_ = (float8) (a5[ka]);                                                                      \
      c50 = fma (w_, b0, c50);                                                                     \
      c51 = fma (w_, b1, c51);                                                                     \
      w_ = (float8) (a6[ka]);                                                                      \
      c60 = fma (w_, b0, c60);                                                                     \
      c61 = fma (w_, b1, c61);                                                                     \
      w_ = (float8) (a7[ka]);                                                                      \
      c70 = fma (w_, b0, c70);                                                                     \
      c71 = fma (w_, b1, c71);                                                                     \
    }                                                                                              \
  while (0)
#define KILT_GEMM_WIDE_STORE(c, cols)                                                              \
  do                                                                                               \
    {                                                                                              \
      if (i0 + 4 < M)                                                                              \
        kilt_gemm_store16 (c + 4 * (size_t) ldc, cols, c40, c41, alpha, beta);                     \
      if (i0 + 5 < M)                                                                              \
        kilt_gemm_store16 (c + 5 * (size_t) ldc, cols, c50, c51, alpha, beta);                     \
      if (i0 + 6 < M)                                                                              \
        kilt_gemm_store16 (c + 6 * (size_t) ldc, cols, c60, c61, alpha, beta);                     \
      if (i0 + 7 < M)                                                                              \
        kilt_gemm_store16 (c + 7 * (size_t) ldc, cols, c70, c71, alpha, beta);                     \
    }                                                                                              \
  while (0)
#else
#define KILT_GEMM_WIDE_ROWS(ars)
#define KILT_GEMM_WIDE_STEP(b0, b1, ka)                                                            \
  do                                                                                               \
    {                                                                                              \
    }                                                                                              \
  while (0)
#define KILT_GEMM_WIDE_STORE(c, cols)                                                              \
  do                                                                                               \
    {                                                                                              \
    }                                                                                              \
  while (0)
#endif

/* Outer-product kernels (B not transposed, or the general TT case): a work-item computes a
 * KILT_GEMM_ROWS x 16 tile of C, reading per step of k that many elements of op(A) and 16 of
 * op(B). Rows and
 * columns past the edge are clamped onto the last one, so every load stays inside the
 * matrices and the loop has no bounds checks; only the stores are masked. A_T / B_T are
 * compile-time constants, folded away. */
#define KILT_GEMM_OUTER(NAME, A_T, B_T)                                                            \
  __kernel void NAME (KILT_GEMM_ARGS)                                                              \
  {                                                                                                \
    uint i0 = get_global_id (0) * KILT_GEMM_ROWS, j0 = get_global_id (1) * 16;                     \
    size_t z = get_global_id (2);                                                                  \
    if (i0 >= M || j0 >= N)                                                                        \
      return;                                                                                      \
    A += a_off + z * a_stride;                                                                     \
    B += b_off + z * b_stride;                                                                     \
    C += c_off + z * c_stride;                                                                     \
    /* op(A)(i, k) = A[i * ars + k * aks]; likewise op(B)(k, j) = B[k * bks + j * bjs]. */         \
    size_t ars = A_T ? 1 : lda, aks = A_T ? lda : 1;                                               \
    size_t bks = B_T ? 1 : ldb, bjs = B_T ? ldb : 1;                                               \
    __global const float *a0 = A + i0 * ars;                                                       \
    __global const float *a1 = A + min (i0 + 1, M - 1) * ars;                                      \
    __global const float *a2 = A + min (i0 + 2, M - 1) * ars;                                      \
    __global const float *a3 = A + min (i0 + 3, M - 1) * ars;                                      \
    KILT_GEMM_WIDE_ROWS (ars)                                                                      \
    float8 c00 = 0.0f, c01 = 0.0f, c10 = 0.0f, c11 = 0.0f;                                         \
    float8 c20 = 0.0f, c21 = 0.0f, c30 = 0.0f, c31 = 0.0f;                                         \
    if (!B_T && j0 + 16 <= N)                                                                      \
      {                                                                                            \
        __global const float *bp = B + j0;                                                         \
        for (uint k = 0; k < K; k++, bp += bks)                                                    \
          {                                                                                        \
            size_t ka = k * aks;                                                                   \
            float8 b0 = vload8 (0, bp), b1 = vload8 (1, bp);                                       \
            KILT_GEMM_STEP4 (b0, b1, a0[ka], a1[ka], a2[ka], a3[ka]);                              \
            KILT_GEMM_WIDE_STEP (b0, b1, ka);                                                      \
          }                                                                                        \
      }                                                                                            \
    else                                                                                           \
      {                                                                                            \
        uint8 lo = min ((uint8) (j0) + (uint8) (0, 1, 2, 3, 4, 5, 6, 7), (uint8) (N - 1));         \
        uint8 hi = min ((uint8) (j0 + 8) + (uint8) (0, 1, 2, 3, 4, 5, 6, 7), (uint8) (N - 1));     \
        lo *= (uint) bjs;                                                                          \
        hi *= (uint) bjs;                                                                          \
        __global const float *bp = B;                                                              \
        for (uint k = 0; k < K; k++, bp += bks)                                                    \
          {                                                                                        \
            size_t ka = k * aks;                                                                   \
            float8 b0 = (float8) (bp[lo.s0], bp[lo.s1], bp[lo.s2], bp[lo.s3], bp[lo.s4],           \
                                  bp[lo.s5], bp[lo.s6], bp[lo.s7]);                                \
            float8 b1 = (float8) (bp[hi.s0], bp[hi.s1], bp[hi.s2], bp[hi.s3], bp[hi.s4],           \
                                  bp[hi.s5], bp[hi.s6], bp[hi.s7]);                                \
            KILT_GEMM_STEP4 (b0, b1, a0[ka], a1[ka], a2[ka], a3[ka]);                              \
            KILT_GEMM_WIDE_STEP (b0, b1, ka);                                                      \
          }                                                                                        \
      }                                                                                            \
    uint cols = min (N - j0, 16u);                                                                 \
    __global float *c = C + (size_t) i0 * ldc + j0;                                                \
    kilt_gemm_store16 (c, cols, c00, c01, alpha, beta);                                            \
    if (i0 + 1 < M)                                                                                \
      kilt_gemm_store16 (c + ldc, cols, c10, c11, alpha, beta);                                    \
    if (i0 + 2 < M)                                                                                \
      kilt_gemm_store16 (c + 2 * (size_t) ldc, cols, c20, c21, alpha, beta);                       \
    if (i0 + 3 < M)                                                                                \
      kilt_gemm_store16 (c + 3 * (size_t) ldc, cols, c30, c31, alpha, beta);                       \
    KILT_GEMM_WIDE_STORE (c, cols);                                                                \
  }

KILT_GEMM_OUTER (kilt_gemm_nn, 0, 0)
KILT_GEMM_OUTER (kilt_gemm_tn, 1, 0)
KILT_GEMM_OUTER (kilt_gemm_tt, 1, 1)

/* NT (both operands contiguous along k): a work-item computes a 4 x KILT_GEMM_NT_COLS tile of
 * C as dot products, eight lanes of k at a time, then sums the lanes. Narrow: twelve float8
 * accumulators and three B vectors fill AVX2's sixteen registers, the A loads folding into the
 * multiply-adds; wide: 24 accumulators and six B vectors, 31 of AVX-512's 32. */
#ifdef KILT_GEMM_WIDE
#define KILT_GEMM_NT_WIDE_COLS(r, y_)                                                              \
  s##r##3 = fma (y_, x3, s##r##3);                                                                 \
  s##r##4 = fma (y_, x4, s##r##4);                                                                 \
  s##r##5 = fma (y_, x5, s##r##5);
#else
#define KILT_GEMM_NT_WIDE_COLS(r, y_)
#endif
#define KILT_GEMM_NT_ROW(r, y)                                                                     \
  do                                                                                               \
    {                                                                                              \
      float8 y_ = (y);                                                                             \
      s##r##0 = fma (y_, x0, s##r##0);                                                             \
      s##r##1 = fma (y_, x1, s##r##1);                                                             \
      s##r##2 = fma (y_, x2, s##r##2);                                                             \
      KILT_GEMM_NT_WIDE_COLS (r, y_)                                                               \
    }                                                                                              \
  while (0)

__kernel void
kilt_gemm_nt (KILT_GEMM_ARGS)
{
  const uint NC = KILT_GEMM_NT_COLS;
  uint i0 = get_global_id (0) * 4, j0 = get_global_id (1) * NC;
  size_t z = get_global_id (2);
  if (i0 >= M || j0 >= N)
    return;
  A += a_off + z * a_stride;
  B += b_off + z * b_stride;
  C += c_off + z * c_stride;
  __global const float *a0 = A + (size_t) i0 * lda;
  __global const float *a1 = A + (size_t) min (i0 + 1, M - 1) * lda;
  __global const float *a2 = A + (size_t) min (i0 + 2, M - 1) * lda;
  __global const float *a3 = A + (size_t) min (i0 + 3, M - 1) * lda;
  __global const float *b0 = B + (size_t) j0 * ldb;
  __global const float *b1 = B + (size_t) min (j0 + 1, N - 1) * ldb;
  __global const float *b2 = B + (size_t) min (j0 + 2, N - 1) * ldb;
  float8 s00 = 0.0f, s01 = 0.0f, s02 = 0.0f, s10 = 0.0f, s11 = 0.0f, s12 = 0.0f;
  float8 s20 = 0.0f, s21 = 0.0f, s22 = 0.0f, s30 = 0.0f, s31 = 0.0f, s32 = 0.0f;
#ifdef KILT_GEMM_WIDE
  __global const float *b3 = B + (size_t) min (j0 + 3, N - 1) * ldb;
  __global const float *b4 = B + (size_t) min (j0 + 4, N - 1) * ldb;
  __global const float *b5 = B + (size_t) min (j0 + 5, N - 1) * ldb;
  float8 s03 = 0.0f, s04 = 0.0f, s05 = 0.0f, s13 = 0.0f, s14 = 0.0f, s15 = 0.0f;
  float8 s23 = 0.0f, s24 = 0.0f, s25 = 0.0f, s33 = 0.0f, s34 = 0.0f, s35 = 0.0f;
  __global const float *br[6] = { b0, b1, b2, b3, b4, b5 };
#else
  __global const float *br[3] = { b0, b1, b2 };
#endif
  uint k = 0;
  for (; k + 8 <= K; k += 8)
    {
      float8 x0 = vload8 (0, b0 + k), x1 = vload8 (0, b1 + k), x2 = vload8 (0, b2 + k);
#ifdef KILT_GEMM_WIDE
      float8 x3 = vload8 (0, b3 + k), x4 = vload8 (0, b4 + k), x5 = vload8 (0, b5 + k);
#endif
      KILT_GEMM_NT_ROW (0, vload8 (0, a0 + k));
      KILT_GEMM_NT_ROW (1, vload8 (0, a1 + k));
      KILT_GEMM_NT_ROW (2, vload8 (0, a2 + k));
      KILT_GEMM_NT_ROW (3, vload8 (0, a3 + k));
    }
  /* Lane sums, then the k tail that did not fill a vector. */
#ifdef KILT_GEMM_WIDE
  float8 s[24] = { s00, s01, s02, s03, s04, s05, s10, s11, s12, s13, s14, s15,
                   s20, s21, s22, s23, s24, s25, s30, s31, s32, s33, s34, s35 };
#else
  float8 s[12] = { s00, s01, s02, s10, s11, s12, s20, s21, s22, s30, s31, s32 };
#endif
  float t[4 * KILT_GEMM_NT_COLS];
  for (uint q = 0; q < 4 * NC; q++)
    {
      float4 h = s[q].lo + s[q].hi;
      float2 p = h.lo + h.hi;
      t[q] = p.x + p.y;
    }
  __global const float *ar[4] = { a0, a1, a2, a3 };
  for (; k < K; k++)
    for (uint r = 0; r < 4; r++)
      for (uint q = 0; q < NC; q++)
        t[r * NC + q] = fma (ar[r][k], br[q][k], t[r * NC + q]);
  uint rows = min (M - i0, 4u), cols = min (N - j0, NC);
  for (uint r = 0; r < rows; r++)
    {
      __global float *c = C + (size_t) (i0 + r) * ldc + j0;
      for (uint q = 0; q < cols; q++)
        {
          float v = alpha * t[r * NC + q];
          c[q] = beta == 0.0f ? v : fma (beta, c[q], v);
        }
    }
}

/* C (m x n at c_off, leading dimension ldc) = beta C + the sum of @count parts (m x n each,
 * one after the other in @parts): the split-K GEMM's last step (engine/kilt-gemm.c). C is not
 * read when beta is 0. Over (n, m). */
__kernel void
kilt_gemm_sum_parts (__global float *c, const ulong c_off, const uint ldc,
                     __global const float *parts, const uint m, const uint n, const uint count,
                     const float beta)
{
  uint j = get_global_id (0), i = get_global_id (1);
  if (j >= n || i >= m)
    return;
  size_t mn = (size_t) m * n, at = (size_t) i * n + j;
  float s = 0.0f;
  for (uint p = 0; p < count; p++)
    s += parts[p * mn + at];
  __global float *o = c + c_off + (size_t) i * ldc + j;
  *o = beta != 0.0f ? beta * *o + s : s;
}
