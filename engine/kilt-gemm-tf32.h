/* TF32 tensor-core GEMM (kernels/gemm-tf32.cl) and the precision a context computes in. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

#include "kilt-context.h"
#include "kilt-precision.h"

G_BEGIN_DECLS

/* Whether @info can compute at @p. FALSE with *why (free it) saying what the device lacks and
 * what to use instead. TF32 needs an NVIDIA GPU of compute capability 8.0 or newer, whose
 * OpenCL driver compiles the inline PTX of mma.sync; $KILT_TF32_EMULATE=1 allows it anywhere,
 * emulated and slow, for tests. @why may be NULL. */
gboolean kilt_precision_available (const KiltDeviceInfo *info, KiltPrecision p, char **why);

/* Makes @ctx's GEMMs compute at @p (TF32: builds the tensor-core program the first time);
 * FALSE with an error naming the device and the reason when it cannot. */
gboolean kilt_context_set_precision (KiltContext *ctx, KiltPrecision p, GError **error);

/* The TF32 GEMM as kilt_gemm_strided_batched (), for kilt-gemm.c. */
gboolean kilt_gemm_tf32 (KiltContext *ctx, gboolean trans_a, gboolean trans_b, gsize m, gsize n,
                         gsize k, float alpha, cl_mem a, gsize a_off, gsize lda, gsize a_stride,
                         cl_mem b, gsize b_off, gsize ldb, gsize b_stride, float beta, cl_mem c,
                         gsize c_off, gsize ldc, gsize c_stride, gsize batch, GError **error);

/* The device doctor's check of the TF32 GEMM: products of every transpose and awkward sizes
 * against the C reference of the same TF32-rounded inputs (*max_error: relative to the sum of
 * the magnitudes of each result's terms; FP32 accumulation keeps it near 1e-6), and the speed
 * of a 2048^3 product. Leaves @ctx's precision as it was. */
#define KILT_TF32_CHECK_TOLERANCE 1e-4
gboolean kilt_gemm_tf32_check (KiltContext *ctx, double *max_error, double *gflops, GError **error);

/* The implicit-GEMM convolution on tensor cores for an output of @m rows and @n columns, built
 * on first use: kilt_conv_igemm_tf32, or with @wgrad kilt_conv_igemm_wgrad_tf32 (the arguments
 * of kernels/igemm.cl's kernels), the rows and columns of its group's tile (*tm, *tn) and its
 * work-items. The tile comes from the shape, or from $KILT_TF32_CONV_TILE (32, 64 or 128).
 * NULL with @error when it cannot be built. */
cl_kernel kilt_conv_tf32_kernel (KiltContext *ctx, gboolean wgrad, gsize m, gsize n, gsize *tm,
                                 gsize *tn, gsize *threads, GError **error);

/* @x with its mantissa rounded to TF32's 10 bits, half away from zero (cvt.rna.tf32.f32). */
float kilt_tf32_round (float x);

/* Frees what kilt_context_set_precision () built; kilt_context_free () calls it. */
void kilt_context_free_tf32 (KiltContext *ctx);

G_END_DECLS
