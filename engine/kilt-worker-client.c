/* A training worker process driven from a main loop: spawn, commands, events, crash, watchdog. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#define G_LOG_DOMAIN "kilt-worker-client"

#include "config.h"

#include "kilt-worker-client.h"
#include "kilt-breadcrumb.h"
#include "kilt-context.h"
#include "kilt-error.h"

#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#define STDERR_TAIL_LINES   6
#define STARTUP_ALLOWANCE_S 600.0
#define KILL_GRACE_S        3

struct _KiltWorkerClient
{
  gatomicrefcount ref;
  KiltWorkerFunc func; /* NULL once freed: the worker is only drained */
  gpointer user_data;
  GSubprocess *proc;
  GOutputStream *in;
  GDataInputStream *out, *err;
  GQueue writes; /* char *: lines waiting to go, in order */
  gboolean writing, close_stdin;

  gboolean sequence;
  KiltWorkerTask task;
  char *db_path;
  guint batch;

  gboolean running; /* started, its end not yet delivered */
  gboolean hello;
  gboolean out_eof, err_eof, exited;
  char *protocol_error;
  char *crash_line; /* "crashed: SIGSEGV during ..." from the worker's handler */
  GQueue tail;      /* char *: the worker's last stderr lines */
  char *where;      /* from the last "alive" line */
  guint epoch;
  guint64 global_step;
  guint index, n;
  gint64 run_id;
  GArray *run_ids; /* gint64, per index of a sequence */

  guint watchdog_id;
  gint64 last_progress_us;
  double max_step_s;
  gboolean stepped, paused;
  double hung_for; /* > 0: the watchdog ended the worker after this many seconds */
};

static KiltWorkerClient *
client_ref (KiltWorkerClient *c)
{
  g_atomic_ref_count_inc (&c->ref);
  return c;
}

static void
client_unref (KiltWorkerClient *c)
{
  if (!g_atomic_ref_count_dec (&c->ref))
    return;
  g_clear_object (&c->proc);
  g_clear_object (&c->in);
  g_clear_object (&c->out);
  g_clear_object (&c->err);
  g_queue_clear_full (&c->writes, g_free);
  g_queue_clear_full (&c->tail, g_free);
  g_free (c->db_path);
  g_free (c->protocol_error);
  g_free (c->crash_line);
  g_free (c->where);
  g_array_unref (c->run_ids);
  g_free (c);
}

char *
kilt_worker_find_cli (GError **error)
{
  const char *env = g_getenv ("KILT_CLI");
  g_autofree char *self = g_file_read_link ("/proc/self/exe", NULL);
  char *path;

  if (env && *env)
    {
      if (g_file_test (env, G_FILE_TEST_IS_EXECUTABLE))
        return g_strdup (env);
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_WORKER,
                   "KILT_CLI names %s, which is not a program that can be run", env);
      return NULL;
    }
  if (self)
    {
      g_autofree char *dir = g_path_get_dirname (self);
      path = g_build_filename (dir, "kilt-cli", NULL);
      if (g_file_test (path, G_FILE_TEST_IS_EXECUTABLE))
        return path;
      g_free (path);
    }
  path = g_find_program_in_path ("kilt-cli");
  if (path)
    return path;
  g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_WORKER,
               "kilt-cli, which trains for the window, is neither next to this program nor on "
               "PATH (set KILT_CLI to its path)");
  return NULL;
}

double
kilt_worker_watchdog_floor (void)
{
  const char *env = g_getenv ("KILT_WORKER_WATCHDOG");
  double v = env ? g_ascii_strtod (env, NULL) : 0;

  return isfinite (v) && v > 0 ? v : 60;
}

KiltWorkerClient *
kilt_worker_client_new (KiltWorkerFunc func, gpointer user_data)
{
  KiltWorkerClient *c = g_new0 (KiltWorkerClient, 1);

  g_atomic_ref_count_init (&c->ref);
  c->func = func;
  c->user_data = user_data;
  c->n = 1;
  c->run_ids = g_array_new (FALSE, TRUE, sizeof (gint64));
  return c;
}

