/* Optimizers: device kernels against the C reference, the reference against closed forms,
 * checkpointed state, and each optimizer minimising a random convex quadratic. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "kilt-test-util.h"
#include "kilt-optimizer.h"
#include "kilt-error.h"
#include "kilt-rng.h"

#include <math.h>
#include <string.h>

typedef struct
{
  const char *label;
  KiltOptimizerConfig cfg;
} OptCase;

static KiltOptimizerConfig
cfg_with (KiltOptimizerType type, float lr, float momentum, gboolean nesterov, float decay,
          float wd)
{
  KiltOptimizerConfig c = kilt_optimizer_config_default (type);

  if (lr > 0)
    c.lr = lr;
  c.momentum = momentum;
  c.nesterov = nesterov;
  c.decay = decay;
  c.weight_decay = wd;
  return c;
}

static GArray *
all_cases (void)
{
  GArray *a = g_array_new (FALSE, FALSE, sizeof (OptCase));
  OptCase c[] = {
    { "sgd", cfg_with (KILT_OPT_SGD, 0.1f, 0, FALSE, 0, 0) },
    { "sgd momentum", cfg_with (KILT_OPT_SGD, 0.05f, 0.9f, FALSE, 0, 0) },
    { "sgd nesterov", cfg_with (KILT_OPT_SGD, 0.05f, 0.8f, TRUE, 0, 0) },
    { "sgd decay + weight decay", cfg_with (KILT_OPT_SGD, 0.1f, 0.5f, FALSE, 1e-3f, 0.05f) },
    { "rmsprop", cfg_with (KILT_OPT_RMSPROP, 0.01f, 0, FALSE, 0, 0) },
    { "rmsprop decay (cifar10_cnn)", cfg_with (KILT_OPT_RMSPROP, 1e-4f, 0, FALSE, 1e-6f, 0) },
    { "rmsprop weight decay", cfg_with (KILT_OPT_RMSPROP, 0.01f, 0, FALSE, 1e-3f, 0.01f) },
    { "adam", cfg_with (KILT_OPT_ADAM, 0.01f, 0, FALSE, 0, 0) },
    { "adam decay + weight decay", cfg_with (KILT_OPT_ADAM, 0.01f, 0, FALSE, 5e-4f, 0.02f) },
    { "adadelta", cfg_with (KILT_OPT_ADADELTA, 0, 0, FALSE, 0, 0) },
    { "adadelta decay + weight decay", cfg_with (KILT_OPT_ADADELTA, 0.5f, 0, FALSE, 1e-3f, 0.1f) },
    { "adagrad", cfg_with (KILT_OPT_ADAGRAD, 0.05f, 0, FALSE, 0, 0) },
    { "adagrad decay + weight decay", cfg_with (KILT_OPT_ADAGRAD, 0.05f, 0, FALSE, 2e-3f, 0.1f) },
  };

  g_array_append_vals (a, c, G_N_ELEMENTS (c));
  /* A large epsilon makes its placement (inside or outside the square root, scaled or not)
   * visible at float precision. */
  for (int t = KILT_OPT_RMSPROP; t < KILT_OPT_N_TYPES; t++)
    {
      OptCase e = { NULL, cfg_with (t, 0.05f, 0, FALSE, 0, 0) };
      e.label = t == KILT_OPT_RMSPROP    ? "rmsprop epsilon 0.3"
                : t == KILT_OPT_ADAM     ? "adam epsilon 0.3"
                : t == KILT_OPT_ADADELTA ? "adadelta epsilon 0.3"
                                         : "adagrad epsilon 0.3";
      e.cfg.epsilon = 0.3f;
      g_array_append_val (a, e);
    }
  return a;
}

