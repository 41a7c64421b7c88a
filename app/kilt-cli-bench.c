/* kilt-cli bench: times the trainer's own step for a model on one or more devices. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "config.h"

#include "kilt-breadcrumb.h"
#include "kilt-cli.h"
#include "kilt-context.h"
#include "kilt-error.h"
#include "kilt-gemm-tf32.h"
#include "kilt-model-json.h"
#include "kilt-reference.h"

#include <glib/gstdio.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

typedef struct
{
  char *device_id;
  char *device_name;
  double compile_cold;
  double compile_cached;
  double step_ms;
  double samples_per_second;
  double gflops;
  double busy_percent;
  gint64 peak_bytes;
  double check_loss;
  double check_grad;
  guint check_draws;        /* inputs drawn for the check (more than one: a ReLU sat on its kink) */
  guint check_followed;     /* elements where the reference took the device's side of a kink */
  guint check_batch;        /* samples the check ran on */
  guint check_bn_values;    /* the fewest values a batch normalisation took statistics over */
  gboolean check_bn_raised; /* the check took more samples for batch normalisation */
  KiltShape check_input;    /* the input it ran on: the model's, or a smaller one (see below) */
  gboolean check_ok;
  KiltShape input;          /* the model's input, as timed */
  guint64 flops_per_sample; /* forward, as the model's summary counts them */
  gboolean adapted;         /* a preset whose input or classes were changed to fit --data */
  KiltPrecision precision;
  KiltMemoryMode memory; /* as asked (--memory) */
  gboolean recompute;    /* the plan recomputed activations in backward */
  guint blocks_kept, blocks_total;
  double recompute_percent; /* extra compute of a step, as the plan counts it */
  double check_tf32_gemm;   /* tf32: the GEMM's largest error against its rounded inputs */
  char *error;
  GArray *timings;
} BenchResult;

typedef struct
{
  guint epoch;
  double seconds;
  double busy;
  gint64 peak;
  KiltRunStatus status;
  char *error;
  guint64 flops;
  gboolean recompute; /* the plan recomputes activations: blocks kept of total, extra compute */
  guint blocks_kept, blocks_total;
  double recompute_percent;
  GArray *timings; /* KiltLayerTiming of the timed epoch */
} BenchView;

static void
on_bench_event (const KiltEvent *ev, gpointer user_data)
{
  BenchView *v = user_data;

  switch (ev->type)
    {
      case KILT_EVENT_STARTED:
        v->flops = ev->flops_per_sample;
        v->recompute = ev->recompute;
        v->blocks_kept = ev->blocks_kept;
        v->blocks_total = ev->blocks_total;
        v->recompute_percent = ev->recompute_percent;
        break;
      case KILT_EVENT_EPOCH:
        /* Epoch 1 is the warm-up (CLBlast builds its kernels on first use); epoch 2 is timed. */
        v->epoch = ev->epoch;
        v->seconds = ev->epoch_seconds;
        v->busy = ev->busy_percent;
        break;
      case KILT_EVENT_TIMINGS:
        g_clear_pointer (&v->timings, g_array_unref);
        v->timings = g_array_ref (ev->timings);
        break;
      case KILT_EVENT_FINISHED:
        v->status = ev->status;
        v->peak = ev->mem.peak_total;
        if (ev->error)
          v->error = g_strdup (ev->error->message);
        break;
      default:
        break;
    }
}