/* ---- commands out ---- */

static void write_next (KiltWorkerClient *c);

static void
on_written (GObject *source, GAsyncResult *res, gpointer data)
{
  KiltWorkerClient *c = data;
  g_autoptr (GError) error = NULL;

  c->writing = FALSE;
  /* A worker that is gone shows as its exit; a failed write says nothing more. */
  if (!g_output_stream_write_all_finish (G_OUTPUT_STREAM (source), res, NULL, &error))
    g_debug ("writing to the worker: %s", error->message);
  write_next (c);
  client_unref (c);
}

static void
write_next (KiltWorkerClient *c)
{
  char *line;

  if (c->writing || c->in == NULL)
    return;
  line = g_queue_pop_head (&c->writes);
  if (line == NULL)
    {
      if (c->close_stdin)
        {
          g_output_stream_close_async (c->in, G_PRIORITY_DEFAULT, NULL, NULL, NULL);
          g_clear_object (&c->in);
        }
      return;
    }
  c->writing = TRUE;
  /* The bytes must outlive the call: the stream keeps no copy. */
  g_object_set_data_full (G_OBJECT (c->in), "line", line, g_free);
  g_output_stream_write_all_async (c->in, line, strlen (line), G_PRIORITY_DEFAULT, NULL, on_written,
                                   client_ref (c));
}

static void
send_line (KiltWorkerClient *c, char *line)
{
  char *with_nl = g_strconcat (line, "\n", NULL);

  g_free (line);
  g_queue_push_tail (&c->writes, with_nl);
  write_next (c);
}

/* ---- test faults ---- */

/* The client whose worker gets faults a test arms here mid-run (one run at a time). */
static KiltWorkerClient *fault_target;

static void
forward_faults (void)
{
  g_autofree char *faults = NULL;

  if (fault_target == NULL || !(faults = kilt_fault_take ()))
    return;
  send_line (fault_target, g_strdup_printf ("{\"cmd\":\"fault\",\"faults\":\"%s\"}", faults));
}

static void
fault_target_release (KiltWorkerClient *c)
{
  if (fault_target == c)
    {
      fault_target = NULL;
      kilt_fault_set_notify (NULL);
    }
}

/* ---- the end ---- */

static void
deliver (KiltWorkerClient *c, KiltWorkerMessage *m)
{
  if (m->sequence_end || m->task_end
      || (m->event && m->event->type == KILT_EVENT_FINISHED && !c->sequence))
    {
      c->running = FALSE;
      fault_target_release (c);
    }
  if (c->func)
    c->func (m, c->user_data);
}

/* Where the worker was, as well as the window knows. */
static char *
last_known_place (KiltWorkerClient *c)
{
  const char *during = c->crash_line ? strstr (c->crash_line, " during ") : NULL;
  char step[64];

  if (during)
    return g_strdup (during + 1);
  if (c->where)
    return g_strdup_printf ("during %s", c->where);
  if (c->global_step == 0)
    return g_strdup ("before its first step");
  g_snprintf (step, sizeof step, "after step %" G_GUINT64_FORMAT " (epoch %u)", c->global_step,
              c->epoch);
  return g_strdup (step);
}

