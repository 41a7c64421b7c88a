/* SGEMM through both paths (Kilt's kernels/gemm.cl and CLBlast) against a plain-C double
 * GEMM: awkward shapes, every transpose, offsets, padded leading dimensions, batches, alpha and
 * beta (beta 0 over a NaN-filled C), and nothing written outside C. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "kilt-test-util.h"
#include "kilt-gemm.h"
#include "kilt-error.h"
#include "kilt-gemm-tf32.h"
#include "kilt-exec.h"
#include "kilt-profiler.h"
#include "kilt-trainer.h"
#include "kilt-rng.h"

#include <float.h>
#include <math.h>
#include <string.h>

typedef struct
{
  gsize m, n, k;
  gboolean ta, tb;
  gsize pad; /* extra floats per row of A, B and C beyond the matrix */
  gsize off; /* base offset of A (B and C get other offsets derived from it) */
  gsize batch;
  float alpha, beta;
} GemmCase;

static float
uniform (KiltRng *rng)
{
  return (float)(2.0 * kilt_rng_uniform (rng) - 1.0);
}

/* What a TF32 input keeps of a float: sign, exponent and 10 mantissa bits, rounded to nearest
 * with ties away from zero (PTX's cvt.rna.tf32.f32). */
static double
tf32 (float x)
{
  guint32 u;

  memcpy (&u, &x, sizeof u);
  if ((u & 0x7f800000u) != 0x7f800000u)
    u = (u + 0x1000u) & 0xffffe000u;
  memcpy (&x, &u, sizeof u);
  return x;
}

/* Cases where the result differed from the exact FP32 product by more than FP32 rounding: the
 * TF32 path must round its inputs, not merely pass. */
static guint tf32_visible;

/* Runs one case on the current path; returns the number of elements that failed. At TF32
 * (@ctx's precision) the reference rounds the inputs as the tensor cores take them. */
