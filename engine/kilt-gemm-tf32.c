/* TF32 GEMM on NVIDIA tensor cores through inline PTX, and the precision a context computes in. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "config.h"

#include "kilt-gemm-tf32.h"
#include "kilt-error.h"
#include "kilt-kernel-sources.h"

#include <float.h>
#include <math.h>
#include <string.h>

/* cl_nv_device_attribute_query */
#define KILT_CL_DEVICE_COMPUTE_CAPABILITY_MAJOR_NV 0x4000
#define KILT_CL_DEVICE_COMPUTE_CAPABILITY_MINOR_NV 0x4001

/* The two builds of kernels/gemm-tf32.cl: the tile of C a group computes, its work-items and
 * the options that make it. */
static const struct
{
  gsize tile, threads;
  const char *options;
} tf32_builds[2] = {
  { 64, 128, "" },
  { 128, 256, " -DTF_BM=128 -DTF_BN=128 -DTF_WM=64 -DTF_WN=32" },
};

static const char *const precision_names[KILT_PRECISION_N] = { "fp32", "tf32" };

const char *
kilt_precision_name (KiltPrecision p)
{
  return p < KILT_PRECISION_N ? precision_names[p] : "?";
}

gboolean
kilt_precision_from_name (const char *name, KiltPrecision *out)
{
  for (guint i = 0; name && i < KILT_PRECISION_N; i++)
    if (g_ascii_strcasecmp (name, precision_names[i]) == 0)
      {
        *out = (KiltPrecision)i;
        return TRUE;
      }
  return FALSE;
}

static gboolean
emulated (void)
{
  return g_strcmp0 (g_getenv ("KILT_TF32_EMULATE"), "1") == 0;
}

static gboolean
is_nvidia (const KiltDeviceInfo *info)
{
  return (info->vendor && strstr (info->vendor, "NVIDIA"))
         || (info->platform_name && strstr (info->platform_name, "NVIDIA"));
}

gboolean
kilt_precision_available (const KiltDeviceInfo *info, KiltPrecision p, char **why)
{
  g_autofree char *unused = NULL;
  cl_uint major = 0, minor = 0;

  if (why == NULL)
    why = &unused;
  if (p == KILT_PRECISION_FP32)
    return TRUE;
  if (emulated ())
    return TRUE;
  if (!is_nvidia (info))
    {
      *why = g_strdup_printf (
          "%s cannot train in %s: Kilt's TF32 path runs on NVIDIA tensor cores (mma.sync through "
          "the driver's inline PTX), and this device is %s's; train in fp32",
          info->name, kilt_precision_name (p), info->vendor ? info->vendor : "another vendor");
      return FALSE;
    }
  if (clGetDeviceInfo (info->device, KILT_CL_DEVICE_COMPUTE_CAPABILITY_MAJOR_NV, sizeof major,
                       &major, NULL)
          != CL_SUCCESS
      || clGetDeviceInfo (info->device, KILT_CL_DEVICE_COMPUTE_CAPABILITY_MINOR_NV, sizeof minor,
                          &minor, NULL)
             != CL_SUCCESS)
    {
      *why = g_strdup_printf ("%s cannot train in %s: its driver does not say the GPU's compute "
                              "capability (cl_nv_device_attribute_query); train in fp32",
                              info->name, kilt_precision_name (p));
      return FALSE;
    }
  if (major < 8)
    {
      *why = g_strdup_printf ("%s cannot train in %s: TF32 tensor cores came with compute "
                              "capability 8.0 (Ampere) and this GPU has %u.%u; train in fp32",
                              info->name, kilt_precision_name (p), major, minor);
      return FALSE;
    }
  return TRUE;
}

/* For tuning the big tile on a GPU: $KILT_TF32_OPTIONS is added to its build options (say
 * "-DTF_STAGES=2 -DTF_BK=32 -cl-nv-maxrregcount=128 -cl-nv-verbose"; the build log, with
 * NVIDIA's register counts, is then printed), and $KILT_TF32_THREADS gives its work-items
 * when the options change its warp tiles. */
