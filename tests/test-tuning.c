/* CLBlast tuning per device: reading CLBlast tuner results (and refusing wrong ones), the
 * per-device store, and parameters that really reach CLBlast: GEMMs stay right with tuned ones,
 * go wrong with deliberately broken ones, and an incomplete set is refused. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "kilt-test-util.h"
#include "kilt-gemm.h"
#include "kilt-rng.h"
#include "kilt-tuning.h"

#include <glib/gstdio.h>
#include <math.h>

/* Parameters clblast_tuner_xgemm found best for PoCL 3.1 on the 2-core development machine
 * (its file clblast_xgemm_1_32.json): valid on any device, unlike CLBlast's defaults for
 * none. */
#define POCL_BEST                                                                                  \
  "GEMMK=0 KREG=1 KWG=32 KWI=2 MDIMA=8 MDIMC=8 MWG=64 NDIMB=8 NDIMC=8 NWG=32 PRECISION=32 "        \
  "SA=0 SB=0 STRM=0 STRN=0 VWM=4 VWN=4"

static char *
write_kernel_result (const char *dir, const char *file, const char *kernel, const char *device,
                     const char *precision, const char *params)
{
  g_autofree char *text = g_strdup_printf (
      "{\n  \"kernel_family\": \"xgemm_1\",\n  \"precision\": \"%s\",\n"
      "  \"best_kernel\": \"%s\",\n  \"best_time\": \"0.04\",\n"
      "  \"best_parameters\": \"%s\",\n  \"arg_m\": \"64\",\n  \"device\": \"%s\",\n"
      "  \"results\": [ { \"kernel\": \"%s\", \"time\": 0.220 } ]\n}\n",
      precision, kernel, params, device, kernel);
  char *path = g_build_filename (dir, file, NULL);

  g_assert_true (g_file_set_contents (path, text, -1, NULL));
  return path;
}

static char *
write_result (const char *dir, const char *file, const char *device, const char *precision,
              const char *params)
{
  return write_kernel_result (dir, file, "Xgemm", device, precision, params);
}

static gsize
value_of (const KiltTunedKernel *k, const char *name)
{
  for (guint i = 0; i < k->n; i++)
    if (g_str_equal (k->names[i], name))
      return k->values[i];
  g_assert_not_reached ();
}

static void
test_read (void)
{
  KiltContext *ctx = kilt_test_context ();
  g_autofree char *dir = kilt_test_tmpdir ();
  g_autoptr (GError) error = NULL;
  g_autofree char *named = NULL, *path = NULL;
  g_autoptr (KiltTunedKernel) k = NULL;

  if (!ctx)
    return;
  /* OpenCL names may end in blanks; the tuner's copy and the device's must still match. */
  named = g_strdup_printf ("%s   ", ctx->info->name);
  path = write_result (dir, "clblast_xgemm_1_32.json", named, "32", POCL_BEST);
  k = kilt_tuned_kernel_from_clblast (path, ctx->info, &error);
  g_assert_no_error (error);
  g_assert_cmpstr (k->kernel, ==, "Xgemm");
  g_assert_cmpuint (k->n, ==, 16); /* PRECISION is the call's, not a parameter */
  for (guint i = 0; i < k->n; i++)
    g_assert_cmpstr (k->names[i], !=, "PRECISION");
  g_assert_cmpuint (value_of (k, "MWG"), ==, 64);
  g_assert_cmpuint (value_of (k, "NWG"), ==, 32);
  g_assert_cmpuint (value_of (k, "VWN"), ==, 4);
  g_assert_cmpfloat_with_epsilon (k->best_ms, 0.04, 1e-9);

  /* clblast_tuner_xgemm_direct names the variant it timed; CLBlast's parameters are for all. */
  {
    g_autofree char *direct = write_kernel_result (
        dir, "clblast_xgemm_direct_1_32.json", "XgemmDirectTN", ctx->info->name, "32",
        "KWID=2 MDIMAD=8 MDIMCD=8 NDIMBD=8 NDIMCD=8 PADA=1 PADB=1 PRECISION=32 VWMD=4 VWND=4 "
        "WGD=32");
    g_autoptr (KiltTunedKernel) d = kilt_tuned_kernel_from_clblast (direct, ctx->info, &error);
    g_assert_no_error (error);
    g_assert_cmpstr (d->kernel, ==, "XgemmDirect");
    g_assert_cmpuint (d->n, ==, 10);
    g_assert_cmpuint (value_of (d, "WGD"), ==, 32);
  }
  /* clblast_tuner_routine_xgemm's switch between the tiled and the direct kernel. */
  {
    g_autofree char *routine
        = write_kernel_result (dir, "clblast_routine_xgemm_32.json", "gemm_kernel_selection",
                               ctx->info->name, "32", "XGEMM_MIN_INDIRECT_SIZE=1344");
    g_autoptr (KiltTunedKernel) r = kilt_tuned_kernel_from_clblast (routine, ctx->info, &error);
    g_assert_no_error (error);
    g_assert_cmpstr (r->kernel, ==, "GemmRoutine");
    g_assert_cmpuint (value_of (r, "XGEMM_MIN_INDIRECT_SIZE"), ==, 1344);
  }
}

