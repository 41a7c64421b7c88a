/* The window with its training in a worker process: the worker crashes mid-epoch and hangs,
 * the window stays, says why, and Resume on the Runs page completes the run. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "config.h"

#include "kilt-test-util.h"

#include "kilt-application.h"
#include "kilt-context.h"
#include "kilt-device.h"
#include "kilt-runs-page.h"
#include "kilt-window.h"

#include <glib/gstdio.h>
#include <string.h>

static KiltApplication *app;
static KiltWindow *window;
static char *store_dir;

typedef gboolean (*Cond) (gpointer data);

static gboolean
wait_until (Cond cond, gpointer data, double seconds)
{
  gint64 end = g_get_monotonic_time () + (gint64)(seconds * G_USEC_PER_SEC);

  while (!cond (data))
    {
      if (g_get_monotonic_time () > end)
        return FALSE;
      g_main_context_iteration (NULL, FALSE);
      g_usleep (2000);
    }
  return TRUE;
}

static gboolean
always_false (gpointer data)
{
  return FALSE;
}

static gboolean
devices_loaded (gpointer data)
{
  return kilt_devices_page_get_loaded (kilt_window_get_devices_page (window));
}

static gboolean
data_idle (gpointer data)
{
  return !kilt_data_page_get_loading (kilt_window_get_data_page (window));
}

static gboolean
run_over (gpointer data)
{
  return !kilt_session_is_running (kilt_window_get_session (window));
}

static KiltRunsPage *
runs_page (void)
{
  GtkWidget *w = GTK_WIDGET (window);
  AdwViewStack *stack = NULL;

  while (w && !ADW_IS_TOAST_OVERLAY (w))
    w = gtk_widget_get_first_child (w);
  for (GtkWidget *c
       = gtk_widget_get_first_child (adw_toast_overlay_get_child (ADW_TOAST_OVERLAY (w)));
       c; c = gtk_widget_get_next_sibling (c))
    if (ADW_IS_VIEW_STACK (c))
      stack = ADW_VIEW_STACK (c);
  g_assert_nonnull (stack);
  return KILT_RUNS_PAGE (adw_view_stack_get_child_by_name (stack, "runs"));
}

static GtkWidget *
find_named (GtkWidget *w, const char *name)
{
  if (g_strcmp0 (gtk_widget_get_name (w), name) == 0)
    return w;
  for (GtkWidget *c = gtk_widget_get_first_child (w); c; c = gtk_widget_get_next_sibling (c))
    {
      GtkWidget *found = find_named (c, name);
      if (found)
        return found;
    }
  return NULL;
}

static KiltRun *
newest_run (void)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (KiltRunStore) store = kilt_run_store_open (g_getenv ("KILT_RUNS_DB"), &error);
  g_autoptr (GPtrArray) runs = NULL;

  g_assert_no_error (error);
  runs = kilt_run_store_list (store, &error);
  g_assert_no_error (error);
  return runs->len ? g_ptr_array_steal_index (runs, 0) : NULL;
}

/* Sample data, lenet5's 512 samples: 16 steps an epoch. FALSE (skipped) without PoCL. */
static gboolean
prepare (guint epochs)
{
  g_assert_true (wait_until (devices_loaded, NULL, 30));
  if (kilt_devices_page_get_device_id (kilt_window_get_devices_page (window)) == NULL)
    {
      g_test_skip ("no OpenCL device here");
      return FALSE;
    }
  if (kilt_data_page_get_dataset (kilt_window_get_data_page (window)) == NULL)
    kilt_data_page_load (kilt_window_get_data_page (window), "sample");
  g_assert_true (wait_until (data_idle, NULL, 60));
  g_assert_nonnull (kilt_data_page_get_dataset (kilt_window_get_data_page (window)));
  kilt_model_page_set_epochs (kilt_window_get_model_page (window), epochs);
  kilt_window_set_sample_limit (window, 512);
  return TRUE;
}

/* The driver faults in the backward pass of step 20 (epoch 2): the worker dies of SIGSEGV,
 * the window shows where, the run is recorded as crashed, and Resume finishes it. */
