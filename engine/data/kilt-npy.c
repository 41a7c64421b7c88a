/* NumPy .npy arrays: a careful reader of format versions 1 to 3 and a version 1.0 float32 writer.
 */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#define G_LOG_DOMAIN "kilt-npy"

#include "kilt-npy.h"
#include "kilt-data-private.h"

#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <glib/gstdio.h>

#define NPY_MAGIC     "\x93NUMPY"
#define NPY_MAGIC_LEN 6
/* NumPy itself refuses headers over 10,000 bytes unless told otherwise; one Kilt can use is a
 * few dozen bytes, so a longer one is a damaged file or a structured dtype. */
#define NPY_MAX_HEADER 65536u
/* What NumPy aligns the data to, so that a mapped array can be used in place. */
#define NPY_ALIGN 64u
#define NPY_EXPECTED_DTYPES                                                                        \
  "float32 or float64 ('<f4', '<f8'), signed or unsigned integers of 1, 2, 4 or 8 bytes "          \
  "('<i8', '|u1', ...) or bool ('|b1'), in either byte order"

typedef enum
{
  NPY_FLOAT,
  NPY_INT,
  NPY_UINT,
  NPY_BOOL,
} NpyKind;

typedef struct
{
  NpyKind kind;
  guint size;
  gboolean swap; /* the file's byte order is not this machine's */
} NpyType;

/* The header dict, its strings pointing into the file. */
typedef struct
{
  const char *descr;
  gsize descr_len;
  gboolean fortran;
  guint rank;
  guint64 shape[KILT_NPY_MAX_RANK];
  gboolean has_descr, has_fortran, has_shape;
} NpyHeader;

typedef struct
{
  const char *path;
  const char *text; /* the header, not NUL-terminated */
  gsize len, pos;
  gsize base; /* the header's byte offset in the file, for messages */
} NpyParser;

/* A string from the file fit for a message: escaped, and cut short when long. */
static char *
printable (const char *s, gsize len)
{
  g_autofree char *copy = g_strndup (s, MIN (len, 40));
  g_autofree char *esc = g_strescape (copy, NULL);

  return g_strconcat (esc, len > 40 ? "..." : "", NULL);
}

static char *
shape_text (const guint64 *shape, guint rank)
{
  GString *s = g_string_new ("(");

  for (guint i = 0; i < rank; i++)
    g_string_append_printf (s, "%s%" G_GUINT64_FORMAT, i ? ", " : "", shape[i]);
  g_string_append (s, rank == 1 ? ",)" : ")");
  return g_string_free (s, FALSE);
}

static gboolean
is_space (char c)
{
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

static gboolean
is_ident (char c)
{
  return g_ascii_isalnum (c) || c == '_';
}

static void
skip_space (NpyParser *p)
{
  while (p->pos < p->len && is_space (p->text[p->pos]))
    p->pos++;
}

static gboolean
at (const NpyParser *p, char c)
{
  return p->pos < p->len && p->text[p->pos] == c;
}

static gboolean parse_fail (NpyParser *p, GError **error, const char *expected_fmt, ...)
    G_GNUC_PRINTF (3, 4);

/* "PATH: the header does not parse at byte offset N: found X; expected Y". */
static gboolean
parse_fail (NpyParser *p, GError **error, const char *expected_fmt, ...)
{
  g_autofree char *expected = NULL;
  char found[32];
  va_list ap;

  va_start (ap, expected_fmt);
  expected = g_strdup_vprintf (expected_fmt, ap);
  va_end (ap);
  if (p->pos >= p->len)
    g_strlcpy (found, "the end of the header", sizeof found);
  else if (p->text[p->pos] == ' ')
    g_strlcpy (found, "a space", sizeof found);
  else if (p->text[p->pos] == '\n')
    g_strlcpy (found, "a newline", sizeof found);
  else if ((guchar)p->text[p->pos] > 0x20 && (guchar)p->text[p->pos] < 0x7f)
    g_snprintf (found, sizeof found, "'%c'", p->text[p->pos]);
  else
    g_snprintf (found, sizeof found, "byte 0x%02x", (guchar)p->text[p->pos]);
  g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_DATA,
               "%s: the header does not parse at byte offset %" G_GSIZE_FORMAT ": found %s; "
               "expected %s",
               p->path, p->base + p->pos, found, expected);
  return FALSE;
}