static gsize
tf32_threads (guint which)
{
  const char *t = which == 1 ? g_getenv ("KILT_TF32_THREADS") : NULL;
  return t ? (gsize)g_ascii_strtoull (t, NULL, 10) : tf32_builds[which].threads;
}

static char *
build_log (cl_program prog, cl_device_id device)
{
  size_t n = 0;
  char *log;

  clGetProgramBuildInfo (prog, device, CL_PROGRAM_BUILD_LOG, 0, NULL, &n);
  log = g_malloc0 (n + 1);
  clGetProgramBuildInfo (prog, device, CL_PROGRAM_BUILD_LOG, n, log, NULL);
  return log;
}

/* Releases a build's kernel and program, if any, and forgets them. */
static void
release_build (cl_program *prog, cl_kernel *kern)
{
  if (*kern)
    clReleaseKernel (*kern);
  if (*prog)
    clReleaseProgram (*prog);
  *kern = NULL;
  *prog = NULL;
}

/* Builds kernels/gemm-tf32.cl with @defines (after common.cl where @conv) and creates
 * @kernel, into *prog and *kern; $KILT_TF32_OPTIONS is added where @tuned. On failure both
 * are left NULL, so a later call tries again. */
static gboolean
build_program (KiltContext *ctx, const char *defines, gboolean conv, gboolean tuned,
               const char *kernel, cl_program *prog, cl_kernel *kern, GError **error)
{
  const char *src[2] = { kilt_kernel_sources[0].source, kilt_kernel_sources_tf32[0].source };
  const char *extra = tuned ? g_getenv ("KILT_TF32_OPTIONS") : NULL;
  g_autofree char *options = g_strconcat (
      emulated () && !is_nvidia (ctx->info) ? "-cl-std=CL1.2" : "-cl-std=CL1.2 -DKILT_PTX", defines,
      extra ? " " : "", extra ? extra : "", NULL);
  cl_int err = CL_SUCCESS;

  g_assert (g_str_equal (kilt_kernel_sources[0].name, "common.cl"));
  *prog = clCreateProgramWithSource (ctx->context, conv ? 2 : 1, conv ? src : src + 1, NULL, &err);
  if (err == CL_SUCCESS)
    err = clBuildProgram (*prog, 1, &ctx->info->device, options, NULL, NULL);
  if (err != CL_SUCCESS)
    {
      g_autofree char *log = *prog ? build_log (*prog, ctx->info->device) : NULL;
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_BUILD,
                   "building the TF32 tensor-core %s (%s) failed on %s (%s); train in fp32. "
                   "Build log:\n%s",
                   conv ? "convolution" : "GEMM", options, ctx->info->name,
                   kilt_cl_error_name (err), log ? log : "");
      release_build (prog, kern);
      return FALSE;
    }
  if (extra && strstr (extra, "verbose"))
    {
      g_autofree char *log = build_log (*prog, ctx->info->device);
      g_message ("TF32 %s built with%s:\n%s", kernel, options, log);
    }
  *kern = clCreateKernel (*prog, kernel, &err);
  if (err != CL_SUCCESS)
    {
      kilt_set_cl_error (error, err, ctx->info->name, "creating the TF32 GEMM kernel");
      release_build (prog, kern);
      return FALSE;
    }
  return TRUE;
}

/* kernels/gemm-tf32.cl for tile @which with @layout's options added (NULL: the kernel for any
 * layout). */
static gboolean
build_tf32 (KiltContext *ctx, guint which, const char *layout, cl_program *prog, cl_kernel *kern,
            GError **error)
{
  g_autofree char *defines = g_strconcat (tf32_builds[which].options, layout ? layout : "", NULL);

  return build_program (ctx, defines, FALSE, which == 1,
                        layout ? "kilt_gemm_tf32_lay" : "kilt_gemm_tf32", prog, kern, error);
}

