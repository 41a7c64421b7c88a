/* Row-major SGEMM: Kilt's own kernels on CPU devices, CLBlast elsewhere, with Kilt's errors,
 * profiling and fault injection. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#define G_LOG_DOMAIN "kilt-gemm"

#include "kilt-gemm.h"
#include "kilt-gemm-tf32.h"
#include "kilt-error.h"

#include <clblast_c.h>

/* Tile sizes of kernels/gemm.cl: the outer-product kernels 4 x 16 (wide: 8 x 16), the NT
 * kernel 4 x 3 (wide: 4 x 6). */
#define GEMM_TILE_N    16
#define GEMM_TILE_M_NT 4
/* Work-items per group: one. Measured on PoCL 3.1 (2-core EPYC), groups of 2-16 tile rows
 * (run one after the other on a thread, sharing a panel of B) were no faster for NN and TN and
 * a third slower for NT; $KILT_GEMM_LOCAL overrides, for tuning. */
#define GEMM_GROUP_ROWS 1

gboolean
kilt_gemm_wide (const KiltDeviceInfo *info)
{
  const char *forced = g_getenv ("KILT_GEMM_TILES");

  if (forced && g_ascii_strcasecmp (forced, "wide") == 0)
    return TRUE;
  if (forced && g_ascii_strcasecmp (forced, "narrow") == 0)
    return FALSE;
  /* Measured on PoCL 3.1 (2-core Zen 4, AVX-512): a cifar10_cnn step's GEMMs took 26.1-26.9
   * ms wide against 28.8-29.2 narrow, and the training step 41.4-42.9 against 44.0-46.6 ms
   * (bench/NOTES.md, section 12). */
  return info->type && g_str_equal (info->type, "CPU") && info->float_width >= 16;
}

KiltGemmPath
kilt_gemm_path (KiltContext *ctx)
{
  const char *forced = g_getenv ("KILT_GEMM");

  if (forced && g_ascii_strcasecmp (forced, "clblast") == 0)
    return KILT_GEMM_PATH_CLBLAST;
  if (forced && g_ascii_strcasecmp (forced, "kilt") == 0)
    return KILT_GEMM_PATH_KILT;
  /* Measured on PoCL 3.1 (2-core EPYC, AVX2): Kilt's kernels run cifar10_cnn's GEMMs several
   * times faster than untuned CLBlast; on GPUs CLBlast's tiled local-memory kernels win. */
  if (ctx->info->type && g_str_equal (ctx->info->type, "CPU"))
    return KILT_GEMM_PATH_KILT;
  return KILT_GEMM_PATH_CLBLAST;
}

static gboolean
gemm_fault (KiltContext *ctx, gsize batch, gsize m, gsize n, gsize k, GError **error)
{
  if (kilt_fault_hit (KILT_FAULT_OOM))
    {
      kilt_set_cl_error (error, CL_OUT_OF_RESOURCES, ctx->info->name,
                         "GEMM %zu x %zux%zux%zu (injected: KILT_FAULT oom)", batch, m, n, k);
      return TRUE;
    }
  if (!kilt_fault_hit (KILT_FAULT_ENQUEUE))
    return FALSE;
  g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_FAULT,
               "GEMM %zu x %zux%zux%zu failed on %s: injected fault (KILT_FAULT)", batch, m, n, k,
               ctx->info->name);
  return TRUE;
}

/* CLBlast refuses a matrix that runs past its buffer or a leading dimension shorter than a
 * row; Kilt's kernels would read or write out of bounds instead, so they get the same checks. */
static gboolean
gemm_check_operand (KiltContext *ctx, char which, cl_mem mem, gsize off, gsize ld, gsize stride,
                    gsize rows, gsize cols, gsize batch, GError **error)
{
  size_t bytes = 0;
  gsize need;

  if (rows == 0 || cols == 0)
    return TRUE; /* k = 0: nothing of A or B is read */
  need = off + (batch - 1) * stride + (rows - 1) * ld + cols;
  if (ld < cols)
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_INVALID,
                   "GEMM on %s: leading dimension %zu of %c is shorter than a row (%zu floats)",
                   ctx->info->name, ld, which, cols);
      return FALSE;
    }
  if (clGetMemObjectInfo (mem, CL_MEM_SIZE, sizeof bytes, &bytes, NULL) != CL_SUCCESS
      || need > bytes / sizeof (float))
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_INVALID,
                   "GEMM on %s: %c needs %zu floats, its buffer holds %zu", ctx->info->name, which,
                   need, bytes / sizeof (float));
      return FALSE;
    }
  return TRUE;
}

