/* Times Conv2D forward and backward on cifar10_cnn's four convolution shapes, per strategy. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "kilt-test-util.h"
#include "kilt-layer.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>

typedef struct
{
  const char *name;
  guint c, hw, filters;
  gboolean same;
} Shape;

/* cifar10_cnn: conv1 3->32 same on 32x32, conv2 32->32 valid, conv3 32->64 same on 15x15,
 * conv4 64->64 valid; plus the 32x32x32 -> 32 same case the notes name. */
static const Shape shapes[] = {
  { "conv1 3->32 same 32x32", 3, 32, 32, TRUE },
  { "conv2 32->32 valid 32x32", 32, 32, 32, FALSE },
  { "conv 32->32 same 32x32", 32, 32, 32, TRUE },
  { "conv3 32->64 same 15x15", 32, 15, 64, TRUE },
  { "conv4 64->64 valid 15x15", 64, 15, 64, FALSE },
};

typedef struct
{
  const char *label;
  const char *chunk; /* KILT_CONV_CHUNK, NULL = unset */
  const char *split; /* KILT_CONV_SPLIT, NULL = unset (the device heuristic) */
} Mode;

static KiltBuffer *
random_buffer (KiltContext *ctx, gsize n, KiltRng *rng, const char *what)
{
  g_autoptr (GError) error = NULL;
  g_autofree float *h = g_new (float, MAX (n, 1));
  KiltBuffer *b = kilt_buffer_new (ctx, KILT_MEM_ACTIVATIONS, 4 * MAX (n, 1), &error, "%s", what);

  g_assert_no_error (error);
  for (gsize i = 0; i < n; i++)
    h[i] = (float)(0.2 * kilt_rng_uniform (rng) - 0.1);
  g_assert_true (kilt_buffer_write (b, 0, h, 4 * n, &error));
  return b;
}

static double
now (void)
{
  return g_get_monotonic_time () / 1e6;
}

/* CPU seconds of every thread of this process: on a CPU device, a figure that other
 * processes sharing the cores disturb less than wall time. */
static double
cpu_now (void)
{
  struct rusage ru;

  getrusage (RUSAGE_SELF, &ru);
  return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec
         + ru.ru_stime.tv_usec / 1e6;
}

