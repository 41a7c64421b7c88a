/* Reports: JSON parses, CSV has the documented columns, PDF renders, HTML holds SVG charts, the
 * figures match the store; kilt-cli runs / report. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "kilt-test-util.h"
#include "kilt-error.h"
#include "kilt-report.h"
#include "kilt-cli-runs.h"

#include <math.h>
#include <string.h>
#include <cairo.h>
#include <sqlite3.h>
#include <glib/gstdio.h>
#include <json-glib/json-glib.h>

/* The CSV columns as documented in kilt-report.h (a copy: the test checks the documentation). */
static const char *const documented_columns[] = {
  "run_id",
  "run_name",
  "status",
  "model",
  "data",
  "device",
  "device_vendor",
  "driver",
  "opencl_version",
  "batch",
  "seed",
  "optimizer",
  "learning_rate",
  "epoch",
  "train_loss",
  "train_accuracy",
  "val_loss",
  "val_accuracy",
  "epoch_seconds",
  "elapsed_seconds",
  "samples_per_second",
  "gflops",
  "compile_seconds",
  "busy_percent",
  "peak_bytes",
  "peak_weights_bytes",
  "peak_gradients_bytes",
  "peak_optimizer_bytes",
  "peak_activations_bytes",
  "peak_workspace_bytes",
  "peak_dataset_bytes",
  "speedup",
};

typedef struct
{
  char *dir;
  char *db;
  KiltRunStore *store;
  GPtrArray *runs; /* KiltRun, as read back from the store */
} Fixture;

/* Names with a comma, quotes and markup, so quoting and escaping are exercised. */
static const char *const run_names[] = { "cpu, \"tensorflow\"", "intel <hd> 5500", "amd r5" };

static void
fixture_set_up (Fixture *f, gconstpointer data)
{
  g_autoptr (GRand) r = g_rand_new_with_seed (g_test_rand_int ());
  g_autoptr (GError) error = NULL;
  const char *layers[] = { "conv2d_1", "dense_1", "dense_2" };

  f->dir = kilt_test_tmpdir ();
  f->db = g_build_filename (f->dir, "runs.db", NULL);
  f->store = kilt_run_store_open (f->db, &error);
  g_assert_no_error (error);
  f->runs = g_ptr_array_new_with_free_func ((GDestroyNotify)kilt_run_free);

  for (guint i = 0; i < G_N_ELEMENTS (run_names); i++)
    {
      KiltRunRecord rec = { 0 };
      g_autoptr (GArray) timings = g_array_new (FALSE, TRUE, sizeof (KiltLayerTiming));
      guint n_epochs = 2 + g_rand_int_range (r, 0, 4);
      double elapsed = 0;
      gint64 id;
      KiltRun *run;

      rec.name = g_strdup (run_names[i]);
      rec.model_name = g_strdup ("cifar10_cnn");
      rec.model_json = g_strdup ("{\"name\": \"cifar10_cnn\", \"layers\": []}");
      rec.data_description = g_strdup ("cifar10, 50000 train");
      rec.data_hash = g_strdup ("abc123");
      rec.device_name = g_strdup_printf ("device %u", i);
      rec.device_vendor = g_strdup ("vendor");
      rec.device_driver = g_strdup ("1.0");
      rec.device_opencl_version = g_strdup ("OpenCL 1.2");
      rec.kilt_version = g_strdup ("0.1.0");
      rec.clblast_version = g_strdup ("1.5.3");
      rec.platform_name = g_strdup ("Portable Computing Language");
      rec.config.epochs = n_epochs;
      rec.steps_per_epoch = 1563;
      rec.config.batch = 32;
      rec.config.seed = 7;
      rec.config.opt.type = KILT_OPT_RMSPROP;
      rec.config.opt.lr = 1e-4f;
      rec.config.opt.rho = 0.9f;
      rec.config.opt.epsilon = 1e-7f;
      rec.config.opt.decay = 1e-6f;
      rec.flops_per_sample = 41400000 + g_rand_int_range (r, 0, 1000);
      rec.n_params = 1250858;
      rec.train_samples = 50000;
      rec.compile_seconds = g_rand_double_range (r, 0.1, 5);
      g_assert_true (kilt_run_store_begin_run (f->store, &rec, &id, &error));
      g_assert_no_error (error);
      for (guint e = 1; e <= n_epochs; e++)
        {
          KiltEpochRecord ep = { .epoch = e };
          ep.train_loss = g_rand_double_range (r, 0.2, 2.5);
          ep.train_accuracy = g_rand_double (r);
          ep.val_loss = g_rand_double_range (r, 0.2, 2.5);
          ep.val_accuracy = g_rand_double (r);
          ep.wall_seconds = g_rand_double_range (r, 10, 2000);
          elapsed += ep.wall_seconds;
          ep.elapsed_seconds = elapsed;
          ep.samples_per_second = 50000 / ep.wall_seconds;
          ep.compile_seconds = e == 1 ? rec.compile_seconds : 0;
          ep.busy_percent = g_rand_double_range (r, 0, 100);
          ep.learning_rate = 1e-4 / (1 + 1e-6 * 1563 * e) * g_rand_double_range (r, 0.5, 2);
          for (int c = 0; c < KILT_MEM_N_CATEGORIES; c++)
            {
              ep.peak_bytes[c] = g_rand_int_range (r, 0, 1 << 30);
              ep.peak_total += ep.peak_bytes[c];
            }
          g_assert_true (kilt_run_store_add_epoch (f->store, id, &ep, &error));
          g_assert_no_error (error);
        }
      for (guint k = 0; k < G_N_ELEMENTS (layers); k++)
        {
          KiltLayerTiming t = { .layer = (char *)layers[k],
                                .type = (char *)"dense",
                                .forward_ms = g_rand_double (r),
                                .backward_ms = g_rand_double (r),
                                .update_ms = g_rand_double (r),
                                .algo = k == 1 ? (char *)"implicit GEMM" : NULL };
          g_array_append_val (timings, t);
        }
      g_assert_true (kilt_run_store_set_layer_timings (f->store, id, timings, &error));
      g_assert_true (kilt_run_store_finish_run (f->store, id, KILT_RUN_FINISHED, NULL, 0.9,
                                                g_rand_double (r), &error));
      g_assert_no_error (error);
      run = kilt_run_store_get (f->store, id, &error);
      g_assert_no_error (error);
      g_ptr_array_add (f->runs, run);
      kilt_run_record_clear (&rec);
    }
}