/* A quoted string without escapes (NumPy writes none in the keys and dtypes Kilt reads). */
static gboolean
parse_string (NpyParser *p, const char *what, const char **s, gsize *len, GError **error)
{
  char quote;
  gsize start;

  if (!at (p, '\'') && !at (p, '"'))
    return parse_fail (p, error, "%s in quotes", what);
  quote = p->text[p->pos++];
  start = p->pos;
  while (p->pos < p->len && p->text[p->pos] != quote)
    {
      if (p->text[p->pos] == '\\')
        return parse_fail (p, error, "%s without backslash escapes", what);
      if (p->text[p->pos] == '\n' || p->text[p->pos] == '\r')
        break;
      p->pos++;
    }
  if (!at (p, quote))
    return parse_fail (p, error, "the closing %c of %s", quote, what);
  *s = p->text + start;
  *len = p->pos - start;
  p->pos++;
  return TRUE;
}

/* A dimension: decimal digits, with the L that NumPy under Python 2 wrote after large ones. */
static gboolean
parse_dim (NpyParser *p, guint64 *out, GError **error)
{
  guint64 v = 0;
  gsize start = p->pos;

  if (p->pos >= p->len || !g_ascii_isdigit (p->text[p->pos]))
    return parse_fail (p, error, "a dimension (a non-negative integer)");
  while (p->pos < p->len && g_ascii_isdigit (p->text[p->pos]))
    {
      guint d = (guint)(p->text[p->pos] - '0');
      if (v > (G_MAXUINT64 - d) / 10)
        {
          p->pos = start;
          return parse_fail (p, error, "a dimension below 2^64");
        }
      v = v * 10 + d;
      p->pos++;
    }
  if (at (p, 'L') || at (p, 'l'))
    p->pos++;
  *out = v;
  return TRUE;
}

/* A tuple of dimensions: (), (5,), (2, 3) or (2, 3,). */
static gboolean
parse_shape (NpyParser *p, NpyHeader *h, GError **error)
{
  if (!at (p, '('))
    return parse_fail (p, error, "the shape as a tuple, such as (2, 3)");
  p->pos++;
  skip_space (p);
  h->rank = 0;
  while (!at (p, ')'))
    {
      if (h->rank == KILT_NPY_MAX_RANK)
        {
          g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_DATA,
                       "%s: the shape at byte offset %" G_GSIZE_FORMAT " has more than %d "
                       "dimensions; expected at most %d",
                       p->path, p->base + p->pos, KILT_NPY_MAX_RANK, KILT_NPY_MAX_RANK);
          return FALSE;
        }
      if (!parse_dim (p, &h->shape[h->rank++], error))
        return FALSE;
      skip_space (p);
      if (at (p, ','))
        {
          p->pos++;
          skip_space (p);
        }
      else if (!at (p, ')'))
        return parse_fail (p, error, "',' or ')' in the shape");
      /* (5) is a number in Python, not a tuple: NumPy refuses it too. */
      else if (h->rank == 1)
        return parse_fail (p, error, "',' after the only dimension, as in (5,)");
    }
  p->pos++;
  return TRUE;
}

static gboolean
parse_bool (NpyParser *p, gboolean *out, GError **error)
{
  gsize start = p->pos, len;

  while (p->pos < p->len && is_ident (p->text[p->pos]))
    p->pos++;
  len = p->pos - start;
  if (len == 4 && memcmp (p->text + start, "True", 4) == 0)
    *out = TRUE;
  else if (len == 5 && memcmp (p->text + start, "False", 5) == 0)
    *out = FALSE;
  else
    {
      p->pos = start;
      return parse_fail (p, error, "True or False for 'fortran_order'");
    }
  return TRUE;
}

static gboolean
key_is (const char *key, gsize len, const char *name)
{
  return len == strlen (name) && memcmp (key, name, len) == 0;
}

