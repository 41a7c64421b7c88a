/* CLBlast parameters per device: read from CLBlast's tuner results, stored, applied. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#define G_LOG_DOMAIN "kilt-tuning"

#include "kilt-tuning.h"
#include "kilt-error.h"

#include <clblast_c.h>
#include <errno.h>
#include <glib/gstdio.h>
#include <json-glib/json-glib.h>
#include <string.h>

#define TUNING_FORMAT "kilt-clblast-tuning"

void
kilt_tuned_kernel_free (KiltTunedKernel *k)
{
  if (k == NULL)
    return;
  g_free (k->kernel);
  g_strfreev (k->names);
  g_free (k->values);
  g_free (k);
}

KiltTuning *
kilt_tuning_new (const KiltDeviceInfo *dev)
{
  KiltTuning *t = g_new0 (KiltTuning, 1);

  t->device = g_strdup (dev->name);
  t->driver = g_strdup (dev->driver_version);
  t->kernels = g_ptr_array_new_with_free_func ((GDestroyNotify)kilt_tuned_kernel_free);
  return t;
}

void
kilt_tuning_free (KiltTuning *t)
{
  if (t == NULL)
    return;
  g_free (t->device);
  g_free (t->driver);
  g_ptr_array_unref (t->kernels);
  g_free (t->source);
  g_free (t->note);
  g_free (t);
}

static gboolean tuning_error (GError **error, const char *path, const char *fmt, ...)
    G_GNUC_PRINTF (3, 4);

static gboolean
tuning_error (GError **error, const char *path, const char *fmt, ...)
{
  va_list ap;
  g_autofree char *what = NULL;

  va_start (ap, fmt);
  what = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_INVALID, "%s: %s", path, what);
  return FALSE;
}

/* A string member, or NULL. The tuners write every figure as a string. */
static const char *
member_string (JsonObject *o, const char *name)
{
  JsonNode *n = json_object_get_member (o, name);

  return n && JSON_NODE_HOLDS_VALUE (n) && json_node_get_value_type (n) == G_TYPE_STRING
             ? json_node_get_string (n)
             : NULL;
}

static JsonObject *
read_object (const char *path, JsonParser *parser, GError **error)
{
  g_autoptr (GError) local = NULL;
  JsonNode *root;

  if (!json_parser_load_from_file (parser, path, &local))
    {
      g_set_error (error, KILT_ENGINE_ERROR,
                   g_error_matches (local, G_FILE_ERROR, G_FILE_ERROR_NOENT)
                       ? KILT_ENGINE_ERROR_IO
                       : KILT_ENGINE_ERROR_INVALID,
                   "%s: %s", path, local->message);
      return NULL;
    }
  root = json_parser_get_root (parser);
  if (root == NULL || !JSON_NODE_HOLDS_OBJECT (root))
    {
      tuning_error (error, path, "expected a JSON object");
      return NULL;
    }
  return json_node_get_object (root);
}

/* Device names from OpenCL can carry trailing blanks; compare without them. */
static gboolean
same_name (const char *a, const char *b)
{
  g_autofree char *x = g_strstrip (g_strdup (a ? a : ""));
  g_autofree char *y = g_strstrip (g_strdup (b ? b : ""));

  return g_str_equal (x, y);
}

