/* kilt-cli as a person or a script runs it: versions, a bad data path, --json lines, and a
 * training process killed with SIGKILL, whose finished epochs the run store keeps. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "config.h"

#include "kilt-test-util.h"
#include "kilt-gemm.h"
#include "kilt-model-json.h"
#include "kilt-run-store.h"
#include "kilt-summary.h"

#include <gdk-pixbuf/gdk-pixbuf.h>
#include <gio/gio.h>
#include <glib/gstdio.h>
#include <json-glib/json-glib.h>
#include <math.h>
#include <signal.h>
#include <string.h>

static const char *
cli_path (void)
{
  const char *path = g_getenv ("KILT_CLI");

  if (path == NULL || !g_file_test (path, G_FILE_TEST_IS_EXECUTABLE))
    {
      g_test_skip ("KILT_CLI does not name the kilt-cli executable (meson sets it)");
      return NULL;
    }
  return path;
}

typedef struct
{
  int status; /* exit status (the process exited), or -1 when it was killed */
  char *out, *err;
} Result;

static void
result_clear (Result *r)
{
  g_free (r->out);
  g_free (r->err);
}

/* Runs kilt-cli with @args (NULL-terminated), with KILT_RUNS_DB set to @db and, when @fault is
 * not NULL, KILT_FAULT to it. */
static Result
run_cli_fault (const char *db, const char *fault, const char *const *args)
{
  g_autoptr (GSubprocessLauncher) l
      = g_subprocess_launcher_new (G_SUBPROCESS_FLAGS_STDOUT_PIPE | G_SUBPROCESS_FLAGS_STDERR_PIPE);
  g_autoptr (GPtrArray) argv = g_ptr_array_new ();
  g_autoptr (GSubprocess) p = NULL;
  g_autoptr (GError) error = NULL;
  Result r = { 0 };

  g_ptr_array_add (argv, (gpointer)cli_path ());
  for (guint i = 0; args[i]; i++)
    g_ptr_array_add (argv, (gpointer)args[i]);
  g_ptr_array_add (argv, NULL);
  if (db)
    g_subprocess_launcher_setenv (l, "KILT_RUNS_DB", db, TRUE);
  if (fault)
    g_subprocess_launcher_setenv (l, "KILT_FAULT", fault, TRUE);
  p = g_subprocess_launcher_spawnv (l, (const char *const *)argv->pdata, &error);
  g_assert_no_error (error);
  g_assert_true (g_subprocess_communicate_utf8 (p, NULL, NULL, &r.out, &r.err, &error));
  g_assert_no_error (error);
  r.status = g_subprocess_get_if_exited (p) ? g_subprocess_get_exit_status (p) : -1;
  return r;
}

static Result
run_cli (const char *db, const char *const *args)
{
  return run_cli_fault (db, NULL, args);
}

static void
test_version (void)
{
  g_autoptr (KiltDeviceList) list = NULL;
  Result r;

  if (!cli_path ())
    return;
  r = run_cli (NULL, (const char *const[]){ "--version", NULL });
  g_test_message ("%s", r.out);
  g_assert_cmpint (r.status, ==, 0);
  g_assert_true (g_str_has_prefix (r.out, "kilt-cli " KILT_VERSION "\n"));
  {
    g_autofree char *want = g_strdup_printf ("\nCLBlast %s\n", kilt_clblast_version ());
    g_assert_nonnull (strstr (r.out, want));
    g_assert_true (g_ascii_isdigit (kilt_clblast_version ()[0]));
  }
  /* Every platform with a device, by name and version. */
  list = kilt_device_list_new ();
  for (guint i = 0; i < list->devices->len; i++)
    {
      KiltDeviceInfo *d = g_ptr_array_index (list->devices, i);
      g_autofree char *want
          = g_strdup_printf ("OpenCL platform: %s (%s)\n", d->platform_name, d->platform_version);
      g_assert_nonnull (strstr (r.out, want));
      g_assert_nonnull (strstr (d->platform_version, "OpenCL "));
    }
  result_clear (&r);
}

/* kilt-cli tune with a CLBlast tuner result: timed before and after on a real model, saved
 * only when faster, shown, refused for another device, forgotten. */
static void
test_tune (void)
{
  KiltContext *ctx = kilt_test_context ();
  g_autofree char *dir = NULL, *good = NULL, *other = NULL, *text = NULL;
  const char *params = "GEMMK=0 KREG=1 KWG=32 KWI=2 MDIMA=8 MDIMC=8 MWG=64 NDIMB=8 NDIMC=8 "
                       "NWG=32 PRECISION=32 SA=0 SB=0 STRM=0 STRN=0 VWM=4 VWN=4";
  const char *tune[]
      = { "tune", "--import", NULL, "--model", "mlp", "--batch", "16", "--steps", "3", NULL };
  gboolean saved;
  Result r;

  if (!cli_path () || !ctx)
    return;
  dir = kilt_test_tmpdir ();
  g_setenv ("XDG_CONFIG_HOME", dir, TRUE);
  good = g_build_filename (dir, "clblast_xgemm_1_32.json", NULL);
  text = g_strdup_printf ("{ \"precision\": \"32\", \"best_kernel\": \"Xgemm\", "
                          "\"best_time\": \"0.04\", \"best_parameters\": \"%s\", "
                          "\"device\": \"%s\" }",
                          params, ctx->info->name);
  g_assert_true (g_file_set_contents (good, text, -1, NULL));
  other = g_build_filename (dir, "other.json", NULL);
  g_free (text);
  text = g_strdup_printf ("{ \"precision\": \"32\", \"best_kernel\": \"Xgemm\", "
                          "\"best_parameters\": \"%s\", \"device\": \"Other GPU\" }",
                          params);
  g_assert_true (g_file_set_contents (other, text, -1, NULL));

  /* On a CPU device Kilt's own GEMM runs, so tuning CLBlast is refused unless asked for. */
  if (g_strcmp0 (ctx->info->type, "CPU") == 0)
    {
      tune[2] = good;
      r = run_cli (NULL, tune);
      g_assert_cmpint (r.status, ==, 1);
      g_assert_nonnull (strstr (r.err, "own GEMM"));
      result_clear (&r);
    }
  g_setenv ("KILT_GEMM", "clblast", TRUE);

  tune[2] = other;
  r = run_cli (NULL, tune);
  g_assert_cmpint (r.status, ==, 1);
  g_assert_nonnull (strstr (r.err, "tuned on \"Other GPU\""));
  result_clear (&r);

  tune[2] = good;
  r = run_cli (NULL, tune);
  g_test_message ("%s%s", r.out, r.err);
  g_assert_cmpint (r.status, ==, 0);
  g_assert_nonnull (strstr (r.out, "Tuner's best: Xgemm GEMMK=0"));
  g_assert_nonnull (strstr (r.out, "Step: "));
  saved = strstr (r.out, "Saved for ") != NULL;
  g_assert_true (saved != (strstr (r.out, "nothing saved") != NULL));
  result_clear (&r);

  r = run_cli (NULL, (const char *const[]){ "tune", "--show", NULL });
  g_assert_cmpint (r.status, ==, 0);
  g_assert_nonnull (strstr (r.out, saved ? "Xgemm GEMMK=0" : "no tuning"));
  if (saved)
    g_assert_nonnull (strstr (r.out, "mlp batch 16: "));
  result_clear (&r);

  r = run_cli (NULL, (const char *const[]){ "tune", "--forget", NULL });
  g_assert_cmpint (r.status, ==, 0);
  result_clear (&r);

  /* Running the tuners: stand-ins that write a direct-kernel result (as
   * clblast_tuner_xgemm_direct does, into the folder it runs in) or never finish. */
  {
    g_autofree char *bin = g_build_filename (dir, "bin", NULL);
    g_autofree char *direct = g_build_filename (bin, "clblast_tuner_xgemm_direct", NULL);
    g_autofree char *tiled = g_build_filename (bin, "clblast_tuner_xgemm", NULL);
    g_autofree char *routine = g_build_filename (bin, "clblast_tuner_routine_xgemm", NULL);
    char *script = g_strdup_printf (
        "#!/bin/sh\n[ \"$1 $3 $5 $6\" = \"-platform -device -precision 32\" ] || exit 3\n"
        "echo '{ \"precision\": \"32\", \"best_kernel\": \"XgemmDirectNN\", "
        "\"best_time\": \"0.2\", \"best_parameters\": \"KWID=2 MDIMAD=8 MDIMCD=8 NDIMBD=8 "
        "NDIMCD=8 PADA=1 PADB=1 PRECISION=32 VWMD=2 VWND=2 WGD=32\", \"device\": \"%s\" }' "
        "> clblast_xgemm_direct_1_32.json\n",
        ctx->info->name);
    const char *run[] = { "tune", "--tuner-dir", bin,  "--minutes", "0.1", "--model",
                          "mlp",  "--batch",     "16", "--steps",   "3",   NULL };
    g_assert_cmpint (g_mkdir_with_parents (bin, 0755), ==, 0);
    g_assert_true (g_file_set_contents (direct, script, -1, NULL));
    g_assert_true (g_file_set_contents (tiled, "#!/bin/sh\nexec sleep 60\n", -1, NULL));
    g_assert_cmpint (g_chmod (direct, 0755), ==, 0);
    g_assert_cmpint (g_chmod (tiled, 0755), ==, 0);
    r = run_cli (NULL, run);
    g_test_message ("%s%s", r.out, r.err);
    g_assert_cmpint (r.status, ==, 0);
    g_assert_nonnull (strstr (r.out, "Stopped the tuner after"));
    g_assert_nonnull (strstr (r.out, "clblast_tuner_routine_xgemm not found; skipped"));
    g_assert_nonnull (strstr (r.out, "Tuner's best: XgemmDirect KWID=2"));
    g_assert_nonnull (strstr (r.out, "Step: "));
    result_clear (&r);
    r = run_cli (NULL, (const char *const[]){ "tune", "--forget", NULL });
    g_assert_cmpint (r.status, ==, 0);
    result_clear (&r);

    /* A tuner that dies of a signal after writing a result CLBlast refuses (the tiled kernel
     * without its KWG): the phases before it still count, the refused kernel is left out
     * with a message, and the routine tuner that never finishes is stopped. */
    g_free (script);
    script = g_strdup_printf (
        "#!/bin/sh\n"
        "echo '{ \"precision\": \"32\", \"best_kernel\": \"Xgemm\", "
        "\"best_time\": \"0.1\", \"best_parameters\": \"%s\", \"device\": \"%s\" }' "
        "> clblast_xgemm_1_32.json\nkill -9 $$\n",
        "GEMMK=0 KREG=1 KWI=2 MDIMA=8 MDIMC=8 MWG=64 NDIMB=8 NDIMC=8 NWG=32 PRECISION=32 SA=0 "
        "SB=0 STRM=0 STRN=0 VWM=4 VWN=4",
        ctx->info->name);
    g_assert_true (g_file_set_contents (tiled, script, -1, NULL));
    g_assert_true (g_file_set_contents (routine, "#!/bin/sh\nexec sleep 60\n", -1, NULL));
    g_assert_cmpint (g_chmod (tiled, 0755), ==, 0);
    g_assert_cmpint (g_chmod (routine, 0755), ==, 0);
    r = run_cli (NULL, run);
    g_test_message ("%s%s", r.out, r.err);
    g_assert_cmpint (r.status, ==, 0);
    g_assert_nonnull (strstr (r.out, "killed by signal 9"));
    g_assert_nonnull (strstr (r.out, "Left out: "));
    g_assert_nonnull (strstr (r.out, "a parameter this kernel needs is missing"));
    g_assert_nonnull (strstr (r.out, "Stopped the tuner after"));
    g_assert_nonnull (strstr (r.out, "Tuner's best: XgemmDirect KWID=2"));
    g_assert_nonnull (strstr (r.out, "Step: "));
    result_clear (&r);
    r = run_cli (NULL, (const char *const[]){ "tune", "--forget", NULL });
    g_assert_cmpint (r.status, ==, 0);
    result_clear (&r);
    /* No tuner at all: an error that says where to get them. */
    r = run_cli (NULL, (const char *const[]){ "tune", "--tuner-dir", dir, NULL });
    g_assert_cmpint (r.status, ==, 1);
    g_assert_nonnull (strstr (r.err, "apt-get install clblast-utils"));
    result_clear (&r);
    g_free (script);
  }
  r = run_cli (NULL, (const char *const[]){ "tune", "--show", NULL });
  g_assert_nonnull (strstr (r.out, "no tuning"));
  result_clear (&r);
  g_unsetenv ("KILT_GEMM");
}

/* kilt-cli devices --test: the doctor checks every op on the default device, convolutions
 * with each algorithm where the device has the implicit-GEMM kernels (PoCL does). */
