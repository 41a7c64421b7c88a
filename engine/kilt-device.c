/* OpenCL platforms and devices: enumeration with facts, stable ids, the remembered default. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#define G_LOG_DOMAIN "kilt-device"

#include "kilt-device.h"
#include "kilt-error.h"

#include <string.h>

static char *
platform_string (cl_platform_id p, cl_platform_info what)
{
  size_t n = 0;
  char *s;

  if (clGetPlatformInfo (p, what, 0, NULL, &n) != CL_SUCCESS || n == 0)
    return g_strdup ("");
  s = g_malloc0 (n + 1);
  clGetPlatformInfo (p, what, n, s, NULL);
  return g_strstrip (s);
}

static char *
device_string (cl_device_id d, cl_device_info what)
{
  size_t n = 0;
  char *s;

  if (clGetDeviceInfo (d, what, 0, NULL, &n) != CL_SUCCESS || n == 0)
    return g_strdup ("");
  s = g_malloc0 (n + 1);
  clGetDeviceInfo (d, what, n, s, NULL);
  return g_strstrip (s);
}

static guint64
device_u64 (cl_device_id d, cl_device_info what)
{
  cl_ulong v = 0;
  clGetDeviceInfo (d, what, sizeof v, &v, NULL);
  return v;
}

static guint
device_uint (cl_device_id d, cl_device_info what)
{
  cl_uint v = 0;
  clGetDeviceInfo (d, what, sizeof v, &v, NULL);
  return v;
}

static char *
slug (const char *s)
{
  GString *out = g_string_new (NULL);
  gboolean dash = FALSE;

  for (const char *p = s; *p; p++)
    {
      if (g_ascii_isalnum (*p))
        {
          g_string_append_c (out, g_ascii_tolower (*p));
          dash = FALSE;
        }
      else if (!dash && out->len > 0)
        {
          g_string_append_c (out, '-');
          dash = TRUE;
        }
    }
  while (out->len > 0 && out->str[out->len - 1] == '-')
    g_string_truncate (out, out->len - 1);
  return g_string_free (out, FALSE);
}

KiltDeviceInfo *
kilt_device_info_copy (const KiltDeviceInfo *d)
{
  KiltDeviceInfo *c = g_new0 (KiltDeviceInfo, 1);

  *c = *d;
  c->id = g_strdup (d->id);
  c->name = g_strdup (d->name);
  c->vendor = g_strdup (d->vendor);
  c->platform_name = g_strdup (d->platform_name);
  c->platform_version = g_strdup (d->platform_version);
  c->driver_version = g_strdup (d->driver_version);
  c->opencl_version = g_strdup (d->opencl_version);
  c->type = g_strdup (d->type);
  c->unusable_reason = g_strdup (d->unusable_reason);
  return c;
}

void
kilt_device_info_free (KiltDeviceInfo *d)
{
  if (d == NULL)
    return;
  g_free (d->id);
  g_free (d->name);
  g_free (d->vendor);
  g_free (d->platform_name);
  g_free (d->platform_version);
  g_free (d->driver_version);
  g_free (d->opencl_version);
  g_free (d->type);
  g_free (d->unusable_reason);
  g_free (d);
}

static void
fill_device (KiltDeviceInfo *d, cl_platform_id p, cl_device_id dev, guint index)
{
  cl_device_type type = 0;
  cl_bool b = CL_FALSE;
  cl_device_fp_config fp = 0;
  g_autofree char *ext = NULL;
  g_autofree char *ps = NULL;
  g_autofree char *ds = NULL;

  d->platform = p;
  d->device = dev;
  d->platform_name = platform_string (p, CL_PLATFORM_NAME);
  d->platform_version = platform_string (p, CL_PLATFORM_VERSION);
  d->name = device_string (dev, CL_DEVICE_NAME);
  d->vendor = device_string (dev, CL_DEVICE_VENDOR);
  d->driver_version = device_string (dev, CL_DRIVER_VERSION);
  d->opencl_version = device_string (dev, CL_DEVICE_VERSION);
  clGetDeviceInfo (dev, CL_DEVICE_TYPE, sizeof type, &type, NULL);
  d->type = g_strdup (type & CL_DEVICE_TYPE_GPU           ? "GPU"
                      : type & CL_DEVICE_TYPE_CPU         ? "CPU"
                      : type & CL_DEVICE_TYPE_ACCELERATOR ? "accelerator"
                                                          : "other");
  d->compute_units = device_uint (dev, CL_DEVICE_MAX_COMPUTE_UNITS);
  d->clock_mhz = device_uint (dev, CL_DEVICE_MAX_CLOCK_FREQUENCY);
  d->global_mem = device_u64 (dev, CL_DEVICE_GLOBAL_MEM_SIZE);
  d->max_alloc = device_u64 (dev, CL_DEVICE_MAX_MEM_ALLOC_SIZE);
  d->local_mem = device_u64 (dev, CL_DEVICE_LOCAL_MEM_SIZE);
  d->float_width = device_uint (dev, CL_DEVICE_PREFERRED_VECTOR_WIDTH_FLOAT);
  clGetDeviceInfo (dev, CL_DEVICE_MAX_WORK_GROUP_SIZE, sizeof d->max_work_group, &d->max_work_group,
                   NULL);
  clGetDeviceInfo (dev, CL_DEVICE_DOUBLE_FP_CONFIG, sizeof fp, &fp, NULL);
  d->fp64 = fp != 0;
  ext = device_string (dev, CL_DEVICE_EXTENSIONS);
  d->fp16 = strstr (ext, "cl_khr_fp16") != NULL;
  clGetDeviceInfo (dev, CL_DEVICE_AVAILABLE, sizeof b, &b, NULL);
  d->available = b;
  b = CL_FALSE;
  clGetDeviceInfo (dev, CL_DEVICE_COMPILER_AVAILABLE, sizeof b, &b, NULL);
  d->compiler_available = b;
  ps = slug (d->platform_name);
  ds = slug (d->name);
  d->id = g_strdup_printf ("%s/%s/%u", ps, ds, index);

  if (!d->available)
    d->unusable_reason = g_strdup ("the driver reports the device as not available");
  else if (!d->compiler_available)
    d->unusable_reason = g_strdup ("the driver has no OpenCL C compiler for this device");
  else if (d->global_mem < 64 * 1024 * 1024)
    d->unusable_reason = g_strdup ("less than 64 MiB of device memory");
  else if (d->max_work_group < 64)
    d->unusable_reason = g_strdup ("work-groups smaller than 64 items");
}

KiltDeviceList *
kilt_device_list_new (void)
{
  KiltDeviceList *list = g_new0 (KiltDeviceList, 1);
  cl_uint n_platforms = 0;
  cl_platform_id *platforms;
  cl_int err;

  list->devices = g_ptr_array_new_with_free_func ((GDestroyNotify)kilt_device_info_free);
  list->problems = g_ptr_array_new_with_free_func (g_free);

  err = clGetPlatformIDs (0, NULL, &n_platforms);
  if (err != CL_SUCCESS || n_platforms == 0)
    {
      g_ptr_array_add (list->problems,
                       g_strdup_printf ("No OpenCL platform: %s (%s)",
                                        kilt_cl_error_hint (err == CL_SUCCESS ? -1001 : err),
                                        kilt_cl_error_name (err == CL_SUCCESS ? -1001 : err)));
      return list;
    }
  platforms = g_new0 (cl_platform_id, n_platforms);
  clGetPlatformIDs (n_platforms, platforms, NULL);

  for (cl_uint p = 0; p < n_platforms; p++)
    {
      cl_uint n_devices = 0;
      cl_device_id *devices;
      g_autofree char *pname = platform_string (platforms[p], CL_PLATFORM_NAME);

      err = clGetDeviceIDs (platforms[p], CL_DEVICE_TYPE_ALL, 0, NULL, &n_devices);
      if (err != CL_SUCCESS || n_devices == 0)
        {
          g_ptr_array_add (list->problems,
                           g_strdup_printf ("Platform \"%s\" lists no devices: %s (%s); skipped",
                                            pname, kilt_cl_error_hint (err),
                                            kilt_cl_error_name (err)));
          continue;
        }
      devices = g_new0 (cl_device_id, n_devices);
      clGetDeviceIDs (platforms[p], CL_DEVICE_TYPE_ALL, n_devices, devices, NULL);
      for (cl_uint i = 0; i < n_devices; i++)
        {
          KiltDeviceInfo *d = g_new0 (KiltDeviceInfo, 1);
          fill_device (d, platforms[p], devices[i], i);
          g_ptr_array_add (list->devices, d);
        }
      g_free (devices);
    }
  g_free (platforms);
  return list;
}

void
kilt_device_list_free (KiltDeviceList *list)
{
  if (list == NULL)
    return;
  g_ptr_array_unref (list->devices);
  g_ptr_array_unref (list->problems);
  g_free (list);
}

const KiltDeviceInfo *
kilt_device_list_find (KiltDeviceList *list, const char *id_or_index)
{
  char *end = NULL;
  guint64 idx;

  g_return_val_if_fail (list != NULL && id_or_index != NULL, NULL);
  for (guint i = 0; i < list->devices->len; i++)
    {
      KiltDeviceInfo *d = g_ptr_array_index (list->devices, i);
      if (g_ascii_strcasecmp (d->id, id_or_index) == 0)
        return d;
    }
  idx = g_ascii_strtoull (id_or_index, &end, 10);
  if (end != id_or_index && *end == '\0' && idx < list->devices->len)
    return g_ptr_array_index (list->devices, idx);
  /* A unique case-insensitive substring of the name or id also selects, e.g. "h100", "pthread". */
  {
    const KiltDeviceInfo *found = NULL;
    g_autofree char *needle = g_ascii_strdown (id_or_index, -1);
    for (guint i = 0; i < list->devices->len; i++)
      {
        KiltDeviceInfo *d = g_ptr_array_index (list->devices, i);
        g_autofree char *name = g_ascii_strdown (d->name, -1);
        if (strstr (name, needle) || strstr (d->id, needle))
          {
            if (found)
              return NULL;
            found = d;
          }
      }
    return found;
  }
}

