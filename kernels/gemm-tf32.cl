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
#if TF_BM != TF_BN && !defined(TF_CONV)
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

/* One 8-deep step of a warp's TF_MI x TF_NI mma tiles: acc[i][j] += a[i] b[j], from the
 * fragments the lanes hold (PTX ISA, "Matrix fragments for mma.m16n8k8" with .tf32): a0 (g, t),
 * a1 (g + 8, t), a2 (g, t + 4), a3 (g + 8, t + 4); b0 (k t, n g), b1 (k t + 4, n g); c_r
 * (g + 8 (r / 2), 2 t + r % 2). Without KILT_PTX each mma is emulated through the local arrays
 * TF_EMU_DECL declares, the fragments placed where the lanes' registers say they belong. */
#ifdef KILT_PTX
#define TF_EMU_DECL
#define TF_MMA_TILES(a, b)                                                                        \
  _Pragma ("unroll") for (uint i_ = 0; i_ < TF_MI; i_++)                                          \
    _Pragma ("unroll") for (uint j_ = 0; j_ < TF_NI; j_++)                                        \
    {                                                                                             \
      float d0, d1, d2, d3;                                                                       \
      KILT_ASM volatile ("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 "                    \
                         "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "                         \
                         "{%10, %11, %12, %13};"                                                  \
                         : "=f"(d0), "=f"(d1), "=f"(d2), "=f"(d3)                                 \
                         : "r"(a[i_][0]), "r"(a[i_][1]), "r"(a[i_][2]), "r"(a[i_][3]),            \
                           "r"(b[j_][0]), "r"(b[j_][1]), "f"(acc[i_][j_][0]),                     \
                           "f"(acc[i_][j_][1]), "f"(acc[i_][j_][2]), "f"(acc[i_][j_][3]));        \
      acc[i_][j_][0] = d0;                                                                        \
      acc[i_][j_][1] = d1;                                                                        \
      acc[i_][j_][2] = d2;                                                                        \
      acc[i_][j_][3] = d3;                                                                        \
    }
#else
#define TF_EMU_DECL                                                                               \
  __local float emu_a[TF_WARPS][TF_MI][16][8];                                                    \
  __local float emu_b[TF_WARPS][TF_NI][8][8];
#define TF_MMA_TILES(a, b)                                                                        \
  {                                                                                               \
    _Pragma ("unroll") for (uint i_ = 0; i_ < TF_MI; i_++)                                        \
    {                                                                                             \
      emu_a[warp][i_][g][t] = as_float (a[i_][0]);                                                \
      emu_a[warp][i_][g + 8][t] = as_float (a[i_][1]);                                            \
      emu_a[warp][i_][g][t + 4] = as_float (a[i_][2]);                                            \
      emu_a[warp][i_][g + 8][t + 4] = as_float (a[i_][3]);                                        \
    }                                                                                             \
    _Pragma ("unroll") for (uint j_ = 0; j_ < TF_NI; j_++)                                        \
    {                                                                                             \
      emu_b[warp][j_][t][g] = as_float (b[j_][0]);                                                \
      emu_b[warp][j_][t + 4][g] = as_float (b[j_][1]);                                            \
    }                                                                                             \
    barrier (CLK_LOCAL_MEM_FENCE);                                                                \
    _Pragma ("unroll") for (uint i_ = 0; i_ < TF_MI; i_++)                                        \
      _Pragma ("unroll") for (uint j_ = 0; j_ < TF_NI; j_++)                                      \
        _Pragma ("unroll") for (uint r_ = 0; r_ < 4; r_++)                                        \
    {                                                                                             \
      uint row_ = g + 8 * (r_ / 2), col_ = 2 * t + r_ % 2;                                        \
      float s_ = acc[i_][j_][r_];                                                                 \
      _Pragma ("unroll") for (uint kk_ = 0; kk_ < 8; kk_++) s_                                    \
          = fma (emu_a[warp][i_][row_][kk_], emu_b[warp][j_][kk_][col_], s_);                     \
      acc[i_][j_][r_] = s_;                                                                       \
    }                                                                                             \
    barrier (CLK_LOCAL_MEM_FENCE);                                                                \
  }
#endif

