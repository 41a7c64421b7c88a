/* The run store: every training run, written to SQLite as it happens, listed and read back. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#define G_LOG_DOMAIN "kilt-run-store"

#include "kilt-run-store-private.h"
#include "kilt-checkpoint.h"
#include "kilt-error.h"
#include "kilt-json-limits.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <sqlite3.h>
#include <string.h>
#include <unistd.h>
#include <glib/gstdio.h>
#include <json-glib/json-glib.h>
#ifdef G_OS_WIN32
#include <windows.h>
#endif

struct _KiltRunStore
{
  sqlite3 *db;
  char *path;
  int version;
  gboolean read_only;    /* opened without write access: lists and reads only */
  GHashTable *last_step; /* run id -> (double *) elapsed seconds of the last kept step */
};

/* Step sampling: at most ten a second. */
#define STEP_INTERVAL 0.1

/* Migrations: entry i takes the schema from version i to i + 1. Never edit a released entry;
 * add a new one. */
static const char *const migrations[] = {
  /* 0 -> 1: runs, epochs and per-layer timings. */
  "CREATE TABLE runs ("
  "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
  "  name TEXT NOT NULL,"
  "  status TEXT NOT NULL,"
  "  error_message TEXT,"
  "  started_at INTEGER NOT NULL,"
  "  updated_at INTEGER NOT NULL,"
  "  ended_at INTEGER,"
  "  pid INTEGER, process_start INTEGER, boot_id TEXT, hostname TEXT,"
  "  model_name TEXT, model_json TEXT, data_description TEXT, data_hash TEXT,"
  "  device_id TEXT, device_name TEXT, device_vendor TEXT, device_type TEXT,"
  "  device_driver TEXT, device_opencl_version TEXT,"
  "  kilt_version TEXT, clblast_version TEXT, platform_name TEXT, platform_version TEXT,"
  "  config_json TEXT, seed INTEGER,"
  "  flops_per_sample INTEGER, n_params INTEGER, train_samples INTEGER, steps_per_epoch INTEGER,"
  "  compile_seconds REAL, compile_cached INTEGER,"
  "  test_loss REAL, test_accuracy REAL);"
  "CREATE INDEX runs_status ON runs (status);"
  "CREATE TABLE epochs ("
  "  run_id INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,"
  "  epoch INTEGER NOT NULL,"
  "  train_loss REAL, train_accuracy REAL, val_loss REAL, val_accuracy REAL,"
  "  wall_seconds REAL, elapsed_seconds REAL, samples_per_second REAL,"
  "  compile_seconds REAL, busy_percent REAL,"
  "  peak_weights INTEGER, peak_gradients INTEGER, peak_optimizer INTEGER,"
  "  peak_activations INTEGER, peak_workspace INTEGER, peak_dataset INTEGER,"
  "  peak_total INTEGER,"
  "  PRIMARY KEY (run_id, epoch));"
  "CREATE TABLE layer_timings ("
  "  run_id INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,"
  "  position INTEGER NOT NULL,"
  "  layer TEXT NOT NULL, type TEXT,"
  "  forward_ms REAL, backward_ms REAL, update_ms REAL,"
  "  PRIMARY KEY (run_id, position));",
  /* 1 -> 2: tags, and sampled per-step metrics. */
  "CREATE TABLE run_tags ("
  "  run_id INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,"
  "  tag TEXT NOT NULL,"
  "  PRIMARY KEY (run_id, tag));"
  "CREATE TABLE steps ("
  "  run_id INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,"
  "  global_step INTEGER NOT NULL,"
  "  epoch INTEGER NOT NULL, step INTEGER NOT NULL,"
  "  elapsed_seconds REAL NOT NULL,"
  "  loss REAL, accuracy REAL, samples_per_second REAL,"
  "  PRIMARY KEY (run_id, global_step));",
  /* 2 -> 3: where the data came from, so a run can be repeated ("run again"). */
  "ALTER TABLE runs ADD COLUMN data_spec TEXT;",
  /* 3 -> 4: the algorithm a layer chose on the device (Conv2D: im2col or implicit GEMM). */
  "ALTER TABLE layer_timings ADD COLUMN algo TEXT;",
  /* 4 -> 5: the token the run writes into its checkpoints, so that a resume can tell the run's
   * own weights from those of another run that shares the file. */
  "ALTER TABLE runs ADD COLUMN checkpoint_token INTEGER;",
  /* 5 -> 6: how a run on several devices or MPI ranks shared its work (KiltRunScaling). */
  "ALTER TABLE runs ADD COLUMN scaling_json TEXT;",
  /* 6 -> 7: the learning rate each step and epoch ended with, for the rate's chart. */
  "ALTER TABLE steps ADD COLUMN learning_rate REAL;"
  "ALTER TABLE epochs ADD COLUMN learning_rate REAL;",
  /* 7 -> 8: what changed while the run trained (resumed at a smaller batch after the device
   * ran out of memory), one line each. */
  "ALTER TABLE runs ADD COLUMN notes TEXT;",
};

G_STATIC_ASSERT (G_N_ELEMENTS (migrations) == KILT_RUN_STORE_SCHEMA_VERSION);

const char *
kilt_run_store_status_name (KiltRunStatus status)
{
  if ((guint)status <= KILT_RUN_INTERRUPTED)
    return kilt_run_status_name (status);
  return "unknown";
}

gboolean
kilt_run_store_status_from_name (const char *name, KiltRunStatus *out)
{
  for (guint i = 0; i <= KILT_RUN_INTERRUPTED; i++)
    if (g_strcmp0 (name, kilt_run_status_name ((KiltRunStatus)i)) == 0)
      {
        *out = (KiltRunStatus)i;
        return TRUE;
      }
  return FALSE;
}

static gboolean
set_db_error (KiltRunStore *store, GError **error, const char *what)
{
  g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_IO, "run store %s: %s failed: %s",
               store->path, what, store->db ? sqlite3_errmsg (store->db) : "no database");
  return FALSE;
}

static gboolean
exec (KiltRunStore *store, const char *sql, GError **error)
{
  char *msg = NULL;

  if (sqlite3_exec (store->db, sql, NULL, NULL, &msg) != SQLITE_OK)
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_IO, "run store %s: %.40s…: %s",
                   store->path, sql, msg ? msg : sqlite3_errmsg (store->db));
      sqlite3_free (msg);
      return FALSE;
    }
  return TRUE;
}

static sqlite3_stmt *
prepare (KiltRunStore *store, const char *sql, GError **error)
{
  sqlite3_stmt *stmt = NULL;

  if (sqlite3_prepare_v2 (store->db, sql, -1, &stmt, NULL) != SQLITE_OK)
    {
      set_db_error (store, error, "preparing a statement");
      return NULL;
    }
  return stmt;
}

G_DEFINE_AUTOPTR_CLEANUP_FUNC (sqlite3_stmt, sqlite3_finalize)

/* A write: BEGIN IMMEDIATE takes the write lock up front, so two writers wait (busy_timeout)
 * instead of failing when one upgrades a read transaction. */
static gboolean
begin (KiltRunStore *store, GError **error)
{
  if (store->read_only)
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_IO,
                   "run store %s is read-only here (no write access to it or its folder): it "
                   "can be listed and read, not changed",
                   store->path);
      return FALSE;
    }
  return exec (store, "BEGIN IMMEDIATE", error);
}

static gboolean
commit (KiltRunStore *store, gboolean ok, GError **error)
{
  if (!ok)
    {
      sqlite3_exec (store->db, "ROLLBACK", NULL, NULL, NULL);
      return FALSE;
    }
  return exec (store, "COMMIT", error);
}

static gboolean
step_done (KiltRunStore *store, sqlite3_stmt *stmt, GError **error, const char *what)
{
  if (sqlite3_step (stmt) != SQLITE_DONE)
    return set_db_error (store, error, what);
  return TRUE;
}

static void
bind_text (sqlite3_stmt *stmt, int i, const char *s)
{
  if (s)
    sqlite3_bind_text (stmt, i, s, -1, SQLITE_TRANSIENT);
  else
    sqlite3_bind_null (stmt, i);
}

static void
bind_real (sqlite3_stmt *stmt, int i, double v)
{
  /* NaN means "no figure": store NULL rather than relying on SQLite's own NaN handling. */
  if (isnan (v))
    sqlite3_bind_null (stmt, i);
  else
    sqlite3_bind_double (stmt, i, v);
}

static double
col_real (sqlite3_stmt *stmt, int i)
{
  if (sqlite3_column_type (stmt, i) == SQLITE_NULL)
    return NAN;
  return sqlite3_column_double (stmt, i);
}

/* Always valid UTF-8: a store may hold bad bytes (written by an older Kilt, or by hand), and
 * every reader (GTK labels, JSON, HTML, cairo) needs text. Bad bytes read as U+FFFD. */
static char *
col_text (sqlite3_stmt *stmt, int i)
{
  const char *s = (const char *)sqlite3_column_text (stmt, i);
  int n = sqlite3_column_bytes (stmt, i);

  if (s == NULL)
    return NULL;
  return g_utf8_validate_len (s, n, NULL) ? g_strndup (s, n) : g_utf8_make_valid (s, n);
}

/* Names and tags are text a person reads: refuse bytes that are not UTF-8, with where. */
static gboolean
check_text (const char *what, const char *text, GError **error)
{
  const char *end = NULL;

  if (g_utf8_validate (text, -1, &end))
    return TRUE;
  g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_INVALID,
               "%s must be UTF-8 text; byte %d (0x%02x) of the one given is not", what,
               (int)(end - text) + 1, (guint)(guchar)*end);
  return FALSE;
}

/* ---- the process that owns a running run ---- */

static char *
read_boot_id (void)
{
  char *text = NULL;

  if (!g_file_get_contents ("/proc/sys/kernel/random/boot_id", &text, NULL, NULL))
    return g_strdup ("");
  return g_strstrip (text);
}

/* Start time of @pid in clock ticks since boot (field 22 of /proc/<pid>/stat); 0 when unknown.
 * *out_zombie says the process has ended but is not yet reaped. */
static guint64
process_start_time (gint64 pid, gboolean *out_exists, gboolean *out_zombie)
{
  g_autofree char *path = g_strdup_printf ("/proc/%" G_GINT64_FORMAT "/stat", pid);
  g_autofree char *text = NULL;
  g_auto (GStrv) fields = NULL;
  const char *rest;

  *out_exists = FALSE;
  *out_zombie = FALSE;
  if (!g_file_get_contents (path, &text, NULL, NULL))
    return 0;
  *out_exists = TRUE;
  /* The command name (field 2) may hold spaces and parentheses: fields resume after the last
   * ')'. */
  rest = strrchr (text, ')');
  if (rest == NULL)
    return 0;
  fields = g_strsplit_set (rest + 1, " \n", -1);
  /* fields[0] is "" (the space after ')'), fields[1] the state (field 3), fields[20] field 22. */
  if (g_strv_length (fields) < 21)
    return 0;
  *out_zombie = fields[1][0] == 'Z' || fields[1][0] == 'X';
  return g_ascii_strtoull (fields[20], NULL, 10);
}