static char *
crash_reason (KiltWorkerClient *c)
{
  g_autofree char *place = last_known_place (c);
  int sig = 0;

  if (c->protocol_error)
    return g_strdup (c->protocol_error);
  if (c->proc && g_subprocess_get_if_signaled (c->proc))
    sig = g_subprocess_get_term_sig (c->proc);
  if (c->hung_for > 0)
    return g_strdup_printf ("hung: no progress for %.0f s %s; the worker was ended "
                            "(KILT_WORKER_WATCHDOG sets the limit's floor, in seconds)",
                            c->hung_for, place);
  if (sig == SIGKILL)
    return g_strdup_printf ("killed: SIGKILL %s (the out-of-memory killer, or another "
                            "program, ended the worker)",
                            place);
  if (sig && c->crash_line)
    return g_strdup (c->crash_line);
  if (sig)
    return kilt_breadcrumb_signal_name (sig)
               ? g_strdup_printf ("crashed: %s %s", kilt_breadcrumb_signal_name (sig), place)
               : g_strdup_printf ("crashed: signal %d %s", sig, place);
  return g_strdup_printf ("exited (status %d) %s before the run ended%s%s",
                          c->proc ? g_subprocess_get_exit_status (c->proc) : -1, place,
                          g_queue_peek_tail (&c->tail) ? ": " : "",
                          g_queue_peek_tail (&c->tail) ? (char *)g_queue_peek_tail (&c->tail) : "");
}

/* The worker is gone without saying its run ended: record that in the store, then tell. */
static void
conclude (KiltWorkerClient *c)
{
  g_autofree char *reason = NULL;
  g_autofree char *message = NULL;
  KiltEvent fin = { .type = KILT_EVENT_FINISHED, .status = KILT_RUN_FAILED };
  KiltWorkerMessage m = { 0 };

  if (c->watchdog_id)
    {
      g_source_remove (c->watchdog_id);
      c->watchdog_id = 0;
    }
  fault_target_release (c);
  if (!c->running)
    return;
  reason = crash_reason (c);
  if (c->run_id)
    {
      g_autoptr (GError) error = NULL;
      KiltRunStore *store = kilt_run_store_open (c->db_path, &error);
      if (store == NULL
          || !kilt_run_store_finish_run (store, c->run_id, KILT_RUN_FAILED, reason, NAN, NAN,
                                         &error))
        g_warning ("could not record run #%" G_GINT64_FORMAT " as failed: %s", c->run_id,
                   error->message);
      g_clear_pointer (&store, kilt_run_store_close);
    }
  /* "The training worker crashed: ...", "... hung: ...", "... was killed: SIGKILL ...". */
  message = g_strdup_printf ("The training worker %s%s",
                             g_str_has_prefix (reason, "killed") ? "was " : "", reason);
  fin.error = g_error_new_literal (KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_WORKER, message);
  fin.test_loss = fin.test_accuracy = NAN;
  m.event = &fin;
  m.index = c->index;
  m.n_devices = c->n;
  m.run_id = c->run_id;
  m.crashed = TRUE;
  m.status = KILT_RUN_FAILED;
  deliver (c, &m);
  g_clear_error (&fin.error);
  if (c->sequence)
    {
      KiltWorkerMessage end = { 0 };
      GArray *ids = g_array_new (FALSE, FALSE, sizeof (gint64));
      for (guint i = 0; i < c->run_ids->len; i++)
        if (g_array_index (c->run_ids, gint64, i))
          g_array_append_val (ids, g_array_index (c->run_ids, gint64, i));
      end.sequence_end = TRUE;
      end.crashed = TRUE;
      end.status = KILT_RUN_FAILED;
      end.run_ids = ids;
      end.index = c->index;
      end.n_devices = c->n;
      deliver (c, &end);
      g_array_unref (ids);
    }
  c->running = FALSE;
}

static void
maybe_conclude (KiltWorkerClient *c)
{
  if (c->exited && c->out_eof && c->err_eof)
    conclude (c);
}

/* A child of the worker may hold its pipes open after it died: its end is not held up. */
static gboolean
exit_grace_over (gpointer data)
{
  KiltWorkerClient *c = data;

  c->out_eof = c->err_eof = TRUE;
  maybe_conclude (c);
  return G_SOURCE_REMOVE;
}