static void
fixture_tear_down (Fixture *f, gconstpointer data)
{
  g_ptr_array_unref (f->runs);
  kilt_run_store_close (f->store);
  g_free (f->db);
  g_free (f->dir);
}

static double
mean_epoch (const KiltRun *run)
{
  double s = 0;
  for (guint k = 0; k < run->epochs->len; k++)
    s += g_array_index (run->epochs, KiltEpochRecord, k).wall_seconds;
  return s / run->epochs->len;
}

static void
assert_close (double a, double b)
{
  g_assert_cmpfloat_with_epsilon (a, b, 1e-8 * MAX (fabs (a), fabs (b)) + 1e-12);
}

static void
test_json (Fixture *f, gconstpointer data)
{
  KiltReportOptions o = { .runs = f->runs, .baseline = f->runs->pdata[1] };
  g_autofree char *text = kilt_report_to_json (&o);
  g_autoptr (JsonParser) p = json_parser_new ();
  g_autoptr (GError) error = NULL;
  JsonObject *root;
  JsonArray *runs;

  g_assert_true (json_parser_load_from_data (p, text, -1, &error));
  g_assert_no_error (error);
  root = json_node_get_object (json_parser_get_root (p));
  g_assert_cmpint (json_object_get_int_member (root, "baseline_id"), ==,
                   ((KiltRun *)f->runs->pdata[1])->id);
  runs = json_object_get_array_member (root, "runs");
  g_assert_cmpuint (json_array_get_length (runs), ==, f->runs->len);
  for (guint i = 0; i < f->runs->len; i++)
    {
      const KiltRun *run = f->runs->pdata[i];
      JsonObject *jr = json_array_get_object_element (runs, i);
      JsonObject *summary = json_object_get_object_member (jr, "summary");
      JsonArray *epochs = json_object_get_array_member (jr, "epochs");
      JsonObject *config = json_object_get_object_member (jr, "config");
      JsonArray *layers = json_object_get_array_member (jr, "layer_timings_ms");

      g_assert_cmpint (json_object_get_int_member (jr, "id"), ==, run->id);
      g_assert_cmpstr (json_object_get_string_member (jr, "name"), ==, run_names[i]);
      g_assert_cmpstr (
          json_object_get_string_member (json_object_get_object_member (jr, "device"), "name"), ==,
          run->record.device_name);
      /* The model description is embedded as JSON, not as a string. */
      g_assert_true (JSON_NODE_HOLDS_OBJECT (
          json_object_get_member (json_object_get_object_member (jr, "model"), "description")));
      g_assert_cmpint (json_object_get_int_member (json_object_get_object_member (jr, "model"),
                                                   "flops_per_sample"),
                       ==, run->record.flops_per_sample);
      g_assert_cmpint (json_object_get_int_member (config, "batch"), ==, 32);
      g_assert_cmpstr (json_object_get_string_member (
                           json_object_get_object_member (config, "optimizer"), "type"),
                       ==, "rmsprop");
      g_assert_cmpuint (json_array_get_length (epochs), ==, run->epochs->len);
      for (guint k = 0; k < run->epochs->len; k++)
        {
          const KiltEpochRecord *e = &g_array_index (run->epochs, KiltEpochRecord, k);
          JsonObject *je = json_array_get_object_element (epochs, k);
          g_assert_cmpint (json_object_get_int_member (je, "epoch"), ==, e->epoch);
          g_assert_cmpfloat (json_object_get_double_member (je, "train_loss"), ==, e->train_loss);
          g_assert_cmpfloat (json_object_get_double_member (je, "val_accuracy"), ==,
                             e->val_accuracy);
          g_assert_cmpfloat (json_object_get_double_member (je, "seconds"), ==, e->wall_seconds);
          g_assert_cmpfloat (json_object_get_double_member (je, "learning_rate"), ==,
                             e->learning_rate);
          g_assert_cmpint (json_object_get_int_member (
                               json_object_get_object_member (je, "peak_bytes"), "total"),
                           ==, e->peak_total);
        }
      assert_close (json_object_get_double_member (summary, "speedup"),
                    mean_epoch (f->runs->pdata[1]) / mean_epoch (run));
      assert_close (json_object_get_double_member (summary, "mean_epoch_seconds"),
                    mean_epoch (run));
      g_assert_cmpuint (json_array_get_length (layers), ==, run->layer_timings->len);
      g_assert_cmpfloat (
          json_object_get_double_member (json_array_get_object_element (layers, 2), "backward"), ==,
          g_array_index (run->layer_timings, KiltLayerTiming, 2).backward_ms);
      /* The algorithm a layer chose, where it had a choice. */
      g_assert_cmpstr (json_object_get_string_member_with_default (
                           json_array_get_object_element (layers, 1), "algo", NULL),
                       ==, "implicit GEMM");
      g_assert_false (json_object_has_member (json_array_get_object_element (layers, 0), "algo"));
    }
}

