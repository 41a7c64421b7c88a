/* kilt-cli train, eval, summary and data info: argument parsing and terminal output. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "config.h"

#include "kilt-cli.h"
#include "kilt-gemm-tf32.h"
#include "kilt-checkpoint.h"
#include "kilt-error.h"
#include "kilt-ids.h"
#include "kilt-keras-file.h"
#include "kilt-keras.h"
#include "kilt-optimizer.h"
#include "kilt-model-json.h"
#include "kilt-run-recorder.h"
#include "kilt-planner.h"
#include "kilt-recipe.h"
#include "kilt-summary.h"
#include "kilt-trainer.h"
#include "kilt-worker-protocol.h"

#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* ---- shared option handling --------------------------------------------------------------- */

void
kilt_cli_common_init (KiltCliCommon *c)
{
  memset (c, 0, sizeof *c);
  c->data = g_strdup ("sample");
  c->model = g_strdup ("lenet5");
  c->batch = 32;
  c->epochs = 2;
  c->seed = 1;
  c->optimizer = g_strdup ("adam");
  c->lr = NAN;
  c->momentum = NAN;
  c->rho = NAN;
  c->decay = NAN;
  c->epsilon = NAN;
  c->weight_decay = 0;
  c->warmup_epochs = NAN;
  c->lr_start = NAN;
  c->lr_final = NAN;
  c->lr_peak = NAN;
  c->label_smoothing = 0;
  c->val_split = 0;
  c->loss = NULL;
}

void
kilt_cli_common_clear (KiltCliCommon *c)
{
  g_free (c->device);
  g_free (c->data);
  g_free (c->model);
  g_free (c->weights);
  g_free (c->freeze_until);
  g_free (c->optimizer);
  g_free (c->lr_schedule);
  g_free (c->precision);
  g_free (c->memory);
  g_free (c->checkpoint);
  g_free (c->loss);
  g_free (c->label_column);
  g_free (c->run_name);
  g_free (c->image_size);
  g_free (c->recipe);
  for (gsize i = 0; i < G_N_ELEMENTS (c->number_text); i++)
    g_free (c->number_text[i]);
}

/* The floating-point options. GOption's own double parsing takes "nan" and "inf" as numbers,
 * and a sentinel such as -1 for "not given" silently turned a negative value into the
 * default: they arrive as text and are checked here. Order: KiltCliCommon.number_text. */
typedef struct
{
  const char *option;
  gsize offset; /* of the double in KiltCliCommon */
  double min, max;
  gboolean min_open, max_open;
} NumberOption;

static const NumberOption number_options[] = {
  { "lr", G_STRUCT_OFFSET (KiltCliCommon, lr), 0, G_MAXFLOAT, TRUE, FALSE },
  { "momentum", G_STRUCT_OFFSET (KiltCliCommon, momentum), 0, 1, FALSE, TRUE },
  { "rho", G_STRUCT_OFFSET (KiltCliCommon, rho), 0, 1, FALSE, TRUE },
  { "epsilon", G_STRUCT_OFFSET (KiltCliCommon, epsilon), 0, G_MAXFLOAT, TRUE, FALSE },
  { "decay", G_STRUCT_OFFSET (KiltCliCommon, decay), 0, G_MAXFLOAT, FALSE, FALSE },
  { "weight-decay", G_STRUCT_OFFSET (KiltCliCommon, weight_decay), 0, G_MAXFLOAT, FALSE, FALSE },
  { "val-split", G_STRUCT_OFFSET (KiltCliCommon, val_split), 0, 1, FALSE, TRUE },
  { "warmup-epochs", G_STRUCT_OFFSET (KiltCliCommon, warmup_epochs), 0, KILT_CHECKPOINT_MAX_EPOCHS,
    FALSE, FALSE },
  { "lr-start", G_STRUCT_OFFSET (KiltCliCommon, lr_start), 0, 1, FALSE, FALSE },
  { "lr-final", G_STRUCT_OFFSET (KiltCliCommon, lr_final), 0, 1, FALSE, FALSE },
  { "lr-peak-at", G_STRUCT_OFFSET (KiltCliCommon, lr_peak), 0, 1, FALSE, FALSE },
  { "label-smoothing", G_STRUCT_OFFSET (KiltCliCommon, label_smoothing), 0, 1, FALSE, TRUE },
};

G_STATIC_ASSERT (G_N_ELEMENTS (number_options)
                 == G_N_ELEMENTS (((KiltCliCommon *)NULL)->number_text));

static char *
number_range (const NumberOption *n)
{
  if (n->max >= G_MAXFLOAT)
    return g_strdup_printf ("%s %g (and at most %.3g)", n->min_open ? "greater than" : "at least",
                            n->min, (double)G_MAXFLOAT);
  return g_strdup_printf ("in %c%g, %g%c", n->min_open ? '(' : '[', n->min, n->max,
                          n->max_open ? ')' : ']');
}

static gboolean
parse_number (const NumberOption *n, const char *text, double *out, GError **error)
{
  g_autofree char *range = number_range (n);
  char *end = NULL;
  double v;

  v = g_ascii_strtod (text, &end);
  if (end == text || *end != '\0' || g_ascii_isspace (*text))
    {
      g_set_error (error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                   "--%s wants a number %s; \"%s\" is not a number", n->option, range, text);
      return FALSE;
    }
  /* The engine keeps 32-bit floats: a value must stay in range once it is one (1e-50 would
   * become 0 and 1e39 infinity). */
  if (!isfinite (v) || fabs (v) > G_MAXFLOAT || !isfinite ((float)v) || v < n->min
      || (n->min_open && (float)v <= n->min) || v > n->max
      || (n->max_open && (v >= n->max || (float)v >= n->max)))
    {
      g_set_error (error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                   "--%s wants a finite number %s, not %s", n->option, range, text);
      return FALSE;
    }
  *out = v;
  return TRUE;
}

static gboolean
check_int (const char *option, int v, int min, int max, GError **error)
{
  if (v >= min && v <= max)
    return TRUE;
  g_set_error (error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
               "--%s wants a whole number from %d to %d, not %d", option, min, max, v);
  return FALSE;
}

static char *
number_text (double v)
{
  char buf[G_ASCII_DTOSTR_BUF_SIZE];

  return g_strdup (g_ascii_formatd (buf, sizeof buf, "%.9g", v));
}

/* The recipe named by --recipe among @argv, as the defaults the other options then override
 * (GOption reads every option in one pass, so it is looked up first). */