static void
on_worker_exit (GObject *source, GAsyncResult *res, gpointer data)
{
  KiltWorkerClient *c = data;

  g_subprocess_wait_finish (G_SUBPROCESS (source), res, NULL);
  c->exited = TRUE;
  /* Nobody reads commands any more. */
  g_queue_clear_full (&c->writes, g_free);
  maybe_conclude (c);
  if (c->running)
    g_timeout_add_seconds_full (G_PRIORITY_DEFAULT, KILL_GRACE_S, exit_grace_over, client_ref (c),
                                (GDestroyNotify)client_unref);
  client_unref (c);
}

/* ---- events in ---- */

static void read_out (KiltWorkerClient *c);
static void read_err (KiltWorkerClient *c);

static void
fail_protocol (KiltWorkerClient *c, char *message)
{
  if (c->protocol_error == NULL)
    c->protocol_error = message;
  else
    g_free (message);
  g_subprocess_force_exit (c->proc);
}

static void
note_progress (KiltWorkerClient *c)
{
  c->last_progress_us = g_get_monotonic_time ();
}

/* The lines only an evaluate or classify job gets; FALSE for the others. */
static gboolean
handle_task_line (KiltWorkerClient *c, const char *kind, JsonObject *o)
{
  KiltWorkerMessage m = { 0 };
  g_autoptr (GError) error = NULL;
  g_autoptr (KiltEvaluation) ev = NULL;
  g_autofree float *scores = NULL;
  g_autoptr (GPtrArray) names = g_ptr_array_new ();

  m.n_devices = 1;
  m.latency_us = -1;
  if (strcmp (kind, "progress") == 0)
    {
      JsonNode *f = json_object_get_member (o, "fraction");
      m.progress = TRUE;
      m.fraction = f && JSON_NODE_HOLDS_VALUE (f) ? CLAMP (json_node_get_double (f), 0, 1) : 0;
      m.what = json_object_get_string_member_with_default (o, "what", "");
      deliver (c, &m);
      return TRUE;
    }
  if (strcmp (kind, "evaluation") == 0)
    {
      if (!(ev = kilt_evaluation_from_json (json_object_get_member (o, "evaluation"), &error)))
        g_prefix_error (&error, "the worker's evaluation: ");
      m.evaluation = ev;
    }
  else if (strcmp (kind, "classified") == 0)
    {
      JsonNode *sn = json_object_get_member (o, "scores");
      JsonNode *cn = json_object_get_member (o, "class_names");
      JsonArray *sa = sn && JSON_NODE_HOLDS_ARRAY (sn) ? json_node_get_array (sn) : NULL;
      JsonArray *ca = cn && JSON_NODE_HOLDS_ARRAY (cn) ? json_node_get_array (cn) : NULL;
      guint n = sa ? json_array_get_length (sa) : 0;
      if (sa == NULL || ca == NULL || n == 0 || n > KILT_EVALUATION_MAX_CLASSES
          || json_array_get_length (ca) != n)
        g_set_error (&error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_WORKER,
                     "the worker's classification: \"scores\" and \"class_names\" must be "
                     "arrays of one to %u entries, as many of each",
                     KILT_EVALUATION_MAX_CLASSES);
      else
        {
          scores = g_new (float, n);
          for (guint i = 0; i < n; i++)
            {
              JsonNode *e = json_array_get_element (sa, i);
              JsonNode *ne = json_array_get_element (ca, i);
              scores[i] = JSON_NODE_HOLDS_VALUE (e) ? (float)json_node_get_double (e) : NAN;
              g_ptr_array_add (names, JSON_NODE_HOLDS_VALUE (ne)
                                              && json_node_get_value_type (ne) == G_TYPE_STRING
                                          ? (gpointer)json_node_get_string (ne)
                                          : (gpointer) "?");
            }
          g_ptr_array_add (names, NULL);
          m.scores = scores;
          m.n_scores = n;
          m.class_names = (const char *const *)names->pdata;
        }
    }
  else if (strcmp (kind, "error") == 0)
    error = g_error_new_literal (
        KILT_ENGINE_ERROR,
        json_object_get_boolean_member_with_default (o, "cancelled", FALSE)
            ? KILT_ENGINE_ERROR_CANCELLED
            : KILT_ENGINE_ERROR_WORKER,
        json_object_get_string_member_with_default (o, "message", "the worker failed"));
  else
    return FALSE;
  m.task_end = TRUE;
  m.task_error = error;
  deliver (c, &m);
  return TRUE;
}