static gboolean
gemm_kilt (KiltContext *ctx, gboolean trans_a, gboolean trans_b, gsize m, gsize n, gsize k,
           float alpha, cl_mem a, gsize a_off, gsize lda, gsize a_stride, cl_mem b, gsize b_off,
           gsize ldb, gsize b_stride, float beta, cl_mem c, gsize c_off, gsize ldc, gsize c_stride,
           gsize batch, GError **error)
{
  static const char *const names[2][2]
      = { { "kilt_gemm_nn", "kilt_gemm_nt" }, { "kilt_gemm_tn", "kilt_gemm_tt" } };
  gboolean nt = !trans_a && trans_b;
  cl_kernel kern = kilt_context_kernel (ctx, names[trans_a != 0][trans_b != 0], error);
  cl_uint M = (cl_uint)m, N = (cl_uint)n, K = (cl_uint)k;
  cl_uint LDA = (cl_uint)lda, LDB = (cl_uint)ldb, LDC = (cl_uint)ldc;
  cl_ulong ao = a_off, bo = b_off, co = c_off, as = a_stride, bs = b_stride, cs = c_stride;
  size_t global[3], local[3], tile_m, tile_n;
  cl_int err = CL_SUCCESS;

  if (!kern
      || !gemm_check_operand (ctx, 'A', a, a_off, lda, a_stride, trans_a ? k : m, trans_a ? m : k,
                              batch, error)
      || !gemm_check_operand (ctx, 'B', b, b_off, ldb, b_stride, trans_b ? n : k, trans_b ? k : n,
                              batch, error)
      || !gemm_check_operand (ctx, 'C', c, c_off, ldc, c_stride, m, n, batch, error))
    return FALSE;
  KILT_ARG (kern, 0, M, err);
  KILT_ARG (kern, 1, N, err);
  KILT_ARG (kern, 2, K, err);
  KILT_ARG (kern, 3, alpha, err);
  KILT_ARG (kern, 4, a, err);
  KILT_ARG (kern, 5, ao, err);
  KILT_ARG (kern, 6, LDA, err);
  KILT_ARG (kern, 7, as, err);
  KILT_ARG (kern, 8, b, err);
  KILT_ARG (kern, 9, bo, err);
  KILT_ARG (kern, 10, LDB, err);
  KILT_ARG (kern, 11, bs, err);
  KILT_ARG (kern, 12, beta, err);
  KILT_ARG (kern, 13, c, err);
  KILT_ARG (kern, 14, co, err);
  KILT_ARG (kern, 15, LDC, err);
  KILT_ARG (kern, 16, cs, err);
  g_assert (err == CL_SUCCESS);
  tile_m = nt ? GEMM_TILE_M_NT : ctx->gemm_wide ? 8 : 4;
  tile_n = !nt ? GEMM_TILE_N : ctx->gemm_wide ? 6 : 3;
  global[0] = (m + tile_m - 1) / tile_m;
  global[1] = (n + tile_n - 1) / tile_n;
  global[2] = batch;
  local[0] = GEMM_GROUP_ROWS;
  local[1] = 1;
  local[2] = 1;
  if (g_getenv ("KILT_GEMM_LOCAL"))
    local[0] = (size_t)CLAMP (g_ascii_strtoll (g_getenv ("KILT_GEMM_LOCAL"), NULL, 10), 1, 64);
  return kilt_context_launch (ctx, kern, 3, global, local, error);
}

static gboolean
gemm_clblast (KiltContext *ctx, gboolean trans_a, gboolean trans_b, gsize m, gsize n, gsize k,
              float alpha, cl_mem a, gsize a_off, gsize lda, gsize a_stride, cl_mem b, gsize b_off,
              gsize ldb, gsize b_stride, float beta, cl_mem c, gsize c_off, gsize ldc,
              gsize c_stride, gsize batch, GError **error)
{
  CLBlastTranspose ta = trans_a ? CLBlastTransposeYes : CLBlastTransposeNo;
  CLBlastTranspose tb = trans_b ? CLBlastTransposeYes : CLBlastTransposeNo;
  cl_event *ev = kilt_context_prof_span (ctx);
  CLBlastStatusCode st;

  if (batch == 1)
    st = CLBlastSgemm (CLBlastLayoutRowMajor, ta, tb, m, n, k, alpha, a, a_off, lda, b, b_off, ldb,
                       beta, c, c_off, ldc, &ctx->queue, ev);
  else
    st = CLBlastSgemmStridedBatched (CLBlastLayoutRowMajor, ta, tb, m, n, k, alpha, a, a_off, lda,
                                     a_stride, b, b_off, ldb, b_stride, beta, c, c_off, ldc,
                                     c_stride, batch, &ctx->queue, ev);
  if (st != CLBlastSuccess)
    {
      if (ev)
        kilt_context_prof_drop_last (ctx);
      kilt_set_clblast_error (error, st, ctx->info->name, "GEMM %zu x %zux%zux%zu", batch, m, n, k);
      return FALSE;
    }
  return TRUE;
}