static void
test_devices_test (void)
{
  KiltContext *ctx = kilt_test_context ();
  Result r;

  if (!cli_path () || !ctx)
    return;
  r = run_cli (NULL, (const char *const[]){ "devices", "--test", NULL });
  g_test_message ("%s%s", r.out, r.err);
  g_assert_cmpint (r.status, ==, 0);
  g_assert_null (strstr (r.out, "FAIL"));
  g_assert_nonnull (strstr (r.out, "Conv2D 3x3 same, ReLU "));
  if (ctx->igemm)
    {
      const char *line = strstr (r.out, "Conv2D 3x3 same, ReLU, implicit GEMM");
      g_assert_nonnull (line);
      g_assert_nonnull (strstr (line, " pass "));
      g_assert_true (strstr (line, " pass ") < strchr (line, '\n'));
      g_assert_nonnull (strstr (r.out, "Conv2D 5x5 valid, stride 2, implicit GEMM"));
    }
  {
    /* The ids-reading layer, whose check differs (whole-number inputs, no input FD). */
    const char *line = strstr (r.out, "Embedding 7 x 5, 11 steps");
    g_assert_nonnull (line);
    g_assert_nonnull (strstr (line, " pass "));
    g_assert_true (strstr (line, " pass ") < strchr (line, '\n'));
  }
  g_assert_nonnull (strstr (r.out, "verdict:     Usable"));
  result_clear (&r);
}

/* IDX bytes as ids: an Embedding reads them as written, not divided by 255 as images are (every
 * id would then truncate to row 0 and nothing could be learnt). Samples of 6 ids from 0 to 9
 * whose class is whether id 7 is among them train to well above the 50% of a coin; a byte of
 * 10 in a 10-row table is refused naming the layer. */
static void
test_embedding_idx (void)
{
  static const char model_json[]
      = "{\"format\": \"kilt-model\", \"version\": 1, \"name\": \"idx-ids\", \"input\": "
        "{\"channels\": 6}, \"layers\": [{\"name\": \"emb\", \"type\": \"Embedding\", "
        "\"input_dim\": 10, \"output_dim\": 4}, {\"type\": \"GlobalMaxPooling2D\"}, "
        "{\"type\": \"Dense\", \"units\": 2, \"activation\": \"softmax\"}]}";
  const guint n = 256, steps = 6;
  g_autofree char *dir = NULL, *db = NULL, *model = NULL, *images = NULL, *labels = NULL;
  g_autofree guint8 *im = g_malloc (12 + n * steps), *lb = g_malloc (8 + n);
  g_autoptr (GRand) rand = g_rand_new_with_seed (11);
  g_autoptr (GError) error = NULL;
  const char *acc;
  Result r;

  if (!cli_path ())
    return;
  dir = kilt_test_tmpdir ();
  db = g_build_filename (dir, "runs.db", NULL);
  model = g_build_filename (dir, "idx-ids.json", NULL);
  images = g_build_filename (dir, "train-images-idx3-ubyte", NULL);
  labels = g_build_filename (dir, "train-labels-idx1-ubyte", NULL);
  g_assert_true (g_file_set_contents (model, model_json, -1, &error));
  /* IDX: type 08 (bytes), 2 dimensions (n, steps) big-endian, then the bytes. */
  memcpy (im, (guint8[]){ 0, 0, 8, 2, 0, 0, n >> 8, n & 255, 0, 0, 0, steps }, 12);
  memcpy (lb, (guint8[]){ 0, 0, 8, 1, 0, 0, n >> 8, n & 255 }, 8);
  for (guint i = 0; i < n; i++)
    {
      gboolean seven = FALSE;
      for (guint t = 0; t < steps; t++)
        {
          guint8 id = (guint8)g_rand_int_range (rand, 0, 10);
          /* Half the samples without a 7, half with. */
          if (i % 2 == 0 && id == 7)
            id = 8;
          im[12 + i * steps + t] = id;
          seven |= id == 7;
        }
      if (i % 2 == 1 && !seven)
        im[12 + i * steps + g_rand_int_range (rand, 0, steps)] = 7, seven = TRUE;
      lb[8 + i] = seven;
    }
  g_assert_true (g_file_set_contents (images, (char *)im, 12 + n * steps, &error));
  g_assert_true (g_file_set_contents (labels, (char *)lb, 8 + n, &error));
  r = run_cli (db, (const char *const[]){ "train", "--model", model, "--data", images, "--epochs",
                                          "15", "--lr", "0.05", "--seed", "2", NULL });
  g_test_message ("%s%s", r.out, r.err);
  g_assert_cmpint (r.status, ==, 0);
  acc = strstr (r.out, "Finished after");
  g_assert_nonnull (acc);
  acc = strstr (acc, "training loss");
  g_assert_nonnull (acc);
  acc = strstr (acc, "accuracy ");
  g_assert_nonnull (acc);
  g_assert_cmpfloat (g_ascii_strtod (acc + strlen ("accuracy "), NULL), >, 0.9);
  result_clear (&r);

  im[12 + 5] = 10;
  g_assert_true (g_file_set_contents (images, (char *)im, 12 + n * steps, &error));
  r = run_cli (db, (const char *const[]){ "train", "--model", model, "--data", images, "--epochs",
                                          "1", NULL });
  g_assert_cmpint (r.status, !=, 0);
  g_assert_nonnull (strstr (r.err, "holds 10 at feature 5"));
  g_assert_nonnull (strstr (r.err, "takes whole-number ids from 0 to 9 (input_dim 10)"));
  result_clear (&r);
}

/* kilt-cli bench on a real CSV (the MLP workload): the model takes the file's features, the
 * first step matches the C reference, and the timing covers the steps asked for. */
static void
test_bench_csv (void)
{
  g_autofree char *iris
      = g_build_filename (g_getenv ("KILT_SOURCE_DIR"), "tests", "data", "iris.csv", NULL);
  g_autoptr (JsonParser) parser = json_parser_new ();
  g_autoptr (GError) error = NULL;
  JsonObject *o;
  Result r;

  if (!cli_path ())
    return;
  r = run_cli (NULL, (const char *const[]){ "bench", "--model", "mlp", "--data", iris, "--batch",
                                            "16", "--steps", "10", "--json", NULL });
  g_test_message ("%s%s", r.out, r.err);
  g_assert_cmpint (r.status, ==, 0);
  g_assert_true (json_parser_load_from_data (parser, r.out, -1, &error));
  g_assert_no_error (error);
  o = json_node_get_object (json_parser_get_root (parser));
  g_assert_false (json_object_has_member (o, "error"));
  g_assert_true (json_object_get_boolean_member (o, "check_ok"));
  g_assert_cmpfloat (json_object_get_double_member (o, "step_ms"), >, 0);
  g_assert_cmpfloat (json_object_get_double_member (o, "steps"), ==, 10);
  result_clear (&r);

  r = run_cli (NULL, (const char *const[]){ "bench", "--model", "mlp", "--data",
                                            "/nonexistent/x.csv", "--steps", "2", NULL });
  g_assert_nonnull (strstr (r.out, "/nonexistent/x.csv"));
  result_clear (&r);
}

static JsonObject *
bench_json (JsonParser *parser, const Result *r)
{
  g_autoptr (GError) error = NULL;
  JsonObject *o;

  g_assert_true (json_parser_load_from_data (parser, r->out, -1, &error));
  g_assert_no_error (error);
  o = json_node_get_object (json_parser_get_root (parser));
  g_assert_false (json_object_has_member (o, "error"));
  return o;
}

/* bench times each preset's own network: with no --data, random inputs of the preset's input
 * shape, and the FLOP per sample it reports are those of the model's summary (it once timed
 * every preset on the bundled 28x28x1 sample, adapting cifar10_cnn to 89.4 MFLOP a training
 * sample instead of 124.9). With --data, the fitted preset is named as such. */
static void
test_bench_workload (void)
{
  g_auto (GStrv) names = kilt_model_preset_list ();

  if (!cli_path ())
    return;
  g_assert_cmpuint (g_strv_length (names), >=, 7);
  for (guint i = 0; names[i]; i++)
    {
      g_autoptr (JsonParser) parser = json_parser_new ();
      g_autoptr (GError) error = NULL;
      g_autoptr (KiltModel) model = kilt_model_load_preset (names[i], NULL, 0, &error);
      g_autoptr (KiltSummary) summary = NULL;
      KiltShape in;
      JsonArray *chw;
      JsonObject *o;
      Result r;

      g_assert_no_error (error);
      /* VGG16's two training steps are 186 GFLOP on the CPU: the sanitizer pass leaves them to
       * the plain one. */
      if (g_str_equal (names[i], "vgg16") && g_getenv ("KILT_TEST_SANITIZER"))
        {
          g_test_message ("vgg16: in the plain build only (KILT_TEST_SANITIZER)");
          continue;
        }
      summary = kilt_summary_new (model, 2);
      in = kilt_model_node (model, 0)->out_shape;
      r = run_cli (NULL, (const char *const[]){ "bench", "--model", names[i], "--batch", "1",
                                                "--steps", "1", "--no-check", "--json", NULL });
      g_test_message ("%s: %s%s", names[i], r.out, r.err);
      g_assert_cmpint (r.status, ==, 0);
      o = bench_json (parser, &r);
      g_assert_cmpstr (json_object_get_string_member (o, "data"), ==, "synthetic");
      g_assert_cmpstr (json_object_get_string_member (o, "precision"), ==, "fp32");
      g_assert_cmpstr (json_object_get_string_member (o, "memory"), ==, "auto");
      g_assert_false (json_object_get_boolean_member (o, "recompute"));
      g_assert_false (json_object_get_boolean_member (o, "adapted_to_data"));
      chw = json_object_get_array_member (o, "input_chw");
      g_assert_cmpint (json_array_get_int_element (chw, 0), ==, in.c);
      g_assert_cmpint (json_array_get_int_element (chw, 1), ==, in.h);
      g_assert_cmpint (json_array_get_int_element (chw, 2), ==, in.w);
      g_assert_cmpfloat (json_object_get_double_member (o, "forward_flops_per_sample"), ==,
                         (double)summary->total_flops);
      g_assert_cmpfloat_with_epsilon (json_object_get_double_member (o, "train_mflop_per_sample"),
                                      3.0 * summary->total_flops / 1e6, 1e-6);
      result_clear (&r);
      /* And the summary command says the same, at its printed precision. */
      r = run_cli (NULL, (const char *const[]){ "summary", "--model", names[i], NULL });
      g_assert_cmpint (r.status, ==, 0);
      {
        const char *line = strstr (r.out, "Forward FLOPs per sample: ");
        double v;
        char unit;
        g_assert_nonnull (line);
        g_assert_cmpint (sscanf (line, "Forward FLOPs per sample: %lf %c", &v, &unit), ==, 2);
        v *= unit == 'G' ? 1e9 : unit == 'M' ? 1e6 : unit == 'k' ? 1e3 : 1;
        g_assert_cmpfloat (fabs (v - summary->total_flops), <=, 0.01 * summary->total_flops);
      }
      result_clear (&r);
    }

  /* Recomputing activations: bench names it, with what the plan keeps and its extra cost. */
  {
    g_autoptr (JsonParser) parser = json_parser_new ();
    JsonObject *o;
    /* (LeNet-5's buffers all fit side by side as they are: recomputing saves it nothing.) */
    Result r = run_cli (NULL, (const char *const[]){ "bench", "--model", "mnist_cnn", "--batch",
                                                     "2", "--steps", "1", "--no-check", "--memory",
                                                     "recompute", "--json", NULL });
    o = bench_json (parser, &r);
    g_assert_cmpstr (json_object_get_string_member (o, "memory"), ==, "recompute");
    g_assert_true (json_object_get_boolean_member (o, "recompute"));
    g_assert_cmpint (json_object_get_int_member (o, "blocks_kept"), <,
                     json_object_get_int_member (o, "blocks_total"));
    g_assert_cmpfloat (json_object_get_double_member (o, "recompute_percent"), >, 0);
    result_clear (&r);
  }

  /* cifar10_cnn on the 28x28x1 sample is another network, and bench says so. */
  {
    g_autoptr (JsonParser) parser = json_parser_new ();
    g_autoptr (KiltModel) fitted
        = kilt_model_load_preset ("cifar10_cnn", &(KiltShape){ 1, 28, 28 }, 10, NULL);
    JsonObject *o;
    Result r
        = run_cli (NULL, (const char *const[]){ "bench", "--data", "sample", "--batch", "2",
                                                "--steps", "1", "--no-check", "--json", NULL });
    g_assert_cmpint (r.status, ==, 0);
    o = bench_json (parser, &r);
    g_assert_true (json_object_get_boolean_member (o, "adapted_to_data"));
    g_assert_cmpint (json_array_get_int_element (json_object_get_array_member (o, "input_chw"), 2),
                     ==, 28);
    g_assert_cmpfloat (json_object_get_double_member (o, "forward_flops_per_sample"), ==,
                       (double)kilt_model_flops (fitted));
    result_clear (&r);
    r = run_cli (NULL, (const char *const[]){ "bench", "--data", "sample", "--batch", "2",
                                              "--steps", "1", "--no-check", NULL });
    g_assert_nonnull (strstr (r.out, "not the preset's own network"));
    result_clear (&r);
  }
}