static gboolean
parse_entry (NpyParser *p, NpyHeader *h, GError **error)
{
  const char *key;
  gsize key_len, key_pos = p->pos;
  gboolean *seen;

  if (!parse_string (p, "a key", &key, &key_len, error))
    return FALSE;
  if (key_is (key, key_len, "descr"))
    seen = &h->has_descr;
  else if (key_is (key, key_len, "fortran_order"))
    seen = &h->has_fortran;
  else if (key_is (key, key_len, "shape"))
    seen = &h->has_shape;
  else
    {
      g_autofree char *name = printable (key, key_len);
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_DATA,
                   "%s: the header has a key '%s' (at byte offset %" G_GSIZE_FORMAT ") that "
                   "NumPy does not write; expected only 'descr', 'fortran_order' and 'shape'",
                   p->path, name, p->base + key_pos);
      return FALSE;
    }
  if (*seen)
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_DATA,
                   "%s: the header gives '%.*s' twice (again at byte offset %" G_GSIZE_FORMAT
                   "); expected each key once",
                   p->path, (int)key_len, key, p->base + key_pos);
      return FALSE;
    }
  *seen = TRUE;
  skip_space (p);
  if (!at (p, ':'))
    return parse_fail (p, error, "':' after the key '%.*s'", (int)key_len, key);
  p->pos++;
  skip_space (p);
  if (seen == &h->has_shape)
    return parse_shape (p, h, error);
  if (seen == &h->has_fortran)
    return parse_bool (p, &h->fortran, error);
  if (at (p, '['))
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_DATA,
                   "%s: the dtype at byte offset %" G_GSIZE_FORMAT " is structured (a list of "
                   "fields), which Kilt does not read; expected " NPY_EXPECTED_DTYPES,
                   p->path, p->base + p->pos);
      return FALSE;
    }
  return parse_string (p, "the dtype", &h->descr, &h->descr_len, error);
}

/* The dict literal NumPy writes, keys in any order, then only padding. */
static gboolean
parse_header (NpyParser *p, NpyHeader *h, GError **error)
{
  static const struct
  {
    const char *key;
    gsize offset;
  } keys[] = {
    { "descr", G_STRUCT_OFFSET (NpyHeader, has_descr) },
    { "fortran_order", G_STRUCT_OFFSET (NpyHeader, has_fortran) },
    { "shape", G_STRUCT_OFFSET (NpyHeader, has_shape) },
  };

  memset (h, 0, sizeof *h);
  skip_space (p);
  if (!at (p, '{'))
    return parse_fail (p, error, "'{' opening the header's dict");
  p->pos++;
  skip_space (p);
  while (!at (p, '}'))
    {
      if (!parse_entry (p, h, error))
        return FALSE;
      skip_space (p);
      if (at (p, ','))
        {
          p->pos++;
          skip_space (p);
        }
      else if (!at (p, '}'))
        return parse_fail (p, error, "',' or '}' after a value");
    }
  p->pos++;
  skip_space (p);
  if (p->pos < p->len)
    return parse_fail (p, error, "only spaces and a newline after the dict's closing '}'");
  for (guint i = 0; i < G_N_ELEMENTS (keys); i++)
    if (!G_STRUCT_MEMBER (gboolean, h, keys[i].offset))
      {
        g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_DATA,
                     "%s: the header has no '%s'; expected the keys 'descr', 'fortran_order' "
                     "and 'shape'",
                     p->path, keys[i].key);
        return FALSE;
      }
  return TRUE;
}

static const char *
kind_name (char kind, guint size)
{
  switch (kind)
    {
      case 'c':
        return "complex numbers";
      case 'O':
        return "Python objects";
      case 'U':
        return "Unicode strings";
      case 'S':
      case 'a':
        return "byte strings";
      case 'V':
        return "raw records";
      case 'M':
        return "dates";
      case 'm':
        return "time spans";
      case 'f':
        return size == 2 ? "float16" : "floats of that size";
      case 'i':
      case 'u':
        return "integers of that size";
      case 'b':
        return "bools of that size";
      default:
        return "an unknown type";
    }
}