/* Split-K for a GEMM whose output is a handful of tiles on a GPU: a Dense layer at batch 32
 * (32 x 512 from 2304 inputs) is 8 tiles of 64 x 64 for 132 compute units, and took 0.11 ms
 * forward on an H100, 0.7 TFLOP/s (bench/NOTES.md, section 17). The inner dimension is cut
 * into parts of at least GEMM_SPLIT_MIN_K, one batched GEMM writes each part's product, and
 * kilt_gemm_sum_parts adds them into C. At most GEMM_SPLIT_MAX parts, within
 * GEMM_SPLIT_MAX_FLOATS of parts. $KILT_GEMM_SPLIT=N forces N parts on any device (tests). */
#define GEMM_SPLIT_MIN_K      128
#define GEMM_SPLIT_MAX        32
#define GEMM_SPLIT_MAX_FLOATS ((gsize)1 << 22)

static guint
gemm_split_parts (KiltContext *ctx, gsize m, gsize n, gsize k)
{
  const char *forced = g_getenv ("KILT_GEMM_SPLIT");
  gsize tiles = ((m + 63) / 64) * ((n + 63) / 64), cus = MAX (ctx->info->compute_units, 1);
  gsize parts;

  if (forced)
    parts = (gsize)CLAMP (g_ascii_strtoll (forced, NULL, 10), 1, GEMM_SPLIT_MAX);
  else if (ctx->info->type && g_str_equal (ctx->info->type, "CPU"))
    return 1;
  else if (tiles * 2 > cus)
    return 1;
  else
    parts = MIN (2 * cus / tiles, GEMM_SPLIT_MAX);
  parts = MIN (MIN (parts, k / GEMM_SPLIT_MIN_K), GEMM_SPLIT_MAX_FLOATS / MAX (m * n, 1));
  return (guint)MAX (parts, 1);
}

/* The parts' buffer (GEMM_SPLIT_MAX_FLOATS, made on first use); NULL, and no split, when the
 * device cannot give it. */
static cl_mem
gemm_parts_buffer (KiltContext *ctx)
{
  g_autoptr (GError) error = NULL;

  if (!ctx->gemm_parts)
    ctx->gemm_parts
        = kilt_buffer_new (ctx, KILT_MEM_WORKSPACE, GEMM_SPLIT_MAX_FLOATS * sizeof (float), &error,
                           "split-K GEMM parts");
  return ctx->gemm_parts ? ctx->gemm_parts->mem : NULL;
}

/* C = alpha A B + beta C as @parts products over slices of the inner dimension of len each
 * (the first also takes what is left over), then their sum. */
static gboolean
gemm_split (KiltContext *ctx, guint parts, cl_mem buf, gboolean trans_a, gboolean trans_b, gsize m,
            gsize n, gsize k, float alpha, cl_mem a, gsize a_off, gsize lda, cl_mem b, gsize b_off,
            gsize ldb, float beta, cl_mem c, gsize c_off, gsize ldc, GError **error)
{
  gsize len = k / parts, rest = k - len * parts, done = len * parts;
  /* A slice of A is columns (or, transposed, rows) of it; of B rows (or columns). */
  gsize a_step = trans_a ? len * lda : len, b_step = trans_b ? len : len * ldb;
  cl_kernel sum = kilt_context_kernel (ctx, "kilt_gemm_sum_parts", error);
  cl_ulong coff = c_off;
  cl_uint LDC = (cl_uint)ldc, M = (cl_uint)m, N = (cl_uint)n, count = parts;
  size_t global[2] = { n, m }, local[2] = { 64, 1 };
  cl_int err = CL_SUCCESS;

  if (!sum
      || !kilt_gemm_strided_batched (ctx, trans_a, trans_b, m, n, len, alpha, a, a_off, lda, a_step,
                                     b, b_off, ldb, b_step, 0.0f, buf, 0, n, m * n, parts, error)
      || (rest
          && !kilt_gemm_strided_batched (ctx, trans_a, trans_b, m, n, rest, alpha, a,
                                         a_off + (trans_a ? done * lda : done), lda, 0, b,
                                         b_off + (trans_b ? done : done * ldb), ldb, 0, 1.0f, buf,
                                         0, n, 0, 1, error)))
    return FALSE;
  KILT_ARG (sum, 0, c, err);
  KILT_ARG (sum, 1, coff, err);
  KILT_ARG (sum, 2, LDC, err);
  KILT_ARG (sum, 3, buf, err);
  KILT_ARG (sum, 4, M, err);
  KILT_ARG (sum, 5, N, err);
  KILT_ARG (sum, 6, count, err);
  KILT_ARG (sum, 7, beta, err);
  g_assert (err == CL_SUCCESS);
  return kilt_context_launch (ctx, sum, 2, global, local, error);
}