static guint
run_case (KiltContext *ctx, const GemmCase *t, KiltRng *rng)
{
  gboolean at_tf32 = ctx->precision == KILT_PRECISION_TF32;
  gboolean visible = FALSE;
  g_autoptr (GError) error = NULL;
  gsize a_rows = t->ta ? t->k : t->m, a_cols = t->ta ? t->m : t->k;
  gsize b_rows = t->tb ? t->n : t->k, b_cols = t->tb ? t->k : t->n;
  gsize lda = a_cols + t->pad, ldb = b_cols + 2 * t->pad, ldc = t->n + t->pad;
  gsize a_off = t->off, b_off = 2 * t->off + 1, c_off = 3 * t->off;
  /* Strides leave a few floats between the matrices of a batch. */
  gsize a_stride = a_rows * lda + 3, b_stride = b_rows * ldb + 5, c_stride = t->m * ldc + 2;
  gsize na = a_off + t->batch * a_stride, nb = b_off + t->batch * b_stride;
  gsize nc = c_off + t->batch * c_stride;
  g_autofree float *a = g_new (float, na), *b = g_new (float, nb);
  g_autofree float *c0 = g_new (float, nc), *c = g_new (float, nc);
  KiltBuffer *da, *db, *dc;
  guint bad = 0;

  for (gsize i = 0; i < na; i++)
    a[i] = uniform (rng);
  for (gsize i = 0; i < nb; i++)
    b[i] = uniform (rng);
  for (gsize i = 0; i < nc; i++)
    c0[i] = t->beta == 0.0f ? NAN : uniform (rng);
  da = kilt_buffer_new (ctx, KILT_MEM_ACTIVATIONS, 4 * na, &error, "A");
  db = kilt_buffer_new (ctx, KILT_MEM_ACTIVATIONS, 4 * nb, &error, "B");
  dc = kilt_buffer_new (ctx, KILT_MEM_ACTIVATIONS, 4 * nc, &error, "C");
  g_assert_no_error (error);
  g_assert_true (kilt_buffer_write (da, 0, a, 4 * na, &error));
  g_assert_true (kilt_buffer_write (db, 0, b, 4 * nb, &error));
  g_assert_true (kilt_buffer_write (dc, 0, c0, 4 * nc, &error));
  if (t->batch == 1)
    g_assert_true (kilt_gemm (ctx, t->ta, t->tb, t->m, t->n, t->k, t->alpha, da->mem, a_off, lda,
                              db->mem, b_off, ldb, t->beta, dc->mem, c_off, ldc, &error));
  else
    g_assert_true (kilt_gemm_strided_batched (
        ctx, t->ta, t->tb, t->m, t->n, t->k, t->alpha, da->mem, a_off, lda, a_stride, db->mem,
        b_off, ldb, b_stride, t->beta, dc->mem, c_off, ldc, c_stride, t->batch, &error));
  g_assert_true (kilt_buffer_read (dc, 0, c, 4 * nc, &error));
  g_assert_no_error (error);

  /* Everything outside the batch of C matrices is as it was (bitwise: NaN stays NaN). */
  for (gsize z = 0; z < t->batch; z++)
    for (gsize i = 0; i < t->m; i++)
      for (gsize j = 0; j < t->n; j++)
        {
          const float *az = a + a_off + z * a_stride, *bz = b + b_off + z * b_stride;
          gsize o = c_off + z * c_stride + i * ldc + j;
          double s = 0, mag = 0, exact = 0, want, tol;

          for (gsize p = 0; p < t->k; p++)
            {
              float xf = t->ta ? az[p * lda + i] : az[i * lda + p];
              float yf = t->tb ? bz[j * ldb + p] : bz[p * ldb + j];
              double x = at_tf32 ? tf32 (xf) : xf, y = at_tf32 ? tf32 (yf) : yf;
              s += x * y;
              exact += (double)xf * yf;
              mag += fabs (x * y);
            }
          want = t->alpha * s + (t->beta == 0.0f ? 0.0 : (double)t->beta * c0[o]);
          /* Float rounding of a k-term sum, the scaling and the beta term: at most about
           * (k + 2) units of float epsilon of the magnitudes involved. */
          tol = (t->k + 2) * FLT_EPSILON
                * (fabs (t->alpha) * mag + (t->beta == 0.0f ? 0.0 : fabs (t->beta * c0[o])));
          if (!(fabs (c[o] - want) <= tol) && bad++ < 3)
            g_printerr ("  C[%zu](%zu,%zu) = %.9g, want %.9g (tol %.3g)\n", z, i, j, c[o], want,
                        tol);
          if (at_tf32
              && fabs (c[o]
                       - (t->alpha * exact + (t->beta == 0.0f ? 0.0 : (double)t->beta * c0[o])))
                     > tol)
            visible = TRUE;
          c[o] = c0[o]; /* checked: now compare the rest bitwise */
        }
  for (gsize o = 0; o < nc; o++)
    if (memcmp (&c[o], &c0[o], sizeof (float)) != 0 && bad++ < 3)
      g_printerr ("  C buffer[%zu] outside the result changed: %g -> %g\n", o, c0[o], c[o]);
  kilt_buffer_free (da);
  kilt_buffer_free (db);
  kilt_buffer_free (dc);
  tf32_visible += visible;
  return bad;
}