/* A descr such as '<f4', '>i8', '|u1', '|b1', '=f8' or 'f4' (no order: this machine's). */
static gboolean
parse_dtype (const char *path, const char *descr, gsize len, NpyType *t, GError **error)
{
  gsize i = 0;
  char order = '=', kind;
  guint size = 0, digits = 0;
  gboolean whole, ok = FALSE;

  if (len > 0 && (descr[0] == '<' || descr[0] == '>' || descr[0] == '|' || descr[0] == '='))
    order = descr[i++];
  kind = i < len ? descr[i++] : '\0';
  if (kind == '?')
    {
      kind = 'b';
      size = digits = 1;
    }
  else
    for (; i < len && g_ascii_isdigit (descr[i]) && digits < 4; i++, digits++)
      size = size * 10 + (guint)(descr[i] - '0');
  whole = i == len && digits > 0;
  if (whole && kind == 'f')
    {
      t->kind = NPY_FLOAT;
      ok = size == 4 || size == 8;
    }
  else if (whole && (kind == 'i' || kind == 'u'))
    {
      t->kind = kind == 'i' ? NPY_INT : NPY_UINT;
      ok = size == 1 || size == 2 || size == 4 || size == 8;
    }
  else if (whole && kind == 'b')
    {
      t->kind = NPY_BOOL;
      ok = size == 1;
    }
  if (!ok)
    {
      g_autofree char *text = printable (descr, len);
      gboolean numeric = kind == 'f' || kind == 'i' || kind == 'u' || kind == 'b';
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_DATA,
                   "%s: dtype '%s' (%s) is not one Kilt reads; expected " NPY_EXPECTED_DTYPES, path,
                   text, numeric && !whole ? "an unknown type" : kind_name (kind, size));
      return FALSE;
    }
  t->size = size;
  t->swap = size > 1
            && ((order == '<' && G_BYTE_ORDER == G_BIG_ENDIAN)
                || (order == '>' && G_BYTE_ORDER == G_LITTLE_ENDIAN));
  return TRUE;
}

/* Header bytes are ASCII text (UTF-8 from version 3.0), so nothing odd reaches a message. */
static gboolean
check_text (const char *path, const guint8 *text, gsize len, gsize base, guint major,
            GError **error)
{
  const char *end;

  for (gsize i = 0; i < len; i++)
    if ((text[i] < 0x20 && !is_space ((char)text[i])) || text[i] == 0x7f
        || (text[i] >= 0x80 && major < 3))
      {
        g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_DATA,
                     "%s: byte 0x%02x at byte offset %" G_GSIZE_FORMAT " of the header is not "
                     "text; expected an ASCII Python dict (UTF-8 in format version 3.0)",
                     path, text[i], base + i);
        return FALSE;
      }
  if (!g_utf8_validate_len ((const char *)text, len, &end))
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_DATA,
                   "%s: the header is not valid UTF-8 at byte offset %" G_GSIZE_FORMAT
                   "; expected UTF-8 text",
                   path, base + (gsize)(end - (const char *)text));
      return FALSE;
    }
  return TRUE;
}

