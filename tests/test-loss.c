/* Losses on the device against the plain-C reference, and the reference's gradient against
 * finite differences (softmax cross-entropy through the softmax, from the logits). */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "kilt-test-util.h"
#include "kilt-loss.h"
#include "kilt-error.h"

#include <math.h>
#include <string.h>

#define TOL_DEVICE 2e-5 /* float device against double reference, relative to the largest */
#define TOL_FD     1e-6 /* double reference against double finite differences */

typedef struct
{
  KiltLossType loss;
  guint batch, n_valid, n_out;
  double *x;   /* softmax CE: logits; otherwise the outputs */
  double *out; /* what the loss sees: softmax (x) or x, rounded to float */
  double *targets;
  double smoothing; /* softmax CE's label smoothing; 0 unless a test sets it */
} Case;

static void
softmax_rows (const double *z, double *p, guint rows, guint cols)
{
  for (guint r = 0; r < rows; r++)
    {
      const double *zr = z + (gsize)r * cols;
      double *pr = p + (gsize)r * cols, m = zr[0], s = 0;
      for (guint j = 1; j < cols; j++)
        m = MAX (m, zr[j]);
      for (guint j = 0; j < cols; j++)
        s += (pr[j] = exp (zr[j] - m));
      for (guint j = 0; j < cols; j++)
        pr[j] /= s;
    }
}

static void
case_outputs (Case *c, gboolean round_to_float)
{
  gsize n = (gsize)c->batch * c->n_out;

  if (c->loss == KILT_LOSS_SOFTMAX_CROSS_ENTROPY)
    softmax_rows (c->x, c->out, c->batch, c->n_out);
  else
    memcpy (c->out, c->x, sizeof (double) * n);
  if (round_to_float)
    for (gsize i = 0; i < n; i++)
      c->out[i] = (float)c->out[i];
}

static void
case_init (Case *c, KiltLossType loss, guint batch, guint n_valid, guint n_out, guint64 seed)
{
  gsize n = (gsize)batch * n_out;
  KiltRng rng;

  kilt_rng_init (&rng, seed);
  c->loss = loss;
  c->smoothing = 0;
  c->batch = batch;
  c->n_valid = n_valid;
  c->n_out = n_out;
  c->x = g_new (double, n);
  c->out = g_new (double, n);
  c->targets = g_new (double, n);
  for (gsize i = 0; i < n; i++)
    switch (loss)
      {
        case KILT_LOSS_SOFTMAX_CROSS_ENTROPY:
          c->x[i] = 2.0 * kilt_rng_normal (&rng);
          break;
        case KILT_LOSS_BINARY_CROSS_ENTROPY:
          c->x[i] = 0.02 + 0.96 * kilt_rng_uniform (&rng);
          c->targets[i] = kilt_rng_below (&rng, 2);
          break;
        default:
          c->x[i] = 4.0 * kilt_rng_uniform (&rng) - 2.0;
          c->targets[i] = 4.0 * kilt_rng_uniform (&rng) - 2.0;
          break;
      }
  if (loss == KILT_LOSS_SOFTMAX_CROSS_ENTROPY)
    for (guint r = 0; r < batch; r++)
      c->targets[r] = kilt_rng_below (&rng, n_out);
  case_outputs (c, TRUE);
}

static void
case_clear (Case *c)
{
  g_free (c->x);
  g_free (c->out);
  g_free (c->targets);
}

static KiltBuffer *
upload (KiltContext *ctx, const double *x, gsize n, gsize floats, const char *what)
{
  g_autoptr (GError) error = NULL;
  g_autofree float *f = g_new0 (float, MAX (floats, 1));
  KiltBuffer *b = kilt_buffer_new (ctx, KILT_MEM_WORKSPACE, 4 * MAX (floats, 1), &error,
                                   "loss test %s", what);

  g_assert_no_error (error);
  for (gsize i = 0; i < n; i++)
    f[i] = (float)x[i];
  g_assert_true (kilt_buffer_write (b, 0, f, 4 * floats, &error));
  g_assert_no_error (error);
  return b;
}