static gboolean
apply_recipe (KiltCliCommon *c, int argc, char **argv, GError **error)
{
  const char *name = NULL;
  KiltRecipe r;
  const KiltTrainConfig *k = &r.config;
  const KiltOptimizerConfig *o = &k->opt;

  for (int i = 1; i < argc; i++)
    {
      if (g_str_equal (argv[i], "--"))
        break;
      if (g_str_equal (argv[i], "--recipe") && i + 1 < argc)
        name = argv[i + 1];
      else if (g_str_has_prefix (argv[i], "--recipe="))
        name = argv[i] + strlen ("--recipe=");
    }
  if (name == NULL)
    return TRUE;
  if (!kilt_recipe_get (name, &r, error))
    return FALSE;
  g_free (c->model);
  c->model = g_strdup (r.preset);
  g_free (c->optimizer);
  c->optimizer = g_strdup (kilt_optimizer_name (o->type));
  c->epochs = (int)k->epochs;
  c->batch = (int)k->batch;
  c->nesterov = o->nesterov;
  c->lookahead = o->lookahead;
  c->translate = (int)k->translate;
  c->alternate_flip = k->alternate_flip;
  c->tta_flip = k->tta_flip;
  c->standardize = k->preprocess == KILT_PREPROCESS_STANDARD;
  c->augment = k->augment;
  c->lr_schedule = g_strdup (kilt_lr_schedule_name (o->schedule.type));
  c->number_text[0] = number_text (o->lr);
  c->number_text[1] = number_text (o->momentum);
  c->number_text[5] = number_text (o->weight_decay);
  if (o->schedule.type == KILT_LR_ONE_CYCLE)
    {
      c->number_text[8] = number_text (o->schedule.start);
      c->number_text[9] = number_text (o->schedule.final);
      c->number_text[10] = number_text (o->schedule.peak);
    }
  c->number_text[11] = number_text (k->label_smoothing);
  return TRUE;
}

gboolean
kilt_cli_common_parse (KiltCliCommon *c, GOptionContext *oc, int *argc, char ***argv,
                       GError **error)
{
  gboolean recipe_ok = apply_recipe (c, *argc, *argv, error);
  /* GOption overwrites a string option's pointer without freeing what was there: keep the
   * defaults (a recipe's too) aside and free each one that a given option replaced. */
  char *defaults[] = { c->data,           c->model,           c->optimizer,      c->lr_schedule,
                       c->number_text[0], c->number_text[1],  c->number_text[5], c->number_text[8],
                       c->number_text[9], c->number_text[10], c->number_text[11] };
  char **fields[]
      = { &c->data,           &c->model,           &c->optimizer,      &c->lr_schedule,
          &c->number_text[0], &c->number_text[1],  &c->number_text[5], &c->number_text[8],
          &c->number_text[9], &c->number_text[10], &c->number_text[11] };
  g_autofree char **given = g_memdup2 (*argv, sizeof (char *) * (*argc + 1));
  int n_given = *argc;
  gboolean ok = recipe_ok && g_option_context_parse (oc, argc, argv, error);

  /* A text option (--name, --device, ...) whose value is not UTF-8 fails in GOption's
   * conversion with no word of which option: say it. (File names may be any bytes.) */
  if (!ok && error && *error && (*error)->domain == G_CONVERT_ERROR)
    for (int i = 1; i < n_given; i++)
      if (!g_utf8_validate (given[i], -1, NULL))
        {
          const char *eq = strchr (given[i], '=');
          g_autofree char *option = given[i][0] == '-' && eq ? g_strndup (given[i], eq - given[i])
                                                             : g_strdup (given[i - 1]);
          g_clear_error (error);
          g_set_error (error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                       "%s wants UTF-8 text; the value given holds bytes that are not",
                       g_utf8_validate (option, -1, NULL) ? option : "an option");
          break;
        }

  for (gsize i = 0; i < G_N_ELEMENTS (fields); i++)
    if (*fields[i] != defaults[i])
      g_free (defaults[i]);
  for (gsize i = 0; ok && i < G_N_ELEMENTS (number_options); i++)
    if (c->number_text[i])
      ok = parse_number (&number_options[i], c->number_text[i],
                         (double *)((char *)c + number_options[i].offset), error);
  ok = ok && check_int ("epochs", c->epochs, 1, KILT_CHECKPOINT_MAX_EPOCHS, error)
       && check_int ("batch", c->batch, 1, 65536, error)
       && check_int ("seed", c->seed, 0, G_MAXINT, error)
       && check_int ("warmup-steps", c->warmup_steps, 0, G_MAXINT, error)
       && check_int ("translate", c->translate, 0, 64, error)
       && check_int ("max-samples", c->max_samples, 0, G_MAXINT, error);
  /* The name goes into the run store, JSON and HTML reports: text, not bytes. */
  if (ok && c->run_name && !g_utf8_validate (c->run_name, -1, NULL))
    {
      g_set_error (error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                   "--name must be UTF-8 text; the name given holds bytes that are not");
      ok = FALSE;
    }
  return ok;
}