static void
test_names_and_defaults (void)
{
  g_autoptr (GError) error = NULL;

  for (int t = 0; t < KILT_OPT_N_TYPES; t++)
    {
      KiltOptimizerType back = KILT_OPT_N_TYPES;
      g_autofree char *upper = g_ascii_strup (kilt_optimizer_name (t), -1);
      KiltOptimizerConfig c = kilt_optimizer_config_default (t);

      g_assert_true (kilt_optimizer_from_name (upper, &back));
      g_assert_cmpint (back, ==, t);
      g_assert_true (kilt_optimizer_config_check (&c, &error));
      g_assert_no_error (error);
      g_assert_cmpfloat (c.epsilon, ==, 1e-7f);
    }
  g_assert_false (kilt_optimizer_from_name ("lbfgs", NULL));
  /* The Keras defaults the brief and the Keras examples rely on. */
  g_assert_cmpfloat (kilt_optimizer_config_default (KILT_OPT_SGD).lr, ==, 0.01f);
  g_assert_cmpfloat (kilt_optimizer_config_default (KILT_OPT_SGD).momentum, ==, 0.0f);
  g_assert_cmpfloat (kilt_optimizer_config_default (KILT_OPT_RMSPROP).rho, ==, 0.9f);
  g_assert_cmpfloat (kilt_optimizer_config_default (KILT_OPT_ADAM).beta2, ==, 0.999f);
  g_assert_cmpfloat (kilt_optimizer_config_default (KILT_OPT_ADADELTA).lr, ==, 1.0f);
  g_assert_cmpfloat (kilt_optimizer_config_default (KILT_OPT_ADADELTA).rho, ==, 0.95f);
  g_assert_cmpfloat (kilt_optimizer_config_default (KILT_OPT_ADAGRAD).lr, ==, 0.01f);

  {
    KiltOptimizerConfig bad = kilt_optimizer_config_default (KILT_OPT_RMSPROP);
    bad.rho = 1.5f;
    g_assert_false (kilt_optimizer_config_check (&bad, &error));
    g_assert_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_INVALID);
    g_assert_nonnull (strstr (error->message, "rho"));
    g_clear_error (&error);
    bad = kilt_optimizer_config_default (KILT_OPT_SGD);
    bad.lr = -1;
    g_assert_false (kilt_optimizer_config_check (&bad, &error));
    g_assert_nonnull (strstr (error->message, "learning rate"));
  }

  /* State sizes for the planner. */
  {
    KiltOptimizerConfig s = kilt_optimizer_config_default (KILT_OPT_SGD);
    g_assert_cmpuint (kilt_optimizer_state_floats (&s, 10), ==, 0);
    s.momentum = 0.9f;
    g_assert_cmpuint (kilt_optimizer_state_floats (&s, 10), ==, 10);
    s = kilt_optimizer_config_default (KILT_OPT_ADAM);
    g_assert_cmpuint (kilt_optimizer_state_floats (&s, 10), ==, 20);
    s = kilt_optimizer_config_default (KILT_OPT_ADADELTA);
    g_assert_cmpuint (kilt_optimizer_state_floats (&s, 10), ==, 20);
    s = kilt_optimizer_config_default (KILT_OPT_RMSPROP);
    g_assert_cmpuint (kilt_optimizer_state_floats (&s, 10), ==, 10);
    s = kilt_optimizer_config_default (KILT_OPT_ADAGRAD);
    g_assert_cmpuint (kilt_optimizer_state_floats (&s, 10), ==, 10);
  }
}

/* One step on three numbers, written out in closed form from zero (Adagrad: 0.1) state. */
static void
closed_form (const KiltOptimizerConfig *c, guint64 it, const double *p0, const double *g0,
             double *out)
{
  double lr = c->lr / (1.0 + c->decay * (double)it);

  for (int i = 0; i < 3; i++)
    {
      double g = g0[i] + c->weight_decay * p0[i], ag = fabs (g);
      switch (c->type)
        {
          case KILT_OPT_SGD:
            out[i] = p0[i] - lr * g * (c->nesterov ? 1.0 + c->momentum : 1.0);
            break;
          case KILT_OPT_RMSPROP:
            out[i] = p0[i] - lr * g / (sqrt (1.0 - c->rho) * ag + c->epsilon);
            break;
          case KILT_OPT_ADAM:
            {
              double t = (double)it + 1;
              double c1 = 1.0 - pow (c->beta1, t), c2 = 1.0 - pow (c->beta2, t);
              double m = (1.0 - c->beta1) * g, v = (1.0 - c->beta2) * g * g;
              out[i] = p0[i] - lr * (sqrt (c2) / c1) * m / (sqrt (v) + c->epsilon);
              break;
            }
          case KILT_OPT_ADADELTA:
            out[i]
                = p0[i]
                  - lr * g * sqrt ((double)c->epsilon) / sqrt ((1.0 - c->rho) * g * g + c->epsilon);
            break;
          case KILT_OPT_ADAGRAD:
            out[i] = p0[i] - lr * g / (sqrt (0.1 + g * g) + c->epsilon);
            break;
          default:
            g_assert_not_reached ();
        }
    }
}

