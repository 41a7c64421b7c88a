/* CSV through libcsv: delimiter and header detection, label column, string classes, standardising.
 */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#define G_LOG_DOMAIN "kilt-data-csv"

#include "kilt-data-private.h"

#include <csv.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define MAX_LISTED 5

typedef struct
{
  guint line;  /* where the record starts, 1-based */
  guint first; /* index of its first cell in cells */
  guint n;
} CsvRow;

typedef struct
{
  const char *name;
  GStringChunk *chunk;
  GPtrArray *cells; /* char*, owned by chunk */
  GArray *rows;     /* CsvRow */
  CsvRow cur;
  gboolean in_row;
  guint line;
} CsvTable;

static void
table_clear (CsvTable *t)
{
  if (t->chunk)
    g_string_chunk_free (t->chunk);
  if (t->cells)
    g_ptr_array_unref (t->cells);
  if (t->rows)
    g_array_unref (t->rows);
}

static void
on_field (void *s, size_t len, void *data)
{
  CsvTable *t = data;

  if (!t->in_row)
    {
      t->cur.line = t->line;
      t->cur.first = t->cells->len;
      t->cur.n = 0;
      t->in_row = TRUE;
    }
  g_ptr_array_add (t->cells, g_string_chunk_insert_len (t->chunk, s ? s : "", (gssize)len));
  t->cur.n++;
}

static void
on_row (int c, void *data)
{
  CsvTable *t = data;

  if (!t->in_row)
    return;
  g_array_append_val (t->rows, t->cur);
  t->in_row = FALSE;
}

static int
only_space (unsigned char c)
{
  return c == ' ';
}

/* The delimiter among , ; and tab that the first line (outside quotes) uses most. */
static char
detect_delimiter (const char *text, gsize len)
{
  const char cands[] = { ',', ';', '\t' };
  guint counts[3] = { 0 };
  gboolean quoted = FALSE;
  guint best = 0;

  for (gsize i = 0; i < len; i++)
    {
      if (text[i] == '"')
        quoted = !quoted;
      else if (!quoted && (text[i] == '\n' || text[i] == '\r'))
        {
          if (counts[0] + counts[1] + counts[2] > 0)
            break;
        }
      else if (!quoted)
        for (guint k = 0; k < 3; k++)
          counts[k] += text[i] == cands[k];
    }
  for (guint k = 1; k < 3; k++)
    if (counts[k] > counts[best])
      best = k;
  return cands[best];
}

static gboolean
parse_table (const char *name, const char *text, gsize len, char delim, CsvTable *t, GError **error)
{
  struct csv_parser p;
  gsize pos = 0;

  memset (t, 0, sizeof *t);
  t->name = name;
  t->chunk = g_string_chunk_new (4096);
  t->cells = g_ptr_array_new ();
  t->rows = g_array_new (FALSE, FALSE, sizeof (CsvRow));
  if (csv_init (&p, CSV_STRICT | CSV_STRICT_FINI) != 0)
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_DATA,
                   "%s: could not start the CSV parser", name);
      return FALSE;
    }
  csv_set_delim (&p, (unsigned char)delim);
  csv_set_space_func (&p, only_space);
  /* Fed one line at a time so that each record knows the line it starts on. */
  for (t->line = 1; pos < len; t->line++)
    {
      const char *nl = memchr (text + pos, '\n', len - pos);
      gsize chunk = nl ? (gsize)(nl - (text + pos)) + 1 : len - pos;
      if (csv_parse (&p, text + pos, chunk, on_field, on_row, t) != chunk)
        {
          g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_DATA,
                       "%s: line %u: %s (a quote inside a field that is not quoted, or text "
                       "after a closing quote)",
                       name, t->line, csv_strerror (csv_error (&p)));
          csv_free (&p);
          return FALSE;
        }
      pos += chunk;
    }
  t->line--;
  if (csv_fini (&p, on_field, on_row, t) != 0)
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_DATA,
                   "%s: line %u: the file ends inside a quoted field", name, MAX (t->line, 1));
      csv_free (&p);
      return FALSE;
    }
  csv_free (&p);
  return TRUE;
}

static inline const char *
cell (const CsvTable *t, const CsvRow *r, guint j)
{
  return g_ptr_array_index (t->cells, r->first + j);
}

static gboolean
parse_number (const char *s, double *out)
{
  char *end;

  while (*s == ' ')
    s++;
  if (*s == '\0')
    return FALSE;
  errno = 0;
  *out = g_ascii_strtod (s, &end);
  while (*end == ' ')
    end++;
  return *end == '\0' && errno != ERANGE && isfinite (*out);
}

