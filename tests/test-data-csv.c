/* CSV loading: Fisher's iris (header, string labels) in several dialects, and broken files. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "test-data-util.h"

#include <stdio.h>

/* The iris rows as the test reads them itself: 4 numbers and a species name. */
typedef struct
{
  double x[150][4];
  char species[150][16];
} Iris;

static char *
iris_path (void)
{
  const char *src = g_getenv ("KILT_SOURCE_DIR");

  return g_build_filename (src ? src : "..", "tests", "data", "iris.csv", NULL);
}

static void
read_iris (Iris *iris)
{
  g_autofree char *path = iris_path ();
  FILE *f = fopen (path, "r");
  char line[256];
  guint n = 0;

  g_assert_nonnull (f);
  g_assert_nonnull (fgets (line, sizeof line, f)); /* header */
  while (fgets (line, sizeof line, f))
    {
      g_assert_cmpint (sscanf (line, "%lf,%lf,%lf,%lf,%15s", &iris->x[n][0], &iris->x[n][1],
                               &iris->x[n][2], &iris->x[n][3], iris->species[n]),
                       ==, 5);
      n++;
    }
  fclose (f);
  g_assert_cmpuint (n, ==, 150);
}

/* Writes the iris rows with @delim, the label in column @label_col, optional header/quotes. */
static char *
write_iris (const Iris *iris, const char *dir, const char *name, char delim, guint label_col,
            gboolean header, gboolean quote, guint from, guint to)
{
  char *path = g_build_filename (dir, name, NULL);
  g_autoptr (GString) s = g_string_new (NULL);
  const char *names[5] = { "sepal_length", "sepal_width", "petal_length", "petal_width" };

  for (guint i = header ? 0 : 1; i <= to - from; i++)
    {
      for (guint j = 0, k = 0; j < 5; j++)
        {
          if (j)
            g_string_append_c (s, delim);
          if (j == label_col)
            {
              const char *lab = i == 0 ? "species" : iris->species[from + i - 1];
              if (quote && i > 0)
                g_string_append_printf (s, "\"Iris %s%c \"\"x\"\"\"", lab, delim);
              else
                g_string_append (s, lab);
            }
          else if (i == 0)
            g_string_append (s, names[k++]);
          else
            g_string_append_printf (s, "%.1f", iris->x[from + i - 1][k++]);
        }
      g_string_append (s, i % 2 ? "\r\n" : "\n");
    }
  data_test_write (path, s->str, s->len, FALSE);
  return path;
}

static void
check_standardised (const KiltDataset *ds, const Iris *iris, guint from, guint n_train)
{
  for (guint j = 0; j < 4; j++)
    {
      double sum = 0, sq = 0, mean, std;
      for (guint i = 0; i < n_train; i++)
        sum += iris->x[from + i][j];
      mean = sum / n_train;
      for (guint i = 0; i < n_train; i++)
        sq += (iris->x[from + i][j] - mean) * (iris->x[from + i][j] - mean);
      std = sqrt (sq / n_train);
      g_assert_cmpfloat_with_epsilon (ds->feature_mean[j], mean, 1e-5);
      g_assert_cmpfloat_with_epsilon (ds->feature_std[j], std, 1e-5);
      for (guint i = 0; i < n_train; i++)
        g_assert_cmpfloat_with_epsilon (ds->train.f32[i * 4 + j],
                                        (iris->x[from + i][j] - mean) / std, 1e-4);
    }
}

static void
test_iris (void)
{
  g_autofree char *path = iris_path ();
  g_autoptr (GError) error = NULL;
  g_autoptr (KiltDataset) ds = kilt_dataset_load (path, NULL, NULL, NULL, NULL, &error);
  g_autofree guint *counts = NULL;
  g_autofree char *text = NULL;
  static Iris iris;

  g_assert_no_error (error);
  read_iris (&iris);
  g_assert_cmpstr (ds->format, ==, "csv");
  g_assert_cmpint (ds->type, ==, KILT_SAMPLE_F32);
  g_assert_cmpuint (ds->train.n, ==, 150);
  g_assert_cmpuint (ds->shape.c, ==, 4);
  g_assert_cmpuint (ds->n_classes, ==, 3);
  g_assert_cmpstr (ds->class_names[0], ==, "setosa");
  g_assert_cmpstr (ds->class_names[2], ==, "virginica");
  counts = kilt_dataset_class_counts (ds, KILT_SPLIT_TRAIN);
  for (guint c = 0; c < 3; c++)
    g_assert_cmpuint (counts[c], ==, 50);
  for (guint i = 0; i < 150; i++)
    g_assert_cmpstr (ds->class_names[ds->train.labels[i]], ==, iris.species[i]);
  check_standardised (ds, &iris, 0, 150);
  text = kilt_dataset_describe (ds);
  g_assert_nonnull (strstr (text, "4 features"));
  g_assert_nonnull (strstr (text, "versicolor"));
}