/* The magic, version and header length; *header_start and *header_len locate the dict. */
static gboolean
parse_preamble (const char *path, const guint8 *bytes, gsize len, guint *major, gsize *header_start,
                gsize *header_len, GError **error)
{
  guint32 hlen;
  gsize prefix;

  if (len >= 4 && memcmp (bytes, "PK\x03\x04", 4) == 0)
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_DATA,
                   "%s: is a zip archive (an .npz of several arrays?); expected one .npy array "
                   "(np.save, or unzip the .npz)",
                   path);
      return FALSE;
    }
  if (kilt_data_is_gzip (bytes, len))
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_DATA,
                   "%s: is gzip-compressed; expected an uncompressed .npy (gunzip it first)", path);
      return FALSE;
    }
  if (len < 10)
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_DATA,
                   "%s: %" G_GSIZE_FORMAT " bytes is too short for a .npy file; expected at "
                   "least 10 bytes (the magic \\x93NUMPY, a version and a header length)",
                   path, len);
      return FALSE;
    }
  if (memcmp (bytes, NPY_MAGIC, NPY_MAGIC_LEN) != 0)
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_DATA,
                   "%s: not a .npy file (it starts %02x %02x %02x %02x %02x %02x); expected "
                   "the magic \\x93NUMPY (93 4e 55 4d 50 59)",
                   path, bytes[0], bytes[1], bytes[2], bytes[3], bytes[4], bytes[5]);
      return FALSE;
    }
  if (bytes[6] < 1 || bytes[6] > 3 || bytes[7] != 0)
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_DATA,
                   "%s: .npy format version %u.%u is not one Kilt reads; expected 1.0, 2.0 or "
                   "3.0",
                   path, bytes[6], bytes[7]);
      return FALSE;
    }
  *major = bytes[6];
  prefix = *major == 1 ? 10 : 12;
  if (len < prefix)
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_DATA,
                   "%s: the file ends at byte offset %" G_GSIZE_FORMAT ", inside the header "
                   "length; expected %" G_GSIZE_FORMAT " bytes before the header in format "
                   "version %u.0",
                   path, len, prefix, *major);
      return FALSE;
    }
  hlen = *major == 1 ? (guint32)bytes[8] | (guint32)bytes[9] << 8
                     : (guint32)bytes[8] | (guint32)bytes[9] << 8 | (guint32)bytes[10] << 16
                           | (guint32)bytes[11] << 24;
  if (hlen > len - prefix)
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_DATA,
                   "%s: the header is %u bytes from byte offset %" G_GSIZE_FORMAT ", past the "
                   "end of the file (%" G_GSIZE_FORMAT " bytes); expected the header to end "
                   "within the file",
                   path, hlen, prefix, len);
      return FALSE;
    }
  if (hlen > NPY_MAX_HEADER)
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_DATA,
                   "%s: the header is %u bytes; expected at most %u (a longer one is damaged "
                   "or describes a structured dtype)",
                   path, hlen, NPY_MAX_HEADER);
      return FALSE;
    }
  *header_start = prefix;
  *header_len = hlen;
  return TRUE;
}

/* "index 5 ([1, 2])": the flat index, and where it is in the shape. */
static char *
index_text (guint64 i, const guint64 *shape, guint rank)
{
  guint64 pos[KILT_NPY_MAX_RANK];
  GString *s = g_string_new (NULL);

  g_string_printf (s, "index %" G_GUINT64_FORMAT, i);
  if (rank < 2)
    return g_string_free (s, FALSE);
  for (guint d = rank; d-- > 0;)
    {
      pos[d] = i % shape[d];
      i /= shape[d];
    }
  for (guint d = 0; d < rank; d++)
    g_string_append_printf (s, "%s%" G_GUINT64_FORMAT, d ? ", " : " ([", pos[d]);
  g_string_append (s, "])");
  return g_string_free (s, FALSE);
}

static gboolean
check_float (const char *path, double v, guint64 i, gsize offset, const NpyHeader *h,
             GError **error)
{
  g_autofree char *where = NULL;

  if (isfinite (v) && fabs (v) <= FLT_MAX)
    return TRUE;
  where = index_text (i, h->shape, h->rank);
  if (isfinite (v))
    g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_DATA,
                 "%s: value %g at %s (byte offset %" G_GSIZE_FORMAT ") is outside float32's "
                 "range; expected values of magnitude at most %g",
                 path, v, where, offset, (double)FLT_MAX);
  else
    g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_DATA,
                 "%s: value %s at %s (byte offset %" G_GSIZE_FORMAT ") is not a finite "
                 "number; expected finite values (Kilt refuses NaN and infinity)",
                 path,
                 isnan (v) ? "NaN"
                 : v > 0   ? "inf"
                           : "-inf",
                 where, offset);
  return FALSE;
}

/* Values at any alignment, in either byte order. */
static guint16
load16 (const guint8 *p, gboolean swap)
{
  guint16 u;

  memcpy (&u, p, sizeof u);
  return swap ? GUINT16_SWAP_LE_BE (u) : u;
}

static guint32
load32 (const guint8 *p, gboolean swap)
{
  guint32 u;

  memcpy (&u, p, sizeof u);
  return swap ? GUINT32_SWAP_LE_BE (u) : u;
}