/* RFC 4180 fields of one record; advances *p past its line end. */
static GPtrArray *
csv_record (const char **p)
{
  GPtrArray *fields = g_ptr_array_new_with_free_func (g_free);
  GString *cur = g_string_new (NULL);
  const char *s = *p;
  gboolean quoted = FALSE;

  for (;; s++)
    {
      if (quoted)
        {
          if (*s == '"' && s[1] == '"')
            g_string_append_c (cur, '"'), s++;
          else if (*s == '"')
            quoted = FALSE;
          else
            {
              g_assert_true (*s != '\0');
              g_string_append_c (cur, *s);
            }
        }
      else if (*s == '"')
        quoted = TRUE;
      else if (*s == ',')
        {
          g_ptr_array_add (fields, g_strdup (cur->str));
          g_string_truncate (cur, 0);
        }
      else if (*s == '\r' || *s == '\n' || *s == '\0')
        break;
      else
        g_string_append_c (cur, *s);
    }
  g_ptr_array_add (fields, g_string_free (cur, FALSE));
  if (*s == '\r')
    s++;
  if (*s == '\n')
    s++;
  *p = s;
  return fields;
}

static void
test_csv (Fixture *f, gconstpointer data)
{
  KiltReportOptions o = { .runs = f->runs };
  g_autofree char *text = kilt_report_to_csv (&o);
  const char *p = text;
  g_autoptr (GPtrArray) header = csv_record (&p);
  guint expected_rows = 0, rows = 0;

  g_assert_cmpuint (header->len, ==, G_N_ELEMENTS (documented_columns));
  g_assert_cmpuint (kilt_report_csv_n_columns (), ==, G_N_ELEMENTS (documented_columns));
  for (guint c = 0; c < header->len; c++)
    g_assert_cmpstr (header->pdata[c], ==, documented_columns[c]);

  for (guint i = 0; i < f->runs->len; i++)
    {
      const KiltRun *run = f->runs->pdata[i];
      expected_rows += run->epochs->len;
      for (guint k = 0; k < run->epochs->len; k++)
        {
          const KiltEpochRecord *e = &g_array_index (run->epochs, KiltEpochRecord, k);
          g_autoptr (GPtrArray) row = csv_record (&p);
          double sps = e->samples_per_second;

          rows++;
          g_assert_cmpuint (row->len, ==, header->len);
          g_assert_cmpint (g_ascii_strtoll (row->pdata[0], NULL, 10), ==, run->id);
          g_assert_cmpstr (row->pdata[1], ==, run_names[i]);
          g_assert_cmpstr (row->pdata[5], ==, run->record.device_name);
          g_assert_cmpint (g_ascii_strtoll (row->pdata[13], NULL, 10), ==, e->epoch);
          assert_close (g_ascii_strtod (row->pdata[14], NULL), e->train_loss);
          assert_close (g_ascii_strtod (row->pdata[17], NULL), e->val_accuracy);
          assert_close (g_ascii_strtod (row->pdata[18], NULL), e->wall_seconds);
          assert_close (g_ascii_strtod (row->pdata[21], NULL),
                        3.0 * run->record.flops_per_sample * sps / 1e9);
          g_assert_cmpint (g_ascii_strtoll (row->pdata[24], NULL, 10), ==, e->peak_total);
          /* The default baseline is the first run. */
          assert_close (g_ascii_strtod (row->pdata[31], NULL),
                        mean_epoch (f->runs->pdata[0]) / mean_epoch (run));
        }
    }
  g_assert_cmpuint (rows, ==, expected_rows);
  g_assert_cmpstr (p, ==, "");
}

/* The article's figure: 16,969 s against 4,314 s over ten epochs is 3.93x. */
static void
test_article_speedup (void)
{
  KiltRun *a = g_new0 (KiltRun, 1), *b = g_new0 (KiltRun, 1);
  g_autoptr (GPtrArray) runs = g_ptr_array_new_with_free_func ((GDestroyNotify)kilt_run_free);
  g_autofree char *md = NULL;
  KiltReportOptions o = { .runs = runs };

  a->id = 1, b->id = 2;
  a->record.name = g_strdup ("tensorflow cpu");
  b->record.name = g_strdup ("intel hd 5500");
  for (KiltRun **r = (KiltRun *[]){ a, b, NULL }; *r; r++)
    {
      (*r)->tags = g_ptr_array_new ();
      (*r)->epochs = g_array_new (FALSE, TRUE, sizeof (KiltEpochRecord));
      (*r)->layer_timings = g_array_new (FALSE, TRUE, sizeof (KiltLayerTiming));
      (*r)->test_loss = (*r)->test_accuracy = NAN;
      for (guint e = 1; e <= 10; e++)
        {
          KiltEpochRecord ep = { .epoch = e, .val_accuracy = NAN, .val_loss = NAN };
          ep.wall_seconds = (*r == a ? 16969.0 : 4314.0) / 10;
          g_array_append_val ((*r)->epochs, ep);
        }
      g_ptr_array_add (runs, *r);
    }
  assert_close (kilt_report_speedup (b, a), 16969.0 / 4314.0);
  md = kilt_report_to_markdown (&o);
  g_assert_nonnull (strstr (md, "| 3.93x |"));
  g_assert_nonnull (strstr (md, "| 1.00x |"));
  g_assert_nonnull (strstr (md, "| 16969 |"));
}