GOptionEntry *
kilt_cli_common_entries (KiltCliCommon *c)
{
  GOptionEntry entries[] = {
    { "device", 'd', 0, G_OPTION_ARG_STRING, &c->device,
      "OpenCL device: id, index or unique part of the name (default: the saved default)", "DEV" },
    { "data", 0, 0, G_OPTION_ARG_FILENAME, &c->data,
      "Data set: sample, fashion-mnist, or a path (IDX, CIFAR binary, image folder, CSV)", "DATA" },
    { "model", 'm', 0, G_OPTION_ARG_FILENAME, &c->model,
      "Model: a preset name (kilt-cli summary --list), a Kilt JSON file, a Keras to_json file, "
      "or a Keras .h5 / .keras file (architecture and weights)",
      "MODEL" },
    { "weights", 0, 0, G_OPTION_ARG_FILENAME, &c->weights,
      "Keras weights for --model: a save_weights .h5 or .weights.h5, or a .h5 / .keras model",
      "FILE" },
    { "freeze-until", 0, 0, G_OPTION_ARG_STRING, &c->freeze_until,
      "Freeze every layer up to and including LAYER (by name): no weight updates there", "LAYER" },
    { "unfreeze-all", 0, 0, G_OPTION_ARG_NONE, &c->unfreeze_all,
      "Train every layer, also those a Keras file marks trainable = false", NULL },
    { "replace-head", 0, 0, G_OPTION_ARG_NONE, &c->replace_head,
      "When the model's outputs differ from the data's classes, replace its last Dense (and "
      "activation) by a new softmax Dense with one unit per class",
      NULL },
    { "loss", 0, 0, G_OPTION_ARG_STRING, &c->loss,
      "Loss: softmax_cross_entropy, binary_cross_entropy or mse (default: the model's)", "LOSS" },
    { "epochs", 'e', 0, G_OPTION_ARG_INT, &c->epochs, "Epochs (default 2)", "N" },
    { "batch", 'b', 0, G_OPTION_ARG_INT, &c->batch, "Batch size (default 32)", "N" },
    { "optimizer", 'o', 0, G_OPTION_ARG_STRING, &c->optimizer,
      "sgd, rmsprop, adam, adadelta or adagrad (default adam)", "NAME" },
    { "lr", 0, 0, G_OPTION_ARG_STRING, &c->number_text[0],
      "Learning rate, above 0 (default: Keras' for the optimizer)", "LR" },
    { "momentum", 0, 0, G_OPTION_ARG_STRING, &c->number_text[1], "SGD momentum, in [0, 1)", "M" },
    { "nesterov", 0, 0, G_OPTION_ARG_NONE, &c->nesterov, "SGD with Nesterov momentum", NULL },
    { "lookahead", 0, 0, G_OPTION_ARG_NONE, &c->lookahead,
      "Every 5 steps put the weights on a slow average of them, and end on it (airbench's "
      "lookahead)",
      NULL },
    { "rho", 0, 0, G_OPTION_ARG_STRING, &c->number_text[2], "RMSprop / Adadelta rho, in [0, 1)",
      "RHO" },
    { "epsilon", 0, 0, G_OPTION_ARG_STRING, &c->number_text[3], "Optimizer epsilon, above 0",
      "EPS" },
    { "decay", 0, 0, G_OPTION_ARG_STRING, &c->number_text[4],
      "Learning-rate decay per step, lr / (1 + decay * step)", "D" },
    { "weight-decay", 0, 0, G_OPTION_ARG_STRING, &c->number_text[5], "L2 weight decay, 0 or more",
      "WD" },
    { "lr-schedule", 0, 0, G_OPTION_ARG_STRING, &c->lr_schedule,
      "Learning-rate schedule: constant (default), linear or cosine (from --lr down to "
      "--lr-final x lr by the last step, after any warm-up), or one-cycle (linear from "
      "--lr-start x lr up to lr at --lr-peak-at of the run, then down to --lr-final x lr)",
      "NAME" },
    { "warmup-epochs", 0, 0, G_OPTION_ARG_STRING, &c->number_text[7],
      "Linear warm-up from --lr-start x lr to lr over E epochs (a fraction too), before "
      "constant, linear or cosine",
      "E" },
    { "warmup-steps", 0, 0, G_OPTION_ARG_INT, &c->warmup_steps,
      "The same warm-up over N steps instead", "N" },
    { "lr-start", 0, 0, G_OPTION_ARG_STRING, &c->number_text[8],
      "Where warm-up or one-cycle starts, as a fraction of lr in [0, 1] (default 0)", "F" },
    { "lr-final", 0, 0, G_OPTION_ARG_STRING, &c->number_text[9],
      "Where linear, cosine or one-cycle ends, as a fraction of lr in [0, 1] (default 0)", "F" },
    { "lr-peak-at", 0, 0, G_OPTION_ARG_STRING, &c->number_text[10],
      "One-cycle: where the rate peaks, as a fraction of the run's steps in [0, 1] (default 0.3)",
      "F" },
    { "label-smoothing", 0, 0, G_OPTION_ARG_STRING, &c->number_text[11],
      "Categorical cross-entropy against y (1 - S) + S / classes, S in [0, 1) (default 0)", "S" },
    { "seed", 's', 0, G_OPTION_ARG_INT, &c->seed, "Seed for weights, shuffles and dropout", "N" },
    { "val-split", 0, 0, G_OPTION_ARG_STRING, &c->number_text[6],
      "Carve this fraction, in [0, 1), of the training data for validation", "F" },
    { "max-samples", 0, 0, G_OPTION_ARG_INT, &c->max_samples,
      "Use at most this many samples per split", "N" },
    { "augment", 0, 0, G_OPTION_ARG_NONE, &c->augment,
      "Random flips and shifts of images, as Keras' cifar10_cnn", NULL },
    { "translate", 0, 0, G_OPTION_ARG_INT, &c->translate,
      "Instead of --augment: random flips and whole-pixel shifts of up to N pixels each way, "
      "the image reflected at its edges (airbench's; N from 0 to 64)",
      "N" },
    { "alternate-flip", 0, 0, G_OPTION_ARG_NONE, &c->alternate_flip,
      "With --translate or --augment: each image's flip drawn once and inverted every other "
      "epoch (airbench's alternating flip)",
      NULL },
    { "recipe", 0, 0, G_OPTION_ARG_STRING, &c->recipe,
      "A recipe's model and settings (airbench94), which the other options override", "NAME" },
    { "tta-flip", 0, 0, G_OPTION_ARG_NONE, &c->tta_flip,
      "Validation and test figures from the mean prediction of each image and its mirror "
      "(flip test-time augmentation)",
      NULL },
    { "precision", 0, 0, G_OPTION_ARG_STRING, &c->precision,
      "fp32 (default: exact) or tf32 (GEMMs on NVIDIA tensor cores, FP32 storage)", "P" },
    { "memory", 0, 0, G_OPTION_ARG_STRING, &c->memory,
      "auto (default: keep activations when they fit, otherwise recompute them in backward), "
      "keep or recompute",
      "M" },
    { "standardize", 0, 0, G_OPTION_ARG_NONE, &c->standardize,
      "Per-channel mean/std normalisation instead of x/255", NULL },
    { "image-size", 0, 0, G_OPTION_ARG_STRING, &c->image_size,
      "Image folders: resize to WxH (default: the first image's size)", "WxH" },
    { "grayscale", 0, 0, G_OPTION_ARG_NONE, &c->grayscale, "Image folders: load as grayscale",
      NULL },
    { "label-column", 0, 0, G_OPTION_ARG_STRING, &c->label_column,
      "CSV: label column by name or 0-based index (default: the last)", "COL" },
    { "regression", 0, 0, G_OPTION_ARG_NONE, &c->regression,
      "CSV: the label is a numeric target (mse loss)", NULL },
    { "drop-bad-rows", 0, 0, G_OPTION_ARG_NONE, &c->drop_bad_rows,
      "CSV: drop rows with missing or non-numeric cells", NULL },
    { "checkpoint", 0, 0, G_OPTION_ARG_FILENAME, &c->checkpoint,
      "Write a checkpoint here after every epoch", "FILE" },
    { "resume", 0, 0, G_OPTION_ARG_NONE, &c->resume, "Resume from --checkpoint", NULL },
    { "name", 0, 0, G_OPTION_ARG_STRING, &c->run_name, "A name for the run", "NAME" },
    { "json", 0, 0, G_OPTION_ARG_NONE, &c->json, "Print events as JSON lines", NULL },
    { NULL },
  };

  return g_memdup2 (entries, sizeof entries);
}

static gboolean
parse_size (const char *text, guint *w, guint *h, GError **error)
{
  char *end = NULL;
  guint64 a, b;

  a = g_ascii_strtoull (text, &end, 10);
  if (end == text || (*end != 'x' && *end != 'X'))
    goto bad;
  text = end + 1;
  b = g_ascii_strtoull (text, &end, 10);
  if (end == text || *end || a == 0 || b == 0 || a > 4096 || b > 4096)
    goto bad;
  *w = (guint)a;
  *h = (guint)b;
  return TRUE;
bad:
  g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_INVALID,
               "--image-size wants WIDTHxHEIGHT, e.g. 32x32");
  return FALSE;
}

static void
data_progress (double fraction, const char *what, gpointer user_data)
{
  static gint64 last;
  gint64 now = g_get_monotonic_time ();

  /* Into a log (not a terminal) a line every 5 s, so that a slow load shows where it is. */
  if (!isatty (fileno (stderr)))
    {
      if (last == 0)
        last = now;
      if (now - last >= 5 * G_USEC_PER_SEC && fraction < 1)
        {
          last = now;
          fprintf (stderr, "  loading: %3.0f%% %s\n", fraction * 100, what ? what : "");
        }
      return;
    }
  if (now - last < 100000 && fraction < 1)
    return;
  last = now;
  fprintf (stderr, "\r\033[K  loading: %3.0f%% %s", fraction * 100, what ? what : "");
  if (fraction >= 1)
    fprintf (stderr, "\r\033[K");
}

gboolean
kilt_cli_data_spec (KiltCliCommon *c, KiltDataSpec *out, GError **error)
{
  KiltLoadOptions opts;

  kilt_load_options_init (&opts);
  if (c->image_size && !parse_size (c->image_size, &opts.image_width, &opts.image_height, error))
    return FALSE;
  opts.grayscale = c->grayscale;
  opts.label_column = c->label_column;
  opts.drop_bad_rows = c->drop_bad_rows;
  opts.raw_features = c->raw_features;
  opts.task = c->regression ? KILT_TASK_REGRESSION : KILT_TASK_CLASSIFICATION;
  opts.max_samples = c->max_samples > 0 ? (guint)c->max_samples : 0;
  kilt_data_spec_init (out, c->data, &opts);
  return TRUE;
}