KiltTunedKernel *
kilt_tuned_kernel_from_clblast (const char *path, const KiltDeviceInfo *dev, GError **error)
{
  g_autoptr (JsonParser) parser = json_parser_new ();
  g_autoptr (KiltTunedKernel) k = NULL;
  g_autoptr (GPtrArray) names = g_ptr_array_new_with_free_func (g_free);
  g_autoptr (GArray) values = g_array_new (FALSE, FALSE, sizeof (gsize));
  g_auto (GStrv) pairs = NULL;
  JsonObject *o = read_object (path, parser, error);
  const char *kernel, *params, *precision, *device, *best;

  if (o == NULL)
    return NULL;
  kernel = member_string (o, "best_kernel");
  params = member_string (o, "best_parameters");
  precision = member_string (o, "precision");
  device = member_string (o, "device");
  if (kernel == NULL || params == NULL || device == NULL)
    {
      tuning_error (error, path,
                    "not a CLBlast tuner result (expected \"best_kernel\", \"best_parameters\" "
                    "and \"device\")");
      return NULL;
    }
  if (precision == NULL || !g_str_equal (precision, "32"))
    {
      tuning_error (error, path, "tuned for precision %s; Kilt computes in 32-bit floats",
                    precision ? precision : "(none given)");
      return NULL;
    }
  if (!same_name (device, dev->name))
    {
      tuning_error (error, path, "tuned on \"%s\", not on %s", device, dev->name);
      return NULL;
    }
  pairs = g_strsplit_set (params, " \t", -1);
  for (guint i = 0; pairs[i]; i++)
    {
      char *eq = strchr (pairs[i], '='), *end = NULL;
      guint64 v;

      if (*pairs[i] == '\0')
        continue;
      if (eq == NULL || eq == pairs[i])
        {
          tuning_error (error, path, "parameter \"%s\" is not NAME=VALUE", pairs[i]);
          return NULL;
        }
      *eq = '\0';
      errno = 0;
      v = g_ascii_strtoull (eq + 1, &end, 10);
      if (errno || end == eq + 1 || *end != '\0')
        {
          tuning_error (error, path, "parameter %s has the value \"%s\", not a whole number",
                        pairs[i], eq + 1);
          return NULL;
        }
      /* PRECISION says which kernel variant was tuned; CLBlast takes it from the call. */
      if (g_str_equal (pairs[i], "PRECISION"))
        continue;
      g_ptr_array_add (names, g_strdup (pairs[i]));
      g_array_append_val (values, v);
    }
  if (names->len == 0)
    {
      tuning_error (error, path, "\"best_parameters\" lists no parameters");
      return NULL;
    }
  k = g_new0 (KiltTunedKernel, 1);
  /* The direct GEMM tuner names the variant it timed (XgemmDirectTN); CLBlast keeps one set of
   * parameters for all four, under XgemmDirect. */
  if (g_str_has_prefix (kernel, "XgemmDirect") && strlen (kernel) == strlen ("XgemmDirect") + 2)
    k->kernel = g_strndup (kernel, strlen ("XgemmDirect"));
  /* clblast_tuner_routine_xgemm reports the switch between the two as its selection kernel;
   * CLBlast's database calls it GemmRoutine. */
  else if (g_str_equal (kernel, "gemm_kernel_selection"))
    k->kernel = g_strdup ("GemmRoutine");
  else
    k->kernel = g_strdup (kernel);
  k->n = names->len;
  g_ptr_array_add (names, NULL);
  k->names = (GStrv)g_ptr_array_steal (names, NULL);
  k->values = (gsize *)g_array_steal (values, NULL);
  best = member_string (o, "best_time");
  k->best_ms = best ? g_ascii_strtod (best, NULL) : 0;
  return g_steal_pointer (&k);
}

char *
kilt_tuned_kernel_describe (const KiltTunedKernel *k)
{
  GString *s = g_string_new (k->kernel);

  for (guint i = 0; i < k->n; i++)
    g_string_append_printf (s, " %s=%zu", k->names[i], k->values[i]);
  return g_string_free (s, FALSE);
}

static char *
slug (const char *text)
{
  char *s = g_ascii_strdown (text ? text : "unknown", -1);

  for (char *p = s; *p; p++)
    if (!g_ascii_isalnum (*p) && *p != '.')
      *p = '-';
  return s;
}

char *
kilt_tuning_path (const KiltDeviceInfo *dev)
{
  g_autofree char *name = slug (dev->name);
  g_autofree char *driver = slug (dev->driver_version);
  g_autofree char *file = g_strdup_printf ("%s-%s.json", name, driver);

  return g_build_filename (g_get_user_config_dir (), "kilt", "clblast", file, NULL);
}