/* --precision: tf32 is refused where there are no tensor cores, naming the device, before a
 * run is recorded; with the kernel emulated (KILT_TF32_EMULATE=1, any device) a run trains in
 * tf32 and says so, the store and the report record it, and bench checks its step against the
 * C reference at tf32's tolerance. */
static void
test_precision (void)
{
  g_autofree char *dir = NULL, *db = NULL;
  g_autoptr (KiltDeviceList) list = kilt_device_list_new ();
  const KiltDeviceInfo *d = kilt_device_list_choose_default (list, NULL);
  Result r;

  if (!cli_path () || d == NULL)
    return;
  dir = kilt_test_tmpdir ();
  db = g_build_filename (dir, "runs.db", NULL);
  if (!strstr (d->vendor, "NVIDIA"))
    {
      r = run_cli (db,
                   (const char *const[]){ "train", "--precision", "tf32", "--epochs", "1", NULL });
      g_test_message ("%s", r.err);
      g_assert_cmpint (r.status, ==, 2);
      g_assert_nonnull (strstr (r.err, d->name));
      g_assert_nonnull (strstr (r.err, "train in fp32"));
      g_assert_null (strstr (r.out, "epoch 1/1"));
      result_clear (&r);
      g_assert_false (g_file_test (db, G_FILE_TEST_EXISTS));
    }
  r = run_cli (db, (const char *const[]){ "train", "--precision", "bf16", NULL });
  g_assert_cmpint (r.status, ==, 2);
  g_assert_nonnull (strstr (r.err, "unknown --precision \"bf16\""));
  result_clear (&r);

  g_setenv ("KILT_TF32_EMULATE", "1", TRUE);
  r = run_cli (db, (const char *const[]){ "train", "--model", "mlp", "--precision", "TF32",
                                          "--epochs", "1", "--max-samples", "128", NULL });
  g_test_message ("%s%s", r.out, r.err);
  g_assert_cmpint (r.status, ==, 0);
  g_assert_nonnull (strstr (r.out, " in tf32: "));
  result_clear (&r);
  {
    g_autoptr (GError) error = NULL;
    g_autoptr (KiltRunStore) store = kilt_run_store_open (db, &error);
    g_autoptr (KiltRun) run = kilt_run_store_get (store, 1, &error);
    g_assert_no_error (error);
    g_assert_cmpint (run->record.config.precision, ==, KILT_PRECISION_TF32);
    g_assert_cmpint (run->status, ==, KILT_RUN_FINISHED);
  }
  {
    g_autofree char *md = g_build_filename (dir, "r.md", NULL);
    g_autofree char *text = NULL;
    r = run_cli (db, (const char *const[]){ "report", "1", "--format", "md", "-o", md, NULL });
    g_assert_cmpint (r.status, ==, 0);
    g_assert_true (g_file_get_contents (md, &text, NULL, NULL));
    g_assert_nonnull (strstr (text, "| Precision |"));
    g_assert_nonnull (strstr (text, "| tf32 |"));
    result_clear (&r);
  }
  {
    g_autoptr (JsonParser) parser = json_parser_new ();
    JsonObject *o;
    r = run_cli (NULL,
                 (const char *const[]){ "bench", "--model", "mnist_cnn", "--precision", "tf32",
                                        "--batch", "4", "--steps", "1", "--json", NULL });
    g_assert_cmpint (r.status, ==, 0);
    o = bench_json (parser, &r);
    g_assert_cmpstr (json_object_get_string_member (o, "precision"), ==, "tf32");
    g_assert_true (json_object_get_boolean_member (o, "check_ok"));
    result_clear (&r);
  }
  g_unsetenv ("KILT_TF32_EMULATE");
}

/* The first-step check stays bounded on a big network: VGG16 at 224 (93 GFLOP a sample for
 * the reference) is checked on one sample of a smaller input, and bench says so before it
 * starts and in its result. */
static void
test_bench_check_bounded (void)
{
  g_autoptr (JsonParser) parser = json_parser_new ();
  JsonObject *o;
  JsonArray *chw;
  Result r;

  if (!cli_path ())
    return;
  if (g_getenv ("KILT_TEST_SANITIZER"))
    g_test_message ("vgg16: in the plain build only (KILT_TEST_SANITIZER)");
  else
    {
      r = run_cli (NULL, (const char *const[]){ "bench", "--model", "vgg16", "--batch", "1",
                                                "--steps", "1", NULL });
      g_test_message ("%s%s", r.out, r.err);
      g_assert_cmpint (r.status, ==, 0);
      g_assert_nonnull (
          strstr (r.err, "Checking the first step against the C reference on 1 sample"));
      g_assert_nonnull (strstr (r.out, "check:     pass on 1 sample of 3x"));
      g_assert_nonnull (strstr (r.out, "rebuilt smaller"));
      g_assert_nonnull (strstr (r.out, "input 3x224x224"));
      result_clear (&r);
    }
  /* MobileNetV2 (imported from Keras 3): thousands of ReLU6 outputs, one of which sat at its
   * cap of 6 on the device and just under it in the reference, which moved the gradients by
   * 1e-2 through batch normalisation; the reference now takes the device's side there. Its
   * last batch normalisations see 1x1 maps: the check takes 16 samples, so that each has 16
   * values a channel (kilt_reference_check_batch), and says so. */
  {
    g_autofree char *mnv2 = g_build_filename (g_getenv ("KILT_SOURCE_DIR"), "tests", "data",
                                              "keras", "keras3-app-mobilenetv2.json", NULL);
    r = run_cli (NULL, (const char *const[]){ "bench", "--model", mnv2, "--batch", "4", "--steps",
                                              "1", "--json", NULL });
    g_test_message ("%s%s", r.out, r.err);
    g_assert_cmpint (r.status, ==, 0);
    o = bench_json (parser, &r);
    g_assert_true (json_object_get_boolean_member (o, "check_ok"));
    g_assert_cmpfloat (json_object_get_double_member (o, "check_samples"), ==, 16);
    g_assert_cmpfloat (json_object_get_double_member (o, "check_bn_min_values"), >=, 16);
    g_assert_true (json_object_has_member (o, "check_kinks_followed"));
    result_clear (&r);
  }
  /* cifar10_cnn fits the budget: its own input, up to 4 samples. */
  r = run_cli (NULL,
               (const char *const[]){ "bench", "--batch", "8", "--steps", "1", "--json", NULL });
  g_assert_cmpint (r.status, ==, 0);
  o = bench_json (parser, &r);
  g_assert_true (json_object_get_boolean_member (o, "check_ok"));
  g_assert_cmpfloat (json_object_get_double_member (o, "check_samples"), ==, 4);
  chw = json_object_get_array_member (o, "check_input_chw");
  g_assert_cmpint (json_array_get_int_element (chw, 1), ==, 32);
  result_clear (&r);
}

/* Which convolution algorithm each Conv2D layer ran, in bench's per-layer figures: the one
 * forced, or one of the two when it is measured; the first step matches the C reference
 * either way. */
static void
test_bench_conv_algo (void)
{
  const char *modes[] = { "1", "0", "measure" };

  if (!cli_path ())
    return;
  for (guint m = 0; m < G_N_ELEMENTS (modes); m++)
    {
      g_autoptr (JsonParser) parser = json_parser_new ();
      g_autoptr (GError) error = NULL;
      JsonObject *o;
      JsonArray *layers;
      guint convs = 0;
      Result r;

      g_setenv ("KILT_CONV_IGEMM", modes[m], TRUE);
      /* im2col as it is, not the direct forward pass CPU devices run in its place (the direct
       * case below) */
      g_setenv ("KILT_CONV_DIRECT", "0", TRUE);
      r = run_cli (NULL, (const char *const[]){ "bench", "--model", "mnist_cnn", "--batch", "4",
                                                "--steps", "2", "--json", NULL });
      g_test_message ("KILT_CONV_IGEMM=%s: %s%s", modes[m], r.out, r.err);
      g_assert_cmpint (r.status, ==, 0);
      g_assert_true (json_parser_load_from_data (parser, r.out, -1, &error));
      g_assert_no_error (error);
      o = json_node_get_object (json_parser_get_root (parser));
      g_assert_true (json_object_get_boolean_member (o, "check_ok"));
      layers = json_object_get_array_member (o, "layers");
      for (guint i = 0; i < json_array_get_length (layers); i++)
        {
          JsonObject *l = json_array_get_object_element (layers, i);
          const char *name = json_object_get_string_member (l, "layer");
          const char *algo = json_object_get_string_member_with_default (l, "algo", NULL);

          /* Keras names them conv2d, conv2d_1, ...; nothing else has an algorithm. */
          g_assert_cmpint (g_str_has_prefix (name, "conv2d"), ==, algo != NULL);
          if (!algo)
            continue;
          convs++;
          if (m == 0)
            g_assert_cmpstr (algo, ==, "implicit GEMM");
          else if (m == 1)
            g_assert_cmpstr (algo, ==, "im2col + GEMM");
          else
            {
              /* Measured: the times behind the choice, [im2col, implicit GEMM] per pass. */
              JsonObject *ms = json_object_get_object_member (l, "algo_ms");

              g_assert_true (g_str_has_prefix (algo, "implicit GEMM")
                             || g_str_has_prefix (algo, "im2col + GEMM"));
              for (guint p = 0; p < 2; p++)
                {
                  JsonArray *a = json_object_get_array_member (ms, p == 0 ? "forward" : "weights");
                  g_assert_cmpuint (json_array_get_length (a), ==, 2);
                  g_assert_cmpfloat (json_array_get_double_element (a, 0), >, 0);
                  g_assert_cmpfloat (json_array_get_double_element (a, 1), >, 0);
                }
            }
        }
      g_assert_cmpuint (convs, ==, 2);
      result_clear (&r);
    }
  g_unsetenv ("KILT_CONV_IGEMM");
  g_unsetenv ("KILT_CONV_DIRECT");
  /* Unforced, a CPU device runs both (stride-1) convolutions directly, and its first step still
   * matches the reference. */
  {
    KiltContext *ctx = kilt_test_context ();
    g_autoptr (JsonParser) parser = json_parser_new ();
    g_autoptr (GError) error = NULL;
    JsonArray *layers;
    g_autoptr (GString) algos = g_string_new (NULL);
    Result r;

    if (!ctx || !g_str_equal (ctx->info->type, "CPU"))
      return;
    r = run_cli (NULL, (const char *const[]){ "bench", "--model", "mnist_cnn", "--batch", "4",
                                              "--steps", "2", "--json", NULL });
    g_assert_cmpint (r.status, ==, 0);
    g_assert_true (json_parser_load_from_data (parser, r.out, -1, &error));
    g_assert_no_error (error);
    g_assert_true (json_object_get_boolean_member (
        json_node_get_object (json_parser_get_root (parser)), "check_ok"));
    layers = json_object_get_array_member (json_node_get_object (json_parser_get_root (parser)),
                                           "layers");
    for (guint i = 0; i < json_array_get_length (layers); i++)
      {
        const char *algo = json_object_get_string_member_with_default (
            json_array_get_object_element (layers, i), "algo", NULL);
        if (algo)
          g_string_append_printf (algos, "%s%s", algos->len ? "|" : "", algo);
      }
    /* The first layer's single input channel keeps im2col's backward pass (too few channels
     * for the direct weight gradient); the second runs both ways directly. */
    g_assert_cmpstr (algos->str, ==, "direct, weights by im2col + GEMM|direct");
    result_clear (&r);
  }
}