static gboolean
process_alive (gint64 pid, guint64 start, const char *boot_id)
{
  g_autofree char *our_boot = read_boot_id ();
  gboolean exists, zombie;
  guint64 now_start;

  if (pid <= 0)
    return FALSE;
  if (boot_id && *boot_id && *our_boot && strcmp (boot_id, our_boot) != 0)
    return FALSE; /* the machine has restarted since */
  now_start = process_start_time (pid, &exists, &zombie);
  if (g_file_test ("/proc/self/stat", G_FILE_TEST_EXISTS))
    {
      if (!exists || zombie)
        return FALSE;
      /* A different start time: the pid was reused by another process. */
      return start == 0 || now_start == start;
    }
#ifdef G_OS_WIN32
  {
    /* No /proc and no kill (pid, 0): ask Windows whether the process is still running. */
    HANDLE h = OpenProcess (PROCESS_QUERY_LIMITED_INFORMATION, FALSE, (DWORD)pid);
    DWORD code = 0;
    gboolean alive;

    if (h == NULL)
      return GetLastError () == ERROR_ACCESS_DENIED;
    alive = GetExitCodeProcess (h, &code) && code == STILL_ACTIVE;
    CloseHandle (h);
    return alive;
  }
#else
  /* No /proc: the best we have is whether the pid exists. */
  return kill ((pid_t)pid, 0) == 0 || errno == EPERM;
#endif
}

static gboolean
mark_interrupted (KiltRunStore *store, GError **error)
{
  g_autoptr (sqlite3_stmt) sel = NULL;
  g_autofree char *host = g_strdup (g_get_host_name ());
  g_autoptr (GArray) gone = g_array_new (FALSE, FALSE, sizeof (gint64));
  gboolean ok = TRUE;

  sel = prepare (store,
                 "SELECT id, pid, process_start, boot_id, hostname FROM runs"
                 " WHERE status = 'running'",
                 error);
  if (sel == NULL)
    return FALSE;
  while (sqlite3_step (sel) == SQLITE_ROW)
    {
      gint64 id = sqlite3_column_int64 (sel, 0);
      gint64 pid = sqlite3_column_int64 (sel, 1);
      guint64 start = (guint64)sqlite3_column_int64 (sel, 2);
      const char *boot = (const char *)sqlite3_column_text (sel, 3);
      const char *run_host = (const char *)sqlite3_column_text (sel, 4);

      /* A store on a shared folder may hold runs of other machines: we cannot see those. */
      if (g_strcmp0 (run_host, host) != 0)
        continue;
      if (!process_alive (pid, start, boot))
        g_array_append_val (gone, id);
    }
  if (gone->len == 0)
    return TRUE;

  if (!begin (store, error))
    return FALSE;
  for (guint i = 0; ok && i < gone->len; i++)
    {
      g_autoptr (sqlite3_stmt) up = NULL;
      gint64 id = g_array_index (gone, gint64, i);

      /* Another process may have finished it meanwhile: only touch it while still running. */
      up = prepare (store,
                    "UPDATE runs SET status = 'interrupted', ended_at = updated_at,"
                    " error_message = 'the process (pid ' || pid || ') ended before the run"
                    " finished' WHERE id = ? AND status = 'running'",
                    error);
      ok = up != NULL;
      if (ok)
        {
          sqlite3_bind_int64 (up, 1, id);
          ok = step_done (store, up, error, "marking a run interrupted");
        }
      if (ok)
        g_message ("run %" G_GINT64_FORMAT " was left running by a process that is gone; marked"
                   " interrupted",
                   id);
    }
  return commit (store, ok, error);
}

/* ---- open, migrate, close ---- */

char *
kilt_run_store_default_path (void)
{
  const char *env = g_getenv ("KILT_RUNS_DB");

  if (env && *env)
    return g_strdup (env);
  return g_build_filename (g_get_user_data_dir (), "kilt", "runs.db", NULL);
}

char *
kilt_run_store_checkpoint_dir (const char *db_path)
{
  g_autofree char *db = db_path ? g_strdup (db_path) : kilt_run_store_default_path ();
  /* Absolute, since runs record the path and may be resumed from another folder. */
  g_autofree char *full = g_canonicalize_filename (db, NULL);
  g_autofree char *dir = g_path_get_dirname (full);

  return g_build_filename (dir, "checkpoints", NULL);
}

char *
kilt_run_store_new_checkpoint_path (const char *db_path, const char *model_name, GError **error)
{
  g_autofree char *dir = kilt_run_store_checkpoint_dir (db_path);
  g_autoptr (GDateTime) now = g_date_time_new_now_local ();
  g_autofree char *stamp = g_date_time_format (now, "%Y%m%d-%H%M%S");
  g_autoptr (GString) model = g_string_new (NULL);

  if (g_mkdir_with_parents (dir, 0700) != 0)
    {
      int e = errno;
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_IO,
                   "cannot make the checkpoint folder %s: %s", dir, g_strerror (e));
      return NULL;
    }
  /* The model's name as far as it is safe in a file name. */
  for (const char *p = model_name ? model_name : "model"; *p && model->len < 40; p++)
    g_string_append_c (model, g_ascii_isalnum (*p) || *p == '-' || *p == '_' ? *p : '_');
  for (guint n = 0;; n++)
    {
      g_autofree char *base = n ? g_strdup_printf ("%s-%s-%u.ckpt", stamp, model->str, n + 1)
                                : g_strdup_printf ("%s-%s.ckpt", stamp, model->str);
      char *path = g_build_filename (dir, base, NULL);
      /* Claimed by creating it empty; the trainer replaces it with the first epoch's. */
      int fd = g_open (path, O_WRONLY | O_CREAT | O_EXCL, 0600);
      if (fd >= 0)
        {
          g_close (fd, NULL);
          return path;
        }
      if (errno != EEXIST || n > 1000)
        {
          int e = errno;
          g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_IO, "cannot create %s: %s", path,
                       g_strerror (e));
          g_free (path);
          return NULL;
        }
      g_free (path);
    }
}

static int
read_user_version (KiltRunStore *store)
{
  g_autoptr (sqlite3_stmt) stmt = NULL;

  if (sqlite3_prepare_v2 (store->db, "PRAGMA user_version", -1, &stmt, NULL) != SQLITE_OK)
    return -1;
  if (sqlite3_step (stmt) != SQLITE_ROW)
    return -1;
  return sqlite3_column_int (stmt, 0);
}

static gboolean
migrate (KiltRunStore *store, int target, GError **error)
{
  int version;
  gboolean ok = TRUE;

  if (!begin (store, error))
    return FALSE;
  /* Read inside the write transaction: two processes opening a new file at once must not both
   * create the tables. */
  version = read_user_version (store);
  if (version < 0)
    return commit (store, set_db_error (store, error, "reading the schema version"), error);
  if (version > KILT_RUN_STORE_SCHEMA_VERSION)
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_IO,
                   "run store %s has schema version %d, written by a newer Kilt; this one"
                   " reads up to version %d",
                   store->path, version, KILT_RUN_STORE_SCHEMA_VERSION);
      return commit (store, FALSE, error);
    }
  for (int v = version; ok && v < target; v++)
    {
      g_autofree char *bump = g_strdup_printf ("PRAGMA user_version = %d", v + 1);
      ok = exec (store, migrations[v], error) && exec (store, bump, error);
      if (!ok)
        g_prefix_error (error, "migrating the run store to version %d: ", v + 1);
      else if (version > 0)
        g_message ("run store %s migrated to schema version %d", store->path, v + 1);
    }
  store->version = MAX (version, target);
  return commit (store, ok, error);
}

static KiltRunStore *
store_new (const char *path)
{
  KiltRunStore *store = g_new0 (KiltRunStore, 1);

  store->path = g_strdup (path);
  store->last_step = g_hash_table_new_full (g_int64_hash, g_int64_equal, g_free, g_free);
  return store;
}

static gboolean
open_uri (KiltRunStore *store, const char *query)
{
  g_autofree char *escaped = g_uri_escape_string (store->path, "/", FALSE);
  g_autofree char *uri = g_strdup_printf ("file:%s?%s", escaped, query);

  if (store->db)
    sqlite3_close (store->db);
  store->db = NULL;
  return sqlite3_open_v2 (uri, &store->db,
                          SQLITE_OPEN_READONLY | SQLITE_OPEN_URI | SQLITE_OPEN_NOMUTEX, NULL)
         == SQLITE_OK;
}

KiltRunStore *
kilt_run_store_open_read_only (const char *path, GError **error)
{
  g_autofree char *default_path = NULL;
  KiltRunStore *store;
  int version;

  if (path == NULL)
    path = default_path = kilt_run_store_default_path ();
  if (!g_file_test (path, G_FILE_TEST_IS_REGULAR))
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_IO, "there is no run store at %s%s",
                   path, g_file_test (path, G_FILE_TEST_EXISTS) ? " (it is not a file)" : "");
      return NULL;
    }
  store = store_new (path);
  store->read_only = TRUE;
  /* A store in WAL mode needs its -shm file, which a read-only folder may not let SQLite make:
   * then it is read as an immutable file (no one can be writing where we cannot). */
  if (!open_uri (store, "mode=ro") || (version = read_user_version (store)) < 0)
    {
      if (!open_uri (store, "mode=ro&immutable=1") || (version = read_user_version (store)) < 0)
        {
          set_db_error (store, error, "opening (read-only)");
          kilt_run_store_close (store);
          return NULL;
        }
    }
  if (version < 1 || version > KILT_RUN_STORE_SCHEMA_VERSION)
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_IO,
                   version < 1 ? "%s is not a Kilt run store (schema version %d)"
                               : "run store %s has schema version %d, written by a newer Kilt; "
                                 "this one reads up to version %d",
                   path, version, KILT_RUN_STORE_SCHEMA_VERSION);
      kilt_run_store_close (store);
      return NULL;
    }
  store->version = version;
  return store;
}

gboolean
kilt_run_store_is_read_only (KiltRunStore *store)
{
  return store->read_only;
}

