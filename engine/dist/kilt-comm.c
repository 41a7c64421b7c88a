/* The processes of one training job: the ranks of an MPI job (Open MPI), when built with it. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#define G_LOG_DOMAIN "kilt-dist"

#include "config.h"

#include "kilt-comm.h"
#include "kilt-error.h"

#ifdef KILT_HAVE_MPI
#include <mpi.h>
#include <stdio.h>

struct _KiltComm
{
  MPI_Comm comm;
  int rank, size, local_rank;
  char host[MPI_MAX_PROCESSOR_NAME];
  double timeout_s;
  gboolean we_initialised;
};

struct _KiltCommRequest
{
  MPI_Request req;
};

gboolean
kilt_comm_mpi_available (void)
{
  return TRUE;
}

static gboolean
mpi_ok (KiltComm *c, int rc, GError **error, const char *what)
{
  char msg[MPI_MAX_ERROR_STRING];
  int len = 0;

  if (rc == MPI_SUCCESS)
    return TRUE;
  MPI_Error_string (rc, msg, &len);
  g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_PEER, "rank %d on %s: %s failed: %.*s",
               c->rank, c->host, what, len, msg);
  return FALSE;
}

KiltComm *
kilt_comm_mpi_new (double timeout_s, GError **error)
{
  KiltComm *c = g_new0 (KiltComm, 1);
  int initialised = 0, provided = 0, len = 0;
  MPI_Comm local;

  /* mpirun sets these for its processes; without them MPI_Init would quietly make a job of
   * one, which is not what --mpi asks for. */
  if (!g_getenv ("OMPI_COMM_WORLD_SIZE") && !g_getenv ("PMI_SIZE") && !g_getenv ("PMIX_RANK"))
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_INVALID,
                   "--mpi needs the job's processes to be started by mpirun (for example "
                   "`mpirun -np 2 kilt-cli train --mpi ...`)");
      g_free (c);
      return NULL;
    }
  MPI_Initialized (&initialised);
  if (!initialised)
    {
      MPI_Init_thread (NULL, NULL, MPI_THREAD_SERIALIZED, &provided);
      c->we_initialised = TRUE;
    }
  MPI_Comm_dup (MPI_COMM_WORLD, &c->comm);
  /* Errors come back as codes, so they can be reported with the rank and host. */
  MPI_Comm_set_errhandler (c->comm, MPI_ERRORS_RETURN);
  MPI_Comm_rank (c->comm, &c->rank);
  MPI_Comm_size (c->comm, &c->size);
  MPI_Get_processor_name (c->host, &len);
  MPI_Comm_split_type (c->comm, MPI_COMM_TYPE_SHARED, c->rank, MPI_INFO_NULL, &local);
  MPI_Comm_rank (local, &c->local_rank);
  MPI_Comm_free (&local);
  c->timeout_s = timeout_s > 0 ? timeout_s : 300;
  return c;
}

void
kilt_comm_free (KiltComm *comm, gboolean failed)
{
  if (comm == NULL)
    return;
  if (failed && comm->size > 1)
    {
      /* The other ranks may be waiting for this one's gradients: end the job now rather than
       * leave them to their timeout. */
      fflush (stdout);
      fflush (stderr);
      MPI_Abort (comm->comm, 1);
    }
  MPI_Comm_free (&comm->comm);
  if (comm->we_initialised)
    MPI_Finalize ();
  g_free (comm);
}

int
kilt_comm_rank (const KiltComm *comm)
{
  return comm->rank;
}

int
kilt_comm_size (const KiltComm *comm)
{
  return comm->size;
}

const char *
kilt_comm_host (const KiltComm *comm)
{
  return comm->host;
}

int
kilt_comm_local_rank (const KiltComm *comm)
{
  return comm->local_rank;
}

KiltCommRequest *
kilt_comm_iallreduce (KiltComm *comm, float *data, gsize n, GError **error)
{
  KiltCommRequest *r = g_new0 (KiltCommRequest, 1);

  if (!mpi_ok (comm,
               MPI_Iallreduce (MPI_IN_PLACE, data, (int)n, MPI_FLOAT, MPI_SUM, comm->comm, &r->req),
               error, "summing gradients across ranks"))
    {
      g_free (r);
      return NULL;
    }
  return r;
}

/* Polls @req until it completes or the timeout passes: MPI_Wait would block for ever on a
 * peer that hangs without dying. */