static void
test_markdown_html (Fixture *f, gconstpointer data)
{
  KiltReportOptions o = { .runs = f->runs };
  g_autofree char *md = kilt_report_to_markdown (&o);
  g_autofree char *html = kilt_report_to_html (&o);
  guint svgs = 0, charts = 0;

  for (guint i = 0; i < f->runs->len; i++)
    {
      const KiltRun *run = f->runs->pdata[i];
      g_autofree char *sp
          = g_strdup_printf ("| %.2fx |", mean_epoch (f->runs->pdata[0]) / mean_epoch (run));
      g_autofree char *epochs = g_strdup_printf ("Epochs of run #%" G_GINT64_FORMAT, run->id);
      g_assert_nonnull (strstr (md, sp));
      g_assert_nonnull (strstr (md, epochs));
      g_assert_nonnull (strstr (html, epochs));
    }
  g_assert_nonnull (strstr (md, "| conv2d_1 |"));
  /* Markup in a name is escaped, not interpreted. */
  g_assert_nonnull (strstr (html, "intel &lt;hd&gt; 5500"));
  g_assert_null (strstr (html, "<hd>"));
  for (const char *s = html; (s = strstr (s, "<svg")); s++)
    svgs++;
  for (int c = 0; c < KILT_REPORT_N_CHARTS; c++)
    charts += kilt_report_chart_applies (&o, (KiltReportChart)c);
  g_assert_cmpuint (charts, ==, KILT_REPORT_N_CHARTS);
  g_assert_cmpuint (svgs, ==, charts);
  g_assert_null (strstr (html, "<?xml"));
  g_assert_true (g_str_has_suffix (html, "</html>\n"));
}

static guint
count_files (const char *dir, const char *prefix)
{
  g_autoptr (GDir) d = g_dir_open (dir, 0, NULL);
  const char *name;
  guint n = 0;

  while ((name = g_dir_read_name (d)))
    n += g_str_has_prefix (name, prefix);
  return n;
}

static void
test_pdf (Fixture *f, gconstpointer data)
{
  KiltReportOptions o = { .runs = f->runs };
  g_autofree char *path = g_build_filename (f->dir, "report.pdf", NULL);
  g_autofree char *prefix = g_build_filename (f->dir, "page", NULL);
  g_autofree char *pdftoppm = g_find_program_in_path ("pdftoppm");
  g_autofree char *contents = NULL;
  g_autoptr (GError) error = NULL;
  const char *argv[] = { pdftoppm, "-r", "30", "-png", path, prefix, NULL };
  gsize len;
  int status = -1;

  g_assert_true (kilt_report_write (&o, KILT_REPORT_PDF, path, &error));
  g_assert_no_error (error);
  g_assert_true (g_file_get_contents (path, &contents, &len, NULL));
  g_assert_true (g_str_has_prefix (contents, "%PDF-"));
  if (pdftoppm == NULL)
    {
      g_test_skip ("pdftoppm (poppler-utils) is not installed");
      return;
    }
  g_assert_true (g_spawn_sync (NULL, (char **)argv, NULL, G_SPAWN_DEFAULT, NULL, NULL, NULL, NULL,
                               &status, &error));
  g_assert_no_error (error);
  g_assert_true (g_spawn_check_wait_status (status, &error));
  /* The tables take at least one page, then one page per chart. */
  g_assert_cmpuint (count_files (f->dir, "page"), >=, 1 + KILT_REPORT_N_CHARTS);
  g_test_message ("PDF of %u runs: %zu bytes, %u pages", f->runs->len, len,
                  count_files (f->dir, "page"));
}

/* The words pdftotext finds on each page of @pdf: a GPtrArray per page of "height text". */
static GPtrArray *
pdf_words (const char *pdf, const char *dir)
{
  g_autofree char *pdftotext = g_find_program_in_path ("pdftotext");
  g_autofree char *html_path = g_build_filename (dir, "words.html", NULL);
  g_autofree char *html = NULL;
  const char *argv[] = { pdftotext, "-bbox", pdf, html_path, NULL };
  g_autoptr (GError) error = NULL;
  GPtrArray *pages = g_ptr_array_new_with_free_func ((GDestroyNotify)g_ptr_array_unref);
  int status = -1;
  char **parts;

  if (pdftotext == NULL)
    return pages;
  g_assert_true (g_spawn_sync (NULL, (char **)argv, NULL, G_SPAWN_STDERR_TO_DEV_NULL, NULL, NULL,
                               NULL, NULL, &status, &error));
  g_assert_no_error (error);
  g_assert_true (g_spawn_check_wait_status (status, &error));
  g_assert_true (g_file_get_contents (html_path, &html, NULL, NULL));
  parts = g_strsplit (html, "<page ", -1);
  for (guint i = 1; parts[i]; i++)
    {
      GPtrArray *words = g_ptr_array_new_with_free_func (g_free);
      const char *at = parts[i];
      while ((at = strstr (at, "<word ")))
        {
          const char *ymin = strstr (at, "yMin=\""), *ymax = strstr (at, "yMax=\"");
          const char *text = strchr (at, '>');
          const char *end = text ? strstr (text, "</word>") : NULL;
          if (!ymin || !ymax || !end)
            break;
          {
            double h = g_ascii_strtod (ymax + 6, NULL) - g_ascii_strtod (ymin + 6, NULL);
            g_autofree char *word = g_strndup (text + 1, end - text - 1);
            g_ptr_array_add (words, g_strdup_printf ("%.2f %s", h, word));
          }
          at = end;
        }
      g_ptr_array_add (pages, words);
    }
  g_strfreev (parts);
  return pages;
}