static void
test_bad_data (void)
{
  g_autofree char *dir = NULL;
  g_autofree char *db = NULL;
  g_autofree char *missing = NULL;
  g_autofree char *text = NULL;
  Result r;

  if (!cli_path ())
    return;
  dir = kilt_test_tmpdir ();
  db = g_build_filename (dir, "runs.db", NULL);
  missing = g_build_filename (dir, "no such folder", "train.csv", NULL);
  r = run_cli (db, (const char *const[]){ "train", "--data", missing, NULL });
  g_test_message ("exit %d: %s", r.status, r.err);
  g_assert_cmpint (r.status, >, 0);
  g_assert_nonnull (strstr (r.err, missing));
  g_assert_null (strstr (r.out, "epoch"));
  result_clear (&r);

  /* A file that exists but is no data set: named too, with what is wrong in it. */
  text = g_build_filename (dir, "notes.txt", NULL);
  g_assert_true (g_file_set_contents (text, "just words\nmore words\n", -1, NULL));
  r = run_cli (db, (const char *const[]){ "train", "--data", text, NULL });
  g_test_message ("exit %d: %s", r.status, r.err);
  g_assert_cmpint (r.status, >, 0);
  g_assert_nonnull (strstr (r.err, text));
  result_clear (&r);

  /* A checkpoint that cannot be written fails before training, not after the first epoch. */
  {
    g_autofree char *ck = g_build_filename (dir, "no such folder", "run.ckpt", NULL);
    r = run_cli (db, (const char *const[]){ "train", "--epochs", "1", "--max-samples", "64",
                                            "--checkpoint", ck, NULL });
    g_test_message ("exit %d: %s", r.status, r.err);
    g_assert_cmpint (r.status, >, 0);
    g_assert_nonnull (strstr (r.err, ck));
    g_assert_null (strstr (r.out, "epoch 1/1"));
    result_clear (&r);
  }

  /* What the loader decided is told before training: here the dropped row. */
  {
    g_autofree char *csv = g_build_filename (dir, "rows.csv", NULL);
    g_autoptr (GString) rows = g_string_new ("a,b,label\n");
    for (int i = 0; i < 40; i++)
      g_string_append_printf (rows, "%d,%d,%s\n", i, 40 - i, i % 2 ? "odd" : "even");
    g_string_append (rows, "7,x,odd\n");
    g_assert_true (g_file_set_contents (csv, rows->str, -1, NULL));
    r = run_cli (db, (const char *const[]){ "train", "--data", csv, "--drop-bad-rows", "--model",
                                            "mlp", "--epochs", "1", NULL });
    g_test_message ("exit %d: %s", r.status, r.err);
    g_assert_cmpint (r.status, ==, 0);
    g_assert_nonnull (strstr (r.err, "kilt-cli: note: dropped 1 row with missing or non-numeric"));
    result_clear (&r);
  }
}

static JsonObject *
parse_line (JsonParser *parser, const char *line)
{
  g_autoptr (GError) error = NULL;
  JsonNode *root;

  if (!json_parser_load_from_data (parser, line, -1, &error))
    g_error ("not JSON: %s (%s)", line, error->message);
  root = json_parser_get_root (parser);
  g_assert_true (JSON_NODE_HOLDS_OBJECT (root));
  g_assert_true (json_object_has_member (json_node_get_object (root), "event"));
  return json_node_get_object (root);
}

static void
test_json (void)
{
  g_autofree char *dir = NULL;
  g_autofree char *db = NULL;
  g_auto (GStrv) lines = NULL;
  g_autoptr (JsonParser) parser = json_parser_new ();
  guint n_epochs = 0, n_steps = 0, n_lines = 0, steps_per_epoch = 0, last_epoch = 0;
  gboolean started = FALSE, finished = FALSE;
  Result r;

  if (!cli_path ())
    return;
  dir = kilt_test_tmpdir ();
  db = g_build_filename (dir, "runs.db", NULL);
  r = run_cli (db, (const char *const[]){ "train", "--json", "--epochs", "2", "--max-samples",
                                          "200", "--batch", "25", NULL });
  g_assert_cmpint (r.status, ==, 0);
  lines = g_strsplit (r.out, "\n", -1);
  for (guint i = 0; lines[i]; i++)
    {
      JsonObject *o;
      const char *ev;
      if (lines[i][0] == 0)
        continue;
      g_assert_false (finished); /* nothing after the end */
      n_lines++;
      o = parse_line (parser, lines[i]);
      ev = json_object_get_string_member (o, "event");
      if (g_str_equal (ev, "started"))
        {
          started = TRUE;
          steps_per_epoch = (guint)json_object_get_double_member (o, "steps_per_epoch");
          g_assert_cmpfloat (json_object_get_double_member (o, "params"), >, 0);
        }
      else if (g_str_equal (ev, "step"))
        {
          g_assert_true (started);
          g_assert_true (isfinite (json_object_get_double_member (o, "loss")));
          n_steps++;
        }
      else if (g_str_equal (ev, "epoch"))
        {
          double loss = json_object_get_double_member (o, "loss");
          double acc = json_object_get_double_member (o, "accuracy");
          last_epoch = (guint)json_object_get_double_member (o, "epoch");
          g_assert_cmpuint (last_epoch, ==, n_epochs + 1);
          g_assert_cmpuint ((guint)json_object_get_double_member (o, "step"), ==, steps_per_epoch);
          g_assert_true (loss > 0 && loss < 10);
          g_assert_true (acc >= 0 && acc <= 1);
          g_assert_true (json_object_has_member (o, "val_loss"));
          n_epochs++;
        }
      else if (g_str_equal (ev, "finished"))
        {
          g_assert_cmpstr (json_object_get_string_member (o, "status"), ==, "finished");
          g_assert_false (json_object_has_member (o, "error"));
          g_assert_true (json_object_get_double_member (o, "test_accuracy") > 0);
          finished = TRUE;
        }
      else
        g_assert_true (g_str_equal (ev, "memory") || g_str_equal (ev, "timings")
                       || g_str_equal (ev, "log"));
    }
  g_test_message ("%u JSON lines: %u steps, %u epochs", n_lines, n_steps, n_epochs);
  g_assert_true (started);
  g_assert_true (finished);
  g_assert_cmpuint (steps_per_epoch, ==, 8);
  g_assert_cmpuint (n_epochs, ==, 2);
  g_assert_cmpuint (n_steps, >=, 1);
  result_clear (&r);

  /* A failing run in --json says so in its last line. */
  r = run_cli (db, (const char *const[]){ "train", "--json", "--epochs", "1", "--max-samples", "64",
                                          "--optimizer", "sgd", "--lr", "1e30", NULL });
  g_assert_cmpint (r.status, ==, 1);
  g_strfreev (lines);
  lines = g_strsplit (g_strchomp (r.out), "\n", -1);
  {
    JsonObject *o = parse_line (parser, lines[g_strv_length (lines) - 1]);
    g_assert_cmpstr (json_object_get_string_member (o, "event"), ==, "finished");
    g_assert_cmpstr (json_object_get_string_member (o, "status"), ==, "failed");
    g_assert_nonnull (strstr (json_object_get_string_member (o, "error"), "NaN"));
  }
  result_clear (&r);
}

/* license-words with the windows cut to 4 to 16 words and padded with 0 after them (the words'
 * ids shifted by one, so 0 is padding only): the rows of @csv into @out. */
static void
write_padded_words (const char *csv, const char *out)
{
  g_autofree char *text = NULL;
  g_auto (GStrv) lines = NULL;
  g_autoptr (GString) s = g_string_new (NULL);
  g_autoptr (GError) error = NULL;

  g_assert_true (g_file_get_contents (csv, &text, NULL, &error));
  lines = g_strsplit (text, "\n", -1);
  g_string_append_printf (s, "%s\n", lines[0]);
  for (guint i = 1; lines[i] && lines[i][0]; i++)
    {
      g_auto (GStrv) f = g_strsplit (lines[i], ",", -1);
      guint len = 4 + (i * 7) % 13;
      g_assert_cmpuint (g_strv_length (f), ==, 17);
      for (guint w = 0; w < 16; w++)
        g_string_append_printf (s, "%" G_GINT64_FORMAT ",",
                                w < len ? g_ascii_strtoll (f[w], NULL, 10) + 1 : 0);
      g_string_append_printf (s, "%s\n", f[16]);
    }
  g_assert_true (g_file_set_contents (out, s->str, -1, &error));
}

/* A GRU that skips the padding (Keras' mask_zero, tests/data/license-words/model-masked.json)
 * learns variable-length windows: the loss falls and the test accuracy is well above chance
 * (the largest class is 30 of 108; it reaches 0.47, an average of the embeddings about 0.6, as
 * the windows are shorter than the full ones test_embedding_text reads); and the same words predict
 * the same whatever the padding before and after them, while other words do not. */
static void
test_masked_text (void)
{
  g_autofree char *data
      = g_build_filename (g_getenv ("KILT_SOURCE_DIR"), "tests", "data", "license-words", NULL);
  g_autofree char *model = g_build_filename (data, "model-masked.json", NULL);
  g_autofree char *dir = NULL, *db = NULL, *ck = NULL, *padded = NULL, *rows = NULL;
  g_auto (GStrv) lines = NULL;
  g_autoptr (JsonParser) parser = json_parser_new ();
  g_autoptr (GError) error = NULL;
  double first_loss = -1, last_loss = -1, test_acc = -1, scores[4][4];
  Result r;

  if (!cli_path ())
    return;
  dir = kilt_test_tmpdir ();
  db = g_build_filename (dir, "runs.db", NULL);
  ck = g_build_filename (dir, "masked.ckpt", NULL);
  padded = g_build_filename (dir, "padded", NULL);
  g_assert_cmpint (g_mkdir_with_parents (padded, 0700), ==, 0);
  for (guint i = 0; i < 2; i++)
    {
      const char *name = i ? "test.csv" : "train.csv";
      g_autofree char *src = g_build_filename (data, name, NULL);
      g_autofree char *dst = g_build_filename (padded, name, NULL);
      write_padded_words (src, dst);
    }
  r = run_cli (db, (const char *const[]){ "train", "--json", "--model", model, "--data", padded,
                                          "--epochs", "8", "--lr", "0.01", "--seed", "3",
                                          "--checkpoint", ck, NULL });
  g_test_message ("%s", r.err);
  g_assert_cmpint (r.status, ==, 0);
  lines = g_strsplit (r.out, "\n", -1);
  for (guint i = 0; lines[i]; i++)
    {
      JsonObject *o;
      if (lines[i][0] == 0)
        continue;
      o = parse_line (parser, lines[i]);
      if (g_str_equal (json_object_get_string_member (o, "event"), "epoch"))
        {
          last_loss = json_object_get_double_member (o, "loss");
          if (first_loss < 0)
            first_loss = last_loss;
        }
      if (g_str_equal (json_object_get_string_member (o, "event"), "finished"))
        test_acc = json_object_get_double_member (o, "test_accuracy");
    }
  g_test_message ("loss %.4f after the first epoch, %.4f after the last; test accuracy %.3f",
                  first_loss, last_loss, test_acc);
  g_assert_cmpfloat (first_loss, >, 0);
  g_assert_cmpfloat (last_loss, <, 0.7 * first_loss);
  g_assert_cmpfloat (test_acc, >, 0.4);
  result_clear (&r);

  /* Five words right-padded, left-padded, padded on both sides; then five others. */
  rows = g_build_filename (dir, "rows.csv", NULL);
  g_assert_true (g_file_set_contents (rows,
                                      "8,60,294,65,3,0,0,0,0,0,0,0,0,0,0,0\n"
                                      "0,0,0,0,0,0,0,0,0,0,0,8,60,294,65,3\n"
                                      "0,0,0,8,60,294,65,3,0,0,0,0,0,0,0,0\n"
                                      "0,0,0,72,74,53,7,24,0,0,0,0,0,0,0,0\n",
                                      -1, &error));
  r = run_cli (db, (const char *const[]){ "predict", "--json", "--model", model, "--checkpoint", ck,
                                          rows, NULL });
  g_assert_cmpint (r.status, ==, 0);
  {
    g_auto (GStrv) out = g_strsplit (g_strchomp (r.out), "\n", -1);
    double same = 0, other = 0;
    g_assert_cmpuint (g_strv_length (out), ==, 4);
    for (guint i = 0; i < 4; i++)
      {
        JsonArray *a;
        g_assert_true (json_parser_load_from_data (parser, out[i], -1, &error));
        a = json_object_get_array_member (json_node_get_object (json_parser_get_root (parser)),
                                          "scores");
        g_assert_cmpuint (json_array_get_length (a), ==, 4);
        for (guint k = 0; k < 4; k++)
          scores[i][k] = json_array_get_double_element (a, k);
      }
    for (guint k = 0; k < 4; k++)
      {
        same = MAX (same,
                    MAX (fabs (scores[1][k] - scores[0][k]), fabs (scores[2][k] - scores[0][k])));
        other = MAX (other, fabs (scores[3][k] - scores[0][k]));
      }
    g_test_message ("padding changes the scores by %.3g, other words by %.3g", same, other);
    g_assert_cmpfloat (same, <, 1e-6);
    g_assert_cmpfloat (other, >, 1e-3);
  }
  result_clear (&r);
}

/* A text classifier on real text (tests/data/license-words: 16-word windows of four licences
 * Debian ships, as word ids, the test windows from parts of the texts no training window
 * reads): Embedding, an average over the words and a softmax learn it well above chance (the
 * largest class is 30 of the 108 test windows). The ids reach the Embedding as written, not
 * standardised; --standardize and an id past the table are refused naming the layer. */
