/* The worker protocol: KiltEvent and the start command to and from JSON lines. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#define G_LOG_DOMAIN "kilt-worker-protocol"

#include "config.h"

#include "kilt-worker-protocol.h"
#include "kilt-error.h"
#include "kilt-evaluation.h"
#include "kilt-json-limits.h"

#include <math.h>
#include <string.h>

static const char *event_names[]
    = { "started", "step", "epoch", "memory", "timings", "log", "finished" };

/* STARTED and EPOCH of a run on several devices or ranks: each device's part. */
static void
add_replicas (JsonBuilder *b, const KiltEvent *ev)
{
  if (ev->n_replicas > 0 && ev->replicas)
    {
      json_builder_set_member_name (b, "replicas");
      json_builder_begin_array (b);
      for (guint i = 0; i < ev->n_replicas; i++)
        {
          const KiltReplicaShare *r = &ev->replicas[i];
          json_builder_begin_object (b);
          kilt_json_add_string (b, "device", r->device_name);
          kilt_json_add_int (b, "share", r->share);
          kilt_json_add_number (b, "step_ms", r->step_ms);
          kilt_json_add_number (b, "samples_per_second", r->samples_per_second);
          kilt_json_add_number (b, "busy_percent", r->busy_percent);
          kilt_json_add_number (b, "live_bytes", (double)r->live_bytes);
          kilt_json_add_number (b, "peak_bytes", (double)r->peak_bytes);
          json_builder_end_object (b);
        }
      json_builder_end_array (b);
    }
  if (ev->n_ranks > 1)
    kilt_json_add_int (b, "ranks", ev->n_ranks);
  if (ev->type == KILT_EVENT_EPOCH && (ev->n_replicas > 0 || ev->n_ranks > 1))
    {
      kilt_json_add_number (b, "reduce_ms", ev->reduce_ms);
      kilt_json_add_number (b, "dist_step_ms", ev->dist_step_ms);
      kilt_json_add_number (b, "alone_step_ms", ev->alone_step_ms);
    }
}

