/* Times SGEMM through each path (Kilt's kernels, CLBlast) on the GEMMs of one cifar10_cnn
 * training step at batch 32, as the layers issue them on a CPU device (chunked convolutions).
 * `bench-gemm tf32 [iters] [reps] [name]` times the TF32 tensor-core GEMM against CLBlast's
 * FP32 one on the shapes of VGG16's im2col convolutions instead, with the largest difference
 * between the two relative to the largest |C|. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "kilt-test-util.h"
#include "kilt-gemm.h"
#include "kilt-gemm-tf32.h"
#include "kilt-rng.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>

typedef struct
{
  const char *name;
  gsize m, n, k;
  gboolean ta, tb;
  gsize batch; /* strided batch (split-K parts) */
  guint count; /* calls per training step */
} Shape;

/* conv1 in chunks of 18 samples (the last 14), conv2 of 2, conv3 of 8, conv4 of 5 (the last
 * 2); conv1's weight gradient split 8 ways; conv1 has no input gradient. */
static const Shape shapes[] = {
  { "conv1 fwd", 32, 18432, 27, FALSE, FALSE, 1, 2 },
  { "conv1 dW", 32, 28, 2304, FALSE, TRUE, 8, 2 },
  { "conv2 fwd", 32, 1800, 288, FALSE, FALSE, 1, 16 },
  { "conv2 dW", 32, 289, 1800, FALSE, TRUE, 1, 16 },
  { "conv2 dX", 288, 1800, 32, TRUE, FALSE, 1, 16 },
  { "conv3 fwd", 64, 1800, 288, FALSE, FALSE, 1, 4 },
  { "conv3 dW", 64, 289, 1800, FALSE, TRUE, 1, 4 },
  { "conv3 dX", 288, 1800, 64, TRUE, FALSE, 1, 4 },
  { "conv4 fwd", 64, 845, 576, FALSE, FALSE, 1, 7 },
  { "conv4 dW", 64, 577, 845, FALSE, TRUE, 1, 7 },
  { "conv4 dX", 576, 845, 64, TRUE, FALSE, 1, 7 },
  { "dense1 fwd", 32, 512, 2304, FALSE, FALSE, 1, 1 },
  { "dense1 dW", 2304, 512, 32, TRUE, FALSE, 1, 1 },
  { "dense1 dX", 32, 2304, 512, FALSE, TRUE, 1, 1 },
  { "dense2 fwd", 32, 10, 512, FALSE, FALSE, 1, 1 },
  { "dense2 dW", 512, 10, 32, TRUE, FALSE, 1, 1 },
  { "dense2 dX", 32, 512, 10, FALSE, TRUE, 1, 1 },
};

/* VGG16's block 3 and 4 convolutions at 224x224 as im2col issues them, 8 samples a chunk
 * (forward NN, data gradient TN, weight gradient NT), and a square product. */
static const Shape tf32_shapes[] = {
  { "square", 2048, 2048, 2048, FALSE, FALSE, 1, 1 },
  { "b3 fwd", 256, 25088, 2304, FALSE, FALSE, 1, 1 },
  { "b3 dX", 2304, 25088, 256, TRUE, FALSE, 1, 1 },
  { "b3 dW", 256, 2304, 25088, FALSE, TRUE, 1, 1 },
  { "b4 fwd", 512, 6272, 4608, FALSE, FALSE, 1, 1 },
  { "b4 dX", 4608, 6272, 512, TRUE, FALSE, 1, 1 },
  { "b4 dW", 512, 4608, 6272, FALSE, TRUE, 1, 1 },
};

static KiltBuffer *
random_buffer (KiltContext *ctx, gsize n, KiltRng *rng, const char *what)
{
  g_autoptr (GError) error = NULL;
  g_autofree float *h = g_new (float, n);
  KiltBuffer *b = kilt_buffer_new (ctx, KILT_MEM_ACTIVATIONS, 4 * n, &error, "%s", what);

  g_assert_no_error (error);
  for (gsize i = 0; i < n; i++)
    h[i] = (float)(2.0 * kilt_rng_uniform (rng) - 1.0);
  g_assert_true (kilt_buffer_write (b, 0, h, 4 * n, &error));
  return b;
}