static void
run_cases (const char *path)
{
  KiltContext *ctx = kilt_test_context ();
  /* Sizes around the tiles (4 x 16 and 4 x 3; wide, 8 x 16 and 4 x 6) and the vector width
   * along k (8). */
  static const gsize shapes[][3] = {
    { 1, 1, 1 },
    { 7, 13, 5 },
    { 33, 65, 17 },
    { 4, 16, 8 },
    { 5, 17, 9 },
    { 3, 15, 7 },
    { 8, 3, 16 },
    { 2, 40, 1 },
    { 64, 48, 300 },
    { 17, 2, 31 },
    { 1, 33, 24 },
    { 40, 1, 13 },
    { 8, 6, 8 },
    { 9, 7, 17 },
    { 15, 12, 40 },
    { 16, 13, 23 },
    /* and around the TF32 kernel's 64 x 64 tile and 16-deep slices */
    { 64, 64, 16 },
    { 65, 129, 33 },
    { 130, 63, 47 },
  };
  static const float ab[][2] = { { 1.0f, 0.0f }, { 0.5f, 1.0f }, { -1.25f, -0.75f } };
  KiltRng rng;
  guint cases = 0, failed = 0;

  if (!ctx)
    return;
  if (g_str_equal (path, "tf32"))
    {
      /* The tensor-core kernel with each mma emulated from the lanes' fragments: every tile
       * edge, operand layout and batch offset of the real one, on this device. */
      g_autoptr (GError) error = NULL;
      g_setenv ("KILT_TF32_EMULATE", "1", TRUE);
      g_assert_true (kilt_context_set_precision (ctx, KILT_PRECISION_TF32, &error));
      g_assert_no_error (error);
      tf32_visible = 0;
    }
  else
    {
      g_setenv ("KILT_GEMM", path, TRUE);
      g_assert_cmpint (kilt_gemm_path (ctx), ==,
                       g_str_equal (path, "kilt") ? KILT_GEMM_PATH_KILT : KILT_GEMM_PATH_CLBLAST);
    }
  kilt_rng_init (&rng, 2024);
  for (guint s = 0; s < G_N_ELEMENTS (shapes); s++)
    for (guint tr = 0; tr < 4; tr++)
      for (guint v = 0; v < G_N_ELEMENTS (ab); v++)
        {
          /* Offsets, padding and batches vary with the case, so that each transpose meets
           * each of them on some shape. */
          GemmCase t = { shapes[s][0],
                         shapes[s][1],
                         shapes[s][2],
                         tr & 1,
                         (tr >> 1) & 1,
                         (s + v) % 3 == 0 ? 0 : 3 + v,
                         (s + tr) % 2 == 0 ? 0 : 5 + s,
                         v == 1 && s % 2 == 0 ? 3 : 1,
                         ab[v][0],
                         ab[v][1] };
          guint bad = run_case (ctx, &t, &rng);

          cases++;
          if (bad)
            {
              g_printerr ("%s: %zu x %zux%zux%zu %s%s pad %zu off %zu alpha %g beta %g: %u bad\n",
                          path, t.batch, t.m, t.n, t.k, t.ta ? "T" : "N", t.tb ? "T" : "N", t.pad,
                          t.off, t.alpha, t.beta, bad);
              failed++;
            }
        }
  /* Random shapes, the layers' transposes and a few batches. */
  for (guint r = 0; r < 24; r++)
    {
      GemmCase t = { 1 + kilt_rng_next (&rng) % 70,
                     1 + kilt_rng_next (&rng) % 90,
                     1 + kilt_rng_next (&rng) % 120,
                     r % 3 == 1,
                     r % 3 == 2,
                     kilt_rng_next (&rng) % 4,
                     kilt_rng_next (&rng) % 9,
                     1 + (r % 4 == 0 ? kilt_rng_next (&rng) % 4 : 0),
                     0.5f + uniform (&rng),
                     r % 2 ? 0.0f : uniform (&rng) };
      guint bad = run_case (ctx, &t, &rng);

      cases++;
      if (bad)
        {
          g_printerr ("%s: random %zu x %zux%zux%zu %s%s: %u bad\n", path, t.batch, t.m, t.n, t.k,
                      t.ta ? "T" : "N", t.tb ? "T" : "N", bad);
          failed++;
        }
    }
  g_unsetenv ("KILT_GEMM");
  g_test_message ("%s: %u of %u cases failed", path, failed, cases);
  g_assert_cmpuint (failed, ==, 0);
  if (ctx->precision == KILT_PRECISION_TF32)
    {
      g_autoptr (GError) error = NULL;
      g_test_message ("tf32: %u of %u cases differ from FP32 beyond its rounding", tf32_visible,
                      cases);
      g_assert_cmpuint (tf32_visible, >, cases / 2);
      g_assert_true (kilt_context_set_precision (ctx, KILT_PRECISION_FP32, &error));
      g_unsetenv ("KILT_TF32_EMULATE");
    }
}

static void
test_kilt (void)
{
  run_cases ("kilt");
}

/* Kilt's kernels with each tile width, whichever this device gets by default: a context of its
 * own, built under $KILT_GEMM_TILES. */
static void
run_tiles (const char *tiles)
{
  KiltContext *ctx;

  kilt_test_context_close ();
  g_setenv ("KILT_GEMM_TILES", tiles, TRUE);
  ctx = kilt_test_context ();
  if (ctx)
    {
      g_assert_cmpint (ctx->gemm_wide, ==, g_str_equal (tiles, "wide"));
      run_cases ("kilt");
    }
  kilt_test_context_close ();
  g_unsetenv ("KILT_GEMM_TILES");
}