static double
max_rel (const float *dev, const double *ref, gsize n)
{
  double diff = 0, scale = 0;

  for (gsize i = 0; i < n; i++)
    {
      g_assert_true (isfinite (dev[i]));
      diff = MAX (diff, fabs (dev[i] - ref[i]));
      scale = MAX (scale, fabs (ref[i]));
    }
  return diff / MAX (scale, 1e-12);
}

/* Runs the loss twice on the device onto a metrics buffer holding an earlier tally, and checks
 * the gradient, the tally (earlier + 2 x this batch) and the untouched reserved slot. */
static void
device_check (const Case *c, const char *label)
{
  KiltContext *ctx = kilt_test_context ();
  gsize n = (gsize)c->batch * c->n_out;
  gsize n_targets = c->loss == KILT_LOSS_SOFTMAX_CROSS_ENTROPY ? c->batch : n;
  gsize n_metrics = kilt_loss_metrics_floats (c->batch);
  g_autoptr (GError) error = NULL;
  g_autoptr (KiltBuffer) ob = NULL, tb = NULL, db = NULL, mb = NULL;
  g_autofree double *ref_d = g_new (double, n), *pre = g_new0 (double, n_metrics);
  g_autofree double *garbage = g_new (double, n);
  g_autofree float *dev_d = g_new (float, n), *m = g_new (float, n_metrics);
  double ref_m[3], e_d, e_loss, e_correct;
  float first_loss;

  if (ctx == NULL)
    return;
  pre[0] = 3.25;
  pre[1] = 2;
  pre[2] = 11;
  pre[3] = 42;
  for (gsize i = 0; i < n; i++)
    garbage[i] = 1000.0;
  ob = upload (ctx, c->out, n, n, "outputs");
  tb = upload (ctx, c->targets, n_targets, n_targets, "targets");
  db = upload (ctx, garbage, n, n, "gradient");
  mb = upload (ctx, pre, 4, n_metrics, "metrics");
  for (int rep = 0; rep < 2; rep++)
    {
      g_assert_true (kilt_loss_enqueue_smoothed (ctx, c->loss, (float)c->smoothing, c->batch,
                                                 c->n_valid, c->n_out, ob->mem, tb->mem, db->mem,
                                                 mb->mem, &error));
      g_assert_no_error (error);
    }
  g_assert_true (kilt_buffer_read (db, 0, dev_d, 4 * n, &error));
  g_assert_true (kilt_buffer_read (mb, 0, m, 4 * 4, &error));
  g_assert_no_error (error);

  kilt_loss_reference_smoothed (c->loss, c->smoothing, c->batch, c->n_valid, c->n_out, c->out,
                                c->targets, ref_d, ref_m);
  e_d = max_rel (dev_d, ref_d, n);
  e_loss = fabs ((m[0] - pre[0]) / 2 - ref_m[0]) / MAX (fabs (ref_m[0]), 1e-12);
  e_correct = fabs ((m[1] - pre[1]) / 2 - ref_m[1]);
  g_test_message ("%s: loss %.6g (ref %.6g, rel err %.2g), correct %.4g (ref %.4g), dout err "
                  "%.2g",
                  label, (m[0] - pre[0]) / 2, ref_m[0], e_loss, (m[1] - pre[1]) / 2, ref_m[1], e_d);
  g_assert_cmpfloat (e_d, <, TOL_DEVICE);
  g_assert_cmpfloat (e_loss, <, TOL_DEVICE);
  g_assert_cmpfloat (e_correct, <, 1e-5 * MAX (1.0, ref_m[1]));
  g_assert_cmpfloat (m[2], ==, pre[2] + 2 * c->n_valid);
  g_assert_cmpfloat (m[3], ==, pre[3]);
  for (gsize i = (gsize)c->n_valid * c->n_out; i < n; i++)
    g_assert_cmpfloat (dev_d[i], ==, 0.0f);

  /* The sum has a fixed order: a fresh tally gives the same bits every time. */
  for (int rep = 0; rep < 2; rep++)
    {
      float zero[4] = { 0 };
      g_assert_true (kilt_buffer_write (mb, 0, zero, sizeof zero, &error));
      g_assert_true (kilt_loss_enqueue_smoothed (ctx, c->loss, (float)c->smoothing, c->batch,
                                                 c->n_valid, c->n_out, ob->mem, tb->mem, db->mem,
                                                 mb->mem, &error));
      g_assert_true (kilt_buffer_read (mb, 0, m, 4, &error));
      g_assert_no_error (error);
      if (rep == 0)
        first_loss = m[0];
      else
        g_assert_true (memcmp (&first_loss, &m[0], sizeof first_loss) == 0);
    }
}