/* CPU seconds of every thread of this process (PoCL's workers included): on a machine whose
 * two cores other processes share, a steadier figure than wall time. */
static double
cpu_now (void)
{
  struct rusage ru;

  getrusage (RUSAGE_SELF, &ru);
  return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec
         + ru.ru_stime.tv_usec / 1e6;
}

/* Seconds per call, the best of @reps runs of @iters calls (wall time, or with
 * $BENCH_GEMM_CPU set, CPU time over the device's compute units). */
static double
time_gemm (KiltContext *ctx, const Shape *s, KiltBuffer *a, KiltBuffer *b, KiltBuffer *c,
           guint iters, guint reps)
{
  gboolean cpu = g_getenv ("BENCH_GEMM_CPU") != NULL;
  g_autoptr (GError) error = NULL;
  gsize lda = s->ta ? s->m : s->k, ldb = s->tb ? s->k : s->n;
  double best = G_MAXDOUBLE;

  for (guint r = 0; r <= reps; r++)
    {
      double t0 = cpu ? cpu_now () * 1e6 : g_get_monotonic_time (), dt;
      for (guint i = 0; i < iters; i++)
        g_assert_true (kilt_gemm_strided_batched (
            ctx, s->ta, s->tb, s->m, s->n, s->k, 1.0f, a->mem, 0, lda, s->m * s->k, b->mem, 0, ldb,
            s->k * s->n, 0.0f, c->mem, 0, s->n, s->m * s->n, s->batch, &error));
      g_assert_true (kilt_context_finish (ctx, &error));
      /* The first run builds CLBlast's kernels for the shape: not timed. */
      dt = cpu ? (cpu_now () * 1e6 - t0) / MAX (ctx->info->compute_units, 1)
               : g_get_monotonic_time () - t0;
      if (r > 0)
        best = MIN (best, dt / 1e6 / iters);
    }
  return best;
}

/* Largest |x - y| over the largest |y|. */
static double
max_rel_diff (KiltBuffer *x, KiltBuffer *y, gsize n)
{
  g_autoptr (GError) error = NULL;
  g_autofree float *hx = g_new (float, n);
  g_autofree float *hy = g_new (float, n);
  double d = 0, mag = 0;

  g_assert_true (kilt_buffer_read (x, 0, hx, 4 * n, &error));
  g_assert_true (kilt_buffer_read (y, 0, hy, 4 * n, &error));
  for (gsize i = 0; i < n; i++)
    {
      d = MAX (d, fabs ((double)hx[i] - hy[i]));
      mag = MAX (mag, fabs ((double)hy[i]));
    }
  return d / MAX (mag, 1e-30);
}

static int
bench_tf32 (KiltContext *ctx, guint iters, guint reps, const char *only)
{
  g_autoptr (GError) error = NULL;
  KiltRng rng;

  if (!kilt_context_set_precision (ctx, KILT_PRECISION_TF32, &error))
    {
      printf ("SKIP: %s\n", error->message);
      return 77;
    }
  kilt_rng_init (&rng, 7);
  printf ("%s (%s)\n%-8s %-22s %10s %9s %10s %9s %6s %9s\n", ctx->info->name,
          ctx->info->platform_version, "GEMM", "M x N x K", "tf32 ms", "TFLOP/s", "fp32 ms",
          "TFLOP/s", "ratio", "rel diff");
  for (guint i = 0; i < G_N_ELEMENTS (tf32_shapes); i++)
    {
      const Shape *s = &tf32_shapes[i];
      double t[2], flop = 2.0 * s->m * s->n * s->k;
      KiltBuffer *a, *b, *c[2];

      if (only && !strstr (s->name, only))
        continue;
      a = random_buffer (ctx, s->m * s->k, &rng, "A");
      b = random_buffer (ctx, s->k * s->n, &rng, "B");
      for (guint p = 0; p < 2; p++)
        {
          c[p] = random_buffer (ctx, s->m * s->n, &rng, "C");
          g_assert_true (kilt_context_set_precision (
              ctx, p == 0 ? KILT_PRECISION_TF32 : KILT_PRECISION_FP32, &error));
          g_setenv ("KILT_GEMM", "clblast", TRUE);
          t[p] = time_gemm (ctx, s, a, b, c[p], iters, reps);
        }
      printf ("%-8s %5zu x %5zu x %5zu %s%s %10.3f %9.1f %10.3f %9.1f %6.2f %9.1e\n", s->name, s->m,
              s->n, s->k, s->ta ? "T" : "N", s->tb ? "T" : "N", t[0] * 1e3, flop / t[0] / 1e12,
              t[1] * 1e3, flop / t[1] / 1e12, t[1] / t[0], max_rel_diff (c[0], c[1], s->m * s->n));
      fflush (stdout);
      kilt_buffer_free (a);
      kilt_buffer_free (b);
      kilt_buffer_free (c[0]);
      kilt_buffer_free (c[1]);
    }
  g_unsetenv ("KILT_GEMM");
  kilt_test_context_close ();
  return 0;
}