static void
test_kilt_narrow (void)
{
  run_tiles ("narrow");
}

static void
test_kilt_wide (void)
{
  run_tiles ("wide");
}

static void
test_clblast (void)
{
  run_cases ("clblast");
}

/* Split-K (forced through $KILT_GEMM_SPLIT; GPUs split small outputs with a long inner
 * dimension on their own): parts with and without a remainder, every transpose, alpha and beta
 * (0 over a NaN-filled C), padding and offsets, on both paths and at TF32 (emulated); and a
 * batched GEMM is left alone. */
static void
test_split_k (void)
{
  KiltContext *ctx = kilt_test_context ();
  static const char *const paths[] = { "kilt", "clblast", "tf32" };
  static const gsize shapes[][3]
      = { { 7, 9, 700 }, { 32, 10, 512 }, { 5, 33, 703 }, { 1, 1, 260 } };
  static const char *const splits[] = { "5", "3", "32" };
  KiltRng rng;
  guint cases = 0, failed = 0;

  if (!ctx)
    return;
  kilt_rng_init (&rng, 77);
  for (guint p = 0; p < G_N_ELEMENTS (paths); p++)
    {
      g_autoptr (GError) error = NULL;
      if (g_str_equal (paths[p], "tf32"))
        {
          g_setenv ("KILT_TF32_EMULATE", "1", TRUE);
          g_assert_true (kilt_context_set_precision (ctx, KILT_PRECISION_TF32, &error));
        }
      else
        g_setenv ("KILT_GEMM", paths[p], TRUE);
      for (guint s = 0; s < G_N_ELEMENTS (shapes); s++)
        for (guint tr = 0; tr < 4; tr++)
          {
            GemmCase t = { shapes[s][0],
                           shapes[s][1],
                           shapes[s][2],
                           tr & 1,
                           (tr >> 1) & 1,
                           (s + tr) % 2 ? 3 : 0,
                           s % 2 ? 0 : 7,
                           1,
                           tr == 2 ? -0.75f : 1.0f,
                           tr % 2 ? 0.5f : 0.0f };
            guint bad;

            g_setenv ("KILT_GEMM_SPLIT", splits[(s + tr) % G_N_ELEMENTS (splits)], TRUE);
            bad = run_case (ctx, &t, &rng);
            cases++;
            if (bad)
              {
                g_printerr ("split %s, %s: %zux%zux%zu %s%s: %u bad\n",
                            g_getenv ("KILT_GEMM_SPLIT"), paths[p], t.m, t.n, t.k, t.ta ? "T" : "N",
                            t.tb ? "T" : "N", bad);
                failed++;
              }
          }
      /* The parts went through the parts' buffer. */
      g_assert_nonnull (ctx->gemm_parts);
      g_unsetenv ("KILT_GEMM");
      if (g_str_equal (paths[p], "tf32"))
        {
          g_assert_true (kilt_context_set_precision (ctx, KILT_PRECISION_FP32, &error));
          g_unsetenv ("KILT_TF32_EMULATE");
        }
    }
  /* A device that cannot give the parts' buffer (its allocation fails, after the case's A, B
   * and C) runs the GEMM whole, and still right. */
  {
    GemmCase t = { 7, 9, 700, TRUE, FALSE, 0, 0, 1, 1.0f, 0.5f };
    kilt_test_context_close ();
    ctx = kilt_test_context ();
    g_setenv ("KILT_GEMM_SPLIT", "4", TRUE);
    kilt_fault_set (KILT_FAULT_ALLOC, 4);
    failed += run_case (ctx, &t, &rng) != 0;
    cases++;
    g_assert_null (ctx->gemm_parts);
    kilt_fault_set (KILT_FAULT_ALLOC, 0);
  }
  /* Batched: no split (its matrices would share the parts). */
  {
    GemmCase t = { 6, 5, 600, FALSE, TRUE, 0, 0, 3, 1.0f, 0.0f };
    g_setenv ("KILT_GEMM_SPLIT", "4", TRUE);
    failed += run_case (ctx, &t, &rng) != 0;
    cases++;
  }
  g_unsetenv ("KILT_GEMM_SPLIT");
  g_test_message ("split-K: %u of %u cases failed", failed, cases);
  g_assert_cmpuint (failed, ==, 0);
}

