/* LD_PRELOAD shim for ThreadSanitizer runs (bench/tsan.sh): tells TSan about the
 * synchronisation of GLib's GMutex, GCond, GAsyncQueue and GThreadPool. GLib implements them
 * on raw futexes in a library TSan did not instrument, so without this every hand-off through
 * them (a chunk pushed to the decoder pool, an event queued for the trainer's reader) reads
 * as a data race. Only the calls Kilt makes into GLib are seen; GLib's calls inside itself
 * are not, which is what the suppressions in tests/tsan.supp are for. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <glib.h>
#include <pthread.h>

void __tsan_acquire (void *addr);
void __tsan_release (void *addr);

/* The next definition of @name: GLib's. */
#define REAL(name)                                                                                 \
  static __typeof__ (&name) real_##name;                                                           \
  if (!real_##name)                                                                                \
  real_##name = (__typeof__ (&name))dlsym (RTLD_NEXT, #name)

void
g_mutex_lock (GMutex *m)
{
  REAL (g_mutex_lock);
  real_g_mutex_lock (m);
  __tsan_acquire (m);
}

gboolean
g_mutex_trylock (GMutex *m)
{
  REAL (g_mutex_trylock);
  gboolean ok = real_g_mutex_trylock (m);
  if (ok)
    __tsan_acquire (m);
  return ok;
}

void
g_mutex_unlock (GMutex *m)
{
  REAL (g_mutex_unlock);
  __tsan_release (m);
  real_g_mutex_unlock (m);
}

void
g_rec_mutex_lock (GRecMutex *m)
{
  REAL (g_rec_mutex_lock);
  real_g_rec_mutex_lock (m);
  __tsan_acquire (m);
}

void
g_rec_mutex_unlock (GRecMutex *m)
{
  REAL (g_rec_mutex_unlock);
  __tsan_release (m);
  real_g_rec_mutex_unlock (m);
}

void
g_cond_wait (GCond *c, GMutex *m)
{
  REAL (g_cond_wait);
  __tsan_release (m);
  real_g_cond_wait (c, m);
  __tsan_acquire (m);
  __tsan_acquire (c);
}

gboolean
g_cond_wait_until (GCond *c, GMutex *m, gint64 end)
{
  REAL (g_cond_wait_until);
  gboolean ok;
  __tsan_release (m);
  ok = real_g_cond_wait_until (c, m, end);
  __tsan_acquire (m);
  __tsan_acquire (c);
  return ok;
}

void
g_cond_signal (GCond *c)
{
  REAL (g_cond_signal);
  __tsan_release (c);
  real_g_cond_signal (c);
}

void
g_cond_broadcast (GCond *c)
{
  REAL (g_cond_broadcast);
  __tsan_release (c);
  real_g_cond_broadcast (c);
}

void
g_async_queue_push (GAsyncQueue *q, gpointer data)
{
  REAL (g_async_queue_push);
  __tsan_release (q);
  real_g_async_queue_push (q, data);
}

gpointer
g_async_queue_pop (GAsyncQueue *q)
{
  REAL (g_async_queue_pop);
  gpointer d = real_g_async_queue_pop (q);
  __tsan_acquire (q);
  return d;
}

gpointer
g_async_queue_try_pop (GAsyncQueue *q)
{
  REAL (g_async_queue_try_pop);
  gpointer d = real_g_async_queue_try_pop (q);
  __tsan_acquire (q);
  return d;
}

gpointer
g_async_queue_timeout_pop (GAsyncQueue *q, guint64 timeout)
{
  REAL (g_async_queue_timeout_pop);
  gpointer d = real_g_async_queue_timeout_pop (q, timeout);
  __tsan_acquire (q);
  return d;
}

/* Thread pools: the pool's user_data stands for the pool. A push releases it; the task
 * function, called through a trampoline, acquires it before and releases it after; freeing
 * the pool with wait acquires it. */
#define MAX_POOLS 64
static struct
{
  gpointer user_data;
  GFunc func;
} pools[MAX_POOLS];
static pthread_mutex_t pools_lock = PTHREAD_MUTEX_INITIALIZER;

static GFunc
pool_func (gpointer user_data)
{
  GFunc f = NULL;
  pthread_mutex_lock (&pools_lock);
  for (int i = 0; i < MAX_POOLS && !f; i++)
    if (pools[i].func && pools[i].user_data == user_data)
      f = pools[i].func;
  pthread_mutex_unlock (&pools_lock);
  return f;
}

static void
trampoline (gpointer data, gpointer user_data)
{
  GFunc f = pool_func (user_data);
  __tsan_acquire (user_data);
  f (data, user_data);
  __tsan_release (user_data);
}

GThreadPool *
g_thread_pool_new (GFunc func, gpointer user_data, gint max, gboolean exclusive, GError **error)
{
  REAL (g_thread_pool_new);
  int slot = -1;
  pthread_mutex_lock (&pools_lock);
  for (int i = 0; i < MAX_POOLS && slot < 0; i++)
    if (pools[i].func == NULL || pools[i].user_data == user_data)
      slot = i;
  if (slot >= 0)
    pools[slot].user_data = user_data, pools[slot].func = func;
  pthread_mutex_unlock (&pools_lock);
  return real_g_thread_pool_new (slot >= 0 ? trampoline : func, user_data, max, exclusive, error);
}

gboolean
g_thread_pool_push (GThreadPool *pool, gpointer data, GError **error)
{
  REAL (g_thread_pool_push);
  __tsan_release (pool->user_data);
  return real_g_thread_pool_push (pool, data, error);
}

void
g_thread_pool_free (GThreadPool *pool, gboolean immediate, gboolean wait)
{
  REAL (g_thread_pool_free);
  gpointer user_data = pool->user_data;
  real_g_thread_pool_free (pool, immediate, wait);
  if (wait)
    __tsan_acquire (user_data);
}