int
main (int argc, char **argv)
{
  gboolean tf32 = argc > 1 && g_str_equal (argv[1], "tf32");
  guint iters, reps;
  const char *only;
  const char *paths[] = { "kilt", "clblast" };
  double total[2] = { 0, 0 }, flop_total = 0;
  KiltContext *ctx = kilt_test_context ();
  KiltRng rng;

  if (!ctx)
    return 77;
  if (tf32)
    argv++, argc--;
  iters = argc > 1 ? (guint)atoi (argv[1]) : 5;
  reps = argc > 2 ? (guint)atoi (argv[2]) : 3;
  only = argc > 3 ? argv[3] : NULL;
  if (tf32)
    return bench_tf32 (ctx, iters, reps, only);
  kilt_rng_init (&rng, 7);
  printf ("%s (%s)\n%-11s %-22s %5s %10s %8s %10s %8s %6s\n", ctx->info->name,
          ctx->info->platform_version, "GEMM", "batch x M x N x K", "calls", "kilt ms", "GFLOP/s",
          "clblast ms", "GFLOP/s", "ratio");
  for (guint i = 0; i < G_N_ELEMENTS (shapes); i++)
    {
      const Shape *s = &shapes[i];
      double t[2], flop = 2.0 * s->m * s->n * s->k * s->batch;
      KiltBuffer *a, *b, *c;
      char dims[64];

      if (only && !strstr (s->name, only))
        continue;
      a = random_buffer (ctx, s->m * s->k * s->batch, &rng, "A");
      b = random_buffer (ctx, s->k * s->n * s->batch, &rng, "B");
      c = random_buffer (ctx, s->m * s->n * s->batch, &rng, "C");
      for (guint p = 0; p < 2; p++)
        {
          /* $BENCH_GEMM_PATH: time only that path (the other column shows 0). */
          if (g_getenv ("BENCH_GEMM_PATH") && !g_str_equal (g_getenv ("BENCH_GEMM_PATH"), paths[p]))
            {
              t[p] = 0;
              continue;
            }
          g_setenv ("KILT_GEMM", paths[p], TRUE);
          t[p] = time_gemm (ctx, s, a, b, c, iters, reps);
          total[p] += t[p] * s->count;
        }
      flop_total += flop * s->count;
      g_snprintf (dims, sizeof dims, "%zu x %zux%zux%zu %s%s", s->batch, s->m, s->n, s->k,
                  s->ta ? "T" : "N", s->tb ? "T" : "N");
      printf ("%-11s %-22s %5u %10.3f %8.1f %10.3f %8.1f %6.1f\n", s->name, dims, s->count,
              t[0] * 1e3, flop / t[0] / 1e9, t[1] * 1e3, flop / t[1] / 1e9, t[1] / t[0]);
      fflush (stdout);
      kilt_buffer_free (a);
      kilt_buffer_free (b);
      kilt_buffer_free (c);
    }
  if (!only)
    printf ("one step    %-22s %5s %10.1f %8.1f %10.1f %8.1f %6.1f\n", "", "", total[0] * 1e3,
            flop_total / total[0] / 1e9, total[1] * 1e3, flop_total / total[1] / 1e9,
            total[1] / total[0]);
  g_unsetenv ("KILT_GEMM");
  kilt_test_context_close ();
  return 0;
}
