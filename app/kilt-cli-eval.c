/* kilt-cli eval: a checkpoint's loss and accuracy on a data set's test split, per class too. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "config.h"

#include "kilt-cli.h"
#include "kilt-evaluation.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* Class names wider than this are cut in the text tables. */
#define NAME_MAX_CHARS 24

/* @text cut to @width characters (UTF-8) and padded with spaces to it; caller frees. */
static char *
cell (const char *text, guint width, gboolean right)
{
  glong len = g_utf8_strlen (text, -1);
  g_autofree char *cut = NULL;
  GString *s;

  if (len > (glong)width)
    {
      const char *end = g_utf8_offset_to_pointer (text, width > 0 ? width - 1 : 0);
      cut = g_strdup_printf ("%.*s…", (int)(end - text), text);
      text = cut;
      len = width;
    }
  s = g_string_new (NULL);
  if (right)
    for (glong i = len; i < (glong)width; i++)
      g_string_append_c (s, ' ');
  g_string_append (s, text);
  if (!right)
    for (glong i = len; i < (glong)width; i++)
      g_string_append_c (s, ' ');
  return g_string_free (s, FALSE);
}

static char *
figure (double v)
{
  return isnan (v) ? g_strdup ("–") : g_strdup_printf ("%.4f", v);
}

static void
print_confusion (const KiltEvaluation *ev)
{
  guint nc = ev->n_classes, name_w = 5, num_w = 1;
  guint64 top = 0;

  for (guint c = 0; c < nc; c++)
    name_w = MAX (name_w, (guint)MIN (g_utf8_strlen (ev->class_names[c], -1), NAME_MAX_CHARS));
  for (guint i = 0; i < nc * nc; i++)
    top = MAX (top, ev->confusion[i]);
  for (guint64 v = top; v >= 10; v /= 10)
    num_w++;
  printf ("\nConfusion matrix (rows: true class, columns: predicted class):\n");
  {
    g_autofree char *corner = cell ("", name_w, FALSE);
    printf ("%s", corner);
  }
  /* Columns as wide as their name, up to 8 characters, and at least as the largest count. */
  for (guint p = 0; p < nc; p++)
    {
      guint w = MAX (num_w, (guint)MIN (g_utf8_strlen (ev->class_names[p], -1), 8));
      g_autofree char *h = cell (ev->class_names[p], w, TRUE);
      printf ("  %s", h);
    }
  printf ("\n");
  for (guint t = 0; t < nc; t++)
    {
      g_autofree char *name = cell (ev->class_names[t], name_w, FALSE);
      printf ("%s", name);
      for (guint p = 0; p < nc; p++)
        {
          guint w = MAX (num_w, (guint)MIN (g_utf8_strlen (ev->class_names[p], -1), 8));
          printf ("  %*" G_GUINT64_FORMAT, (int)w, ev->confusion[(gsize)t * nc + p]);
        }
      printf ("\n");
    }
  printf ("\n");
  {
    g_autofree char *h = cell ("Class", name_w, FALSE);
    printf ("%s  Precision  Recall      F1  Support  Predicted\n", h);
  }
  for (guint c = 0; c < nc; c++)
    {
      g_autofree char *name = cell (ev->class_names[c], name_w, FALSE);
      g_autofree char *pr = figure (ev->precision[c]), *re = figure (ev->recall[c]),
                      *f1 = figure (ev->f1[c]);
      g_autofree char *prc = cell (pr, 9, TRUE), *rec = cell (re, 6, TRUE),
                      *f1c = cell (f1, 6, TRUE);
      printf ("%s  %s  %s  %s  %7" G_GUINT64_FORMAT "  %9" G_GUINT64_FORMAT "\n", name, prc, rec,
              f1c, ev->support[c], ev->n_predicted[c]);
    }
}

static void
print_misclassified (const KiltEvaluation *ev, guint n)
{
  guint shown = MIN (n, ev->misclassified->len);
  gboolean any_path = FALSE;

  printf ("\nMisclassified: %u of %u shown, most confident first\n", shown, ev->misclassified->len);
  if (shown == 0)
    return;
  /* Image folders name each sample's file: the one to open and look at. */
  for (guint i = 0; i < shown && !any_path; i++)
    any_path = g_array_index (ev->misclassified, KiltMisclassified, i).path != NULL;
  printf ("%8s  %-16s  %-16s  %-11s%s\n", "Index", "True", "Predicted", "Probability",
          any_path ? "  File" : "");
  for (guint i = 0; i < shown; i++)
    {
      const KiltMisclassified *m = &g_array_index (ev->misclassified, KiltMisclassified, i);
      g_autofree char *t = cell (ev->class_names[m->truth], 16, FALSE);
      g_autofree char *p = cell (ev->class_names[m->predicted], 16, FALSE);
      g_autofree char *file = m->path ? g_filename_display_name (m->path) : NULL;
      printf ("%8" G_GUINT64_FORMAT "  %s  %s  %-11.4f%s%s\n", m->index, t, p, m->probability,
              file ? "  " : "", file ? file : "");
    }
}