KiltRunStore *
kilt_run_store_open_version (const char *path, int max_version, GError **error)
{
  KiltRunStore *store;
  g_autofree char *dir = NULL;
  g_autofree char *default_path = NULL;

  g_return_val_if_fail (max_version >= 1 && max_version <= KILT_RUN_STORE_SCHEMA_VERSION, NULL);

  if (path == NULL)
    path = default_path = kilt_run_store_default_path ();
  dir = g_path_get_dirname (path);
  if (g_mkdir_with_parents (dir, 0700) != 0)
    {
      int saved = errno;
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_IO,
                   "cannot create the folder %s for the run store: %s", dir, g_strerror (saved));
      return NULL;
    }

  store = store_new (path);
  if (sqlite3_open_v2 (path, &store->db,
                       SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL)
      != SQLITE_OK)
    {
      set_db_error (store, error, "opening");
      kilt_run_store_close (store);
      return NULL;
    }
  /* SQLite opens a file it may not write read-only without a word; a folder we may not write
   * keeps it from making the WAL's files. Either way the store can still be read. */
  if (sqlite3_db_readonly (store->db, "main") == 1
      || (g_file_test (path, G_FILE_TEST_IS_REGULAR) && g_access (dir, W_OK) != 0))
    {
      kilt_run_store_close (store);
      return kilt_run_store_open_read_only (path, error);
    }
  /* Two Kilt processes (the window and kilt-cli) may write at once: wait for the lock rather
   * than fail. WAL lets readers go on while a run writes; NORMAL stays consistent across a
   * crash and loses at most the last commits on power loss. */
  sqlite3_busy_timeout (store->db, 10000);
  if (!exec (store, "PRAGMA journal_mode = WAL", error)
      || !exec (store, "PRAGMA synchronous = NORMAL", error)
      || !exec (store, "PRAGMA foreign_keys = ON", error) || !migrate (store, max_version, error))
    {
      kilt_run_store_close (store);
      return NULL;
    }
  /* A store that cannot take this write (a full disk) can still be read: runs whose process is
   * gone read as interrupted all the same (run_from_row). */
  {
    g_autoptr (GError) local = NULL;
    if (!mark_interrupted (store, &local))
      g_message ("could not mark runs of ended processes interrupted: %s", local->message);
  }
  return store;
}

KiltRunStore *
kilt_run_store_open (const char *path, GError **error)
{
  return kilt_run_store_open_version (path, KILT_RUN_STORE_SCHEMA_VERSION, error);
}

void
kilt_run_store_close (KiltRunStore *store)
{
  if (store == NULL)
    return;
  if (store->db)
    sqlite3_close (store->db);
  g_hash_table_unref (store->last_step);
  g_free (store->path);
  g_free (store);
}

const char *
kilt_run_store_get_path (KiltRunStore *store)
{
  return store->path;
}

int
kilt_run_store_get_schema_version (KiltRunStore *store)
{
  return read_user_version (store);
}

static gboolean
need_version (KiltRunStore *store, int version, GError **error)
{
  if (store->version >= version)
    return TRUE;
  g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_IO,
               "run store %s is at schema version %d; this needs version %d", store->path,
               store->version, version);
  return FALSE;
}

/* ---- the configuration as JSON ---- */

static const char *const preprocess_names[] = { "scale", "standard" };

char *
kilt_run_config_to_json (const KiltTrainConfig *c)
{
  g_autoptr (JsonBuilder) b = json_builder_new ();
  g_autoptr (JsonGenerator) gen = json_generator_new ();
  g_autoptr (JsonNode) root = NULL;
  const KiltOptimizerConfig *o = &c->opt;

  json_builder_begin_object (b);
  json_builder_set_member_name (b, "device_id");
  if (c->device_id)
    json_builder_add_string_value (b, c->device_id);
  else
    json_builder_add_null_value (b);
  if (c->devices)
    {
      json_builder_set_member_name (b, "devices");
      json_builder_begin_array (b);
      for (guint i = 0; c->devices[i]; i++)
        json_builder_add_string_value (b, c->devices[i]);
      json_builder_end_array (b);
    }
  json_builder_set_member_name (b, "epochs");
  json_builder_add_int_value (b, c->epochs);
  json_builder_set_member_name (b, "batch");
  json_builder_add_int_value (b, c->batch);
  json_builder_set_member_name (b, "seed");
  json_builder_add_int_value (b, c->seed);
  kilt_json_add_number (b, "val_fraction", c->val_fraction);
  json_builder_set_member_name (b, "augment");
  json_builder_add_boolean_value (b, c->augment);
  json_builder_set_member_name (b, "translate");
  json_builder_add_int_value (b, c->translate);
  json_builder_set_member_name (b, "tta_flip");
  json_builder_add_boolean_value (b, c->tta_flip);
  json_builder_set_member_name (b, "alternate_flip");
  json_builder_add_boolean_value (b, c->alternate_flip);
  json_builder_set_member_name (b, "precision");
  json_builder_add_string_value (b, kilt_precision_name (c->precision));
  json_builder_set_member_name (b, "memory");
  json_builder_add_string_value (b, kilt_memory_mode_name (c->memory));
  json_builder_set_member_name (b, "preprocess");
  json_builder_add_string_value (b, (guint)c->preprocess < G_N_ELEMENTS (preprocess_names)
                                        ? preprocess_names[c->preprocess]
                                        : "scale");
  json_builder_set_member_name (b, "max_train_samples");
  json_builder_add_int_value (b, c->max_train_samples);
  json_builder_set_member_name (b, "checkpoint_path");
  if (c->checkpoint_path)
    json_builder_add_string_value (b, c->checkpoint_path);
  else
    json_builder_add_null_value (b);
  json_builder_set_member_name (b, "resume");
  json_builder_add_boolean_value (b, c->resume);
  json_builder_set_member_name (b, "run_name");
  if (c->run_name)
    json_builder_add_string_value (b, c->run_name);
  else
    json_builder_add_null_value (b);
  json_builder_set_member_name (b, "profile");
  json_builder_add_boolean_value (b, c->profile);
  json_builder_set_member_name (b, "on_oom");
  json_builder_add_string_value (b, kilt_on_oom_name (c->on_oom));
  kilt_json_add_number (b, "label_smoothing", c->label_smoothing);

  json_builder_set_member_name (b, "optimizer");
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "type");
  json_builder_add_string_value (
      b, (guint)o->type < KILT_OPT_N_TYPES ? kilt_optimizer_name (o->type) : "sgd");
#define ADD_F(field) kilt_json_add_number (b, #field, o->field)
  ADD_F (lr);
  ADD_F (momentum);
  ADD_F (rho);
  ADD_F (beta1);
  ADD_F (beta2);
  ADD_F (epsilon);
  ADD_F (decay);
  ADD_F (weight_decay);
#undef ADD_F
  json_builder_set_member_name (b, "nesterov");
  json_builder_add_boolean_value (b, o->nesterov);
  json_builder_set_member_name (b, "lookahead");
  json_builder_add_boolean_value (b, o->lookahead);
  json_builder_set_member_name (b, "schedule");
  json_builder_add_string_value (b, (guint)o->schedule.type < KILT_LR_N_SCHEDULES
                                        ? kilt_lr_schedule_name (o->schedule.type)
                                        : "constant");
  kilt_json_add_number (b, "warmup_epochs", o->schedule.warmup_epochs);
  json_builder_set_member_name (b, "warmup_steps");
  json_builder_add_int_value (b, o->schedule.warmup_steps);
  kilt_json_add_number (b, "lr_start", o->schedule.start);
  kilt_json_add_number (b, "lr_final", o->schedule.final);
  kilt_json_add_number (b, "lr_peak", o->schedule.peak);
  json_builder_end_object (b);
  json_builder_end_object (b);

  root = json_builder_get_root (b);
  json_generator_set_root (gen, root);
  return json_generator_to_data (gen, NULL);
}

static char *
dup_member (JsonObject *o, const char *name)
{
  JsonNode *n = json_object_get_member (o, name);
  if (n == NULL || JSON_NODE_HOLDS_NULL (n) || json_node_get_value_type (n) != G_TYPE_STRING)
    return NULL;
  return g_strdup (json_node_get_string (n));
}

/* A finite number member, else @fallback (absent, null, or not a number). */
static double
get_number (JsonObject *o, const char *name, double fallback)
{
  double v = kilt_json_get_number (o, name);

  return isfinite (v) ? v : fallback;
}

/* Stores written before non-finite numbers were kept out hold bare nan.0 or inf.0 tokens (from
 * --val-split nan, say), which no JSON parser takes: those become null so that the rest of
 * the configuration still reads. NULL when there is none. */
static char *
null_non_finite (const char *json)
{
  g_autoptr (GRegex) re = g_regex_new ("(:\\s*)[-+]?(nan|inf(inity)?)(\\.0)?(?=\\s*[,}\\]])",
                                       G_REGEX_CASELESS, 0, NULL);
  char *fixed = re ? g_regex_replace (re, json, -1, 0, "\\1null", 0, NULL) : NULL;

  if (fixed && strcmp (fixed, json) == 0)
    g_clear_pointer (&fixed, g_free);
  return fixed;
}