/* (Non-finite numbers go out as null, read back as NaN: kilt_json_add_number.) */
JsonBuilder *
kilt_worker_event_begin (const KiltEvent *ev)
{
  JsonBuilder *b = json_builder_new ();

  g_return_val_if_fail ((guint)ev->type < G_N_ELEMENTS (event_names), b);
  json_builder_begin_object (b);
  kilt_json_add_string (b, "event", event_names[ev->type]);
  switch (ev->type)
    {
      case KILT_EVENT_STARTED:
        kilt_json_add_string (b, "device", ev->device_name);
        kilt_json_add_number (b, "compile_seconds", ev->compile_seconds);
        json_builder_set_member_name (b, "compile_cached");
        json_builder_add_boolean_value (b, ev->compile_cached);
        kilt_json_add_number (b, "planned_bytes", (double)ev->planned_bytes);
        kilt_json_add_number (b, "device_bytes", (double)ev->device_bytes);
        kilt_json_add_number (b, "params", (double)ev->n_params);
        kilt_json_add_number (b, "flops_per_sample", (double)ev->flops_per_sample);
        kilt_json_add_number (b, "steps_per_epoch", ev->steps_per_epoch);
        kilt_json_add_string (b, "memory", ev->recompute ? "recompute" : "keep");
        kilt_json_add_number (b, "blocks_kept", ev->blocks_kept);
        kilt_json_add_number (b, "blocks_total", ev->blocks_total);
        kilt_json_add_number (b, "recompute_percent", ev->recompute_percent);
        kilt_json_add_number (b, "max_batch", ev->max_batch);
        if (ev->message)
          kilt_json_add_string (b, "plan", ev->message);
        /* 64 bits: more than a double holds exactly. */
        {
          char token[32];
          g_snprintf (token, sizeof token, "%" G_GUINT64_FORMAT, ev->run_token);
          kilt_json_add_string (b, "run_token", token);
        }
        kilt_json_add_number (b, "batch", ev->batch);
        kilt_json_add_number (b, "epochs_done", ev->epoch);
        kilt_json_add_number (b, "global_step", (double)ev->global_step);
        if (ev->change)
          kilt_json_add_string (b, "change", ev->change);
        add_replicas (b, ev);
        break;
      case KILT_EVENT_STEP:
      case KILT_EVENT_EPOCH:
        kilt_json_add_number (b, "epoch", ev->epoch);
        kilt_json_add_number (b, "step", ev->step);
        kilt_json_add_number (b, "global_step", (double)ev->global_step);
        kilt_json_add_number (b, "loss", ev->loss);
        kilt_json_add_number (b, "accuracy", ev->accuracy);
        kilt_json_add_number (b, "samples_per_second", ev->samples_per_second);
        kilt_json_add_number (b, "eta_seconds", ev->eta_seconds);
        kilt_json_add_number (b, "elapsed_seconds", ev->elapsed_seconds);
        kilt_json_add_number (b, "learning_rate", ev->learning_rate);
        if (ev->type == KILT_EVENT_EPOCH)
          {
            kilt_json_add_number (b, "val_loss", ev->val_loss);
            kilt_json_add_number (b, "val_accuracy", ev->val_accuracy);
            kilt_json_add_number (b, "seconds", ev->epoch_seconds);
            kilt_json_add_number (b, "warmup_seconds", ev->warmup_seconds);
            kilt_json_add_number (b, "busy_percent", ev->busy_percent);
            /* The epoch's peaks go into the run store's epoch record. */
            json_builder_set_member_name (b, "peak");
            json_builder_begin_object (b);
            for (int i = 0; i < KILT_MEM_N_CATEGORIES; i++)
              kilt_json_add_number (b, kilt_mem_category_name (i), (double)ev->mem.peak[i]);
            json_builder_end_object (b);
            kilt_json_add_number (b, "peak_bytes", (double)ev->mem.peak_total);
            add_replicas (b, ev);
          }
        break;
      case KILT_EVENT_MEMORY:
        kilt_json_add_number (b, "live_bytes", (double)ev->mem.live_total);
        kilt_json_add_number (b, "peak_bytes", (double)ev->mem.peak_total);
        for (int i = 0; i < KILT_MEM_N_CATEGORIES; i++)
          kilt_json_add_number (b, kilt_mem_category_name (i), (double)ev->mem.live[i]);
        json_builder_set_member_name (b, "peak");
        json_builder_begin_object (b);
        for (int i = 0; i < KILT_MEM_N_CATEGORIES; i++)
          kilt_json_add_number (b, kilt_mem_category_name (i), (double)ev->mem.peak[i]);
        json_builder_end_object (b);
        kilt_json_add_number (b, "vendor_used_bytes", (double)ev->vendor_used_bytes);
        break;
      case KILT_EVENT_TIMINGS:
        json_builder_set_member_name (b, "layers");
        json_builder_begin_array (b);
        for (guint i = 0; ev->timings && i < ev->timings->len; i++)
          {
            KiltLayerTiming *t = &g_array_index (ev->timings, KiltLayerTiming, i);
            json_builder_begin_object (b);
            kilt_json_add_string (b, "layer", t->layer);
            kilt_json_add_string (b, "type", t->type);
            kilt_json_add_number (b, "forward_ms", t->forward_ms);
            kilt_json_add_number (b, "backward_ms", t->backward_ms);
            kilt_json_add_number (b, "update_ms", t->update_ms);
            if (t->algo)
              {
                kilt_json_add_string (b, "algo", t->algo);
                json_builder_set_member_name (b, "algo_ms");
                json_builder_begin_array (b);
                for (int k = 0; k < 4; k++)
                  json_builder_add_double_value (
                      b, isfinite (t->algo_ms[k / 2][k % 2]) ? t->algo_ms[k / 2][k % 2] : -1);
                json_builder_end_array (b);
              }
            json_builder_end_object (b);
          }
        json_builder_end_array (b);
        break;
      case KILT_EVENT_LOG:
        kilt_json_add_string (b, "message", ev->message);
        kilt_json_add_int (b, "level", ev->level);
        break;
      case KILT_EVENT_FINISHED:
        kilt_json_add_string (b, "status", kilt_run_status_name (ev->status));
        if (ev->error)
          {
            kilt_json_add_string (b, "error", ev->error->message);
            kilt_json_add_int (b, "error_code", ev->error->code);
          }
        kilt_json_add_number (b, "test_loss", ev->test_loss);
        kilt_json_add_number (b, "test_accuracy", ev->test_accuracy);
        kilt_json_add_number (b, "leaked_bytes", (double)ev->leaked_bytes);
        break;
    }
  return b;
}