/* The mean loss over the valid rows, from x (logits or outputs), in double. */
static double
mean_loss (Case *c)
{
  double m[3];

  case_outputs (c, FALSE);
  kilt_loss_reference_smoothed (c->loss, c->smoothing, c->batch, c->n_valid, c->n_out, c->out,
                                c->targets, NULL, m);
  return m[0] / m[2];
}

static void
fd_check (Case *c, const char *label)
{
  gsize n = (gsize)c->batch * c->n_out;
  g_autofree double *d = g_new (double, n);
  double m[3], worst = 0;

  case_outputs (c, FALSE);
  kilt_loss_reference_smoothed (c->loss, c->smoothing, c->batch, c->n_valid, c->n_out, c->out,
                                c->targets, d, m);
  for (gsize i = 0; i < n; i++)
    {
      double keep = c->x[i], h = 1e-6 * MAX (1.0, fabs (keep)), lp, lm, fd;
      c->x[i] = keep + h;
      lp = mean_loss (c);
      c->x[i] = keep - h;
      lm = mean_loss (c);
      c->x[i] = keep;
      fd = (lp - lm) / (2 * h);
      worst = MAX (worst, fabs (fd - d[i]) / MAX (1.0, MAX (fabs (fd), fabs (d[i]))));
    }
  case_outputs (c, TRUE);
  g_test_message ("%s: finite differences, worst %.2g over %" G_GSIZE_FORMAT " points", label,
                  worst, n);
  g_assert_cmpfloat (worst, <, TOL_FD);
}

static void
loss_cases (KiltLossType loss)
{
  static const guint shapes[][3] = {
    /* batch, n_valid, n_out */
    { 5, 5, 10 }, { 7, 4, 3 }, { 3, 3, 1 }, { 1, 1, 2 }, { 33, 17, 11 },
  };

  for (guint s = 0; s < G_N_ELEMENTS (shapes); s++)
    {
      Case c;
      g_autofree char *label = NULL;

      /* Softmax over one class is constant: nothing to learn or check. */
      if (loss == KILT_LOSS_SOFTMAX_CROSS_ENTROPY && shapes[s][2] < 2)
        continue;
      label = g_strdup_printf ("%s batch %u valid %u outputs %u", kilt_loss_name (loss),
                               shapes[s][0], shapes[s][1], shapes[s][2]);
      case_init (&c, loss, shapes[s][0], shapes[s][1], shapes[s][2], 100 + s);
      device_check (&c, label);
      fd_check (&c, label);
      case_clear (&c);
    }
}

/* Keras' label smoothing: against the reference on the device, the reference against finite
 * differences, and the loss against its split into the plain one-hot loss and the loss
 * against a uniform target, (1 - s) L_onehot + s L_uniform, with L_uniform written out here. */