gboolean
kilt_context_set_precision (KiltContext *ctx, KiltPrecision p, GError **error)
{
  g_autofree char *why = NULL;

  if (p >= KILT_PRECISION_N)
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_INVALID, "unknown precision %d",
                   (int)p);
      return FALSE;
    }
  if (!kilt_precision_available (ctx->info, p, &why))
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_INVALID, "%s", why);
      return FALSE;
    }
  if (p == KILT_PRECISION_TF32)
    for (guint i = 0; i < G_N_ELEMENTS (tf32_builds); i++)
      if (ctx->tf32_kernel[i] == NULL
          && !build_tf32 (ctx, i, NULL, &ctx->tf32_program[i], &ctx->tf32_kernel[i], error))
        {
          kilt_context_free_tf32 (ctx);
          return FALSE;
        }
  ctx->precision = p;
  return TRUE;
}

/* Which build of kilt_gemm_tf32_lay a product takes: its transposes, and whether each operand
 * may be read in 16-byte chunks (leading dimension, offset and batch stride multiples of 4;
 * $KILT_TF32_VEC=0 reads a float at a time everywhere). */
static guint
layout_index (gboolean ta, gboolean tb, gsize lda, gsize a_off, gsize a_stride, gsize ldb,
              gsize b_off, gsize b_stride)
{
  gboolean vec = g_strcmp0 (g_getenv ("KILT_TF32_VEC"), "0") != 0;
  guint va = vec && lda % 4 == 0 && a_off % 4 == 0 && a_stride % 4 == 0;
  guint vb = vec && ldb % 4 == 0 && b_off % 4 == 0 && b_stride % 4 == 0;

  return (ta != 0) | (tb != 0) << 1 | va << 2 | vb << 3;
}

static cl_kernel
layout_kernel (KiltContext *ctx, guint which, guint index, GError **error)
{
  if (ctx->tf32_lay_kernel[which][index] == NULL)
    {
      g_autofree char *opts
          = g_strdup_printf (" -DTF_LAYOUT -DTF_TA=%u -DTF_TB=%u -DTF_VA=%u -DTF_VB=%u", index & 1,
                             (index >> 1) & 1, (index >> 2) & 1, (index >> 3) & 1);
      build_tf32 (ctx, which, opts, &ctx->tf32_lay_program[which][index],
                  &ctx->tf32_lay_kernel[which][index], error);
    }
  return ctx->tf32_lay_kernel[which][index];
}

/* Which kernel a product takes: the one for every layout (kilt_gemm_tf32), or with
 * $KILT_TF32_KERNEL=layout kilt_gemm_tf32_lay built for the product's layout (not yet the
 * default: not yet timed on a GPU against the other). */
static gboolean
use_layout_kernel (void)
{
  return g_strcmp0 (g_getenv ("KILT_TF32_KERNEL"), "layout") == 0;
}