char *
kilt_worker_event_end (JsonBuilder *b)
{
  g_autoptr (JsonNode) root = NULL;
  g_autoptr (JsonGenerator) gen = json_generator_new ();

  json_builder_end_object (b);
  root = json_builder_get_root (b);
  g_object_unref (b);
  json_generator_set_root (gen, root);
  return json_generator_to_data (gen, NULL);
}

char *
kilt_event_to_json (const KiltEvent *ev)
{
  return kilt_worker_event_end (kilt_worker_event_begin (ev));
}

/* ---- reading ---- */

/* A count: NaN and negatives read as 0. */
static guint64
get_count (JsonObject *o, const char *name)
{
  double v = kilt_json_get_number (o, name);
  return isfinite (v) && v > 0 ? (guint64)v : 0;
}

static gint64
get_bytes (JsonObject *o, const char *name)
{
  double v = kilt_json_get_number (o, name);
  return isfinite (v) ? (gint64)v : -1;
}

static const char *
get_string (JsonObject *o, const char *name)
{
  JsonNode *n = json_object_get_member (o, name);

  if (n == NULL || JSON_NODE_TYPE (n) != JSON_NODE_VALUE
      || json_node_get_value_type (n) != G_TYPE_STRING)
    return NULL;
  return json_node_get_string (n);
}

static void
get_categories (JsonObject *o, gint64 *out)
{
  for (int i = 0; i < KILT_MEM_N_CATEGORIES; i++)
    out[i] = o ? MAX (get_bytes (o, kilt_mem_category_name (i)), 0) : 0;
}

static JsonObject *
get_object (JsonObject *o, const char *name)
{
  JsonNode *n = json_object_get_member (o, name);
  return n && JSON_NODE_HOLDS_OBJECT (n) ? json_node_get_object (n) : NULL;
}

gboolean
kilt_run_status_from_name (const char *name, KiltRunStatus *out)
{
  for (KiltRunStatus s = KILT_RUN_RUNNING; s <= KILT_RUN_INTERRUPTED; s++)
    if (g_strcmp0 (name, kilt_run_status_name (s)) == 0)
      {
        *out = s;
        return TRUE;
      }
  return FALSE;
}

/* The devices of a run on several: read into memory the event owns (freed by
 * kilt_worker_event_clear). At most KILT_MAX_DEVICES; what is not an object is skipped. */
static void
get_replicas (JsonObject *o, KiltEvent *ev)
{
  JsonNode *n = json_object_get_member (o, "replicas");
  JsonArray *a = n && JSON_NODE_HOLDS_ARRAY (n) ? json_node_get_array (n) : NULL;
  guint len = a ? MIN (json_array_get_length (a), KILT_MAX_DEVICES) : 0;
  KiltReplicaShare *r = len ? g_new0 (KiltReplicaShare, len) : NULL;
  guint k = 0;

  for (guint i = 0; i < len; i++)
    {
      JsonNode *e = json_array_get_element (a, i);
      JsonObject *d = JSON_NODE_HOLDS_OBJECT (e) ? json_node_get_object (e) : NULL;
      if (d == NULL)
        continue;
      r[k].device_name = g_strdup (get_string (d, "device") ? get_string (d, "device") : "?");
      r[k].share = (guint)MIN (get_count (d, "share"), G_MAXUINT);
      r[k].step_ms = kilt_json_get_number (d, "step_ms");
      r[k].samples_per_second = kilt_json_get_number (d, "samples_per_second");
      r[k].busy_percent = kilt_json_get_number (d, "busy_percent");
      r[k].live_bytes = get_bytes (d, "live_bytes");
      r[k].peak_bytes = get_bytes (d, "peak_bytes");
      k++;
    }
  if (k == 0)
    g_free (r), r = NULL;
  ev->replicas = r;
  ev->n_replicas = k;
  ev->n_ranks = (guint)MAX (MIN (get_count (o, "ranks"), G_MAXUINT), 1);
  ev->reduce_ms = kilt_json_get_number (o, "reduce_ms");
  ev->dist_step_ms = kilt_json_get_number (o, "dist_step_ms");
  ev->alone_step_ms = kilt_json_get_number (o, "alone_step_ms");
}