static char *
config_path (void)
{
  return g_build_filename (g_get_user_config_dir (), "kilt", "device", NULL);
}

char *
kilt_device_get_saved_default (void)
{
  g_autofree char *path = config_path ();
  char *text = NULL;

  if (!g_file_get_contents (path, &text, NULL, NULL))
    return NULL;
  g_strstrip (text);
  if (*text == '\0')
    {
      g_free (text);
      return NULL;
    }
  return text;
}

gboolean
kilt_device_save_default (const char *id, GError **error)
{
  g_autofree char *path = config_path ();
  g_autofree char *dir = g_path_get_dirname (path);
  g_autofree char *text = g_strdup_printf ("%s\n", id);

  if (g_mkdir_with_parents (dir, 0700) != 0)
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_IO, "Cannot create %s", dir);
      return FALSE;
    }
  return g_file_set_contents (path, text, -1, error);
}

const KiltDeviceInfo *
kilt_device_list_choose_default (KiltDeviceList *list, GError **error)
{
  const char *env = g_getenv ("KILT_DEVICE");
  g_autofree char *saved = NULL;

  if (env && *env)
    {
      const KiltDeviceInfo *d = kilt_device_list_find (list, env);
      if (d == NULL)
        {
          g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_NO_DEVICE,
                       "KILT_DEVICE=%s matches no OpenCL device (or several); "
                       "`kilt-cli devices` lists them",
                       env);
          return NULL;
        }
      return d;
    }
  saved = kilt_device_get_saved_default ();
  if (saved)
    {
      const KiltDeviceInfo *d = kilt_device_list_find (list, saved);
      if (d)
        return d;
      g_warning ("The saved default device %s is gone; choosing another", saved);
    }
  for (int pass = 0; pass < 2; pass++)
    for (guint i = 0; i < list->devices->len; i++)
      {
        KiltDeviceInfo *d = g_ptr_array_index (list->devices, i);
        if (d->unusable_reason == NULL && (pass == 1 || g_str_equal (d->type, "GPU")))
          return d;
      }
  if (list->problems->len > 0)
    g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_NO_PLATFORM,
                 "No usable OpenCL device. %s",
                 (const char *)g_ptr_array_index (list->problems, 0));
  else
    g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_NO_DEVICE,
                 "No usable OpenCL device (%u found, none usable); `kilt-cli devices` says why",
                 list->devices->len);
  return NULL;
}