static gboolean
gemm_launch (KiltContext *ctx, guint which, gboolean trans_a, gboolean trans_b, gsize m, gsize n,
             gsize k, float alpha, cl_mem a, gsize a_off, gsize lda, gsize a_stride, cl_mem b,
             gsize b_off, gsize ldb, gsize b_stride, float beta, cl_mem c, gsize c_off, gsize ldc,
             gsize c_stride, gsize batch, GError **error)
{
  gboolean any = !use_layout_kernel ();
  cl_kernel kern
      = any ? ctx->tf32_kernel[which]
            : layout_kernel (
                ctx, which,
                layout_index (trans_a, trans_b, lda, a_off, a_stride, ldb, b_off, b_stride), error);
  gsize tile = tf32_builds[which].tile, threads = tf32_threads (which);
  cl_uint M = (cl_uint)m, N = (cl_uint)n, K = (cl_uint)k;
  cl_uint LDA = (cl_uint)lda, LDB = (cl_uint)ldb, LDC = (cl_uint)ldc;
  cl_uint ta = trans_a != 0, tb = trans_b != 0;
  cl_ulong ao = a_off, bo = b_off, co = c_off, as = a_stride, bs = b_stride, cs = c_stride;
  size_t global[3] = { (m + tile - 1) / tile * threads, (n + tile - 1) / tile, batch };
  size_t local[3] = { threads, 1, 1 };
  cl_int err = CL_SUCCESS;
  guint i = 0;

  if (kern == NULL)
    return FALSE;
  KILT_ARG (kern, i++, M, err);
  KILT_ARG (kern, i++, N, err);
  KILT_ARG (kern, i++, K, err);
  KILT_ARG (kern, i++, alpha, err);
  KILT_ARG (kern, i++, a, err);
  KILT_ARG (kern, i++, ao, err);
  KILT_ARG (kern, i++, LDA, err);
  KILT_ARG (kern, i++, as, err);
  if (any)
    KILT_ARG (kern, i++, ta, err);
  KILT_ARG (kern, i++, b, err);
  KILT_ARG (kern, i++, bo, err);
  KILT_ARG (kern, i++, LDB, err);
  KILT_ARG (kern, i++, bs, err);
  if (any)
    KILT_ARG (kern, i++, tb, err);
  KILT_ARG (kern, i++, beta, err);
  KILT_ARG (kern, i++, c, err);
  KILT_ARG (kern, i++, co, err);
  KILT_ARG (kern, i++, LDC, err);
  KILT_ARG (kern, i++, cs, err);
  g_assert (err == CL_SUCCESS);
  return kilt_context_launch (ctx, kern, 3, global, local, error);
}

gboolean
kilt_gemm_tf32 (KiltContext *ctx, gboolean trans_a, gboolean trans_b, gsize m, gsize n, gsize k,
                float alpha, cl_mem a, gsize a_off, gsize lda, gsize a_stride, cl_mem b,
                gsize b_off, gsize ldb, gsize b_stride, float beta, cl_mem c, gsize c_off,
                gsize ldc, gsize c_stride, gsize batch, GError **error)
{
  const char *forced = g_getenv ("KILT_TF32_TILE");
  /* The big tile where it still gives every compute unit a group, unless told otherwise. */
  gsize groups = ((m + 127) / 128) * ((n + 127) / 128) * batch;
  guint which = forced ? g_strcmp0 (forced, "128") == 0
                       : m >= 128 && n >= 128 && groups >= MAX (ctx->info->compute_units, 1);

  return gemm_launch (ctx, which, trans_a, trans_b, m, n, k, alpha, a, a_off, lda, a_stride, b,
                      b_off, ldb, b_stride, beta, c, c_off, ldc, c_stride, batch, error);
}

/* The convolution's builds: rows and columns of a group's tile, work-items, options. */
static const struct
{
  gsize tm, tn, threads;
  const char *options;
} conv_builds[3] = {
  { 32, 128, 128, " -DTF_BM=32 -DTF_BN=128 -DTF_WM=32 -DTF_WN=32" },
  { 64, 64, 128, "" },
  { 128, 128, 256, " -DTF_BM=128 -DTF_BN=128 -DTF_WM=64 -DTF_WN=32" },
};