/* Training statistics only: the test split is scaled with the training mean and std. */
static void
test_train_test_folder (void)
{
  g_autofree char *dir = kilt_test_tmpdir ();
  g_autoptr (GError) error = NULL;
  g_autoptr (KiltDataset) ds = NULL;
  static Iris iris;

  read_iris (&iris);
  /* Rows 0..119 train, 120..149 test (virginica only in test beyond row 100). */
  g_free (write_iris (&iris, dir, "train.csv", ',', 4, TRUE, FALSE, 0, 120));
  g_free (write_iris (&iris, dir, "test.csv", ',', 4, TRUE, FALSE, 120, 150));
  ds = kilt_dataset_load (dir, NULL, NULL, NULL, NULL, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (ds->train.n, ==, 120);
  g_assert_cmpuint (ds->test.n, ==, 30);
  check_standardised (ds, &iris, 0, 120);
  for (guint i = 0; i < 30; i++)
    for (guint j = 0; j < 4; j++)
      g_assert_cmpfloat_with_epsilon (
          ds->test.f32[i * 4 + j], (iris.x[120 + i][j] - ds->feature_mean[j]) / ds->feature_std[j],
          1e-5);
}

static void
test_dialects (void)
{
  g_autofree char *dir = kilt_test_tmpdir ();
  g_autoptr (GError) error = NULL;
  static Iris iris;
  KiltLoadOptions opts;

  read_iris (&iris);
  kilt_load_options_init (&opts);
  /* Semicolons, the label first and named, quoted labels holding the delimiter and quotes. */
  {
    g_autofree char *p = write_iris (&iris, dir, "semi.csv", ';', 0, TRUE, TRUE, 0, 150);
    g_autoptr (KiltDataset) ds = NULL;
    opts.label_column = "species";
    ds = kilt_dataset_load (p, &opts, NULL, NULL, NULL, &error);
    g_assert_no_error (error);
    g_assert_cmpuint (ds->n_classes, ==, 3);
    g_assert_cmpstr (ds->class_names[1], ==, "Iris versicolor; \"x\"");
    g_assert_cmpuint (ds->train.n, ==, 150);
    check_standardised (ds, &iris, 0, 150);
  }
  /* Tabs, no header, the label by index. */
  {
    g_autofree char *p = write_iris (&iris, dir, "tab.tsv", '\t', 2, FALSE, FALSE, 0, 150);
    g_autoptr (KiltDataset) ds = NULL;
    opts.label_column = "2";
    ds = kilt_dataset_load (p, &opts, NULL, NULL, NULL, &error);
    g_assert_no_error (error);
    g_assert_cmpuint (ds->train.n, ==, 150);
    g_assert_cmpuint (ds->n_classes, ==, 3);
    g_assert_cmpstr (ds->class_names[ds->train.labels[149]], ==, "virginica");
    check_standardised (ds, &iris, 0, 150);
  }
  /* Regression: petal width from the other three measurements (species dropped). */
  {
    g_autoptr (GString) s = g_string_new ("sepal_length,sepal_width,petal_length,petal_width\n");
    g_autofree char *p = g_build_filename (dir, "reg.csv", NULL);
    g_autoptr (KiltDataset) ds = NULL;
    for (guint i = 0; i < 150; i++)
      g_string_append_printf (s, "%.1f,%.1f,%.1f,%.1f\n", iris.x[i][0], iris.x[i][1], iris.x[i][2],
                              iris.x[i][3]);
    data_test_write (p, s->str, s->len, FALSE);
    kilt_load_options_init (&opts);
    opts.task = KILT_TASK_REGRESSION;
    ds = kilt_dataset_load (p, &opts, NULL, NULL, NULL, &error);
    g_assert_no_error (error);
    g_assert_cmpuint (ds->n_classes, ==, 0);
    g_assert_cmpuint (ds->shape.c, ==, 3);
    g_assert_null (ds->train.labels);
    for (guint i = 0; i < 150; i++)
      g_assert_cmpfloat_with_epsilon (ds->train.targets[i], iris.x[i][3], 1e-6);
  }
  /* Numeric class labels sort as numbers. */
  {
    g_autofree char *p = g_build_filename (dir, "num.csv", NULL);
    g_autoptr (KiltDataset) ds = NULL;
    data_test_write (p, "a,b\n1.5,10\n2.5,2\n0.5,10\n", 24, FALSE);
    kilt_load_options_init (&opts);
    ds = kilt_dataset_load (p, &opts, NULL, NULL, NULL, &error);
    g_assert_no_error (error);
    g_assert_cmpstr (ds->class_names[0], ==, "2");
    g_assert_cmpstr (ds->class_names[1], ==, "10");
    g_assert_cmpint (ds->train.labels[0], ==, 1);
  }
}

static void
test_bad_csv (void)
{
  g_autofree char *dir = kilt_test_tmpdir ();
  g_autofree char *p = g_build_filename (dir, "bad.csv", NULL);
  const char *bad_cells = "a,b,label\n1,2,x\n3,,y\n5,6,z\n7,oops,x\n8,9,\n";
  KiltLoadOptions opts;

  data_test_write (p, "a,b,label\n1,2,x\n3,4\n", 20, FALSE);
  data_test_expect_fail (p, NULL, "bad.csv", "line 3 has 2 fields", "ragged");

  data_test_write (p, bad_cells, strlen (bad_cells), FALSE);
  data_test_expect_fail (p, NULL, "bad.csv", "3 rows", "line 3, column 'b': missing",
                         "line 5, column 'b': 'oops'", "line 6, column 'label': missing");
  kilt_load_options_init (&opts);
  opts.drop_bad_rows = TRUE;
  {
    g_autoptr (GError) error = NULL;
    g_autoptr (KiltDataset) ds = kilt_dataset_load (p, &opts, NULL, NULL, NULL, &error);
    g_assert_no_error (error);
    g_assert_cmpuint (ds->train.n, ==, 2);
    g_assert_cmpuint (ds->skipped, ==, 3);
    g_assert_nonnull (strstr (ds->notes, "dropped 3 rows"));
    g_assert_cmpuint (ds->n_classes, ==, 2); /* x and z remain */
  }

  data_test_write (p, "", 0, FALSE);
  data_test_expect_fail (p, NULL, "bad.csv", "empty");
  data_test_write (p, " \n\n", 3, FALSE);
  data_test_expect_fail (p, NULL, "bad.csv", "empty");
  data_test_write (p, "a,b\n1,\0\x01\x02", 9, FALSE);
  data_test_expect_fail (p, NULL, "bad.csv", "binary", "byte offset 6");
  data_test_write (p, "a,b,c\n", 6, FALSE);
  data_test_expect_fail (p, NULL, "bad.csv", "only a header");
  data_test_write (p, "a,b\n1,\"open\n2,3\n", 16, FALSE);
  data_test_expect_fail (p, NULL, "bad.csv", "line 3", "quoted field");
  data_test_write (p, "a,b\n1,x\"y\"z\n", 12, FALSE);
  {
    g_autoptr (GError) error = NULL;
    g_autoptr (KiltDataset) ds = kilt_dataset_load (p, NULL, NULL, NULL, NULL, &error);
    /* libcsv accepts a quote inside an unquoted field; either way it must not crash. */
    g_assert_true ((ds == NULL) != (error == NULL));
  }
  data_test_write (p, "a;b\n1;2\n", 8, FALSE);
  opts.delimiter = ',';
  data_test_expect_fail (p, &opts, "bad.csv", "one column");
  data_test_write (p, "a,b,c\n1,2,x\n", 12, FALSE);
  kilt_load_options_init (&opts);
  opts.label_column = "species";
  data_test_expect_fail (p, &opts, "bad.csv", "no label column named 'species'", "'a', 'b', 'c'");
  opts.label_column = "7";
  data_test_expect_fail (p, &opts, "bad.csv", "out of range");
}

/* What a hostile file can hold: each is refused cheaply with where and what, or read right. */
static void
test_hostile_csv (void)
{
  g_autofree char *dir = kilt_test_tmpdir ();
  g_autofree char *p = g_build_filename (dir, "odd.csv", NULL);
  g_autoptr (GString) s = g_string_new (NULL);
  KiltLoadOptions opts;

  /* 150,000 columns: refused at the first line, before any per-column memory. It crashed with a
   * stack array of one float per column at 2.2 million. */
  for (guint r = 0; r < 2; r++)
    {
      for (guint j = 0; j < 150000; j++)
        g_string_append (s, "0,");
      g_string_append (s, r ? "b\n" : "a\n");
    }
  data_test_write (p, s->str, s->len, FALSE);
  data_test_expect_fail (p, NULL, "odd.csv", "line 1 has more than 100000 fields");
  /* 100,000 columns is allowed and loads. */
  g_string_truncate (s, 0);
  for (guint r = 0; r < 2; r++)
    {
      for (guint j = 0; j < 99999; j++)
        g_string_append_printf (s, "%u,", (j + r) % 7);
      g_string_append (s, r ? "b\n" : "a\n");
    }
  data_test_write (p, s->str, s->len, FALSE);
  {
    g_autoptr (GError) error = NULL;
    g_autoptr (KiltDataset) ds = kilt_dataset_load (p, NULL, NULL, NULL, NULL, &error);
    g_assert_no_error (error);
    g_assert_cmpuint (ds->shape.c, ==, 99999);
    g_assert_cmpuint (ds->train.n, ==, 2);
    g_assert_cmpuint (ds->n_classes, ==, 2);
  }

  /* A 1 MB cell, closed or never closed: refused with its line and column, and the error quotes
   * a short excerpt rather than the cell. */
  for (guint quoted = 0; quoted < 2; quoted++)
    {
      g_autoptr (GError) error = NULL;
      KiltDataset *ds;
      g_string_assign (s, "a,b\n1,x\n2,");
      if (quoted)
        g_string_append_c (s, '"');
      for (guint i = 0; i < (1u << 20); i++)
        g_string_append_c (s, 'y');
      g_string_append (s, "\n3,z\n");
      data_test_write (p, s->str, s->len, FALSE);
      ds = kilt_dataset_load (p, NULL, NULL, NULL, NULL, &error);
      g_assert_null (ds);
      data_test_assert_error (error, KILT_ENGINE_ERROR_DATA, "odd.csv", "line 3, column 1",
                              "longer than 65536 bytes", "'yyyy", "...'", NULL);
      g_assert_cmpuint (strlen (error->message), <, 300);
    }
  /* Long bad cells are quoted short in the list of bad values too. */
  g_string_assign (s, "a,b\n1,x\n");
  for (guint i = 0; i < 5000; i++)
    g_string_append_c (s, 'q');
  g_string_append (s, ",y\n");
  data_test_write (p, s->str, s->len, FALSE);
  {
    g_autoptr (GError) error = NULL;
    g_assert_null (kilt_dataset_load (p, NULL, NULL, NULL, NULL, &error));
    data_test_assert_error (error, KILT_ENGINE_ERROR_DATA, "line 3, column 'a': 'qqq", "...'",
                            NULL);
    g_assert_cmpuint (strlen (error->message), <, 300);
  }

  /* A byte order mark is not part of the first column's name, nor of a first number. */
  data_test_write (p, "\xef\xbb\xbfname,b,c\nx,2,3\ny,4,5\n", 24, FALSE);
  kilt_load_options_init (&opts);
  opts.label_column = "name";
  {
    g_autoptr (GError) error = NULL;
    g_autoptr (KiltDataset) ds = kilt_dataset_load (p, &opts, NULL, NULL, NULL, &error);
    g_assert_no_error (error);
    g_assert_cmpuint (ds->n_classes, ==, 2);
    g_assert_cmpstr (ds->class_names[0], ==, "x");
  }
  data_test_write (p,
                   "\xef\xbb\xbf"
                   "1,2,x\n3,4,y\n",
                   15, FALSE);
  {
    g_autoptr (GError) error = NULL;
    g_autoptr (KiltDataset) ds = kilt_dataset_load (p, NULL, NULL, NULL, NULL, &error);
    g_assert_no_error (error);
    g_assert_cmpuint (ds->train.n, ==, 2);
    g_assert_cmpuint (ds->skipped, ==, 0);
    g_assert_cmpfloat (ds->feature_mean[0], ==, 2.0f);
  }
  data_test_write (p,
                   "\xff\xfe"
                   "a\0,\0b\0\n\0",
                   10, FALSE);
  data_test_expect_fail (p, NULL, "odd.csv", "UTF-16");

  /* Class names are one line of UTF-8: a quoted line break or a Latin-1 byte is refused with
   * its line. */
  data_test_write (p, "a,b\n1,x\n2,\"two\nlines\"\n3,x\n", 26, FALSE);
  data_test_expect_fail (p, NULL, "odd.csv", "line 3, column 'b'", "line break", "two\\nlines");
  data_test_write (p, "a,b\n1,x\n2,caf\xe9\n", 15, FALSE);
  data_test_expect_fail (p, NULL, "odd.csv", "line 3, column 'b'", "not UTF-8", "0xe9", "offset 3");

  /* A numeric column read as classes: more distinct values than classes allowed. */
  g_string_assign (s, "a,b\n");
  for (guint i = 0; i < 70000; i++)
    g_string_append_printf (s, "1,%u.5\n", i);
  data_test_write (p, s->str, s->len, FALSE);
  data_test_expect_fail (p, NULL, "odd.csv", "70000 distinct values", "65536 classes",
                         "regression");
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/data/csv/iris", test_iris);
  g_test_add_func ("/data/csv/train-test-folder", test_train_test_folder);
  g_test_add_func ("/data/csv/dialects", test_dialects);
  g_test_add_func ("/data/csv/bad", test_bad_csv);
  g_test_add_func ("/data/csv/hostile", test_hostile_csv);
  return g_test_run ();
}