KiltDataset *
kilt_cli_load_data_spec (const KiltDataSpec *spec, gboolean tell_notes, GError **error)
{
  gint64 t0 = g_get_monotonic_time ();
  gboolean tty = isatty (fileno (stderr));
  KiltDataset *ds;

  if (!tty)
    fprintf (stderr, "Loading %s ...\n", spec->source);
  ds = kilt_dataset_load (spec->source, &spec->options, data_progress, NULL, NULL, error);
  if (tty)
    fprintf (stderr, "\r\033[K");
  if (ds)
    fprintf (stderr, "Loaded %s in %.1f s%s\n", spec->source, (g_get_monotonic_time () - t0) / 1e6,
             ds->from_cache ? " (from the decoded cache)" : "");
  /* What the loader decided (files skipped, classes renamed, batches missing) is for the
   * person to read before the run starts, one note per line. */
  if (ds && ds->notes && tell_notes)
    {
      g_auto (GStrv) lines = g_strsplit (ds->notes, "\n", -1);
      for (guint i = 0; lines[i]; i++)
        fprintf (stderr, "kilt-cli: note: %s\n", lines[i]);
    }
  return ds;
}

KiltDataset *
kilt_cli_load_data (KiltCliCommon *c, GError **error)
{
  KiltDataSpec spec;
  KiltDataset *ds;

  if (!kilt_cli_data_spec (c, &spec, error))
    return NULL;
  ds = kilt_cli_load_data_spec (&spec, TRUE, error);
  kilt_data_spec_clear (&spec);
  return ds;
}

gboolean
kilt_cli_data_for_model (KiltCliCommon *c, KiltModel *model, KiltDataset **ds, GError **error)
{
  KiltNode *reader = kilt_ids_reader (model);
  KiltDataset *raw;

  /* The loader standardises CSV features before any model is known; ids are names of rows,
   * not quantities, so they must come as written. */
  if (*ds == NULL || reader == NULL || (*ds)->type != KILT_SAMPLE_F32 || !(*ds)->feature_mean)
    return TRUE;
  fprintf (stderr,
           "kilt-cli: note: layer %s (Embedding) reads ids; loading %s again with its values as "
           "they are (not standardised)\n",
           reader->name, c->data);
  c->raw_features = TRUE;
  if (!(raw = kilt_cli_load_data (c, error)))
    return FALSE;
  kilt_dataset_free (*ds);
  *ds = raw;
  return TRUE;
}

KiltModel *
kilt_cli_load_model (KiltCliCommon *c, const KiltDataset *ds, GError **error)
{
  KiltModel *model = NULL;
  g_autofree char *keras_text = NULL;

  if (g_file_test (c->model, G_FILE_TEST_IS_REGULAR) && kilt_keras_file_sniff (c->model))
    {
      /* A Keras .h5 or .keras file: architecture and weights. */
      g_autofree char *notes = NULL;
      KiltLossType loss = KILT_LOSS_SOFTMAX_CROSS_ENTROPY;
      if (c->loss)
        kilt_loss_from_name (c->loss, &loss);
      model = kilt_keras_file_load (c->model, loss, &notes, error);
      if (model && notes && *notes)
        fprintf (stderr, "kilt-cli: note: %s\n", notes);
    }
  else if (g_file_test (c->model, G_FILE_TEST_IS_REGULAR))
    {
      g_autofree char *text = NULL;
      if (!g_file_get_contents (c->model, &text, NULL, error))
        return NULL;
      /* Our own format names itself; anything else is taken as Keras. */
      if (strstr (text, KILT_MODEL_FORMAT_NAME))
        model = kilt_model_load_json_data (text, -1, c->model, error);
      else
        {
          g_autofree char *notes = NULL;
          KiltLossType loss = KILT_LOSS_SOFTMAX_CROSS_ENTROPY;
          if (c->loss)
            kilt_loss_from_name (c->loss, &loss);
          model = kilt_keras_load_data (text, -1, c->model, loss, &notes, error);
          if (model && notes && *notes)
            fprintf (stderr, "kilt-cli: note: %s\n", notes);
          keras_text = g_steal_pointer (&text);
        }
    }
  else
    model = kilt_model_load_preset (c->model, ds ? &ds->shape : NULL,
                                    ds && ds->n_classes ? ds->n_classes
                                    : ds                ? MAX (ds->n_targets, 1)
                                                        : 0,
                                    error);
  if (model == NULL)
    return NULL;
  if (ds && ds->n_classes == 0 && c->loss == NULL)
    model->loss = KILT_LOSS_MSE;
  if (c->loss && !kilt_loss_from_name (c->loss, &model->loss))
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_INVALID,
                   "unknown loss \"%s\" (softmax_cross_entropy, binary_cross_entropy, mse)",
                   c->loss);
      kilt_model_free (model);
      return NULL;
    }
  if (!model->built && !kilt_model_build (model, error))
    {
      kilt_model_free (model);
      return NULL;
    }
  /* The Keras text tells the weights reader each layer's class and options; Kilt's own
   * format and presets are read as channels-last Keras models of the same layers. */
  if (c->weights)
    {
      if (!kilt_keras_file_load_weights (model, keras_text, c->weights, error))
        {
          kilt_model_free (model);
          return NULL;
        }
      fprintf (stderr, "kilt-cli: note: %s\n", model->weights_note);
    }
  if (!kilt_cli_transfer (c, ds, model, error))
    {
      kilt_model_free (model);
      return NULL;
    }
  return model;
}

/* --lr-schedule and its settings, refused by option name when they do not go together. */
static gboolean
cli_schedule (const KiltCliCommon *c, KiltLrSchedule *s, GError **error)
{
  gboolean warmup = (!isnan (c->warmup_epochs) && c->warmup_epochs > 0) || c->warmup_steps > 0;

  if (c->lr_schedule && !kilt_lr_schedule_from_name (c->lr_schedule, &s->type))
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_INVALID,
                   "unknown --lr-schedule \"%s\": give constant, linear, cosine or one-cycle",
                   c->lr_schedule);
      return FALSE;
    }
  if (!isnan (c->warmup_epochs) && c->warmup_steps > 0)
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_INVALID,
                   "--warmup-epochs and --warmup-steps both give the warm-up: give one");
      return FALSE;
    }
  if (s->type == KILT_LR_ONE_CYCLE && warmup)
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_INVALID,
                   "--lr-schedule one-cycle rises by itself from --lr-start to lr at "
                   "--lr-peak-at; it takes no --warmup-epochs or --warmup-steps");
      return FALSE;
    }
  if (!isnan (c->lr_peak) && s->type != KILT_LR_ONE_CYCLE)
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_INVALID,
                   "--lr-peak-at goes with --lr-schedule one-cycle (this run's schedule is %s)",
                   kilt_lr_schedule_name (s->type));
      return FALSE;
    }
  if (!isnan (c->lr_final) && (s->type == KILT_LR_CONSTANT))
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_INVALID,
                   "--lr-final goes with --lr-schedule linear, cosine or one-cycle (this run's "
                   "schedule is constant)");
      return FALSE;
    }
  if (!isnan (c->lr_start) && !warmup && s->type != KILT_LR_ONE_CYCLE)
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_INVALID,
                   "--lr-start goes with a warm-up (--warmup-epochs, --warmup-steps) or "
                   "--lr-schedule one-cycle");
      return FALSE;
    }
  if (!isnan (c->warmup_epochs))
    s->warmup_epochs = (float)c->warmup_epochs;
  s->warmup_steps = (guint)MAX (c->warmup_steps, 0);
  if (!isnan (c->lr_start))
    s->start = (float)c->lr_start;
  if (!isnan (c->lr_final))
    s->final = (float)c->lr_final;
  if (!isnan (c->lr_peak))
    s->peak = (float)c->lr_peak;
  return TRUE;
}