/* The accumulators zeroed, and C = alpha acc + beta C from them where C exists (beta 0 never
 * reads C, which may hold anything, NaN included), as both GEMM kernels end. */
#define TF_ZERO_ACC()                                                                             \
  _Pragma ("unroll") for (uint i_ = 0; i_ < TF_MI; i_++)                                          \
    _Pragma ("unroll") for (uint j_ = 0; j_ < TF_NI; j_++)                                        \
      _Pragma ("unroll") for (uint r_ = 0; r_ < 4; r_++) acc[i_][j_][r_] = 0.0f
#define TF_STORE_C()                                                                              \
  _Pragma ("unroll") for (uint i_ = 0; i_ < TF_MI; i_++)                                          \
    _Pragma ("unroll") for (uint j_ = 0; j_ < TF_NI; j_++)                                        \
      _Pragma ("unroll") for (uint r_ = 0; r_ < 4; r_++)                                          \
  {                                                                                               \
    uint row_ = bm + wm + i_ * 16 + g + 8 * (r_ / 2);                                             \
    uint col_ = bn + wn + j_ * 8 + 2 * t + r_ % 2;                                                \
    if (row_ < M && col_ < N)                                                                     \
      {                                                                                           \
        ulong at_ = (ulong)row_ * ldc + col_;                                                     \
        float v_ = alpha * acc[i_][j_][r_];                                                       \
        C[at_] = beta != 0.0f ? fma (beta, C[at_], v_) : v_;                                      \
      }                                                                                           \
  }

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

#ifndef TF_LAYOUT
__kernel __attribute__ ((reqd_work_group_size (TF_THREADS, 1, 1))) void
kilt_gemm_tf32 (uint M, uint N, uint K, float alpha, __global const float *A, ulong a_off,
                uint lda, ulong a_stride, uint trans_a, __global const float *B, ulong b_off,
                uint ldb, ulong b_stride, uint trans_b, float beta, __global float *C,
                ulong c_off, uint ldc, ulong c_stride)
{
  __local uint As_[TF_STAGES][TF_BM * TF_LD];
  __local uint Bs_[TF_STAGES][TF_BN * TF_LD];
  TF_EMU_DECL
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
  TF_ZERO_ACC ();

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
          TF_MMA_TILES (a, b);
        }
#if TF_STAGES == 2 && !defined(TF_CPASYNC)
      /* The other buffer was last read before the barrier that ended the previous slice. */
      if (k0 + TF_BK < K)
        STORE_SLICE (stage ^ 1);
      barrier (CLK_LOCAL_MEM_FENCE);
#endif
    }

  TF_STORE_C ();
#undef A_POS
#undef B_POS
#undef LOAD_SLICE
#undef STORE_SLICE
#undef ISSUE_SLICE
}
#endif /* !TF_LAYOUT */

#ifdef TF_LAYOUT
/* kilt_gemm_tf32_lay: the same product, built for one layout of the operands (TF_TA, TF_TB: 0
 * or 1, as trans_a and trans_b) and told whether each may be read four floats at a time
 * (TF_VA, TF_VB: its leading dimension, offset and batch stride are multiples of 4, so every
 * chunk of four is 16-byte aligned). Knowing the layout when it is built lets each operand sit
 * in local memory the way its fragments are read:
 * - along K (A not transposed, B transposed): rows of the tile, 16 floats each, the four k that
 *   one lane reads for a slice (t, t + 4, t + 8, t + 12) side by side, so a step reads its two
 *   as one 8-byte load; the four groups of a row are swapped by row (g ^ (row / 2) % 4) so that
 *   neither those loads nor the stores that fill them meet in a bank;
 * - along M or N (A transposed, B not): 16 rows of k, TF_BM + 8 floats each, filled by 16-byte
 *   stores, read a float at a time without bank conflicts (the + 8).
 * Global memory is read in chunks of four floats along the contiguous side, each work-item's
 * addresses computed once and moved on by a slice each time; rows, columns and k outside the
 * matrices read as zeros. TF_CONV builds kilt_conv_igemm_tf32 on the same tiles instead. */