gboolean
kilt_run_config_from_json (const char *json, KiltTrainConfig *out, GError **error)
{
  g_autoptr (JsonParser) parser = json_parser_new ();
  JsonObject *o, *opt;
  const char *s;

  memset (out, 0, sizeof *out);
  if (!json_parser_load_from_data (parser, json, -1, NULL))
    {
      g_autofree char *fixed = null_non_finite (json);
      if (fixed == NULL || !json_parser_load_from_data (parser, fixed, -1, error))
        {
          if (fixed == NULL)
            json_parser_load_from_data (parser, json, -1, error);
          g_prefix_error (error, "a stored run configuration does not parse: ");
          return FALSE;
        }
    }
  if (json_parser_get_root (parser) == NULL
      || !JSON_NODE_HOLDS_OBJECT (json_parser_get_root (parser)))
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_INVALID,
                   "a run configuration must be a JSON object");
      return FALSE;
    }
  o = json_node_get_object (json_parser_get_root (parser));
  out->device_id = dup_member (o, "device_id");
  if (json_object_has_member (o, "devices"))
    {
      JsonNode *n = json_object_get_member (o, "devices");
      JsonArray *a = JSON_NODE_HOLDS_ARRAY (n) ? json_node_get_array (n) : NULL;
      guint len = a ? json_array_get_length (a) : 0;
      if (a == NULL || len < 2 || len > KILT_MAX_DEVICES)
        {
          g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_INVALID,
                       "a run configuration's \"devices\" must be a list of 2 to %d device names",
                       KILT_MAX_DEVICES);
          kilt_train_config_clear (out);
          return FALSE;
        }
      out->devices = g_new0 (char *, len + 1);
      for (guint i = 0; i < len; i++)
        {
          JsonNode *e = json_array_get_element (a, i);
          if (!JSON_NODE_HOLDS_VALUE (e) || json_node_get_value_type (e) != G_TYPE_STRING)
            {
              g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_INVALID,
                           "a run configuration's \"devices\" entry %u is not a string", i + 1);
              kilt_train_config_clear (out);
              return FALSE;
            }
          out->devices[i] = g_strdup (json_node_get_string (e));
        }
    }
  out->epochs = json_object_get_int_member_with_default (o, "epochs", 0);
  out->batch = json_object_get_int_member_with_default (o, "batch", 0);
  out->seed = (guint32)json_object_get_int_member_with_default (o, "seed", 0);
  out->val_fraction = get_number (o, "val_fraction", 0);
  out->augment = json_object_get_boolean_member_with_default (o, "augment", FALSE);
  {
    /* Runs recorded before the setting had none. */
    gint64 t = json_object_get_int_member_with_default (o, "translate", 0);
    out->translate = t > 0 && t <= G_MAXUINT ? (guint)t : 0;
  }
  out->tta_flip = json_object_get_boolean_member_with_default (o, "tta_flip", FALSE);
  out->alternate_flip = json_object_get_boolean_member_with_default (o, "alternate_flip", FALSE);
  /* Runs recorded before the setting trained in fp32. */
  if (!kilt_precision_from_name (
          json_object_get_string_member_with_default (o, "precision", "fp32"), &out->precision))
    out->precision = KILT_PRECISION_FP32;
  /* Runs recorded before the setting chose as auto does now. */
  if (!kilt_memory_mode_from_name (json_object_get_string_member_with_default (o, "memory", "auto"),
                                   &out->memory))
    out->memory = KILT_MEMORY_AUTO;
  s = json_object_get_string_member_with_default (o, "preprocess", "scale");
  out->preprocess
      = g_strcmp0 (s, "standard") == 0 ? KILT_PREPROCESS_STANDARD : KILT_PREPROCESS_SCALE;
  out->max_train_samples = json_object_get_int_member_with_default (o, "max_train_samples", 0);
  out->checkpoint_path = dup_member (o, "checkpoint_path");
  out->resume = json_object_get_boolean_member_with_default (o, "resume", FALSE);
  out->run_name = dup_member (o, "run_name");
  out->profile = json_object_get_boolean_member_with_default (o, "profile", FALSE);
  /* Runs recorded before the setting failed when the device ran out of memory. */
  if (!kilt_on_oom_from_name (json_object_get_string_member_with_default (o, "on_oom", "fail"),
                              &out->on_oom))
    out->on_oom = KILT_ON_OOM_FAIL;
  if (json_object_has_member (o, "optimizer")
      && JSON_NODE_HOLDS_OBJECT (json_object_get_member (o, "optimizer")))
    {
      opt = json_object_get_object_member (o, "optimizer");
      s = json_object_get_string_member_with_default (opt, "type", "sgd");
      if (!kilt_optimizer_from_name (s, &out->opt.type))
        out->opt.type = KILT_OPT_SGD;
      /* What is missing (or was not a finite number) gets the optimizer's default. */
      out->opt = kilt_optimizer_config_default (out->opt.type);
#define GET_F(field) out->opt.field = get_number (opt, #field, out->opt.field)
      GET_F (lr);
      GET_F (momentum);
      GET_F (rho);
      GET_F (beta1);
      GET_F (beta2);
      GET_F (epsilon);
      GET_F (decay);
      GET_F (weight_decay);
#undef GET_F
      out->opt.nesterov = json_object_get_boolean_member_with_default (opt, "nesterov", FALSE);
      out->opt.lookahead = json_object_get_boolean_member_with_default (opt, "lookahead", FALSE);
      /* Runs recorded before schedules kept the rate constant (but for the time decay). */
      if (!kilt_lr_schedule_from_name (
              json_object_get_string_member_with_default (opt, "schedule", "constant"),
              &out->opt.schedule.type))
        out->opt.schedule.type = KILT_LR_CONSTANT;
      out->opt.schedule.warmup_epochs = get_number (opt, "warmup_epochs", 0);
      {
        gint64 w = json_object_get_int_member_with_default (opt, "warmup_steps", 0);
        out->opt.schedule.warmup_steps = w > 0 && w <= G_MAXUINT ? (guint)w : 0;
      }
      out->opt.schedule.start = get_number (opt, "lr_start", out->opt.schedule.start);
      out->opt.schedule.final = get_number (opt, "lr_final", out->opt.schedule.final);
      out->opt.schedule.peak = get_number (opt, "lr_peak", out->opt.schedule.peak);
    }
  /* Runs recorded before the setting had none. */
  out->label_smoothing = get_number (o, "label_smoothing", 0);
  return TRUE;
}

/* ---- data specs ---- */

void
kilt_data_spec_init (KiltDataSpec *spec, const char *source, const KiltLoadOptions *options)
{
  memset (spec, 0, sizeof *spec);
  spec->source = g_strdup (source);
  if (options)
    spec->options = *options;
  else
    kilt_load_options_init (&spec->options);
  spec->label_column = g_strdup (spec->options.label_column);
  spec->options.label_column = spec->label_column;
}

void
kilt_data_spec_copy (KiltDataSpec *dest, const KiltDataSpec *src)
{
  kilt_data_spec_init (dest, src->source, &src->options);
}

void
kilt_data_spec_clear (KiltDataSpec *spec)
{
  g_clear_pointer (&spec->source, g_free);
  g_clear_pointer (&spec->label_column, g_free);
  spec->options.label_column = NULL;
}

char *
kilt_data_spec_to_json (const KiltDataSpec *spec)
{
  g_autoptr (JsonBuilder) b = json_builder_new ();
  g_autoptr (JsonGenerator) gen = json_generator_new ();
  g_autoptr (JsonNode) root = NULL;
  const KiltLoadOptions *o = &spec->options;
  char delimiter[2] = { o->delimiter, 0 };

  json_builder_begin_object (b);
#define ADD_S(name, v)                                                                             \
  json_builder_set_member_name (b, name);                                                          \
  if (v)                                                                                           \
    json_builder_add_string_value (b, v);                                                          \
  else                                                                                             \
    json_builder_add_null_value (b)
#define ADD_I(name, v)                                                                             \
  json_builder_set_member_name (b, name);                                                          \
  json_builder_add_int_value (b, (gint64)(v))
#define ADD_B(name, v)                                                                             \
  json_builder_set_member_name (b, name);                                                          \
  json_builder_add_boolean_value (b, (v) != 0)
  ADD_S ("source", spec->source);
  ADD_I ("image_width", o->image_width);
  ADD_I ("image_height", o->image_height);
  ADD_B ("grayscale", o->grayscale);
  ADD_S ("fit", o->fit == KILT_FIT_CROP ? "crop" : "resize");
  json_builder_set_member_name (b, "max_bad_fraction");
  json_builder_add_double_value (b, o->max_bad_fraction);
  json_builder_set_member_name (b, "delimiter");
  if (o->delimiter)
    json_builder_add_string_value (b, delimiter);
  else
    json_builder_add_null_value (b);
  ADD_S ("header", o->header == KILT_HEADER_YES  ? "yes"
                   : o->header == KILT_HEADER_NO ? "no"
                                                 : "auto");
  ADD_S ("label_column", spec->label_column);
  ADD_B ("drop_bad_rows", o->drop_bad_rows);
  ADD_B ("raw_features", o->raw_features);
  ADD_S ("task", o->task == KILT_TASK_REGRESSION ? "regression" : "classification");
  ADD_B ("cifar100_coarse", o->cifar100_coarse);
  ADD_I ("max_samples", o->max_samples);
#undef ADD_S
#undef ADD_I
#undef ADD_B
  json_builder_end_object (b);
  root = json_builder_get_root (b);
  json_generator_set_root (gen, root);
  return json_generator_to_data (gen, NULL);
}

gboolean
kilt_data_spec_from_json (const char *json, KiltDataSpec *out, GError **error)
{
  g_autoptr (JsonParser) parser = json_parser_new ();
  g_autofree char *source = NULL;
  g_autofree char *label = NULL;
  KiltLoadOptions o;
  JsonObject *obj;
  const char *s;

  memset (out, 0, sizeof *out);
  if (json == NULL || !json_parser_load_from_data (parser, json, -1, error))
    {
      if (json == NULL)
        g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_INVALID,
                     "this run does not say where its data came from (recorded by an older "
                     "Kilt)");
      return FALSE;
    }
  if (json_parser_get_root (parser) == NULL
      || !JSON_NODE_HOLDS_OBJECT (json_parser_get_root (parser)))
    goto bad;
  obj = json_node_get_object (json_parser_get_root (parser));
  source = dup_member (obj, "source");
  if (source == NULL || *source == '\0')
    goto bad;
  kilt_load_options_init (&o);
  o.image_width = (guint)json_object_get_int_member_with_default (obj, "image_width", 0);
  o.image_height = (guint)json_object_get_int_member_with_default (obj, "image_height", 0);
  o.grayscale = json_object_get_boolean_member_with_default (obj, "grayscale", FALSE);
  s = json_object_get_string_member_with_default (obj, "fit", "resize");
  o.fit = g_strcmp0 (s, "crop") == 0 ? KILT_FIT_CROP : KILT_FIT_RESIZE;
  o.max_bad_fraction
      = json_object_get_double_member_with_default (obj, "max_bad_fraction", o.max_bad_fraction);
  {
    g_autofree char *d = dup_member (obj, "delimiter");
    o.delimiter = d && strlen (d) == 1 ? d[0] : 0;
  }
  s = json_object_get_string_member_with_default (obj, "header", "auto");
  o.header = g_strcmp0 (s, "yes") == 0  ? KILT_HEADER_YES
             : g_strcmp0 (s, "no") == 0 ? KILT_HEADER_NO
                                        : KILT_HEADER_AUTO;
  label = dup_member (obj, "label_column");
  o.label_column = label;
  o.drop_bad_rows = json_object_get_boolean_member_with_default (obj, "drop_bad_rows", FALSE);
  o.raw_features = json_object_get_boolean_member_with_default (obj, "raw_features", FALSE);
  s = json_object_get_string_member_with_default (obj, "task", "classification");
  o.task = g_strcmp0 (s, "regression") == 0 ? KILT_TASK_REGRESSION : KILT_TASK_CLASSIFICATION;
  o.cifar100_coarse = json_object_get_boolean_member_with_default (obj, "cifar100_coarse", FALSE);
  o.max_samples = (guint)json_object_get_int_member_with_default (obj, "max_samples", 0);
  kilt_data_spec_init (out, source, &o);
  return TRUE;

bad:
  g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_INVALID,
               "a data source must be a JSON object with a \"source\" string");
  return FALSE;
}

/* ---- writing ---- */

