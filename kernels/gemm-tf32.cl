/* TF32 GEMM on tensor cores: C = alpha op(A) op(B) + beta C, row-major, batched by stride.
 * SPDX-License-Identifier: GPL-3.0-or-later
 *
 * Built only for NVIDIA devices (KILT_PTX defined), where the driver compiles inline PTX and
 * each warp issues mma.sync.m16n8k8 with TF32 inputs (10-bit mantissas, rounded to nearest
 * with ties away from zero, as cvt.rna.tf32.f32 does) and FP32 accumulation. Without KILT_PTX
 * the same kernel runs everywhere with each mma emulated through local memory from the
 * fragments the lanes hold (PTX ISA, "Matrix fragments for mma.m16n8k8" with .tf32), so the
 * tiling, the operand layouts and every edge are tested on any OpenCL device; only the
 * instruction itself needs the GPU (the device doctor checks it there).
 *
 * A group is TF_WARPS warps of 32 (NVIDIA numbers the lanes of a 1-D group consecutively) and
 * computes a TF_BM x TF_BN tile of C; each warp owns a TF_WM x TF_WN part of it, TF_MI x TF_NI
 * mma tiles of 16 x 8. K is staged through local memory 16 at a time, the next slice read from
 * global memory into registers while this one is multiplied. */

/* The tile of C a group computes and the tile of each warp; the program is built once per
 * tile size (kilt-gemm-tf32.c): 64 x 64 by four warps of 32 x 32, and 128 x 128 by eight warps
 * of 64 x 32 for large products. */
#ifndef TF_BM
#define TF_BM 64
#define TF_BN 64
#define TF_WM 32
#define TF_WN 32
#endif
#if TF_BM != TF_BN
#error "the loads assume square group tiles"
#endif
#ifndef TF_BK
#define TF_BK 16
#endif
/* How many slices local memory holds: 2 loads the next slice into the other buffer while this
 * one is multiplied, so each slice costs one barrier instead of two. */
#ifndef TF_STAGES
#define TF_STAGES 1
#endif
#define TF_LD      (TF_BK + 4) /* a row of BK + 4 floats: the fragment reads hit 32 banks */
#define TF_WARPS_N (TF_BN / TF_WN)
#define TF_WARPS   ((TF_BM / TF_WM) * TF_WARPS_N)
#define TF_THREADS (32 * TF_WARPS)
#define TF_MI      (TF_WM / 16) /* mma tiles of 16 x 8 per warp, down and across */
#define TF_NI      (TF_WN / 8)
#define TF_LOADS   (TF_BM * TF_BK / TF_THREADS) /* of A and of B per work-item per slice */

#ifdef KILT_PTX
/* NVIDIA's OpenCL C spells it asm (measured on the driver); clang, which the ISA check in the
 * test suite compiles this with, wants __asm__. */
#ifndef KILT_ASM
#define KILT_ASM asm
#endif
static inline uint
tf32_round (float x)
{
  uint r;
  KILT_ASM ("cvt.rna.tf32.f32 %0, %1;" : "=r"(r) : "f"(x));
  return r;
}
#else
/* Keeps the sign, the exponent and the top 10 mantissa bits, rounding half away from zero;
 * infinities and NaNs pass unchanged. */
static inline uint
tf32_round (float x)
{
  uint u = as_uint (x);

  if ((u & 0x7f800000u) == 0x7f800000u)
    return u;
  return (u + 0x1000u) & 0xffffe000u;
}
#endif

/* TF_CPASYNC: slices go from global to local memory by cp.async (sm_80 on), which needs no
 * registers, so TF_STAGES slices can be in flight at once; the operands stay FP32 in local
 * memory and are rounded to TF32 as the fragments are read. Without KILT_PTX a plain copy
 * stands in, so the pipeline's indexing runs (and is tested) anywhere. */
#ifdef TF_CPASYNC
#if TF_STAGES < 2
#error "cp.async needs two stages or more"
#endif
#ifdef KILT_PTX
#define CP_ASYNC(dst, src, ok)                                                                    \
  KILT_ASM volatile ("cp.async.ca.shared.global [%0], [%1], 4, %2;" ::"r"((uint)(size_t)(dst)),  \
                     "l"(src), "r"((ok) ? 4u : 0u))