/* Random images of the model's input shape: timing does not depend on the pixel values. */
static KiltDataset *
synthetic_data (KiltModel *model, gsize n, guint32 seed)
{
  KiltDataset *ds = g_new0 (KiltDataset, 1);
  KiltShape shape = kilt_model_node (model, 0)->out_shape;
  gsize size = kilt_shape_size (&shape);
  guint classes = kilt_model_n_outputs (model);
  KiltRng rng;

  kilt_rng_init (&rng, seed);
  ds->name = g_strdup ("synthetic");
  ds->source = g_strdup ("synthetic");
  ds->format = g_strdup ("synthetic");
  ds->shape = shape;
  ds->type = KILT_SAMPLE_U8;
  ds->n_classes = classes;
  ds->class_names = g_new0 (char *, classes + 1);
  for (guint i = 0; i < classes; i++)
    ds->class_names[i] = g_strdup_printf ("class %u", i);
  ds->train.n = n;
  ds->train.u8 = g_malloc (n * size);
  ds->train.labels = g_new (gint32, n);
  for (gsize i = 0; i < n * size; i++)
    ds->train.u8[i] = (guint8)kilt_rng_below (&rng, 256);
  for (gsize i = 0; i < n; i++)
    ds->train.labels[i] = (gint32)kilt_rng_below (&rng, classes);
  for (guint c = 0; c < 4; c++)
    {
      ds->channel_mean[c] = 127.5f;
      ds->channel_std[c] = 73.9f;
    }
  ds->hash = g_strdup ("synthetic");
  return ds;
}

/* @n samples of a real data set's training split, repeated in order as often as needed: the
 * timing then sees that data's shape and values (a CSV's features, say) however small it is. */
static KiltDataset *
repeated_data (const KiltDataset *src, gsize n)
{
  KiltDataset *ds = g_new0 (KiltDataset, 1);
  gsize size = kilt_shape_size (&src->shape), m = MAX (src->train.n, 1);

  ds->name = g_strdup (src->name);
  ds->source = g_strdup (src->source);
  ds->format = g_strdup (src->format);
  ds->shape = src->shape;
  ds->type = src->type;
  ds->n_classes = src->n_classes;
  ds->class_names = g_strdupv (src->class_names);
  ds->n_targets = src->n_targets;
  ds->train.n = n;
  if (src->train.u8)
    ds->train.u8 = g_malloc (n * size);
  if (src->train.f32)
    ds->train.f32 = g_new (float, n *size);
  if (src->train.labels)
    ds->train.labels = g_new (gint32, n);
  if (src->train.targets)
    ds->train.targets = g_new (float, n *MAX (src->n_targets, 1));
  for (gsize i = 0; i < n; i++)
    {
      gsize j = i % m;
      if (ds->train.u8)
        memcpy (ds->train.u8 + i * size, src->train.u8 + j * size, size);
      if (ds->train.f32)
        memcpy (ds->train.f32 + i * size, src->train.f32 + j * size, size * sizeof (float));
      if (ds->train.labels)
        ds->train.labels[i] = src->train.labels[j];
      if (ds->train.targets)
        memcpy (ds->train.targets + i * src->n_targets, src->train.targets + j * src->n_targets,
                src->n_targets * sizeof (float));
    }
  memcpy (ds->channel_mean, src->channel_mean, sizeof ds->channel_mean);
  memcpy (ds->channel_std, src->channel_std, sizeof ds->channel_std);
  if (src->feature_mean)
    ds->feature_mean = g_memdup2 (src->feature_mean, src->shape.c * sizeof (float));
  if (src->feature_std)
    ds->feature_std = g_memdup2 (src->feature_std, src->shape.c * sizeof (float));
  ds->hash = g_strdup (src->hash);
  return ds;
}

/* The C reference runs in double precision on one core, at about 1 GFLOP/s: a training step
 * costs it about three forward passes per sample. Past this budget the check takes fewer
 * samples, then a smaller input, so that bench never sits silent for minutes before timing
 * (VGG16 at 224 is 93 GFLOP a sample). */
#define CHECK_BUDGET_FLOP 1.5e9

/* @model rebuilt on an input of @h x @w (its channels kept), or NULL where it does not build
 * (a pooling that leaves nothing, say). */
static KiltModel *
model_at_size (KiltModel *model, guint h, guint w)
{
  g_autofree char *json = kilt_model_to_json (model);
  g_autoptr (KiltModel) copy = kilt_model_load_json_data (json, -1, model->name, NULL);
  KiltShape *in;

  if (copy == NULL)
    return NULL;
  in = &kilt_model_node (copy, 0)->out_shape;
  in->h = h;
  in->w = w;
  if (!kilt_model_build (copy, NULL))
    return NULL;
  return g_steal_pointer (&copy);
}

