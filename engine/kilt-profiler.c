/* Device time per layer and phase from OpenCL profiling events, and device busy time. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#define G_LOG_DOMAIN "kilt-profiler"

#include "kilt-profiler.h"
#include "kilt-error.h"
#include "kilt-exec.h"
#include "kilt-trainer.h"

#include <math.h>
#include <string.h>

struct _KiltProfiler
{
  KiltModel *model; /* borrowed */
  double *ns;       /* n_nodes x 3 phases: summed device nanoseconds */
  guint steps;      /* profiled steps in the sums */
  double busy_ns;   /* summed durations */
  guint64 first_start, last_end;
};

KiltProfiler *
kilt_profiler_new (KiltModel *model)
{
  KiltProfiler *p = g_new0 (KiltProfiler, 1);

  p->model = model;
  p->ns = g_new0 (double, 3 * model->nodes->len);
  return p;
}

void
kilt_profiler_free (KiltProfiler *prof)
{
  if (prof == NULL)
    return;
  g_free (prof->ns);
  g_free (prof);
}

void
kilt_profiler_begin_epoch (KiltProfiler *prof)
{
  memset (prof->ns, 0, sizeof (double) * 3 * prof->model->nodes->len);
  prof->steps = 0;
  prof->busy_ns = 0;
  prof->first_start = prof->last_end = 0;
}

gboolean
kilt_profiler_collect (KiltProfiler *prof, KiltContext *ctx, GError **error)
{
  gboolean ok = TRUE;

  for (guint i = 0; i < ctx->prof_events->len; i++)
    {
      KiltProfEvent *pe = &g_array_index (ctx->prof_events, KiltProfEvent, i);
      cl_ulong start = 0, end = 0;
      cl_int err = clGetEventProfilingInfo (pe->event, CL_PROFILING_COMMAND_START, sizeof start,
                                            &start, NULL);
      if (err == CL_SUCCESS)
        err = clGetEventProfilingInfo (pe->event, CL_PROFILING_COMMAND_END, sizeof end, &end, NULL);
      clReleaseEvent (pe->event);
      if (pe->begin)
        {
          /* The in-order queue ran the marker once the work before it was done: from then on
           * the device worked on this call's first kernel. */
          cl_ulong begin = 0;
          if (err == CL_SUCCESS
              && clGetEventProfilingInfo (pe->begin, CL_PROFILING_COMMAND_END, sizeof begin, &begin,
                                          NULL)
                     == CL_SUCCESS
              && begin > 0 && begin < start)
            start = begin;
          clReleaseEvent (pe->begin);
        }
      if (err != CL_SUCCESS)
        {
          if (ok)
            kilt_set_cl_error (error, err, ctx->info->name, "reading profiling times");
          ok = FALSE;
          continue;
        }
      if (pe->tag >= 0 && (guint)pe->tag < 3 * prof->model->nodes->len)
        prof->ns[pe->tag] += (double)(end - start);
      prof->busy_ns += (double)(end - start);
      if (prof->first_start == 0 || start < prof->first_start)
        prof->first_start = start;
      prof->last_end = MAX (prof->last_end, end);
    }
  g_array_set_size (ctx->prof_events, 0);
  return ok;
}

void
kilt_profiler_add_step (KiltProfiler *prof)
{
  prof->steps++;
}

GArray *
kilt_profiler_timings (KiltProfiler *prof)
{
  GArray *out = g_array_new (FALSE, TRUE, sizeof (KiltLayerTiming));
  double steps = MAX (prof->steps, 1);

  g_array_set_clear_func (out, (GDestroyNotify)kilt_layer_timing_clear);
  for (guint i = 0; i < prof->model->nodes->len; i++)
    {
      KiltNode *n = g_ptr_array_index (prof->model->nodes, i);
      KiltLayerTiming t = { 0 };
      /* The input row carries the batch gather (forward) and the optimizer (update). */
      t.layer = g_strdup (n->name);
      t.type = g_strdup (i == 0 ? "data + optimizer" : n->klass->name);
      t.forward_ms = prof->ns[3 * i + KILT_PHASE_FORWARD] / steps / 1e6;
      t.backward_ms = prof->ns[3 * i + KILT_PHASE_BACKWARD] / steps / 1e6;
      t.update_ms = prof->ns[3 * i + KILT_PHASE_UPDATE] / steps / 1e6;
      t.algo = g_strdup (n->algo_name);
      memcpy (t.algo_ms, n->algo_ms, sizeof t.algo_ms);
      g_array_append_val (out, t);
    }
  return out;
}

double
kilt_profiler_busy_percent (KiltProfiler *prof)
{
  if (prof->last_end <= prof->first_start)
    return NAN;
  return 100.0 * prof->busy_ns / (double)(prof->last_end - prof->first_start);
}
