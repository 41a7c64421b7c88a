/* Summing the replicas' gradients: host-staged, by buckets, overlapped with the backward pass. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#define G_LOG_DOMAIN "kilt-dist"

#include "config.h"

#include "kilt-reduce.h"
#include "kilt-error.h"

typedef struct _KiltGradReducer KiltGradReducer;

typedef struct
{
  KiltGradReducer *owner;
  KiltExecutor *exec;
  cl_command_queue xfer; /* its own queue, so transfers overlap the compute queue */
  cl_mem host_mem;       /* pinned: the replica's gradients on the host */
  float *host;
  cl_event *read_ev;  /* per bucket, this step */
  cl_event *write_ev; /* per bucket, from the last finish (kept until the sum is rewritten) */
} Replica;

struct _KiltGradReducer
{
  guint n;
  Replica *rep;
  KiltComm *comm;
  gsize n_params, bucket;
  guint n_buckets;
  guint *bucket_node; /* the earliest node writing into each bucket: ready after its backward */
  double *weights;
  cl_mem sum_mem; /* pinned on the first replica's context */
  float *sum;
  KiltCommRequest **req;
  GError *hook_error;
  double last_ms;
};

static gboolean
cl_ok (Replica *rp, cl_int err, GError **error, const char *what)
{
  if (err == CL_SUCCESS)
    return TRUE;
  kilt_set_cl_error (error, err, rp->exec->ex.ctx->info->name, "%s", what);
  return FALSE;
}

void
kilt_grad_reducer_sum (float *out, const float *const *in, const double *w, guint n_in, gsize n)
{
  gboolean first = TRUE;

  for (guint i = 0; i < n_in; i++)
    {
      float wi = (float)w[i];
      const float *x = in[i];
      if (w[i] == 0)
        continue;
      if (first)
        for (gsize j = 0; j < n; j++)
          out[j] = wi * x[j];
      else
        for (gsize j = 0; j < n; j++)
          out[j] += wi * x[j];
      first = FALSE;
    }
  if (first)
    memset (out, 0, n * sizeof (float));
}

/* The backward hook: every bucket whose earliest node is @node is complete once @node's
 * backward pass runs; a marker on the compute queue lets the transfer queue read it then. */
static void
on_backward (KiltExecutor *exec, guint node, gpointer data)
{
  Replica *rp = data;
  KiltGradReducer *r = rp->owner;
  cl_command_queue q = exec->ex.ctx->queue;

  if (r->weights[rp - r->rep] == 0 || r->hook_error)
    return;
  for (guint k = 0; k < r->n_buckets; k++)
    {
      gsize off = k * r->bucket, len = MIN (r->bucket, r->n_params - off);
      cl_event marker = NULL;
      cl_int err;
      if (r->bucket_node[k] != node)
        continue;
      err = clEnqueueMarkerWithWaitList (q, 0, NULL, &marker);
      if (err == CL_SUCCESS)
        err = clFlush (q);
      if (err == CL_SUCCESS)
        err = clEnqueueReadBuffer (rp->xfer, exec->grads->mem, CL_FALSE, off * sizeof (float),
                                   len * sizeof (float), rp->host + off, 1, &marker,
                                   &rp->read_ev[k]);
      if (marker)
        clReleaseEvent (marker);
      if (err == CL_SUCCESS)
        err = clFlush (rp->xfer);
      if (!cl_ok (rp, err, &r->hook_error, "sending gradients to the host"))
        return;
    }
}