gboolean
kilt_worker_event_from_json (JsonObject *o, KiltEvent *ev, GError **error)
{
  const char *name = get_string (o, "event");
  guint type;

  memset (ev, 0, sizeof *ev);
  for (type = 0; type < G_N_ELEMENTS (event_names); type++)
    if (g_strcmp0 (name, event_names[type]) == 0)
      break;
  if (type == G_N_ELEMENTS (event_names))
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_INVALID,
                   "worker event: member \"event\" is %s%s%s, not one of started, step, epoch, "
                   "memory, timings, log, finished",
                   name ? "\"" : "", name ? name : "missing", name ? "\"" : "");
      return FALSE;
    }
  ev->type = type;
  ev->val_loss = ev->val_accuracy = ev->test_loss = ev->test_accuracy = NAN;
  ev->busy_percent = NAN;
  ev->vendor_used_bytes = -1;
  switch (ev->type)
    {
      case KILT_EVENT_STARTED:
        ev->device_name = g_strdup (get_string (o, "device"));
        ev->compile_seconds = kilt_json_get_number (o, "compile_seconds");
        ev->compile_cached
            = json_object_get_boolean_member_with_default (o, "compile_cached", FALSE);
        ev->planned_bytes = get_count (o, "planned_bytes");
        ev->device_bytes = get_count (o, "device_bytes");
        ev->n_params = get_count (o, "params");
        ev->flops_per_sample = get_count (o, "flops_per_sample");
        ev->steps_per_epoch = (guint)get_count (o, "steps_per_epoch");
        ev->recompute = g_strcmp0 (get_string (o, "memory"), "recompute") == 0;
        ev->blocks_kept = (guint)get_count (o, "blocks_kept");
        ev->blocks_total = (guint)get_count (o, "blocks_total");
        ev->recompute_percent = kilt_json_get_number (o, "recompute_percent");
        if (isnan (ev->recompute_percent))
          ev->recompute_percent = 0;
        ev->max_batch = (guint)get_count (o, "max_batch");
        ev->message = g_strdup (get_string (o, "plan"));
        ev->run_token = g_ascii_strtoull (
            get_string (o, "run_token") ? get_string (o, "run_token") : "0", NULL, 10);
        ev->batch = (guint)get_count (o, "batch");
        ev->epoch = (guint)get_count (o, "epochs_done");
        ev->global_step = get_count (o, "global_step");
        ev->change = g_strdup (get_string (o, "change"));
        get_replicas (o, ev);
        break;
      case KILT_EVENT_STEP:
      case KILT_EVENT_EPOCH:
        ev->epoch = (guint)get_count (o, "epoch");
        ev->step = (guint)get_count (o, "step");
        ev->global_step = get_count (o, "global_step");
        ev->loss = kilt_json_get_number (o, "loss");
        ev->accuracy = kilt_json_get_number (o, "accuracy");
        ev->samples_per_second = kilt_json_get_number (o, "samples_per_second");
        ev->eta_seconds = kilt_json_get_number (o, "eta_seconds");
        ev->elapsed_seconds = kilt_json_get_number (o, "elapsed_seconds");
        ev->learning_rate = kilt_json_get_number (o, "learning_rate");
        if (ev->type == KILT_EVENT_EPOCH)
          {
            ev->val_loss = kilt_json_get_number (o, "val_loss");
            ev->val_accuracy = kilt_json_get_number (o, "val_accuracy");
            ev->epoch_seconds = kilt_json_get_number (o, "seconds");
            ev->warmup_seconds = kilt_json_get_number (o, "warmup_seconds");
            ev->busy_percent = kilt_json_get_number (o, "busy_percent");
            get_categories (get_object (o, "peak"), ev->mem.peak);
            ev->mem.peak_total = MAX (get_bytes (o, "peak_bytes"), 0);
            get_replicas (o, ev);
          }
        break;
      case KILT_EVENT_MEMORY:
        ev->mem.live_total = MAX (get_bytes (o, "live_bytes"), 0);
        ev->mem.peak_total = MAX (get_bytes (o, "peak_bytes"), 0);
        get_categories (o, ev->mem.live);
        get_categories (get_object (o, "peak"), ev->mem.peak);
        ev->vendor_used_bytes = get_bytes (o, "vendor_used_bytes");
        break;
      case KILT_EVENT_TIMINGS:
        {
          JsonNode *n = json_object_get_member (o, "layers");
          JsonArray *a = n && JSON_NODE_HOLDS_ARRAY (n) ? json_node_get_array (n) : NULL;
          ev->timings = g_array_new (FALSE, TRUE, sizeof (KiltLayerTiming));
          g_array_set_clear_func (ev->timings, kilt_layer_timing_clear);
          for (guint i = 0; a && i < json_array_get_length (a); i++)
            {
              JsonNode *e = json_array_get_element (a, i);
              JsonObject *l = JSON_NODE_HOLDS_OBJECT (e) ? json_node_get_object (e) : NULL;
              KiltLayerTiming t = { 0 };
              JsonNode *ms;
              if (l == NULL)
                continue;
              t.layer = g_strdup (get_string (l, "layer"));
              t.type = g_strdup (get_string (l, "type"));
              t.forward_ms = kilt_json_get_number (l, "forward_ms");
              t.backward_ms = kilt_json_get_number (l, "backward_ms");
              t.update_ms = kilt_json_get_number (l, "update_ms");
              t.algo = g_strdup (get_string (l, "algo"));
              ms = json_object_get_member (l, "algo_ms");
              if (ms && JSON_NODE_HOLDS_ARRAY (ms)
                  && json_array_get_length (json_node_get_array (ms)) == 4)
                for (int k = 0; k < 4; k++)
                  {
                    JsonNode *v = json_array_get_element (json_node_get_array (ms), k);
                    double d = JSON_NODE_HOLDS_VALUE (v) ? json_node_get_double (v) : -1;
                    t.algo_ms[k / 2][k % 2] = d >= 0 ? d : NAN;
                  }
              g_array_append_val (ev->timings, t);
            }
          break;
        }
      case KILT_EVENT_LOG:
        ev->message = g_strdup (get_string (o, "message") ? get_string (o, "message") : "");
        ev->level = (GLogLevelFlags)json_object_get_int_member_with_default (o, "level",
                                                                             G_LOG_LEVEL_INFO);
        break;
      case KILT_EVENT_FINISHED:
        if (!kilt_run_status_from_name (get_string (o, "status"), &ev->status))
          {
            g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_INVALID,
                         "worker event \"finished\": member \"status\" is no run status");
            return FALSE;
          }
        if (get_string (o, "error"))
          ev->error = g_error_new_literal (KILT_ENGINE_ERROR,
                                           (int)json_object_get_int_member_with_default (
                                               o, "error_code", KILT_ENGINE_ERROR_WORKER),
                                           get_string (o, "error"));
        else if (ev->status == KILT_RUN_FAILED)
          ev->error = g_error_new_literal (KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_WORKER,
                                           "the run failed (the worker gave no reason)");
        ev->test_loss = kilt_json_get_number (o, "test_loss");
        ev->test_accuracy = kilt_json_get_number (o, "test_accuracy");
        ev->leaked_bytes = MAX (get_bytes (o, "leaked_bytes"), 0);
        break;
    }
  return TRUE;
}