static guint64
load64 (const guint8 *p, gboolean swap)
{
  guint64 u;

  memcpy (&u, p, sizeof u);
  return swap ? GUINT64_SWAP_LE_BE (u) : u;
}

/* The file's @n values from @src (at byte offset @offset) as float. */
static gboolean
convert (const char *path, const guint8 *src, gsize offset, guint64 n, const NpyType *t,
         const NpyHeader *h, float *dst, GError **error)
{
  for (guint64 i = 0; i < n; i++)
    {
      const guint8 *p = src + i * t->size;
      guint32 u32;
      guint64 u64;
      float f;
      double d;

      switch (t->kind * 16 + t->size)
        {
          case NPY_FLOAT * 16 + 4:
            u32 = load32 (p, t->swap);
            memcpy (&f, &u32, sizeof f);
            if (!check_float (path, f, i, offset + i * 4, h, error))
              return FALSE;
            dst[i] = f;
            break;
          case NPY_FLOAT * 16 + 8:
            u64 = load64 (p, t->swap);
            memcpy (&d, &u64, sizeof d);
            if (!check_float (path, d, i, offset + i * 8, h, error))
              return FALSE;
            dst[i] = (float)d;
            break;
          case NPY_INT * 16 + 1:
            dst[i] = (gint8)*p;
            break;
          case NPY_UINT * 16 + 1:
            dst[i] = *p;
            break;
          case NPY_BOOL * 16 + 1:
            /* NumPy reads any non-zero byte as True. */
            dst[i] = *p != 0;
            break;
          case NPY_INT * 16 + 2:
            dst[i] = (gint16)load16 (p, t->swap);
            break;
          case NPY_UINT * 16 + 2:
            dst[i] = load16 (p, t->swap);
            break;
          case NPY_INT * 16 + 4:
            dst[i] = (float)(gint32)load32 (p, t->swap);
            break;
          case NPY_UINT * 16 + 4:
            dst[i] = (float)load32 (p, t->swap);
            break;
          case NPY_INT * 16 + 8:
            dst[i] = (float)(gint64)load64 (p, t->swap);
            break;
          case NPY_UINT * 16 + 8:
            dst[i] = (float)load64 (p, t->swap);
            break;
          default:
            g_assert_not_reached ();
        }
    }
  return TRUE;
}

/* The data's size in bytes, refusing a shape that overflows or holds too many values. */
static gboolean
check_shape (const char *path, const NpyHeader *h, const NpyType *t, guint64 max_values,
             guint64 *n_out, guint64 *bytes_out, GError **error)
{
  g_autofree char *shape = shape_text (h->shape, h->rank);
  guint64 nonzero = 1, n;
  gboolean overflow = FALSE, empty = FALSE;

  /* A zero dimension empties the array, but a product of the others that overflows is still
   * refused: no real array has such a shape. */
  for (guint i = 0; i < h->rank; i++)
    if (h->shape[i] == 0)
      empty = TRUE;
    else if (nonzero > G_MAXUINT64 / h->shape[i])
      overflow = TRUE;
    else
      nonzero *= h->shape[i];
  n = empty ? 0 : nonzero;
  if (overflow || nonzero > G_MAXUINT64 / t->size)
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_DATA,
                   "%s: shape %s of dtype '%.*s' overflows (its size in bytes does not fit in "
                   "64 bits); expected a shape whose size the file can hold",
                   path, shape, (int)h->descr_len, h->descr);
      return FALSE;
    }
  if (n > max_values)
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_DATA,
                   "%s: shape %s holds %" G_GUINT64_FORMAT
                   " values; expected at most %" G_GUINT64_FORMAT,
                   path, shape, n, max_values);
      return FALSE;
    }
  *n_out = n;
  *bytes_out = n * t->size;
  return TRUE;
}