/* Both builds of the kernel, 64 x 64 and 128 x 128 tiles, each forced on every case. */
static void
test_tf32 (void)
{
  static const char *const tiles[] = { "64", "128" };

  for (guint i = 0; i < G_N_ELEMENTS (tiles); i++)
    {
      g_setenv ("KILT_TF32_TILE", tiles[i], TRUE);
      g_test_message ("tiles of %s", tiles[i]);
      run_cases ("tf32");
    }
  g_unsetenv ("KILT_TF32_TILE");
}

/* kilt_gemm_tf32_lay, built per layout of the operands: the small tile with 16-byte loads
 * where the case allows them (every one of its 16 builds), then the big tile reading a float
 * at a time with two stages (4 builds; each build costs PoCL over a second). */
static void
test_tf32_layout (void)
{
  KiltContext *ctx = kilt_test_context ();

  if (!ctx)
    return;
  g_setenv ("KILT_TF32_KERNEL", "layout", TRUE);
  g_setenv ("KILT_TF32_TILE", "64", TRUE);
  g_test_message ("small tile, 16-byte loads where aligned");
  run_cases ("tf32");
  g_setenv ("KILT_TF32_TILE", "128", TRUE);
  g_setenv ("KILT_TF32_VEC", "0", TRUE);
  g_setenv ("KILT_TF32_OPTIONS", "-DTF_STAGES=2", TRUE);
  kilt_context_free_tf32 (ctx);
  g_test_message ("big tile, a float at a time, two stages");
  run_cases ("tf32");
  g_unsetenv ("KILT_TF32_TILE");
  g_unsetenv ("KILT_TF32_VEC");
  g_unsetenv ("KILT_TF32_OPTIONS");
  g_unsetenv ("KILT_TF32_KERNEL");
  kilt_context_free_tf32 (ctx);
}

/* The big tile's build options that bench-gemm compares (KILT_TF32_OPTIONS): cp.async
 * pipelines of 2 to 4 stages (plain copies without PTX), deeper slices, two buffers and 64x64
 * warp tiles, each on every case, so a variant measured faster is a correct one. */
static void
test_tf32_variants (void)
{
  static const char *const variants[][2] = {
    { "-DTF_CPASYNC -DTF_STAGES=2", NULL },
    { "-DTF_CPASYNC -DTF_STAGES=3", NULL },
    { "-DTF_CPASYNC -DTF_STAGES=4 -DTF_BK=32", NULL },
    { "-DTF_STAGES=2 -DTF_BK=32", NULL },
    { "-DTF_WM=64 -DTF_WN=64 -DTF_CPASYNC -DTF_STAGES=3", "128" },
  };
  KiltContext *ctx = kilt_test_context ();

  if (!ctx)
    return;
  g_setenv ("KILT_TF32_TILE", "128", TRUE);
  for (guint i = 0; i < G_N_ELEMENTS (variants); i++)
    {
      g_setenv ("KILT_TF32_OPTIONS", variants[i][0], TRUE);
      if (variants[i][1])
        g_setenv ("KILT_TF32_THREADS", variants[i][1], TRUE);
      else
        g_unsetenv ("KILT_TF32_THREADS");
      g_test_message ("big tile built with %s", variants[i][0]);
      kilt_context_free_tf32 (ctx);
      run_cases ("tf32");
    }
  g_unsetenv ("KILT_TF32_OPTIONS");
  g_unsetenv ("KILT_TF32_THREADS");
  g_unsetenv ("KILT_TF32_TILE");
  kilt_context_free_tf32 (ctx);
}