gboolean
kilt_gemm_strided_batched (KiltContext *ctx, gboolean trans_a, gboolean trans_b, gsize m, gsize n,
                           gsize k, float alpha, cl_mem a, gsize a_off, gsize lda, gsize a_stride,
                           cl_mem b, gsize b_off, gsize ldb, gsize b_stride, float beta, cl_mem c,
                           gsize c_off, gsize ldc, gsize c_stride, gsize batch, GError **error)
{
  guint parts;
  cl_mem buf;

  if (m == 0 || n == 0 || batch == 0)
    return TRUE;
  if (batch == 1 && k > 0 && (parts = gemm_split_parts (ctx, m, n, k)) > 1 && m <= G_MAXUINT32
      && n <= G_MAXUINT32 && ldc <= G_MAXUINT32 && (buf = gemm_parts_buffer (ctx)))
    return gemm_split (ctx, parts, buf, trans_a, trans_b, m, n, k, alpha, a, a_off, lda, b, b_off,
                       ldb, beta, c, c_off, ldc, error);
  if (gemm_fault (ctx, batch, m, n, k, error))
    return FALSE;
  /* TF32 on tensor cores where the run asked for it (the same 32-bit sizes as below). */
  if (ctx->precision == KILT_PRECISION_TF32 && ctx->tf32_kernel[0] && m <= G_MAXUINT32
      && n <= G_MAXUINT32 && k <= G_MAXUINT32 && lda <= G_MAXUINT32 && ldb <= G_MAXUINT32
      && ldc <= G_MAXUINT32)
    return gemm_check_operand (ctx, 'A', a, a_off, lda, a_stride, trans_a ? k : m, trans_a ? m : k,
                               batch, error)
           && gemm_check_operand (ctx, 'B', b, b_off, ldb, b_stride, trans_b ? n : k,
                                  trans_b ? k : n, batch, error)
           && gemm_check_operand (ctx, 'C', c, c_off, ldc, c_stride, m, n, batch, error)
           && kilt_gemm_tf32 (ctx, trans_a, trans_b, m, n, k, alpha, a, a_off, lda, a_stride, b,
                              b_off, ldb, b_stride, beta, c, c_off, ldc, c_stride, batch, error);
  /* The kernels index with 32-bit sizes: anything larger goes to CLBlast. */
  if (kilt_gemm_path (ctx) == KILT_GEMM_PATH_KILT && m <= G_MAXUINT32 && n <= G_MAXUINT32
      && k <= G_MAXUINT32 && lda <= G_MAXUINT32 && ldb <= G_MAXUINT32 && ldc <= G_MAXUINT32)
    return gemm_kilt (ctx, trans_a, trans_b, m, n, k, alpha, a, a_off, lda, a_stride, b, b_off, ldb,
                      b_stride, beta, c, c_off, ldc, c_stride, batch, error);
  return gemm_clblast (ctx, trans_a, trans_b, m, n, k, alpha, a, a_off, lda, a_stride, b, b_off,
                       ldb, b_stride, beta, c, c_off, ldc, c_stride, batch, error);
}

gboolean
kilt_gemm (KiltContext *ctx, gboolean trans_a, gboolean trans_b, gsize m, gsize n, gsize k,
           float alpha, cl_mem a, gsize a_off, gsize lda, cl_mem b, gsize b_off, gsize ldb,
           float beta, cl_mem c, gsize c_off, gsize ldc, GError **error)
{
  return kilt_gemm_strided_batched (ctx, trans_a, trans_b, m, n, k, alpha, a, a_off, lda, 0, b,
                                    b_off, ldb, 0, beta, c, c_off, ldc, 0, 1, error);
}

const char *
kilt_clblast_version (void)
{
  return KILT_CLBLAST_VERSION;
}