static void
handle_line (KiltWorkerClient *c, const char *line)
{
  g_autoptr (JsonObject) o = NULL;
  g_autoptr (GError) error = NULL;
  const char *kind;
  KiltEvent ev;
  KiltWorkerMessage m = { 0 };

  if (!kilt_worker_parse_line (line, "the training worker", &o, &error))
    {
      if (!c->hello)
        fail_protocol (c, g_strdup_printf ("could not run: the kilt-cli found is no training "
                                           "worker of this "
                                           "Kilt (%s)",
                                           error->message));
      else
        g_warning ("%s", error->message);
      return;
    }
  if (!c->hello)
    {
      gint64 version = json_object_get_int_member_with_default (o, "kilt_worker", -1);
      if (version != KILT_WORKER_PROTOCOL_VERSION)
        fail_protocol (
            c, g_strdup_printf (
                   "could not run: the kilt-cli found speaks worker protocol %" G_GINT64_FORMAT
                   ", this window %d (Kilt %s): install one Kilt",
                   version, KILT_WORKER_PROTOCOL_VERSION, KILT_VERSION));
      c->hello = TRUE;
      return;
    }
  note_progress (c);
  kind = json_object_get_string_member_with_default (o, "event", "");
  if (strcmp (kind, "alive") == 0)
    {
      g_free (c->where);
      c->where = g_strdup (json_object_get_string_member_with_default (o, "where", "?"));
      return;
    }
  if (c->task != KILT_WORKER_TASK_TRAIN && handle_task_line (c, kind, o))
    return;
  if (strcmp (kind, "progress") == 0)
    return;
  if (strcmp (kind, "sequence_end") == 0)
    {
      JsonNode *n = json_object_get_member (o, "run_ids");
      GArray *ids = g_array_new (FALSE, FALSE, sizeof (gint64));
      for (guint i = 0;
           n && JSON_NODE_HOLDS_ARRAY (n) && i < json_array_get_length (json_node_get_array (n));
           i++)
        {
          gint64 id = json_array_get_int_element (json_node_get_array (n), i);
          g_array_append_val (ids, id);
        }
      m.sequence_end = TRUE;
      if (!kilt_run_status_from_name (json_object_get_string_member_with_default (o, "status", ""),
                                      &m.status))
        m.status = KILT_RUN_FAILED;
      m.run_ids = ids;
      m.index = c->index;
      m.n_devices = c->n;
      deliver (c, &m);
      g_array_unref (ids);
      return;
    }
  if (!kilt_worker_event_from_json (o, &ev, &error))
    {
      g_warning ("%s", error->message);
      return;
    }
  m.event = &ev;
  m.latency_us = json_object_has_member (o, "t_us")
                     ? g_get_monotonic_time () - json_object_get_int_member (o, "t_us")
                     : -1;
  m.index = c->index = (guint)json_object_get_int_member_with_default (o, "index", 0);
  m.n_devices = c->n = (guint)MAX (json_object_get_int_member_with_default (o, "n", 1), 1);
  m.run_id = json_object_get_int_member_with_default (o, "run_id", 0);
  if (m.run_id)
    {
      c->run_id = m.run_id;
      if (c->run_ids->len <= c->index)
        g_array_set_size (c->run_ids, c->index + 1);
      g_array_index (c->run_ids, gint64, c->index) = m.run_id;
    }
  else if (ev.type == KILT_EVENT_STARTED)
    c->run_id = 0; /* a new run of a sequence, not recorded (yet) */
  if (ev.type == KILT_EVENT_STEP || ev.type == KILT_EVENT_EPOCH)
    {
      c->epoch = ev.epoch;
      c->global_step = ev.global_step;
      if (ev.type == KILT_EVENT_STEP)
        c->stepped = TRUE;
      if (ev.type == KILT_EVENT_STEP && ev.samples_per_second > 0 && c->batch)
        c->max_step_s = MAX (c->max_step_s, c->batch / ev.samples_per_second);
    }
  deliver (c, &m);
  kilt_worker_event_clear (&ev);
}