static void
expect_refused (const char *path, const KiltDeviceInfo *dev, const char *phrase)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (KiltTunedKernel) k = kilt_tuned_kernel_from_clblast (path, dev, &error);

  g_assert_null (k);
  g_assert_nonnull (error);
  g_test_message ("%s", error->message);
  g_assert_nonnull (strstr (error->message, path));
  g_assert_nonnull (strstr (error->message, phrase));
}

static void
test_read_errors (void)
{
  KiltContext *ctx = kilt_test_context ();
  g_autofree char *dir = kilt_test_tmpdir ();
  g_autofree char *other = NULL, *dbl = NULL, *pair = NULL, *num = NULL, *junk = NULL;
  g_autofree char *bare = NULL;

  if (!ctx)
    return;
  other = write_result (dir, "other.json", "Some Other GPU", "32", POCL_BEST);
  expect_refused (other, ctx->info, "tuned on \"Some Other GPU\"");
  dbl = write_result (dir, "double.json", ctx->info->name, "64", POCL_BEST);
  expect_refused (dbl, ctx->info, "precision 64");
  pair = write_result (dir, "pair.json", ctx->info->name, "32", "MWG=64 NWG");
  expect_refused (pair, ctx->info, "\"NWG\" is not NAME=VALUE");
  num = write_result (dir, "num.json", ctx->info->name, "32", "MWG=64 NWG=3x");
  expect_refused (num, ctx->info, "not a whole number");
  junk = g_build_filename (dir, "junk.json", NULL);
  g_assert_true (g_file_set_contents (junk, "{ \"best_kernel\": ", -1, NULL));
  expect_refused (junk, ctx->info, "junk.json");
  bare = g_build_filename (dir, "bare.json", NULL);
  g_assert_true (g_file_set_contents (bare, "{ \"device\": \"x\" }", -1, NULL));
  expect_refused (bare, ctx->info, "not a CLBlast tuner result");
}

static void
test_store (void)
{
  KiltContext *ctx = kilt_test_context ();
  g_autofree char *dir = kilt_test_tmpdir ();
  g_autofree char *path = NULL, *store = NULL;
  g_autoptr (GError) error = NULL;
  g_autoptr (KiltTuning) t = NULL, back = NULL, none = NULL, broken = NULL;
  KiltTunedKernel *k, *kb;

  if (!ctx)
    return;
  store = kilt_tuning_path (ctx->info);
  g_assert_true (g_str_has_prefix (store, g_get_user_config_dir ()));
  none = kilt_tuning_load (ctx->info, &error);
  g_assert_no_error (error);
  g_assert_null (none);

  path = write_result (dir, "r.json", ctx->info->name, "32", POCL_BEST);
  t = kilt_tuning_new (ctx->info);
  k = kilt_tuned_kernel_from_clblast (path, ctx->info, &error);
  g_assert_no_error (error);
  g_ptr_array_add (t->kernels, k);
  t->note = g_strdup ("mlp batch 32: 40.2 -> 31.3 ms per step");
  g_assert_true (kilt_tuning_save (ctx->info, t, &error));
  g_assert_true (g_file_test (store, G_FILE_TEST_IS_REGULAR));

  back = kilt_tuning_load (ctx->info, &error);
  g_assert_no_error (error);
  g_assert_nonnull (back);
  g_assert_cmpstr (back->note, ==, t->note);
  g_assert_cmpuint (back->kernels->len, ==, 1);
  kb = g_ptr_array_index (back->kernels, 0);
  g_assert_cmpstr (kb->kernel, ==, "Xgemm");
  g_assert_cmpuint (kb->n, ==, k->n);
  for (guint i = 0; i < k->n; i++)
    g_assert_cmpuint (value_of (kb, k->names[i]), ==, k->values[i]);

  /* A damaged file is an error that says how to get rid of it. */
  g_assert_true (g_file_set_contents (store, "{ \"format\": \"something else\" }", -1, NULL));
  broken = kilt_tuning_load (ctx->info, &error);
  g_assert_null (broken);
  g_assert_nonnull (error);
  g_assert_nonnull (strstr (error->message, "--forget"));
  g_clear_error (&error);

  g_assert_true (kilt_tuning_forget (ctx->info, &error));
  g_assert_false (g_file_test (store, G_FILE_TEST_EXISTS));
  g_assert_true (kilt_tuning_forget (ctx->info, &error)); /* nothing left: still fine */
}