KiltTuning *
kilt_tuning_load (const KiltDeviceInfo *dev, GError **error)
{
  g_autofree char *path = kilt_tuning_path (dev);
  g_autoptr (JsonParser) parser = json_parser_new ();
  g_autoptr (KiltTuning) t = NULL;
  JsonObject *o;
  JsonArray *kernels;
  const char *format;

  if (!g_file_test (path, G_FILE_TEST_EXISTS))
    return NULL;
  o = read_object (path, parser, error);
  if (o == NULL)
    return NULL;
  format = member_string (o, "format");
  if (format == NULL || !g_str_equal (format, TUNING_FORMAT)
      || !json_object_has_member (o, "kernels")
      || !JSON_NODE_HOLDS_ARRAY (json_object_get_member (o, "kernels")))
    {
      tuning_error (error, path,
                    "not a Kilt tuning file (expected \"format\": \"%s\" and "
                    "\"kernels\"); `kilt-cli tune --forget` removes it",
                    TUNING_FORMAT);
      return NULL;
    }
  t = kilt_tuning_new (dev);
  t->source = g_strdup (member_string (o, "source"));
  t->note = g_strdup (member_string (o, "note"));
  kernels = json_object_get_array_member (o, "kernels");
  for (guint i = 0; i < json_array_get_length (kernels); i++)
    {
      JsonNode *kn = json_array_get_element (kernels, i);
      JsonObject *ko = JSON_NODE_HOLDS_OBJECT (kn) ? json_node_get_object (kn) : NULL;
      JsonNode *pn = ko ? json_object_get_member (ko, "parameters") : NULL;
      JsonObject *po = pn && JSON_NODE_HOLDS_OBJECT (pn) ? json_node_get_object (pn) : NULL;
      const char *name = ko ? member_string (ko, "kernel") : NULL;
      g_autoptr (GList) members = NULL;
      KiltTunedKernel *k;
      guint j = 0;

      if (name == NULL || po == NULL)
        {
          tuning_error (error, path, "kernel %u needs \"kernel\" and \"parameters\"", i + 1);
          return NULL;
        }
      members = json_object_get_members (po);
      k = g_new0 (KiltTunedKernel, 1);
      k->kernel = g_strdup (name);
      k->n = g_list_length (members);
      k->names = g_new0 (char *, k->n + 1);
      k->values = g_new0 (gsize, MAX (k->n, 1));
      g_ptr_array_add (t->kernels, k);
      for (GList *m = members; m; m = m->next, j++)
        {
          JsonNode *v = json_object_get_member (po, m->data);
          if (!JSON_NODE_HOLDS_VALUE (v) || json_node_get_value_type (v) != G_TYPE_INT64
              || json_node_get_int (v) < 0)
            {
              tuning_error (error, path, "%s parameter %s must be a whole number", name,
                            (const char *)m->data);
              return NULL;
            }
          k->names[j] = g_strdup (m->data);
          k->values[j] = (gsize)json_node_get_int (v);
        }
      if (json_object_has_member (ko, "best_ms"))
        k->best_ms = json_object_get_double_member (ko, "best_ms");
    }
  return g_steal_pointer (&t);
}