gboolean
kilt_cli_train_config (KiltCliCommon *c, KiltTrainConfig *cfg, GError **error)
{
  KiltOptimizerType type;

  *cfg = kilt_train_config_default ();
  if (!kilt_optimizer_from_name (c->optimizer, &type))
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_INVALID,
                   "unknown optimizer \"%s\" (sgd, rmsprop, adam, adadelta, adagrad)",
                   c->optimizer);
      return FALSE;
    }
  if (c->epochs < 1 || c->epochs > (int)KILT_CHECKPOINT_MAX_EPOCHS || c->batch < 1
      || c->batch > 65536)
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_INVALID,
                   "--epochs must be from 1 to %u and --batch from 1 to 65536",
                   KILT_CHECKPOINT_MAX_EPOCHS);
      return FALSE;
    }
  if (!(c->val_split >= 0 && c->val_split < 1))
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_INVALID,
                   "--val-split must be in [0, 1)");
      return FALSE;
    }
  cfg->opt = kilt_optimizer_config_default (type);
  /* NAN: not given (kilt_cli_common_parse lets no NaN through as a value). */
  if (!isnan (c->lr))
    cfg->opt.lr = (float)c->lr;
  if (!isnan (c->momentum))
    cfg->opt.momentum = (float)c->momentum;
  if (!isnan (c->rho))
    cfg->opt.rho = (float)c->rho;
  if (!isnan (c->epsilon))
    cfg->opt.epsilon = (float)c->epsilon;
  if (!isnan (c->decay))
    cfg->opt.decay = (float)c->decay;
  cfg->opt.nesterov = c->nesterov;
  cfg->opt.lookahead = c->lookahead;
  cfg->opt.weight_decay = (float)c->weight_decay;
  if (!cli_schedule (c, &cfg->opt.schedule, error))
    return FALSE;
  cfg->label_smoothing = (float)c->label_smoothing;
  if (c->precision && !kilt_precision_from_name (c->precision, &cfg->precision))
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_INVALID,
                   "unknown --precision \"%s\": Kilt trains in fp32 or tf32", c->precision);
      return FALSE;
    }
  if (c->precision)
    {
      g_free (c->precision);
      c->precision = g_strdup (kilt_precision_name (cfg->precision));
    }
  if (c->memory && !kilt_memory_mode_from_name (c->memory, &cfg->memory))
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_INVALID,
                   "unknown --memory \"%s\": give auto, keep or recompute", c->memory);
      return FALSE;
    }
  if (!kilt_optimizer_config_check (&cfg->opt, error))
    return FALSE;
  cfg->device_id = g_strdup (c->device);
  cfg->epochs = (guint)c->epochs;
  cfg->batch = (guint)c->batch;
  cfg->seed = (guint32)c->seed;
  cfg->val_fraction = (float)c->val_split;
  cfg->augment = c->augment;
  cfg->translate = (guint)MAX (c->translate, 0);
  cfg->alternate_flip = c->alternate_flip;
  cfg->tta_flip = c->tta_flip;
  if (c->augment && c->translate > 0)
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_INVALID,
                   "--augment and --translate are two augmentations: give one");
      return FALSE;
    }
  cfg->preprocess = c->standardize ? KILT_PREPROCESS_STANDARD : KILT_PREPROCESS_SCALE;
  cfg->checkpoint_path = g_strdup (c->checkpoint);
  cfg->resume = c->resume;
  cfg->run_name = g_strdup (c->run_name);
  if (c->resume && c->checkpoint == NULL)
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_INVALID,
                   "--resume needs --checkpoint FILE");
      return FALSE;
    }
  return TRUE;
}

/* ---- train -------------------------------------------------------------------------------- */

typedef struct
{
  KiltCliCommon *opts;
  gboolean tty;
  guint epochs;
  guint steps_per_epoch;
  KiltRunStatus status;
  double final_loss, final_acc, val_loss, val_acc, test_loss, test_acc;
  double total_seconds;
  char *error;
  KiltRunRecorder *recorder;
  gboolean quiet; /* a rank other than 0 of an MPI job */
} TrainView;

static KiltTrainer *running_trainer;

static void
on_sigint (int sig)
{
  static int count;

  if (running_trainer && count++ == 0)
    {
      /* Ask once; a second Ctrl-C kills. */
      kilt_trainer_stop (running_trainer);
      return;
    }
  signal (SIGINT, SIG_DFL);
  raise (SIGINT);
}

/* The worker protocol's encoding (the window reads the same lines). */
static void
print_json_event (const KiltEvent *ev)
{
  g_autofree char *text = kilt_event_to_json (ev);

  printf ("%s\n", text);
  fflush (stdout);
}

static char *
format_duration (double s)
{
  if (!isfinite (s) || s < 0)
    return g_strdup ("?");
  if (s < 60)
    return g_strdup_printf ("%.0fs", s);
  if (s < 3600)
    return g_strdup_printf ("%dm%02ds", (int)s / 60, (int)s % 60);
  return g_strdup_printf ("%dh%02dm", (int)s / 3600, ((int)s % 3600) / 60);
}