/* TF32 is offered where tensor cores run it and refused elsewhere with the reason. */
static void
test_tf32_available (void)
{
  KiltContext *ctx = kilt_test_context ();
  g_autoptr (GError) error = NULL;
  g_autofree char *why = NULL;
  KiltPrecision p;

  if (!ctx)
    return;
  g_assert_true (kilt_precision_from_name ("TF32", &p));
  g_assert_cmpint (p, ==, KILT_PRECISION_TF32);
  g_assert_false (kilt_precision_from_name ("bf16", &p));
  g_assert_cmpstr (kilt_precision_name (KILT_PRECISION_FP32), ==, "fp32");
  g_assert_true (kilt_precision_available (ctx->info, KILT_PRECISION_FP32, &why));
  if (strstr (ctx->info->vendor, "NVIDIA"))
    return;
  g_assert_false (kilt_precision_available (ctx->info, KILT_PRECISION_TF32, &why));
  g_assert_nonnull (strstr (why, ctx->info->name));
  g_assert_nonnull (strstr (why, "fp32"));
  g_assert_false (kilt_context_set_precision (ctx, KILT_PRECISION_TF32, &error));
  g_assert_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_INVALID);
  g_assert_cmpint (ctx->precision, ==, KILT_PRECISION_FP32);
}

/* A leading dimension shorter than a row, or a matrix past the end of its buffer, is an error
 * on both paths, not an out-of-bounds access. */
static void
test_refusals (void)
{
  KiltContext *ctx = kilt_test_context ();
  const char *paths[] = { "kilt", "clblast" };
  KiltBuffer *a, *b, *c;
  g_autoptr (GError) error = NULL;

  if (!ctx)
    return;
  /* 64 floats each, zeros: the values do not matter here. */
  a = kilt_buffer_new (ctx, KILT_MEM_ACTIVATIONS, 4 * 64, &error, "A");
  b = kilt_buffer_new (ctx, KILT_MEM_ACTIVATIONS, 4 * 64, &error, "B");
  c = kilt_buffer_new (ctx, KILT_MEM_ACTIVATIONS, 4 * 64, &error, "C");
  g_assert_no_error (error);
  for (guint p = 0; p < G_N_ELEMENTS (paths); p++)
    {
      g_setenv ("KILT_GEMM", paths[p], TRUE);
      g_assert_true (kilt_gemm (ctx, FALSE, FALSE, 4, 4, 4, 1, a->mem, 0, 4, b->mem, 16, 4, 0,
                                c->mem, 48, 4, &error));
      g_assert_no_error (error);
      /* lda 3 is shorter than a row of 4. */
      g_assert_false (kilt_gemm (ctx, FALSE, FALSE, 4, 4, 4, 1, a->mem, 0, 3, b->mem, 16, 4, 0,
                                 c->mem, 32, 4, &error));
      g_assert_nonnull (error);
      g_clear_error (&error);
      /* C from float 50 needs 50 + 3 * 4 + 4 = 66 > 64. */
      g_assert_false (kilt_gemm (ctx, FALSE, TRUE, 4, 4, 4, 1, a->mem, 0, 4, b->mem, 16, 4, 0,
                                 c->mem, 50, 4, &error));
      g_assert_nonnull (error);
      g_clear_error (&error);
      /* A batch of 3 with stride 24 runs to 2 * 24 + 16 = 64 floats: fits; stride 25 does not. */
      g_assert_true (kilt_gemm_strided_batched (ctx, TRUE, FALSE, 4, 4, 4, 1, a->mem, 0, 4, 24,
                                                b->mem, 0, 4, 24, 1, c->mem, 0, 4, 24, 3, &error));
      g_assert_no_error (error);
      g_assert_false (kilt_gemm_strided_batched (ctx, TRUE, FALSE, 4, 4, 4, 1, a->mem, 0, 4, 25,
                                                 b->mem, 0, 4, 24, 1, c->mem, 0, 4, 24, 3, &error));
      g_assert_nonnull (error);
      g_clear_error (&error);
    }
  g_assert_true (kilt_context_finish (ctx, &error));
  g_unsetenv ("KILT_GEMM");
  kilt_buffer_free (a);
  kilt_buffer_free (b);
  kilt_buffer_free (c);
}

/* A profiled CLBlast GEMM is counted from a marker before it, not from its last kernel: at
 * sizes past its direct kernel's, with a transposed A and no multiple of its tiles, CLBlast
 * copies and pads before its main kernel and copies C back after. The marker must have run
 * before that last kernel started, and the profiler must count the whole span. */