static gboolean
row_has_number (const CsvTable *t, const CsvRow *r)
{
  double v;

  for (guint j = 0; j < r->n; j++)
    if (parse_number (cell (t, r, j), &v))
      return TRUE;
  return FALSE;
}

static gboolean
check_text (const char *name, const char *text, gsize len, GError **error)
{
  const char *nul = memchr (text, '\0', len);
  gsize i = 0;

  while (i < len && g_ascii_isspace (text[i]))
    i++;
  if (len == 0 || i == len)
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_DATA, "%s: the file is empty", name);
      return FALSE;
    }
  if (nul)
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_DATA,
                   "%s: binary data, not CSV text (a NUL byte at byte offset %" G_GSIZE_FORMAT ")",
                   name, (gsize)(nul - text));
      return FALSE;
    }
  return TRUE;
}

typedef struct
{
  CsvTable t;
  gboolean header;
  guint ncols;
} CsvFile;

static gboolean
read_file (const char *name, const char *text, gsize len, const KiltLoadOptions *opts, CsvFile *f,
           GError **error)
{
  char delim;
  const CsvRow *rows;

  if (!check_text (name, text, len, error))
    return FALSE;
  delim = opts->delimiter ? opts->delimiter : detect_delimiter (text, len);
  if (!parse_table (name, text, len, delim, &f->t, error))
    return FALSE;
  rows = (const CsvRow *)f->t.rows->data;
  if (f->t.rows->len == 0)
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_DATA, "%s: no records", name);
      return FALSE;
    }
  if (opts->header == KILT_HEADER_AUTO)
    f->header = !row_has_number (&f->t, &rows[0])
                && (f->t.rows->len == 1 || row_has_number (&f->t, &rows[1]));
  else
    f->header = opts->header == KILT_HEADER_YES;
  f->ncols = rows[0].n;
  if (f->ncols < 2)
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_DATA,
                   "%s: line %u has one column; Kilt needs feature columns and a label column "
                   "(is the delimiter '%s'?)",
                   name, rows[0].line, delim == '\t' ? "\\t" : (char[]){ delim, 0 });
      return FALSE;
    }
  for (guint i = 1; i < f->t.rows->len; i++)
    if (rows[i].n != f->ncols)
      {
        g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_DATA,
                     "%s: line %u has %u fields but line %u has %u (ragged rows)", name,
                     rows[i].line, rows[i].n, rows[0].line, f->ncols);
        return FALSE;
      }
  if (f->header && f->t.rows->len < 2)
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_DATA,
                   "%s: only a header line, no data", name);
      return FALSE;
    }
  return TRUE;
}

static char *
column_name (const CsvFile *f, guint j)
{
  if (f->header)
    return g_strdup_printf ("'%s'", cell (&f->t, &g_array_index (f->t.rows, CsvRow, 0), j));
  return g_strdup_printf ("column %u", j);
}

static gboolean
find_label_column (const CsvFile *f, const char *spec, guint *out, GError **error)
{
  const CsvRow *h = &g_array_index (f->t.rows, CsvRow, 0);
  guint64 idx;

  if (spec == NULL)
    {
      *out = f->ncols - 1;
      return TRUE;
    }
  if (f->header)
    for (guint j = 0; j < f->ncols; j++)
      if (g_strcmp0 (cell (&f->t, h, j), spec) == 0)
        {
          *out = j;
          return TRUE;
        }
  if (g_ascii_string_to_unsigned (spec, 10, 0, G_MAXUINT, &idx, NULL))
    {
      if (idx >= f->ncols)
        {
          g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_DATA,
                       "%s: label column %s is out of range; the file has %u columns, "
                       "numbered from 0",
                       f->t.name, spec, f->ncols);
          return FALSE;
        }
      *out = (guint)idx;
      return TRUE;
    }
  {
    g_autoptr (GString) names = g_string_new (NULL);
    for (guint j = 0; f->header && j < f->ncols; j++)
      g_string_append_printf (names, "%s'%s'", j ? ", " : "", cell (&f->t, h, j));
    g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_DATA,
                 "%s: no label column named '%s' (columns: %s)", f->t.name, spec,
                 f->header ? names->str : "none named; the file has no header");
  }
  return FALSE;
}

/* Rows that survived checking: features parsed, label kept as text. */
typedef struct
{
  GArray *x;         /* float, n x nf */
  GPtrArray *labels; /* const char* into the table */
  guint dropped;
} CsvRows;