static void
on_train_event (const KiltEvent *ev, gpointer user_data)
{
  TrainView *v = user_data;

  if (v->recorder)
    kilt_run_recorder_event (v->recorder, ev);
  if (v->quiet)
    goto record;
  if (v->opts->json)
    {
      print_json_event (ev);
      goto record;
    }
  switch (ev->type)
    {
      case KILT_EVENT_STARTED:
        {
          g_autofree char *plan = kilt_format_bytes (ev->planned_bytes);
          g_autofree char *dev = kilt_format_bytes (ev->device_bytes);
          printf ("Training on %s in %s: %zu parameters, %.1f MFLOP per sample, %u steps per "
                  "epoch; plan %s of %s; kernels %s in %.2f s\n",
                  ev->device_name, v->opts->precision ? v->opts->precision : "fp32", ev->n_params,
                  ev->flops_per_sample / 1e6, ev->steps_per_epoch, plan, dev,
                  ev->compile_cached ? "loaded" : "compiled", ev->compile_seconds);
          v->steps_per_epoch = ev->steps_per_epoch;
          if (ev->message)
            printf ("Memory: %s\n", ev->message);
          if (ev->n_ranks > 1)
            printf ("MPI job of %u ranks: each trains on its rows of every batch; rank 0 records "
                    "the run\n",
                    ev->n_ranks);
          fflush (stdout);
          break;
        }
      case KILT_EVENT_STEP:
        if (v->tty)
          {
            int width = 24, filled = (int)(width * ev->step / MAX (v->steps_per_epoch, 1));
            g_autofree char *eta = format_duration (ev->eta_seconds);
            fprintf (
                stderr,
                "\r\033[Kepoch %u/%u [%.*s%*s] %u/%u  %.0f samples/s  ETA %s  loss %.4f  acc %.4f",
                ev->epoch, v->epochs, filled, "########################", width - filled, "",
                ev->step, v->steps_per_epoch, ev->samples_per_second, eta, ev->loss, ev->accuracy);
          }
        break;
      case KILT_EVENT_EPOCH:
        if (v->tty)
          fprintf (stderr, "\r\033[K");
        printf ("epoch %u/%u: loss %.4f, accuracy %.4f", ev->epoch, v->epochs, ev->loss,
                ev->accuracy);
        if (isfinite (ev->val_loss))
          printf (", val_loss %.4f, val_accuracy %.4f", ev->val_loss, ev->val_accuracy);
        printf (" (%.1f s, %.0f samples/s", ev->epoch_seconds, ev->samples_per_second);
        if (isfinite (ev->busy_percent))
          printf (", device busy %.0f%%", ev->busy_percent);
        if (ev->warmup_seconds > 0.5)
          printf ("; first step %.1f s, compiling kernels", ev->warmup_seconds);
        if (ev->n_replicas > 1)
          {
            printf ("; rows per batch:");
            for (guint i = 0; i < ev->n_replicas; i++)
              {
                printf ("%s [%u] %u", i ? "," : "", i, ev->replicas[i].share);
                if (isfinite (ev->replicas[i].busy_percent))
                  printf (" (busy %.0f%%)", ev->replicas[i].busy_percent);
              }
            printf ("; summing gradients %.2f ms a step", ev->reduce_ms);
          }
        else if (ev->n_ranks > 1)
          printf ("; summing gradients across ranks %.2f ms a step", ev->reduce_ms);
        printf (")\n");
        fflush (stdout);
        break;
      case KILT_EVENT_LOG:
        if (ev->level & G_LOG_LEVEL_INFO
            && (g_str_has_prefix (ev->message, "Data-parallel")
                || g_str_has_prefix (ev->message, "Measured at equal shares")
                || g_str_has_prefix (ev->message, "Training on all")))
          printf ("%s\n", ev->message);
        if (ev->level & (G_LOG_LEVEL_WARNING | G_LOG_LEVEL_CRITICAL))
          fprintf (stderr, "%skilt-cli: warning: %s\n", v->tty ? "\r\033[K" : "", ev->message);
        break;
      default:
        break;
    }

record:
  if (ev->type == KILT_EVENT_EPOCH)
    {
      v->final_loss = ev->loss;
      v->final_acc = ev->accuracy;
      v->val_loss = ev->val_loss;
      v->val_acc = ev->val_accuracy;
      v->total_seconds += ev->epoch_seconds;
    }
  else if (ev->type == KILT_EVENT_FINISHED)
    {
      v->status = ev->status;
      v->test_loss = ev->test_loss;
      v->test_acc = ev->test_accuracy;
      if (ev->error)
        v->error = g_strdup (ev->error->message);
    }
}

/* An MPI job ends a rank by SIGTERM when another rank failed (then SIGKILL): rank 0 marks its
 * run failed, in a store connection of its own, before it goes. SIGTERM is blocked in every
 * other thread, so this one takes it. */
static gpointer
watch_sigterm (gpointer data)
{
  KiltRunRecorder *rec = data;
  sigset_t set;
  int sig = 0;
  gint64 id;

  sigemptyset (&set);
  sigaddset (&set, SIGTERM);
  if (sigwait (&set, &sig) != 0)
    return NULL;
  id = kilt_run_recorder_id (rec);
  if (id > 0)
    {
      KiltRunStore *store = kilt_run_store_open (NULL, NULL);
      if (store)
        kilt_run_store_finish_run (store, id, KILT_RUN_FAILED,
                                   "the MPI job was ended while this run trained: another rank "
                                   "failed or mpirun was stopped (mpirun's message names the rank "
                                   "and host)",
                                   NAN, NAN, NULL);
      kilt_run_store_close (store);
    }
  fprintf (
      stderr,
      "kilt-cli train: rank 0: the MPI job was ended (another rank failed); run %" G_GINT64_FORMAT
      " is marked failed, its last checkpoint is kept\n",
      id);
  _exit (1);
}

/* --devices: several devices into @cfg's list ("all": every device listed), one into its
 * device_id. */
static gboolean
kilt_cli_train_devices (const char *devices, KiltTrainConfig *cfg, GError **error)
{
  g_auto (GStrv) parts = NULL;
  GPtrArray *ids;

  if (devices == NULL)
    return TRUE;
  if (cfg->device_id)
    {
      g_set_error (error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                   "give --device or --devices, not both");
      return FALSE;
    }
  ids = g_ptr_array_new ();
  if (g_str_equal (devices, "all"))
    {
      g_autoptr (KiltDeviceList) list = kilt_device_list_new ();
      for (guint i = 0; i < list->devices->len; i++)
        {
          const KiltDeviceInfo *d = g_ptr_array_index (list->devices, i);
          if (d->unusable_reason == NULL)
            g_ptr_array_add (ids, g_strdup_printf ("%u", i));
        }
    }
  else
    {
      parts = g_strsplit (devices, ",", -1);
      for (guint i = 0; parts[i]; i++)
        {
          g_strstrip (parts[i]);
          if (parts[i][0] == '\0')
            {
              g_ptr_array_free (ids, TRUE);
              g_set_error (error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                           "--devices \"%s\" has an empty entry: give ids, indices or names "
                           "separated by commas, or all",
                           devices);
              return FALSE;
            }
          g_ptr_array_add (ids, g_strdup (parts[i]));
        }
    }
  if (ids->len == 0)
    {
      g_ptr_array_free (ids, TRUE);
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_NO_DEVICE,
                   "--devices all: no usable OpenCL device (`kilt-cli devices` says why)");
      return FALSE;
    }
  if (ids->len == 1)
    {
      cfg->device_id = g_ptr_array_steal_index (ids, 0);
      g_ptr_array_free (ids, TRUE);
      return TRUE;
    }
  g_ptr_array_add (ids, NULL);
  cfg->devices = (char **)g_ptr_array_free (ids, FALSE);
  return TRUE;
}

/* --on-oom: what the run does when the device runs out of memory once it trains. */
static gboolean
kilt_cli_train_on_oom (const char *on_oom, gboolean mpi, KiltTrainConfig *cfg, GError **error)
{
  if (on_oom == NULL)
    return TRUE;
  if (!kilt_on_oom_from_name (on_oom, &cfg->on_oom))
    {
      g_set_error (error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                   "--on-oom wants fail or resume-smaller, not \"%s\"", on_oom);
      return FALSE;
    }
  if (cfg->on_oom == KILT_ON_OOM_RESUME_SMALLER && (mpi || cfg->devices))
    {
      g_set_error (error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                   "--on-oom resume-smaller is for a run on one device, not with %s",
                   mpi ? "--mpi" : "--devices");
      return FALSE;
    }
  return TRUE;
}