char *
kilt_device_list_report (KiltDeviceList *list)
{
  GString *s = g_string_new (NULL);

  for (guint i = 0; i < list->problems->len; i++)
    g_string_append_printf (s, "! %s\n", (const char *)g_ptr_array_index (list->problems, i));
  for (guint i = 0; i < list->devices->len; i++)
    {
      KiltDeviceInfo *d = g_ptr_array_index (list->devices, i);
      g_autofree char *gm = kilt_format_bytes (d->global_mem);
      g_autofree char *ma = kilt_format_bytes (d->max_alloc);
      g_autofree char *lm = kilt_format_bytes (d->local_mem);
      g_string_append_printf (s, "[%u] %s\n", i, d->id);
      g_string_append_printf (s, "    name:        %s (%s, %s)\n", d->name, d->vendor, d->type);
      g_string_append_printf (s, "    platform:    %s (%s)\n", d->platform_name,
                              d->platform_version);
      g_string_append_printf (s, "    driver:      %s; %s\n", d->driver_version, d->opencl_version);
      g_string_append_printf (s, "    compute:     %u units at %u MHz, work-groups up to %zu\n",
                              d->compute_units, d->clock_mhz, d->max_work_group);
      g_string_append_printf (s, "    memory:      %s global, %s max allocation, %s local\n", gm,
                              ma, lm);
      g_string_append_printf (s, "    precision:   fp64 %s, fp16 %s\n", d->fp64 ? "yes" : "no",
                              d->fp16 ? "yes" : "no");
      g_string_append_printf (s, "    usable:      %s\n",
                              d->unusable_reason ? d->unusable_reason : "yes");
    }
  return g_string_free (s, FALSE);
}
