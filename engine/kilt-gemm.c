/* Row-major SGEMM through CLBlast, with Kilt's errors, profiling and fault injection. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#define G_LOG_DOMAIN "kilt-gemm"

#include "kilt-gemm.h"
#include "kilt-error.h"

#include <clblast_c.h>

gboolean
kilt_gemm (KiltContext *ctx, gboolean trans_a, gboolean trans_b, gsize m, gsize n, gsize k,
           float alpha, cl_mem a, gsize a_off, gsize lda, cl_mem b, gsize b_off, gsize ldb,
           float beta, cl_mem c, gsize c_off, gsize ldc, GError **error)
{
  CLBlastStatusCode st;
  cl_event *ev;

  if (m == 0 || n == 0)
    return TRUE;
  if (kilt_fault_hit (KILT_FAULT_ENQUEUE))
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_FAULT,
                   "GEMM %zux%zux%zu failed on %s: injected fault (KILT_FAULT)", m, n, k,
                   ctx->info->name);
      return FALSE;
    }
  ev = kilt_context_prof_slot (ctx);
  st = CLBlastSgemm (CLBlastLayoutRowMajor, trans_a ? CLBlastTransposeYes : CLBlastTransposeNo,
                     trans_b ? CLBlastTransposeYes : CLBlastTransposeNo, m, n, k, alpha, a, a_off,
                     lda, b, b_off, ldb, beta, c, c_off, ldc, &ctx->queue, ev);
  if (st != CLBlastSuccess)
    {
      if (ev)
        g_array_set_size (ctx->prof_events, ctx->prof_events->len - 1);
      kilt_set_clblast_error (error, st, ctx->info->name, "GEMM %zux%zux%zu", m, n, k);
      return FALSE;
    }
  return TRUE;
}

gboolean
kilt_gemm_strided_batched (KiltContext *ctx, gboolean trans_a, gboolean trans_b, gsize m, gsize n,
                           gsize k, float alpha, cl_mem a, gsize a_off, gsize lda, gsize a_stride,
                           cl_mem b, gsize b_off, gsize ldb, gsize b_stride, float beta, cl_mem c,
                           gsize c_off, gsize ldc, gsize c_stride, gsize batch, GError **error)
{
  CLBlastStatusCode st;
  cl_event *ev;

  if (m == 0 || n == 0 || batch == 0)
    return TRUE;
  if (batch == 1)
    return kilt_gemm (ctx, trans_a, trans_b, m, n, k, alpha, a, a_off, lda, b, b_off, ldb, beta, c,
                      c_off, ldc, error);
  if (kilt_fault_hit (KILT_FAULT_ENQUEUE))
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_FAULT,
                   "batched GEMM %zu x %zux%zux%zu failed on %s: injected fault (KILT_FAULT)",
                   batch, m, n, k, ctx->info->name);
      return FALSE;
    }
  ev = kilt_context_prof_slot (ctx);
  st = CLBlastSgemmStridedBatched (
      CLBlastLayoutRowMajor, trans_a ? CLBlastTransposeYes : CLBlastTransposeNo,
      trans_b ? CLBlastTransposeYes : CLBlastTransposeNo, m, n, k, alpha, a, a_off, lda, a_stride,
      b, b_off, ldb, b_stride, beta, c, c_off, ldc, c_stride, batch, &ctx->queue, ev);
  if (st != CLBlastSuccess)
    {
      if (ev)
        g_array_set_size (ctx->prof_events, ctx->prof_events->len - 1);
      kilt_set_clblast_error (error, st, ctx->info->name, "batched GEMM %zu x %zux%zux%zu", batch,
                              m, n, k);
      return FALSE;
    }
  return TRUE;
}

const char *
kilt_clblast_version (void)
{
  return KILT_CLBLAST_VERSION;
}