static void
test_embedding_text (void)
{
  g_autofree char *data
      = g_build_filename (g_getenv ("KILT_SOURCE_DIR"), "tests", "data", "license-words", NULL);
  g_autofree char *model = g_build_filename (data, "model.json", NULL);
  g_autofree char *dir = NULL, *db = NULL, *bad = NULL, *bad_csv = NULL, *text = NULL;
  g_autofree char *ck = NULL;
  g_autofree char *train_csv = g_build_filename (data, "train.csv", NULL);
  g_auto (GStrv) lines = NULL;
  g_autoptr (JsonParser) parser = json_parser_new ();
  g_autoptr (GError) error = NULL;
  double test_acc = -1, train_acc = -1;
  Result r;

  if (!cli_path ())
    return;
  dir = kilt_test_tmpdir ();
  db = g_build_filename (dir, "runs.db", NULL);
  ck = g_build_filename (dir, "words.ckpt", NULL);
  r = run_cli (db, (const char *const[]){ "train", "--json", "--model", model, "--data", data,
                                          "--epochs", "10", "--lr", "0.01", "--seed", "3",
                                          "--checkpoint", ck, NULL });
  g_test_message ("%s", r.err);
  g_assert_cmpint (r.status, ==, 0);
  g_assert_nonnull (strstr (r.err, "layer emb (Embedding) reads ids; loading"));
  lines = g_strsplit (r.out, "\n", -1);
  for (guint i = 0; lines[i]; i++)
    {
      JsonObject *o;
      if (lines[i][0] == 0)
        continue;
      o = parse_line (parser, lines[i]);
      if (g_str_equal (json_object_get_string_member (o, "event"), "epoch"))
        train_acc = json_object_get_double_member (o, "accuracy");
      if (g_str_equal (json_object_get_string_member (o, "event"), "finished"))
        test_acc = json_object_get_double_member (o, "test_accuracy");
    }
  g_test_message ("train accuracy %.3f, test accuracy %.3f", train_acc, test_acc);
  g_assert_cmpfloat (train_acc, >, 0.8);
  g_assert_cmpfloat (test_acc, >, 0.5);
  result_clear (&r);

  /* The checkpoint holds the trained table: eval (which also reads the ids as written) gives
   * the run's test accuracy again. */
  r = run_cli (db, (const char *const[]){ "eval", "--json", "--model", model, "--data", data,
                                          "--checkpoint", ck, NULL });
  g_assert_cmpint (r.status, ==, 0);
  {
    g_autoptr (JsonParser) p = json_parser_new ();
    g_assert_true (json_parser_load_from_data (p, r.out, -1, &error));
    g_assert_cmpfloat_with_epsilon (
        json_object_get_double_member (json_node_get_object (json_parser_get_root (p)), "accuracy"),
        test_acc, 1e-5);
  }
  result_clear (&r);

  r = run_cli (db, (const char *const[]){ "train", "--model", model, "--data", data, "--epochs",
                                          "1", "--standardize", NULL });
  g_assert_cmpint (r.status, !=, 0);
  g_assert_nonnull (strstr (r.err, "standardising the data (--standardize"));
  g_assert_nonnull (strstr (r.err, "would change the ids that layer emb (Embedding) reads"));
  result_clear (&r);

  /* predict takes rows of ids from a CSV and names an id past the table. */
  {
    g_autofree char *rows = g_build_filename (dir, "windows.csv", NULL);
    g_auto (GStrv) out = NULL;
    g_assert_true (g_file_set_contents (
        rows, "3,1,0,7,2,2,9,0,15,4,4,1,0,0,6,8\n12,5,5,0,1,3,3,40,2,0,0,9,11,1,7,500\n", -1,
        &error));
    r = run_cli (db, (const char *const[]){ "predict", "--json", "--model", model, "--checkpoint",
                                            ck, rows, NULL });
    g_assert_cmpint (r.status, ==, 0);
    out = g_strsplit (g_strchomp (r.out), "\n", -1);
    g_assert_cmpuint (g_strv_length (out), ==, 2);
    for (guint i = 0; i < 2; i++)
      {
        JsonObject *o
            = json_node_get_object ((json_parser_load_from_data (parser, out[i], -1, &error),
                                     json_parser_get_root (parser)));
        JsonArray *scores = json_object_get_array_member (o, "scores");
        double sum = 0;
        g_assert_cmpuint (json_array_get_length (scores), ==, 4);
        for (guint k = 0; k < 4; k++)
          sum += json_array_get_double_element (scores, k);
        g_assert_cmpfloat_with_epsilon (sum, 1.0, 1e-5);
      }
    result_clear (&r);
    g_assert_true (g_file_set_contents (
        rows, "3,1,0,7,2,2,9,0,15,4,4,1,0,0,6,8\n12,5,5,0,1,3,3,40,2,0,0,9,11,1,7,501\n", -1,
        &error));
    r = run_cli (db, (const char *const[]){ "predict", "--json", "--model", model, "--checkpoint",
                                            ck, rows, NULL });
    g_assert_cmpint (r.status, !=, 0);
    g_assert_nonnull (strstr (r.err, "windows.csv:2 holds 501 at value 16 (counting from 1); layer "
                                     "emb (Embedding) takes whole-number ids from 0 to 500"));
    result_clear (&r);
  }

  /* Row 3 of the training file names word 501 of a 501-word table (ids 0 to 500). */
  g_assert_true (g_file_get_contents (train_csv, &text, NULL, &error));
  bad = g_build_filename (dir, "bad-words", NULL);
  g_assert_cmpint (g_mkdir_with_parents (bad, 0700), ==, 0);
  bad_csv = g_build_filename (bad, "train.csv", NULL);
  {
    g_auto (GStrv) rows = g_strsplit (text, "\n", -1);
    char *comma = strchr (rows[3], ',');
    g_autofree char *row = g_strconcat ("501", comma, NULL);
    g_free (rows[3]);
    rows[3] = g_steal_pointer (&row);
    g_free (text);
    text = g_strjoinv ("\n", rows);
  }
  g_assert_true (g_file_set_contents (bad_csv, text, -1, &error));
  r = run_cli (
      db, (const char *const[]){ "train", "--model", model, "--data", bad, "--epochs", "1", NULL });
  g_test_message ("%s", r.err);
  g_assert_cmpint (r.status, !=, 0);
  g_assert_nonnull (strstr (r.err, "holds 501 at feature 0"));
  g_assert_nonnull (strstr (r.err, "layer emb (Embedding) takes whole-number ids from 0 to 500 "
                                   "(input_dim 501)"));
  result_clear (&r);
}

/* `runs resume`: a run whose device failed in its third epoch goes on from its checkpoint as a
 * new run, which trains epochs 3 to 20 into a checkpoint of its own; a finished run, or an
 * unknown device, is refused with the reason. */
/* --on-oom resume-smaller: a launch in epoch 2 fails with CL_OUT_OF_RESOURCES; the run goes
 * on from its epoch-1 checkpoint at a smaller batch, finishes, and `runs show` says what
 * changed. Without it the run fails naming the code; a wrong value is refused. */
/* A sequence model trains end to end: rows of 24 noisy sine samples (1, 2 or 3 cycles at a
 * random phase, noise 0.3) as a CSV, a Kilt JSON model reading them as a sequence of one
 * feature into an LSTM, kilt-cli train seeded; the loss falls and held-out sequences are
 * told apart far above chance (1/3). */
static void
test_sequence_train (void)
{
  const guint steps = 24, rows = 300;
  g_autofree char *dir = NULL, *db = NULL, *csv = NULL, *model = NULL;
  g_autoptr (GString) text = g_string_new (NULL);
  g_autoptr (GRand) rand = g_rand_new_with_seed (3);
  g_autoptr (GError) error = NULL;
  g_autoptr (JsonParser) parser = json_parser_new ();
  g_auto (GStrv) lines = NULL;
  double first_loss = -1, last_loss = -1, last_val_acc = -1;
  guint epochs = 0;
  Result r;

  if (!cli_path ())
    return;
  dir = kilt_test_tmpdir ();
  db = g_build_filename (dir, "runs.db", NULL);
  csv = g_build_filename (dir, "sines.csv", NULL);
  model = g_build_filename (dir, "sine-lstm.json", NULL);
  for (guint t = 0; t < steps; t++)
    g_string_append_printf (text, "t%u,", t);
  g_string_append (text, "label\n");
  for (guint i = 0; i < rows; i++)
    {
      guint cycles = 1 + i % 3;
      double phase = g_rand_double_range (rand, 0, 2 * G_PI);
      for (guint t = 0; t < steps; t++)
        {
          /* Box-Muller: a standard normal from two uniforms. */
          double u1 = g_rand_double_range (rand, 1e-12, 1), u2 = g_rand_double (rand);
          double noise = sqrt (-2 * log (u1)) * cos (2 * G_PI * u2);
          g_string_append_printf (text, "%.4f,",
                                  sin (2 * G_PI * cycles * t / steps + phase) + 0.3 * noise);
        }
      g_string_append_printf (text, "f%u\n", cycles);
    }
  g_assert_true (g_file_set_contents (csv, text->str, -1, &error));
  g_assert_true (g_file_set_contents (
      model,
      "{ \"format\": \"kilt-model\", \"version\": 1, \"name\": \"sine-lstm\", "
      "\"loss\": \"softmax_cross_entropy\", "
      "\"input\": { \"name\": \"signal\", \"channels\": 24, \"height\": 1, \"width\": 1 }, "
      "\"layers\": ["
      "{ \"name\": \"steps\", \"type\": \"Reshape\", \"target_shape\": [1, 1, 24] }, "
      "{ \"name\": \"lstm\", \"type\": \"LSTM\", \"units\": 16 }, "
      "{ \"name\": \"out\", \"type\": \"Dense\", \"units\": 3, \"activation\": \"softmax\" } ] }",
      -1, &error));
  g_assert_no_error (error);
  r = run_cli (db, (const char *const[]){ "train", "--json", "--model", model, "--data", csv,
                                          "--epochs", "25", "--batch", "16", "--seed", "1",
                                          "--val-split", "0.2", NULL });
  g_assert_cmpint (r.status, ==, 0);
  lines = g_strsplit (r.out, "\n", -1);
  for (guint i = 0; lines[i]; i++)
    {
      JsonObject *o;
      if (lines[i][0] == 0)
        continue;
      o = parse_line (parser, lines[i]);
      if (!g_str_equal (json_object_get_string_member (o, "event"), "epoch"))
        continue;
      last_loss = json_object_get_double_member (o, "loss");
      last_val_acc = json_object_get_double_member (o, "val_accuracy");
      if (epochs++ == 0)
        first_loss = last_loss;
    }
  g_test_message ("sine LSTM: loss %.4f -> %.4f, validation accuracy %.3f", first_loss, last_loss,
                  last_val_acc);
  g_assert_cmpuint (epochs, ==, 25);
  g_assert_cmpfloat (first_loss, >, 1.0); /* about log 3 at the start */
  g_assert_cmpfloat (last_loss, <, 0.5 * first_loss);
  g_assert_cmpfloat (last_val_acc, >, 0.8);
  result_clear (&r);
  kilt_test_remove_tree (dir);
}

static void
test_on_oom (void)
{
  g_autofree char *dir = NULL, *db = NULL, *ckpt = NULL, *id = NULL;
  Result r;

  if (!cli_path ())
    return;
  dir = kilt_test_tmpdir ();
  db = g_build_filename (dir, "runs.db", NULL);
  ckpt = g_build_filename (dir, "oom.ckpt", NULL);
  {
    /* About 100 launches an epoch here (two steps and the evaluation): the 175th is in the
     * second. */
    const char *args[] = { "train",        "--epochs", "3",        "--max-samples",  "64",
                           "--checkpoint", ckpt,       "--on-oom", "resume-smaller", NULL };
    r = run_cli_fault (db, "oom:175", args);
  }
  g_test_message ("%s%s", r.out, r.err);
  g_assert_cmpint (r.status, ==, 0);
  g_assert_nonnull (strstr (r.err, "warning: out of device memory at step "));
  g_assert_nonnull (strstr (r.err, "; resumed from epoch 1 at batch "));
  g_assert_nonnull (strstr (r.err, "(was 32)"));
  g_assert_nonnull (strstr (r.err, "CL_OUT_OF_RESOURCES"));
  g_assert_nonnull (strstr (r.out, "epoch 3/3"));
  g_assert_nonnull (strstr (r.out, "Finished after"));
  result_clear (&r);
  g_assert_cmpuint (kilt_test_checkpoint_epochs (ckpt), ==, 3);
  {
    const char *args[] = { "runs", "show", "1", NULL };
    r = run_cli (db, args);
  }
  g_assert_cmpint (r.status, ==, 0);
  g_assert_nonnull (strstr (r.out, "\nwhile it trained: out of device memory at step "));
  result_clear (&r);

  {
    const char *args[] = { "train", "--epochs", "2", "--max-samples", "64", NULL };
    r = run_cli_fault (db, "oom:175", args);
  }
  g_assert_cmpint (r.status, ==, 1);
  g_assert_nonnull (strstr (r.err, "epoch 2, step "));
  g_assert_nonnull (strstr (r.err, "CL_OUT_OF_RESOURCES"));
  result_clear (&r);
  {
    const char *args[] = { "train", "--on-oom", "sometimes", NULL };
    r = run_cli (db, args);
  }
  g_assert_cmpint (r.status, ==, 2);
  g_assert_nonnull (strstr (r.err, "--on-oom wants fail or resume-smaller, not \"sometimes\""));
  result_clear (&r);
  {
    const char *args[] = { "train", "--on-oom", "resume-smaller", "--devices", "0,0", NULL };
    r = run_cli (db, args);
  }
  g_assert_cmpint (r.status, ==, 2);
  g_assert_nonnull (strstr (r.err, "not with --devices"));
  result_clear (&r);
}