gboolean
kilt_npy_read (const char *path, guint64 max_values, KiltNpy *out, GError **error)
{
  g_autoptr (GMappedFile) map = NULL;
  g_autoptr (GError) local = NULL;
  const guint8 *bytes;
  gsize len, start, header_len, end;
  guint64 n, data_bytes;
  guint major;
  GStatBuf st;
  NpyParser p;
  NpyHeader h;
  NpyType t;
  float *data;

  g_return_val_if_fail (path != NULL, FALSE);
  g_return_val_if_fail (out != NULL, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  memset (out, 0, sizeof *out);
  /* Refused before mapping, so that an enormous file gives this error and not the mapping's. */
  if (g_stat (path, &st) == 0 && (guint64)st.st_size > KILT_DATA_MAX_FILE_BYTES)
    {
      g_autofree char *cap = kilt_format_bytes (KILT_DATA_MAX_FILE_BYTES);
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_DATA,
                   "%s: the file is %" G_GUINT64_FORMAT " bytes; expected at most %" G_GSIZE_FORMAT
                   " (%s), the most Kilt reads from one file",
                   path, (guint64)st.st_size, KILT_DATA_MAX_FILE_BYTES, cap);
      return FALSE;
    }
  map = g_mapped_file_new (path, FALSE, &local);
  if (map == NULL)
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_IO,
                   "%s: cannot be read (%s); expected a readable .npy file", path, local->message);
      return FALSE;
    }
  bytes = (const guint8 *)g_mapped_file_get_contents (map);
  len = g_mapped_file_get_length (map);
  if (len > KILT_DATA_MAX_FILE_BYTES)
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_DATA,
                   "%s: the file is %" G_GSIZE_FORMAT " bytes; expected at most %" G_GSIZE_FORMAT
                   ", the most Kilt reads from one file",
                   path, len, KILT_DATA_MAX_FILE_BYTES);
      return FALSE;
    }
  if (!parse_preamble (path, bytes, len, &major, &start, &header_len, error))
    return FALSE;
  if (!check_text (path, bytes + start, header_len, start, major, error))
    return FALSE;
  p = (NpyParser){
    .path = path, .text = (const char *)bytes + start, .len = header_len, .base = start
  };
  if (!parse_header (&p, &h, error) || !parse_dtype (path, h.descr, h.descr_len, &t, error))
    return FALSE;
  if (h.fortran)
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_DATA,
                   "%s: the array is in Fortran (column-major) order; expected C order (save "
                   "np.ascontiguousarray (a) instead)",
                   path);
      return FALSE;
    }
  if (!check_shape (path, &h, &t, max_values, &n, &data_bytes, error))
    return FALSE;
  end = start + header_len;
  /* Compared as a difference, as a sum could overflow. */
  if (data_bytes != len - end)
    {
      g_autofree char *shape = shape_text (h.shape, h.rank);
      gboolean short_file = data_bytes > len - end;
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_DATA,
                   "%s: the file is %" G_GSIZE_FORMAT " bytes, but its header (%" G_GSIZE_FORMAT
                   " bytes with the preamble) and shape %s of dtype '%.*s' (%" G_GUINT64_FORMAT
                   " bytes of data) "
                   "make %s%" G_GUINT64_FORMAT "; expected exactly that many (the file is %s)",
                   path, len, end, shape, (int)h.descr_len, h.descr, data_bytes,
                   data_bytes > G_MAXUINT64 - end ? "more than " : "",
                   data_bytes > G_MAXUINT64 - end ? G_MAXUINT64 : end + data_bytes,
                   short_file ? "cut short" : "longer than its array");
      return FALSE;
    }
  if (n > G_MAXSIZE / sizeof (float))
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_OUT_OF_MEMORY,
                   "%s: %" G_GUINT64_FORMAT " values do not fit in this machine's memory", path, n);
      return FALSE;
    }
  data = kilt_data_try_alloc ((gsize)n * sizeof (float), path, "its values", error);
  if (data == NULL)
    return FALSE;
  if (!convert (path, bytes + end, end, n, &t, &h, data, error))
    {
      g_free (data);
      return FALSE;
    }
  out->rank = h.rank;
  memcpy (out->shape, h.shape, sizeof h.shape);
  out->n = n;
  out->data = data;
  out->dtype = g_strndup (h.descr, h.descr_len);
  return TRUE;
}