static void
test_reference_closed_form (void)
{
  g_autoptr (GArray) cases = all_cases ();
  KiltRng rng;

  kilt_rng_init (&rng, 42);
  for (guint k = 0; k < cases->len; k++)
    {
      const OptCase *oc = &g_array_index (cases, OptCase, k);
      double p0[3], g[3], p[3], want[3], state[6];
      guint64 it = oc->cfg.decay > 0 ? 7 : 0;

      for (int i = 0; i < 3; i++)
        {
          p0[i] = p[i] = kilt_rng_normal (&rng);
          g[i] = kilt_rng_normal (&rng) * (i + 1);
        }
      kilt_optimizer_reference_init (&oc->cfg, 3, state);
      kilt_optimizer_reference_step (&oc->cfg, 3, p, g, state, it);
      closed_form (&oc->cfg, it, p0, g, want);
      for (int i = 0; i < 3; i++)
        {
          if (fabs (p[i] - want[i]) > 1e-12 * (1 + fabs (want[i])))
            g_error ("%s: reference %.15g, closed form %.15g at %d", oc->label, p[i], want[i], i);
          g_assert_cmpfloat (fabs (p[i] - p0[i]), >, 1e-6); /* it moved */
        }
    }

  /* Two steps of momentum: the velocity carries over. */
  {
    KiltOptimizerConfig c = cfg_with (KILT_OPT_SGD, 0.1f, 0.9f, FALSE, 0, 0);
    double p = 0.3, v = 0, g1 = 1.5, g2 = -0.25, want;
    double mom = c.momentum, lr = c.lr;
    kilt_optimizer_reference_step (&c, 1, &p, &g1, &v, 0);
    kilt_optimizer_reference_step (&c, 1, &p, &g2, &v, 1);
    want = 0.3 - lr * g1 + (-mom * lr * g1 - lr * g2);
    g_assert_cmpfloat (fabs (p - want), <, 1e-14);
  }
}

/* Worst |a - b| relative to (|b| + scale). */
static double
max_rel_err (const float *a, const double *b, gsize n, double scale)
{
  double worst = 0;

  for (gsize i = 0; i < n; i++)
    worst = MAX (worst, fabs (a[i] - b[i]) / (fabs (b[i]) + scale));
  return worst;
}