#if TF_BK != 16
#error "kilt_gemm_tf32_lay stages slices of 16"
#endif
#define TF_ACHUNKS (TF_BM * TF_BK / 4 / TF_THREADS) /* chunks of four of A per slice */
#define TF_BCHUNKS (TF_BN * TF_BK / 4 / TF_THREADS) /* and of B */
#define TF_A_SIZE  (TF_TA ? TF_BK * (TF_BM + 8) : TF_BM * TF_BK)
#define TF_B_SIZE  (TF_TB ? TF_BN * TF_BK : TF_BK * (TF_BN + 8))
/* Where k (0-15 in the slice) of tile row r sits in a slice stored along K. */
#define TF_KPOS(r, k) ((r) * TF_BK + 4 * (((k) % 4) ^ (((r) / 2) % 4)) + (k) / 4)

/* Which of four places exist, as vector comparisons say it (-1 or 0), for all (). */
#define TF_OK4(a, b, c, d) ((int4)(-(int)(a), -(int)(b), -(int)(c), -(int)(d)))
#define TF_OK1(a)          ((int4)(-(int)(a)))

/* Four floats of @p, at @ok[q] each (else 0); all four at once where they may be. */
static inline float4
tf_load4 (__global const float *p, int all, int4 ok, int vec)
{
  if (all && vec)
    return *(__global const float4 *)p;
  return (float4)(ok.s0 ? p[0] : 0.0f, ok.s1 ? p[1] : 0.0f, ok.s2 ? p[2] : 0.0f,
                  ok.s3 ? p[3] : 0.0f);
}

static inline uint4
tf_round4 (float4 v)
{
  return (uint4)(tf32_round (v.s0), tf32_round (v.s1), tf32_round (v.s2), tf32_round (v.s3));
}

/* What both kernels declare: local memory, the work-item's place, its accumulators (zeroed),
 * and per chunk of A and of B the registers it is loaded into and where in a slice it lies
 * (tile row or column, and k). */
#define TF_LAY_DECL                                                                               \
  __local uint As_[TF_STAGES][TF_A_SIZE] __attribute__ ((aligned (16)));                          \
  __local uint Bs_[TF_STAGES][TF_B_SIZE] __attribute__ ((aligned (16)));                          \
  TF_EMU_DECL                                                                                     \
  const uint tid = get_local_id (0);                                                              \
  const uint warp = tid / 32, lane = tid % 32;                                                    \
  const uint g = lane / 4, t = lane % 4;                                                          \
  const uint wm = (warp / TF_WARPS_N) * TF_WM, wn = (warp % TF_WARPS_N) * TF_WN;                  \
  const uint bm = get_group_id (0) * TF_BM, bn = get_group_id (1) * TF_BN;                        \
  float acc[TF_MI][TF_NI][4];                                                                     \
  uint ar[TF_ACHUNKS], ak[TF_ACHUNKS], br[TF_BCHUNKS], bk[TF_BCHUNKS];                            \
  float4 ra[TF_ACHUNKS], rb[TF_BCHUNKS];                                                          \
  TF_ZERO_ACC ();                                                                                 \
  _Pragma ("unroll") for (uint e = 0; e < TF_ACHUNKS; e++)                                        \
  {                                                                                               \
    /* Along K: 4 chunks a row; along M: TF_BM / 4 chunks a row of k. */                          \
    uint lid = e * TF_THREADS + tid;                                                              \
    ar[e] = TF_TA ? 4 * (lid % (TF_BM / 4)) : lid / 4;                                            \
    ak[e] = TF_TA ? lid / (TF_BM / 4) : 4 * (lid % 4);                                            \
  }                                                                                               \
  _Pragma ("unroll") for (uint e = 0; e < TF_BCHUNKS; e++)                                        \
  {                                                                                               \
    uint lid = e * TF_THREADS + tid;                                                              \
    br[e] = TF_TB ? lid / 4 : 4 * (lid % (TF_BN / 4));                                            \
    bk[e] = TF_TB ? 4 * (lid % 4) : lid / (TF_BN / 4);                                            \
  }

