/* Row-major SGEMM for CPU OpenCL devices (PoCL): register tiles with explicit float8 vectors,
 * so that the device compiler gets AVX-sized fused multiply-adds without having to vectorise
 * across work-items. C = alpha * op(A) op(B) + beta * C, batched over dimension 2. */
/* SPDX-License-Identifier: GPL-3.0-or-later */

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

/* Outer-product kernels (B not transposed, or the general TT case): a work-item computes a
 * 4 x 16 tile of C, reading per step of k four elements of op(A) and 16 of op(B). Rows and
 * columns past the edge are clamped onto the last one, so every load stays inside the
 * matrices and the loop has no bounds checks; only the stores are masked. A_T / B_T are
 * compile-time constants, folded away. */
#define KILT_GEMM_OUTER(NAME, A_T, B_T)                                                            \
  __kernel void NAME (KILT_GEMM_ARGS)                                                              \
  {                                                                                                \
    uint i0 = get_global_id (0) * 4, j0 = get_global_id (1) * 16;                                  \
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
  }

KILT_GEMM_OUTER (kilt_gemm_nn, 0, 0)
KILT_GEMM_OUTER (kilt_gemm_tn, 1, 0)
KILT_GEMM_OUTER (kilt_gemm_tt, 1, 1)

/* NT (both operands contiguous along k): a work-item computes a 4 x 3 tile of C as twelve dot
 * products, eight lanes of k at a time, then sums the lanes. Twelve float8 accumulators and
 * three B vectors fill the sixteen AVX registers; the A loads fold into the multiply-adds. */
__kernel void
kilt_gemm_nt (KILT_GEMM_ARGS)
{
  uint i0 = get_global_id (0) * 4, j0 = get_global_id (1) * 3;
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
  uint k = 0;
  for (; k + 8 <= K; k += 8)
    {
      float8 x0 = vload8 (0, b0 + k), x1 = vload8 (0, b1 + k), x2 = vload8 (0, b2 + k), y;
      y = vload8 (0, a0 + k);
      s00 = fma (y, x0, s00);
      s01 = fma (y, x1, s01);
      s02 = fma (y, x2, s02);
      y = vload8 (0, a1 + k);
      s10 = fma (y, x0, s10);
      s11 = fma (y, x1, s11);
      s12 = fma (y, x2, s12);
      y = vload8 (0, a2 + k);
      s20 = fma (y, x0, s20);
      s21 = fma (y, x1, s21);
      s22 = fma (y, x2, s22);
      y = vload8 (0, a3 + k);
      s30 = fma (y, x0, s30);
      s31 = fma (y, x1, s31);
      s32 = fma (y, x2, s32);
    }
  /* Lane sums, then the k tail that did not fill a vector. */
  float t[12];
  float8 s[12] = { s00, s01, s02, s10, s11, s12, s20, s21, s22, s30, s31, s32 };
  for (uint q = 0; q < 12; q++)
    {
      float4 h = s[q].lo + s[q].hi;
      float2 p = h.lo + h.hi;
      t[q] = p.x + p.y;
    }
  for (; k < K; k++)
    {
      float y0 = a0[k], y1 = a1[k], y2 = a2[k], y3 = a3[k];
      float x0 = b0[k], x1 = b1[k], x2 = b2[k];
      t[0] = fma (y0, x0, t[0]);
      t[1] = fma (y0, x1, t[1]);
      t[2] = fma (y0, x2, t[2]);
      t[3] = fma (y1, x0, t[3]);
      t[4] = fma (y1, x1, t[4]);
      t[5] = fma (y1, x2, t[5]);
      t[6] = fma (y2, x0, t[6]);
      t[7] = fma (y2, x1, t[7]);
      t[8] = fma (y2, x2, t[8]);
      t[9] = fma (y3, x0, t[9]);
      t[10] = fma (y3, x1, t[10]);
      t[11] = fma (y3, x2, t[11]);
    }
  uint rows = min (M - i0, 4u), cols = min (N - j0, 3u);
  for (uint r = 0; r < rows; r++)
    {
      __global float *c = C + (size_t) (i0 + r) * ldc + j0;
      for (uint q = 0; q < cols; q++)
        {
          float v = alpha * t[r * 3 + q];
          c[q] = beta == 0.0f ? v : fma (beta, c[q], v);
        }
    }
}