KiltGradReducer *
kilt_grad_reducer_new (KiltExecutor *const *execs, guint n, KiltComm *comm, gsize bucket_floats,
                       GError **error)
{
  KiltGradReducer *r = g_new0 (KiltGradReducer, 1);
  KiltModel *model = execs[0]->model;
  cl_int err = CL_SUCCESS;

  g_return_val_if_fail (n > 0 && bucket_floats > 0, NULL);
  r->n = n;
  r->comm = comm;
  /* The gradient buffer holds the trainable (not frozen) parameters alone. */
  r->n_params = model->n_grads;
  r->bucket = bucket_floats;
  r->n_buckets = (guint)((r->n_params + bucket_floats - 1) / bucket_floats);
  r->bucket_node = g_new (guint, r->n_buckets + 1);
  r->weights = g_new0 (double, n);
  r->req = g_new0 (KiltCommRequest *, r->n_buckets + 1);
  for (guint k = 0; k < r->n_buckets; k++)
    r->bucket_node[k] = G_MAXUINT;
  /* Trainable nodes lay out their gradients in order, each in one range. */
  for (guint i = 0; i < model->nodes->len; i++)
    {
      KiltNode *node = g_ptr_array_index (model->nodes, i);
      if (node->n_params == 0 || node->frozen)
        continue;
      for (gsize k = node->grad_offset / bucket_floats;
           k <= (node->grad_offset + node->n_params - 1) / bucket_floats; k++)
        r->bucket_node[k] = MIN (r->bucket_node[k], i);
    }
  r->rep = g_new0 (Replica, n);
  for (guint i = 0; i < n; i++)
    {
      Replica *rp = &r->rep[i];
      KiltContext *ctx = execs[i]->ex.ctx;
      g_return_val_if_fail (execs[i]->grads != NULL && execs[i]->model->n_grads == r->n_params,
                            NULL);
      rp->owner = r;
      rp->exec = execs[i];
      rp->read_ev = g_new0 (cl_event, r->n_buckets + 1);
      rp->write_ev = g_new0 (cl_event, r->n_buckets + 1);
      rp->xfer = clCreateCommandQueue (ctx->context, ctx->info->device, 0, &err);
      if (!cl_ok (rp, err, error, "creating the gradient transfer queue"))
        goto fail;
      rp->host_mem = clCreateBuffer (ctx->context, CL_MEM_ALLOC_HOST_PTR | CL_MEM_READ_WRITE,
                                     MAX (r->n_params, 1) * sizeof (float), NULL, &err);
      if (!cl_ok (rp, err, error, "allocating pinned host memory for the gradients"))
        goto fail;
      rp->host = clEnqueueMapBuffer (rp->xfer, rp->host_mem, CL_TRUE, CL_MAP_READ | CL_MAP_WRITE, 0,
                                     MAX (r->n_params, 1) * sizeof (float), 0, NULL, NULL, &err);
      if (!cl_ok (rp, err, error, "mapping pinned host memory for the gradients"))
        goto fail;
      if (i == 0)
        {
          r->sum_mem = clCreateBuffer (ctx->context, CL_MEM_ALLOC_HOST_PTR | CL_MEM_READ_WRITE,
                                       MAX (r->n_params, 1) * sizeof (float), NULL, &err);
          if (!cl_ok (rp, err, error, "allocating pinned host memory for the gradient sum"))
            goto fail;
          r->sum = clEnqueueMapBuffer (rp->xfer, r->sum_mem, CL_TRUE, CL_MAP_READ | CL_MAP_WRITE, 0,
                                       MAX (r->n_params, 1) * sizeof (float), 0, NULL, NULL, &err);
          if (!cl_ok (rp, err, error, "mapping pinned host memory for the gradient sum"))
            goto fail;
        }
      execs[i]->backward_hook = on_backward;
      execs[i]->backward_hook_data = rp;
    }
  return r;

fail:
  kilt_grad_reducer_free (r);
  return NULL;
}

static void
release_events (cl_event *ev, guint n)
{
  for (guint k = 0; k < n; k++)
    if (ev[k])
      {
        clReleaseEvent (ev[k]);
        ev[k] = NULL;
      }
}

void
kilt_grad_reducer_free (KiltGradReducer *r)
{
  if (r == NULL)
    return;
  for (guint i = 0; i < r->n && r->rep; i++)
    {
      Replica *rp = &r->rep[i];
      if (rp->xfer)
        clFinish (rp->xfer);
      if (rp->read_ev)
        release_events (rp->read_ev, r->n_buckets);
      if (rp->write_ev)
        release_events (rp->write_ev, r->n_buckets);
      if (rp->exec && rp->exec->backward_hook_data == rp)
        {
          rp->exec->backward_hook = NULL;
          rp->exec->backward_hook_data = NULL;
        }
    }
  for (guint i = 0; i < r->n && r->rep; i++)
    {
      Replica *rp = &r->rep[i];
      if (i == 0 && r->sum)
        clEnqueueUnmapMemObject (rp->xfer, r->sum_mem, r->sum, 0, NULL, NULL);
      if (r->sum_mem && i == 0)
        clReleaseMemObject (r->sum_mem);
      if (rp->host)
        clEnqueueUnmapMemObject (rp->xfer, rp->host_mem, rp->host, 0, NULL, NULL);
      if (rp->xfer)
        clFinish (rp->xfer);
      if (rp->host_mem)
        clReleaseMemObject (rp->host_mem);
      if (rp->xfer)
        clReleaseCommandQueue (rp->xfer);
      g_free (rp->read_ev);
      g_free (rp->write_ev);
    }
  g_clear_error (&r->hook_error);
  g_free (r->rep);
  g_free (r->bucket_node);
  g_free (r->weights);
  g_free (r->req);
  g_free (r);
}

gboolean
kilt_grad_reducer_begin (KiltGradReducer *r, const double *weights, GError **error)
{
  memcpy (r->weights, weights, r->n * sizeof (double));
  for (guint i = 0; i < r->n; i++)
    release_events (r->rep[i].read_ev, r->n_buckets);
  if (r->hook_error)
    {
      g_propagate_error (error, r->hook_error);
      r->hook_error = NULL;
      return FALSE;
    }
  return TRUE;
}

