/* A model's layer table: output shapes, parameters, FLOPs and memory, as rows or as text. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#define G_LOG_DOMAIN "kilt-summary"

#include "kilt-summary.h"
#include "kilt-error.h"
#include "kilt-model-json.h"

#include <string.h>

static void
row_clear (gpointer data)
{
  KiltSummaryRow *r = data;

  g_free (r->name);
  g_free (r->inputs);
}

KiltSummary *
kilt_summary_new (KiltModel *model, guint batch)
{
  KiltSummary *s;

  g_return_val_if_fail (model != NULL && model->built, NULL);
  g_return_val_if_fail (batch > 0, NULL);
  s = g_new0 (KiltSummary, 1);
  s->model_name = g_strdup (model->name);
  s->loss = model->loss;
  s->batch = batch;
  s->is_chain = TRUE;
  s->rows = g_array_new (FALSE, TRUE, sizeof (KiltSummaryRow));
  g_array_set_clear_func (s->rows, row_clear);
  for (guint i = 0; i < kilt_model_n_nodes (model); i++)
    {
      KiltNode *n = kilt_model_node (model, i);
      KiltSummaryRow r = { 0 };
      GString *inputs = g_string_new (NULL);
      gsize act = (gsize)batch * kilt_shape_size (&n->out_shape);

      r.name = g_strdup (n->name);
      r.type = kilt_layer_type_name (n->type);
      for (guint j = 0; j < n->n_inputs; j++)
        g_string_append_printf (inputs, "%s%s", j ? ", " : "",
                                kilt_model_node (model, n->inputs[j])->name);
      r.inputs = g_string_free (inputs, FALSE);
      if (i > 0 && (n->n_inputs != 1 || n->inputs[0] != i - 1))
        s->is_chain = FALSE;
      r.out_shape = n->out_shape;
      r.params = n->n_params;
      r.state = n->n_state;
      r.frozen = n->frozen && (n->n_params > 0 || n->n_state > 0);
      r.flops = n->klass->flops ? n->klass->flops (n) : 0;
      /* The executor's figures for training: activations, their gradients (not for the input,
       * nor below the lowest trainable layer) and the values kept from forward to backward. */
      r.act_bytes = 4 * (guint64)act * (i > 0 && n->grad_path ? 2 : 1);
      if (n->klass->saved_floats)
        r.act_bytes += 4 * (guint64)n->klass->saved_floats (n, batch);
      s->total_params += r.frozen ? 0 : r.params;
      s->total_state += r.state + (r.frozen ? r.params : 0);
      s->total_flops += r.flops;
      s->total_act_bytes += r.act_bytes;
      g_array_append_val (s->rows, r);
    }
  /* A whitening kernel has a gradient but the optimizer never updates it: not trainable. */
  for (guint i = 0; model->built && i < model->n_grad_ranges; i++)
    if (model->grad_ranges[i].fixed)
      {
        s->total_params -= model->grad_ranges[i].n;
        s->total_state += model->grad_ranges[i].n;
      }
  return s;
}

void
kilt_summary_free (KiltSummary *summary)
{
  if (summary == NULL)
    return;
  g_array_unref (summary->rows);
  g_free (summary->model_name);
  g_free (summary);
}

char *
kilt_summary_format_shape (const KiltShape *shape)
{
  if (shape->h == 1 && shape->w == 1)
    return g_strdup_printf ("(None, %u)", shape->c);
  return g_strdup_printf ("(None, %u, %u, %u)", shape->h, shape->w, shape->c);
}

char *
kilt_summary_format_count (guint64 count)
{
  static const char *prefix[] = { "k", "M", "G", "T", "P" };
  double v = (double)count;
  int p = -1;

  if (count < 1000)
    return g_strdup_printf ("%" G_GUINT64_FORMAT, count);
  while (v >= 1000 && p < (int)G_N_ELEMENTS (prefix) - 1)
    {
      v /= 1000;
      p++;
    }
  return g_strdup_printf (v < 10 ? "%.2f %s" : v < 100 ? "%.1f %s" : "%.0f %s", v, prefix[p]);
}

/* 1250858 -> "1,250,858", as Keras prints parameter counts. */
static char *
grouped (guint64 v)
{
  g_autofree char *digits = g_strdup_printf ("%" G_GUINT64_FORMAT, v);
  GString *s = g_string_new (NULL);
  gsize n = strlen (digits);

  for (gsize i = 0; i < n; i++)
    {
      if (i && (n - i) % 3 == 0)
        g_string_append_c (s, ',');
      g_string_append_c (s, digits[i]);
    }
  return g_string_free (s, FALSE);
}