static void
test_runs_resume (void)
{
  g_autofree char *dir = NULL, *db = NULL, *ckpt = NULL, *own_dir = NULL, *want_dir = NULL;
  g_autoptr (KiltRunStore) store = NULL;
  g_autoptr (KiltRun) failed = NULL, resumed = NULL;
  g_autoptr (GError) error = NULL;
  Result r;

  if (!cli_path ())
    return;
  dir = kilt_test_tmpdir ();
  db = g_build_filename (dir, "runs.db", NULL);
  ckpt = g_build_filename (dir, "mine.ckpt", NULL);
  {
    /* About 150 launches an epoch here (on a CPU device, where convolutions run forward directly;
     * measured: the 300th falls in epoch 2, the 400th in epoch 3, the 500th in epoch 4). */
    const char *args[] = { "train",        "--epochs", "20",     "--max-samples", "64",
                           "--checkpoint", ckpt,       "--name", "resumable",     NULL };
    r = run_cli_fault (db, "enqueue:400", args);
  }
  g_assert_cmpint (r.status, ==, 1);
  g_assert_nonnull (strstr (r.err, "injected fault"));
  result_clear (&r);
  g_assert_cmpuint (kilt_test_checkpoint_epochs (ckpt), ==, 2);

  {
    const char *args[] = { "runs", "resume", "1", NULL };
    r = run_cli (db, args);
  }
  g_test_message ("%s%s", r.out, r.err);
  g_assert_cmpint (r.status, ==, 0);
  g_assert_nonnull (strstr (r.out, "after epoch 2 of 20"));
  g_assert_nonnull (strstr (r.out, "epoch 20/20"));
  g_assert_nonnull (strstr (r.out, "Recorded as run #2"));
  result_clear (&r);

  store = kilt_run_store_open (db, &error);
  g_assert_no_error (error);
  failed = kilt_run_store_get (store, 1, &error);
  resumed = kilt_run_store_get (store, 2, &error);
  g_assert_no_error (error);
  g_assert_cmpint (failed->status, ==, KILT_RUN_FAILED);
  g_assert_cmpuint (failed->epochs->len, ==, 2);
  g_assert_cmpint (resumed->status, ==, KILT_RUN_FINISHED);
  g_assert_cmpstr (resumed->record.name, ==, "resumable");
  g_assert_cmpuint (resumed->epochs->len, ==, 18);
  g_assert_cmpuint (g_array_index (resumed->epochs, KiltEpochRecord, 0).epoch, ==, 3);
  /* Its own checkpoint, beside the store; the one it came from is as it was. */
  own_dir = g_path_get_dirname (resumed->record.config.checkpoint_path);
  want_dir = kilt_run_store_checkpoint_dir (db);
  g_assert_cmpstr (own_dir, ==, want_dir);
  g_assert_cmpuint (kilt_test_checkpoint_epochs (resumed->record.config.checkpoint_path), ==, 20);
  g_assert_cmpuint (kilt_test_checkpoint_epochs (ckpt), ==, 2);

  {
    const char *args[] = { "runs", "resume", "2", NULL };
    r = run_cli (db, args);
  }
  g_assert_cmpint (r.status, ==, 1);
  g_assert_nonnull (strstr (r.err, "run #2 has trained all its epochs"));
  result_clear (&r);
  {
    const char *args[] = { "runs", "resume", "1", "--device", "no-such-device", NULL };
    r = run_cli (db, args);
  }
  g_assert_cmpint (r.status, ==, 2);
  g_assert_nonnull (strstr (r.err, "no OpenCL device \"no-such-device\""));
  result_clear (&r);
}

/* A run killed with SIGKILL after its first epoch: every epoch it printed is in the store,
 * with the same figures, and the next open marks it interrupted. */