static void
on_out_line (GObject *source, GAsyncResult *res, gpointer data)
{
  KiltWorkerClient *c = data;
  g_autoptr (GError) error = NULL;
  g_autofree char *line
      = g_data_input_stream_read_line_finish_utf8 (G_DATA_INPUT_STREAM (source), res, NULL, &error);

  if (line == NULL)
    {
      if (error)
        g_debug ("reading the worker's events: %s", error->message);
      c->out_eof = TRUE;
      maybe_conclude (c);
    }
  else
    {
      if (*line)
        handle_line (c, line);
      read_out (c);
    }
  client_unref (c);
}

static void
read_out (KiltWorkerClient *c)
{
  g_data_input_stream_read_line_async (c->out, G_PRIORITY_DEFAULT, NULL, on_out_line,
                                       client_ref (c));
}

static void
on_err_line (GObject *source, GAsyncResult *res, gpointer data)
{
  KiltWorkerClient *c = data;
  g_autofree char *line
      = g_data_input_stream_read_line_finish (G_DATA_INPUT_STREAM (source), res, NULL, NULL);

  if (line == NULL)
    {
      c->err_eof = TRUE;
      maybe_conclude (c);
    }
  else
    {
      if (!g_utf8_validate (line, -1, NULL))
        {
          char *valid = g_utf8_make_valid (line, -1);
          g_free (line);
          line = valid;
        }
      g_debug ("worker: %s", line);
      if (g_str_has_prefix (line, KILT_BREADCRUMB_PREFIX))
        {
          g_free (c->crash_line);
          c->crash_line = g_strdup (line + strlen (KILT_BREADCRUMB_PREFIX));
        }
      else if (*line)
        {
          g_queue_push_tail (&c->tail, g_strdup (line));
          while (c->tail.length > STDERR_TAIL_LINES)
            g_free (g_queue_pop_head (&c->tail));
        }
      read_err (c);
    }
  client_unref (c);
}

static void
read_err (KiltWorkerClient *c)
{
  g_data_input_stream_read_line_async (c->err, G_PRIORITY_DEFAULT, NULL, on_err_line,
                                       client_ref (c));
}

/* ---- the watchdog ---- */

static gboolean
kill_late (gpointer data)
{
  KiltWorkerClient *c = data;

  if (!c->exited)
    g_subprocess_force_exit (c->proc);
  return G_SOURCE_REMOVE;
}

static gboolean
watchdog_tick (gpointer data)
{
  KiltWorkerClient *c = data;
  double floor_s = kilt_worker_watchdog_floor ();
  double limit
      = c->stepped ? MAX (floor_s, 20 * c->max_step_s) : MAX (floor_s, STARTUP_ALLOWANCE_S);
  double quiet = (g_get_monotonic_time () - c->last_progress_us) / 1e6;

  if (!c->running || c->paused || c->exited || c->hung_for > 0 || quiet < limit)
    return G_SOURCE_CONTINUE;
  c->hung_for = quiet;
  g_message ("the training worker (pid %s) made no progress for %.0f s: ending it",
             g_subprocess_get_identifier (c->proc), quiet);
  /* SIGTERM first: its handler writes where the worker was. */
  g_subprocess_send_signal (c->proc, SIGTERM);
  g_timeout_add_seconds_full (G_PRIORITY_DEFAULT, KILL_GRACE_S, kill_late, client_ref (c),
                              (GDestroyNotify)client_unref);
  c->watchdog_id = 0;
  return G_SOURCE_REMOVE;
}