static void
pad (GString *s, const char *text, gsize width, gboolean right)
{
  gsize len = g_utf8_strlen (text, -1);

  if (right)
    for (gsize i = len; i < width; i++)
      g_string_append_c (s, ' ');
  g_string_append (s, text);
  if (!right)
    for (gsize i = len; i < width; i++)
      g_string_append_c (s, ' ');
}

/* Ends the line without trailing blanks (the last column is padded like the others). */
static void
chomp_line (GString *s)
{
  while (s->len && s->str[s->len - 1] == ' ')
    g_string_truncate (s, s->len - 1);
  g_string_append_c (s, '\n');
}

enum
{
  COL_LAYER,
  COL_SHAPE,
  COL_PARAMS,
  COL_FLOPS,
  COL_MEMORY,
  COL_INPUTS,
  N_COLS
};

char *
kilt_summary_to_text (const KiltSummary *summary)
{
  GString *s = g_string_new (NULL);
  guint n_rows = summary->rows->len, n_cols = summary->is_chain ? N_COLS - 1 : N_COLS;
  g_autofree char *mem_title = g_strdup_printf ("Memory @%u", summary->batch);
  const char *titles[N_COLS]
      = { "Layer (type)", "Output Shape", "Param #", "FLOPs", mem_title, "Connected to" };
  const gboolean right[N_COLS] = { FALSE, FALSE, TRUE, TRUE, TRUE, FALSE };
  char ***cells = g_new0 (char **, n_rows);
  gsize width[N_COLS], line = 0;
  g_autofree char *total = grouped (summary->total_params + summary->total_state);
  g_autofree char *total_bytes
      = kilt_format_bytes (4 * (summary->total_params + summary->total_state));
  g_autofree char *trainable = grouped (summary->total_params);
  g_autofree char *frozen = grouped (summary->total_state);
  g_autofree char *flops = kilt_summary_format_count (summary->total_flops);
  g_autofree char *act = kilt_format_bytes (summary->total_act_bytes);

  for (guint c = 0; c < n_cols; c++)
    width[c] = strlen (titles[c]);
  for (guint i = 0; i < n_rows; i++)
    {
      const KiltSummaryRow *r = &g_array_index (summary->rows, KiltSummaryRow, i);
      cells[i] = g_new0 (char *, N_COLS + 1); /* NULL-terminated for g_strfreev */
      cells[i][COL_LAYER] = g_strdup_printf ("%s (%s%s)", r->name, r->type ? r->type : "?",
                                             r->frozen ? ", frozen" : "");
      cells[i][COL_SHAPE] = kilt_summary_format_shape (&r->out_shape);
      cells[i][COL_PARAMS] = grouped (r->params + r->state);
      cells[i][COL_FLOPS] = kilt_summary_format_count (r->flops);
      cells[i][COL_MEMORY] = kilt_format_bytes (r->act_bytes);
      cells[i][COL_INPUTS] = g_strdup (r->inputs);
      for (guint c = 0; c < n_cols; c++)
        width[c] = MAX (width[c], (gsize)g_utf8_strlen (cells[i][c], -1));
    }
  for (guint c = 0; c < n_cols; c++)
    line += width[c] + (c ? 3 : 1);

  g_string_append_printf (s, "Model: \"%s\" (loss: %s)\n", summary->model_name,
                          kilt_loss_name (summary->loss));
  for (gsize i = 0; i < line; i++)
    g_string_append_c (s, '_');
  g_string_append_c (s, '\n');
  for (guint c = 0; c < n_cols; c++)
    {
      g_string_append (s, c ? "   " : " ");
      pad (s, titles[c], width[c], right[c]);
    }
  chomp_line (s);
  for (gsize i = 0; i < line; i++)
    g_string_append_c (s, '=');
  g_string_append_c (s, '\n');
  for (guint i = 0; i < n_rows; i++)
    {
      for (guint c = 0; c < n_cols; c++)
        {
          g_string_append (s, c ? "   " : " ");
          pad (s, cells[i][c], width[c], right[c]);
        }
      chomp_line (s);
      g_strfreev (cells[i]);
    }
  g_free (cells);
  for (gsize i = 0; i < line; i++)
    g_string_append_c (s, '=');
  g_string_append_c (s, '\n');
  g_string_append_printf (s, "Total params: %s (%s)\n", total, total_bytes);
  g_string_append_printf (s, "Trainable params: %s\n", trainable);
  g_string_append_printf (s, "Non-trainable params: %s\n", frozen);
  g_string_append_printf (s, "Forward FLOPs per sample: %s (a multiply-add counts 2)\n", flops);
  g_string_append_printf (s,
                          "Layer memory for training at batch %u: %s (activations, their "
                          "gradients, saved values)\n",
                          summary->batch, act);
  for (gsize i = 0; i < line; i++)
    g_string_append_c (s, '_');
  g_string_append_c (s, '\n');
  return g_string_free (s, FALSE);
}
