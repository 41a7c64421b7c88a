/* One device's part of a data-parallel run, and what replicas do together. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#define G_LOG_DOMAIN "kilt-dist"

#include "config.h"

#include "kilt-replica.h"
#include "kilt-error.h"
#include "kilt-model-json.h"

void
kilt_replica_clear (KiltReplica *r, gboolean owns_model)
{
  if (r->ctx)
    clFinish (r->ctx->queue);
  g_clear_pointer (&r->eval_metrics, kilt_buffer_free);
  g_clear_pointer (&r->eval_dout, kilt_buffer_free);
  g_clear_pointer (&r->tta_out, kilt_buffer_free);
  g_clear_pointer (&r->metrics, kilt_buffer_free);
  g_clear_pointer (&r->targets, kilt_buffer_free);
  g_clear_pointer (&r->test_batcher, kilt_batcher_free);
  g_clear_pointer (&r->eval_batcher, kilt_batcher_free);
  g_clear_pointer (&r->train_batcher, kilt_batcher_free);
  g_clear_pointer (&r->opt, kilt_optimizer_free);
  g_clear_pointer (&r->exec, kilt_executor_free);
  if (owns_model)
    g_clear_pointer (&r->model, kilt_model_free);
  r->model = NULL;
}

KiltModel *
kilt_replica_copy_model (KiltModel *model, GError **error)
{
  g_autofree char *json = kilt_model_to_json (model);
  KiltModel *copy = kilt_model_load_json_data (json, -1, model->name, error);

  if (copy == NULL)
    return NULL;
  if (kilt_model_hash (copy) != kilt_model_hash (model) || copy->n_params != model->n_params
      || copy->n_state != model->n_state)
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_MODEL,
                   "model %s: its copy for another device came out different (%zu parameters "
                   "instead of %zu); train it on one device",
                   model->name, copy->n_params, model->n_params);
      kilt_model_free (copy);
      return NULL;
    }
  copy->loss = model->loss;
  return copy;
}

gboolean
kilt_replicas_sync (KiltReplica *rep, guint n, guint src, KiltComm *comm, GError **error)
{
  KiltModel *m = rep[0].model;
  gsize n_opt = kilt_optimizer_state_floats (kilt_optimizer_get_config (rep[0].opt), m->n_grads);
  g_autofree float *params = g_new (float, m->n_params + 1);
  g_autofree float *opt = g_new (float, n_opt + 1);
  g_autofree float *state = g_new (float, m->n_state + 1);
  g_autofree double *mean = g_new0 (double, m->n_state + 2);

  if (!kilt_executor_download (rep[src].exec, params, NULL, error)
      || !kilt_optimizer_read_state (rep[src].opt, opt, error))
    return FALSE;
  if (comm
      && (!kilt_comm_broadcast (comm, params, m->n_params * sizeof (float), error)
          || !kilt_comm_broadcast (comm, opt, n_opt * sizeof (float), error)))
    return FALSE;
  for (guint i = 0; i < n; i++)
    {
      if (!kilt_executor_download (rep[i].exec, NULL, state, error))
        return FALSE;
      for (gsize j = 0; j < m->n_state; j++)
        mean[j] += state[j];
    }
  /* The last double counts the replicas, over every rank. */
  mean[m->n_state] = n;
  if (comm && !kilt_comm_sum_doubles (comm, mean, m->n_state + 1, error))
    return FALSE;
  for (gsize j = 0; j < m->n_state; j++)
    state[j] = (float)(mean[j] / mean[m->n_state]);
  for (guint i = 0; i < n; i++)
    {
      gboolean source = i == src && (comm == NULL || kilt_comm_rank (comm) == 0);
      if (!kilt_executor_upload (rep[i].exec, params, state, error)
          || (!source && !kilt_optimizer_write_state (rep[i].opt, opt, error)))
        return FALSE;
    }
  return TRUE;
}

char *
kilt_replicas_names (const KiltReplica *rep, guint n)
{
  GString *s = g_string_new (NULL);

  for (guint i = 0; i < n; i++)
    g_string_append_printf (s, "%s%s", i ? " + " : "", rep[i].ctx->info->name);
  return g_string_free (s, FALSE);
}