static void
test_crash_then_resume (void)
{
  KiltRunsPage *page = runs_page ();
  g_autoptr (KiltRun) crashed = NULL, resumed = NULL;
  g_autoptr (GError) error = NULL;
  const char *msg;

  if (!prepare (3))
    return;
  kilt_fault_set (KILT_FAULT_SEGV, 20);
  g_assert_true (gtk_widget_activate_action (GTK_WIDGET (window), "win.start", NULL));
  g_assert_true (kilt_session_is_running (kilt_window_get_session (window)));
  g_assert_true (wait_until (run_over, NULL, 120));
  g_assert_null (kilt_fault_take ());
  /* Still here, and saying what happened, where, and what to do. */
  g_assert_nonnull (window);
  g_assert_true (gtk_widget_get_visible (GTK_WIDGET (window)));
  msg = kilt_window_get_last_message (window);
  g_test_message ("shown: %s", msg);
  g_assert_true (g_str_has_prefix (msg, "Training failed: The training worker crashed: SIGSEGV "
                                        "during "));
  g_assert_nonnull (strstr (msg, " backward, step 20 (epoch 2)"));
  g_assert_nonnull (strstr (msg, "Resume on the Runs page"));
  g_assert_cmpstr (kilt_window_get_visible_page (window), ==, "train");

  crashed = newest_run ();
  g_assert_nonnull (crashed);
  g_assert_cmpint (crashed->status, ==, KILT_RUN_FAILED);
  g_assert_nonnull (strstr (crashed->error_message, "crashed: SIGSEGV during "));
  g_assert_cmpuint (crashed->epochs->len, ==, 1);
  g_assert_true (g_file_test (crashed->record.config.checkpoint_path, G_FILE_TEST_IS_REGULAR));

  /* Resume is offered and goes on from epoch 1 to the end, in a new worker. */
  g_assert_true (kilt_runs_page_reload (page, &error));
  kilt_runs_page_select (page, &crashed->id, 1);
  g_assert_true (kilt_runs_page_can_resume (page, &error));
  g_assert_no_error (error);
  g_assert_true (gtk_widget_activate_action (GTK_WIDGET (page), "runs.resume", NULL));
  g_assert_true (kilt_session_is_running (kilt_window_get_session (window)));
  g_assert_true (wait_until (run_over, NULL, 120));
  g_assert_cmpstr (kilt_window_get_last_message (window), ==, "Training finished");
  resumed = newest_run ();
  g_assert_cmpint (resumed->id, >, crashed->id);
  g_assert_cmpint (resumed->status, ==, KILT_RUN_FINISHED);
  g_assert_true (resumed->record.config.resume);
  g_assert_cmpuint (
      g_array_index (resumed->epochs, KiltEpochRecord, resumed->epochs->len - 1).epoch, ==, 3);
}

/* The check button labelled @label under @w, or NULL. */
static GtkCheckButton *
find_check (GtkWidget *w, const char *label)
{
  if (GTK_IS_CHECK_BUTTON (w)
      && g_strcmp0 (gtk_check_button_get_label (GTK_CHECK_BUTTON (w)), label) == 0)
    return GTK_CHECK_BUTTON (w);
  for (GtkWidget *c = gtk_widget_get_first_child (w); c; c = gtk_widget_get_next_sibling (c))
    {
      GtkCheckButton *found = find_check (c, label);
      if (found)
        return found;
    }
  return NULL;
}

/* The device runs out of memory in epoch 2 (a launch fails with CL_OUT_OF_RESOURCES in the
 * worker). With the Train page's box ticked the run goes on from epoch 1 at a smaller batch
 * and finishes, one run whose record says what changed; unticked, it fails saying why. */
static void
test_oom_resume_smaller (void)
{
  GtkCheckButton *check = find_check (GTK_WIDGET (window), "Retry smaller _batch");
  g_autoptr (KiltRun) run = NULL, failed = NULL;
  const char *msg;

  if (!prepare (3))
    return;
  g_assert_nonnull (check);
  gtk_check_button_set_active (check, TRUE);
  /* About 650 launches an epoch here: the 900th is in epoch 2. */
  kilt_fault_set (KILT_FAULT_OOM, 900);
  g_assert_true (gtk_widget_activate_action (GTK_WIDGET (window), "win.start", NULL));
  g_assert_true (wait_until (run_over, NULL, 120));
  g_assert_null (kilt_fault_take ());
  msg = kilt_window_get_last_message (window);
  g_test_message ("shown: %s", msg);
  g_assert_cmpstr (msg, ==, "Training finished");
  run = newest_run ();
  g_assert_cmpint (run->status, ==, KILT_RUN_FINISHED);
  g_assert_cmpint (run->record.config.on_oom, ==, KILT_ON_OOM_RESUME_SMALLER);
  g_assert_nonnull (run->notes);
  g_test_message ("notes: %s", run->notes);
  g_assert_true (g_str_has_prefix (run->notes, "out of device memory at step "));
  g_assert_nonnull (strstr (run->notes, "; resumed from epoch 1 at batch "));
  g_assert_true (g_str_has_suffix (run->notes, " (was 32)"));
  g_assert_cmpuint (run->record.config.batch, <, 32);
  g_assert_cmpuint (run->epochs->len, ==, 3);

  gtk_check_button_set_active (check, FALSE);
  g_assert_true (wait_until (data_idle, NULL, 60));
  kilt_fault_set (KILT_FAULT_OOM, 900);
  g_assert_true (gtk_widget_activate_action (GTK_WIDGET (window), "win.start", NULL));
  g_assert_true (wait_until (run_over, NULL, 120));
  msg = kilt_window_get_last_message (window);
  g_test_message ("shown: %s", msg);
  g_assert_true (g_str_has_prefix (msg, "Training failed: "));
  g_assert_nonnull (strstr (msg, "CL_OUT_OF_RESOURCES"));
  failed = newest_run ();
  g_assert_cmpint (failed->id, >, run->id);
  g_assert_cmpint (failed->status, ==, KILT_RUN_FAILED);
  g_assert_null (failed->notes);
}