/* ra and rb, rounded to TF32, into stage st of local memory. */
#define TF_LAY_STORE(st)                                                                          \
  {                                                                                               \
    _Pragma ("unroll") for (uint e = 0; e < TF_ACHUNKS; e++)                                      \
    {                                                                                             \
      uint4 u = tf_round4 (ra[e]);                                                                \
      if (TF_TA)                                                                                  \
        *(__local uint4 *)&As_[st][ak[e] * (TF_BM + 8) + ar[e]] = u;                              \
      else                                                                                        \
        {                                                                                         \
          As_[st][TF_KPOS (ar[e], ak[e])] = u.s0;                                                 \
          As_[st][TF_KPOS (ar[e], ak[e] + 1)] = u.s1;                                             \
          As_[st][TF_KPOS (ar[e], ak[e] + 2)] = u.s2;                                             \
          As_[st][TF_KPOS (ar[e], ak[e] + 3)] = u.s3;                                             \
        }                                                                                         \
    }                                                                                             \
    _Pragma ("unroll") for (uint e = 0; e < TF_BCHUNKS; e++)                                      \
    {                                                                                             \
      uint4 u = tf_round4 (rb[e]);                                                                \
      if (TF_TB)                                                                                  \
        {                                                                                         \
          Bs_[st][TF_KPOS (br[e], bk[e])] = u.s0;                                                 \
          Bs_[st][TF_KPOS (br[e], bk[e] + 1)] = u.s1;                                             \
          Bs_[st][TF_KPOS (br[e], bk[e] + 2)] = u.s2;                                             \
          Bs_[st][TF_KPOS (br[e], bk[e] + 3)] = u.s3;                                             \
        }                                                                                         \
      else                                                                                        \
        *(__local uint4 *)&Bs_[st][bk[e] * (TF_BN + 8) + br[e]] = u;                              \
    }                                                                                             \
  }

/* The two 8-deep steps of the slice in stage st. */
#define TF_LAY_MMA(st)                                                                            \
  _Pragma ("unroll") for (uint s = 0; s < 2; s++)                                                 \
  {                                                                                               \
    __local const uint *As = As_[st];                                                             \
    __local const uint *Bs = Bs_[st];                                                             \
    uint a[TF_MI][4], b[TF_NI][2];                                                                \
    _Pragma ("unroll") for (uint i = 0; i < TF_MI; i++)                                           \
    {                                                                                             \
      uint m = wm + i * 16 + g;                                                                   \
      if (TF_TA)                                                                                  \
        {                                                                                         \
          uint r0 = (8 * s + t) * (TF_BM + 8) + m;                                                \
          a[i][0] = As[r0];                                                                       \
          a[i][1] = As[r0 + 8];                                                                   \
          a[i][2] = As[r0 + 4 * (TF_BM + 8)];                                                     \
          a[i][3] = As[r0 + 4 * (TF_BM + 8) + 8];                                                 \
        }                                                                                         \
      else                                                                                        \
        {                                                                                         \
          /* k = 8 s + t and 8 s + t + 4 of rows m and m + 8 (whose groups swap alike) */         \
          uint r0 = TF_KPOS (m, 8 * s + t);                                                       \
          uint2 lo = *(__local const uint2 *)&As[r0];                                             \
          uint2 hi = *(__local const uint2 *)&As[r0 + 8 * TF_BK];                                 \
          a[i][0] = lo.s0;                                                                        \
          a[i][1] = hi.s0;                                                                        \
          a[i][2] = lo.s1;                                                                        \
          a[i][3] = hi.s1;                                                                        \
        }                                                                                         \
    }                                                                                             \
    _Pragma ("unroll") for (uint j = 0; j < TF_NI; j++)                                           \
    {                                                                                             \
      uint n = wn + j * 8 + g;                                                                    \
      if (TF_TB)                                                                                  \
        {                                                                                         \
          uint2 v = *(__local const uint2 *)&Bs[TF_KPOS (n, 8 * s + t)];                          \
          b[j][0] = v.s0;                                                                         \
          b[j][1] = v.s1;                                                                         \
        }                                                                                         \
      else                                                                                        \
        {                                                                                         \
          uint c0 = (8 * s + t) * (TF_BN + 8) + n;                                                \
          b[j][0] = Bs[c0];                                                                       \
          b[j][1] = Bs[c0 + 4 * (TF_BN + 8)];                                                     \
        }                                                                                         \
    }                                                                                             \
    TF_MMA_TILES (a, b);                                                                          \
  }