gboolean
kilt_tuning_save (const KiltDeviceInfo *dev, const KiltTuning *t, GError **error)
{
  g_autofree char *path = kilt_tuning_path (dev);
  g_autofree char *dir = g_path_get_dirname (path);
  g_autoptr (JsonBuilder) b = json_builder_new ();
  g_autoptr (JsonGenerator) gen = json_generator_new ();
  g_autoptr (JsonNode) root = NULL;
  g_autofree char *text = NULL;
  g_autoptr (GError) local = NULL;

  json_builder_begin_object (b);
  json_builder_set_member_name (b, "format");
  json_builder_add_string_value (b, TUNING_FORMAT);
  json_builder_set_member_name (b, "version");
  json_builder_add_int_value (b, 1);
  json_builder_set_member_name (b, "device");
  json_builder_add_string_value (b, dev->name);
  json_builder_set_member_name (b, "driver");
  json_builder_add_string_value (b, dev->driver_version);
  if (t->source)
    {
      json_builder_set_member_name (b, "source");
      json_builder_add_string_value (b, t->source);
    }
  if (t->note)
    {
      json_builder_set_member_name (b, "note");
      json_builder_add_string_value (b, t->note);
    }
  json_builder_set_member_name (b, "kernels");
  json_builder_begin_array (b);
  for (guint i = 0; i < t->kernels->len; i++)
    {
      const KiltTunedKernel *k = g_ptr_array_index (t->kernels, i);
      json_builder_begin_object (b);
      json_builder_set_member_name (b, "kernel");
      json_builder_add_string_value (b, k->kernel);
      json_builder_set_member_name (b, "best_ms");
      json_builder_add_double_value (b, k->best_ms);
      json_builder_set_member_name (b, "parameters");
      json_builder_begin_object (b);
      for (guint j = 0; j < k->n; j++)
        {
          json_builder_set_member_name (b, k->names[j]);
          json_builder_add_int_value (b, (gint64)k->values[j]);
        }
      json_builder_end_object (b);
      json_builder_end_object (b);
    }
  json_builder_end_array (b);
  json_builder_end_object (b);
  root = json_builder_get_root (b);
  json_generator_set_root (gen, root);
  json_generator_set_pretty (gen, TRUE);
  text = json_generator_to_data (gen, NULL);
  if (g_mkdir_with_parents (dir, 0700) != 0)
    {
      int e = errno;
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_IO, "creating %s: %s", dir,
                   g_strerror (e));
      return FALSE;
    }
  if (!g_file_set_contents (path, text, -1, &local))
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_IO, "%s", local->message);
      return FALSE;
    }
  return TRUE;
}

gboolean
kilt_tuning_forget (const KiltDeviceInfo *dev, GError **error)
{
  g_autofree char *path = kilt_tuning_path (dev);

  if (g_unlink (path) != 0 && errno != ENOENT)
    {
      int e = errno;
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_IO, "removing %s: %s", path,
                   g_strerror (e));
      return FALSE;
    }
  return TRUE;
}

gboolean
kilt_tuning_apply (const KiltDeviceInfo *dev, const KiltTuning *t, GError **error)
{
  for (guint i = 0; i < t->kernels->len; i++)
    {
      const KiltTunedKernel *k = g_ptr_array_index (t->kernels, i);
      CLBlastStatusCode st = CLBlastOverrideParameters (
          dev->device, k->kernel, CLBlastPrecisionSingle, k->n, (const char **)k->names, k->values);
      if (st != CLBlastSuccess)
        {
          kilt_set_clblast_error (error, st, dev->name,
                                  "setting CLBlast's %s parameters (%u of them)", k->kernel, k->n);
          return FALSE;
        }
    }
  return TRUE;
}

gboolean
kilt_tuning_apply_saved (const KiltDeviceInfo *dev, GError **error)
{
  static GHashTable *applied; /* "<id> <driver>" of devices already handled */
  G_LOCK_DEFINE_STATIC (applied);
  g_autofree char *key = g_strdup_printf ("%s %s", dev->id, dev->driver_version);
  g_autoptr (KiltTuning) t = NULL;
  gboolean first;

  G_LOCK (applied);
  if (applied == NULL)
    applied = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  first = g_hash_table_add (applied, g_strdup (key));
  G_UNLOCK (applied);
  if (!first)
    return TRUE;
  t = kilt_tuning_load (dev, error);
  if (t == NULL)
    return error == NULL || *error == NULL;
  return kilt_tuning_apply (dev, t, error);
}