/* Largest relative error of C = A B (m x n x k, random) through CLBlast against doubles. */
static double
gemm_error (KiltContext *ctx, gsize m, gsize n, gsize k, GError **error)
{
  g_autofree float *a = g_new (float, m *k), *b = g_new (float, k *n), *c = g_new (float, m *n);
  KiltBuffer *da = kilt_buffer_new (ctx, KILT_MEM_ACTIVATIONS, 4 * m * k, error, "A");
  KiltBuffer *db = kilt_buffer_new (ctx, KILT_MEM_ACTIVATIONS, 4 * k * n, error, "B");
  KiltBuffer *dc = kilt_buffer_new (ctx, KILT_MEM_ACTIVATIONS, 4 * m * n, error, "C");
  double worst = 0;
  gboolean ok;
  KiltRng rng;

  kilt_rng_init (&rng, (guint32)(m * 31 + n * 7 + k));
  for (gsize i = 0; i < m * k; i++)
    a[i] = (float)(2 * kilt_rng_uniform (&rng) - 1);
  for (gsize i = 0; i < k * n; i++)
    b[i] = (float)(2 * kilt_rng_uniform (&rng) - 1);
  for (gsize i = 0; i < m * n; i++)
    c[i] = NAN;
  g_assert_true (kilt_buffer_write (da, 0, a, 4 * m * k, NULL));
  g_assert_true (kilt_buffer_write (db, 0, b, 4 * k * n, NULL));
  g_assert_true (kilt_buffer_write (dc, 0, c, 4 * m * n, NULL));
  ok = kilt_gemm (ctx, FALSE, FALSE, m, n, k, 1.0f, da->mem, 0, k, db->mem, 0, n, 0.0f, dc->mem, 0,
                  n, error)
       && kilt_buffer_read (dc, 0, c, 4 * m * n, error);
  for (gsize i = 0; ok && i < m; i++)
    for (gsize j = 0; j < n; j++)
      {
        double s = 0, mag = 0;
        for (gsize p = 0; p < k; p++)
          {
            s += (double)a[i * k + p] * b[p * n + j];
            mag += fabs ((double)a[i * k + p] * b[p * n + j]);
          }
        worst = isfinite (c[i * n + j]) ? MAX (worst, fabs (c[i * n + j] - s) / MAX (mag, 1e-30))
                                        : INFINITY;
      }
  kilt_buffer_free (da);
  kilt_buffer_free (db);
  kilt_buffer_free (dc);
  return ok ? worst : -1;
}

/* Xgemm with @params, and the GEMM routine's switch to that tiled kernel lowered (as
 * clblast_tuner_routine_xgemm may find): CLBlast's default for small products is its direct
 * kernel, which would leave the Xgemm parameters unused in a quick test. */
