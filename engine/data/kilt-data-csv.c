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
/* A wider or longer file is refused at once, before memory grows with it: tabular data sets
 * have thousands of columns at most, and a number or class name fits in far less than a cell. */
#define MAX_COLUMNS 100000
#define MAX_CELL    65536
/* Bytes handed to libcsv at a time, so that a cell that never ends is caught early. */
#define FEED 65536
/* Characters of a cell quoted in an error. */
#define EXCERPT 40

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
  gboolean too_wide; /* a record with more than MAX_COLUMNS fields: its line is in cur */
  char *long_cell;   /* an excerpt of a cell longer than MAX_CELL */
  guint long_line;   /* and where it starts */
  guint long_col;
} CsvTable;

/* At most EXCERPT characters of @s (@len bytes), valid UTF-8, control characters escaped, with
 * "..." when cut: what an error quotes of a cell, however long or odd the cell is. */
static char *
excerpt (const char *s, gsize len)
{
  g_autofree char *valid = g_utf8_make_valid (s, (gssize)MIN (len, (gsize)EXCERPT * 4));
  GString *out = g_string_new (NULL);
  const char *c = valid;
  guint n = 0;

  for (; *c && n < EXCERPT; c = g_utf8_next_char (c), n++)
    {
      gunichar u = g_utf8_get_char (c);
      if (u == '\n')
        g_string_append (out, "\\n");
      else if (u == '\r')
        g_string_append (out, "\\r");
      else if (u == '\t')
        g_string_append (out, "\\t");
      else if (g_unichar_iscntrl (u))
        g_string_append_printf (out, "\\x%02x", u);
      else
        g_string_append_unichar (out, u);
    }
  if (*c || len > (gsize)EXCERPT * 4)
    g_string_append (out, "...");
  return g_string_free (out, FALSE);
}

static void
table_clear (CsvTable *t)
{
  if (t->chunk)
    g_string_chunk_free (t->chunk);
  if (t->cells)
    g_ptr_array_unref (t->cells);
  if (t->rows)
    g_array_unref (t->rows);
  g_free (t->long_cell);
}

static void
on_field (void *s, size_t len, void *data)
{
  CsvTable *t = data;

  if (t->too_wide || t->long_cell)
    return; /* refused after this piece of input; keep nothing more */
  if (!t->in_row)
    {
      t->cur.line = t->line;
      t->cur.first = t->cells->len;
      t->cur.n = 0;
      t->in_row = TRUE;
    }
  if (t->cur.n >= MAX_COLUMNS)
    {
      t->too_wide = TRUE;
      return;
    }
  if (len > MAX_CELL)
    {
      t->long_cell = excerpt (s ? s : "", len);
      t->long_line = t->cur.line;
      t->long_col = t->cur.n;
      return;
    }
  g_ptr_array_add (t->cells, g_string_chunk_insert_len (t->chunk, s ? s : "", (gssize)len));
  t->cur.n++;
}

static void
on_row (int c, void *data)
{
  CsvTable *t = data;

  if (!t->in_row || t->too_wide || t->long_cell)
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
limits_ok (const CsvTable *t, GError **error)
{
  if (t->too_wide)
    g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_DATA,
                 "%s: line %u has more than %u fields; Kilt reads at most %u columns", t->name,
                 t->cur.line, MAX_COLUMNS, MAX_COLUMNS);
  else if (t->long_cell)
    g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_DATA,
                 "%s: line %u, column %u: a cell longer than %u bytes ('%s'); a number or a "
                 "class name is far shorter (an unclosed quote?)",
                 t->name, t->long_line, t->long_col, MAX_CELL, t->long_cell);
  return !t->too_wide && !t->long_cell;
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
  /* Fed one line at a time so that each record knows the line it starts on, and a long line
   * in pieces so that a huge cell or record is refused before it is all buffered. */
  for (t->line = 1; pos < len; t->line++)
    {
      const char *nl = memchr (text + pos, '\n', len - pos);
      gsize line_end = nl ? (gsize)(nl - text) + 1 : len;
      while (pos < line_end)
        {
          gsize chunk = MIN (line_end - pos, (gsize)FEED);
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
          if (p.entry_pos > MAX_CELL && !t->long_cell)
            {
              /* A cell still open: libcsv holds what it has read of it. */
              t->long_cell = excerpt ((const char *)p.entry_buf, p.entry_pos);
              t->long_line = t->in_row ? t->cur.line : t->line;
              t->long_col = t->in_row ? t->cur.n : 0;
            }
          if (!limits_ok (t, error))
            {
              csv_free (&p);
              return FALSE;
            }
        }
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
  return limits_ok (t, error);
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
  if (len >= 2
      && (((guint8)text[0] == 0xff && (guint8)text[1] == 0xfe)
          || ((guint8)text[0] == 0xfe && (guint8)text[1] == 0xff)))
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_DATA,
                   "%s: UTF-16 text (a UTF-16 byte order mark at byte offset 0); save the file "
                   "as UTF-8",
                   name);
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
  /* A UTF-8 byte order mark (Excel writes one) is not part of the first cell. */
  if (len >= 3 && memcmp (text, "\xef\xbb\xbf", 3) == 0)
    text += 3, len -= 3;
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
    {
      const char *h = cell (&f->t, &g_array_index (f->t.rows, CsvRow, 0), j);
      g_autofree char *short_name = excerpt (h, strlen (h));
      return g_strdup_printf ("'%s'", short_name);
    }
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
    g_autofree char *want = excerpt (spec, strlen (spec));
    for (guint j = 0; f->header && j < MIN (f->ncols, 20u); j++)
      {
        g_autofree char *col = column_name (f, j);
        g_string_append_printf (names, "%s%s", j ? ", " : "", col);
      }
    if (f->header && f->ncols > 20)
      g_string_append_printf (names, " ... (%u in all)", f->ncols);
    g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_DATA,
                 "%s: no label column named '%s' (columns: %s)", f->t.name, want,
                 f->header ? names->str : "none named; the file has no header");
  }
  return FALSE;
}