gboolean
kilt_run_store_begin_run (KiltRunStore *store, const KiltRunRecord *r, gint64 *out_id,
                          GError **error)
{
  g_autoptr (sqlite3_stmt) stmt = NULL;
  g_autofree char *config = kilt_run_config_to_json (&r->config);
  g_autofree char *boot = read_boot_id ();
  gboolean exists, zombie;
  guint64 start = process_start_time (getpid (), &exists, &zombie);
  gint64 now = g_get_real_time ();
  gint64 id = 0;
  gboolean ok;
  int i = 1;

  g_return_val_if_fail (store != NULL && r != NULL, FALSE);

  if (!begin (store, error))
    return FALSE;
  stmt = prepare (
      store,
      "INSERT INTO runs (name, status, started_at, updated_at, pid, process_start, boot_id,"
      " hostname, model_name, model_json, data_description, data_hash, device_id, device_name,"
      " device_vendor, device_type, device_driver, device_opencl_version, kilt_version,"
      " clblast_version, platform_name, platform_version, config_json, seed, flops_per_sample,"
      " n_params, train_samples, steps_per_epoch, compile_seconds, compile_cached)"
      " VALUES (?, 'running', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?,"
      " ?, ?, ?, ?, ?, ?)",
      error);
  if (stmt == NULL)
    return commit (store, FALSE, error);
  /* The window and the CLI refuse such a name first; a caller that did not gets it mended. */
  if (r->name && !g_utf8_validate (r->name, -1, NULL))
    {
      g_autofree char *valid = g_utf8_make_valid (r->name, -1);
      bind_text (stmt, i++, valid);
    }
  else
    bind_text (stmt, i++, r->name ? r->name : "");
  sqlite3_bind_int64 (stmt, i++, now);
  sqlite3_bind_int64 (stmt, i++, now);
  sqlite3_bind_int64 (stmt, i++, getpid ());
  sqlite3_bind_int64 (stmt, i++, (gint64)start);
  bind_text (stmt, i++, boot);
  bind_text (stmt, i++, g_get_host_name ());
  bind_text (stmt, i++, r->model_name);
  bind_text (stmt, i++, r->model_json);
  bind_text (stmt, i++, r->data_description);
  bind_text (stmt, i++, r->data_hash);
  bind_text (stmt, i++, r->device_id);
  bind_text (stmt, i++, r->device_name);
  bind_text (stmt, i++, r->device_vendor);
  bind_text (stmt, i++, r->device_type);
  bind_text (stmt, i++, r->device_driver);
  bind_text (stmt, i++, r->device_opencl_version);
  bind_text (stmt, i++, r->kilt_version);
  bind_text (stmt, i++, r->clblast_version);
  bind_text (stmt, i++, r->platform_name);
  bind_text (stmt, i++, r->platform_version);
  bind_text (stmt, i++, config);
  sqlite3_bind_int64 (stmt, i++, r->config.seed);
  sqlite3_bind_int64 (stmt, i++, (gint64)r->flops_per_sample);
  sqlite3_bind_int64 (stmt, i++, (gint64)r->n_params);
  sqlite3_bind_int64 (stmt, i++, (gint64)r->train_samples);
  sqlite3_bind_int64 (stmt, i++, r->steps_per_epoch);
  bind_real (stmt, i++, r->compile_seconds);
  sqlite3_bind_int (stmt, i++, r->compile_cached ? 1 : 0);
  ok = step_done (store, stmt, error, "recording a new run");
  id = sqlite3_last_insert_rowid (store->db);
  if (ok && out_id)
    *out_id = id;
  /* Older files (opened at an older version by tests) have no column for it. */
  if (ok && r->data_spec && store->version >= 3)
    {
      g_autoptr (sqlite3_stmt) up
          = prepare (store, "UPDATE runs SET data_spec = ? WHERE id = ?", error);
      ok = up != NULL;
      if (ok)
        {
          bind_text (up, 1, r->data_spec);
          sqlite3_bind_int64 (up, 2, id);
          ok = step_done (store, up, error, "recording a new run's data");
        }
    }
  if (ok && r->checkpoint_token && store->version >= 5)
    {
      g_autoptr (sqlite3_stmt) up
          = prepare (store, "UPDATE runs SET checkpoint_token = ? WHERE id = ?", error);
      ok = up != NULL;
      if (ok)
        {
          sqlite3_bind_int64 (up, 1, (gint64)r->checkpoint_token);
          sqlite3_bind_int64 (up, 2, id);
          ok = step_done (store, up, error, "recording a new run's checkpoint token");
        }
    }
  return commit (store, ok, error);
}

/* Inside a write transaction: fails when the run is absent, else stamps its updated_at. */
static gboolean
touch_run (KiltRunStore *store, gint64 id, GError **error)
{
  g_autoptr (sqlite3_stmt) stmt = NULL;

  stmt = prepare (store, "UPDATE runs SET updated_at = ? WHERE id = ?", error);
  if (stmt == NULL)
    return FALSE;
  sqlite3_bind_int64 (stmt, 1, g_get_real_time ());
  sqlite3_bind_int64 (stmt, 2, id);
  if (!step_done (store, stmt, error, "updating a run"))
    return FALSE;
  if (sqlite3_changes (store->db) == 0)
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_INVALID,
                   "run store %s has no run %" G_GINT64_FORMAT, store->path, id);
      return FALSE;
    }
  return TRUE;
}

gboolean
kilt_run_store_add_epoch (KiltRunStore *store, gint64 id, const KiltEpochRecord *e, GError **error)
{
  g_autoptr (sqlite3_stmt) stmt = NULL;
  gboolean has_lr = store->version >= 7;
  gboolean ok;
  int i = 1;

  if (!begin (store, error))
    return FALSE;
  ok = touch_run (store, id, error);
  if (ok)
    {
      g_autofree char *sql = g_strdup_printf (
          "INSERT OR REPLACE INTO epochs (run_id, epoch, train_loss, train_accuracy,"
          " val_loss, val_accuracy, wall_seconds, elapsed_seconds, samples_per_second,"
          " compile_seconds, busy_percent, peak_weights, peak_gradients,"
          " peak_optimizer, peak_activations, peak_workspace, peak_dataset,"
          " peak_total%s) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?%s)",
          has_lr ? ", learning_rate" : "", has_lr ? ", ?" : "");
      stmt = prepare (store, sql, error);
      ok = stmt != NULL;
    }
  if (ok)
    {
      sqlite3_bind_int64 (stmt, i++, id);
      sqlite3_bind_int (stmt, i++, (int)e->epoch);
      bind_real (stmt, i++, e->train_loss);
      bind_real (stmt, i++, e->train_accuracy);
      bind_real (stmt, i++, e->val_loss);
      bind_real (stmt, i++, e->val_accuracy);
      bind_real (stmt, i++, e->wall_seconds);
      bind_real (stmt, i++, e->elapsed_seconds);
      bind_real (stmt, i++, e->samples_per_second);
      bind_real (stmt, i++, e->compile_seconds);
      bind_real (stmt, i++, e->busy_percent);
      for (int c = 0; c < KILT_MEM_N_CATEGORIES; c++)
        sqlite3_bind_int64 (stmt, i++, e->peak_bytes[c]);
      sqlite3_bind_int64 (stmt, i++, e->peak_total);
      if (has_lr)
        bind_real (stmt, i++, e->learning_rate);
      ok = step_done (store, stmt, error, "recording an epoch");
    }
  return commit (store, ok, error);
}

static double
last_step_elapsed (KiltRunStore *store, gint64 id)
{
  g_autoptr (sqlite3_stmt) stmt = NULL;
  double *cached = g_hash_table_lookup (store->last_step, &id);

  if (cached)
    return *cached;
  /* Another connection may have written steps of this run before (a resumed run). */
  if (sqlite3_prepare_v2 (store->db, "SELECT max(elapsed_seconds) FROM steps WHERE run_id = ?", -1,
                          &stmt, NULL)
          != SQLITE_OK
      || (sqlite3_bind_int64 (stmt, 1, id), sqlite3_step (stmt)) != SQLITE_ROW)
    return -INFINITY;
  return sqlite3_column_type (stmt, 0) == SQLITE_NULL ? -INFINITY : sqlite3_column_double (stmt, 0);
}

gboolean
kilt_run_store_add_step (KiltRunStore *store, gint64 id, const KiltStepRecord *s,
                         gboolean *out_kept, GError **error)
{
  g_autoptr (sqlite3_stmt) stmt = NULL;
  gboolean ok;

  if (out_kept)
    *out_kept = FALSE;
  if (!need_version (store, 2, error))
    return FALSE;
  if (s->elapsed_seconds - last_step_elapsed (store, id) < STEP_INTERVAL)
    return TRUE;

  if (!begin (store, error))
    return FALSE;
  ok = touch_run (store, id, error);
  if (ok)
    {
      stmt = prepare (store,
                      store->version >= 7
                          ? "INSERT OR REPLACE INTO steps (run_id, global_step, epoch, step,"
                            " elapsed_seconds, loss, accuracy, samples_per_second, learning_rate)"
                            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
                          : "INSERT OR REPLACE INTO steps (run_id, global_step, epoch, step,"
                            " elapsed_seconds, loss, accuracy, samples_per_second)"
                            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                      error);
      ok = stmt != NULL;
    }
  if (ok)
    {
      sqlite3_bind_int64 (stmt, 1, id);
      sqlite3_bind_int64 (stmt, 2, (gint64)s->global_step);
      sqlite3_bind_int (stmt, 3, (int)s->epoch);
      sqlite3_bind_int (stmt, 4, (int)s->step);
      sqlite3_bind_double (stmt, 5, s->elapsed_seconds);
      bind_real (stmt, 6, s->loss);
      bind_real (stmt, 7, s->accuracy);
      bind_real (stmt, 8, s->samples_per_second);
      if (store->version >= 7)
        bind_real (stmt, 9, s->learning_rate);
      ok = step_done (store, stmt, error, "recording a step");
    }
  if (!commit (store, ok, error))
    return FALSE;
  {
    gint64 *key = g_new (gint64, 1);
    double *val = g_new (double, 1);
    *key = id;
    *val = s->elapsed_seconds;
    g_hash_table_replace (store->last_step, key, val);
  }
  if (out_kept)
    *out_kept = TRUE;
  return TRUE;
}

gboolean
kilt_run_store_set_scaling (KiltRunStore *store, gint64 id, const KiltRunScaling *scaling,
                            GError **error)
{
  g_autoptr (sqlite3_stmt) up = NULL;
  g_autofree char *json = NULL;
  gboolean ok;

  /* A store kept at an older version has nowhere to put it: nothing is lost that it had. */
  if (store->version < 6)
    return TRUE;
  if (!begin (store, error))
    return FALSE;
  ok = touch_run (store, id, error);
  if (ok)
    ok = (up = prepare (store, "UPDATE runs SET scaling_json = ? WHERE id = ?", error)) != NULL;
  if (ok)
    {
      json = scaling ? kilt_run_scaling_to_json (scaling) : NULL;
      bind_text (up, 1, json);
      sqlite3_bind_int64 (up, 2, id);
      ok = step_done (store, up, error, "recording the run's devices");
    }
  return commit (store, ok, error);
}