static gboolean
page_has_word (GPtrArray *words, const char *prefix, double *height)
{
  for (guint k = 0; k < words->len; k++)
    {
      const char *w = strchr (words->pdata[k], ' ') + 1;
      if (g_str_has_prefix (w, prefix))
        {
          if (height)
            *height = g_ascii_strtod (words->pdata[k], NULL);
          return TRUE;
        }
    }
  return FALSE;
}

/* Issue 15, 10: the PDF's tables stay readable, and one that goes over a page break repeats
 * its header row there. The device table had been shrunk to about 3 pt to fit the width. */
static void
test_pdf_tables (Fixture *f, gconstpointer data)
{
  KiltReportOptions o = { .runs = f->runs };
  g_autofree char *path = g_build_filename (f->dir, "tables.pdf", NULL);
  g_autoptr (GError) error = NULL;
  g_autoptr (GPtrArray) pages = NULL;
  KiltRun *run = f->runs->pdata[0];
  guint layer_pages = 0;
  double smallest = INFINITY;

  /* Long software names, and a deep model's 150 layers. */
  for (guint i = 0; i < f->runs->len; i++)
    {
      KiltRun *r = f->runs->pdata[i];
      g_free (r->record.platform_name);
      r->record.platform_name
          = g_strdup ("Portable Computing Language OpenCL 3.0 PoCL 3.1+debian Linux, None+Asserts, "
                      "RELOC, SPIR, LLVM 15.0.6, SLEEF, DISTRO, POCL_DEBUG");
      g_free (r->record.device_name);
      r->record.device_name = g_strdup_printf ("pthread-skylake-avx512-AMD EPYC 7B13 %u", i);
    }
  for (guint k = 0; k < 150; k++)
    {
      KiltLayerTiming t = { .layer = g_strdup_printf ("layer_%03u", k),
                            .type = g_strdup ("conv2d"),
                            .forward_ms = 1,
                            .backward_ms = 2,
                            .update_ms = 0.5 };
      g_array_append_val (run->layer_timings, t);
    }
  g_assert_true (kilt_report_write (&o, KILT_REPORT_PDF, path, &error));
  g_assert_no_error (error);
  pages = pdf_words (path, f->dir);
  if (pages->len == 0)
    {
      g_test_skip ("pdftotext (poppler-utils) is not installed");
      return;
    }
  for (guint p = 0; p < pages->len; p++)
    {
      GPtrArray *words = pages->pdata[p];
      double h;
      /* The per-layer chart's page names layers on its axis: only the tables count. */
      if (page_has_word (words, "(in", NULL))
        continue;
      if (page_has_word (words, "layer_", NULL))
        {
          layer_pages++;
          /* The per-layer table's header row on every page it takes. */
          g_assert_true (page_has_word (words, "Layer", NULL));
        }
      if (page_has_word (words, "pthread-skylake", &h))
        smallest = MIN (smallest, h);
      if (page_has_word (words, "vendor", &h))
        smallest = MIN (smallest, h);
    }
  g_test_message ("%u pages, the per-layer table on %u; device table text %.1f pt high", pages->len,
                  layer_pages, smallest);
  g_assert_cmpuint (layer_pages, >=, 2);
  g_assert_cmpfloat (smallest, >=, 6.0);
}

/* The curves on each x axis: an epoch's end stands at its number, at epoch x steps per epoch,
 * and at its elapsed time; the learning-rate chart draws what each epoch recorded. */