static void
test_label_smoothing (void)
{
  static const guint shapes[][3] = { { 5, 5, 10 }, { 7, 4, 3 }, { 33, 17, 11 }, { 2, 2, 2 } };
  static const double amounts[] = { 0.2, 0.05, 0.9 };

  for (guint s = 0; s < G_N_ELEMENTS (shapes); s++)
    for (guint a = 0; a < G_N_ELEMENTS (amounts); a++)
      {
        Case c;
        double m[3], plain, uniform = 0, want;
        g_autofree char *label
            = g_strdup_printf ("smoothing %g batch %u valid %u outputs %u", amounts[a],
                               shapes[s][0], shapes[s][1], shapes[s][2]);

        case_init (&c, KILT_LOSS_SOFTMAX_CROSS_ENTROPY, shapes[s][0], shapes[s][1], shapes[s][2],
                   300 + 10 * s + a);
        c.smoothing = amounts[a];
        device_check (&c, label);
        fd_check (&c, label);

        case_outputs (&c, FALSE);
        kilt_loss_reference (c.loss, c.batch, c.n_valid, c.n_out, c.out, c.targets, NULL, m);
        plain = m[0];
        for (guint r = 0; r < c.n_valid; r++)
          for (guint j = 0; j < c.n_out; j++)
            uniform -= log (CLAMP (c.out[r * c.n_out + j], (double)1e-7f, (double)(1.0f - 1e-7f)))
                       / c.n_out;
        want = (1 - c.smoothing) * plain + c.smoothing * uniform;
        kilt_loss_reference_smoothed (c.loss, c.smoothing, c.batch, c.n_valid, c.n_out, c.out,
                                      c.targets, NULL, m);
        g_assert_cmpfloat_with_epsilon (m[0], want, 1e-12 * MAX (1.0, fabs (want)));
        /* Smoothing changes the loss, not the accuracy. */
        g_assert_cmpfloat (fabs (m[0] - plain), >, 1e-6);
        case_clear (&c);
      }
}

/* Out-of-range smoothing and smoothing of a loss other than categorical cross-entropy are
 * refused by name, on the device too. */
static void
test_label_smoothing_refused (void)
{
  static const float bad[] = { 1.0f, -0.1f, NAN, INFINITY };
  KiltContext *ctx = kilt_test_context ();
  g_autoptr (GError) error = NULL;

  g_assert_true (kilt_loss_check_smoothing (KILT_LOSS_SOFTMAX_CROSS_ENTROPY, 0.999f, NULL));
  g_assert_true (kilt_loss_check_smoothing (KILT_LOSS_MSE, 0.0f, NULL));
  for (guint i = 0; i < G_N_ELEMENTS (bad); i++)
    {
      g_assert_false (kilt_loss_check_smoothing (KILT_LOSS_SOFTMAX_CROSS_ENTROPY, bad[i], &error));
      g_assert_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_INVALID);
      g_assert_nonnull (strstr (error->message, "label smoothing"));
      g_assert_nonnull (strstr (error->message, "[0, 1)"));
      g_clear_error (&error);
    }
  g_assert_false (kilt_loss_check_smoothing (KILT_LOSS_BINARY_CROSS_ENTROPY, 0.1f, &error));
  g_test_message ("%s", error->message);
  g_assert_nonnull (strstr (error->message, "categorical cross-entropy"));
  g_assert_nonnull (strstr (error->message, kilt_loss_name (KILT_LOSS_BINARY_CROSS_ENTROPY)));
  g_clear_error (&error);
  if (ctx == NULL)
    return;
  {
    g_autoptr (KiltBuffer) a = kilt_buffer_new (ctx, KILT_MEM_WORKSPACE, 4 * 4096, &error, "x");
    g_assert_false (kilt_loss_enqueue_smoothed (ctx, KILT_LOSS_MSE, 0.2f, 8, 8, 10, a->mem, a->mem,
                                                a->mem, a->mem, &error));
    g_assert_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_INVALID);
  }
}

static void
test_softmax_ce (void)
{
  loss_cases (KILT_LOSS_SOFTMAX_CROSS_ENTROPY);
}

static void
test_bce (void)
{
  loss_cases (KILT_LOSS_BINARY_CROSS_ENTROPY);
}

static void
test_mse (void)
{
  loss_cases (KILT_LOSS_MSE);
}

/* Probabilities of exactly 0 and 1 (a saturated sigmoid or softmax) give a finite loss, the
 * clipped -log(1e-7) for a confident wrong answer, as Keras reports. */