gboolean
kilt_run_store_set_layer_timings (KiltRunStore *store, gint64 id, GArray *timings, GError **error)
{
  g_autoptr (sqlite3_stmt) del = NULL;
  g_autoptr (sqlite3_stmt) ins = NULL;
  gboolean ok;

  if (!begin (store, error))
    return FALSE;
  ok = touch_run (store, id, error);
  if (ok)
    {
      del = prepare (store, "DELETE FROM layer_timings WHERE run_id = ?", error);
      /* A store kept at an older version (kilt_run_store_open_version) has no algo column. */
      ins = prepare (store,
                     store->version >= 4
                         ? "INSERT INTO layer_timings (run_id, position, layer, type, forward_ms,"
                           " backward_ms, update_ms, algo) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
                         : "INSERT INTO layer_timings (run_id, position, layer, type, forward_ms,"
                           " backward_ms, update_ms) VALUES (?, ?, ?, ?, ?, ?, ?)",
                     error);
      ok = del && ins;
    }
  if (ok)
    {
      sqlite3_bind_int64 (del, 1, id);
      ok = step_done (store, del, error, "replacing layer timings");
    }
  for (guint i = 0; ok && timings && i < timings->len; i++)
    {
      const KiltLayerTiming *t = &g_array_index (timings, KiltLayerTiming, i);
      sqlite3_reset (ins);
      sqlite3_bind_int64 (ins, 1, id);
      sqlite3_bind_int (ins, 2, (int)i);
      bind_text (ins, 3, t->layer ? t->layer : "");
      bind_text (ins, 4, t->type);
      bind_real (ins, 5, t->forward_ms);
      bind_real (ins, 6, t->backward_ms);
      bind_real (ins, 7, t->update_ms);
      if (store->version >= 4)
        bind_text (ins, 8, t->algo);
      ok = step_done (store, ins, error, "recording layer timings");
    }
  return commit (store, ok, error);
}

gboolean
kilt_run_store_finish_run (KiltRunStore *store, gint64 id, KiltRunStatus status,
                           const char *error_message, double test_loss, double test_accuracy,
                           GError **error)
{
  g_autoptr (sqlite3_stmt) stmt = NULL;
  gboolean ok;

  g_return_val_if_fail (status != KILT_RUN_RUNNING, FALSE);

  if (!begin (store, error))
    return FALSE;
  ok = touch_run (store, id, error);
  if (ok)
    {
      stmt = prepare (store,
                      "UPDATE runs SET status = ?, error_message = ?, ended_at = updated_at,"
                      " test_loss = ?, test_accuracy = ? WHERE id = ?",
                      error);
      ok = stmt != NULL;
    }
  if (ok)
    {
      bind_text (stmt, 1, kilt_run_store_status_name (status));
      bind_text (stmt, 2, error_message);
      bind_real (stmt, 3, test_loss);
      bind_real (stmt, 4, test_accuracy);
      sqlite3_bind_int64 (stmt, 5, id);
      ok = step_done (store, stmt, error, "finishing a run");
    }
  g_hash_table_remove (store->last_step, &id);
  return commit (store, ok, error);
}

gboolean
kilt_run_store_add_change (KiltRunStore *store, gint64 id, const char *note,
                           const KiltTrainConfig *config, guint steps_per_epoch, guint epochs_done,
                           guint64 global_step, GError **error)
{
  g_autofree char *json = kilt_run_config_to_json (config);
  g_autofree char *valid = g_utf8_make_valid (note, -1);
  static const char *const sql[] = {
    "UPDATE runs SET notes = CASE WHEN notes IS NULL OR notes = '' THEN ?1"
    " ELSE notes || char(10) || ?1 END, config_json = ?2, steps_per_epoch = ?3 WHERE id = ?4",
    "DELETE FROM steps WHERE run_id = ?4 AND global_step > ?5",
    "DELETE FROM epochs WHERE run_id = ?4 AND epoch > ?6",
  };
  gboolean ok;

  g_return_val_if_fail (store != NULL && note != NULL && config != NULL, FALSE);
  if (store->version < 8)
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_IO,
                   "run store %s is at schema version %d, which keeps no notes", store->path,
                   store->version);
      return FALSE;
    }
  if (!begin (store, error))
    return FALSE;
  ok = touch_run (store, id, error);
  for (guint i = 0; ok && i < G_N_ELEMENTS (sql); i++)
    {
      g_autoptr (sqlite3_stmt) stmt = prepare (store, sql[i], error);
      ok = stmt != NULL;
      if (!ok)
        break;
      /* Each statement uses some of the numbered parameters. */
      if (sqlite3_bind_parameter_index (stmt, "?1"))
        bind_text (stmt, sqlite3_bind_parameter_index (stmt, "?1"), valid);
      if (sqlite3_bind_parameter_index (stmt, "?2"))
        bind_text (stmt, sqlite3_bind_parameter_index (stmt, "?2"), json);
      if (sqlite3_bind_parameter_index (stmt, "?3"))
        sqlite3_bind_int64 (stmt, sqlite3_bind_parameter_index (stmt, "?3"), steps_per_epoch);
      sqlite3_bind_int64 (stmt, sqlite3_bind_parameter_index (stmt, "?4"), id);
      if (sqlite3_bind_parameter_index (stmt, "?5"))
        sqlite3_bind_int64 (stmt, sqlite3_bind_parameter_index (stmt, "?5"), (gint64)global_step);
      if (sqlite3_bind_parameter_index (stmt, "?6"))
        sqlite3_bind_int64 (stmt, sqlite3_bind_parameter_index (stmt, "?6"), epochs_done);
      ok = step_done (store, stmt, error, "recording what changed in a run");
    }
  /* The run's sampled steps start again from @global_step. */
  g_hash_table_remove (store->last_step, &id);
  return commit (store, ok, error);
}

/* ---- reading ---- */

void
kilt_run_record_clear (KiltRunRecord *r)
{
  g_clear_pointer (&r->name, g_free);
  g_clear_pointer (&r->model_name, g_free);
  g_clear_pointer (&r->model_json, g_free);
  g_clear_pointer (&r->data_description, g_free);
  g_clear_pointer (&r->data_hash, g_free);
  g_clear_pointer (&r->data_spec, g_free);
  g_clear_pointer (&r->device_id, g_free);
  g_clear_pointer (&r->device_name, g_free);
  g_clear_pointer (&r->device_vendor, g_free);
  g_clear_pointer (&r->device_type, g_free);
  g_clear_pointer (&r->device_driver, g_free);
  g_clear_pointer (&r->device_opencl_version, g_free);
  g_clear_pointer (&r->kilt_version, g_free);
  g_clear_pointer (&r->clblast_version, g_free);
  g_clear_pointer (&r->platform_name, g_free);
  g_clear_pointer (&r->platform_version, g_free);
  kilt_train_config_clear (&r->config);
}

void
kilt_run_free (KiltRun *run)
{
  if (run == NULL)
    return;
  kilt_run_record_clear (&run->record);
  g_free (run->config_json);
  g_free (run->error_message);
  g_free (run->notes);
  g_free (run->hostname);
  g_clear_pointer (&run->tags, g_ptr_array_unref);
  g_clear_pointer (&run->epochs, g_array_unref);
  g_clear_pointer (&run->layer_timings, g_array_unref);
  g_clear_pointer (&run->steps, g_array_unref);
  kilt_run_scaling_free (run->scaling);
  g_free (run);
}

#define RUN_COLUMNS                                                                                \
  "id, name, status, error_message, started_at, ended_at, pid, hostname, model_name,"              \
  " model_json, data_description, data_hash, device_id, device_name, device_vendor,"               \
  " device_type, device_driver, device_opencl_version, kilt_version, clblast_version,"             \
  " platform_name, platform_version, config_json, flops_per_sample, n_params, train_samples,"      \
  " steps_per_epoch, compile_seconds, compile_cached, test_loss, test_accuracy, process_start,"    \
  " boot_id"

static KiltRun *
run_from_row (sqlite3_stmt *s)
{
  KiltRun *run = g_new0 (KiltRun, 1);
  KiltRunRecord *r = &run->record;
  g_autofree char *status = NULL;
  int i = 0;

  run->id = sqlite3_column_int64 (s, i++);
  r->name = col_text (s, i++);
  status = col_text (s, i++);
  if (!kilt_run_store_status_from_name (status, &run->status))
    run->status = KILT_RUN_FAILED;
  run->error_message = col_text (s, i++);
  run->started_at = sqlite3_column_int64 (s, i++);
  run->ended_at = sqlite3_column_int64 (s, i++);
  run->pid = sqlite3_column_int64 (s, i++);
  run->hostname = col_text (s, i++);
  r->model_name = col_text (s, i++);
  r->model_json = col_text (s, i++);
  r->data_description = col_text (s, i++);
  r->data_hash = col_text (s, i++);
  r->device_id = col_text (s, i++);
  r->device_name = col_text (s, i++);
  r->device_vendor = col_text (s, i++);
  r->device_type = col_text (s, i++);
  r->device_driver = col_text (s, i++);
  r->device_opencl_version = col_text (s, i++);
  r->kilt_version = col_text (s, i++);
  r->clblast_version = col_text (s, i++);
  r->platform_name = col_text (s, i++);
  r->platform_version = col_text (s, i++);
  run->config_json = col_text (s, i++);
  r->flops_per_sample = (guint64)sqlite3_column_int64 (s, i++);
  r->n_params = (guint64)sqlite3_column_int64 (s, i++);
  r->train_samples = (guint64)sqlite3_column_int64 (s, i++);
  r->steps_per_epoch = (guint)sqlite3_column_int64 (s, i++);
  r->compile_seconds = col_real (s, i++);
  r->compile_cached = sqlite3_column_int (s, i++) != 0;
  run->test_loss = col_real (s, i++);
  run->test_accuracy = col_real (s, i++);
  /* A store opened read-only was not marked: a run whose process is gone reads as what it
   * is. */
  if (run->status == KILT_RUN_RUNNING && g_strcmp0 (run->hostname, g_get_host_name ()) == 0)
    {
      guint64 start = (guint64)sqlite3_column_int64 (s, i++);
      const char *boot = (const char *)sqlite3_column_text (s, i++);
      if (!process_alive (run->pid, start, boot))
        {
          run->status = KILT_RUN_INTERRUPTED;
          if (run->error_message == NULL)
            run->error_message = g_strdup_printf (
                "the process (pid %" G_GINT64_FORMAT ") ended before the run finished", run->pid);
        }
    }
  if (run->config_json && !kilt_run_config_from_json (run->config_json, &r->config, NULL))
    g_warning ("run %" G_GINT64_FORMAT ": its stored configuration does not parse", run->id);
  if (r->name == NULL || *r->name == '\0')
    {
      g_free (r->name);
      r->name = g_strdup_printf ("run %" G_GINT64_FORMAT, run->id);
    }
  run->tags = g_ptr_array_new_with_free_func (g_free);
  run->epochs = g_array_new (FALSE, TRUE, sizeof (KiltEpochRecord));
  run->layer_timings = g_array_new (FALSE, TRUE, sizeof (KiltLayerTiming));
  g_array_set_clear_func (run->layer_timings, kilt_layer_timing_clear);
  return run;
}