void
kilt_npy_clear (KiltNpy *npy)
{
  if (npy == NULL)
    return;
  g_free (npy->data);
  g_free (npy->dtype);
  memset (npy, 0, sizeof *npy);
}

static gboolean
write_all (FILE *f, const void *p, gsize len)
{
  return len == 0 || fwrite (p, 1, len, f) == len;
}

gboolean
kilt_npy_write_f32 (const char *path, const float *data, const guint64 *shape, guint rank,
                    GError **error)
{
  g_autofree char *tmp = NULL, *dims = NULL;
  g_autoptr (GString) header = NULL;
  guint8 preamble[10];
  guint64 n = 1;
  gboolean ok;
  FILE *f;
  int err = 0;

  g_return_val_if_fail (path != NULL, FALSE);
  g_return_val_if_fail (rank <= KILT_NPY_MAX_RANK, FALSE);
  g_return_val_if_fail (shape != NULL || rank == 0, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  for (guint i = 0; i < rank; i++)
    {
      if (shape[i] != 0 && n > G_MAXUINT64 / shape[i])
        n = G_MAXUINT64;
      else
        n *= shape[i];
    }
  if (n > G_MAXSIZE / sizeof (float))
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_INVALID,
                   "%s: cannot write a shape of %u dimensions whose size overflows; expected a "
                   "shape of an array in memory",
                   path, rank);
      return FALSE;
    }
  g_return_val_if_fail (data != NULL || n == 0, FALSE);

  /* Laid out as NumPy lays it out, padded so that the data starts at a multiple of 64. */
  dims = shape_text (shape, rank);
  header = g_string_new (NULL);
  g_string_printf (header, "{'descr': '<f4', 'fortran_order': False, 'shape': %s, }", dims);
  while ((sizeof preamble + header->len + 1) % NPY_ALIGN != 0)
    g_string_append_c (header, ' ');
  g_string_append_c (header, '\n');
  g_assert (header->len <= G_MAXUINT16);
  memcpy (preamble, NPY_MAGIC, NPY_MAGIC_LEN);
  preamble[6] = 1;
  preamble[7] = 0;
  preamble[8] = (guint8)(header->len & 0xff);
  preamble[9] = (guint8)(header->len >> 8);

  /* Beside the file and renamed over it, so that a failed write leaves the old one whole. */
  tmp = g_strconcat (path, ".part", NULL);
  f = g_fopen (tmp, "wb");
  if (f == NULL)
    {
      err = errno;
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_IO,
                   "%s: cannot be written (creating %s: %s); expected a file path in a folder "
                   "Kilt can write to",
                   path, tmp, g_strerror (err));
      return FALSE;
    }
  ok = write_all (f, preamble, sizeof preamble) && write_all (f, header->str, header->len);
  for (guint64 i = 0; ok && i < n;)
    {
      guint32 chunk[4096];
      gsize m = (gsize)MIN (n - i, (guint64)G_N_ELEMENTS (chunk));
      for (gsize j = 0; j < m; j++)
        {
          guint32 u;
          memcpy (&u, data + i + j, sizeof u);
          chunk[j] = GUINT32_TO_LE (u);
        }
      ok = write_all (f, chunk, m * sizeof *chunk);
      i += m;
    }
  if (!ok)
    err = errno;
  if (fclose (f) != 0 && ok)
    {
      ok = FALSE;
      err = errno;
    }
  if (!ok)
    {
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_IO,
                   "%s: cannot be written (writing %s: %s); expected a folder with room for "
                   "%" G_GUINT64_FORMAT " bytes",
                   path, tmp, g_strerror (err ? err : EIO),
                   (guint64)(sizeof preamble + header->len) + n * 4);
      g_unlink (tmp);
      return FALSE;
    }
  if (g_rename (tmp, path) != 0)
    {
      err = errno;
      g_set_error (error, KILT_ENGINE_ERROR, KILT_ENGINE_ERROR_IO,
                   "%s: cannot be written (renaming %s over it: %s); expected a file path in a "
                   "folder Kilt can write to",
                   path, tmp, g_strerror (err));
      g_unlink (tmp);
      return FALSE;
    }
  return TRUE;
}