/* Two PoCL devices: "Train on Several Devices" lists both with the default fixed on; with the
 * other switched on a run trains on both (kept together: KILT_DIST_KEEP_ALL, as two devices on
 * one 2-core CPU would otherwise leave one out), the Train page shows each device's rows,
 * busy share and memory, and the run's record keeps them. */
static void
test_several_devices (void)
{
  KiltDevicesPage *dp = kilt_window_get_devices_page (window);
  KiltReplicaView *view = kilt_train_page_get_replica_view (kilt_window_get_train_page (window));
  g_autoptr (KiltRun) run = NULL;
  g_auto (GStrv) chosen = NULL;
  const char *def, *other = NULL;
  GPtrArray *devs;
  guint rows = 0;

  if (!prepare (2))
    return;
  devs = kilt_devices_page_get_devices (dp);
  def = kilt_devices_page_get_device_id (dp);
  for (guint i = 0; i < devs->len; i++)
    if (g_strcmp0 (((KiltDeviceInfo *)devs->pdata[i])->id, def) != 0)
      other = ((KiltDeviceInfo *)devs->pdata[i])->id;
  if (other == NULL)
    {
      g_test_skip ("one OpenCL device here");
      return;
    }
  /* Nothing switched on: the default alone, as before. */
  g_assert_null (kilt_devices_page_dup_train_devices (dp));
  g_assert_true (kilt_devices_page_set_train_device (dp, def, FALSE)); /* stays on */
  g_assert_null (kilt_devices_page_dup_train_devices (dp));
  g_assert_false (kilt_devices_page_set_train_device (dp, "no/such/device", TRUE));
  g_assert_true (kilt_devices_page_set_train_device (dp, other, TRUE));
  chosen = kilt_devices_page_dup_train_devices (dp);
  g_assert_cmpuint (g_strv_length (chosen), ==, 2);
  g_assert_cmpstr (chosen[0], ==, def);
  g_assert_cmpstr (chosen[1], ==, other);

  g_setenv ("KILT_DIST_KEEP_ALL", "1", TRUE); /* the worker inherits it */
  g_assert_true (gtk_widget_activate_action (GTK_WIDGET (window), "win.start", NULL));
  g_assert_true (wait_until (run_over, NULL, 150));
  g_unsetenv ("KILT_DIST_KEEP_ALL");
  g_test_message ("shown: %s", kilt_window_get_last_message (window));
  g_assert_cmpstr (kilt_window_get_last_message (window), ==, "Training finished");

  run = newest_run ();
  g_assert_nonnull (run);
  g_assert_cmpuint (g_strv_length (run->record.config.devices), ==, 2);
  g_assert_nonnull (run->scaling);
  g_assert_cmpuint (run->scaling->devices->len, ==, 2);
  g_assert_cmpuint (run->scaling->asked->len, ==, 2);
  g_assert_cmpfloat (run->scaling->step_ms, >, 0);
  g_assert_cmpfloat (run->scaling->alone_ms, >, 0);
  g_assert_nonnull (strstr (run->record.device_name, " + "));

  /* The Train page: a row per device, rows per batch adding up to the batch. */
  g_assert_true (gtk_widget_get_visible (GTK_WIDGET (view)));
  for (guint i = 0; i < 2; i++)
    {
      const char *busy = kilt_replica_view_get_cell (view, i, 3);
      g_assert_nonnull (kilt_replica_view_get_cell (view, i, 0));
      rows += (guint)g_ascii_strtoull (kilt_replica_view_get_cell (view, i, 1), NULL, 10);
      g_assert_true (g_str_has_suffix (busy, "%"));
      g_assert_nonnull (strstr (kilt_replica_view_get_cell (view, i, 4), "iB ("));
      g_assert_cmpuint (g_array_index (run->scaling->devices, KiltRunDevice, i).share, ==,
                        g_ascii_strtoull (kilt_replica_view_get_cell (view, i, 1), NULL, 10));
    }
  g_assert_null (kilt_replica_view_get_cell (view, 2, 0));
  g_assert_cmpuint (rows, ==, run->record.config.batch);
  g_assert_nonnull (strstr (kilt_replica_view_get_summary (view), "on all 2 devices"));

  /* The Runs page shows what each device did, for that run. */
  {
    g_autoptr (GError) error = NULL;
    KiltRunsPage *page = runs_page ();
    g_assert_true (kilt_runs_page_reload (page, &error));
    kilt_runs_page_select (page, &run->id, 1);
    g_assert_nonnull (find_named (GTK_WIDGET (page), "devices-table"));
  }

  /* Switched off again: the next run is the default's alone, and the card goes. */
  g_assert_true (kilt_devices_page_set_train_device (dp, other, FALSE));
  g_assert_null (kilt_devices_page_dup_train_devices (dp));
}

