/* Checks on JSON text before json-glib parses it: size, nesting depth, value count, UTF-8. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#define G_LOG_DOMAIN "kilt-json-limits"

#include "kilt-json-limits.h"

#include <math.h>
#include "kilt-error.h"

#include <glib/gstdio.h>
#include <stdarg.h>
#include <string.h>
#include <sys/stat.h>

/* "line L, column C (byte B): <what>": the line and column for people, the byte for tools. */
static void G_GNUC_PRINTF (4, 5)
    set_at (GError **error, const char *data, gsize offset, const char *fmt, ...)
{
  va_list ap;
  g_autofree char *msg = NULL;
  guint line = 1, column = 1;

  for (gsize i = 0; i < offset; i++)
    if (data[i] == '\n')
      line++, column = 1;
    else if (((guchar)data[i] & 0xc0) != 0x80) /* count characters, not continuation bytes */
      column++;
  va_start (ap, fmt);
  msg = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_INVALID,
               "line %u, column %u (byte %" G_GSIZE_FORMAT "): %s", line, column, offset, msg);
}

/* The value of four hex digits, or -1. */
static gint
hex4 (const char *p)
{
  gint v = 0;

  for (int k = 0; k < 4; k++)
    {
      gint d = g_ascii_xdigit_value (p[k]);
      if (d < 0)
        return -1;
      v = v * 16 + d;
    }
  return v;
}

gboolean
kilt_json_check_text (const char *data, gssize length, GError **error)
{
  gsize len, depth = 0, values = 1;
  gboolean in_string = FALSE;
  const char *end;

  g_return_val_if_fail (data != NULL, FALSE);
  len = length < 0 ? strlen (data) : (gsize)length;
  if (len > KILT_JSON_MAX_BYTES)
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_INVALID,
                   "the text is %" G_GSIZE_FORMAT " bytes; Kilt reads model files of at most %u "
                   "MiB",
                   len, KILT_JSON_MAX_BYTES >> 20);
      return FALSE;
    }
  if (!g_utf8_validate_len (data, len, &end))
    {
      gsize at = (gsize)(end - data);
      if (data[at] == '\0')
        set_at (error, data, at, "a NUL byte; JSON is text");
      else
        set_at (error, data, at, "invalid UTF-8 (byte 0x%02x); JSON must be UTF-8 text",
                (guchar)data[at]);
      return FALSE;
    }
  for (gsize i = 0; i < len; i++)
    {
      char c = data[i];

      if (in_string)
        {
          if (c == '"')
            in_string = FALSE;
          else if (c == '\\')
            {
              gint v = i + 5 < len && data[i + 1] == 'u' ? hex4 (data + i + 2) : -1;
              /* json-glib keeps strings as C strings, so "a\u0000b" would quietly become
               * "a"; and it turns a lone surrogate into bytes that are not UTF-8. */
              if (v == 0)
                {
                  set_at (error, data, i, "a \\u0000 (NUL) escape in a string");
                  return FALSE;
                }
              if (v >= 0xd800 && v < 0xdc00 && i + 11 < len && data[i + 6] == '\\'
                  && data[i + 7] == 'u' && hex4 (data + i + 8) >= 0xdc00
                  && hex4 (data + i + 8) < 0xe000)
                i += 6; /* a pair: one character */
              else if (v >= 0xd800 && v < 0xe000)
                {
                  set_at (error, data, i,
                          "a lone surrogate escape \\u%04x in a string; it is no character", v);
                  return FALSE;
                }
              i++; /* the escaped character cannot end the string */
            }
          continue;
        }
      switch (c)
        {
          case '"':
            in_string = TRUE;
            break;
          case '[':
          case '{':
            if (++depth > KILT_JSON_MAX_DEPTH)
              {
                set_at (error, data, i, "nesting deeper than %u levels",
                        (guint)KILT_JSON_MAX_DEPTH);
                return FALSE;
              }
            values++;
            break;
          case ']':
          case '}':
            if (depth > 0) /* unbalanced text is json-glib's to report */
              depth--;
            break;
          case ',':
            if (++values > KILT_JSON_MAX_VALUES)
              {
                set_at (error, data, i, "more than %u values", (guint)KILT_JSON_MAX_VALUES);
                return FALSE;
              }
            break;
          default:
            break;
        }
    }
  return TRUE;
}

gboolean
kilt_json_read_file (const char *path, const char *what, char **data, gsize *length, GError **error)
{
  GStatBuf st;
  g_autoptr (GError) local = NULL;

  g_return_val_if_fail (path != NULL && data != NULL && length != NULL, FALSE);
  /* Where stat fails, g_file_get_contents says why in its own words. */
  if (g_stat (path, &st) == 0)
    {
      if (!S_ISREG (st.st_mode) && !S_ISDIR (st.st_mode))
        {
          g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_IO,
                       "cannot read %s %s: not a regular file", what, path);
          return FALSE;
        }
      if (S_ISREG (st.st_mode) && (guint64)st.st_size > KILT_JSON_MAX_BYTES)
        {
          g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_IO,
                       "cannot read %s %s: it is %" G_GUINT64_FORMAT " bytes; Kilt reads model "
                       "files of at most %u MiB",
                       what, path, (guint64)st.st_size, KILT_JSON_MAX_BYTES >> 20);
          return FALSE;
        }
    }
  if (!g_file_get_contents (path, data, length, &local))
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_IO, "cannot read %s %s: %s", what,
                   path, local->message);
      return FALSE;
    }
  return TRUE;
}

char *
kilt_json_clean_message (const char *message)
{
  return g_utf8_make_valid (message, -1);
}

double
kilt_json_get_number (JsonObject *o, const char *name)
{
  JsonNode *n = json_object_get_member (o, name);

  if (n == NULL || !JSON_NODE_HOLDS_VALUE (n))
    return NAN;
  switch (json_node_get_value_type (n))
    {
      case G_TYPE_INT64:
        return (double)json_node_get_int (n);
      case G_TYPE_DOUBLE:
        return json_node_get_double (n);
      default:
        return NAN;
    }
}

void
kilt_json_add_number (JsonBuilder *b, const char *name, double v)
{
  json_builder_set_member_name (b, name);
  if (isfinite (v))
    json_builder_add_double_value (b, v);
  else
    json_builder_add_null_value (b);
}

void
kilt_json_add_int (JsonBuilder *b, const char *name, gint64 v)
{
  json_builder_set_member_name (b, name);
  json_builder_add_int_value (b, v);
}

void
kilt_json_add_text (JsonBuilder *b, const char *v)
{
  if (g_utf8_validate (v, -1, NULL))
    json_builder_add_string_value (b, v);
  else
    {
      g_autofree char *valid = g_utf8_make_valid (v, -1);
      json_builder_add_string_value (b, valid);
    }
}

void
kilt_json_add_string (JsonBuilder *b, const char *name, const char *v)
{
  json_builder_set_member_name (b, name);
  if (v)
    kilt_json_add_text (b, v);
  else
    json_builder_add_null_value (b);
}