static void
test_device_vs_reference (void)
{
  KiltContext *ctx = kilt_test_context ();
  g_autoptr (GArray) cases = all_cases ();
  const gsize n = 3001; /* not a multiple of the work-group size */
  const guint steps = 6;
  g_autoptr (GError) error = NULL;
  KiltRng rng;

  if (ctx == NULL)
    return;
  kilt_rng_init (&rng, 7);
  for (guint k = 0; k < cases->len; k++)
    {
      const OptCase *oc = &g_array_index (cases, OptCase, k);
      gsize ns = kilt_optimizer_state_floats (&oc->cfg, n);
      g_autofree float *pf = g_new (float, n), *gf = g_new (float, n);
      g_autofree float *sf = g_new (float, MAX (ns, 1));
      g_autofree double *pd = g_new (double, n), *gd = g_new (double, n), *p0 = g_new (double, n);
      g_autofree double *sd = g_new (double, MAX (ns, 1));
      KiltBuffer *params, *grads;
      KiltOptimizer *opt;
      guint64 it0 = oc->cfg.decay > 0 ? 1000 : 0;
      double moved = 0, err;

      opt = kilt_optimizer_new (ctx, &oc->cfg, n, &error);
      g_assert_no_error (error);
      g_assert_cmpint (ctx->mem.live[KILT_MEM_OPTIMIZER], ==, ns * sizeof (float));
      params = kilt_buffer_new (ctx, KILT_MEM_WEIGHTS, n * sizeof (float), &error, "params");
      grads = kilt_buffer_new (ctx, KILT_MEM_GRADIENTS, n * sizeof (float), &error, "grads");
      g_assert_no_error (error);
      for (gsize i = 0; i < n; i++)
        p0[i] = pd[i] = pf[i] = (float)kilt_rng_normal (&rng);
      g_assert_true (kilt_buffer_write (params, 0, pf, n * sizeof (float), &error));
      kilt_optimizer_reference_init (&oc->cfg, n, sd);

      for (guint s = 0; s < steps; s++)
        {
          /* Gradients of mixed scales, as real layers give. */
          for (gsize i = 0; i < n; i++)
            gd[i] = gf[i] = (float)(kilt_rng_normal (&rng) * exp (2 * kilt_rng_uniform (&rng) - 1));
          g_assert_true (kilt_buffer_write (grads, 0, gf, n * sizeof (float), &error));
          g_assert_true (kilt_optimizer_step (opt, params->mem, grads->mem, it0 + s, &error));
          g_assert_no_error (error);
          kilt_optimizer_reference_step (&oc->cfg, n, pd, gd, sd, it0 + s);
        }
      g_assert_true (kilt_buffer_read (params, 0, pf, n * sizeof (float), &error));
      for (gsize i = 0; i < n; i++)
        moved = MAX (moved, fabs (pd[i] - p0[i]));
      /* Parameters are O(1); float rounding of p itself is ~6e-8 per step. */
      err = max_rel_err (pf, pd, n, 1.0);
      if (g_test_verbose ())
        g_printerr ("%-32s moved %.3g, param error %.2g\n", oc->label, moved, err);
      g_assert_cmpfloat (moved, >, 1e-3);
      /* And small against the update itself, so a wrong update cannot hide under p. */
      if (err > 2e-6 || err * 2 > 1e-3 * moved)
        g_error ("%s: device parameters differ from the reference by %.3g (update %.3g)", oc->label,
                 err, moved);

      if (ns > 0)
        {
          double scale = 0;
          g_assert_true (kilt_optimizer_read_state (opt, sf, &error));
          for (gsize i = 0; i < ns; i++)
            scale = MAX (scale, fabs (sd[i]));
          err = max_rel_err (sf, sd, ns, 1e-3 * scale);
          if (err > 1e-5)
            g_error ("%s: device state differs from the reference by %.3g", oc->label, err);
        }

      /* Checkpoint: state written back continues exactly as the reference does. */
      if (ns > 0)
        {
          for (gsize i = 0; i < ns; i++)
            {
              /* Accumulators of squares must stay positive. */
              gboolean square
                  = oc->cfg.type != KILT_OPT_SGD && !(oc->cfg.type == KILT_OPT_ADAM && i < n);
              double v = kilt_rng_normal (&rng) * 0.1;
              sd[i] = sf[i] = (float)(square ? fabs (v) : v);
            }
          g_assert_true (kilt_optimizer_write_state (opt, sf, &error));
          g_assert_true (kilt_buffer_read (params, 0, pf, n * sizeof (float), &error));
          for (gsize i = 0; i < n; i++)
            {
              pd[i] = pf[i];
              gd[i] = gf[i] = (float)kilt_rng_normal (&rng);
            }
          g_assert_true (kilt_buffer_write (grads, 0, gf, n * sizeof (float), &error));
          g_assert_true (kilt_optimizer_step (opt, params->mem, grads->mem, it0 + steps, &error));
          kilt_optimizer_reference_step (&oc->cfg, n, pd, gd, sd, it0 + steps);
          g_assert_true (kilt_buffer_read (params, 0, pf, n * sizeof (float), &error));
          err = max_rel_err (pf, pd, n, 1.0);
          if (err > 2e-6)
            g_error ("%s: after write_state, device differs by %.3g", oc->label, err);
        }
      g_assert_no_error (error);
      kilt_optimizer_free (opt);
      kilt_buffer_free (params);
      kilt_buffer_free (grads);
      g_assert_cmpint (ctx->mem.live[KILT_MEM_OPTIMIZER], ==, 0);
    }
}