static gboolean
collect_rows (const CsvFile *f, guint label_col, const KiltLoadOptions *opts, CsvRows *out,
              GError **error)
{
  guint nf = f->ncols - 1, n_bad = 0;
  g_autoptr (GString) listed = g_string_new (NULL);
  guint n_listed = 0;
  float *row = g_newa (float, nf);

  out->x = g_array_new (FALSE, FALSE, sizeof (float));
  out->labels = g_ptr_array_new ();
  out->dropped = 0;
  for (guint i = f->header ? 1 : 0; i < f->t.rows->len; i++)
    {
      const CsvRow *r = &g_array_index (f->t.rows, CsvRow, i);
      gboolean bad = FALSE;
      const char *label = cell (&f->t, r, label_col);
      double v = 0;

      if (opts->max_samples && out->labels->len >= opts->max_samples)
        break;
      for (guint j = 0, k = 0; j < f->ncols; j++)
        {
          const char *s = cell (&f->t, r, j);
          gboolean ok;
          if (j == label_col)
            ok = opts->task == KILT_TASK_REGRESSION ? parse_number (s, &v)
                                                    : strspn (s, " ") != strlen (s);
          else
            {
              ok = parse_number (s, &v);
              row[k++] = (float)v;
            }
          if (!ok)
            {
              bad = TRUE;
              if (n_listed < MAX_LISTED)
                {
                  g_autofree char *col = column_name (f, j);
                  g_string_append_printf (listed, "\n  line %u, column %s: %s%s%s", r->line, col,
                                          *s ? "'" : "", *s ? s : "missing", *s ? "'" : "");
                  n_listed++;
                }
            }
        }
      if (bad)
        {
          n_bad++;
          continue;
        }
      g_array_append_vals (out->x, row, nf);
      g_ptr_array_add (out->labels, (gpointer)label);
    }
  if (n_bad && !opts->drop_bad_rows)
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_DATA,
                   "%s: %u row%s with missing or non-numeric values:%s%s\n(drop such rows with "
                   "the drop-bad-rows option)",
                   f->t.name, n_bad, n_bad == 1 ? "" : "s", listed->str,
                   n_listed < n_bad ? "\n  ..." : "");
      return FALSE;
    }
  out->dropped = n_bad;
  if (out->labels->len == 0)
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_DATA,
                   "%s: no usable rows (%u dropped for missing or non-numeric values)", f->t.name,
                   n_bad);
      return FALSE;
    }
  return TRUE;
}

static void
rows_clear (CsvRows *r)
{
  if (r->x)
    g_array_unref (r->x);
  if (r->labels)
    g_ptr_array_unref (r->labels);
}

static gint
compare_labels (gconstpointer a, gconstpointer b, gpointer numeric)
{
  const char *sa = *(const char *const *)a, *sb = *(const char *const *)b;

  if (GPOINTER_TO_INT (numeric))
    {
      double x = g_ascii_strtod (sa, NULL), y = g_ascii_strtod (sb, NULL);
      return x < y ? -1 : x > y;
    }
  return strcmp (sa, sb);
}

static void
fill_split (KiltDataset *ds, const CsvRows *r, GHashTable *classes, KiltSplit *sp)
{
  gsize n = r->labels->len;

  sp->n = n;
  sp->f32 = g_memdup2 (r->x->data, MAX (n * ds->shape.c * sizeof (float), 1));
  if (ds->n_classes)
    {
      sp->labels = g_new (gint32, MAX (n, 1));
      for (gsize i = 0; i < n; i++)
        sp->labels[i]
            = GPOINTER_TO_INT (g_hash_table_lookup (classes, g_ptr_array_index (r->labels, i))) - 1;
    }
  else
    {
      sp->targets = g_new (float, MAX (n, 1));
      for (gsize i = 0; i < n; i++)
        sp->targets[i] = (float)g_ascii_strtod (g_ptr_array_index (r->labels, i), NULL);
    }
}