/* Bucket @k of the sum to every replica, after the previous step's writes of it are done. */
static gboolean
send_bucket (KiltGradReducer *r, guint k, GError **error)
{
  gsize off = k * r->bucket, len = MIN (r->bucket, r->n_params - off);

  for (guint i = 0; i < r->n; i++)
    {
      Replica *rp = &r->rep[i];
      cl_int err
          = clEnqueueWriteBuffer (rp->xfer, rp->exec->grads->mem, CL_FALSE, off * sizeof (float),
                                  len * sizeof (float), r->sum + off, 0, NULL, &rp->write_ev[k]);
      if (!cl_ok (rp, err, error, "sending the summed gradients to the device"))
        return FALSE;
    }
  return TRUE;
}

/* The previous finish's writes of bucket @k read the sum: it is rewritten only after them. */
static gboolean
wait_old_writes (KiltGradReducer *r, guint k, GError **error)
{
  for (guint i = 0; i < r->n; i++)
    {
      Replica *rp = &r->rep[i];
      if (rp->write_ev[k])
        {
          cl_int err = clWaitForEvents (1, &rp->write_ev[k]);
          clReleaseEvent (rp->write_ev[k]);
          rp->write_ev[k] = NULL;
          if (!cl_ok (rp, err, error, "sending the summed gradients to the device"))
            return FALSE;
        }
    }
  return TRUE;
}

gboolean
kilt_grad_reducer_finish (KiltGradReducer *r, GError **error)
{
  gint64 t0 = g_get_monotonic_time (), waited = 0;
  const float **in = g_newa (const float *, r->n);
  gboolean ok = FALSE;

  if (r->hook_error)
    {
      g_propagate_error (error, r->hook_error);
      r->hook_error = NULL;
      return FALSE;
    }
  /* The last layers' buckets were sent first: sum them in that order. */
  for (guint kk = r->n_buckets; kk-- > 0;)
    {
      gsize off = kk * r->bucket, len = MIN (r->bucket, r->n_params - off);
      for (guint i = 0; i < r->n; i++)
        {
          Replica *rp = &r->rep[i];
          in[i] = rp->host + off;
          if (r->weights[i] == 0)
            continue;
          if (rp->read_ev[kk] == NULL)
            {
              g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_INVALID,
                           "the gradients of bucket %u never left %s (its backward pass did not "
                           "reach layer %u)",
                           kk, rp->exec->ex.ctx->info->name, r->bucket_node[kk]);
              goto out;
            }
          gint64 w0 = g_get_monotonic_time ();
          cl_int err = clWaitForEvents (1, &rp->read_ev[kk]);
          waited += g_get_monotonic_time () - w0;
          clReleaseEvent (rp->read_ev[kk]);
          rp->read_ev[kk] = NULL;
          if (!cl_ok (rp, err, error, "sending gradients to the host"))
            goto out;
        }
      if (!wait_old_writes (r, kk, error))
        goto out;
      kilt_grad_reducer_sum (r->sum + off, in, r->weights, r->n, len);
      if (r->comm)
        {
          r->req[kk] = kilt_comm_iallreduce (r->comm, r->sum + off, len, error);
          if (r->req[kk] == NULL)
            goto out;
        }
      else if (!send_bucket (r, kk, error))
        goto out;
    }
  if (r->comm)
    for (guint kk = r->n_buckets; kk-- > 0;)
      {
        KiltCommRequest *req = r->req[kk];
        r->req[kk] = NULL;
        if (!kilt_comm_wait (r->comm, req, error) || !send_bucket (r, kk, error))
          goto out;
      }
  for (guint i = 0; i < r->n; i++)
    {
      Replica *rp = &r->rep[i];
      cl_int err = clFlush (rp->xfer);
      if (err == CL_SUCCESS && r->n_buckets > 0)
        err = clEnqueueBarrierWithWaitList (rp->exec->ex.ctx->queue, r->n_buckets, rp->write_ev,
                                            NULL);
      if (!cl_ok (rp, err, error, "waiting for the summed gradients"))
        goto out;
    }
  ok = TRUE;
out:
  /* A failed step leaves no request behind: wait for those started (their data is
   * discarded) so no rank's MPI call outlives the buffers. */
  for (guint kk = 0; kk < r->n_buckets; kk++)
    if (r->req[kk])
      {
        kilt_comm_wait (r->comm, r->req[kk], NULL);
        r->req[kk] = NULL;
      }
  r->last_ms = (g_get_monotonic_time () - t0 - waited) / 1e3;
  return ok;
}

double
kilt_grad_reducer_last_ms (KiltGradReducer *r)
{
  return r->last_ms;
}

guint
kilt_grad_reducer_n_buckets (KiltGradReducer *r)
{
  return r->n_buckets;
}