/* Checks the device's first step against the C reference within CHECK_BUDGET_FLOP, saying on
 * stderr what it checks, since on a big model it takes seconds. */
static gboolean
check_first_step (KiltContext *ctx, KiltModel *model, const KiltCliCommon *c, BenchResult *r,
                  GError **error)
{
  g_autoptr (KiltModel) small = NULL;
  KiltModel *checked = model;
  KiltShape in = kilt_model_node (model, 0)->out_shape;
  double cost = 3.0 * (double)kilt_model_flops (model);
  guint batch = MIN ((guint)c->batch, 4u);
  gboolean ok;

  while (batch > 1 && cost * batch > CHECK_BUDGET_FLOP)
    batch--;
  /* Still too big at one sample: the same layers on a smaller image, shrunk by a quarter at a
   * time while it still builds. */
  if (cost > CHECK_BUDGET_FLOP && in.h > 1 && in.w > 1)
    {
      guint h = in.h, w = in.w;
      while (cost > CHECK_BUDGET_FLOP && h > 8 && w > 8)
        {
          KiltModel *next;
          h = h * 3 / 4;
          w = w * 3 / 4;
          next = model_at_size (model, h, w);
          if (next == NULL)
            break;
          g_clear_pointer (&small, kilt_model_free);
          small = next;
          cost = 3.0 * (double)kilt_model_flops (small);
        }
      if (small)
        checked = small;
    }
  /* More samples where a batch normalisation would take its statistics over too few values
   * (kilt_reference_check_batch says why), past the budget if need be: a check that cannot
   * tell a wrong kernel from rounding is no check. */
  {
    guint bn_batch = kilt_reference_check_batch (checked, batch, &r->check_bn_values);
    r->check_bn_raised = bn_batch > batch;
    batch = bn_batch;
  }
  r->check_batch = batch;
  r->check_input = kilt_model_node (checked, 0)->out_shape;
  if (!c->json)
    {
      g_autofree char *why
          = r->check_bn_raised
                ? g_strdup_printf ("; %u samples so that every batch normalisation takes its "
                                   "statistics over at least %u values",
                                   batch, r->check_bn_values)
                : g_strdup ("");
      if (checked != model)
        fprintf (stderr,
                 "Checking the first step against the C reference on %u sample%s of %ux%ux%u "
                 "(the model rebuilt smaller: at %ux%ux%u one sample is %.0f GFLOP for the "
                 "reference%s) ...\n",
                 batch, batch == 1 ? "" : "s", r->check_input.c, r->check_input.h, r->check_input.w,
                 in.c, in.h, in.w, 3.0 * kilt_model_flops (model) / 1e9, why);
      else
        fprintf (stderr,
                 "Checking the first step against the C reference on %u sample%s of %ux%ux%u%s%s%s"
                 " ...\n",
                 batch, batch == 1 ? "" : "s", in.c, in.h, in.w, *why ? " (" : "",
                 *why ? why + 2 : "", *why ? ")" : "");
    }
  ok = kilt_reference_check_step (ctx, checked, batch, (guint32)c->seed, &r->check_loss,
                                  &r->check_grad, &r->check_draws, &r->check_followed, error);
  if (!ok && checked != model)
    g_prefix_error (error, "the check with the model rebuilt at %ux%u: ", r->check_input.h,
                    r->check_input.w);
  return ok;
}

/* "41.6 M", "30.9 G": FLOP counts as a person reads them. */
static char *
format_flop (double v)
{
  if (v >= 1e9)
    return g_strdup_printf ("%.1f G", v / 1e9);
  if (v >= 1e6)
    return g_strdup_printf ("%.1f M", v / 1e6);
  return g_strdup_printf ("%.1f k", v / 1e3);
}

