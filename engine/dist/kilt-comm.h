/* The processes of one training job: this process alone, or the ranks of an MPI job. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

typedef struct _KiltComm KiltComm;
typedef struct _KiltCommRequest KiltCommRequest;

/* Whether this Kilt was built with MPI (the `mpi` build option). */
gboolean kilt_comm_mpi_available (void);

/* Joins the MPI job this process was started in (mpirun), or fails naming why: built without
 * MPI, or not started by mpirun. @timeout_s bounds every wait for the other ranks (a rank that
 * died or a network fault ends the job with an error instead of a hang). */
KiltComm *kilt_comm_mpi_new (double timeout_s, GError **error);
/* Leaves the job (MPI_Finalize once every rank has arrived; after an error, MPI_Abort so that
 * no other rank waits for this one). */
void kilt_comm_free (KiltComm *comm, gboolean failed);

int kilt_comm_rank (const KiltComm *comm);
int kilt_comm_size (const KiltComm *comm);
/* The rank's host name, for messages ("rank 1 on gpu-07"). */
const char *kilt_comm_host (const KiltComm *comm);
/* The rank among the ranks of its host (which local device it takes by default). */
int kilt_comm_local_rank (const KiltComm *comm);

/* Starts an in-place sum of @n floats over every rank; the request completes in
 * kilt_comm_wait (). @data must stay untouched until then. */
KiltCommRequest *kilt_comm_iallreduce (KiltComm *comm, float *data, gsize n, GError **error);
/* Waits (at most the comm's timeout) and frees @req. */
gboolean kilt_comm_wait (KiltComm *comm, KiltCommRequest *req, GError **error);
/* Blocking, bounded the same way: sums of doubles, rank 0's bytes to every rank, and a
 * boolean AND (every rank says TRUE). */
gboolean kilt_comm_sum_doubles (KiltComm *comm, double *data, gsize n, GError **error);
gboolean kilt_comm_broadcast (KiltComm *comm, void *data, gsize bytes, GError **error);
gboolean kilt_comm_all_ok (KiltComm *comm, gboolean ok, gboolean *all, GError **error);

G_END_DECLS