/* f(x) = 1/2 x'Ax - b'x with A = Q'Q/n + 0.2 I (symmetric positive definite). */
typedef struct
{
  guint n;
  double *A, *b;
} Quadratic;

static double
quad_value (const Quadratic *q, const float *x, double *grad)
{
  double f = 0;

  for (guint i = 0; i < q->n; i++)
    {
      double ax = 0;
      for (guint j = 0; j < q->n; j++)
        ax += q->A[i * q->n + j] * x[j];
      f += 0.5 * x[i] * ax - q->b[i] * x[i];
      if (grad)
        grad[i] = ax - q->b[i];
    }
  return f;
}

static void
test_quadratic (void)
{
  KiltContext *ctx = kilt_test_context ();
  const guint n = 16, steps = 400;
  g_autoptr (GError) error = NULL;
  Quadratic q = { n, g_new0 (double, n *n), g_new0 (double, n) };
  g_autofree double *Q = g_new (double, n *n), *gd = g_new (double, n);
  g_autofree float *x0 = g_new (float, n), *x = g_new (float, n), *gf = g_new (float, n);
  /* Per optimizer settings that suit a problem of this scale (the defaults suit networks). */
  KiltOptimizerConfig cfgs[] = {
    cfg_with (KILT_OPT_SGD, 0.1f, 0, FALSE, 0, 0),
    cfg_with (KILT_OPT_SGD, 0.02f, 0.9f, FALSE, 0, 0),
    cfg_with (KILT_OPT_SGD, 0.02f, 0.9f, TRUE, 0, 0),
    cfg_with (KILT_OPT_RMSPROP, 0.01f, 0, FALSE, 0, 0),
    cfg_with (KILT_OPT_ADAM, 0.05f, 0, FALSE, 0, 0),
    cfg_with (KILT_OPT_ADADELTA, 1.0f, 0, FALSE, 0, 0), /* epsilon below */
    cfg_with (KILT_OPT_ADAGRAD, 0.5f, 0, FALSE, 0, 0),
  };
  KiltRng rng;
  double f_start, f_best;

  if (ctx == NULL)
    return;
  /* Adadelta's first steps are about sqrt (epsilon) long; with 1e-7 it needs thousands of
   * steps to cross a problem of unit scale. */
  cfgs[5].epsilon = 1e-3f;
  kilt_rng_init (&rng, 1234);
  for (guint i = 0; i < n * n; i++)
    Q[i] = kilt_rng_normal (&rng);
  for (guint i = 0; i < n; i++)
    {
      for (guint j = 0; j < n; j++)
        {
          double s = 0;
          for (guint k = 0; k < n; k++)
            s += Q[k * n + i] * Q[k * n + j];
          q.A[i * n + j] = s / n + (i == j ? 0.2 : 0.0);
        }
      q.b[i] = kilt_rng_normal (&rng);
      x0[i] = (float)kilt_rng_normal (&rng);
    }
  f_start = quad_value (&q, x0, NULL);
  /* The minimum, from A x = b by Cholesky (A is symmetric positive definite). */
  {
    g_autofree double *L = g_new0 (double, n *n), *y = g_new (double, n);
    g_autofree float *xs = g_new (float, n);
    g_autofree double *xd = g_new (double, n);
    for (guint i = 0; i < n; i++)
      for (guint j = 0; j <= i; j++)
        {
          double s = q.A[i * n + j];
          for (guint k = 0; k < j; k++)
            s -= L[i * n + k] * L[j * n + k];
          L[i * n + j] = i == j ? sqrt (s) : s / L[j * n + j];
        }
    for (guint i = 0; i < n; i++)
      {
        double s = q.b[i];
        for (guint k = 0; k < i; k++)
          s -= L[i * n + k] * y[k];
        y[i] = s / L[i * n + i];
      }
    for (guint i = n; i-- > 0;)
      {
        double s = y[i];
        for (guint k = i + 1; k < n; k++)
          s -= L[k * n + i] * xd[k];
        xd[i] = s / L[i * n + i];
        xs[i] = (float)xd[i];
      }
    f_best = quad_value (&q, xs, gd);
    for (guint i = 0; i < n; i++)
      g_assert_cmpfloat (fabs (gd[i]), <, 1e-4);
  }
  g_assert_cmpfloat (f_start - f_best, >, 1.0);

  for (guint c = 0; c < G_N_ELEMENTS (cfgs); c++)
    {
      KiltOptimizer *opt = kilt_optimizer_new (ctx, &cfgs[c], n, &error);
      KiltBuffer *params = kilt_buffer_new (ctx, KILT_MEM_WEIGHTS, n * 4, &error, "x");
      KiltBuffer *grads = kilt_buffer_new (ctx, KILT_MEM_GRADIENTS, n * 4, &error, "grad");
      double f_end, f_mid = 0;

      g_assert_no_error (error);
      g_assert_true (kilt_buffer_write (params, 0, x0, n * 4, &error));
      for (guint s = 0; s < steps; s++)
        {
          g_assert_true (kilt_buffer_read (params, 0, x, n * 4, &error));
          if (s == steps / 2)
            f_mid = quad_value (&q, x, NULL);
          quad_value (&q, x, gd);
          for (guint i = 0; i < n; i++)
            gf[i] = (float)gd[i];
          g_assert_true (kilt_buffer_write (grads, 0, gf, n * 4, &error));
          g_assert_true (kilt_optimizer_step (opt, params->mem, grads->mem, s, &error));
        }
      g_assert_true (kilt_buffer_read (params, 0, x, n * 4, &error));
      g_assert_no_error (error);
      f_end = quad_value (&q, x, NULL);
      if (g_test_verbose ())
        g_printerr ("%-9s%s%s: f %.4f -> %.4f (half-way %.4f, minimum %.4f)\n",
                    kilt_optimizer_name (cfgs[c].type), cfgs[c].momentum > 0 ? " momentum" : "",
                    cfgs[c].nesterov ? " nesterov" : "", f_start, f_end, f_mid, f_best);
      /* Most of the way to the minimum (adaptive methods hover near it rather than settle). */
      if (!(f_end - f_best < 0.1 * (f_start - f_best)))
        g_error ("%s: closed only %.1f%% of the gap to the minimum",
                 kilt_optimizer_name (cfgs[c].type), 100 * (f_start - f_end) / (f_start - f_best));
      kilt_optimizer_free (opt);
      kilt_buffer_free (params);
      kilt_buffer_free (grads);
    }
  g_free (q.A);
  g_free (q.b);
}