KiltDataset *
kilt_csv_parse (const char *train_name, const char *train, gsize train_len, const char *test_name,
                const char *test, gsize test_len, const KiltLoadOptions *opts, GError **error)
{
  CsvFile files[2] = { 0 };
  CsvRows rows[2] = { 0 };
  guint n_files = test ? 2 : 1, label_col = 0;
  g_autoptr (GHashTable) classes = g_hash_table_new (g_str_hash, g_str_equal);
  g_autoptr (KiltDataset) ds = NULL;
  KiltDataset *result = NULL;
  const char *names[2] = { train_name, test_name };
  const char *texts[2] = { train, test };
  gsize lens[2] = { train_len, test_len };

  for (guint k = 0; k < n_files; k++)
    if (!read_file (names[k], texts[k], lens[k], opts, &files[k], error))
      goto out;
  if (!find_label_column (&files[0], opts->label_column, &label_col, error))
    goto out;
  if (n_files == 2 && files[1].ncols != files[0].ncols)
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_DATA,
                   "%s: %u columns, but %s has %u", test_name, files[1].ncols, train_name,
                   files[0].ncols);
      goto out;
    }
  for (guint k = 0; k < n_files; k++)
    if (!collect_rows (&files[k], label_col, opts, &rows[k], error))
      goto out;

  {
    g_autofree char *base = g_path_get_basename (train_name);
    ds = kilt_data_new (base, train_name, "csv");
  }
  ds->type = KILT_SAMPLE_F32;
  ds->shape = (KiltShape){ files[0].ncols - 1, 1, 1 };
  ds->n_targets = 1;
  if (opts->task == KILT_TASK_CLASSIFICATION)
    {
      g_autoptr (GPtrArray) uniq = g_ptr_array_new ();
      gboolean numeric = TRUE;
      for (guint k = 0; k < n_files; k++)
        for (guint i = 0; i < rows[k].labels->len; i++)
          {
            const char *l = g_ptr_array_index (rows[k].labels, i);
            double v;
            if (!g_hash_table_contains (classes, l))
              {
                g_hash_table_insert (classes, (gpointer)l, GINT_TO_POINTER (1));
                g_ptr_array_add (uniq, (gpointer)l);
                numeric = numeric && parse_number (l, &v);
              }
          }
      /* Sorted, as scikit-learn's LabelEncoder does, so indices do not depend on row order. */
      g_ptr_array_sort_with_data (uniq, compare_labels, GINT_TO_POINTER (numeric));
      ds->n_classes = uniq->len;
      ds->class_names = g_new0 (char *, uniq->len + 1);
      for (guint i = 0; i < uniq->len; i++)
        {
          ds->class_names[i] = g_strstrip (g_strdup (g_ptr_array_index (uniq, i)));
          g_hash_table_insert (classes, g_ptr_array_index (uniq, i), GINT_TO_POINTER (i + 1));
        }
    }
  fill_split (ds, &rows[0], classes, &ds->train);
  if (n_files == 2)
    fill_split (ds, &rows[1], classes, &ds->test);
  ds->skipped = rows[0].dropped + rows[1].dropped;
  if (ds->skipped)
    kilt_data_note (ds, "dropped %u row%s with missing or non-numeric values", ds->skipped,
                    ds->skipped == 1 ? "" : "s");
  kilt_data_standardise (ds);
  result = g_steal_pointer (&ds);

out:
  for (guint k = 0; k < 2; k++)
    {
      rows_clear (&rows[k]);
      table_clear (&files[k].t);
    }
  return result;
}

KiltDataset *
kilt_data_load_csv (const char *path, const KiltLoadOptions *opts, KiltProgressFunc progress,
                    gpointer user_data, GCancellable *cancel, GError **error)
{
  g_autofree char *train_path = NULL, *test_path = NULL;
  g_autofree guint8 *train = NULL, *test = NULL;
  gsize train_len = 0, test_len = 0;
  KiltDataset *ds;

  if (g_file_test (path, G_FILE_TEST_IS_DIR))
    {
      train_path = g_build_filename (path, "train.csv", NULL);
      test_path = g_build_filename (path, "test.csv", NULL);
      if (!g_file_test (test_path, G_FILE_TEST_IS_REGULAR))
        {
          g_free (test_path);
          test_path = g_build_filename (path, "val.csv", NULL);
        }
      if (!g_file_test (test_path, G_FILE_TEST_IS_REGULAR))
        g_clear_pointer (&test_path, g_free);
    }
  else
    train_path = g_strdup (path);

  kilt_data_progress (progress, user_data, 0.0, "reading %s", train_path);
  if (!kilt_data_read_file (train_path, KILT_DATA_MAX_FILE_BYTES, &train, &train_len, error))
    return NULL;
  if (test_path
      && !kilt_data_read_file (test_path, KILT_DATA_MAX_FILE_BYTES, &test, &test_len, error))
    return NULL;
  if (!kilt_data_check_cancel (cancel, error))
    return NULL;
  ds = kilt_csv_parse (train_path, (const char *)train, train_len, test_path, (const char *)test,
                       test_len, opts, error);
  if (ds && g_file_test (path, G_FILE_TEST_IS_DIR))
    {
      g_free (ds->name);
      ds->name = g_path_get_basename (path);
    }
  return ds;
}