static gboolean
load_details (KiltRunStore *store, KiltRun *run, GError **error)
{
  g_autoptr (sqlite3_stmt) ep = NULL;
  g_autoptr (sqlite3_stmt) lt = NULL;
  int rc;

  ep = prepare (store,
                store->version >= 7
                    ? "SELECT epoch, train_loss, train_accuracy, val_loss, val_accuracy,"
                      " wall_seconds, elapsed_seconds, samples_per_second, compile_seconds,"
                      " busy_percent, peak_weights, peak_gradients, peak_optimizer,"
                      " peak_activations, peak_workspace, peak_dataset, peak_total, learning_rate"
                      " FROM epochs WHERE run_id = ? ORDER BY epoch"
                    : "SELECT epoch, train_loss, train_accuracy, val_loss, val_accuracy,"
                      " wall_seconds, elapsed_seconds, samples_per_second, compile_seconds,"
                      " busy_percent, peak_weights, peak_gradients, peak_optimizer,"
                      " peak_activations, peak_workspace, peak_dataset, peak_total"
                      " FROM epochs WHERE run_id = ? ORDER BY epoch",
                error);
  if (ep == NULL)
    return FALSE;
  sqlite3_bind_int64 (ep, 1, run->id);
  while ((rc = sqlite3_step (ep)) == SQLITE_ROW)
    {
      KiltEpochRecord e = { 0 };
      int i = 0;
      e.epoch = (guint)sqlite3_column_int (ep, i++);
      e.train_loss = col_real (ep, i++);
      e.train_accuracy = col_real (ep, i++);
      e.val_loss = col_real (ep, i++);
      e.val_accuracy = col_real (ep, i++);
      e.wall_seconds = col_real (ep, i++);
      e.elapsed_seconds = col_real (ep, i++);
      e.samples_per_second = col_real (ep, i++);
      e.compile_seconds = col_real (ep, i++);
      e.busy_percent = col_real (ep, i++);
      for (int c = 0; c < KILT_MEM_N_CATEGORIES; c++)
        e.peak_bytes[c] = sqlite3_column_int64 (ep, i++);
      e.peak_total = sqlite3_column_int64 (ep, i++);
      e.learning_rate = store->version >= 7 ? col_real (ep, i++) : NAN;
      g_array_append_val (run->epochs, e);
    }
  if (rc != SQLITE_DONE)
    return set_db_error (store, error, "reading epochs");

  lt = prepare (store,
                store->version >= 4
                    ? "SELECT layer, type, forward_ms, backward_ms, update_ms, algo FROM"
                      " layer_timings WHERE run_id = ? ORDER BY position"
                    : "SELECT layer, type, forward_ms, backward_ms, update_ms FROM layer_timings"
                      " WHERE run_id = ? ORDER BY position",
                error);
  if (lt == NULL)
    return FALSE;
  sqlite3_bind_int64 (lt, 1, run->id);
  while ((rc = sqlite3_step (lt)) == SQLITE_ROW)
    {
      KiltLayerTiming t = { 0 };
      t.layer = col_text (lt, 0);
      t.type = col_text (lt, 1);
      t.forward_ms = col_real (lt, 2);
      t.backward_ms = col_real (lt, 3);
      t.update_ms = col_real (lt, 4);
      if (store->version >= 4)
        t.algo = col_text (lt, 5);
      g_array_append_val (run->layer_timings, t);
    }
  if (rc != SQLITE_DONE)
    return set_db_error (store, error, "reading layer timings");

  if (store->version >= 2)
    {
      g_autoptr (sqlite3_stmt) tg = NULL;
      tg = prepare (store, "SELECT tag FROM run_tags WHERE run_id = ? ORDER BY tag", error);
      if (tg == NULL)
        return FALSE;
      sqlite3_bind_int64 (tg, 1, run->id);
      while ((rc = sqlite3_step (tg)) == SQLITE_ROW)
        g_ptr_array_add (run->tags, col_text (tg, 0));
      if (rc != SQLITE_DONE)
        return set_db_error (store, error, "reading tags");
    }
  if (store->version >= 3)
    {
      g_autoptr (sqlite3_stmt) ds = prepare (
          store,
          store->version >= 5 ? "SELECT data_spec, checkpoint_token FROM runs WHERE id = ?"
                              : "SELECT data_spec FROM runs WHERE id = ?",
          error);
      if (ds == NULL)
        return FALSE;
      sqlite3_bind_int64 (ds, 1, run->id);
      if ((rc = sqlite3_step (ds)) == SQLITE_ROW)
        {
          run->record.data_spec = col_text (ds, 0);
          if (store->version >= 5)
            run->record.checkpoint_token = (guint64)sqlite3_column_int64 (ds, 1);
        }
      else if (rc != SQLITE_DONE)
        return set_db_error (store, error, "reading the data source");
    }
  if (store->version >= 6)
    {
      g_autoptr (sqlite3_stmt) sc
          = prepare (store, "SELECT scaling_json FROM runs WHERE id = ?", error);
      if (sc == NULL)
        return FALSE;
      sqlite3_bind_int64 (sc, 1, run->id);
      if ((rc = sqlite3_step (sc)) == SQLITE_ROW && sqlite3_column_type (sc, 0) != SQLITE_NULL)
        {
          g_autoptr (GError) local = NULL;
          g_autofree char *json = col_text (sc, 0);
          run->scaling = kilt_run_scaling_from_json (json, &local);
          /* The rest of the run is still worth showing. */
          if (run->scaling == NULL)
            g_warning ("run %" G_GINT64_FORMAT ": %s", run->id, local->message);
        }
      else if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return set_db_error (store, error, "reading the run's devices");
    }
  if (store->version >= 8)
    {
      g_autoptr (sqlite3_stmt) ns = prepare (store, "SELECT notes FROM runs WHERE id = ?", error);
      if (ns == NULL)
        return FALSE;
      sqlite3_bind_int64 (ns, 1, run->id);
      if ((rc = sqlite3_step (ns)) == SQLITE_ROW)
        run->notes = col_text (ns, 0);
      else if (rc != SQLITE_DONE)
        return set_db_error (store, error, "reading the run's notes");
    }
  return TRUE;
}

/* Reads under one read transaction so a run and its epochs come from one snapshot even while
 * another connection writes. */
static GPtrArray *
read_runs (KiltRunStore *store, gboolean one, gint64 id, GError **error)
{
  g_autoptr (GPtrArray) runs = g_ptr_array_new_with_free_func ((GDestroyNotify)kilt_run_free);
  g_autoptr (sqlite3_stmt) stmt = NULL;
  gboolean ok = TRUE;
  int rc = SQLITE_DONE;

  if (!exec (store, "BEGIN", error))
    return NULL;
  stmt = prepare (store,
                  one ? "SELECT " RUN_COLUMNS " FROM runs WHERE id = ?"
                      : "SELECT " RUN_COLUMNS " FROM runs ORDER BY started_at DESC, id DESC",
                  error);
  ok = stmt != NULL;
  if (ok && one)
    sqlite3_bind_int64 (stmt, 1, id);
  while (ok && (rc = sqlite3_step (stmt)) == SQLITE_ROW)
    g_ptr_array_add (runs, run_from_row (stmt));
  if (ok && rc != SQLITE_DONE)
    ok = set_db_error (store, error, "reading runs");
  for (guint i = 0; ok && i < runs->len; i++)
    ok = load_details (store, g_ptr_array_index (runs, i), error);
  g_clear_pointer (&stmt, sqlite3_finalize);
  sqlite3_exec (store->db, ok ? "COMMIT" : "ROLLBACK", NULL, NULL, NULL);
  return ok ? g_steal_pointer (&runs) : NULL;
}

GPtrArray *
kilt_run_store_list (KiltRunStore *store, GError **error)
{
  return read_runs (store, FALSE, 0, error);
}

KiltRun *
kilt_run_store_get (KiltRunStore *store, gint64 id, GError **error)
{
  g_autoptr (GPtrArray) runs = read_runs (store, TRUE, id, error);

  if (runs == NULL)
    return NULL;
  if (runs->len == 0)
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_INVALID,
                   "run store %s has no run %" G_GINT64_FORMAT, store->path, id);
      return NULL;
    }
  return g_ptr_array_steal_index (runs, 0);
}

GArray *
kilt_run_store_get_steps (KiltRunStore *store, gint64 id, GError **error)
{
  g_autoptr (sqlite3_stmt) stmt = NULL;
  g_autoptr (GArray) steps = g_array_new (FALSE, TRUE, sizeof (KiltStepRecord));
  int rc;

  if (store->version < 2)
    return g_steal_pointer (&steps);
  stmt = prepare (store,
                  store->version >= 7
                      ? "SELECT epoch, step, global_step, elapsed_seconds, loss, accuracy,"
                        " samples_per_second, learning_rate FROM steps WHERE run_id = ?"
                        " ORDER BY global_step"
                      : "SELECT epoch, step, global_step, elapsed_seconds, loss, accuracy,"
                        " samples_per_second FROM steps WHERE run_id = ? ORDER BY global_step",
                  error);
  if (stmt == NULL)
    return NULL;
  sqlite3_bind_int64 (stmt, 1, id);
  while ((rc = sqlite3_step (stmt)) == SQLITE_ROW)
    {
      KiltStepRecord s;
      s.epoch = (guint)sqlite3_column_int (stmt, 0);
      s.step = (guint)sqlite3_column_int (stmt, 1);
      s.global_step = (guint64)sqlite3_column_int64 (stmt, 2);
      s.elapsed_seconds = sqlite3_column_double (stmt, 3);
      s.loss = col_real (stmt, 4);
      s.accuracy = col_real (stmt, 5);
      s.samples_per_second = col_real (stmt, 6);
      s.learning_rate = store->version >= 7 ? col_real (stmt, 7) : NAN;
      g_array_append_val (steps, s);
    }
  if (rc != SQLITE_DONE)
    {
      set_db_error (store, error, "reading steps");
      return NULL;
    }
  return g_steal_pointer (&steps);
}

gboolean
kilt_run_store_load_steps (KiltRunStore *store, KiltRun *run, GError **error)
{
  GArray *steps = kilt_run_store_get_steps (store, run->id, error);

  if (steps == NULL)
    return FALSE;
  g_clear_pointer (&run->steps, g_array_unref);
  run->steps = steps;
  return TRUE;
}

/* ---- editing ---- */