static gboolean
wait_bounded (KiltComm *comm, MPI_Request *req, const char *what, GError **error)
{
  gint64 deadline = g_get_monotonic_time () + (gint64)(comm->timeout_s * 1e6);
  guint spins = 0;

  for (;;)
    {
      int done = 0;
      if (!mpi_ok (comm, MPI_Test (req, &done, MPI_STATUS_IGNORE), error, what))
        return FALSE;
      if (done)
        return TRUE;
      if (g_get_monotonic_time () > deadline)
        {
          g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_PEER,
                       "rank %d on %s: %s: the other ranks did not answer within %.0f s (a rank "
                       "died, hangs, or the network failed)",
                       comm->rank, comm->host, what, comm->timeout_s);
          return FALSE;
        }
      /* Spin briefly (a gradient bucket lands in microseconds on one host), then sleep. */
      if (++spins > 1000)
        g_usleep (200);
    }
}

gboolean
kilt_comm_wait (KiltComm *comm, KiltCommRequest *req, GError **error)
{
  gboolean ok = wait_bounded (comm, &req->req, "summing gradients across ranks", error);

  g_free (req);
  return ok;
}

gboolean
kilt_comm_sum_doubles (KiltComm *comm, double *data, gsize n, GError **error)
{
  MPI_Request req;

  return mpi_ok (comm,
                 MPI_Iallreduce (MPI_IN_PLACE, data, (int)n, MPI_DOUBLE, MPI_SUM, comm->comm, &req),
                 error, "summing figures across ranks")
         && wait_bounded (comm, &req, "summing figures across ranks", error);
}

gboolean
kilt_comm_broadcast (KiltComm *comm, void *data, gsize bytes, GError **error)
{
  /* In pieces below INT_MAX bytes, as MPI counts are ints. */
  for (gsize off = 0; off < bytes; off += 1u << 30)
    {
      MPI_Request req;
      int n = (int)MIN (bytes - off, (gsize)1 << 30);
      if (!mpi_ok (comm, MPI_Ibcast ((char *)data + off, n, MPI_BYTE, 0, comm->comm, &req), error,
                   "sending rank 0's weights")
          || !wait_bounded (comm, &req, "sending rank 0's weights", error))
        return FALSE;
    }
  return TRUE;
}

gboolean
kilt_comm_all_ok (KiltComm *comm, gboolean ok, gboolean *all, GError **error)
{
  int mine = ok ? 1 : 0, every = 0;
  MPI_Request req;

  if (!mpi_ok (comm, MPI_Iallreduce (&mine, &every, 1, MPI_INT, MPI_MIN, comm->comm, &req), error,
               "agreeing across ranks")
      || !wait_bounded (comm, &req, "agreeing across ranks", error))
    return FALSE;
  *all = every == 1;
  return TRUE;
}

#else /* !KILT_HAVE_MPI */

struct _KiltComm
{
  int unused;
};

gboolean
kilt_comm_mpi_available (void)
{
  return FALSE;
}

static gboolean
no_mpi (GError **error)
{
  g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_INVALID,
               "this Kilt was built without MPI (install libopenmpi-dev and rebuild; the `mpi` "
               "build option)");
  return FALSE;
}

KiltComm *
kilt_comm_mpi_new (double timeout_s, GError **error)
{
  no_mpi (error);
  return NULL;
}
void
kilt_comm_free (KiltComm *comm, gboolean failed)
{
  g_free (comm);
}

int
kilt_comm_rank (const KiltComm *comm)
{
  return 0;
}

int
kilt_comm_size (const KiltComm *comm)
{
  return 1;
}

const char *
kilt_comm_host (const KiltComm *comm)
{
  return g_get_host_name ();
}

int
kilt_comm_local_rank (const KiltComm *comm)
{
  return 0;
}

KiltCommRequest *
kilt_comm_iallreduce (KiltComm *comm, float *data, gsize n, GError **error)
{
  no_mpi (error);
  return NULL;
}

gboolean
kilt_comm_wait (KiltComm *comm, KiltCommRequest *req, GError **error)
{
  return no_mpi (error);
}

gboolean
kilt_comm_sum_doubles (KiltComm *comm, double *data, gsize n, GError **error)
{
  return no_mpi (error);
}

gboolean
kilt_comm_broadcast (KiltComm *comm, void *data, gsize bytes, GError **error)
{
  return no_mpi (error);
}

gboolean
kilt_comm_all_ok (KiltComm *comm, gboolean ok, gboolean *all, GError **error)
{
  return no_mpi (error);
}

#endif