static void
test_clblast_profile_span (void)
{
  KiltContext *ctx = kilt_test_context ();
  const gsize m = 517, n = 515, k = 519;
  KiltBuffer *a, *b, *c;
  g_autoptr (GError) error = NULL;
  KiltProfEvent pe;
  cl_ulong begin = 0, start = 0, end = 0;

  if (!ctx)
    return;
  a = kilt_buffer_new (ctx, KILT_MEM_ACTIVATIONS, 4 * m * k, &error, "A");
  b = kilt_buffer_new (ctx, KILT_MEM_ACTIVATIONS, 4 * k * n, &error, "B");
  c = kilt_buffer_new (ctx, KILT_MEM_ACTIVATIONS, 4 * m * n, &error, "C");
  g_assert_no_error (error);
  g_setenv ("KILT_GEMM", "clblast", TRUE);
  g_assert_true (kilt_context_finish (ctx, &error));
  g_assert_cmpuint (ctx->prof_events->len, ==, 0);
  ctx->profiling = TRUE;
  ctx->prof_tag = KILT_PROF_TAG (0, KILT_PHASE_FORWARD);
  g_assert_true (kilt_gemm (ctx, TRUE, FALSE, m, n, k, 1, a->mem, 0, m, b->mem, 0, n, 0, c->mem, 0,
                            n, &error));
  g_assert_no_error (error);
  g_assert_true (kilt_context_finish (ctx, &error));
  ctx->profiling = FALSE;
  g_assert_cmpuint (ctx->prof_events->len, ==, 1);
  pe = g_array_index (ctx->prof_events, KiltProfEvent, 0);
  g_assert_nonnull (pe.begin);
  g_assert_cmpint (
      clGetEventProfilingInfo (pe.begin, CL_PROFILING_COMMAND_END, sizeof begin, &begin, NULL), ==,
      CL_SUCCESS);
  g_assert_cmpint (
      clGetEventProfilingInfo (pe.event, CL_PROFILING_COMMAND_START, sizeof start, &start, NULL),
      ==, CL_SUCCESS);
  g_assert_cmpint (
      clGetEventProfilingInfo (pe.event, CL_PROFILING_COMMAND_END, sizeof end, &end, NULL), ==,
      CL_SUCCESS);
  g_test_message ("marker done at +0, last kernel %.3f..%.3f ms", (start - begin) / 1e6,
                  (end - begin) / 1e6);
  g_assert_cmpuint (begin, >, 0);
  g_assert_cmpuint (begin, <, start); /* the copies ran in between */
  g_assert_cmpuint (start, <=, end);
  {
    /* The layer's time is the whole span, not the last kernel's. */
    g_autoptr (KiltModel) model = kilt_model_new ("span");
    KiltProfiler *prof;
    g_autoptr (GArray) t = NULL;
    kilt_model_add_input (model, "in", (KiltShape){ 1, 1, 1 });
    prof = kilt_profiler_new (model);
    g_assert_true (kilt_profiler_collect (prof, ctx, &error));
    t = kilt_profiler_timings (prof);
    g_assert_cmpfloat (
        fabs (g_array_index (t, KiltLayerTiming, 0).forward_ms * 1e6 - (double)(end - begin)), <,
        1);
    kilt_profiler_free (prof);
  }
  g_assert_cmpuint (ctx->prof_events->len, ==, 0);
  g_unsetenv ("KILT_GEMM");
  kilt_buffer_free (a);
  kilt_buffer_free (b);
  kilt_buffer_free (c);
}

/* The profile's times are per step, however many launches a phase makes: the optimizer makes
 * one per parameter range (airbench94's per-layer learning rates give it 16), and a step
 * that counted them as steps divided every layer's time by as many. */