static gboolean
edit (KiltRunStore *store, gint64 id, const char *sql, const char *text, const char *what,
      GError **error)
{
  g_autoptr (sqlite3_stmt) stmt = NULL;
  gboolean ok;

  if (!begin (store, error))
    return FALSE;
  ok = touch_run (store, id, error);
  if (ok)
    ok = (stmt = prepare (store, sql, error)) != NULL;
  if (ok)
    {
      if (text)
        {
          bind_text (stmt, 1, text);
          sqlite3_bind_int64 (stmt, 2, id);
        }
      else
        sqlite3_bind_int64 (stmt, 1, id);
      ok = step_done (store, stmt, error, what);
    }
  return commit (store, ok, error);
}

gboolean
kilt_run_store_rename (KiltRunStore *store, gint64 id, const char *name, GError **error)
{
  g_return_val_if_fail (name != NULL, FALSE);
  if (!check_text ("a run's name", name, error))
    return FALSE;
  return edit (store, id, "UPDATE runs SET name = ? WHERE id = ?", name, "renaming a run", error);
}

static gboolean
check_tag (const char *tag, GError **error)
{
  const char *p = tag;

  while (p && *p && g_ascii_isspace (*p))
    p++;
  if (p == NULL || *p == '\0')
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_INVALID, "a tag cannot be empty");
      return FALSE;
    }
  return check_text ("a tag", tag, error);
}

gboolean
kilt_run_store_add_tag (KiltRunStore *store, gint64 id, const char *tag, GError **error)
{
  if (!check_tag (tag, error) || !need_version (store, 2, error))
    return FALSE;
  return edit (store, id, "INSERT OR IGNORE INTO run_tags (tag, run_id) VALUES (?, ?)", tag,
               "tagging a run", error);
}

gboolean
kilt_run_store_remove_tag (KiltRunStore *store, gint64 id, const char *tag, GError **error)
{
  if (!check_tag (tag, error) || !need_version (store, 2, error))
    return FALSE;
  return edit (store, id, "DELETE FROM run_tags WHERE tag = ? AND run_id = ?", tag,
               "untagging a run", error);
}

/* The run's checkpoint when it is in this store's checkpoint folder, else NULL. */
static char *
owned_checkpoint (KiltRunStore *store, gint64 id)
{
  g_autoptr (sqlite3_stmt) stmt
      = prepare (store, "SELECT config_json FROM runs WHERE id = ?", NULL);
  g_autofree char *dir = NULL, *parent = NULL;
  KiltTrainConfig config = { 0 };
  char *path = NULL;

  if (stmt == NULL)
    return NULL;
  sqlite3_bind_int64 (stmt, 1, id);
  if (sqlite3_step (stmt) != SQLITE_ROW || sqlite3_column_type (stmt, 0) != SQLITE_TEXT
      || !kilt_run_config_from_json ((const char *)sqlite3_column_text (stmt, 0), &config, NULL))
    return NULL;
  dir = kilt_run_store_checkpoint_dir (store->path);
  if (config.checkpoint_path)
    parent = g_path_get_dirname (config.checkpoint_path);
  if (parent && g_str_equal (parent, dir))
    path = g_steal_pointer (&config.checkpoint_path);
  kilt_train_config_clear (&config);
  return path;
}

/* Whether run @id is being written by a live process (or one on another machine). */
static gboolean
run_is_live (KiltRunStore *store, gint64 id, char **out_who)
{
  g_autoptr (sqlite3_stmt) stmt = prepare (
      store,
      "SELECT pid, process_start, boot_id, hostname FROM runs WHERE id = ? AND status = 'running'",
      NULL);
  const char *host, *boot;
  gint64 pid;

  if (stmt == NULL)
    return FALSE;
  sqlite3_bind_int64 (stmt, 1, id);
  if (sqlite3_step (stmt) != SQLITE_ROW)
    return FALSE;
  pid = sqlite3_column_int64 (stmt, 0);
  boot = (const char *)sqlite3_column_text (stmt, 2);
  host = (const char *)sqlite3_column_text (stmt, 3);
  if (g_strcmp0 (host, g_get_host_name ()) != 0)
    {
      *out_who = g_strdup_printf ("on the machine %s, where this one cannot see whether its "
                                  "process lives",
                                  host ? host : "?");
      return TRUE;
    }
  if (!process_alive (pid, (guint64)sqlite3_column_int64 (stmt, 1), boot))
    return FALSE;
  *out_who = g_strdup_printf ("in process %" G_GINT64_FORMAT, pid);
  return TRUE;
}

gboolean
kilt_run_store_delete (KiltRunStore *store, gint64 id, GError **error)
{
  g_autofree char *checkpoint = owned_checkpoint (store, id);
  g_autofree char *who = NULL;

  if (run_is_live (store, id, &who))
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_INVALID,
                   "run #%" G_GINT64_FORMAT " is still running (%s): stop it first, then delete "
                   "it",
                   id, who);
      return FALSE;
    }

  /* Epochs, steps, timings and tags go with it (ON DELETE CASCADE). */
  if (!edit (store, id, "DELETE FROM runs WHERE id = ?", NULL, "deleting a run", error))
    return FALSE;
  if (checkpoint && g_unlink (checkpoint) != 0 && errno != ENOENT)
    g_warning ("could not delete run %" G_GINT64_FORMAT "'s checkpoint %s: %s", id, checkpoint,
               g_strerror (errno));
  return TRUE;
}

/* Whether the checkpoint at @ckpt is @run's own, and how many epochs it holds. */
static gboolean
check_run_checkpoint (const KiltRun *run, const char *ckpt, guint done, guint *out_epochs,
                      char **out_note, GError **error)
{
  g_autoptr (GError) local = NULL;
  KiltCheckpointInfo info;
  guint64 token = run->record.checkpoint_token;

  if (!kilt_checkpoint_read_info (ckpt, &info, &local))
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_IO,
                   "run #%" G_GINT64_FORMAT "'s checkpoint cannot be read: %s", run->id,
                   local->message);
      return FALSE;
    }
  /* A file shared by several runs (kilt-cli train --checkpoint) holds the last writer's
   * weights; a run recorded before tokens were kept (token 0) can only be told by its epoch
   * count, and a file with a token was written since, by some other run. */
  if (token ? info.run_token != token : info.run_token != 0 || info.epochs_done != done)
    {
      g_set_error (
          error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_INVALID,
          "run #%" G_GINT64_FORMAT "'s checkpoint %s now holds another run's weights "
          "(%u epochs done, where run #%" G_GINT64_FORMAT
          " recorded %u): another run wrote to the same file since, so run #%" G_GINT64_FORMAT
          " can no longer go on; give each run its own --checkpoint",
          run->id, ckpt, info.epochs_done, run->id, done, run->id);
      return FALSE;
    }
  if (info.epochs_done == 0 || info.epochs_done >= run->record.config.epochs)
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_INVALID,
                   "run #%" G_GINT64_FORMAT "'s checkpoint %s holds %u of its %u epochs: there "
                   "is nothing to go on from",
                   run->id, ckpt, info.epochs_done, run->record.config.epochs);
      return FALSE;
    }
  /* The run's own file, yet another count: the store missed epochs (a write failed, say on a
   * full disk) or the run stopped between an epoch and its checkpoint. The weights are what
   * counts. */
  if (info.epochs_done != done && out_note)
    *out_note = g_strdup_printf ("run #%" G_GINT64_FORMAT " recorded %u epochs but its "
                                 "checkpoint %s holds %u: going on from the checkpoint's",
                                 run->id, done, ckpt, info.epochs_done);
  if (out_epochs)
    *out_epochs = info.epochs_done;
  return TRUE;
}

gboolean
kilt_run_can_resume (const KiltRun *run, GError **error)
{
  return kilt_run_resume_point (run, NULL, NULL, error);
}

gboolean
kilt_run_resume_point (const KiltRun *run, guint *out_epochs, char **out_note, GError **error)
{
  const char *ckpt = run->record.config.checkpoint_path;
  guint done = run->epochs->len
                   ? g_array_index (run->epochs, KiltEpochRecord, run->epochs->len - 1).epoch
                   : 0;
  GStatBuf st;
  const char *why = NULL;

  if (run->status == KILT_RUN_RUNNING)
    why = "is still running";
  else if (run->status == KILT_RUN_FINISHED || done >= run->record.config.epochs)
    why = "has trained all its epochs";
  else if (ckpt == NULL)
    why = "kept no weights (kilt-cli train without --checkpoint, or an older Kilt)";
  else if (done == 0)
    why = "ended before its first epoch did, so it has no weights to go on from: run it again";
  else if (g_stat (ckpt, &st) != 0 || st.st_size == 0)
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_INVALID,
                   "run #%" G_GINT64_FORMAT "'s checkpoint %s is gone", run->id, ckpt);
      return FALSE;
    }
  if (why)
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_INVALID,
                   "run #%" G_GINT64_FORMAT " %s", run->id, why);
      return FALSE;
    }
  return check_run_checkpoint (run, ckpt, done, out_epochs, out_note, error);
}

/* ---- derived figures ---- */

double
kilt_run_train_seconds (const KiltRun *run)
{
  double sum = 0;

  if (run->epochs->len == 0)
    return NAN;
  for (guint i = 0; i < run->epochs->len; i++)
    sum += g_array_index (run->epochs, KiltEpochRecord, i).wall_seconds;
  return sum;
}

double
kilt_run_mean_epoch_seconds (const KiltRun *run)
{
  if (run->epochs->len == 0)
    return NAN;
  return kilt_run_train_seconds (run) / run->epochs->len;
}

double
kilt_run_best_val_accuracy (const KiltRun *run)
{
  double best = NAN;

  for (guint i = 0; i < run->epochs->len; i++)
    {
      double v = g_array_index (run->epochs, KiltEpochRecord, i).val_accuracy;
      if (!isnan (v) && (isnan (best) || v > best))
        best = v;
    }
  return best;
}

double
kilt_run_final_val_accuracy (const KiltRun *run)
{
  if (run->epochs->len == 0)
    return NAN;
  return g_array_index (run->epochs, KiltEpochRecord, run->epochs->len - 1).val_accuracy;
}

double
kilt_run_mean_samples_per_second (const KiltRun *run)
{
  double samples = 0, seconds = 0;

  /* Weighted by time (total samples / total time), not a mean of rates. */
  for (guint i = 0; i < run->epochs->len; i++)
    {
      const KiltEpochRecord *e = &g_array_index (run->epochs, KiltEpochRecord, i);
      if (isnan (e->samples_per_second) || isnan (e->wall_seconds))
        continue;
      samples += e->samples_per_second * e->wall_seconds;
      seconds += e->wall_seconds;
    }
  return seconds > 0 ? samples / seconds : NAN;
}

double
kilt_run_gflops (const KiltRun *run)
{
  double sps = kilt_run_mean_samples_per_second (run);

  if (run->record.flops_per_sample == 0 || isnan (sps))
    return NAN;
  return 3.0 * (double)run->record.flops_per_sample * sps / 1e9;
}
