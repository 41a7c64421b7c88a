/* How a run on several devices or MPI ranks shared its work, as its record keeps it. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#define G_LOG_DOMAIN "kilt-run-scaling"

#include "config.h"

#include "kilt-run-scaling.h"
#include "kilt-error.h"
#include "kilt-json-limits.h"

#include <math.h>

static void
device_clear (gpointer data)
{
  g_free (((KiltRunDevice *)data)->name);
}

KiltRunScaling *
kilt_run_scaling_new (void)
{
  KiltRunScaling *s = g_new0 (KiltRunScaling, 1);

  s->asked = g_ptr_array_new_with_free_func (g_free);
  s->devices = g_array_new (FALSE, TRUE, sizeof (KiltRunDevice));
  g_array_set_clear_func (s->devices, device_clear);
  s->ranks = 1;
  return s;
}

void
kilt_run_scaling_free (KiltRunScaling *s)
{
  if (s == NULL)
    return;
  g_ptr_array_unref (s->asked);
  g_array_unref (s->devices);
  g_free (s);
}

static double
finite_or (double v, double other)
{
  return isfinite (v) ? v : other;
}

gboolean
kilt_run_scaling_update (KiltRunScaling *s, const KiltEvent *ev)
{
  if (ev->type == KILT_EVENT_STARTED)
    {
      if (ev->n_replicas <= 1 && ev->n_ranks <= 1)
        return FALSE;
      g_ptr_array_set_size (s->asked, 0);
      for (guint i = 0; i < ev->n_replicas; i++)
        g_ptr_array_add (s->asked, g_strdup (ev->replicas[i].device_name));
      s->ranks = MAX (ev->n_ranks, 1);
      return TRUE;
    }
  if (ev->type != KILT_EVENT_EPOCH || (ev->n_replicas == 0 && ev->n_ranks <= 1))
    return FALSE;
  g_array_set_size (s->devices, 0);
  for (guint i = 0; i < ev->n_replicas; i++)
    {
      const KiltReplicaShare *r = &ev->replicas[i];
      KiltRunDevice d = { .name = g_strdup (r->device_name),
                          .share = r->share,
                          .samples_per_second = finite_or (r->samples_per_second, 0),
                          .busy_percent = r->busy_percent,
                          .peak_bytes = r->peak_bytes };
      g_array_append_val (s->devices, d);
    }
  /* Calibration happens once, in the first epoch: later epochs keep its figures. */
  if (finite_or (ev->dist_step_ms, 0) > 0)
    s->step_ms = ev->dist_step_ms;
  if (finite_or (ev->alone_step_ms, 0) > 0)
    s->alone_ms = ev->alone_step_ms;
  s->ranks = MAX (ev->n_ranks, 1);
  s->reduce_ms = finite_or (ev->reduce_ms, 0);
  s->samples_per_second = finite_or (ev->samples_per_second, 0);
  return TRUE;
}

char *
kilt_run_scaling_to_json (const KiltRunScaling *s)
{
  g_autoptr (JsonBuilder) b = json_builder_new ();
  g_autoptr (JsonGenerator) gen = json_generator_new ();
  g_autoptr (JsonNode) root = NULL;

  json_builder_begin_object (b);
  json_builder_set_member_name (b, "asked");
  json_builder_begin_array (b);
  for (guint i = 0; i < s->asked->len; i++)
    kilt_json_add_text (b, s->asked->pdata[i]);
  json_builder_end_array (b);
  json_builder_set_member_name (b, "devices");
  json_builder_begin_array (b);
  for (guint i = 0; i < s->devices->len; i++)
    {
      const KiltRunDevice *d = &g_array_index (s->devices, KiltRunDevice, i);
      json_builder_begin_object (b);
      kilt_json_add_string (b, "name", d->name);
      kilt_json_add_int (b, "share", d->share);
      kilt_json_add_number (b, "samples_per_second", d->samples_per_second);
      kilt_json_add_number (b, "busy_percent", d->busy_percent);
      kilt_json_add_int (b, "peak_bytes", d->peak_bytes);
      json_builder_end_object (b);
    }
  json_builder_end_array (b);
  kilt_json_add_number (b, "step_ms", s->step_ms);
  kilt_json_add_number (b, "alone_ms", s->alone_ms);
  kilt_json_add_int (b, "ranks", s->ranks);
  kilt_json_add_number (b, "reduce_ms", s->reduce_ms);
  kilt_json_add_number (b, "samples_per_second", s->samples_per_second);
  json_builder_end_object (b);
  root = json_builder_get_root (b);
  json_generator_set_root (gen, root);
  return json_generator_to_data (gen, NULL);
}

static gboolean
bad (GError **error, const char *what)
{
  g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_INVALID, "the run's device record: %s",
               what);
  return FALSE;
}