/* Figures for the report (run with -m perf): one step over cifar10_cnn's 1,250,858 params. */
static void
test_throughput (void)
{
  KiltContext *ctx = kilt_test_context ();
  const gsize n = 1250858;
  const guint steps = 50;

  if (ctx == NULL)
    return;
  if (!g_test_perf ())
    {
      g_test_skip ("a measurement; run with -m perf");
      return;
    }
  for (int t = 0; t < KILT_OPT_N_TYPES; t++)
    {
      g_autoptr (GError) error = NULL;
      KiltOptimizerConfig c = kilt_optimizer_config_default (t);
      KiltOptimizer *opt = kilt_optimizer_new (ctx, &c, n, &error);
      KiltBuffer *p = kilt_buffer_new (ctx, KILT_MEM_WEIGHTS, n * 4, &error, "p");
      KiltBuffer *g = kilt_buffer_new (ctx, KILT_MEM_GRADIENTS, n * 4, &error, "g");
      gint64 t0;
      double s;

      g_assert_no_error (error);
      g_assert_true (kilt_optimizer_step (opt, p->mem, g->mem, 0, &error));
      g_assert_true (kilt_context_finish (ctx, &error));
      t0 = g_get_monotonic_time ();
      for (guint i = 0; i < steps; i++)
        g_assert_true (kilt_optimizer_step (opt, p->mem, g->mem, i + 1, &error));
      g_assert_true (kilt_context_finish (ctx, &error));
      s = (g_get_monotonic_time () - t0) / 1e6 / steps;
      g_test_message ("%-8s %.3f ms per step, %.1f GB/s moved, on %s", kilt_optimizer_name (t),
                      1e3 * s, n * 4.0 * (3 + 2 * kilt_optimizer_state_slots (&c)) / s / 1e9,
                      ctx->info->name);
      kilt_optimizer_free (opt);
      kilt_buffer_free (p);
      kilt_buffer_free (g);
    }
}