static void
test_clipping (void)
{
  Case c;

  case_init (&c, KILT_LOSS_BINARY_CROSS_ENTROPY, 2, 2, 2, 7);
  c.out[0] = 0.0, c.targets[0] = 1;
  c.out[1] = 1.0, c.targets[1] = 1;
  c.out[2] = 1.0, c.targets[2] = 0;
  c.out[3] = 0.0, c.targets[3] = 0;
  device_check (&c, "bce saturated");
  {
    double m[3];
    kilt_loss_reference (c.loss, 2, 2, 2, c.out, c.targets, NULL, m);
    /* Each confident wrong output costs -log of the clip bound (1 - 1e-7 is 1 - 2^-23 in
     * float); each right one almost nothing; per sample the mean over 2 outputs. */
    double wrong_low = -log ((double)1e-7f), wrong_high = -log (1.0 - (double)(1.0f - 1e-7f));
    g_assert_cmpfloat (fabs (m[0] - (wrong_low + wrong_high) / 2), <, 1e-6);
  }
  case_clear (&c);

  case_init (&c, KILT_LOSS_SOFTMAX_CROSS_ENTROPY, 2, 2, 3, 8);
  memset (c.out, 0, sizeof (double) * 6);
  c.out[1] = 1.0, c.targets[0] = 0; /* all mass on a wrong class */
  c.out[3] = 1.0, c.targets[1] = 0; /* all mass on the right one */
  device_check (&c, "softmax ce saturated");
  case_clear (&c);
}

/* An even softmax costs log(n_out) per sample: ties in argmax go to the first class. */
static void
test_uniform_softmax (void)
{
  Case c;
  double m[3];

  case_init (&c, KILT_LOSS_SOFTMAX_CROSS_ENTROPY, 4, 4, 5, 9);
  for (gsize i = 0; i < 20; i++)
    c.x[i] = 0.5;
  c.targets[0] = 0;
  c.targets[1] = 4;
  c.targets[2] = 0;
  c.targets[3] = 2;
  case_outputs (&c, TRUE);
  kilt_loss_reference (c.loss, 4, 4, 5, c.out, c.targets, NULL, m);
  g_assert_cmpfloat (fabs (m[0] / 4 - log (5.0)), <, 1e-6);
  g_assert_cmpfloat (m[1], ==, 2);
  device_check (&c, "uniform softmax");
  case_clear (&c);
}

static void
test_small_metrics_buffer (void)
{
  KiltContext *ctx = kilt_test_context ();
  g_autoptr (GError) error = NULL;
  g_autoptr (KiltBuffer) a = NULL, m = NULL;

  if (ctx == NULL)
    return;
  a = kilt_buffer_new (ctx, KILT_MEM_WORKSPACE, 4 * 8 * 10, &error, "loss test outputs");
  m = kilt_buffer_new (ctx, KILT_MEM_WORKSPACE, 4 * (kilt_loss_metrics_floats (8) - 1), &error,
                       "loss test metrics");
  g_assert_no_error (error);
  g_assert_false (
      kilt_loss_enqueue (ctx, KILT_LOSS_MSE, 8, 8, 10, a->mem, a->mem, a->mem, m->mem, &error));
  g_assert_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_INVALID);
  g_assert_nonnull (strstr (error->message, "metrics"));
}

int
main (int argc, char **argv)
{
  int rc;

  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/loss/softmax-cross-entropy", test_softmax_ce);
  g_test_add_func ("/loss/binary-cross-entropy", test_bce);
  g_test_add_func ("/loss/mse", test_mse);
  g_test_add_func ("/loss/label-smoothing", test_label_smoothing);
  g_test_add_func ("/loss/label-smoothing-refused", test_label_smoothing_refused);
  g_test_add_func ("/loss/clipping", test_clipping);
  g_test_add_func ("/loss/uniform-softmax", test_uniform_softmax);
  g_test_add_func ("/loss/small-metrics-buffer", test_small_metrics_buffer);
  rc = g_test_run ();
  kilt_test_context_close ();
  return rc;
}