void
kilt_worker_event_clear (KiltEvent *ev)
{
  g_clear_pointer (&ev->device_name, g_free);
  g_clear_pointer (&ev->message, g_free);
  g_clear_pointer (&ev->change, g_free);
  g_clear_pointer (&ev->timings, g_array_unref);
  g_clear_error (&ev->error);
  for (guint i = 0; ev->replicas && i < ev->n_replicas; i++)
    g_free ((char *)ev->replicas[i].device_name);
  g_free ((KiltReplicaShare *)ev->replicas);
  ev->replicas = NULL;
  ev->n_replicas = 0;
}

/* ---- the start command ---- */

void
kilt_worker_job_clear (KiltWorkerJob *job)
{
  g_free (job->model_json);
  kilt_data_spec_clear (&job->data);
  kilt_train_config_clear (&job->config);
  g_free (job->db_path);
  g_strfreev (job->device_ids);
  g_free (job->tag);
  g_free (job->resume_from);
  g_free (job->file);
  g_free (job->weights_file);
  g_free (job->weights_note);
  memset (job, 0, sizeof *job);
}

char *
kilt_worker_job_to_json (const KiltWorkerJob *job)
{
  g_autoptr (JsonBuilder) b = json_builder_new ();
  g_autoptr (JsonGenerator) gen = json_generator_new ();
  g_autoptr (JsonNode) root = NULL;
  g_autofree char *data = kilt_data_spec_to_json (&job->data);
  g_autofree char *config = kilt_run_config_to_json (&job->config);

  json_builder_begin_object (b);
  kilt_json_add_string (b, "cmd",
                        job->task == KILT_WORKER_TASK_EVALUATE   ? "evaluate"
                        : job->task == KILT_WORKER_TASK_CLASSIFY ? "classify"
                                                                 : "start");
  kilt_json_add_string (b, "model_json", job->model_json);
  /* Nested as text: each has its own reader, which the run store uses too. */
  kilt_json_add_string (b, "data", data);
  kilt_json_add_string (b, "config", config);
  kilt_json_add_string (b, "db", job->db_path);
  json_builder_set_member_name (b, "keep_weights");
  json_builder_add_boolean_value (b, job->keep_weights);
  if (job->device_ids)
    {
      json_builder_set_member_name (b, "devices");
      json_builder_begin_array (b);
      for (guint i = 0; job->device_ids[i]; i++)
        json_builder_add_string_value (b, job->device_ids[i]);
      json_builder_end_array (b);
    }
  kilt_json_add_string (b, "tag", job->tag);
  kilt_json_add_string (b, "resume_from", job->resume_from);
  if (job->task == KILT_WORKER_TASK_EVALUATE)
    kilt_json_add_int (b, "max_misclassified", job->max_misclassified);
  if (job->task == KILT_WORKER_TASK_CLASSIFY)
    kilt_json_add_string (b, "file", job->file);
  kilt_json_add_string (b, "weights_file", job->weights_file);
  kilt_json_add_string (b, "weights_note", job->weights_note);
  json_builder_end_object (b);
  root = json_builder_get_root (b);
  json_generator_set_root (gen, root);
  return json_generator_to_data (gen, NULL);
}