/* A class name is shown in the window and written to the run record: one line of UTF-8. */
static gboolean
check_class_name (const CsvFile *f, const CsvRow *r, guint j, const char *s, GError **error)
{
  const char *bad = NULL;
  g_autofree char *col = NULL, *val = NULL;

  if (g_utf8_validate (s, -1, &bad) && strpbrk (s, "\r\n") == NULL)
    return TRUE;
  col = column_name (f, j);
  val = excerpt (s, strlen (s));
  if (bad && *bad)
    g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_DATA,
                 "%s: line %u, column %s: the label '%s' is not UTF-8 text (byte 0x%02x at "
                 "offset %u of the cell); save the file as UTF-8",
                 f->t.name, r->line, col, val, (guint8)*bad, (guint)(bad - s));
  else
    g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_DATA,
                 "%s: line %u, column %s: the label '%s' holds a line break (inside quotes); a "
                 "class name is one line",
                 f->t.name, r->line, col, val);
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
  g_autofree float *row = g_new (float, MAX (nf, 1));

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
          if (j == label_col && opts->task == KILT_TASK_CLASSIFICATION
              && !check_class_name (f, r, j, s, error))
            return FALSE;
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
                  g_autofree char *val = excerpt (s, strlen (s));
                  g_string_append_printf (listed, "\n  line %u, column %s: %s%s%s", r->line, col,
                                          *s ? "'" : "", *s ? val : "missing", *s ? "'" : "");
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
      if (uniq->len > KILT_DATA_MAX_CLASSES)
        {
          g_autofree char *col = column_name (&files[0], label_col);
          g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_DATA,
                       "%s: the label column %s holds %u distinct values, more than the %u "
                       "classes Kilt allows; is it a numeric target (the regression task)?",
                       train_name, col, uniq->len, KILT_DATA_MAX_CLASSES);
          goto out;
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
  /* Ids for an Embedding are names of rows, not quantities: they stay as they are. */
  if (!opts->raw_features)
    kilt_data_standardise (ds);
  else
    kilt_data_note (ds, "features kept as read (not standardised)");
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
  g_autoptr (GBytes) train = NULL, test = NULL;
  gsize train_len = 0, test_len = 0;
  const char *train_text, *test_text = NULL;
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
  train = kilt_data_read_bytes (train_path, KILT_DATA_MAX_FILE_BYTES, error);
  if (train == NULL)
    return NULL;
  train_text = g_bytes_get_data (train, &train_len);
  if (test_path)
    {
      test = kilt_data_read_bytes (test_path, KILT_DATA_MAX_FILE_BYTES, error);
      if (test == NULL)
        return NULL;
      test_text = g_bytes_get_data (test, &test_len);
    }
  if (!kilt_data_check_cancel (cancel, error))
    return NULL;
  ds = kilt_csv_parse (train_path, train_text, train_len, test_path, test_text, test_len, opts,
                       error);
  if (ds && g_file_test (path, G_FILE_TEST_IS_DIR))
    {
      g_free (ds->name);
      ds->name = g_path_get_basename (path);
    }
  return ds;
}