cl_kernel
kilt_conv_tf32_kernel (KiltContext *ctx, gboolean wgrad, gsize m, gsize n, gsize *tm, gsize *tn,
                       gsize *threads, GError **error)
{
  const char *forced = g_getenv ("KILT_TF32_CONV_TILE");
  gboolean big = m >= 128 && ((m + 127) / 128) * ((n + 127) / 128) >= ctx->info->compute_units;
  guint which = m <= 32 ? 0 : big ? 2 : 1, w = wgrad != 0;

  for (guint i = 0; forced && i < G_N_ELEMENTS (conv_builds); i++)
    if ((gsize)g_ascii_strtoull (forced, NULL, 10) == conv_builds[i].tm)
      which = i;
  if (ctx->tf32_conv_kernel[which][w] == NULL)
    {
      g_autofree char *defines
          = g_strconcat (" -DTF_LAYOUT -DTF_CONV -DTF_TA=0 -DTF_VA=0 -DTF_VB=0",
                         w ? " -DTF_TB=1" : " -DTF_TB=0", conv_builds[which].options, NULL);
      if (!build_program (ctx, defines, TRUE, which == 2,
                          w ? "kilt_conv_igemm_wgrad_tf32" : "kilt_conv_igemm_tf32",
                          &ctx->tf32_conv_program[which][w], &ctx->tf32_conv_kernel[which][w],
                          error))
        return NULL;
    }
  *tm = conv_builds[which].tm;
  *tn = conv_builds[which].tn;
  *threads = conv_builds[which].threads;
  return ctx->tf32_conv_kernel[which][w];
}

void
kilt_context_free_tf32 (KiltContext *ctx)
{
  for (guint i = 0; i < G_N_ELEMENTS (ctx->tf32_kernel); i++)
    {
      release_build (&ctx->tf32_program[i], &ctx->tf32_kernel[i]);
      for (guint l = 0; l < G_N_ELEMENTS (ctx->tf32_lay_kernel[i]); l++)
        release_build (&ctx->tf32_lay_program[i][l], &ctx->tf32_lay_kernel[i][l]);
    }
  for (guint i = 0; i < G_N_ELEMENTS (ctx->tf32_conv_kernel); i++)
    for (guint w = 0; w < 2; w++)
      release_build (&ctx->tf32_conv_program[i][w], &ctx->tf32_conv_kernel[i][w]);
  if (ctx->precision == KILT_PRECISION_TF32)
    ctx->precision = KILT_PRECISION_FP32;
}

float
kilt_tf32_round (float x)
{
  guint32 u;

  memcpy (&u, &x, sizeof u);
  if ((u & 0x7f800000u) != 0x7f800000u)
    u = (u + 0x1000u) & 0xffffe000u;
  memcpy (&x, &u, sizeof u);
  return x;
}

/* One product of each transpose on the device against a double-precision product of the
 * TF32-rounded inputs: the largest error relative to the sum of the magnitudes it came from. */
static gboolean
check_case (KiltContext *ctx, guint which, gboolean ta, gboolean tb, gsize m, gsize n, gsize k,
            float beta, double *worst, GError **error)
{
  gsize na = m * k, nb = k * n, nc = m * n;
  g_autofree float *a = g_new (float, na), *b = g_new (float, nb), *c0 = g_new (float, nc);
  g_autofree float *c = g_new (float, nc);
  g_autoptr (KiltBuffer) da = kilt_buffer_new (ctx, KILT_MEM_WORKSPACE, 4 * na, error, "A");
  g_autoptr (KiltBuffer) db = NULL;
  g_autoptr (KiltBuffer) dc = NULL;
  GRand *rng = g_rand_new_with_seed ((guint32)(m * 131 + n * 17 + k + ta * 2 + tb));
  gsize lda = ta ? m : k, ldb = tb ? k : n;

  for (gsize i = 0; i < na; i++)
    a[i] = (float)g_rand_double_range (rng, -1, 1);
  for (gsize i = 0; i < nb; i++)
    b[i] = (float)g_rand_double_range (rng, -1, 1);
  for (gsize i = 0; i < nc; i++)
    c0[i] = (float)g_rand_double_range (rng, -1, 1);
  g_rand_free (rng);
  if (!da || !(db = kilt_buffer_new (ctx, KILT_MEM_WORKSPACE, 4 * nb, error, "B"))
      || !(dc = kilt_buffer_new (ctx, KILT_MEM_WORKSPACE, 4 * nc, error, "C"))
      || !kilt_buffer_write (da, 0, a, 4 * na, error)
      || !kilt_buffer_write (db, 0, b, 4 * nb, error)
      || !kilt_buffer_write (dc, 0, c0, 4 * nc, error)
      || !gemm_launch (ctx, which, ta, tb, m, n, k, 1.0f, da->mem, 0, lda, 0, db->mem, 0, ldb, 0,
                       beta, dc->mem, 0, n, 0, 1, error)
      || !kilt_buffer_read (dc, 0, c, 4 * nc, error))
    return FALSE;
  for (gsize i = 0; i < m; i++)
    for (gsize j = 0; j < n; j++)
      {
        double s = beta * (double)c0[i * n + j], mag = fabs (s);
        for (gsize p = 0; p < k; p++)
          {
            double x = kilt_tf32_round (ta ? a[p * lda + i] : a[i * lda + p]);
            double y = kilt_tf32_round (tb ? b[j * ldb + p] : b[p * ldb + j]);
            s += x * y;
            mag += fabs (x * y);
          }
        *worst = MAX (*worst, isfinite (c[i * n + j]) ? fabs (c[i * n + j] - s) / MAX (mag, FLT_MIN)
                                                      : INFINITY);
      }
  return TRUE;
}