#define CP_COMMIT() KILT_ASM volatile ("cp.async.commit_group;")
/* Until at most TF_STAGES - 2 groups are in flight: the oldest slice has landed. */
#if TF_STAGES == 2
#define CP_WAIT() KILT_ASM volatile ("cp.async.wait_group 0;")
#elif TF_STAGES == 3
#define CP_WAIT() KILT_ASM volatile ("cp.async.wait_group 1;")
#elif TF_STAGES == 4
#define CP_WAIT() KILT_ASM volatile ("cp.async.wait_group 2;")
#else
#error "TF_STAGES of 2 to 4"
#endif
#else
#define CP_ASYNC(dst, src, ok) (*(dst) = (ok) ? as_uint (*(src)) : 0u)
#define CP_COMMIT()
#define CP_WAIT()
#endif
#define FRAG(x) tf32_round (as_float (x))
#else
#define FRAG(x) (x)
#endif

__kernel __attribute__ ((reqd_work_group_size (TF_THREADS, 1, 1))) void
kilt_gemm_tf32 (uint M, uint N, uint K, float alpha, __global const float *A, ulong a_off,
                uint lda, ulong a_stride, uint trans_a, __global const float *B, ulong b_off,
                uint ldb, ulong b_stride, uint trans_b, float beta, __global float *C,
                ulong c_off, uint ldc, ulong c_stride)
{
  __local uint As_[TF_STAGES][TF_BM * TF_LD];
  __local uint Bs_[TF_STAGES][TF_BN * TF_LD];
#ifndef KILT_PTX
  /* Per warp: the A fragments of its two row tiles and the B fragments of its four column
   * tiles, placed where the lanes' registers say they belong. */
  __local float emu_a[TF_WARPS][TF_MI][16][8];
  __local float emu_b[TF_WARPS][TF_NI][8][8];
#endif
  const uint tid = get_local_id (0);
  const uint warp = tid / 32, lane = tid % 32;
  const uint g = lane / 4, t = lane % 4;
  const uint wm = (warp / TF_WARPS_N) * TF_WM, wn = (warp % TF_WARPS_N) * TF_WN;
  const uint bm = get_group_id (0) * TF_BM, bn = get_group_id (1) * TF_BN;
  const ulong z = get_group_id (2);
  float acc[TF_MI][TF_NI][4];
#ifndef TF_CPASYNC
  float ra[TF_LOADS], rb[TF_LOADS];
#endif

  A += a_off + z * a_stride;
  B += b_off + z * b_stride;
  C += c_off + z * c_stride;
#pragma unroll
  for (uint i = 0; i < TF_MI; i++)
#pragma unroll
    for (uint j = 0; j < TF_NI; j++)
#pragma unroll
      for (uint r = 0; r < 4; r++)
        acc[i][j][r] = 0.0f;

  /* Element e of this work-item's share of a slice: (row of the tile, k within the slice),
   * walking memory contiguously whichever way the operand is stored. */
#define A_POS(e, mm, kk)                                                                          \
  {                                                                                               \
    uint lid_ = (e) * TF_THREADS + tid;                                                           \
    mm = trans_a ? lid_ % TF_BM : lid_ / TF_BK;                                                   \
    kk = trans_a ? lid_ / TF_BM : lid_ % TF_BK;                                                   \
  }
#define B_POS(e, nn, kk)                                                                          \
  {                                                                                               \
    uint lid_ = (e) * TF_THREADS + tid;                                                           \
    nn = trans_b ? lid_ / TF_BK : lid_ % TF_BN;                                                   \
    kk = trans_b ? lid_ % TF_BK : lid_ / TF_BN;                                                   \
  }
#define LOAD_SLICE(k0)                                                                            \
  _Pragma ("unroll") for (uint e = 0; e < TF_LOADS; e++)                                                             \
    {                                                                                             \
      uint mm, nn, kk;                                                                            \
      A_POS (e, mm, kk);                                                                          \
      {                                                                                           \
        uint row = bm + mm, k = (k0) + kk;                                                        \
        ra[e] = row < M && k < K ? A[trans_a ? (ulong)k * lda + row : (ulong)row * lda + k]      \
                                 : 0.0f;                                                          \
      }                                                                                           \
      B_POS (e, nn, kk);                                                                          \
      {                                                                                           \
        uint col = bn + nn, k = (k0) + kk;                                                        \
        rb[e] = col < N && k < K ? B[trans_b ? (ulong)col * ldb + k : (ulong)k * ldb + col]      \
                                 : 0.0f;                                                          \
      }                                                                                           \
    }

#define STORE_SLICE(st)                                                                           \
  _Pragma ("unroll") for (uint e = 0; e < TF_LOADS; e++)                                          \
    {                                                                                             \
      uint mm, nn, kk;                                                                            \
      A_POS (e, mm, kk);                                                                          \
      As_[st][mm * TF_LD + kk] = tf32_round (ra[e]);                                              \
      B_POS (e, nn, kk);                                                                          \
      Bs_[st][nn * TF_LD + kk] = tf32_round (rb[e]);                                              \
    }

#ifdef TF_CPASYNC
#define ISSUE_SLICE(k0, st)                                                                       \
  _Pragma ("unroll") for (uint e = 0; e < TF_LOADS; e++)                                          \
    {                                                                                             \
      uint mm, nn, kk;                                                                            \
      A_POS (e, mm, kk);                                                                          \
      {                                                                                           \
        uint row = bm + mm, k = (k0) + kk;                                                        \
        int ok = row < M && k < K;                                                                \
        CP_ASYNC (&As_[st][mm * TF_LD + kk],                                                      \
                  ok ? A + (trans_a ? (ulong)k * lda + row : (ulong)row * lda + k) : A, ok);      \
      }                                                                                           \
      B_POS (e, nn, kk);                                                                          \
      {                                                                                           \
        uint col = bn + nn, k = (k0) + kk;                                                        \
        int ok = col < N && k < K;                                                                \
        CP_ASYNC (&Bs_[st][nn * TF_LD + kk],                                                      \
                  ok ? B + (trans_b ? (ulong)col * ldb + k : (ulong)k * ldb + col) : B, ok);      \
      }                                                                                           \
    }

  /* Slices 0 .. STAGES - 2 in flight before the first multiply; one group per slice, empty
   * past K, so that the waits count alike everywhere. */
  for (uint s = 0; s + 1 < TF_STAGES; s++)
    {
      if (s * TF_BK < K)
        ISSUE_SLICE (s * TF_BK, s);
      CP_COMMIT ();
    }
  for (uint k0 = 0, stage = 0; k0 < K; k0 += TF_BK, stage = stage + 1 == TF_STAGES ? 0 : stage + 1)
    {
      __local const uint *As = As_[stage];
      __local const uint *Bs = Bs_[stage];

      CP_WAIT ();
      /* This slice has landed for every work-item, and every warp is done with the stage the
       * next issue overwrites (the one multiplied in the previous round). */
      barrier (CLK_LOCAL_MEM_FENCE);
      {
        uint kn = k0 + (TF_STAGES - 1) * TF_BK;
        uint sn = stage == 0 ? TF_STAGES - 1 : stage - 1;
        if (kn < K)
          ISSUE_SLICE (kn, sn);
        CP_COMMIT ();
      }
#else
  LOAD_SLICE (0);
#if TF_STAGES == 2
  STORE_SLICE (0);
  barrier (CLK_LOCAL_MEM_FENCE);
#endif
  for (uint k0 = 0, stage = 0; k0 < K; k0 += TF_BK, stage ^= TF_STAGES - 1)
    {
      __local const uint *As = As_[stage];
      __local const uint *Bs = Bs_[stage];
#if TF_STAGES == 1
      barrier (CLK_LOCAL_MEM_FENCE);
      STORE_SLICE (0);
      barrier (CLK_LOCAL_MEM_FENCE);
#endif
      if (k0 + TF_BK < K)
        LOAD_SLICE (k0 + TF_BK);
#endif

#pragma unroll
      for (uint k8 = 0; k8 < TF_BK; k8 += 8)
        {
          uint a[TF_MI][4], b[TF_NI][2];

#pragma unroll
          for (uint i = 0; i < TF_MI; i++)
            {
              uint r0 = (wm + i * 16 + g) * TF_LD + k8 + t;
              a[i][0] = FRAG (As[r0]);
              a[i][1] = FRAG (As[r0 + 8 * TF_LD]);
              a[i][2] = FRAG (As[r0 + 4]);
              a[i][3] = FRAG (As[r0 + 8 * TF_LD + 4]);
            }
#pragma unroll
          for (uint j = 0; j < TF_NI; j++)
            {
              uint c0 = (wn + j * 8 + g) * TF_LD + k8 + t;
              b[j][0] = FRAG (Bs[c0]);
              b[j][1] = FRAG (Bs[c0 + 4]);
            }
#ifdef KILT_PTX
#pragma unroll
          for (uint i = 0; i < TF_MI; i++)
#pragma unroll
            for (uint j = 0; j < TF_NI; j++)
              {
                float d0, d1, d2, d3;
                KILT_ASM volatile ("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 "
                              "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
                              "{%10, %11, %12, %13};"
                              : "=f"(d0), "=f"(d1), "=f"(d2), "=f"(d3)
                              : "r"(a[i][0]), "r"(a[i][1]), "r"(a[i][2]), "r"(a[i][3]),
                                "r"(b[j][0]), "r"(b[j][1]), "f"(acc[i][j][0]),
                                "f"(acc[i][j][1]), "f"(acc[i][j][2]), "f"(acc[i][j][3]));
                acc[i][j][0] = d0;
                acc[i][j][1] = d1;
                acc[i][j][2] = d2;
                acc[i][j][3] = d3;
              }
#else
          /* The fragment layout: a0 (g, t), a1 (g + 8, t), a2 (g, t + 4), a3 (g + 8, t + 4);
           * b0 (k t, n g), b1 (k t + 4, n g); c_r (g + 8 (r / 2), 2 t + r % 2). */
#pragma unroll
          for (uint i = 0; i < TF_MI; i++)
            {
              emu_a[warp][i][g][t] = as_float (a[i][0]);
              emu_a[warp][i][g + 8][t] = as_float (a[i][1]);
              emu_a[warp][i][g][t + 4] = as_float (a[i][2]);
              emu_a[warp][i][g + 8][t + 4] = as_float (a[i][3]);
            }
#pragma unroll
          for (uint j = 0; j < TF_NI; j++)
            {
              emu_b[warp][j][t][g] = as_float (b[j][0]);
              emu_b[warp][j][t + 4][g] = as_float (b[j][1]);
            }
          barrier (CLK_LOCAL_MEM_FENCE);
#pragma unroll
          for (uint i = 0; i < TF_MI; i++)
#pragma unroll
            for (uint j = 0; j < TF_NI; j++)
#pragma unroll
              for (uint r = 0; r < 4; r++)
                {
                  uint row = g + 8 * (r / 2), col = 2 * t + r % 2;
                  float s = acc[i][j][r];
#pragma unroll
                  for (uint kk = 0; kk < 8; kk++)
                    s = fma (emu_a[warp][i][row][kk], emu_b[warp][j][kk][col], s);
                  acc[i][j][r] = s;
                }
          barrier (CLK_LOCAL_MEM_FENCE);
#endif
        }
#if TF_STAGES == 2 && !defined(TF_CPASYNC)
      /* The other buffer was last read before the barrier that ended the previous slice. */
      if (k0 + TF_BK < K)
        STORE_SLICE (stage ^ 1);
      barrier (CLK_LOCAL_MEM_FENCE);
#endif
    }

#pragma unroll
  for (uint i = 0; i < TF_MI; i++)
#pragma unroll
    for (uint j = 0; j < TF_NI; j++)
#pragma unroll
      for (uint r = 0; r < 4; r++)
        {
          uint row = bm + wm + i * 16 + g + 8 * (r / 2);
          uint col = bn + wn + j * 8 + 2 * t + r % 2;
          if (row < M && col < N)
            {
              ulong at = (ulong)row * ldc + col;
              float v = alpha * acc[i][j][r];
              /* beta 0 never reads C, which may hold anything (NaN included). */
              C[at] = beta != 0.0f ? fma (beta, C[at], v) : v;
            }
        }
#undef A_POS
#undef B_POS
#undef LOAD_SLICE
#undef STORE_SLICE
#undef ISSUE_SLICE
}