static void
bench_device (const KiltDeviceInfo *dev, KiltCliCommon *c, int steps, gboolean check,
              BenchResult *r)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *tmp = g_dir_make_tmp ("kilt-bench-XXXXXX", NULL);
  g_autofree char *old_cache = g_strdup (g_getenv ("KILT_CACHE_DIR"));
  KiltContext *ctx;
  KiltModel *model;
  g_autoptr (KiltDataset) real = NULL;
  KiltDataset *ds;
  KiltTrainConfig cfg;
  KiltTrainer *trainer;
  BenchView view = { 0 };

  r->device_id = g_strdup (dev->id);
  r->device_name = g_strdup (dev->name);

  /* Cold: an empty kernel cache; cached: the second start. */
  g_setenv ("KILT_CACHE_DIR", tmp, TRUE);
  ctx = kilt_context_new (dev, &error);
  if (ctx)
    {
      r->compile_cold = ctx->compile_seconds;
      kilt_context_free (ctx);
      ctx = kilt_context_new (dev, &error);
    }
  if (old_cache)
    g_setenv ("KILT_CACHE_DIR", old_cache, TRUE);
  else
    g_unsetenv ("KILT_CACHE_DIR");
  if (ctx == NULL)
    {
      r->error = g_strdup (error->message);
      return;
    }
  r->compile_cached = ctx->compile_seconds;
  /* A driver that crashes mid-step takes bench down: it says where first (after the device
   * opened, since a driver may put handlers of its own in place as it loads). */
  kilt_breadcrumb_install_handlers_as (STDERR_FILENO, "kilt-cli bench: ");
  if (c->precision && !kilt_precision_from_name (c->precision, &r->precision))
    {
      r->error = g_strdup_printf ("unknown --precision \"%s\": Kilt trains in fp32 or tf32",
                                  c->precision);
      kilt_context_free (ctx);
      return;
    }
  if (!kilt_context_set_precision (ctx, r->precision, &error))
    {
      r->error = g_strdup (error->message);
      kilt_context_free (ctx);
      return;
    }

  if (c->data && (real = kilt_cli_load_data (c, &error)) == NULL)
    {
      r->error = g_strdup (error->message);
      kilt_context_free (ctx);
      return;
    }
  model = kilt_cli_load_model (c, real, &error);
  if (model == NULL)
    {
      r->error = g_strdup (error->message);
      kilt_context_free (ctx);
      return;
    }
  r->input = kilt_model_node (model, 0)->out_shape;
  r->flops_per_sample = kilt_model_flops (model);
  /* Timing a preset on data of another shape times another network: say so. */
  if (real && !g_file_test (c->model, G_FILE_TEST_IS_REGULAR))
    {
      g_autoptr (KiltModel) own = kilt_model_load_preset (c->model, NULL, 0, NULL);
      r->adapted
          = own
            && (kilt_model_flops (own) != r->flops_per_sample || own->n_params != model->n_params);
    }
  if (check)
    {
      /* At tf32 a deep network's step drifts from the double-precision reference by what
       * TF32's 11-bit inputs do through it (MobileNetV2's batch normalisations over a 1x1
       * image made that 2% of the loss), which tells nothing of whether a kernel is wrong.
       * So the step is checked at fp32, every kernel but the GEMM the same, and the TF32
       * GEMM against a reference of its rounded inputs, which it matches to FP32 rounding. */
      r->check_ok = kilt_context_set_precision (ctx, KILT_PRECISION_FP32, &error)
                    && check_first_step (ctx, model, c, r, &error)
                    && kilt_context_set_precision (ctx, r->precision, &error);
      if (r->check_ok && r->precision == KILT_PRECISION_TF32)
        {
          double gflops;
          r->check_ok = kilt_gemm_tf32_check (ctx, &r->check_tf32_gemm, &gflops, &error);
        }
      if (!r->check_ok)
        {
          r->error = g_strdup (error->message);
          kilt_model_free (model);
          kilt_context_free (ctx);
          return;
        }
      r->check_ok = r->check_loss < 1e-4 && r->check_grad < 1e-3
                    && (r->precision != KILT_PRECISION_TF32
                        || r->check_tf32_gemm <= KILT_TF32_CHECK_TOLERANCE);
    }
  kilt_context_free (ctx);

  ds = real ? repeated_data (real, (gsize)steps * c->batch)
            : synthetic_data (model, (gsize)steps * c->batch, (guint32)c->seed);
  g_clear_pointer (&real, kilt_dataset_free);
  if (!kilt_cli_train_config (c, &cfg, &error))
    {
      r->error = g_strdup (error->message);
      kilt_model_free (model);
      kilt_dataset_free (ds);
      return;
    }
  r->memory = cfg.memory;
  g_free (cfg.device_id);
  cfg.device_id = g_strdup (dev->id);
  cfg.epochs = 2;
  cfg.profile = TRUE;
  trainer = kilt_trainer_new (model, ds, &cfg, on_bench_event, &view);
  kilt_trainer_start (trainer);
  kilt_trainer_join (trainer);
  if (view.status != KILT_RUN_FINISHED || view.epoch != 2)
    r->error = view.error ? g_strdup (view.error) : g_strdup ("the timed epoch did not finish");
  else
    {
      /* What the trainer ran is what the model's summary counts. */
      g_warn_if_fail (view.flops == r->flops_per_sample);
      r->step_ms = view.seconds * 1e3 / steps;
      r->samples_per_second = (double)steps * c->batch / view.seconds;
      /* A training step costs about three forward passes (forward, input and weight
       * gradients). */
      r->gflops = 3.0 * view.flops * r->samples_per_second / 1e9;
      r->busy_percent = view.busy;
      r->peak_bytes = view.peak;
      r->recompute = view.recompute;
      r->blocks_kept = view.blocks_kept;
      r->blocks_total = view.blocks_total;
      r->recompute_percent = view.recompute_percent;
      r->timings = g_steal_pointer (&view.timings);
    }
  g_clear_pointer (&view.timings, g_array_unref);
  g_free (view.error);
  kilt_trainer_free (trainer);
  kilt_train_config_clear (&cfg);
  g_rmdir (tmp);
}