int
kilt_cli_eval (int argc, char **argv)
{
  KiltCliCommon c;
  g_autoptr (GOptionContext) oc = g_option_context_new ("- evaluate a checkpoint");
  g_autofree GOptionEntry *entries = NULL;
  g_autoptr (GError) error = NULL;
  KiltTrainConfig cfg = { 0 };
  KiltDataset *ds = NULL;
  KiltModel *model = NULL;
  KiltEvaluation *ev = NULL;
  gboolean confusion = FALSE;
  int misclassified = -1;
  GOptionEntry extra[] = {
    { "confusion", 0, 0, G_OPTION_ARG_NONE, &confusion,
      "The confusion matrix and precision, recall and F1 per class", NULL },
    { "misclassified", 0, 0, G_OPTION_ARG_INT, &misclassified,
      "List N misclassified samples, most confident first", "N" },
    { NULL },
  };
  double loss = 0, acc = 0;
  int rc = 1;

  kilt_cli_common_init (&c);
  entries = kilt_cli_common_entries (&c);
  g_option_context_add_main_entries (oc, entries, NULL);
  g_option_context_add_main_entries (oc, extra, NULL);
  g_option_context_set_summary (oc, "Give the same --model and --data as for training, and "
                                    "--checkpoint FILE.");
  if (!kilt_cli_common_parse (&c, oc, &argc, &argv, &error))
    {
      fprintf (stderr, "kilt-cli eval: %s\n", error->message);
      rc = 2;
      goto out;
    }
  if (misclassified != -1
      && (misclassified < 0 || misclassified > KILT_EVALUATION_MAX_MISCLASSIFIED))
    {
      fprintf (stderr, "kilt-cli eval: --misclassified takes a count from 0 to %d, not %d\n",
               KILT_EVALUATION_MAX_MISCLASSIFIED, misclassified);
      rc = 2;
      goto out;
    }
  if (!kilt_cli_train_config (&c, &cfg, &error) || !(ds = kilt_cli_load_data (&c, &error))
      || !(model = kilt_cli_load_model (&c, ds, &error))
      || !kilt_cli_data_for_model (&c, model, &ds, &error))
    {
      fprintf (stderr, "kilt-cli eval: %s\n", error->message);
      goto out;
    }
  if (!confusion && misclassified < 0)
    {
      if (!kilt_trainer_evaluate (model, ds, &cfg, &loss, &acc, &error))
        fprintf (stderr, "kilt-cli eval: %s\n", error->message);
      else
        {
          if (c.json)
            printf ("{\"loss\": %.6g, \"accuracy\": %.6g, \"samples\": %zu, \"tta_flip\": %s}\n",
                    loss, acc, ds->test.n ? ds->test.n : ds->val.n, c.tta_flip ? "true" : "false");
          else
            printf ("Test loss %.4f, accuracy %.4f on %zu samples of %s%s\n", loss, acc,
                    ds->test.n ? ds->test.n : ds->val.n, ds->name,
                    c.tta_flip ? " (flip test-time augmentation: each image and its mirror)" : "");
          rc = 0;
        }
      goto out;
    }
  if (!(ev = kilt_evaluation_run (model, ds, &cfg, NULL, NULL, NULL, &error)))
    {
      fprintf (stderr, "kilt-cli eval: %s\n", error->message);
      goto out;
    }
  if (c.json)
    {
      g_autoptr (JsonNode) node = kilt_evaluation_to_json (ev, MAX (misclassified, 0));
      g_autofree char *text = json_to_string (node, FALSE);
      printf ("%s\n", text);
    }
  else
    {
      printf ("%s loss %.4f, accuracy %.4f (%" G_GUINT64_FORMAT " of %" G_GUINT64_FORMAT
              ") on the %s split of %s%s\n",
              ev->split == KILT_SPLIT_TEST ? "Test" : "Validation", ev->loss, ev->accuracy,
              ev->correct, ev->n_samples, kilt_split_kind_name (ev->split), ds->name,
              c.tta_flip ? " (flip test-time augmentation: each image and its mirror)" : "");
      if (confusion)
        print_confusion (ev);
      if (misclassified >= 0)
        print_misclassified (ev, (guint)misclassified);
    }
  rc = 0;
out:
  kilt_evaluation_free (ev);
  kilt_model_free (model);
  kilt_dataset_free (ds);
  kilt_train_config_clear (&cfg);
  kilt_cli_common_clear (&c);
  return rc;
}