gboolean
kilt_gemm_tf32_check (KiltContext *ctx, double *max_error, double *gflops, GError **error)
{
  static const gsize shapes[][3]
      = { { 130, 63, 47 }, { 64, 64, 16 }, { 1, 200, 300 }, { 257, 9, 1000 } };
  KiltPrecision was = ctx->precision;
  /* (256 where the kernel runs emulated on a CPU, for tests) */
  gsize n = g_strcmp0 (ctx->info->type, "CPU") == 0 ? 256 : 2048;
  g_autoptr (KiltBuffer) a = NULL;
  g_autoptr (KiltBuffer) b = NULL;
  g_autoptr (KiltBuffer) c = NULL;
  gint64 t0 = 0;
  int reps = 5;

  *max_error = 0;
  *gflops = 0;
  if (!kilt_context_set_precision (ctx, KILT_PRECISION_TF32, error))
    return FALSE;
  /* Both builds of the kernel on every case. */
  for (guint w = 0; w < G_N_ELEMENTS (tf32_builds); w++)
    for (guint s = 0; s < G_N_ELEMENTS (shapes); s++)
      for (guint t = 0; t < 4; t++)
        if (!check_case (ctx, w, t & 1, t >> 1, shapes[s][0], shapes[s][1], shapes[s][2],
                         s % 2 ? 0.0f : 0.5f, max_error, error))
          goto fail;
  if (!(a = kilt_buffer_new (ctx, KILT_MEM_WORKSPACE, 4 * n * n, error, "A"))
      || !(b = kilt_buffer_new (ctx, KILT_MEM_WORKSPACE, 4 * n * n, error, "B"))
      || !(c = kilt_buffer_new (ctx, KILT_MEM_WORKSPACE, 4 * n * n, error, "C")))
    goto fail;
  /* Contents do not matter for the time; the first call warms up. */
  for (int i = 0; i <= reps; i++)
    {
      if (i == 1 && !kilt_context_finish (ctx, error))
        goto fail;
      if (i == 1)
        t0 = g_get_monotonic_time ();
      if (!kilt_gemm_tf32 (ctx, FALSE, FALSE, n, n, n, 1.0f, a->mem, 0, n, 0, b->mem, 0, n, 0, 0.0f,
                           c->mem, 0, n, 0, 1, error))
        goto fail;
    }
  if (!kilt_context_finish (ctx, error))
    goto fail;
  *gflops = 2.0 * n * n * n * reps / ((g_get_monotonic_time () - t0) / 1e6) / 1e9;
  return kilt_context_set_precision (ctx, was, error);

fail:
  kilt_context_set_precision (ctx, was, NULL);
  return FALSE;
}