gboolean
kilt_cli_bench_step (const KiltDeviceInfo *dev, KiltCliCommon *c, int steps, double *step_ms,
                     GError **error)
{
  BenchResult r = { 0 };
  gboolean ok;

  bench_device (dev, c, steps, FALSE, &r);
  ok = r.error == NULL;
  if (ok)
    *step_ms = r.step_ms;
  else
    g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_INVALID, "%s", r.error);
  g_free (r.device_id);
  g_free (r.device_name);
  g_free (r.error);
  g_clear_pointer (&r.timings, g_array_unref);
  return ok;
}

int
kilt_cli_bench (int argc, char **argv)
{
  KiltCliCommon c;
  g_autoptr (GOptionContext) oc = g_option_context_new ("- time training steps");
  g_autofree GOptionEntry *entries = NULL;
  g_autoptr (GError) error = NULL;
  g_autoptr (KiltDeviceList) list = kilt_device_list_new ();
  g_autoptr (GPtrArray) devices = g_ptr_array_new ();
  int steps = 50;
  gboolean no_check = FALSE, all = FALSE;
  GOptionEntry extra[] = {
    { "steps", 0, 0, G_OPTION_ARG_INT, &steps, "Timed steps (after as many warm-up steps)", "N" },
    { "all-devices", 0, 0, G_OPTION_ARG_NONE, &all, "Every usable device", NULL },
    { "no-check", 0, 0, G_OPTION_ARG_NONE, &no_check,
      "Skip the check of the first step against the C reference", NULL },
    { NULL },
  };
  int rc = 0;

  kilt_cli_common_init (&c);
  g_free (c.model);
  c.model = g_strdup ("cifar10_cnn");
  g_free (c.optimizer);
  c.optimizer = g_strdup ("rmsprop");
  /* No bundled sample here: without --data the model is timed on its own input shape. */
  g_clear_pointer (&c.data, g_free);
  entries = kilt_cli_common_entries (&c);
  g_option_context_add_main_entries (oc, entries, NULL);
  g_option_context_add_main_entries (oc, extra, NULL);
  g_option_context_set_summary (
      oc, "Defaults: cifar10_cnn with Keras' RMSprop, batch 32, 50 steps, the default device, "
          "random images of the model's own input shape (--data: that data set's training "
          "samples, repeated as needed, with a preset's input and classes fitted to it). "
          "--device takes a comma-separated list. The output names the input shape and the "
          "FLOP per sample timed, and the precision (--precision).");
  if (!kilt_cli_common_parse (&c, oc, &argc, &argv, &error) || steps < 1)
    {
      fprintf (stderr, "kilt-cli bench: %s\n", error ? error->message : "--steps must be >= 1");
      kilt_cli_common_clear (&c);
      return 2;
    }
  if (all)
    for (guint i = 0; i < list->devices->len; i++)
      {
        KiltDeviceInfo *d = g_ptr_array_index (list->devices, i);
        if (!d->unusable_reason)
          g_ptr_array_add (devices, d);
      }
  else if (c.device)
    {
      g_auto (GStrv) ids = g_strsplit (c.device, ",", -1);
      for (guint i = 0; ids[i]; i++)
        {
          const KiltDeviceInfo *d = kilt_device_list_find (list, ids[i]);
          if (!d)
            {
              fprintf (stderr, "kilt-cli bench: no device matches \"%s\"\n", ids[i]);
              kilt_cli_common_clear (&c);
              return 2;
            }
          g_ptr_array_add (devices, (gpointer)d);
        }
    }
  else
    {
      const KiltDeviceInfo *d = kilt_device_list_choose_default (list, &error);
      if (!d)
        {
          fprintf (stderr, "kilt-cli bench: %s\n", error->message);
          kilt_cli_common_clear (&c);
          return 1;
        }
      g_ptr_array_add (devices, (gpointer)d);
    }

  for (guint i = 0; i < devices->len; i++)
    {
      BenchResult r = { 0 };
      bench_device (g_ptr_array_index (devices, i), &c, steps, !no_check, &r);
      if (c.json)
        {
          g_autoptr (JsonBuilder) b = json_builder_new ();
          g_autoptr (JsonNode) root = NULL;
          g_autofree char *text = NULL;
          json_builder_begin_object (b);
#define STR(k, v)                                                                                  \
  json_builder_set_member_name (b, k);                                                             \
  json_builder_add_string_value (b, v)
#define NUM(k, v)                                                                                  \
  json_builder_set_member_name (b, k);                                                             \
  if (isfinite ((double)(v)))                                                                      \
    json_builder_add_double_value (b, (double)(v));                                                \
  else                                                                                             \
    json_builder_add_null_value (b)
          STR ("device_id", r.device_id);
          STR ("device", r.device_name);
          STR ("model", c.model);
          STR ("optimizer", c.optimizer);
          NUM ("batch", c.batch);
          NUM ("steps", steps);
          STR ("precision", kilt_precision_name (r.precision));
          STR ("memory", kilt_memory_mode_name (r.memory));
          STR ("data", c.data ? c.data : "synthetic");
          if (r.input.c)
            {
              json_builder_set_member_name (b, "input_chw");
              json_builder_begin_array (b);
              json_builder_add_int_value (b, r.input.c);
              json_builder_add_int_value (b, r.input.h);
              json_builder_add_int_value (b, r.input.w);
              json_builder_end_array (b);
              /* Forward, as `kilt-cli summary` counts them; a training step is about 3x. */
              NUM ("forward_flops_per_sample", r.flops_per_sample);
              NUM ("train_mflop_per_sample", 3.0 * r.flops_per_sample / 1e6);
              json_builder_set_member_name (b, "adapted_to_data");
              json_builder_add_boolean_value (b, r.adapted);
            }
          if (r.error)
            {
              STR ("error", r.error);
            }
          else
            {
              NUM ("compile_cold_s", r.compile_cold);
              NUM ("compile_cached_s", r.compile_cached);
              NUM ("step_ms", r.step_ms);
              NUM ("samples_per_s", r.samples_per_second);
              NUM ("gflops", r.gflops);
              NUM ("busy_percent", r.busy_percent);
              NUM ("peak_bytes", r.peak_bytes);
              json_builder_set_member_name (b, "recompute");
              json_builder_add_boolean_value (b, r.recompute);
              if (r.recompute)
                {
                  NUM ("blocks_kept", r.blocks_kept);
                  NUM ("blocks_total", r.blocks_total);
                  NUM ("recompute_percent", r.recompute_percent);
                }
              if (!no_check)
                {
                  NUM ("check_loss_rel", r.check_loss);
                  NUM ("check_grad_rel", r.check_grad);
                  NUM ("check_draws", r.check_draws);
                  NUM ("check_samples", r.check_batch);
                  /* Elements where the reference took the device's side of a ReLU's kink. */
                  NUM ("check_kinks_followed", r.check_followed);
                  if (r.check_bn_values)
                    {
                      NUM ("check_bn_min_values", r.check_bn_values);
                    }
                  if (r.precision == KILT_PRECISION_TF32)
                    {
                      NUM ("check_tf32_gemm_error", r.check_tf32_gemm);
                    }
                  json_builder_set_member_name (b, "check_input_chw");
                  json_builder_begin_array (b);
                  json_builder_add_int_value (b, r.check_input.c);
                  json_builder_add_int_value (b, r.check_input.h);
                  json_builder_add_int_value (b, r.check_input.w);
                  json_builder_end_array (b);
                  json_builder_set_member_name (b, "check_ok");
                  json_builder_add_boolean_value (b, r.check_ok);
                }
              if (r.timings)
                {
                  json_builder_set_member_name (b, "layers");
                  json_builder_begin_array (b);
                  for (guint j = 0; j < r.timings->len; j++)
                    {
                      KiltLayerTiming *t = &g_array_index (r.timings, KiltLayerTiming, j);
                      json_builder_begin_object (b);
                      STR ("layer", t->layer);
                      NUM ("forward_ms", t->forward_ms);
                      NUM ("backward_ms", t->backward_ms);
                      NUM ("update_ms", t->update_ms);
                      if (t->algo)
                        {
                          STR ("algo", t->algo);
                        }
                      if (t->algo_ms[0][0] > 0 || t->algo_ms[1][0] > 0)
                        {
                          /* What the choice measured, per pass and algorithm (ms). */
                          static const char *const passes[] = { "forward", "weights" };
                          json_builder_set_member_name (b, "algo_ms");
                          json_builder_begin_object (b);
                          for (guint p = 0; p < 2; p++)
                            if (t->algo_ms[p][0] > 0)
                              {
                                json_builder_set_member_name (b, passes[p]);
                                json_builder_begin_array (b);
                                json_builder_add_double_value (b, t->algo_ms[p][0]);
                                json_builder_add_double_value (b, t->algo_ms[p][1]);
                                json_builder_end_array (b);
                              }
                          json_builder_end_object (b);
                        }
                      json_builder_end_object (b);
                    }
                  json_builder_end_array (b);
                }
            }
#undef STR
#undef NUM
          json_builder_end_object (b);
          root = json_builder_get_root (b);
          text = json_to_string (root, FALSE);
          printf ("%s\n", text);
        }
      else if (r.error)
        printf ("%s: %s\n", r.device_name, r.error);
      else
        {
          g_autofree char *peak = kilt_format_bytes (r.peak_bytes);
          printf ("%s: %s batch %d, %s, %s\n", r.device_name, c.model, c.batch, c.optimizer,
                  kilt_precision_name (r.precision));
          g_autofree char *fwd = format_flop (r.flops_per_sample);
          g_autofree char *train = format_flop (3.0 * r.flops_per_sample);
          printf ("  workload:  input %ux%ux%u (channels x height x width) of %s; %sFLOP forward "
                  "per sample, %sFLOP per training sample (3x)%s\n",
                  r.input.c, r.input.h, r.input.w, c.data ? c.data : "random data", fwd, train,
                  r.adapted ? "; the preset was fitted to the data's input and classes, so this "
                              "is not the preset's own network"
                            : "");
          printf (
              "  kernels:   %.2f s with an empty Kilt cache (the driver's own cache may be warm), "
              "%.2f s cached\n",
              r.compile_cold, r.compile_cached);
          printf ("  step:      %.2f ms (%.4g samples/s, %.1f GFLOP/s achieved)\n", r.step_ms,
                  r.samples_per_second, r.gflops);
          if (isfinite (r.busy_percent))
            printf ("  device:    %.0f%% busy while profiled\n", r.busy_percent);
          if (r.recompute)
            printf ("  memory:    %s peak, --memory %s: keeps %u of %u blocks, recomputes the "
                    "rest (+%.0f%% compute; GFLOP/s above counts the model's, not the "
                    "recomputed)\n",
                    peak, kilt_memory_mode_name (r.memory), r.blocks_kept, r.blocks_total,
                    r.recompute_percent);
          else
            printf ("  memory:    %s peak, --memory %s: every activation kept\n", peak,
                    kilt_memory_mode_name (r.memory));
          if (!no_check)
            printf ("  check:     %s on %u sample%s of %ux%ux%u%s (loss %.1e, gradients %.1e "
                    "relative to the C reference%s)\n",
                    r.check_ok ? "pass" : "FAIL", r.check_batch, r.check_batch == 1 ? "" : "s",
                    r.check_input.c, r.check_input.h, r.check_input.w,
                    r.check_input.h != r.input.h || r.check_input.w != r.input.w
                        ? ", the model rebuilt smaller to keep the reference quick"
                        : "",
                    r.check_loss, r.check_grad,
                    r.check_draws > 1 ? "; inputs drawn again where a ReLU's input was near a "
                                        "kink and the reference could not follow the device"
                                      : "");
          if (!no_check && (r.check_bn_raised || r.check_followed))
            {
              if (r.check_bn_raised)
                printf ("             (%u samples so that every batch normalisation took its "
                        "statistics over at least %u values: over fewer, rounding grows past "
                        "what the check can tell from a wrong kernel)\n",
                        r.check_batch, r.check_bn_values);
              if (r.check_followed)
                printf ("             (at %u element%s a ReLU's input was within the layer's "
                        "rounding of its kink and fell on the other side on the device: the "
                        "reference took the device's side)\n",
                        r.check_followed, r.check_followed == 1 ? "" : "s");
            }
          if (!no_check && r.precision == KILT_PRECISION_TF32)
            printf ("             (the step at fp32; the tf32 GEMM against its rounded inputs: "
                    "largest error %.1e)\n",
                    r.check_tf32_gemm);
          if (r.timings)
            {
              double total = 0;
              for (guint j = 0; j < r.timings->len; j++)
                {
                  KiltLayerTiming *t = &g_array_index (r.timings, KiltLayerTiming, j);
                  total += t->forward_ms + t->backward_ms + t->update_ms;
                }
              printf ("  %-20s %9s %9s %9s %6s\n", "device time (ms)", "forward", "backward",
                      "update", "share");
              for (guint j = 0; j < r.timings->len; j++)
                {
                  KiltLayerTiming *t = &g_array_index (r.timings, KiltLayerTiming, j);
                  double sum = t->forward_ms + t->backward_ms + t->update_ms;
                  printf ("  %-20s %9.3f %9.3f %9.3f %5.1f%%%s%s\n", t->layer, t->forward_ms,
                          t->backward_ms, t->update_ms, 100 * sum / MAX (total, 1e-12),
                          t->algo ? "  " : "", t->algo ? t->algo : "");
                }
            }
        }
      fflush (stdout);
      if (r.error || (!no_check && !r.check_ok))
        rc = 1;
      g_free (r.device_id);
      g_free (r.device_name);
      g_free (r.error);
      g_clear_pointer (&r.timings, g_array_unref);
    }
  kilt_cli_common_clear (&c);
  return rc;
}