gboolean
kilt_worker_job_from_json (JsonObject *o, KiltWorkerJob *job, GError **error)
{
  const char *model = get_string (o, "model_json");
  const char *data = get_string (o, "data");
  const char *config = get_string (o, "config");
  JsonNode *devices = json_object_get_member (o, "devices");
  const char *cmd = get_string (o, "cmd");
  gint64 max_mis;

  memset (job, 0, sizeof *job);
  job->task = g_strcmp0 (cmd, "evaluate") == 0   ? KILT_WORKER_TASK_EVALUATE
              : g_strcmp0 (cmd, "classify") == 0 ? KILT_WORKER_TASK_CLASSIFY
                                                 : KILT_WORKER_TASK_TRAIN;
  if (model == NULL || data == NULL || config == NULL)
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_INVALID,
                   "start command: member \"%s\" (a string) is missing",
                   model == NULL  ? "model_json"
                   : data == NULL ? "data"
                                  : "config");
      return FALSE;
    }
  job->model_json = g_strdup (model);
  if (!kilt_data_spec_from_json (data, &job->data, error))
    {
      g_prefix_error (error, "start command, member \"data\": ");
      kilt_worker_job_clear (job);
      return FALSE;
    }
  if (!kilt_run_config_from_json (config, &job->config, error))
    {
      g_prefix_error (error, "start command, member \"config\": ");
      kilt_worker_job_clear (job);
      return FALSE;
    }
  job->db_path = g_strdup (get_string (o, "db"));
  job->keep_weights = json_object_get_boolean_member_with_default (o, "keep_weights", FALSE);
  if (devices && JSON_NODE_HOLDS_ARRAY (devices))
    {
      JsonArray *a = json_node_get_array (devices);
      GStrvBuilder *sb = g_strv_builder_new ();
      for (guint i = 0; i < json_array_get_length (a); i++)
        {
          JsonNode *e = json_array_get_element (a, i);
          if (!JSON_NODE_HOLDS_VALUE (e) || json_node_get_value_type (e) != G_TYPE_STRING)
            {
              g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_INVALID,
                           "start command: member \"devices\", element %u is not a string", i);
              g_strv_builder_unref (sb);
              kilt_worker_job_clear (job);
              return FALSE;
            }
          g_strv_builder_add (sb, json_node_get_string (e));
        }
      job->device_ids = g_strv_builder_end (sb);
      g_strv_builder_unref (sb);
    }
  job->tag = g_strdup (get_string (o, "tag"));
  job->resume_from = g_strdup (get_string (o, "resume_from"));
  job->weights_file = g_strdup (get_string (o, "weights_file"));
  job->weights_note = g_strdup (get_string (o, "weights_note"));
  max_mis = json_object_get_int_member_with_default (o, "max_misclassified", 0);
  if (max_mis < 0 || max_mis > KILT_EVALUATION_MAX_MISCLASSIFIED)
    {
      g_set_error (
          error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_INVALID,
          "evaluate command: member \"max_misclassified\" must be 0 to %d, not %" G_GINT64_FORMAT,
          KILT_EVALUATION_MAX_MISCLASSIFIED, max_mis);
      kilt_worker_job_clear (job);
      return FALSE;
    }
  job->max_misclassified = (guint)max_mis;
  job->file = g_strdup (get_string (o, "file"));
  if (job->task == KILT_WORKER_TASK_CLASSIFY && job->file == NULL)
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_INVALID,
                   "classify command: member \"file\" (a string) is missing");
      kilt_worker_job_clear (job);
      return FALSE;
    }
  if (job->task != KILT_WORKER_TASK_TRAIN && job->config.checkpoint_path == NULL)
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_INVALID,
                   "%s command: member \"config\" names no checkpoint_path", cmd);
      kilt_worker_job_clear (job);
      return FALSE;
    }
  return TRUE;
}

gboolean
kilt_worker_parse_line (const char *line, const char *what, JsonObject **out, GError **error)
{
  g_autoptr (JsonParser) parser = json_parser_new ();
  g_autoptr (GError) local = NULL;
  JsonNode *root;

  if (!json_parser_load_from_data (parser, line, -1, &local)
      || !(root = json_parser_get_root (parser)) || !JSON_NODE_HOLDS_OBJECT (root))
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_INVALID,
                   "%s: a line that is not a JSON object (%s): \"%.60s\"", what,
                   local ? local->message : "another JSON value", line);
      return FALSE;
    }
  *out = json_object_ref (json_node_get_object (root));
  return TRUE;
}