static void
test_curve_axes (Fixture *f, gconstpointer data)
{
  KiltReportOptions o = { .runs = f->runs, .chart = KILT_REPORT_CHART_LEARNING_RATE };

  g_assert_true (kilt_report_chart_applies (&o, KILT_REPORT_CHART_LEARNING_RATE));
  for (int mode = 0; mode < 3; mode++)
    {
      g_autoptr (KiltChart) c = NULL;
      o.x_steps = mode == 1;
      o.x_wall_time = mode == 2;
      c = kilt_report_chart_new (&o, KILT_REPORT_CHART_LEARNING_RATE);
      g_assert_cmpuint (kilt_chart_get_n_series (c), ==, f->runs->len);
      for (guint i = 0; i < f->runs->len; i++)
        {
          const KiltRun *run = g_ptr_array_index (f->runs, i);
          gsize n;
          const double *p = kilt_chart_get_reduced (c, i, &n);
          g_assert_cmpuint (n, ==, run->epochs->len);
          for (guint k = 0; k < n; k++)
            {
              const KiltEpochRecord *e = &g_array_index (run->epochs, KiltEpochRecord, k);
              double x = mode == 0   ? e->epoch
                         : mode == 1 ? (double)e->epoch * run->record.steps_per_epoch
                                     : e->elapsed_seconds;
              g_assert_cmpfloat_with_epsilon (p[2 * k], x, 1e-9 * MAX (x, 1));
              g_assert_cmpfloat_with_epsilon (p[2 * k + 1], e->learning_rate, 1e-15);
            }
        }
    }
  /* The loss curves follow the same choice. */
  {
    g_autoptr (KiltChart) c = NULL;
    const KiltRun *run = g_ptr_array_index (f->runs, 0);
    gsize n;
    const double *p;
    o.x_steps = TRUE, o.x_wall_time = FALSE;
    c = kilt_report_chart_new (&o, KILT_REPORT_CHART_LOSS);
    p = kilt_chart_get_reduced (c, 0, &n);
    g_assert_cmpuint (n, ==, run->epochs->len);
    g_assert_cmpfloat (p[2 * (n - 1)], ==, (double)run->epochs->len * 1563);
  }
}

static void
test_chart_files (Fixture *f, gconstpointer data)
{
  KiltReportOptions o
      = { .runs = f->runs, .chart = KILT_REPORT_CHART_EPOCH_TIME, .width = 640, .height = 360 };
  g_autofree char *png = g_build_filename (f->dir, "chart.png", NULL);
  g_autofree char *svg = g_build_filename (f->dir, "chart.svg", NULL);
  g_autofree char *text = NULL;
  g_autoptr (GError) error = NULL;
  cairo_surface_t *img;
  int dark = 0;

  g_assert_true (kilt_report_write (&o, KILT_REPORT_PNG, png, &error));
  g_assert_no_error (error);
  img = cairo_image_surface_create_from_png (png);
  g_assert_cmpint (cairo_surface_status (img), ==, CAIRO_STATUS_SUCCESS);
  g_assert_cmpint (cairo_image_surface_get_width (img), ==, 640);
  g_assert_cmpint (cairo_image_surface_get_height (img), ==, 360);
  /* Something was drawn: not a blank white picture. */
  {
    const guint8 *px = cairo_image_surface_get_data (img);
    int stride = cairo_image_surface_get_stride (img);
    for (int y = 0; y < 360; y++)
      for (int x = 0; x < 640; x++)
        dark += px[y * stride + 4 * x + 1] < 128;
  }
  cairo_surface_destroy (img);
  g_assert_cmpint (dark, >, 500);

  o.chart = KILT_REPORT_CHART_LAYERS;
  g_assert_true (kilt_report_write (&o, KILT_REPORT_SVG, svg, &error));
  g_assert_no_error (error);
  g_assert_true (g_file_get_contents (svg, &text, NULL, NULL));
  g_assert_nonnull (strstr (text, "<svg"));
  g_assert_nonnull (strstr (text, "width=\"640"));

  o.width = 4;
  g_assert_false (kilt_report_write (&o, KILT_REPORT_PNG, png, &error));
  g_assert_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_INVALID);
}

static void
test_atomic (Fixture *f, gconstpointer data)
{
  KiltReportOptions o = { .runs = f->runs };
  g_autofree char *path = g_build_filename (f->dir, "out.md", NULL);
  g_autofree char *bad = g_build_filename (f->dir, "missing", "out.md", NULL);
  g_autofree char *contents = NULL;
  g_autofree char *expected = NULL;
  g_autoptr (GError) error = NULL;
  g_autoptr (GPtrArray) empty = g_ptr_array_new ();
  KiltReportOptions none = { .runs = empty };

  /* An old, longer file is replaced whole. */
  g_assert_true (g_file_set_contents (path, "old contents that are long enough ...", -1, NULL));
  g_assert_true (kilt_report_write (&o, KILT_REPORT_MARKDOWN, path, &error));
  g_assert_no_error (error);
  g_assert_true (g_file_get_contents (path, &contents, NULL, NULL));
  g_assert_true (g_str_has_prefix (contents, "# Kilt timing report"));
  g_assert_null (strstr (contents, "old contents"));
  /* No temporary file is left beside it. */
  g_assert_cmpuint (count_files (f->dir, "out.md"), ==, 1);

  g_assert_false (kilt_report_write (&o, KILT_REPORT_CSV, bad, &error));
  g_assert_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_IO);
  g_assert_nonnull (strstr (error->message, bad));
  g_assert_false (g_file_test (bad, G_FILE_TEST_EXISTS));
  g_clear_error (&error);

  g_assert_false (kilt_report_write (&none, KILT_REPORT_CSV, path, &error));
  g_assert_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_INVALID);
  g_clear_error (&error);
  /* The failed write left the earlier report alone. */
  expected = g_steal_pointer (&contents);
  g_assert_true (g_file_get_contents (path, &contents, NULL, NULL));
  g_assert_cmpstr (contents, ==, expected);
}