static KiltTuning *
tuning_with (const KiltDeviceInfo *dev, const char *params)
{
  g_autofree char *dir = kilt_test_tmpdir ();
  g_autofree char *path = write_result (dir, "t.json", dev->name, "32", params);
  g_autofree char *routine = write_kernel_result (dir, "r.json", "GemmRoutine", dev->name, "32",
                                                  "XGEMM_MIN_INDIRECT_SIZE=64");
  KiltTuning *t = kilt_tuning_new (dev);
  g_autoptr (GError) error = NULL;
  KiltTunedKernel *k = kilt_tuned_kernel_from_clblast (path, dev, &error);

  g_assert_no_error (error);
  g_ptr_array_add (t->kernels, k);
  k = kilt_tuned_kernel_from_clblast (routine, dev, &error);
  g_assert_no_error (error);
  g_ptr_array_add (t->kernels, k);
  return t;
}

static void
test_apply (void)
{
  KiltContext *ctx = kilt_test_context ();
  /* Not multiples of the tiles; large enough for the tiled kernel at the threshold set. */
  static const gsize shapes[][3] = { { 70, 90, 100 }, { 130, 70, 300 }, { 33, 200, 65 } };
  g_autoptr (GError) error = NULL;
  g_autoptr (KiltTuning) good = NULL, wrong = NULL, partial = NULL;
  KiltTunedKernel *k;

  if (!ctx)
    return;
  g_setenv ("KILT_GEMM", "clblast", TRUE);
  good = tuning_with (ctx->info, POCL_BEST);
  g_assert_true (kilt_tuning_apply (ctx->info, good, &error));
  g_assert_no_error (error);
  for (guint s = 0; s < G_N_ELEMENTS (shapes); s++)
    {
      double e = gemm_error (ctx, shapes[s][0], shapes[s][1], shapes[s][2], &error);
      g_assert_no_error (error);
      g_test_message ("tuned %zux%zux%zu: %.2g", shapes[s][0], shapes[s][1], shapes[s][2], e);
      g_assert_cmpfloat (e, <, 1e-5);
    }

  /* Work per thread (MWG / MDIMC = 2) narrower than the vector width (4): the kernel stores
   * nothing. That the result changes shows the values reach CLBlast's kernels. */
  wrong = tuning_with (ctx->info, "GEMMK=0 KREG=1 KWG=32 KWI=2 MDIMA=8 MDIMC=8 MWG=16 NDIMB=8 "
                                  "NDIMC=8 NWG=32 SA=0 SB=0 STRM=0 STRN=0 VWM=4 VWN=4");
  g_assert_true (kilt_tuning_apply (ctx->info, wrong, &error));
  {
    double e = gemm_error (ctx, 130, 70, 300, &error);
    g_test_message ("broken parameters: error %.2g (%s)", e, error ? error->message : "no error");
    g_assert_true (e < 0 || e > 1e-3);
    g_clear_error (&error);
  }

  /* A set without one of the kernel's parameters is refused, naming the kernel. */
  partial = tuning_with (ctx->info, POCL_BEST);
  k = g_ptr_array_index (partial->kernels, 0);
  k->n--;
  g_assert_false (kilt_tuning_apply (ctx->info, partial, &error));
  g_test_message ("%s", error->message);
  g_assert_nonnull (strstr (error->message, "Xgemm"));
  k->n++;
  g_clear_error (&error);

  /* Back to good ones: right again. */
  g_assert_true (kilt_tuning_apply (ctx->info, good, &error));
  g_assert_cmpfloat (gemm_error (ctx, 130, 70, 300, &error), <, 1e-5);
  g_assert_no_error (error);
  g_unsetenv ("KILT_GEMM");
}

int
main (int argc, char **argv)
{
  g_autofree char *config = NULL;
  int rc;

  /* Before anything asks GLib for it: this test's own configuration folder. */
  config = g_dir_make_tmp ("kilt-test-config-XXXXXX", NULL);
  g_setenv ("XDG_CONFIG_HOME", config, TRUE);
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/tuning/read", test_read);
  g_test_add_func ("/tuning/read-errors", test_read_errors);
  g_test_add_func ("/tuning/store", test_store);
  g_test_add_func ("/tuning/apply", test_apply);
  rc = g_test_run ();
  kilt_test_context_close ();
  {
    g_autofree char *store = g_build_filename (config, "kilt", "clblast", NULL);
    g_autofree char *kilt = g_build_filename (config, "kilt", NULL);
    g_rmdir (store);
    g_rmdir (kilt);
    g_rmdir (config);
  }
  return rc;
}
