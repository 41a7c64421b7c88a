/* Row-major SGEMM: Kilt's own kernels on CPU devices, CLBlast elsewhere. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

#include "kilt-context.h"

G_BEGIN_DECLS

typedef enum
{
  KILT_GEMM_PATH_CLBLAST,
  KILT_GEMM_PATH_KILT, /* kernels/gemm.cl */
} KiltGemmPath;

/* Which implementation the next GEMM on @ctx uses: $KILT_GEMM=clblast|kilt when set (tests,
 * benchmarks), else Kilt's kernels on CPU devices and CLBlast on the others. */
KiltGemmPath kilt_gemm_path (KiltContext *ctx);

/* Whether kernels/gemm.cl is built with its wide tiles for @info (KILT_GEMM_WIDE): CPU devices
 * whose preferred float vector is 16 wide (AVX-512, 32 vector registers); $KILT_GEMM_TILES=
 * wide|narrow forces it (tests build both). A context keeps the answer it was built with. */
gboolean kilt_gemm_wide (const KiltDeviceInfo *info);

/* C[m x n] = alpha * op(A)[m x k] * op(B)[k x n] + beta * C; offsets and leading dimensions
 * in floats, row-major. */
gboolean kilt_gemm (KiltContext *ctx, gboolean trans_a, gboolean trans_b, gsize m, gsize n, gsize k,
                    float alpha, cl_mem a, gsize a_off, gsize lda, cl_mem b, gsize b_off, gsize ldb,
                    float beta, cl_mem c, gsize c_off, gsize ldc, GError **error);

/* @batch independent GEMMs as kilt_gemm, the i-th with offsets a_off + i * a_stride (and so on
 * for b and c), in one call: split-K partial products, per-sample products. */
gboolean kilt_gemm_strided_batched (KiltContext *ctx, gboolean trans_a, gboolean trans_b, gsize m,
                                    gsize n, gsize k, float alpha, cl_mem a, gsize a_off, gsize lda,
                                    gsize a_stride, cl_mem b, gsize b_off, gsize ldb,
                                    gsize b_stride, float beta, cl_mem c, gsize c_off, gsize ldc,
                                    gsize c_stride, gsize batch, GError **error);

/* The CLBlast version string, e.g. "1.5.3" (from pkg-config at build time). */
const char *kilt_clblast_version (void);

G_END_DECLS