/* The slices of K, LOAD (k0) filling ra and rb with the slice from k0 (and NEXT () done before
 * each load but the first): with one stage, stored between two barriers, the next slice loaded
 * while this one is multiplied; with two, the next stored into the other buffer afterwards. */
#define TF_LAY_PIPELINE(LOAD, NEXT)                                                               \
  {                                                                                               \
    LOAD (0);                                                                                     \
    if (TF_STAGES == 2)                                                                           \
      {                                                                                           \
        TF_LAY_STORE (0);                                                                         \
        NEXT (TF_BK);                                                                             \
        barrier (CLK_LOCAL_MEM_FENCE);                                                            \
      }                                                                                           \
    for (uint k0 = 0, stage = 0; k0 < K; k0 += TF_BK, stage ^= TF_STAGES - 1)                     \
      {                                                                                           \
        if (TF_STAGES == 1)                                                                       \
          {                                                                                       \
            barrier (CLK_LOCAL_MEM_FENCE);                                                        \
            TF_LAY_STORE (0);                                                                     \
            NEXT (k0 + TF_BK);                                                                    \
            barrier (CLK_LOCAL_MEM_FENCE);                                                        \
          }                                                                                       \
        if (k0 + TF_BK < K)                                                                       \
          LOAD (k0 + TF_BK);                                                                      \
        TF_LAY_MMA (stage);                                                                       \
        if (TF_STAGES == 2)                                                                       \
          {                                                                                       \
            /* The other buffer was last read before the barrier that ended the last slice. */    \
            if (k0 + TF_BK < K)                                                                   \
              TF_LAY_STORE (stage ^ 1);                                                           \
            NEXT (k0 + 2 * TF_BK);                                                                \
            barrier (CLK_LOCAL_MEM_FENCE);                                                        \
          }                                                                                       \
      }                                                                                           \
  }

#ifndef TF_CONV
__kernel __attribute__ ((reqd_work_group_size (TF_THREADS, 1, 1))) void
kilt_gemm_tf32_lay (uint M, uint N, uint K, float alpha, __global const float *A, ulong a_off,
                    uint lda, ulong a_stride, __global const float *B, ulong b_off, uint ldb,
                    ulong b_stride, float beta, __global float *C, ulong c_off, uint ldc,
                    ulong c_stride)
{
  TF_LAY_DECL
  const ulong z = get_group_id (2);
  /* Per chunk: where it is read from (moved on a slice at a time), and which of its rows or
   * columns exist. */
  __global const float *pa[TF_ACHUNKS], *pb[TF_BCHUNKS];
  int4 aok[TF_ACHUNKS], bok[TF_BCHUNKS];
  const ulong a_step = TF_TA ? (ulong)TF_BK * lda : TF_BK;
  const ulong b_step = TF_TB ? TF_BK : (ulong)TF_BK * ldb;

  A += a_off + z * a_stride;
  B += b_off + z * b_stride;
  C += c_off + z * c_stride;
#pragma unroll
  for (uint e = 0; e < TF_ACHUNKS; e++)
    {
      uint row = bm + ar[e];
      pa[e] = A + (TF_TA ? (ulong)ak[e] * lda + row : (ulong)row * lda + ak[e]);
      aok[e] = TF_TA ? TF_OK4 (row < M, row + 1 < M, row + 2 < M, row + 3 < M) : TF_OK1 (row < M);
    }
#pragma unroll
  for (uint e = 0; e < TF_BCHUNKS; e++)
    {
      uint col = bn + br[e];
      pb[e] = B + (TF_TB ? (ulong)col * ldb + bk[e] : (ulong)bk[e] * ldb + col);
      bok[e] = TF_TB ? TF_OK1 (col < N) : TF_OK4 (col < N, col + 1 < N, col + 2 < N, col + 3 < N);
    }

  /* The slice from k0 into ra and rb, and the addresses on to the next. */
#define LOAD_SLICE(k0)                                                                            \
  {                                                                                               \
    _Pragma ("unroll") for (uint e = 0; e < TF_ACHUNKS; e++)                                      \
    {                                                                                             \
      uint k = (k0) + ak[e];                                                                      \
      int4 ok                                                                                     \
          = aok[e] & (TF_TA ? TF_OK1 (k < K) : TF_OK4 (k < K, k + 1 < K, k + 2 < K, k + 3 < K));  \
      ra[e] = tf_load4 (pa[e], all (ok), ok, TF_VA);                                              \
      pa[e] += a_step;                                                                            \
    }                                                                                             \
    _Pragma ("unroll") for (uint e = 0; e < TF_BCHUNKS; e++)                                      \
    {                                                                                             \
      uint k = (k0) + bk[e];                                                                      \
      int4 ok                                                                                     \
          = bok[e] & (TF_TB ? TF_OK4 (k < K, k + 1 < K, k + 2 < K, k + 3 < K) : TF_OK1 (k < K));  \
      rb[e] = tf_load4 (pb[e], all (ok), ok, TF_VB);                                              \
      pb[e] += b_step;                                                                            \
    }                                                                                             \
  }
#define NO_NEXT(k0)

  TF_LAY_PIPELINE (LOAD_SLICE, NO_NEXT);

  TF_STORE_C ();
#undef LOAD_SLICE
#undef NO_NEXT
}
#elif TF_TB == 0 /* TF_CONV: the forward convolution with TF_TB=0, its weight gradient with 1 */
#if TF_THREADS % (TF_BN / 4) != 0
#error "a work-item's chunks of B must share their four columns"
#endif
/* kilt_conv_igemm_tf32: kernels/igemm.cl's implicit-GEMM convolution (the same arguments,
 * meaning the same) on tensor cores: out = act (A G + bias) (+ beta out), A (M x K, along K)
 * read through the taps' offsets in its rows, G the image's column matrix (K x N, along N),
 * never written out, gathered a tap at a time for four columns per work-item. Each slice's
 * 16 taps are decoded into local memory while the one before is multiplied (two tables). */