int
kilt_cli_train (int argc, char **argv)
{
  KiltCliCommon c;
  g_autoptr (GOptionContext) oc = g_option_context_new ("- train a model");
  g_autofree GOptionEntry *entries = NULL;
  g_autoptr (GError) error = NULL;
  KiltTrainConfig cfg = { 0 };
  KiltDataset *ds = NULL;
  KiltModel *model = NULL;
  TrainView view = { 0 };
  KiltTrainer *trainer;
  int rc = 0;
  g_autofree char *devices = NULL;
  g_autofree char *on_oom = NULL;
  gboolean mpi = FALSE;
  double mpi_timeout = 300;
  KiltComm *comm = NULL;
  GOptionEntry extra[] = {
    { "devices", 0, 0, G_OPTION_ARG_STRING, &devices,
      "Train data-parallel on several devices: ids, indices or names, comma-separated, or all",
      "A,B" },
    { "mpi", 0, 0, G_OPTION_ARG_NONE, &mpi,
      "One rank of an MPI job (mpirun -np N kilt-cli train --mpi ...): each rank trains on its "
      "rows of every batch, rank 0 records the run",
      NULL },
    { "mpi-timeout", 0, 0, G_OPTION_ARG_DOUBLE, &mpi_timeout,
      "Seconds a rank waits for the others before it ends the job (default 300)", "S" },
    { "on-oom", 0, 0, G_OPTION_ARG_STRING, &on_oom,
      "When the device runs out of memory mid-run: fail (default), or resume-smaller: go on "
      "from the last --checkpoint (the start without one) at the largest batch that fits",
      "WHAT" },
    { NULL },
  };

  /* An MPI rank blocks SIGTERM before any thread starts (OpenCL's, MPI's), so that only
   * watch_sigterm takes it. */
  for (int i = 1; i < argc; i++)
    if (g_str_equal (argv[i], "--mpi"))
      {
        sigset_t set;
        sigemptyset (&set);
        sigaddset (&set, SIGTERM);
        pthread_sigmask (SIG_BLOCK, &set, NULL);
      }
  kilt_cli_common_init (&c);
  entries = kilt_cli_common_entries (&c);
  g_option_context_add_main_entries (oc, entries, NULL);
  g_option_context_add_main_entries (oc, extra, NULL);
  g_option_context_set_summary (oc, "With no options: trains lenet5 on the bundled sample data "
                                    "(Fashion-MNIST images) on the default device.");
  if (!kilt_cli_common_parse (&c, oc, &argc, &argv, &error)
      || !kilt_cli_train_config (&c, &cfg, &error)
      || !kilt_cli_train_devices (devices, &cfg, &error)
      || !kilt_cli_train_on_oom (on_oom, mpi, &cfg, &error)
      || (mpi && !(comm = kilt_comm_mpi_new (mpi_timeout, &error)))
      || !(ds = kilt_cli_load_data (&c, &error)) || !(model = kilt_cli_load_model (&c, ds, &error))
      || !kilt_cli_data_for_model (&c, model, &ds, &error))
    {
      fprintf (stderr, "kilt-cli train: %s\n", error->message);
      kilt_comm_free (comm, TRUE);
      kilt_dataset_free (ds);
      kilt_train_config_clear (&cfg);
      kilt_cli_common_clear (&c);
      return error->domain == G_OPTION_ERROR || error->code == KILT_ENGINE_ERROR_INVALID ? 2 : 1;
    }
  /* A precision the device lacks is refused before a run is recorded. */
  if (cfg.precision != KILT_PRECISION_FP32)
    {
      g_autoptr (KiltDeviceList) list = kilt_device_list_new ();
      const KiltDeviceInfo *d = cfg.device_id ? kilt_device_list_find (list, cfg.device_id)
                                              : kilt_device_list_choose_default (list, NULL);
      g_autofree char *why = NULL;
      if (d && !kilt_precision_available (d, cfg.precision, &why))
        {
          fprintf (stderr, "kilt-cli train: %s\n", why);
          kilt_model_free (model);
          kilt_dataset_free (ds);
          kilt_train_config_clear (&cfg);
          kilt_cli_common_clear (&c);
          return 2;
        }
    }
  cfg.comm = comm;
  /* Rank 0 speaks and records for the job; the others only report their own failure. */
  view.quiet = comm && kilt_comm_rank (comm) > 0;
  if (!c.json && !view.quiet)
    printf ("Data: %s (%zu training, %zu validation, %zu test samples); model: %s\n", ds->name,
            ds->train.n, ds->val.n, ds->test.n, model->name);
  if (!c.json && !view.quiet
      && (!kilt_lr_schedule_is_flat (&cfg.opt.schedule) || cfg.label_smoothing != 0.0f))
    {
      g_autofree char *sched = kilt_lr_schedule_describe (&cfg.opt.schedule);
      printf ("Learning rate %g (%s), %s; label smoothing %g\n", cfg.opt.lr,
              kilt_optimizer_name (cfg.opt.type), sched, cfg.label_smoothing);
    }

  view.opts = &c;
  view.tty = isatty (fileno (stderr)) && !c.json;
  view.epochs = cfg.epochs;
  view.final_loss = view.final_acc = view.val_loss = view.val_acc = NAN;
  if (!view.quiet)
    {
      g_autofree char *warning = NULL;
      KiltDataSpec spec = { 0 };
      view.recorder = kilt_run_recorder_new (NULL, model, ds, &cfg, &warning);
      if (kilt_cli_data_spec (&c, &spec, NULL))
        kilt_run_recorder_set_data_spec (view.recorder, &spec);
      kilt_data_spec_clear (&spec);
      if (warning)
        fprintf (stderr, "kilt-cli train: warning: %s\n", warning);
    }
  if (comm && !view.quiet && view.recorder)
    g_thread_unref (g_thread_new ("sigterm", watch_sigterm, view.recorder));
  trainer = kilt_trainer_new (model, ds, &cfg, on_train_event, &view);
  running_trainer = trainer;
  signal (SIGINT, on_sigint);
  kilt_trainer_start (trainer);
  kilt_trainer_join (trainer);
  running_trainer = NULL;
  signal (SIGINT, SIG_DFL);
  /* A run the store missed part of (a full disk, say) is not left to look interrupted. */
  if (kilt_run_recorder_get_failure (view.recorder))
    fprintf (stderr, "kilt-cli train: warning: %s\n",
             kilt_run_recorder_get_failure (view.recorder));
  kilt_run_recorder_free (view.recorder);

  if (view.quiet && view.status == KILT_RUN_FAILED)
    fprintf (stderr, "kilt-cli train: rank %d on %s: %s\n", kilt_comm_rank (comm),
             kilt_comm_host (comm), view.error);
  else if (!c.json && !view.quiet)
    {
      if (view.status == KILT_RUN_FAILED)
        fprintf (stderr, "kilt-cli train: %s%s\n", view.error,
                 comm ? " (rank 0; the job ends on every rank)" : "");
      else
        {
          printf ("%s after %.1f s: training loss %.4f, accuracy %.4f",
                  view.status == KILT_RUN_STOPPED ? "Stopped" : "Finished", view.total_seconds,
                  view.final_loss, view.final_acc);
          if (isfinite (view.val_loss))
            printf ("; validation loss %.4f, accuracy %.4f", view.val_loss, view.val_acc);
          if (isfinite (view.test_loss))
            printf ("; test loss %.4f, accuracy %.4f", view.test_loss, view.test_acc);
          printf ("\n");
        }
    }
  rc = view.status == KILT_RUN_FINISHED ? 0 : view.status == KILT_RUN_STOPPED ? 130 : 1;
  g_free (view.error);
  kilt_trainer_free (trainer);
  /* A failed rank ends the whole job (MPI_Abort), so none waits for it; a stop is agreed by
   * every rank, which all end normally. */
  kilt_comm_free (comm, view.status != KILT_RUN_FINISHED && view.status != KILT_RUN_STOPPED);
  kilt_train_config_clear (&cfg);
  kilt_cli_common_clear (&c);
  return rc;
}