/* With $KILT_REPORT_SAMPLE_DIR set, leaves every format there for a person to look at. */
static void
test_samples (Fixture *f, gconstpointer data)
{
  const char *dir = g_getenv ("KILT_REPORT_SAMPLE_DIR");
  const char *names[] = { "report.csv", "report.json", "report.md", "report.html",
                          "report.pdf", "chart.png",   "chart.svg" };
  KiltReportOptions o = { .runs = f->runs };

  if (dir == NULL)
    {
      g_test_skip ("set KILT_REPORT_SAMPLE_DIR to keep sample reports");
      return;
    }
  for (guint i = 0; i < G_N_ELEMENTS (names); i++)
    {
      g_autofree char *path = g_build_filename (dir, names[i], NULL);
      g_autoptr (GError) error = NULL;
      g_assert_true (kilt_report_write (&o, (KiltReportFormat)i, path, &error));
      g_assert_no_error (error);
    }
}

static int
cli (int (*func) (int, char **), ...)
{
  g_autoptr (GPtrArray) args = g_ptr_array_new_with_free_func (g_free);
  g_autofree char **argv = NULL;
  va_list ap;
  const char *s;
  int rc;

  va_start (ap, func);
  while ((s = va_arg (ap, const char *)))
    g_ptr_array_add (args, g_strdup (s));
  va_end (ap);
  /* GOptionContext rearranges argv: hand it a copy of the pointers. */
  argv = g_new0 (char *, args->len + 1);
  memcpy (argv, args->pdata, args->len * sizeof (char *));
  rc = func ((int)args->len, argv);
  fflush (stdout);
  return rc;
}

static void
test_cli (Fixture *f, gconstpointer data)
{
  const KiltRun *a = f->runs->pdata[0], *b = f->runs->pdata[1], *c = f->runs->pdata[2];
  g_autofree char *ida = g_strdup_printf ("%" G_GINT64_FORMAT, a->id);
  g_autofree char *idb = g_strdup_printf ("%" G_GINT64_FORMAT, b->id);
  g_autofree char *idc = g_strdup_printf ("%" G_GINT64_FORMAT, c->id);
  g_autofree char *csv = g_build_filename (f->dir, "cli.csv", NULL);
  g_autofree char *html = g_build_filename (f->dir, "cli.html", NULL);
  g_autofree char *got = NULL;
  g_autofree char *want = NULL;
  g_autoptr (GPtrArray) two = g_ptr_array_new ();
  g_autoptr (GError) error = NULL;
  KiltRun *run;

  g_ptr_array_add (two, (gpointer)b);
  g_ptr_array_add (two, (gpointer)a);
  /* The CSV written by the command is the library's, baseline included. */
  g_assert_cmpint (cli (kilt_cli_report, "report", idb, ida, "--baseline", ida, "--format", "csv",
                        "-o", csv, "--db", f->db, NULL),
                   ==, 0);
  {
    KiltReportOptions o = { .runs = two, .baseline = a };
    want = kilt_report_to_csv (&o);
  }
  g_assert_true (g_file_get_contents (csv, &got, NULL, NULL));
  g_assert_cmpstr (got, ==, want);
  /* The format can come from the file name. */
  g_assert_cmpint (cli (kilt_cli_report, "report", ida, "-o", html, "--db", f->db, NULL), ==, 0);
  g_assert_true (g_file_test (html, G_FILE_TEST_EXISTS));

  /* Wrong usage is 2, a missing run 1; neither writes a file. */
  g_assert_cmpint (cli (kilt_cli_report, "report", ida, "--db", f->db, NULL), ==, 2);
  g_assert_cmpint (cli (kilt_cli_report, "report", ida, "-o", "x.unknown", "--db", f->db, NULL), ==,
                   2);
  g_assert_cmpint (
      cli (kilt_cli_report, "report", ida, "--baseline", idb, "-o", csv, "--db", f->db, NULL), ==,
      2);
  g_assert_cmpint (cli (kilt_cli_report, "report", "9999", "-o", "never.csv", "--db", f->db, NULL),
                   ==, 1);
  g_assert_false (g_file_test ("never.csv", G_FILE_TEST_EXISTS));

  g_assert_cmpint (cli (kilt_cli_runs, "runs", "list", "--db", f->db, NULL), ==, 0);
  g_assert_cmpint (cli (kilt_cli_runs, "runs", "--json", "--db", f->db, NULL), ==, 0);
  g_assert_cmpint (cli (kilt_cli_runs, "runs", "show", ida, "--db", f->db, NULL), ==, 0);
  g_assert_cmpint (cli (kilt_cli_runs, "runs", "rename", ida, "cpu baseline", "--db", f->db, NULL),
                   ==, 0);
  g_assert_cmpint (cli (kilt_cli_runs, "runs", "tag", ida, "article", "--db", f->db, NULL), ==, 0);
  run = kilt_run_store_get (f->store, a->id, &error);
  g_assert_no_error (error);
  g_assert_cmpstr (run->record.name, ==, "cpu baseline");
  g_assert_cmpuint (run->tags->len, ==, 1);
  g_assert_cmpstr (run->tags->pdata[0], ==, "article");
  kilt_run_free (run);
  g_assert_cmpint (cli (kilt_cli_runs, "runs", "delete", idc, "--db", f->db, NULL), ==, 0);
  g_assert_null (kilt_run_store_get (f->store, c->id, &error));
  g_clear_error (&error);
  g_assert_cmpint (cli (kilt_cli_runs, "runs", "delete", idc, "--db", f->db, NULL), ==, 1);
  g_assert_cmpint (cli (kilt_cli_runs, "runs", "show", "--db", f->db, NULL), ==, 2);
  g_assert_cmpint (cli (kilt_cli_runs, "runs", "frobnicate", ida, "--db", f->db, NULL), ==, 2);
}