static void
test_killed_run (void)
{
  g_autofree char *dir = NULL;
  g_autofree char *db = NULL;
  g_autoptr (GSubprocessLauncher) l = NULL;
  g_autoptr (GSubprocess) p = NULL;
  g_autoptr (GDataInputStream) in = NULL;
  g_autoptr (JsonParser) parser = json_parser_new ();
  g_autoptr (GError) error = NULL;
  g_autoptr (GArray) printed = g_array_new (FALSE, FALSE, sizeof (double));
  g_autoptr (KiltRunStore) store = NULL;
  g_autoptr (GPtrArray) runs = NULL;
  g_autoptr (KiltRun) run = NULL;
  char *line;

  if (!cli_path ())
    return;
  dir = kilt_test_tmpdir ();
  db = g_build_filename (dir, "runs.db", NULL);
  l = g_subprocess_launcher_new (G_SUBPROCESS_FLAGS_STDOUT_PIPE
                                 | G_SUBPROCESS_FLAGS_STDERR_SILENCE);
  g_subprocess_launcher_setenv (l, "KILT_RUNS_DB", db, TRUE);
  p = g_subprocess_launcher_spawn (l, &error, cli_path (), "train", "--json", "--epochs", "100",
                                   "--max-samples", "200", "--name", "killed", NULL);
  g_assert_no_error (error);
  in = g_data_input_stream_new (g_subprocess_get_stdout_pipe (p));

  /* The recorder writes an epoch before the event is printed: once the line is here, the
   * epoch is committed. */
  while ((line = g_data_input_stream_read_line_utf8 (in, NULL, NULL, &error)))
    {
      JsonObject *o = parse_line (parser, line);
      gboolean epoch = g_str_equal (json_object_get_string_member (o, "event"), "epoch");
      if (epoch)
        {
          double loss = json_object_get_double_member (o, "loss");
          g_array_append_val (printed, loss);
        }
      g_free (line);
      if (epoch)
        break;
    }
  g_assert_no_error (error);
  g_assert_cmpuint (printed->len, ==, 1);

  /* Opened while kilt-cli lives, the run stays running: its process is there. */
  store = kilt_run_store_open (db, &error);
  g_assert_no_error (error);
  runs = kilt_run_store_list (store, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (runs->len, ==, 1);
  g_assert_cmpint (((KiltRun *)g_ptr_array_index (runs, 0))->status, ==, KILT_RUN_RUNNING);
  g_clear_pointer (&runs, g_ptr_array_unref);
  g_clear_pointer (&store, kilt_run_store_close);

  g_subprocess_force_exit (p);
  g_assert_true (g_subprocess_wait (p, NULL, &error));
  g_assert_no_error (error);
  g_assert_true (g_subprocess_get_if_signaled (p));
  g_assert_cmpint (g_subprocess_get_term_sig (p), ==, SIGKILL);
  /* Whatever else it printed before it died. */
  while ((line = g_data_input_stream_read_line_utf8 (in, NULL, NULL, NULL)))
    {
      if (line[0] == '{' && line[strlen (line) - 1] == '}')
        {
          JsonObject *o = parse_line (parser, line);
          if (g_str_equal (json_object_get_string_member (o, "event"), "epoch"))
            {
              double loss = json_object_get_double_member (o, "loss");
              g_array_append_val (printed, loss);
            }
        }
      g_free (line);
    }

  store = kilt_run_store_open (db, &error);
  g_assert_no_error (error);
  runs = kilt_run_store_list (store, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (runs->len, ==, 1);
  run = kilt_run_store_get (store, ((KiltRun *)g_ptr_array_index (runs, 0))->id, &error);
  g_assert_no_error (error);
  g_test_message ("%u epochs printed, %u stored; status %s: %s", printed->len, run->epochs->len,
                  kilt_run_status_name (run->status), run->error_message);
  g_assert_cmpint (run->status, ==, KILT_RUN_INTERRUPTED);
  g_assert_nonnull (run->error_message);
  g_assert_cmpstr (run->record.name, ==, "killed");
  g_assert_cmpuint (run->epochs->len, >=, printed->len);
  g_assert_cmpuint (run->epochs->len, <, 100);
  for (guint i = 0; i < printed->len; i++)
    {
      KiltEpochRecord *e = &g_array_index (run->epochs, KiltEpochRecord, i);
      g_assert_cmpuint (e->epoch, ==, i + 1);
      g_assert_cmpfloat_with_epsilon (e->train_loss, g_array_index (printed, double, i),
                                      1e-9 * fabs (e->train_loss));
      g_assert_true (isfinite (e->val_loss));
      g_assert_cmpfloat (e->wall_seconds, >, 0);
    }
}

/* Numeric options that are not finite numbers in their range are refused before anything runs,
 * naming the option and its range (exit 2); nothing is recorded. Until now --val-split nan
 * went into the stored configuration, and a negative --lr silently became the default. */
static void
test_bad_numbers (void)
{
  static const char *const cases[][3] = {
    { "--val-split", "nan", "[0, 1)" },
    { "--val-split", "1", "[0, 1)" },
    { "--lr", "-5", "greater than 0" },
    { "--lr", "nan", "greater than 0" },
    { "--lr", "1e39", "greater than 0" },
    { "--lr", "1e-60", "greater than 0" },
    { "--lr", "fast", "is not a number" },
    { "--momentum", "-1", "[0, 1)" },
    { "--rho", "inf", "[0, 1)" },
    { "--epsilon", "-1e-7", "greater than 0" },
    { "--decay", "-1", "at least 0" },
    { "--weight-decay", "-inf", "at least 0" },
    { "--epochs", "0", "from 1 to" },
    { "--batch", "100000", "from 1 to 65536" },
    { "--seed", "-1", "from 0 to" },
    { "--max-samples", "-5", "from 0 to" },
    { "--warmup-epochs", "-1", "[0, " },
    { "--warmup-steps", "-3", "from 0 to" },
    { "--lr-start", "1.5", "[0, 1]" },
    { "--lr-final", "nan", "[0, 1]" },
    { "--lr-peak-at", "2", "[0, 1]" },
    { "--label-smoothing", "1", "[0, 1)" },
    { "--label-smoothing", "-0.1", "[0, 1)" },
    { "--translate", "65", "from 0 to 64" },
  };
  g_autofree char *dir = NULL, *db = NULL;

  if (!cli_path ())
    return;
  dir = kilt_test_tmpdir ();
  db = g_build_filename (dir, "runs.db", NULL);
  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      const char *args[] = { "train", cases[i][0], cases[i][1], NULL };
      Result r = run_cli (db, args);
      g_test_message ("%s %s: %d %s", cases[i][0], cases[i][1], r.status, r.err);
      g_assert_cmpint (r.status, ==, 2);
      g_assert_nonnull (strstr (r.err, cases[i][0]));
      g_assert_nonnull (strstr (r.err, cases[i][2]));
      result_clear (&r);
    }
  /* Nothing ran, so nothing was recorded (the store was not even made). */
  g_assert_false (g_file_test (db, G_FILE_TEST_EXISTS));
}

/* Schedule options that do not go together are refused by name before anything runs; a run
 * with a schedule and label smoothing reports the scheduled rate its last step used and is
 * recorded with both, as `runs show` prints. */
static void
test_schedule_options (void)
{
  static const char *const bad[][5] = {
    { "--lr-schedule", "cos", NULL, NULL, "unknown --lr-schedule \"cos\"" },
    { "--lr-schedule", "one-cycle", "--warmup-epochs", "1", "takes no --warmup-epochs" },
    { "--warmup-epochs", "1", "--warmup-steps", "4", "give one" },
    { "--lr-peak-at", "0.2", NULL, NULL, "--lr-peak-at goes with --lr-schedule one-cycle" },
    { "--lr-final", "0.1", NULL, NULL, "--lr-final goes with --lr-schedule linear" },
    { "--lr-start", "0.1", "--lr-schedule", "cosine", "--lr-start goes with a warm-up" },
    { "--augment", "--translate", "2", NULL, "two augmentations: give one" },
  };
  g_autofree char *dir = NULL, *db = NULL;
  Result r;

  if (!cli_path ())
    return;
  dir = kilt_test_tmpdir ();
  db = g_build_filename (dir, "runs.db", NULL);
  for (guint i = 0; i < G_N_ELEMENTS (bad); i++)
    {
      const char *args[] = { "train", bad[i][0], bad[i][1], bad[i][2], bad[i][3], NULL };
      r = run_cli (db, args);
      g_test_message ("%s %s: %d %s", bad[i][0], bad[i][1], r.status, r.err);
      g_assert_cmpint (r.status, ==, 2);
      g_assert_nonnull (strstr (r.err, bad[i][4]));
      result_clear (&r);
    }
  g_assert_false (g_file_test (db, G_FILE_TEST_EXISTS));
  {
    /* 96 samples in batches of 32: 3 steps an epoch, 9 in all, the warm-up's 2 (0.5 epoch,
     * rounded) from 0.1. Its last step (iteration 8) is at cosine (8 - 2) / 7 of the way. */
    const char *args[] = { "train",  "--epochs",
                           "3",      "--max-samples",
                           "96",     "--optimizer",
                           "sgd",    "--lr",
                           "0.2",    "--lr-schedule",
                           "cosine", "--warmup-epochs",
                           "0.5",    "--lr-start",
                           "0.1",    "--lr-final",
                           "0.05",   "--label-smoothing",
                           "0.15",   "--tta-flip",
                           "--json", NULL };
    double want = 0.2 * (0.05 + 0.95 * (1 + cos (M_PI * 6.0 / 7.0)) / 2);
    g_autofree char *key = NULL;
    const char *at;
    r = run_cli (db, args);
    g_assert_cmpint (r.status, ==, 0);
    at = g_strrstr (r.out, "\"event\":\"epoch\"");
    g_assert_nonnull (at);
    at = strstr (at, "\"learning_rate\":");
    g_assert_nonnull (at);
    g_test_message ("last epoch's rate %.10g, the formula's %.10g", g_ascii_strtod (at + 16, NULL),
                    want);
    g_assert_cmpfloat_with_epsilon (g_ascii_strtod (at + 16, NULL), want, 1e-9);
    result_clear (&r);
  }
  {
    const char *args[] = { "runs", "show", "1", NULL };
    r = run_cli (db, args);
    g_assert_cmpint (r.status, ==, 0);
    g_assert_nonnull (strstr (r.out, "| cosine to 0.05, warm-up 0.5 epochs from 0.1 | 0.15 |"));
    g_assert_nonnull (strstr (r.out, "| no; flip TTA |"));
    g_assert_nonnull (strstr (r.out, "| no; flip TTA |"));
    result_clear (&r);
  }
}

/* Two runs share one --checkpoint file: the first (failed in its third epoch) can no longer be
 * resumed once the second wrote the file, since it would go on from the other run's weights.
 * Until now it said "after epoch 2" and trained from the other's last epoch. */
static void
test_runs_resume_shared (void)
{
  g_autofree char *dir = NULL, *db = NULL, *ckpt = NULL;
  Result r;

  if (!cli_path ())
    return;
  dir = kilt_test_tmpdir ();
  db = g_build_filename (dir, "runs.db", NULL);
  ckpt = g_build_filename (dir, "shared.ckpt", NULL);
  {
    /* About 150 launches an epoch here (on a CPU device, where convolutions run forward directly;
     * measured: the 300th falls in epoch 2, the 400th in epoch 3, the 500th in epoch 4). */
    const char *args[]
        = { "train", "--epochs", "6", "--max-samples", "64", "--checkpoint", ckpt, NULL };
    r = run_cli_fault (db, "enqueue:400", args);
  }
  g_assert_cmpint (r.status, ==, 1);
  result_clear (&r);
  g_assert_cmpuint (kilt_test_checkpoint_epochs (ckpt), ==, 2);
  {
    const char *args[]
        = { "train", "--epochs", "4", "--max-samples", "64", "--checkpoint", ckpt, NULL };
    r = run_cli (db, args);
  }
  g_assert_cmpint (r.status, ==, 0);
  result_clear (&r);
  g_assert_cmpuint (kilt_test_checkpoint_epochs (ckpt), ==, 4);
  {
    const char *args[] = { "runs", "resume", "1", NULL };
    r = run_cli (db, args);
  }
  g_test_message ("%s%s", r.out, r.err);
  g_assert_cmpint (r.status, ==, 1);
  g_assert_nonnull (strstr (r.err, "now holds another run's weights"));
  g_assert_nonnull (strstr (r.err, ckpt));
  g_assert_null (strstr (r.out, "Resuming"));
  result_clear (&r);
  /* Nothing trained: the file is the second run's still. */
  g_assert_cmpuint (kilt_test_checkpoint_epochs (ckpt), ==, 4);
}

/* A run name that is not UTF-8 is refused at train time (GOption's own conversion error named
 * no option) and at rename time, before the store holds it: it made runs --json and the JSON
 * and HTML reports invalid. */
static void
test_bad_name (void)
{
  g_autofree char *dir = NULL, *db = NULL;
  const char *names[] = { "--name", "--name=ok\xfe" };
  Result r;

  if (!cli_path ())
    return;
  dir = kilt_test_tmpdir ();
  db = g_build_filename (dir, "runs.db", NULL);
  for (guint i = 0; i < G_N_ELEMENTS (names); i++)
    {
      const char *args[] = { "train", names[i], i == 0 ? "\xff" : NULL, NULL };
      r = run_cli (db, args);
      g_assert_cmpint (r.status, ==, 2);
      g_assert_nonnull (strstr (r.err, "--name wants UTF-8 text"));
      result_clear (&r);
    }
  g_assert_false (g_file_test (db, G_FILE_TEST_EXISTS));
  {
    g_autoptr (GError) error = NULL;
    g_autoptr (KiltRunStore) store = kilt_run_store_open (db, &error);
    g_assert_no_error (error);
  }
  {
    const char *args[] = { "runs", "rename", "1", "\xff", NULL };
    r = run_cli (db, args);
  }
  g_assert_cmpint (r.status, ==, 1);
  g_assert_nonnull (strstr (r.err, "must be UTF-8 text"));
  result_clear (&r);
}

/* Reading a store makes nothing: a --db or $KILT_RUNS_DB naming no file is said to be
 * missing (it used to say "No runs yet" and leave an empty store behind). */
static void
test_runs_missing_store (void)
{
  g_autofree char *dir = NULL, *db = NULL;
  Result r;

  if (!cli_path ())
    return;
  dir = kilt_test_tmpdir ();
  db = g_build_filename (dir, "missing", "x.db", NULL);
  {
    const char *args[] = { "runs", "--db", db, NULL };
    r = run_cli (NULL, args);
  }
  g_assert_cmpint (r.status, ==, 1);
  g_assert_nonnull (strstr (r.err, "there is no run store at"));
  g_assert_nonnull (strstr (r.err, db));
  g_assert_null (strstr (r.out, "No runs yet"));
  result_clear (&r);
  {
    const char *args[] = { "runs", "show", "1", NULL };
    r = run_cli (db, args);
  }
  g_assert_cmpint (r.status, ==, 1);
  g_assert_nonnull (strstr (r.err, "$KILT_RUNS_DB"));
  result_clear (&r);
  {
    g_autofree char *out = g_build_filename (dir, "r.json", NULL);
    const char *args[] = { "report", "1", "--format", "json", "-o", out, NULL };
    r = run_cli (db, args);
  }
  g_assert_cmpint (r.status, ==, 1);
  g_assert_nonnull (strstr (r.err, db));
  result_clear (&r);
  g_assert_false (g_file_test (db, G_FILE_TEST_EXISTS));
}

/* Writes a @side x @side PNG of one grey level. */
static void
save_flat_png (const char *dir, const char *name, int side, guint8 level)
{
  g_autofree char *path = g_build_filename (dir, name, NULL);
  g_autoptr (GdkPixbuf) pb = gdk_pixbuf_new (GDK_COLORSPACE_RGB, FALSE, 8, side, side);

  g_assert_cmpint (g_mkdir_with_parents (dir, 0755), ==, 0);
  gdk_pixbuf_fill (pb, (guint32)level << 24 | (guint32)level << 16 | (guint32)level << 8);
  g_assert_true (gdk_pixbuf_save (pb, path, "png", NULL, NULL));
}

/* `eval --misclassified` on an image folder names each wrong sample's file. The test images are
 * swapped on purpose (dark "light" ones and light "dark" ones), so a model that learnt the
 * training images gets them wrong. */
static void
test_eval_misclassified_files (void)
{
  g_autofree char *dir = NULL, *db = NULL, *ck = NULL, *data = NULL;
  g_autofree char *tr_dark = NULL, *tr_light = NULL, *te_dark = NULL, *te_light = NULL;
  g_autoptr (JsonParser) parser = json_parser_new ();
  g_autoptr (GError) error = NULL;
  JsonArray *mis;
  Result r;

  if (!cli_path ())
    return;
  dir = kilt_test_tmpdir ();
  db = g_build_filename (dir, "runs.db", NULL);
  ck = g_build_filename (dir, "eval.ckpt", NULL);
  data = g_build_filename (dir, "shades", NULL);
  tr_dark = g_build_filename (data, "train", "dark", NULL);
  tr_light = g_build_filename (data, "train", "light", NULL);
  te_dark = g_build_filename (data, "test", "dark", NULL);
  te_light = g_build_filename (data, "test", "light", NULL);
  for (guint i = 0; i < 16; i++)
    {
      g_autofree char *name = g_strdup_printf ("%02u.png", i);
      save_flat_png (tr_dark, name, 6, (guint8)(10 + i));
      save_flat_png (tr_light, name, 6, (guint8)(230 + i));
    }
  save_flat_png (te_dark, "swapped-d.png", 6, 240);
  save_flat_png (te_light, "swapped-l.png", 6, 12);
  {
    const char *args[] = { "train", "--data",  data, "--model",      "mlp", "--epochs",
                           "8",     "--batch", "8",  "--checkpoint", ck,    NULL };
    r = run_cli (db, args);
    g_test_message ("%s%s", r.out, r.err);
    g_assert_cmpint (r.status, ==, 0);
    result_clear (&r);
  }
  {
    const char *args[] = { "eval", "--data",       data, "--model", "mlp", "--misclassified",
                           "5",    "--checkpoint", ck,   NULL };
    r = run_cli (db, args);
    g_test_message ("%s", r.out);
    g_assert_cmpint (r.status, ==, 0);
    g_assert_nonnull (strstr (r.out, "Misclassified: 2 of 2"));
    g_assert_nonnull (strstr (r.out, "File"));
    g_assert_nonnull (strstr (r.out, "swapped-d.png"));
    g_assert_nonnull (strstr (r.out, "swapped-l.png"));
    result_clear (&r);
  }
  {
    const char *args[]
        = { "eval", "--json",       "--data", data, "--model", "mlp", "--misclassified",
            "5",    "--checkpoint", ck,       NULL };
    g_autofree char *want = g_build_filename (te_dark, "swapped-d.png", NULL);
    gboolean found = FALSE;
    r = run_cli (db, args);
    g_assert_cmpint (r.status, ==, 0);
    g_assert_true (json_parser_load_from_data (parser, r.out, -1, &error));
    mis = json_object_get_array_member (json_node_get_object (json_parser_get_root (parser)),
                                        "misclassified");
    g_assert_cmpuint (json_array_get_length (mis), ==, 2);
    for (guint i = 0; i < 2; i++)
      found |= g_strcmp0 (
                   json_object_get_string_member (json_array_get_object_element (mis, i), "path"),
                   want)
               == 0;
    g_assert_true (found);
    result_clear (&r);
  }
}

/* `eval --confusion`: the matrix and per-class table with class names, the same figures in
 * --json (whose accuracy is plain eval's), `--misclassified N` lists N, a bad N is refused. */
static void
test_eval_confusion (void)
{
  g_autofree char *dir = NULL, *db = NULL, *ck = NULL;
  g_autoptr (JsonParser) parser = json_parser_new ();
  g_autoptr (GError) error = NULL;
  JsonObject *o;
  JsonArray *rows, *per_class, *mis;
  gint64 samples, correct, sum = 0, diag = 0;
  double plain_acc;
  Result r;

  if (!cli_path ())
    return;
  dir = kilt_test_tmpdir ();
  db = g_build_filename (dir, "runs.db", NULL);
  ck = g_build_filename (dir, "eval.ckpt", NULL);
  {
    const char *args[]
        = { "train", "--epochs", "1", "--max-samples", "200", "--checkpoint", ck, NULL };
    r = run_cli (db, args);
    g_assert_cmpint (r.status, ==, 0);
    result_clear (&r);
  }
  {
    const char *args[] = { "eval", "--json", "--max-samples", "200", "--checkpoint", ck, NULL };
    r = run_cli (db, args);
    g_assert_cmpint (r.status, ==, 0);
    g_assert_true (json_parser_load_from_data (parser, r.out, -1, &error));
    plain_acc = json_object_get_double_member (json_node_get_object (json_parser_get_root (parser)),
                                               "accuracy");
    result_clear (&r);
  }
  {
    const char *args[]
        = { "eval",         "--json", "--confusion", "--misclassified", "3", "--max-samples", "200",
            "--checkpoint", ck,       NULL };
    r = run_cli (db, args);
    g_assert_cmpint (r.status, ==, 0);
    g_assert_true (json_parser_load_from_data (parser, r.out, -1, &error));
    g_assert_no_error (error);
  }
  o = json_node_get_object (json_parser_get_root (parser));
  samples = json_object_get_int_member (o, "samples");
  correct = json_object_get_int_member (o, "correct");
  rows = json_object_get_array_member (o, "confusion");
  per_class = json_object_get_array_member (o, "per_class");
  mis = json_object_get_array_member (o, "misclassified");
  g_assert_cmpuint (json_array_get_length (rows), ==, 10);
  for (guint t = 0; t < 10; t++)
    for (guint p = 0; p < 10; p++)
      {
        gint64 v = json_array_get_int_element (json_array_get_array_element (rows, t), p);
        sum += v;
        diag += t == p ? v : 0;
      }
  g_test_message ("eval --confusion: %" G_GINT64_FORMAT " of %" G_GINT64_FORMAT
                  " right (plain eval: accuracy %.4f)",
                  correct, samples, plain_acc);
  g_assert_cmpint (samples, >, 0);
  g_assert_cmpint (sum, ==, samples);
  g_assert_cmpint (diag, ==, correct);
  g_assert_cmpfloat_with_epsilon (json_object_get_double_member (o, "accuracy"), plain_acc, 1e-5);
  g_assert_cmpuint (json_array_get_length (per_class), ==, 10);
  g_assert_cmpstr (
      json_object_get_string_member (json_array_get_object_element (per_class, 1), "name"), ==,
      "Trouser");
  g_assert_cmpuint (json_array_get_length (mis), ==, MIN (3, samples - correct));
  for (guint i = 0; i < json_array_get_length (mis); i++)
    {
      JsonObject *m = json_array_get_object_element (mis, i);
      g_assert_cmpint (json_object_get_int_member (m, "true"), !=,
                       json_object_get_int_member (m, "predicted"));
    }
  result_clear (&r);

  {
    const char *args[]
        = { "eval", "--confusion", "--misclassified", "2", "--max-samples", "200", "--checkpoint",
            ck,     NULL };
    g_autofree char *want = NULL;
    r = run_cli (db, args);
    g_assert_cmpint (r.status, ==, 0);
    g_test_message ("%s", r.out);
    g_assert_nonnull (strstr (r.out, "Confusion matrix (rows: true class"));
    g_assert_nonnull (strstr (r.out, "\nAnkle boot "));
    g_assert_nonnull (strstr (r.out, "Precision  Recall"));
    want = g_strdup_printf ("(%" G_GINT64_FORMAT " of %" G_GINT64_FORMAT ")", correct, samples);
    g_assert_nonnull (strstr (r.out, want));
    g_assert_nonnull (strstr (r.out, "Misclassified: 2 of"));
    result_clear (&r);
  }
  {
    const char *args[] = { "eval", "--misclassified", "-4", "--checkpoint", ck, NULL };
    r = run_cli (db, args);
    g_assert_cmpint (r.status, ==, 2);
    g_assert_nonnull (strstr (r.err, "--misclassified takes a count"));
    result_clear (&r);
  }
}

/* kilt-cli train --recipe airbench94 on a CIFAR-10 subset (20 training and 10 test images a
 * class from the shared tarball), briefly and at a batch that gives it steps: the recipe's
 * settings reach the run (as runs show prints them), the whitening layer is set from the
 * training images, the loss falls; an unknown recipe is refused naming the known ones. */
static void
test_recipe_airbench94 (void)
{
  g_autofree char *tar = kilt_test_shared_file ("datasets/cifar10-jpeg.tar.gz");
  g_autofree char *dir = NULL, *db = NULL, *data = NULL;
  g_autoptr (GError) error = NULL;
  g_auto (GStrv) lines = NULL;
  double first = NAN, last = NAN;
  guint n_epochs = 0;
  gboolean whitened = FALSE;
  int status = 0;
  Result r;

  if (!cli_path ())
    return;
  if (tar == NULL)
    {
      g_test_skip ("no ../shared/datasets/cifar10-jpeg.tar.gz");
      return;
    }
  dir = kilt_test_tmpdir ();
  db = g_build_filename (dir, "runs.db", NULL);
  data = g_build_filename (dir, "cifar", NULL);
  g_assert_cmpint (g_mkdir (data, 0700), ==, 0);
  {
    const char *argv[]
        = { "tar", "xzf", tar, "-C", data, "--wildcards", "train/*/00[01]?.jpg", "test/*/000?.jpg",
            NULL };
    g_assert_true (g_spawn_sync (NULL, (char **)argv, NULL, G_SPAWN_SEARCH_PATH, NULL, NULL, NULL,
                                 NULL, &status, &error));
    g_assert_no_error (error);
    g_assert_true (g_spawn_check_wait_status (status, NULL));
  }
  {
    const char *args[] = { "train", "--recipe", "nosuch", NULL };
    r = run_cli (db, args);
    g_assert_cmpint (r.status, ==, 2);
    g_assert_nonnull (strstr (r.err, "no recipe \"nosuch\"; the recipes are airbench94"));
    result_clear (&r);
  }
  {
    /* 200 images at batch 50: 4 steps an epoch, 16 in all. */
    const char *args[] = { "train", "--recipe", "airbench94", "--data", data, "--epochs",
                           "4",     "--batch",  "50",         "--json", NULL };
    r = run_cli (db, args);
    g_test_message ("%s", r.err);
    g_assert_cmpint (r.status, ==, 0);
  }
  lines = g_strsplit (r.out, "\n", -1);
  for (guint i = 0; lines[i]; i++)
    {
      const char *at;
      whitened |= strstr (lines[i], "\"event\":\"log\"") != NULL
                  && strstr (lines[i], "Whitening layer whiten set from 200 training images' 2x2 "
                                       "patches")
                         != NULL;
      if (strstr (lines[i], "\"event\":\"epoch\"") == NULL)
        continue;
      at = strstr (lines[i], "\"loss\":");
      g_assert_nonnull (at);
      last = g_ascii_strtod (at + 7, NULL);
      if (n_epochs++ == 0)
        first = last;
    }
  result_clear (&r);
  g_test_message ("airbench94 on 200 CIFAR-10 images: loss %.4f after epoch 1, %.4f after %u",
                  first, last, n_epochs);
  g_assert_true (whitened);
  g_assert_cmpuint (n_epochs, ==, 4);
  g_assert_cmpfloat (last, <, first - 0.05);
  {
    const char *args[] = { "runs", "show", "1", NULL };
    r = run_cli (db, args);
    g_assert_cmpint (r.status, ==, 0);
    g_test_message ("%s", r.out);
    g_assert_nonnull (strstr (r.out, "SGD (momentum 0.85, Nesterov, decay 0, lookahead)"));
    g_assert_nonnull (strstr (r.out, "one-cycle 0.2 -\\> 1 at 23% -\\> 0.07"));
    g_assert_nonnull (strstr (r.out, "| 0.2 |"));
    g_assert_nonnull (strstr (r.out, "alternating flip, translate 2 px (reflect); flip TTA"));
    result_clear (&r);
  }
  {
    /* Alternating flips need an augmentation that flips: said before any step. */
    const char *args[] = { "train",       "--recipe", "airbench94", "--data", data,
                           "--translate", "0",        "--epochs",   "1",      NULL };
    r = run_cli (db, args);
    g_assert_cmpint (r.status, !=, 0);
    g_test_message ("%s", r.err);
    g_assert_nonnull (strstr (r.err, "alternating flips (--alternate-flip) need"));
    result_clear (&r);
  }
}

/* A run trained with --tta-flip reports test figures from each image and its mirror; eval
 * --tta-flip of its checkpoint gives the same, plain eval other ones, and --confusion with it
 * the same accuracy again. */
static void
test_eval_tta_flip (void)
{
  g_autofree char *dir = NULL, *db = NULL, *ck = NULL;
  g_autoptr (JsonParser) parser = json_parser_new ();
  g_autoptr (GError) error = NULL;
  double train_acc, train_loss, tta_acc, tta_loss, plain_loss, conf_acc;
  const char *at;
  Result r;

  if (!cli_path ())
    return;
  dir = kilt_test_tmpdir ();
  db = g_build_filename (dir, "runs.db", NULL);
  ck = g_build_filename (dir, "tta.ckpt", NULL);
  {
    const char *args[] = { "train",      "--epochs",     "1", "--max-samples", "200",
                           "--tta-flip", "--checkpoint", ck,  "--json",        NULL };
    r = run_cli (db, args);
    g_assert_cmpint (r.status, ==, 0);
    at = strstr (r.out, "\"test_accuracy\":");
    g_assert_nonnull (at);
    train_acc = g_ascii_strtod (at + 16, NULL);
    at = strstr (r.out, "\"test_loss\":");
    g_assert_nonnull (at);
    train_loss = g_ascii_strtod (at + 12, NULL);
    result_clear (&r);
  }
  {
    const char *args[]
        = { "eval", "--json", "--max-samples", "200", "--tta-flip", "--checkpoint", ck, NULL };
    r = run_cli (db, args);
    g_assert_cmpint (r.status, ==, 0);
    g_assert_true (json_parser_load_from_data (parser, r.out, -1, &error));
    tta_acc = json_object_get_double_member (json_node_get_object (json_parser_get_root (parser)),
                                             "accuracy");
    tta_loss = json_object_get_double_member (json_node_get_object (json_parser_get_root (parser)),
                                              "loss");
    g_assert_true (json_object_get_boolean_member (
        json_node_get_object (json_parser_get_root (parser)), "tta_flip"));
    result_clear (&r);
  }
  {
    const char *args[] = { "eval", "--json", "--max-samples", "200", "--checkpoint", ck, NULL };
    r = run_cli (db, args);
    g_assert_cmpint (r.status, ==, 0);
    g_assert_true (json_parser_load_from_data (parser, r.out, -1, &error));
    plain_loss = json_object_get_double_member (
        json_node_get_object (json_parser_get_root (parser)), "loss");
    result_clear (&r);
  }
  {
    const char *args[]
        = { "eval",         "--json", "--confusion", "--max-samples", "200", "--tta-flip",
            "--checkpoint", ck,       NULL };
    r = run_cli (db, args);
    g_assert_cmpint (r.status, ==, 0);
    g_assert_true (json_parser_load_from_data (parser, r.out, -1, &error));
    conf_acc = json_object_get_double_member (json_node_get_object (json_parser_get_root (parser)),
                                              "accuracy");
    result_clear (&r);
  }
  g_test_message ("train --tta-flip: test loss %.5f acc %.4f; eval --tta-flip: %.5f %.4f "
                  "(--confusion %.4f); plain eval loss %.5f",
                  train_loss, train_acc, tta_loss, tta_acc, conf_acc, plain_loss);
  g_assert_cmpfloat_with_epsilon (tta_acc, train_acc, 1e-5);
  g_assert_cmpfloat_with_epsilon (tta_loss, train_loss, 1e-4 * train_loss);
  g_assert_cmpfloat_with_epsilon (conf_acc, train_acc, 1e-5);
  g_assert_cmpfloat (fabs (plain_loss - tta_loss), >, 1e-5);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/cli/version", test_version);
  g_test_add_func ("/cli/sequence-train", test_sequence_train);
  g_test_add_func ("/cli/tune", test_tune);
  g_test_add_func ("/cli/bench-csv", test_bench_csv);
  g_test_add_func ("/cli/bench-conv-algo", test_bench_conv_algo);
  g_test_add_func ("/cli/bench-workload", test_bench_workload);
  g_test_add_func ("/cli/bench-check-bounded", test_bench_check_bounded);
  g_test_add_func ("/cli/precision", test_precision);
  g_test_add_func ("/cli/devices-test", test_devices_test);
  g_test_add_func ("/cli/bad-data", test_bad_data);
  g_test_add_func ("/cli/bad-numbers", test_bad_numbers);
  g_test_add_func ("/cli/schedule-options", test_schedule_options);
  g_test_add_func ("/cli/bad-name", test_bad_name);
  g_test_add_func ("/cli/json", test_json);
  g_test_add_func ("/cli/embedding-text", test_embedding_text);
  g_test_add_func ("/cli/masked-text", test_masked_text);
  g_test_add_func ("/cli/embedding-idx", test_embedding_idx);
  g_test_add_func ("/cli/eval-confusion", test_eval_confusion);
  g_test_add_func ("/cli/eval-tta-flip", test_eval_tta_flip);
  g_test_add_func ("/cli/recipe-airbench94", test_recipe_airbench94);
  g_test_add_func ("/cli/eval-misclassified-files", test_eval_misclassified_files);
  g_test_add_func ("/cli/killed-run", test_killed_run);
  g_test_add_func ("/cli/runs-resume", test_runs_resume);
  g_test_add_func ("/cli/on-oom", test_on_oom);
  g_test_add_func ("/cli/runs-resume-shared", test_runs_resume_shared);
  g_test_add_func ("/cli/runs-missing-store", test_runs_missing_store);
  return g_test_run ();
}