KiltRunScaling *
kilt_run_scaling_from_json (const char *json, GError **error)
{
  g_autoptr (JsonParser) parser = json_parser_new ();
  g_autoptr (KiltRunScaling) s = kilt_run_scaling_new ();
  g_autoptr (GError) local = NULL;
  JsonNode *root, *n;
  JsonObject *o;
  double v;

  if (json == NULL || !kilt_json_check_text (json, -1, &local)
      || !json_parser_load_from_data (parser, json, -1, &local))
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_INVALID,
                   "the run's device record is not JSON: %s",
                   local ? local->message : "it is missing");
      return NULL;
    }
  root = json_parser_get_root (parser);
  if (root == NULL || !JSON_NODE_HOLDS_OBJECT (root))
    return bad (error, "not an object"), NULL;
  o = json_node_get_object (root);
  n = json_object_get_member (o, "asked");
  if (n && JSON_NODE_HOLDS_ARRAY (n))
    for (guint i = 0; i < MIN (json_array_get_length (json_node_get_array (n)), KILT_MAX_DEVICES);
         i++)
      {
        JsonNode *e = json_array_get_element (json_node_get_array (n), i);
        if (JSON_NODE_HOLDS_VALUE (e) && json_node_get_value_type (e) == G_TYPE_STRING)
          g_ptr_array_add (s->asked, g_strdup (json_node_get_string (e)));
      }
  n = json_object_get_member (o, "devices");
  if (n == NULL || !JSON_NODE_HOLDS_ARRAY (n))
    return bad (error, "member \"devices\" (an array) is missing"), NULL;
  for (guint i = 0; i < MIN (json_array_get_length (json_node_get_array (n)), KILT_MAX_DEVICES);
       i++)
    {
      JsonNode *e = json_array_get_element (json_node_get_array (n), i);
      JsonObject *d = JSON_NODE_HOLDS_OBJECT (e) ? json_node_get_object (e) : NULL;
      KiltRunDevice dev = { 0 };
      JsonNode *nn = d ? json_object_get_member (d, "name") : NULL;
      const char *name
          = nn && JSON_NODE_HOLDS_VALUE (nn) && json_node_get_value_type (nn) == G_TYPE_STRING
                ? json_node_get_string (nn)
                : NULL;
      if (name == NULL)
        return bad (error, "a device has no name"), NULL;
      v = kilt_json_get_number (d, "share");
      dev.name = g_strdup (name);
      dev.share = isfinite (v) && v >= 0 && v <= G_MAXUINT ? (guint)v : 0;
      dev.samples_per_second = finite_or (kilt_json_get_number (d, "samples_per_second"), 0);
      dev.busy_percent = kilt_json_get_number (d, "busy_percent");
      v = kilt_json_get_number (d, "peak_bytes");
      dev.peak_bytes = isfinite (v) && v >= 0 ? (gint64)v : -1;
      g_array_append_val (s->devices, dev);
    }
  s->step_ms = MAX (finite_or (kilt_json_get_number (o, "step_ms"), 0), 0);
  s->alone_ms = MAX (finite_or (kilt_json_get_number (o, "alone_ms"), 0), 0);
  v = kilt_json_get_number (o, "ranks");
  s->ranks = isfinite (v) && v >= 1 && v <= G_MAXINT ? (guint)v : 1;
  s->reduce_ms = MAX (finite_or (kilt_json_get_number (o, "reduce_ms"), 0), 0);
  s->samples_per_second = MAX (finite_or (kilt_json_get_number (o, "samples_per_second"), 0), 0);
  return g_steal_pointer (&s);
}

double
kilt_run_scaling_speedup (const KiltRunScaling *s)
{
  return s->step_ms > 0 && s->alone_ms > 0 ? s->alone_ms / s->step_ms : NAN;
}

double
kilt_run_scaling_efficiency (const KiltRunScaling *s)
{
  double sum = 0, best = 0, sp = kilt_run_scaling_speedup (s);

  for (guint i = 0; i < s->devices->len; i++)
    {
      double v = g_array_index (s->devices, KiltRunDevice, i).samples_per_second;
      sum += v;
      best = MAX (best, v);
    }
  return s->devices->len > 1 && best > 0 && isfinite (sp) ? sp / (sum / best) : NAN;
}

char *
kilt_run_scaling_describe (const KiltRunScaling *s)
{
  GString *str = g_string_new (NULL);
  double sp = kilt_run_scaling_speedup (s), eff = kilt_run_scaling_efficiency (s);

  if (s->ranks > 1)
    g_string_append_printf (str, "MPI job of %u ranks; ", s->ranks);
  if (s->devices->len == 1 && s->asked->len > 1)
    {
      const KiltRunDevice *d = &g_array_index (s->devices, KiltRunDevice, 0);
      g_string_append_printf (str, "trained on %s alone of %u devices", d->name, s->asked->len);
      if (isfinite (sp))
        g_string_append_printf (str, ": a step took %.2f ms there, %.2f ms on all of them",
                                s->alone_ms, s->step_ms);
    }
  else if (s->devices->len > 1)
    {
      g_string_append_printf (str, "data-parallel on %u devices", s->devices->len);
      if (isfinite (sp))
        g_string_append_printf (str,
                                ": a step took %.2f ms, %.2f ms on the fastest alone "
                                "(%.2fx; scaling efficiency %.0f%%)",
                                s->step_ms, s->alone_ms, sp, 100 * eff);
    }
  else
    g_string_append (str, "one device per rank");
  if (s->reduce_ms > 0)
    g_string_append_printf (str, "; summing gradients %.2f ms a step", s->reduce_ms);
  return g_string_free (str, FALSE);
}