/* Bytes that are not UTF-8 in a store (a name renamed by an older Kilt, or by hand): the store
 * reads them as U+FFFD, and the writers keep every format valid UTF-8 even for a KiltRun that
 * holds such bytes itself; JSON still parses and HTML markup is still escaped. */
static void
test_bad_utf8 (Fixture *f, gconstpointer data)
{
  KiltRun *a = f->runs->pdata[0];
  g_autoptr (GPtrArray) one = g_ptr_array_new ();
  g_autoptr (GError) error = NULL;
  g_autoptr (KiltRun) back = NULL;
  g_autofree char *sql = NULL;
  const char *bad = "\xff<b>\xf0\"x";
  sqlite3 *db = NULL;

  g_assert_cmpint (sqlite3_open (f->db, &db), ==, SQLITE_OK);
  sql = g_strdup_printf (
      "UPDATE runs SET name = CAST(X'ff3c623ef02278' AS TEXT) WHERE id = %" G_GINT64_FORMAT
      "; INSERT INTO run_tags (run_id, tag) VALUES (%" G_GINT64_FORMAT ", CAST(X'c3' AS TEXT));",
      a->id, a->id);
  g_assert_cmpint (sqlite3_exec (db, sql, NULL, NULL, NULL), ==, SQLITE_OK);
  sqlite3_close (db);
  back = kilt_run_store_get (f->store, a->id, &error);
  g_assert_no_error (error);
  g_assert_true (g_utf8_validate (back->record.name, -1, NULL));
  g_assert_cmpstr (back->record.name, ==, "\xef\xbf\xbd<b>\xef\xbf\xbd\"x");
  g_assert_cmpuint (back->tags->len, ==, 1);
  g_assert_cmpstr (back->tags->pdata[0], ==, "\xef\xbf\xbd");

  /* The same bytes in memory, given straight to the writers. */
  g_free (a->record.name);
  a->record.name = g_strdup (bad);
  g_ptr_array_add (a->tags, g_strdup ("\xc3"));
  g_ptr_array_add (one, a);
  {
    KiltReportOptions o = { .runs = one };
    g_autofree char *json = kilt_report_to_json (&o);
    g_autofree char *html = kilt_report_to_html (&o);
    g_autofree char *md = kilt_report_to_markdown (&o);
    g_autofree char *csv = kilt_report_to_csv (&o);
    g_autoptr (JsonParser) p = json_parser_new ();
    JsonObject *run;

    g_assert_true (g_utf8_validate (json, -1, NULL));
    g_assert_true (g_utf8_validate (html, -1, NULL));
    g_assert_true (g_utf8_validate (md, -1, NULL));
    g_assert_true (g_utf8_validate (csv, -1, NULL));
    g_assert_true (json_parser_load_from_data (p, json, -1, &error));
    g_assert_no_error (error);
    run = json_array_get_object_element (
        json_object_get_array_member (json_node_get_object (json_parser_get_root (p)), "runs"), 0);
    g_assert_cmpstr (json_object_get_string_member (run, "name"), ==,
                     "\xef\xbf\xbd<b>\xef\xbf\xbd\"x");
    g_assert_nonnull (strstr (html, "\xef\xbf\xbd&lt;b&gt;"));
    g_assert_null (strstr (html, "<b>"));
  }
  /* Renaming or tagging with such bytes is refused, saying why; the name stays. */
  g_assert_false (kilt_run_store_rename (f->store, a->id, "ok\xff", &error));
  g_assert_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_INVALID);
  g_assert_nonnull (strstr (error->message, "UTF-8"));
  g_assert_nonnull (strstr (error->message, "byte 3 (0xff)"));
  g_clear_error (&error);
  g_assert_false (kilt_run_store_add_tag (f->store, a->id, "\xfe", &error));
  g_assert_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_INVALID);
  g_clear_error (&error);
  {
    g_autofree char *id = g_strdup_printf ("%" G_GINT64_FORMAT, a->id);
    g_assert_cmpint (cli (kilt_cli_runs, "runs", "rename", id, "\xff", "--db", f->db, NULL), ==, 1);
  }
  g_clear_pointer (&back, kilt_run_free);
  back = kilt_run_store_get (f->store, a->id, &error);
  g_assert_cmpstr (back->record.name, ==, "\xef\xbf\xbd<b>\xef\xbf\xbd\"x");
}

int
main (int argc, char **argv)
{
  int rc;

  g_test_init (&argc, &argv, NULL);
#define ADD(name, func)                                                                            \
  g_test_add ("/report/" name, Fixture, NULL, fixture_set_up, func, fixture_tear_down)
  ADD ("json", test_json);
  ADD ("csv", test_csv);
  ADD ("markdown-html", test_markdown_html);
  ADD ("pdf", test_pdf);
  ADD ("pdf-tables", test_pdf_tables);
  ADD ("chart-files", test_chart_files);
  ADD ("curve-axes", test_curve_axes);
  ADD ("atomic", test_atomic);
  ADD ("cli", test_cli);
  ADD ("samples", test_samples);
  ADD ("bad-utf8", test_bad_utf8);
#undef ADD
  g_test_add_func ("/report/article-speedup", test_article_speedup);
  rc = g_test_run ();
  /* cairo keeps its toy-font faces cached until told. */
  cairo_debug_reset_static_data ();
  return rc;
}