__kernel __attribute__ ((reqd_work_group_size (TF_THREADS, 1, 1))) void
kilt_conv_igemm_tf32 (KILT_IGEMM_ARGS)
{
  TF_LAY_DECL
  __local int4 tab_[2][TF_BK];
  const uint K = IC * kh * kw, khkw = kh * kw;
  /* This work-item's four columns of G (the same in each of its chunks of B): the offset of
   * each one's window corner in the image, its top row and left column (far outside the image
   * past N). */
  long base[4];
  int y0[4], x0[4];
  ulong a_row[TF_ACHUNKS];
  int a_in[TF_ACHUNKS];

#pragma unroll
  for (uint q = 0; q < 4; q++)
    {
      uint n = bn + br[0] + q;
      base[q] = 0;
      y0[q] = -(1 << 28);
      x0[q] = 0;
      if (n < N)
        {
          uint b = n / OP, p = n - b * OP, oy = p / OW, ox = p - oy * OW;
          y0[q] = (int)(oy * sh) - pt;
          x0[q] = (int)(ox * sw) - pl;
          base[q] = (long)img_off + (long)b * img_bs + (long)y0[q] * IW + x0[q];
        }
    }
#pragma unroll
  for (uint e = 0; e < TF_ACHUNKS; e++)
    {
      a_in[e] = bm + ar[e] < M;
      a_row[e] = a_off + (ulong)(a_in[e] ? bm + ar[e] : 0) * a_ms;
    }

  /* Taps k0 .. k0 + 16 into table (k0 / 16) % 2: image offset, tap row, tap column, offset in
   * a row of A; past K a row far outside the image. */
#define TAPS(k0)                                                                                  \
  if (tid < TF_BK)                                                                                \
    {                                                                                             \
      uint k = (k0) + tid;                                                                        \
      int4 e_ = (int4)(0, -(1 << 20), 0, 0);                                                      \
      if (k < K)                                                                                  \
        {                                                                                         \
          uint c = k / khkw, tp = k - c * khkw, i = tp / kw, j = tp - i * kw;                     \
          e_ = (int4)((int)(c * img_cs + i * IW + j), (int)i, (int)j,                             \
                      (int)(c * a_cs + (a_flip ? khkw - 1 - tp : tp)));                           \
        }                                                                                         \
      tab_[((k0) / TF_BK) % 2][tid] = e_;                                                         \
    }
#define LOAD_SLICE(k0)                                                                            \
  {                                                                                               \
    __local const int4 *tab = tab_[((k0) / TF_BK) % 2];                                           \
    _Pragma ("unroll") for (uint e = 0; e < TF_ACHUNKS; e++)                                      \
    {                                                                                             \
      float v[4];                                                                                 \
      _Pragma ("unroll") for (uint q = 0; q < 4; q++) v[q]                                        \
          = a_in[e] && (k0) + ak[e] + q < K ? A[a_row[e] + tab[ak[e] + q].w] : 0.0f;              \
      ra[e] = (float4)(v[0], v[1], v[2], v[3]);                                                   \
    }                                                                                             \
    _Pragma ("unroll") for (uint e = 0; e < TF_BCHUNKS; e++)                                      \
    {                                                                                             \
      int4 tp = tab[bk[e]];                                                                       \
      float v[4];                                                                                 \
      _Pragma ("unroll") for (uint q = 0; q < 4; q++)                                             \
      {                                                                                           \
        int y = y0[q] + tp.y, x = x0[q] + tp.z;                                                   \
        v[q] = (uint)y < IH && (uint)x < IW ? img[base[q] + tp.x] : 0.0f;                         \
      }                                                                                           \
      rb[e] = (float4)(v[0], v[1], v[2], v[3]);                                                   \
    }                                                                                             \
  }

  TAPS (0);
  barrier (CLK_LOCAL_MEM_FENCE);
  TF_LAY_PIPELINE (LOAD_SLICE, TAPS);

  /* The epilogue: column n is sample n / OP's pixel n % OP; rows are channels OP apart. */
#pragma unroll
  for (uint j = 0; j < TF_NI; j++)
#pragma unroll
    for (uint c = 0; c < 2; c++)
      {
        uint n = bn + wn + j * 8 + 2 * t + c;
        if (n < N)
          {
            uint b = n / OP, p = n - b * OP;
            ulong o = out_off + (ulong)b * out_bs + p;
#pragma unroll
            for (uint i = 0; i < TF_MI; i++)
#pragma unroll
              for (uint h = 0; h < 2; h++)
                {
                  uint m = bm + wm + i * 16 + g + 8 * h;
                  if (m < M)
                    {
                      float v = kilt_act (act, acc[i][j][2 * h + c] + (has_bias ? bias[bias_off + m] : 0.0f),
                                          alpha);
                      ulong d = o + (ulong)m * OP;
                      out[d] = beta == 0.0f ? v : fma (beta, out[d], v);
                    }
                }
          }
      }
#undef TAPS
#undef LOAD_SLICE
}
#else

