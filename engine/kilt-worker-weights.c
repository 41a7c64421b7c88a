/* A model's starting weights on their way to a worker: a checkpoint file beside the job. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#define G_LOG_DOMAIN "kilt-worker"

#include "kilt-checkpoint.h"
#include "kilt-error.h"
#include "kilt-worker-protocol.h"

#include <glib/gstdio.h>
#include <unistd.h>

gboolean
kilt_worker_job_attach_weights (KiltWorkerJob *job, KiltModel *model, GError **error)
{
  const float *params, *state;
  KiltCheckpoint ck = { 0 };
  g_autofree char *path = NULL;
  int fd;

  if (!kilt_model_get_weights (model, &params, &state))
    return TRUE;
  /* The checkpoint format checks sizes, values and a CRC; no optimizer state travels. */
  fd = g_file_open_tmp ("kilt-weights-XXXXXX.ckpt", &path, error);
  if (fd < 0)
    {
      g_prefix_error (error, "Cannot hand the model's starting weights to the worker: ");
      return FALSE;
    }
  close (fd);
  ck.n_params = model->n_params;
  ck.n_state = model->n_state;
  ck.model_hash = kilt_model_hash (model);
  ck.params = (float *)params;
  ck.state = (float *)state;
  if (!kilt_checkpoint_save (&ck, path, error))
    {
      g_unlink (path);
      g_prefix_error (error, "Cannot hand the model's starting weights to the worker: ");
      return FALSE;
    }
  g_free (job->weights_file);
  g_free (job->weights_note);
  job->weights_file = g_steal_pointer (&path);
  job->weights_note = g_strdup (model->weights_note);
  return TRUE;
}

gboolean
kilt_worker_job_load_weights (const KiltWorkerJob *job, KiltModel *model, GError **error)
{
  g_autoptr (KiltCheckpoint) ck = NULL;

  if (job->weights_file == NULL)
    return TRUE;
  ck = kilt_checkpoint_load (job->weights_file, error);
  g_unlink (job->weights_file);
  if (ck == NULL)
    {
      g_prefix_error (error, "the model's starting weights: ");
      return FALSE;
    }
  if (ck->model_hash != kilt_model_hash (model) || ck->n_params != model->n_params
      || ck->n_state != model->n_state)
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_MODEL,
                   "the model's starting weights (%" G_GUINT64_FORMAT
                   " parameters) do not belong to model %s (%zu parameters)",
                   ck->n_params, model->name, model->n_params);
      return FALSE;
    }
  kilt_model_set_weights (model, g_steal_pointer (&ck->params), g_steal_pointer (&ck->state),
                          job->weights_note ? job->weights_note : "the window's starting weights");
  return TRUE;
}