/* A model's runs as the device steps them: gaps (frozen layers' parameters), a fixed run and
 * one that stops after its epochs keep their values and state, the rest follow the reference,
 * at their own rate multipliers (airbench's 64 for BatchNorm biases, and below 1); several
 * optimizers, over three epochs. */
static void
test_ranges (void)
{
  KiltContext *ctx = kilt_test_context ();
  /* Parameters 0-99 free, 100-149 frozen (no gradient), then runs in the gradient buffer at
   * 0, 100, 340 and 400. */
  const KiltParamRange ranges[] = {
    { 0, 0, 100, FALSE, 0, 1.0f },
    { 150, 100, 240, TRUE, 0, 1.0f },
    { 390, 340, 60, FALSE, 2, 0.25f },
    { 450, 400, 77, FALSE, 0, 64.0f },
  };
  const gsize n_params = 527, n_grads = 477;
  KiltOptimizerConfig cfgs[3];
  g_autoptr (GError) error = NULL;
  KiltRng rng;

  if (ctx == NULL)
    return;
  cfgs[0] = kilt_optimizer_config_default (KILT_OPT_SGD);
  cfgs[0].momentum = 0.85f;
  cfgs[0].nesterov = TRUE;
  cfgs[0].weight_decay = 0.01f;
  cfgs[1] = kilt_optimizer_config_default (KILT_OPT_ADAM);
  cfgs[2] = kilt_optimizer_config_default (KILT_OPT_SGD); /* no momentum */
  cfgs[2].weight_decay = 0.1f;
  kilt_rng_init (&rng, 31);
  for (guint k = 0; k < G_N_ELEMENTS (cfgs); k++)
    {
      const KiltOptimizerConfig *c = &cfgs[k];
      gsize ns = kilt_optimizer_state_floats (c, n_grads);
      g_autofree float *pf = g_new (float, n_params), *gf = g_new (float, n_grads);
      g_autofree float *sf = g_new (float, MAX (ns, 1));
      g_autofree double *pd = g_new (double, n_params), *gd = g_new (double, n_grads);
      g_autofree double *p0 = g_new (double, n_params), *sd = g_new0 (double, MAX (ns, 1));
      g_autofree double *p_epoch2 = g_new (double, n_params);
      KiltBuffer *params, *grads;
      KiltOptimizer *opt = kilt_optimizer_new (ctx, c, n_grads, &error);
      guint64 it = 0;

      g_assert_no_error (error);
      kilt_optimizer_set_ranges (opt, ranges, G_N_ELEMENTS (ranges));
      params = kilt_buffer_new (ctx, KILT_MEM_WEIGHTS, n_params * 4, &error, "params");
      grads = kilt_buffer_new (ctx, KILT_MEM_GRADIENTS, n_grads * 4, &error, "grads");
      for (gsize i = 0; i < n_params; i++)
        p0[i] = pd[i] = pf[i] = (float)kilt_rng_normal (&rng);
      g_assert_true (kilt_buffer_write (params, 0, pf, n_params * 4, &error));
      kilt_optimizer_reference_init (c, n_grads, sd);
      for (guint epoch = 0; epoch < 3; epoch++)
        {
          kilt_optimizer_set_epoch (opt, epoch);
          if (epoch == 2)
            memcpy (p_epoch2, pd, sizeof (double) * n_params);
          for (guint s = 0; s < 3; s++, it++)
            {
              for (gsize i = 0; i < n_grads; i++)
                gd[i] = gf[i] = (float)kilt_rng_normal (&rng);
              g_assert_true (kilt_buffer_write (grads, 0, gf, n_grads * 4, &error));
              g_assert_true (kilt_optimizer_step (opt, params->mem, grads->mem, it, &error));
              kilt_optimizer_reference_step_ranges (c, ranges, G_N_ELEMENTS (ranges), epoch,
                                                    n_grads, pd, gd, sd, it);
            }
        }
      g_assert_true (kilt_buffer_read (params, 0, pf, n_params * 4, &error));
      g_assert_cmpfloat (max_rel_err (pf, pd, n_params, 1.0), <=, 2e-6);
      /* What the runs' rules say, on the reference itself: the frozen gap and the fixed run
       * never moved, the epoch-limited run stopped after epoch 1, the others moved. */
      for (gsize i = 100; i < 390; i++)
        g_assert_cmpfloat (pd[i], ==, p0[i]);
      for (gsize i = 390; i < 450; i++)
        {
          g_assert_cmpfloat (pd[i], ==, p_epoch2[i]);
          g_assert_cmpfloat (pd[i], !=, p0[i]);
        }
      for (gsize i = 450; i < n_params; i++)
        g_assert_cmpfloat (pd[i], !=, p_epoch2[i]);
      /* The multiplier in the reference's own terms: plain SGD's step from p0 is
       * -lr m (g + wd / m p0) = -lr (m g + wd p0), checked on a fresh copy. */
      if (c->type == KILT_OPT_SGD && c->momentum == 0.0f)
        {
          g_autofree double *q = g_memdup2 (p0, sizeof (double) * n_params);
          kilt_optimizer_reference_step_ranges (c, ranges, G_N_ELEMENTS (ranges), 0, n_grads, q, gd,
                                                NULL, 0);
          for (gsize i = 450; i < n_params; i++)
            g_assert_cmpfloat (
                fabs (q[i]
                      - (p0[i] - (double)c->lr * (64.0 * gd[i - 50] + c->weight_decay * p0[i]))),
                <=, 1e-12 * (1 + fabs (p0[i])));
          for (gsize i = 0; i < 100; i++)
            g_assert_cmpfloat (
                fabs (q[i] - (p0[i] - (double)c->lr * (gd[i] + c->weight_decay * p0[i]))), <=,
                1e-12 * (1 + fabs (p0[i])));
        }
      if (ns > 0)
        {
          g_assert_true (kilt_optimizer_read_state (opt, sf, &error));
          g_assert_cmpfloat (max_rel_err (sf, sd, ns, 1e-3), <=, 1e-5);
          /* The fixed run's state never left its start. */
          for (gsize i = 100; i < 340; i++)
            g_assert_cmpfloat (sf[i], ==, 0.0f);
        }
      g_assert_no_error (error);
      kilt_optimizer_free (opt);
      kilt_buffer_free (params);
      kilt_buffer_free (grads);
    }
}

int
main (int argc, char **argv)
{
  int rc;

  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/optimizer/names-defaults", test_names_and_defaults);
  g_test_add_func ("/optimizer/reference-closed-form", test_reference_closed_form);
  g_test_add_func ("/optimizer/device-vs-reference", test_device_vs_reference);
  g_test_add_func ("/optimizer/ranges", test_ranges);
  g_test_add_func ("/optimizer/quadratic", test_quadratic);
  g_test_add_func ("/optimizer/throughput", test_throughput);
  rc = g_test_run ();
  kilt_test_context_close ();
  return rc;
}