/* ---- summary and data info ---------------------------------------------------------------- */

/* The memory plan of training @model at --batch with --optimizer and --memory on --device (or
 * the default one), as train would plan it; nothing when there is no device. */
static gboolean
print_summary_plan (KiltCliCommon *c, KiltModel *model, GError **error)
{
  KiltTrainConfig cfg = kilt_train_config_default ();
  g_autoptr (KiltDeviceList) list = NULL;
  g_autoptr (KiltPlan) plan = NULL;
  const KiltDeviceInfo *dev;

  if (!kilt_cli_train_config (c, &cfg, error))
    {
      kilt_train_config_clear (&cfg);
      return FALSE;
    }
  list = kilt_device_list_new ();
  dev = cfg.device_id ? kilt_device_list_find (list, cfg.device_id)
                      : kilt_device_list_choose_default (list, NULL);
  if (dev == NULL)
    {
      if (cfg.device_id)
        g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_NO_DEVICE,
                     "No OpenCL device matches \"%s\" (or several do); `kilt-cli devices` "
                     "lists them",
                     cfg.device_id);
      kilt_train_config_clear (&cfg);
      return cfg.device_id == NULL;
    }
  /* The data set's share depends on how the batcher keeps it on that device: train's plan
   * has it, this one is the model's alone. */
  plan = kilt_plan_compute_memory (model, cfg.batch, &cfg.opt, 0, dev,
                                   kilt_context_budget_for (dev), cfg.memory);
  printf ("Memory plan (--memory %s, %s, without the data set): %s%s%s\n",
          kilt_memory_mode_name (cfg.memory), kilt_optimizer_name (cfg.opt.type), plan->message,
          plan->hint ? "; " : "", plan->hint ? plan->hint : "");
  printf ("  by category:");
  for (int k = 0, shown = 0; k < KILT_MEM_N_CATEGORIES; k++)
    if (plan->bytes[k])
      {
        g_autofree char *b = kilt_format_bytes (plan->bytes[k]);
        printf ("%s %s %s", shown++ ? "," : "", kilt_mem_category_name ((KiltMemCategory)k), b);
      }
  printf ("\n");
  if (plan->fits)
    printf ("Activations: %s\n", plan->memory_line);
  kilt_train_config_clear (&cfg);
  return TRUE;
}

int
kilt_cli_summary (int argc, char **argv)
{
  KiltCliCommon c;
  g_autoptr (GOptionContext) oc = g_option_context_new ("[MODEL] - print a model's layer table");
  g_autofree GOptionEntry *entries = NULL;
  g_autoptr (GError) error = NULL;
  gboolean list = FALSE, with_data = FALSE;
  GOptionEntry extra[] = {
    { "list", 0, 0, G_OPTION_ARG_NONE, &list, "List the presets", NULL },
    { "with-data", 0, 0, G_OPTION_ARG_NONE, &with_data, "Adapt the model to --data (load it first)",
      NULL },
    { NULL },
  };
  KiltDataset *ds = NULL;
  KiltModel *model;
  g_autofree char *text = NULL;

  /* An MPI rank blocks SIGTERM before any thread starts (OpenCL's, MPI's), so that only
   * watch_sigterm takes it. */
  for (int i = 1; i < argc; i++)
    if (g_str_equal (argv[i], "--mpi"))
      {
        sigset_t set;
        sigemptyset (&set);
        sigaddset (&set, SIGTERM);
        pthread_sigmask (SIG_BLOCK, &set, NULL);
      }
  kilt_cli_common_init (&c);
  entries = kilt_cli_common_entries (&c);
  g_option_context_add_main_entries (oc, entries, NULL);
  g_option_context_add_main_entries (oc, extra, NULL);
  if (!kilt_cli_common_parse (&c, oc, &argc, &argv, &error))
    {
      fprintf (stderr, "kilt-cli summary: %s\n", error->message);
      kilt_cli_common_clear (&c);
      return 2;
    }
  if (list)
    {
      g_auto (GStrv) names = kilt_model_preset_list ();
      for (guint i = 0; names && names[i]; i++)
        printf ("%s\n", names[i]);
      kilt_cli_common_clear (&c);
      return 0;
    }
  if (argc > 1)
    {
      g_free (c.model);
      c.model = g_strdup (argv[1]);
    }
  if (with_data && !(ds = kilt_cli_load_data (&c, &error)))
    {
      fprintf (stderr, "kilt-cli summary: %s\n", error->message);
      kilt_cli_common_clear (&c);
      return 1;
    }
  model = kilt_cli_load_model (&c, ds, &error);
  if (model == NULL)
    {
      fprintf (stderr, "kilt-cli summary: %s\n", error->message);
      kilt_dataset_free (ds);
      kilt_cli_common_clear (&c);
      return 1;
    }
  {
    KiltSummary *summary = kilt_summary_new (model, (guint)c.batch);
    text = kilt_summary_to_text (summary);
    kilt_summary_free (summary);
  }
  fputs (text, stdout);
  if (model->weights_note)
    printf ("Starting weights: %s\n", model->weights_note);
  if (!print_summary_plan (&c, model, &error))
    {
      fprintf (stderr, "kilt-cli summary: %s\n", error->message);
      kilt_model_free (model);
      kilt_dataset_free (ds);
      kilt_cli_common_clear (&c);
      return 1;
    }
  kilt_model_free (model);
  kilt_dataset_free (ds);
  kilt_cli_common_clear (&c);
  return 0;
}

int
kilt_cli_data (int argc, char **argv)
{
  KiltCliCommon c;
  g_autoptr (GOptionContext) oc = g_option_context_new ("info DATA - describe a data set");
  g_autofree GOptionEntry *entries = NULL;
  g_autoptr (GError) error = NULL;
  KiltDataset *ds;
  g_autofree char *text = NULL;

  kilt_cli_common_init (&c);
  entries = kilt_cli_common_entries (&c);
  g_option_context_add_main_entries (oc, entries, NULL);
  if (!kilt_cli_common_parse (&c, oc, &argc, &argv, &error) || argc < 3
      || strcmp (argv[1], "info") != 0)
    {
      fprintf (stderr, "usage: kilt-cli data info DATA [options]%s%s\n", error ? "\n" : "",
               error ? error->message : "");
      kilt_cli_common_clear (&c);
      return 2;
    }
  g_free (c.data);
  c.data = g_strdup (argv[2]);
  {
    /* The description below lists the notes itself. */
    KiltDataSpec spec;
    ds = NULL;
    if (kilt_cli_data_spec (&c, &spec, &error))
      {
        ds = kilt_cli_load_data_spec (&spec, FALSE, &error);
        kilt_data_spec_clear (&spec);
      }
  }
  if (ds == NULL)
    {
      fprintf (stderr, "kilt-cli data: %s\n", error->message);
      kilt_cli_common_clear (&c);
      return 1;
    }
  text = kilt_dataset_describe (ds);
  fputs (text, stdout);
  kilt_dataset_free (ds);
  kilt_cli_common_clear (&c);
  return 0;
}