/* A driver that never returns: the watchdog ends the worker and the window says so. */
static void
test_hang (void)
{
  g_autoptr (KiltRun) hung = NULL;
  const char *msg;
  gint64 t0;

  if (!prepare (3))
    return;
  g_setenv ("KILT_WORKER_WATCHDOG", "2", TRUE);
  kilt_fault_set (KILT_FAULT_HANG, 5);
  g_assert_true (gtk_widget_activate_action (GTK_WIDGET (window), "win.start", NULL));
  t0 = g_get_monotonic_time ();
  /* The window keeps turning while the worker is stuck. */
  g_assert_true (wait_until (run_over, NULL, 60));
  g_unsetenv ("KILT_WORKER_WATCHDOG");
  msg = kilt_window_get_last_message (window);
  g_test_message ("shown after %.1f s: %s", (g_get_monotonic_time () - t0) / 1e6, msg);
  g_assert_true (g_str_has_prefix (msg, "Training failed: The training worker hung: no progress "
                                        "for "));
  g_assert_nonnull (strstr (msg, "step 5 (epoch 1)"));
  hung = newest_run ();
  g_assert_cmpint (hung->status, ==, KILT_RUN_FAILED);
  g_assert_nonnull (strstr (hung->error_message, "hung: "));
  /* And the next run works. */
  g_assert_true (wait_until (data_idle, NULL, 60));
  kilt_model_page_set_epochs (kilt_window_get_model_page (window), 1);
  g_assert_true (gtk_widget_activate_action (GTK_WIDGET (window), "win.start", NULL));
  g_assert_true (wait_until (run_over, NULL, 120));
  g_assert_cmpstr (kilt_window_get_last_message (window), ==, "Training finished");
}

int
main (int argc, char **argv)
{
  int status;

  g_setenv ("GTK_A11Y", "none", FALSE);
  g_setenv ("GSK_RENDERER", "cairo", FALSE);
  g_setenv ("GSETTINGS_BACKEND", "memory", TRUE);
  /* Two CPU devices, for the run on several (the others use the first). */
  g_setenv ("POCL_DEVICES", "pthread pthread", FALSE);
  store_dir = g_dir_make_tmp ("kilt-ui-worker-XXXXXX", NULL);
  g_assert_nonnull (store_dir);
  {
    g_autofree char *db = g_build_filename (store_dir, "runs.db", NULL);
    g_setenv ("KILT_RUNS_DB", db, TRUE);
  }
  g_test_init (&argc, &argv, NULL);
  if (!gtk_init_check ())
    {
      g_print ("1..0 # SKIP no display (run under xvfb-run)\n");
      return 77;
    }
  app = kilt_application_new (G_APPLICATION_NON_UNIQUE);
  g_assert_true (g_application_register (G_APPLICATION (app), NULL, NULL));
  g_application_activate (G_APPLICATION (app));
  window = KILT_WINDOW (gtk_application_get_active_window (GTK_APPLICATION (app)));
  g_object_add_weak_pointer (G_OBJECT (window), (gpointer *)&window);
  wait_until (always_false, NULL, 0.3);

  g_test_add_func ("/ui-worker/crash-then-resume", test_crash_then_resume);
  g_test_add_func ("/ui-worker/hang", test_hang);
  g_test_add_func ("/ui-worker/oom-resume-smaller", test_oom_resume_smaller);
  g_test_add_func ("/ui-worker/several-devices", test_several_devices);
  status = g_test_run ();
  if (window)
    gtk_window_destroy (GTK_WINDOW (window));
  g_clear_object (&app);
  kilt_test_remove_tree (store_dir);
  return status;
}
