/* kilt-cli compare, run as a person would: its per-device lines, the speed-up table against
 * the first device (checked against the store), the shared tag, and its usage errors. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "kilt-test-util.h"
#include "kilt-report.h"

#include <math.h>
#include <string.h>

static char *db;

/* Runs kilt-cli with @argv (NULL-terminated, without the program); returns its exit status. */
static int
run_cli (char **out, char **err, const char *first, ...)
{
  g_autoptr (GPtrArray) args = g_ptr_array_new ();
  g_autoptr (GSubprocessLauncher) launcher = NULL;
  g_autoptr (GSubprocess) proc = NULL;
  g_autoptr (GError) error = NULL;
  va_list ap;

  g_ptr_array_add (args, (char *)g_getenv ("KILT_CLI"));
  va_start (ap, first);
  for (const char *a = first; a; a = va_arg (ap, const char *))
    g_ptr_array_add (args, (char *)a);
  va_end (ap);
  g_ptr_array_add (args, NULL);
  launcher
      = g_subprocess_launcher_new (G_SUBPROCESS_FLAGS_STDOUT_PIPE | G_SUBPROCESS_FLAGS_STDERR_PIPE);
  g_subprocess_launcher_setenv (launcher, "KILT_RUNS_DB", db, TRUE);
  proc = g_subprocess_launcher_spawnv (launcher, (const char *const *)args->pdata, &error);
  g_assert_no_error (error);
  g_assert_true (g_subprocess_communicate_utf8 (proc, NULL, NULL, out, err, &error));
  g_assert_no_error (error);
  g_test_message ("stdout:\n%s\nstderr:\n%s", *out, *err);
  return g_subprocess_get_exit_status (proc);
}

/* The Markdown table's data rows (lines starting "| #"), split into trimmed cells. */
static GPtrArray *
table_rows (const char *text)
{
  GPtrArray *rows = g_ptr_array_new_with_free_func ((GDestroyNotify)g_strfreev);
  g_auto (GStrv) lines = g_strsplit (text, "\n", -1);

  for (guint i = 0; lines[i]; i++)
    if (g_str_has_prefix (lines[i], "| #"))
      {
        char **cells = g_strsplit (lines[i] + 1, " |", -1);
        for (guint c = 0; cells[c]; c++)
          g_strstrip (cells[c]);
        g_ptr_array_add (rows, cells);
      }
  return rows;
}

static void
test_compare (void)
{
  KiltContext *ctx = kilt_test_context ();
  g_autofree char *out = NULL, *err = NULL;
  g_autofree char *devices = NULL;
  g_autoptr (GPtrArray) rows = NULL;
  g_autoptr (GError) error = NULL;
  g_autoptr (KiltRunStore) store = NULL;
  g_autoptr (GPtrArray) runs = NULL;
  g_autofree char *seed = g_strdup_printf ("%u", g_test_rand_int_range (1, 100000));
  const char *tag;
  int rc;

  if (ctx == NULL)
    return;
  /* The same device twice, by id and by index 0 when it is the first. */
  devices = g_strdup_printf ("%s,%s", ctx->info->id, ctx->info->id);
  rc = run_cli (&out, &err, "compare", "--devices", devices, "--model", "mlp", "--epochs", "2",
                "--max-samples", "128", "--seed", seed, "--tag", "cli-compare", NULL);
  g_assert_cmpint (rc, ==, 0);
  g_assert_nonnull (strstr (out, "Comparing 2 devices"));
  g_assert_nonnull (strstr (out, "[1/2] epoch 2/2"));
  g_assert_nonnull (strstr (out, "[2/2] epoch 2/2"));
  g_assert_nonnull (strstr (out, "| Speed-up |"));

  store = kilt_run_store_open (db, &error);
  g_assert_no_error (error);
  runs = kilt_run_store_list (store, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (runs->len, ==, 2);
  /* Newest first in the list: the baseline is the older. */
  {
    KiltRun *base = runs->pdata[1], *other = runs->pdata[0];
    g_autofree char *base_label = g_strdup_printf ("#%" G_GINT64_FORMAT, base->id);
    g_autofree char *other_label = g_strdup_printf ("#%" G_GINT64_FORMAT, other->id);
    g_autofree char *speedup = g_strdup_printf ("%.2fx", kilt_report_speedup (other, base));
    g_autofree char *time = g_strdup_printf ("%.1f", kilt_run_mean_epoch_seconds (other));
    guint n_cols;

    rows = table_rows (out);
    g_assert_cmpuint (rows->len, ==, 2);
    n_cols = g_strv_length (rows->pdata[0]);
    g_assert_true (g_str_has_prefix (((char **)rows->pdata[0])[0], base_label));
    g_assert_true (g_str_has_prefix (((char **)rows->pdata[1])[0], other_label));
    /* The last filled cell is the speed-up: 1.00x for the baseline, the store's figure for
     * the other; the time per epoch matches the store's too. */
    g_assert_cmpstr (((char **)rows->pdata[0])[n_cols - 2], ==, "1.00x");
    g_assert_cmpstr (((char **)rows->pdata[1])[n_cols - 2], ==, speedup);
    g_assert_cmpstr (((char **)rows->pdata[1])[4], ==, time);
    g_assert_cmpstr (((char **)rows->pdata[1])[1], ==, "finished");
    for (guint i = 0; i < 2; i++)
      {
        KiltRun *run = runs->pdata[i];
        g_assert_cmpuint (run->tags->len, ==, 1);
        g_assert_cmpstr (run->tags->pdata[0], ==, "cli-compare");
        g_assert_cmpuint (run->epochs->len, ==, 2);
        g_assert_cmpuint (run->record.config.seed, ==, (guint)atoi (seed));
      }
    /* Same seed, same device: the same figures. */
    for (guint e = 0; e < 2; e++)
      g_assert_cmpfloat (g_array_index (base->epochs, KiltEpochRecord, e).train_loss, ==,
                         g_array_index (other->epochs, KiltEpochRecord, e).train_loss);
    tag = ((KiltRun *)runs->pdata[0])->tags->pdata[0];
    g_assert_nonnull (strstr (out, tag));
  }
}

static void
test_usage (void)
{
  g_autofree char *out = NULL, *err = NULL;
  g_autofree char *out2 = NULL, *err2 = NULL;
  g_autofree char *out3 = NULL, *err3 = NULL;

  g_assert_cmpint (run_cli (&out, &err, "compare", "--epochs", "1", NULL), ==, 2);
  g_assert_nonnull (strstr (err, "--devices"));
  g_assert_cmpint (run_cli (&out2, &err2, "compare", "--devices", "no-such-device-anywhere", NULL),
                   ==, 2);
  g_assert_nonnull (strstr (err2, "no-such-device-anywhere"));
  g_assert_cmpint (
      run_cli (&out3, &err3, "compare", "--devices", "0", "--checkpoint", "x.ckpt", NULL), ==, 2);
  g_assert_nonnull (strstr (err3, "--checkpoint"));
}

int
main (int argc, char **argv)
{
  g_autofree char *dir = NULL;
  int status;

  g_test_init (&argc, &argv, NULL);
  if (g_getenv ("KILT_CLI") == NULL)
    {
      g_print ("1..0 # SKIP KILT_CLI (the kilt-cli to test) is not set\n");
      return 77;
    }
  dir = kilt_test_tmpdir ();
  db = g_build_filename (dir, "runs.db", NULL);
  g_test_add_func ("/cli/compare", test_compare);
  g_test_add_func ("/cli/compare-usage", test_usage);
  status = g_test_run ();
  kilt_test_context_close ();
  g_free (db);
  return status;
}