/* ---- API ---- */

gboolean
kilt_worker_client_start (KiltWorkerClient *c, const KiltWorkerJob *job, GError **error)
{
  g_autofree char *cli = NULL;
  g_autoptr (GSubprocessLauncher) launcher = NULL;
  g_autofree char *faults = NULL;

  g_return_val_if_fail (c->proc == NULL, FALSE);
  if (!(cli = kilt_worker_find_cli (error)))
    return FALSE;
  launcher
      = g_subprocess_launcher_new (G_SUBPROCESS_FLAGS_STDIN_PIPE | G_SUBPROCESS_FLAGS_STDOUT_PIPE
                                   | G_SUBPROCESS_FLAGS_STDERR_PIPE);
  /* Faults a test armed here are meant for the run, which happens over there. */
  faults = kilt_fault_take ();
  if (faults)
    g_subprocess_launcher_setenv (launcher, "KILT_FAULT", faults, TRUE);
  else
    /* $KILT_FAULT of this process was read once, here: it is not every worker's. */
    g_subprocess_launcher_unsetenv (launcher, "KILT_FAULT");
  c->proc = g_subprocess_launcher_spawn (launcher, error, cli, "worker", NULL);
  if (c->proc == NULL)
    {
      g_prefix_error (error, "Cannot start the training worker %s: ", cli);
      return FALSE;
    }
  c->in = g_object_ref (g_subprocess_get_stdin_pipe (c->proc));
  c->out = g_data_input_stream_new (g_subprocess_get_stdout_pipe (c->proc));
  c->err = g_data_input_stream_new (g_subprocess_get_stderr_pipe (c->proc));
  c->sequence = job->device_ids != NULL && job->task == KILT_WORKER_TASK_TRAIN;
  c->task = job->task;
  c->db_path = g_strdup (job->db_path);
  c->batch = job->config.batch;
  c->running = TRUE;
  fault_target = c;
  kilt_fault_set_notify (forward_faults);
  note_progress (c);
  send_line (c, kilt_worker_job_to_json (job));
  read_out (c);
  read_err (c);
  g_subprocess_wait_async (c->proc, NULL, on_worker_exit, client_ref (c));
  c->watchdog_id = g_timeout_add_full (G_PRIORITY_DEFAULT, 500, watchdog_tick, client_ref (c),
                                       (GDestroyNotify)client_unref);
  return TRUE;
}

static void
send_command (KiltWorkerClient *c, const char *cmd)
{
  if (c->proc && !c->exited && c->running)
    send_line (c, g_strdup_printf ("{\"cmd\":\"%s\"}", cmd));
}

void
kilt_worker_client_pause (KiltWorkerClient *c)
{
  send_command (c, "pause");
  c->paused = TRUE;
}

void
kilt_worker_client_resume (KiltWorkerClient *c)
{
  send_command (c, "resume");
  c->paused = FALSE;
  /* The pause was no hang. */
  note_progress (c);
}

void
kilt_worker_client_stop (KiltWorkerClient *c)
{
  send_command (c, "stop");
  if (c->paused)
    note_progress (c);
  c->paused = FALSE;
}

gboolean
kilt_worker_client_is_running (KiltWorkerClient *c)
{
  return c && c->running;
}

int
kilt_worker_client_get_pid (KiltWorkerClient *c)
{
  const char *id = c && c->proc && !c->exited ? g_subprocess_get_identifier (c->proc) : NULL;
  return id ? atoi (id) : 0;
}

void
kilt_worker_client_free (KiltWorkerClient *c)
{
  if (c == NULL)
    return;
  c->func = NULL;
  fault_target_release (c);
  if (c->running)
    send_command (c, "stop");
  /* Closing stdin also tells a worker whose window is going that nobody watches. */
  c->close_stdin = TRUE;
  write_next (c);
  client_unref (c);
}