static void
bench_one (KiltContext *ctx, const Shape *s, const Mode *m, guint batch, guint iters)
{
  KiltNode input = { 0 }, node = { 0 };
  g_autoptr (GPtrArray) nodes = g_ptr_array_new ();
  g_autoptr (GError) error = NULL;
  KiltExec ex = { 0 };
  KiltRng rng;
  KiltBuffer *bufs[8];
  double t0, c0, fwd, bwd, cfwd, cbwd;
  gsize ws;

  if (m->chunk)
    g_setenv ("KILT_CONV_CHUNK", m->chunk, TRUE);
  else
    g_unsetenv ("KILT_CONV_CHUNK");
  if (m->split)
    g_setenv ("KILT_CONV_SPLIT", m->split, TRUE);
  else
    g_unsetenv ("KILT_CONV_SPLIT");

  kilt_rng_init (&rng, 1);
  input.name = (char *)"input";
  input.klass = &kilt_input_class;
  input.out_shape = (KiltShape){ s->c, s->hw, s->hw };
  node.index = 1;
  node.name = (char *)"conv";
  node.type = KILT_LAYER_CONV2D;
  node.klass = &kilt_conv2d_class;
  node.cfg = kilt_layer_config_default (KILT_LAYER_CONV2D);
  node.cfg.units = s->filters;
  node.cfg.same = s->same;
  node.cfg.activation = KILT_ACT_RELU;
  node.n_inputs = 1;
  node.in_shape[0] = input.out_shape;
  g_assert_true (node.klass->infer (&node, &error));
  node.din_needed[0] = TRUE;
  g_ptr_array_add (nodes, &input);
  g_ptr_array_add (nodes, &node);
  ws = node.klass->workspace_floats (&node, batch, ctx->info);

  bufs[0] = random_buffer (ctx, batch * kilt_shape_size (&input.out_shape), &rng, "x");
  bufs[1] = random_buffer (ctx, batch * kilt_shape_size (&input.out_shape), &rng, "dx");
  bufs[2] = random_buffer (ctx, node.n_params, &rng, "params");
  bufs[3] = random_buffer (ctx, node.n_params, &rng, "grads");
  bufs[4] = random_buffer (ctx, ws, &rng, "workspace");
  bufs[5] = random_buffer (ctx, batch * kilt_shape_size (&node.out_shape), &rng, "y");
  bufs[6] = random_buffer (ctx, batch * kilt_shape_size (&node.out_shape), &rng, "dy");
  input.out = bufs[0]->mem;
  input.dout = bufs[1]->mem;
  ex.ctx = ctx;
  ex.nodes = nodes;
  ex.batch = batch;
  ex.training = TRUE;
  ex.params = bufs[2]->mem;
  ex.grads = bufs[3]->mem;
  ex.workspace = bufs[4]->mem;
  ex.softmax_fused_node = G_MAXUINT;
  node.out = bufs[5]->mem;
  node.dout = bufs[6]->mem;

  /* Warm-up builds CLBlast's kernels for these shapes. */
  g_assert_true (node.klass->forward (&node, &ex, &error));
  g_assert_true (node.klass->backward (&node, &ex, &error));
  g_assert_true (kilt_context_finish (ctx, &error));

  t0 = now ();
  c0 = cpu_now ();
  for (guint i = 0; i < iters; i++)
    g_assert_true (node.klass->forward (&node, &ex, &error));
  g_assert_true (kilt_context_finish (ctx, &error));
  fwd = (now () - t0) / iters;
  cfwd = (cpu_now () - c0) / iters;
  t0 = now ();
  c0 = cpu_now ();
  for (guint i = 0; i < iters; i++)
    g_assert_true (node.klass->backward (&node, &ex, &error));
  g_assert_true (kilt_context_finish (ctx, &error));
  bwd = (now () - t0) / iters;
  cbwd = (cpu_now () - c0) / iters;
  g_assert_no_error (error);

  {
    double gflop = 3.0 * node.klass->flops (&node) * batch / 1e9;
    printf ("%-26s %-20s fwd %8.3f ms  bwd %8.3f ms  total %8.3f ms  %7.1f GFLOP/s  "
            "(CPU time: fwd %.1f ms, bwd %.1f ms)\n",
            s->name, m->label, fwd * 1e3, bwd * 1e3, (fwd + bwd) * 1e3, gflop / (fwd + bwd),
            cfwd * 1e3, cbwd * 1e3);
    fflush (stdout);
  }
  if (g_getenv ("BENCH_CONV_PROFILE"))
    {
      /* One profiled step: each launch's device time, in order (a CLBlast GEMM's from the
       * marker before it, since its own event covers its last kernel only). */
      ctx->profiling = TRUE;
      for (int pass = 0; pass < 2; pass++)
        {
          g_array_set_size (ctx->prof_events, 0);
          g_assert_true (pass == 0 ? node.klass->forward (&node, &ex, &error)
                                   : node.klass->backward (&node, &ex, &error));
          g_assert_true (kilt_context_finish (ctx, &error));
          printf ("    %s:", pass == 0 ? "fwd" : "bwd");
          for (guint e = 0; e < ctx->prof_events->len; e++)
            {
              KiltProfEvent *pe = &g_array_index (ctx->prof_events, KiltProfEvent, e);
              cl_ulong a = 0, b = 0;
              clGetEventProfilingInfo (pe->event, CL_PROFILING_COMMAND_START, sizeof a, &a, NULL);
              clGetEventProfilingInfo (pe->event, CL_PROFILING_COMMAND_END, sizeof b, &b, NULL);
              if (pe->begin)
                {
                  clGetEventProfilingInfo (pe->begin, CL_PROFILING_COMMAND_END, sizeof a, &a, NULL);
                  clReleaseEvent (pe->begin);
                }
              printf (" %.3f", (b - a) / 1e6);
              clReleaseEvent (pe->event);
            }
          printf (" ms\n");
        }
      g_array_set_size (ctx->prof_events, 0);
      ctx->profiling = FALSE;
    }
  for (guint i = 0; i < 7; i++)
    kilt_buffer_free (bufs[i]);
}

int
main (int argc, char **argv)
{
  guint batch = argc > 1 ? (guint)atoi (argv[1]) : 32;
  guint iters = argc > 2 ? (guint)atoi (argv[2]) : 3;
  const char *only = argc > 3 ? argv[3] : NULL;
  KiltContext *ctx;
  const Mode modes[] = {
    { "per sample", "1", "1" },
    { "no split", NULL, "1" },
    { "batch + split 8", NULL, "8" },
    { "batch + split 16", NULL, "16" },
    { "batch + split 32", NULL, "32" },
    { "batch + split 64", NULL, "64" },
    { "chunks of 2", "2", NULL },
    { "chunks of 4", "4", NULL },
    { "chunks of 8", "8", NULL },
    { "chunks of 16", "16", NULL },
    { "auto", NULL, NULL },
  };

  /* BENCH_CONV_MODES: a comma-separated list of mode labels to run (default: all). */
  g_auto (GStrv) wanted
      = g_strsplit (g_getenv ("BENCH_CONV_MODES") ? g_getenv ("BENCH_CONV_MODES") : "", ",", -1);

  ctx = kilt_test_context ();
  if (ctx == NULL)
    return 1;
  printf ("device: %s (%u compute units), batch %u, %u iterations\n", ctx->info->name,
          ctx->info->compute_units, batch, iters);
  for (guint i = 0; i < G_N_ELEMENTS (shapes); i++)
    for (guint j = 0; j < G_N_ELEMENTS (modes); j++)
      if ((only == NULL || strstr (shapes[i].name, only))
          && (wanted[0] == NULL || g_strv_contains ((const char *const *)wanted, modes[j].label)))
        bench_one (ctx, &shapes[i], &modes[j], batch, iters);
  kilt_test_context_close ();
  return 0;
}