static void
test_profile_per_step (void)
{
  KiltContext *ctx = kilt_test_context ();
  const gsize n = 96;
  KiltBuffer *a, *b, *c;
  g_autoptr (GError) error = NULL;
  g_autoptr (KiltModel) model = NULL;
  g_autoptr (GArray) t = NULL;
  KiltProfiler *prof;
  double want[2] = { 0, 0 }; /* forward, update ns */

  if (!ctx)
    return;
  a = kilt_buffer_new (ctx, KILT_MEM_ACTIVATIONS, 4 * n * n, &error, "A");
  b = kilt_buffer_new (ctx, KILT_MEM_ACTIVATIONS, 4 * n * n, &error, "B");
  c = kilt_buffer_new (ctx, KILT_MEM_ACTIVATIONS, 4 * n * n, &error, "C");
  g_assert_no_error (error);
  g_assert_true (kilt_context_finish (ctx, &error));
  ctx->profiling = TRUE;
  /* One step: a forward launch, then three update launches. */
  for (guint l = 0; l < 4; l++)
    {
      ctx->prof_tag = KILT_PROF_TAG (0, l == 0 ? KILT_PHASE_FORWARD : KILT_PHASE_UPDATE);
      g_assert_true (kilt_gemm (ctx, FALSE, FALSE, n, n, n, 1, a->mem, 0, n, b->mem, 0, n, 0,
                                c->mem, 0, n, &error));
    }
  g_assert_true (kilt_context_finish (ctx, &error));
  ctx->profiling = FALSE;
  g_assert_cmpuint (ctx->prof_events->len, >=, 4);
  for (guint i = 0; i < ctx->prof_events->len; i++)
    {
      KiltProfEvent *pe = &g_array_index (ctx->prof_events, KiltProfEvent, i);
      cl_ulong s = 0, e = 0;
      clGetEventProfilingInfo (pe->begin ? pe->begin : pe->event,
                               pe->begin ? CL_PROFILING_COMMAND_END : CL_PROFILING_COMMAND_START,
                               sizeof s, &s, NULL);
      clGetEventProfilingInfo (pe->event, CL_PROFILING_COMMAND_END, sizeof e, &e, NULL);
      want[pe->tag % 3 == KILT_PHASE_UPDATE] += (double)(e - s);
    }
  g_assert_cmpfloat (want[1], >, 0);
  model = kilt_model_new ("per-step");
  kilt_model_add_input (model, "in", (KiltShape){ 1, 1, 1 });
  prof = kilt_profiler_new (model);
  g_assert_true (kilt_profiler_collect (prof, ctx, &error));
  kilt_profiler_add_step (prof);
  t = kilt_profiler_timings (prof);
  g_assert_cmpfloat (fabs (g_array_index (t, KiltLayerTiming, 0).forward_ms * 1e6 - want[0]), <, 1);
  g_assert_cmpfloat (fabs (g_array_index (t, KiltLayerTiming, 0).update_ms * 1e6 - want[1]), <, 1);
  kilt_profiler_free (prof);
  kilt_buffer_free (a);
  kilt_buffer_free (b);
  kilt_buffer_free (c);
}

/* Without $KILT_GEMM, CPU devices get Kilt's kernels and the others CLBlast. */
static void
test_default_path (void)
{
  KiltContext *ctx = kilt_test_context ();

  if (!ctx)
    return;
  g_unsetenv ("KILT_GEMM");
  g_assert_cmpint (kilt_gemm_path (ctx), ==,
                   g_str_equal (ctx->info->type, "CPU") ? KILT_GEMM_PATH_KILT
                                                        : KILT_GEMM_PATH_CLBLAST);
  /* and the wide tiles exactly where AVX-512's registers hold them */
  g_assert_cmpint (ctx->gemm_wide, ==,
                   g_str_equal (ctx->info->type, "CPU") && ctx->info->float_width >= 16);
}

int
main (int argc, char **argv)
{
  int rc;

  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/gemm/default-path", test_default_path);
  g_test_add_func ("/gemm/kilt", test_kilt);
  g_test_add_func ("/gemm/kilt-narrow", test_kilt_narrow);
  g_test_add_func ("/gemm/kilt-wide", test_kilt_wide);
  g_test_add_func ("/gemm/clblast", test_clblast);
  g_test_add_func ("/gemm/clblast-profile-span", test_clblast_profile_span);
  g_test_add_func ("/gemm/profile-per-step", test_profile_per_step);
  g_test_add_func ("/gemm/tf32", test_tf32);
  g_test_add_func ("/gemm/tf32-layout", test_tf32_layout);
  g_test_add_func ("/gemm/tf32-variants", test_tf32_variants);
  g_test_add_func ("/gemm/tf32-available", test_tf32_available);
  g_test_add_func ("/gemm/refusals", test_refusals);
  g_test_add_func ("/gemm/split-k", test_split_k);
  rc = g_test_run ();
  kilt_test_context_close ();
  return rc;
}