/* kilt_conv_igemm_wgrad_tf32: kernels/igemm.cl's weight gradient (the same arguments) on tensor
 * cores: parts[s] (F x Kc) = dz (F x the part's columns) times the column matrix G (Kc x those
 * columns) transposed, G's row K all ones when Kc > K (the bias). Both operands lie along the
 * part's columns, as A and B do in the layout TF_TA = 0, TF_TB = 1; a work-item's taps stay
 * decoded, and each slice's 16 columns are decoded into local memory while the one before is
 * multiplied. Launch over (ceil (F / TF_BM) work-groups, ceil (Kc / TF_BN), parts). */
__kernel __attribute__ ((reqd_work_group_size (TF_THREADS, 1, 1))) void
kilt_conv_igemm_wgrad_tf32 (KILT_IGEMM_WGRAD_ARGS)
{
  TF_LAY_DECL
  __local int4 cols_[2][TF_BK];
  const uint s = get_group_id (2), khkw = kh * kw, Kt = IC * khkw;
  const uint n_lo = min (np, s * len), n_hi = min (np, n_lo + len);
  /* The inner dimension: this part's columns. */
  const uint K = n_hi - n_lo;
  /* Per chunk of G: its tap's offset in the image, row, column, and 1 for the bias row (0
   * past Kc, a row far outside the image); per chunk of dz: its row's start. */
  int4 tap[TF_BCHUNKS];
  ulong dz_row[TF_ACHUNKS];
  int dz_in[TF_ACHUNKS];

#pragma unroll
  for (uint e = 0; e < TF_BCHUNKS; e++)
    {
      uint kc = bn + br[e];
      tap[e] = (int4)(0, -(1 << 20), 0, 0);
      if (kc < Kt)
        {
          uint c = kc / khkw, tp = kc - c * khkw, i = tp / kw, j = tp - i * kw;
          tap[e] = (int4)((int)(c * img_cs + i * IW + j), (int)i, (int)j, 0);
        }
      else if (kc < Kc)
        tap[e] = (int4)(0, 0, 0, 1);
    }
#pragma unroll
  for (uint e = 0; e < TF_ACHUNKS; e++)
    {
      dz_in[e] = bm + ar[e] < F;
      dz_row[e] = dz_off + (ulong)(dz_in[e] ? bm + ar[e] : 0) * np + n_lo;
    }

  /* Columns k0 .. k0 + 16 of the part into table (k0 / 16) % 2: the offset of the window's
   * corner in the image, its top row and left column, 1 when inside the part. */
#define COLS(k0)                                                                                  \
  if (tid < TF_BK)                                                                                \
    {                                                                                             \
      uint n = n_lo + (k0) + tid;                                                                 \
      int4 e_ = (int4)(0, 0, 0, 0);                                                               \
      if (n < n_hi)                                                                               \
        {                                                                                         \
          uint b = n / OP, p = n - b * OP, oy = p / OW, ox = p - oy * OW;                         \
          int y0 = (int)(oy * sh) - pt, x0 = (int)(ox * sw) - pl;                                 \
          e_ = (int4)((int)(b * img_bs) + y0 * (int)IW + x0, y0, x0, 1);                          \
        }                                                                                         \
      cols_[((k0) / TF_BK) % 2][tid] = e_;                                                        \
    }
#define LOAD_SLICE(k0)                                                                            \
  {                                                                                               \
    __local const int4 *cl = cols_[((k0) / TF_BK) % 2];                                           \
    _Pragma ("unroll") for (uint e = 0; e < TF_ACHUNKS; e++)                                      \
    {                                                                                             \
      float v[4];                                                                                 \
      _Pragma ("unroll") for (uint q = 0; q < 4; q++) v[q]                                        \
          = dz_in[e] && (k0) + ak[e] + q < K ? dz[dz_row[e] + (k0) + ak[e] + q] : 0.0f;           \
      ra[e] = (float4)(v[0], v[1], v[2], v[3]);                                                   \
    }                                                                                             \
    _Pragma ("unroll") for (uint e = 0; e < TF_BCHUNKS; e++)                                      \
    {                                                                                             \
      float v[4];                                                                                 \
      _Pragma ("unroll") for (uint q = 0; q < 4; q++)                                             \
      {                                                                                           \
        int4 c = cl[bk[e] + q];                                                                   \
        int y = c.y + tap[e].y, x = c.z + tap[e].z;                                               \
        float u = tap[e].w ? 1.0f                                                                 \
                           : ((uint)y < IH && (uint)x < IW ? img[img_off + c.x + tap[e].x] : 0.0f); \
        v[q] = c.w ? u : 0.0f;                                                                    \
      }                                                                                           \
      rb[e] = (float4)(v[0], v[1], v[2], v[3]);                                                   \
    }                                                                                             \
  }

  COLS (0);
  barrier (CLK_LOCAL_MEM_FENCE);
  TF_LAY_PIPELINE (LOAD_SLICE, COLS);

#pragma unroll
  for (uint i = 0; i < TF_MI; i++)
#pragma unroll
    for (uint j = 0; j < TF_NI; j++)
#pragma unroll
      for (uint r = 0; r < 4; r++)
        {
          uint f = bm + wm + i * 16 + g + 8 * (r / 2);
          uint kc = bn + wn + j * 8 + 2 * t + r % 2;
          if (f < F && kc < Kc)
            parts[parts_off + ((ulong)s * F + f) * Kc + kc] = acc[i][j][r];
        }
#undef COLS
#undef LOAD_SLICE
}
#endif /* TF_CONV, TF_TB */
#endif /* TF_LAYOUT */
