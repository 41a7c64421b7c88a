/* NumPy .npy files: round trips, files NumPy wrote (tests/data/npy) and crafted broken ones. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "test-data-util.h"

#include "kilt-data-private.h"
#include "kilt-npy.h"

#include <fcntl.h>
#include <unistd.h>

/* Reading @path fails with @code, a message that starts with the path and holds every one of
 * the strings; nothing is left in the array. */
#define npy_expect_fail(path, max, code, ...)                                                      \
  G_STMT_START                                                                                     \
  {                                                                                                \
    g_autoptr (GError) _e = NULL;                                                                  \
    KiltNpy _a;                                                                                    \
    g_assert_false (kilt_npy_read ((path), (max), &_a, &_e));                                      \
    g_assert_null (_a.data);                                                                       \
    g_assert_null (_a.dtype);                                                                      \
    data_test_assert_error (_e, (code), __VA_ARGS__, NULL);                                        \
    if (!g_str_has_prefix (_e->message, (path)))                                                   \
      g_error ("expected the message to start with %s: %s", (path), _e->message);                  \
  }                                                                                                \
  G_STMT_END

#define npy_expect_data_error(path, ...)                                                           \
  npy_expect_fail ((path), G_MAXUINT64, KILT_ENGINE_ERROR_DATA, __VA_ARGS__)

static char *
fixture (const char *name)
{
  const char *src = g_getenv ("KILT_SOURCE_DIR");

  g_assert_nonnull (src);
  return g_build_filename (src, "tests", "data", "npy", name, NULL);
}

static char *
put (const char *dir, const char *name, const void *bytes, gsize len)
{
  char *path = g_build_filename (dir, name, NULL);

  data_test_write (path, bytes, len, FALSE);
  return path;
}

/* A .npy of format version @major.0 whose header is @dict, padded as NumPy pads it (to
 * @align bytes, with a newline last), then @len bytes of @data. */
static GByteArray *
npy_bytes_aligned (guint major, const char *dict, const void *data, gsize len, guint align)
{
  GByteArray *b = g_byte_array_new ();
  g_autoptr (GString) h = g_string_new (dict);
  gsize prefix = major == 1 ? 10 : 12;
  guint8 pre[12] = { 0x93, 'N', 'U', 'M', 'P', 'Y', (guint8)major, 0 };

  while ((prefix + h->len + 1) % align != 0)
    g_string_append_c (h, ' ');
  g_string_append_c (h, '\n');
  for (guint i = 0; i < prefix - 8; i++)
    pre[8 + i] = (guint8)(h->len >> (8 * i));
  g_byte_array_append (b, pre, (guint)prefix);
  g_byte_array_append (b, (const guint8 *)h->str, (guint)h->len);
  if (len > 0)
    g_byte_array_append (b, data, (guint)len);
  return b;
}

static GByteArray *
npy_bytes (guint major, const char *dict, const void *data, gsize len)
{
  return npy_bytes_aligned (major, dict, data, len, 64);
}

static char *
put_npy (const char *dir, const char *name, const char *dict, const void *data, gsize len)
{
  g_autoptr (GByteArray) b = npy_bytes (1, dict, data, len);

  return put (dir, name, b->data, b->len);
}

static void
read_ok (const char *path, KiltNpy *a)
{
  g_autoptr (GError) error = NULL;

  g_assert_true (kilt_npy_read (path, G_MAXUINT64, a, &error));
  g_assert_no_error (error);
}

/* Random floats through kilt_npy_write_f32 and back, bit for bit, ranks 0 to 4 and empty. */
static void
test_round_trip (void)
{
  g_autofree char *tmp = kilt_test_tmpdir ();
  static const struct
  {
    guint rank;
    guint64 shape[4];
  } cases[] = {
    { 0, { 0 } }, { 1, { 7 } }, { 2, { 3, 5 } }, { 4, { 2, 3, 4, 5 } }, { 2, { 3, 0 } },
  };
  KiltRng rng;

  kilt_rng_init (&rng, 42);
  for (guint c = 0; c < G_N_ELEMENTS (cases); c++)
    {
      g_autofree char *name = g_strdup_printf ("rank%u-%u.npy", cases[c].rank, c);
      g_autofree char *path = g_build_filename (tmp, name, NULL);
      g_autofree char *part = g_strconcat (path, ".part", NULL);
      g_autofree float *values = NULL;
      g_autofree guint8 *bytes = NULL;
      g_autoptr (GError) error = NULL;
      KiltNpy a;
      guint64 n = 1;
      gsize len, hlen;

      for (guint d = 0; d < cases[c].rank; d++)
        n *= cases[c].shape[d];
      values = g_new (float, MAX (n, 1));
      for (guint64 i = 0; i < n; i++)
        values[i] = (float)(100 * kilt_rng_normal (&rng));
      /* An old file of another shape is replaced. */
      {
        float old[2] = { 1, 2 };
        guint64 old_shape[1] = { 2 };
        g_assert_true (kilt_npy_write_f32 (path, old, old_shape, 1, &error));
      }
      g_assert_true (kilt_npy_write_f32 (path, values, cases[c].shape, cases[c].rank, &error));
      g_assert_no_error (error);
      g_assert_false (g_file_test (part, G_FILE_TEST_EXISTS));

      /* Version 1.0, the data at a multiple of 64 after a newline, nothing after the data. */
      g_assert_true (g_file_get_contents (path, (char **)&bytes, &len, NULL));
      g_assert_cmpmem (bytes, 8, "\x93NUMPY\x01\x00", 8);
      hlen = bytes[8] | (gsize)bytes[9] << 8;
      g_assert_cmpuint ((10 + hlen) % 64, ==, 0);
      g_assert_cmpint (bytes[10 + hlen - 1], ==, '\n');
      g_assert_cmpuint (len, ==, 10 + hlen + 4 * n);

      read_ok (path, &a);
      g_assert_cmpuint (a.rank, ==, cases[c].rank);
      for (guint d = 0; d < a.rank; d++)
        g_assert_cmpuint (a.shape[d], ==, cases[c].shape[d]);
      g_assert_cmpuint (a.n, ==, n);
      g_assert_cmpstr (a.dtype, ==, "<f4");
      g_assert_nonnull (a.data);
      g_assert_cmpmem (a.data, (gsize)n * 4, values, (gsize)n * 4);
      if (n > 0)
        g_assert_cmpfloat (values[0], !=, 0);
      kilt_npy_clear (&a);
      g_assert_null (a.data);
      kilt_npy_clear (&a);
    }
}

/* The files tests/data/npy/make-npy.py wrote with NumPy, against its formulas. */
static void
test_numpy_files (void)
{
  KiltNpy a;

  {
    g_autofree char *p = fixture ("f4-c.npy");
    read_ok (p, &a);
    g_assert_cmpuint (a.rank, ==, 3);
    g_assert_cmpuint (a.shape[0], ==, 2);
    g_assert_cmpuint (a.shape[1], ==, 3);
    g_assert_cmpuint (a.shape[2], ==, 4);
    g_assert_cmpuint (a.n, ==, 24);
    g_assert_cmpstr (a.dtype, ==, "<f4");
    for (guint i = 0; i < 24; i++)
      g_assert_cmpfloat (a.data[i], ==, (float)(0.25 * i - 3));
    kilt_npy_clear (&a);
  }
  {
    g_autofree char *p = fixture ("f8-be.npy");
    read_ok (p, &a);
    g_assert_cmpuint (a.rank, ==, 2);
    g_assert_cmpuint (a.shape[0], ==, 3);
    g_assert_cmpuint (a.shape[1], ==, 5);
    g_assert_cmpstr (a.dtype, ==, ">f8");
    for (guint i = 0; i < 15; i++)
      g_assert_cmpfloat (a.data[i], ==, (float)(1.0 / (i + 1) - 0.5));
    kilt_npy_clear (&a);
  }
  {
    g_autofree char *p = fixture ("u1.npy");
    read_ok (p, &a);
    g_assert_cmpuint (a.rank, ==, 2);
    g_assert_cmpuint (a.n, ==, 16);
    g_assert_cmpstr (a.dtype, ==, "|u1");
    for (guint i = 0; i < 16; i++)
      g_assert_cmpfloat (a.data[i], ==, (float)((37 * i) % 256));
    kilt_npy_clear (&a);
  }
  {
    g_autofree char *p = fixture ("i8.npy");
    read_ok (p, &a);
    g_assert_cmpuint (a.rank, ==, 1);
    g_assert_cmpuint (a.shape[0], ==, 6);
    g_assert_cmpstr (a.dtype, ==, "<i8");
    for (gint64 i = 0; i < 6; i++)
      g_assert_cmpfloat (a.data[i], ==, (float)((i - 3) * ((gint64)1 << 33) + i));
    g_assert_cmpfloat (a.data[0], <, 0);
    kilt_npy_clear (&a);
  }
  {
    g_autofree char *p = fixture ("i2-be.npy");
    read_ok (p, &a);
    g_assert_cmpstr (a.dtype, ==, ">i2");
    g_assert_cmpuint (a.n, ==, 5);
    for (gint i = 0; i < 5; i++)
      g_assert_cmpfloat (a.data[i], ==, (float)(1000 * (i - 2)));
    kilt_npy_clear (&a);
  }
  {
    g_autofree char *p = fixture ("b1.npy");
    read_ok (p, &a);
    g_assert_cmpstr (a.dtype, ==, "|b1");
    g_assert_cmpuint (a.n, ==, 7);
    for (guint i = 0; i < 7; i++)
      g_assert_cmpfloat (a.data[i], ==, i % 3 == 0 ? 1.0f : 0.0f);
    kilt_npy_clear (&a);
  }
  {
    g_autofree char *p = fixture ("f4-scalar.npy");
    read_ok (p, &a);
    g_assert_cmpuint (a.rank, ==, 0);
    g_assert_cmpuint (a.n, ==, 1);
    g_assert_cmpfloat (a.data[0], ==, 2.5f);
    kilt_npy_clear (&a);
  }
  for (guint v = 2; v <= 3; v++)
    {
      g_autofree char *name = g_strdup_printf ("f4-v%u.npy", v);
      g_autofree char *p = fixture (name);
      g_autofree guint8 *bytes = NULL;
      gsize len;
      g_assert_true (g_file_get_contents (p, (char **)&bytes, &len, NULL));
      g_assert_cmpint (bytes[6], ==, v);
      read_ok (p, &a);
      g_assert_cmpuint (a.rank, ==, 1);
      g_assert_cmpuint (a.shape[0], ==, 5);
      for (guint i = 0; i < 5; i++)
        g_assert_cmpfloat (a.data[i], ==, (float)(0.25 * i - 3));
      kilt_npy_clear (&a);
    }
  {
    g_autofree char *p = fixture ("f4-fortran.npy");
    npy_expect_data_error (p, "Fortran", "expected C order");
  }
  {
    g_autofree char *p = fixture ("c8.npy");
    npy_expect_data_error (p, "dtype '<c8' (complex numbers)", "expected float32");
  }
  {
    g_autofree char *p = fixture ("object.npy");
    npy_expect_data_error (p, "dtype '|O' (Python objects)", "expected float32");
  }
}

/* What NumPy could write or read that its own writer does not: keys in another order, other
 * quotes and spacing, Python 2's 'L', old 16-byte alignment, every dtype in both orders. */
static void
test_variants (void)
{
  g_autofree char *tmp = kilt_test_tmpdir ();
  KiltNpy a;

  {
    float v[3] = { 1.5f, -2, 3 };
    g_autoptr (GByteArray) b = npy_bytes_aligned (
        1, "{\"shape\":(3L,),\t\"fortran_order\" : False ,'descr':'<f4'}", v, sizeof v, 16);
    g_autofree char *p = put (tmp, "order.npy", b->data, b->len);
    read_ok (p, &a);
    g_assert_cmpuint (a.rank, ==, 1);
    g_assert_cmpuint (a.shape[0], ==, 3);
    g_assert_cmpmem (a.data, sizeof v, v, sizeof v);
    kilt_npy_clear (&a);
  }
  {
    float v[6] = { 1, 2, 3, 4, 5, 6 };
    g_autofree char *p
        = put_npy (tmp, "trailing.npy",
                   "{'descr': 'f4', 'fortran_order': False, 'shape': (2, 3,), }", v, sizeof v);
    read_ok (p, &a);
    g_assert_cmpuint (a.rank, ==, 2);
    g_assert_cmpuint (a.shape[1], ==, 3);
    g_assert_cmpfloat (a.data[5], ==, 6);
    kilt_npy_clear (&a);
  }
  /* Bytes written out by hand in the file's order, and the floats they must give. */
  {
    static const struct
    {
      const char *descr;
      guint n;
      guint8 bytes[16];
      float want[4];
    } cases[] = {
      { "|i1", 3, { 0x80, 0x7f, 0xff }, { -128, 127, -1 } },
      { "<u2", 2, { 0x34, 0x12, 0xff, 0xff }, { 0x1234, 65535 } },
      { ">u4", 2, { 0x80, 0, 0, 0, 0, 0, 0, 7 }, { 2147483648.0f, 7 } },
      { "<i4", 2, { 0xfe, 0xff, 0xff, 0xff, 9, 0, 0, 0 }, { -2, 9 } },
      { ">u8",
        2,
        { 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3 },
        { 9223372036854775808.0f, 3 } },
      { ">i8", 1, { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfb }, { -5 } },
      { ">f4", 2, { 0x3f, 0xc0, 0, 0, 0xc0, 0x20, 0, 0 }, { 1.5f, -2.5f } },
      { "=f8", 1, { 0 }, { 0.125f } },
      { "|f4", 1, { 0 }, { -0.75f } },
      { "<?", 4, { 0, 1, 2, 255 }, { 0, 1, 1, 1 } },
    };
    for (guint c = 0; c < G_N_ELEMENTS (cases); c++)
      {
        g_autofree char *dict
            = g_strdup_printf ("{'descr': '%s', 'fortran_order': False, 'shape': (%u,), }",
                               cases[c].descr, cases[c].n);
        g_autofree char *name = g_strdup_printf ("variant-%u.npy", c);
        g_autofree char *p = NULL;
        guint8 bytes[16];
        gsize size = cases[c].descr[1] == '?' ? 1 : (gsize)(cases[c].descr[2] - '0');

        memcpy (bytes, cases[c].bytes, sizeof bytes);
        /* The native-order cases, as this machine stores them. */
        if (cases[c].descr[0] == '=')
          {
            double d = cases[c].want[0];
            memcpy (bytes, &d, 8);
          }
        else if (cases[c].descr[0] == '|' && size == 4)
          {
            float f = cases[c].want[0];
            memcpy (bytes, &f, 4);
          }
        p = put_npy (tmp, name, dict, bytes, size * cases[c].n);
        read_ok (p, &a);
        g_assert_cmpstr (a.dtype, ==, cases[c].descr);
        g_assert_cmpuint (a.n, ==, cases[c].n);
        for (guint i = 0; i < cases[c].n; i++)
          if (a.data[i] != cases[c].want[i])
            g_error ("%s value %u: %g, expected %g", cases[c].descr, i, a.data[i],
                     cases[c].want[i]);
        kilt_npy_clear (&a);
      }
  }
  /* An empty array, with no data, even under a max_values of 0. */
  {
    g_autofree char *p
        = put_npy (tmp, "empty-array.npy",
                   "{'descr': '<f8', 'fortran_order': False, 'shape': (0, 4), }", NULL, 0);
    g_autoptr (GError) error = NULL;
    g_assert_true (kilt_npy_read (p, 0, &a, &error));
    g_assert_no_error (error);
    g_assert_cmpuint (a.n, ==, 0);
    g_assert_cmpuint (a.rank, ==, 2);
    kilt_npy_clear (&a);
  }
}

static const char good_dict[] = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }";

/* The preamble and the dict: every way they can be wrong. */
static void
test_hostile_header (void)
{
  g_autofree char *tmp = kilt_test_tmpdir ();
  float v[6] = { 0 };

  {
    g_autofree char *p = put (tmp, "empty.npy", "", 0);
    npy_expect_data_error (p, "0 bytes is too short", "expected at least 10 bytes");
  }
  {
    g_autoptr (GByteArray) b = npy_bytes (1, good_dict, v, sizeof v);
    g_autofree char *p = NULL;
    b->data[5] = 'X';
    p = put (tmp, "magic.npy", b->data, b->len);
    npy_expect_data_error (p, "not a .npy file", "93 4e 55 4d 50 58", "expected the magic");
  }
  {
    g_autofree char *p = put (tmp, "zip.npy", "PK\x03\x04\x14\x00\x00\x00\x00\x00\x00\x00", 12);
    npy_expect_data_error (p, "zip archive", "expected one .npy");
  }
  {
    g_autofree char *p = put (tmp, "gz.npy", "\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03", 10);
    npy_expect_data_error (p, "gzip", "expected an uncompressed .npy");
  }
  for (guint bad = 0; bad < 3; bad++)
    {
      g_autoptr (GByteArray) b = npy_bytes (1, good_dict, v, sizeof v);
      g_autofree char *p = NULL;
      static const guint8 versions[3][2] = { { 4, 0 }, { 0, 0 }, { 1, 1 } };
      g_autofree char *want = g_strdup_printf ("version %u.%u", versions[bad][0], versions[bad][1]);
      b->data[6] = versions[bad][0];
      b->data[7] = versions[bad][1];
      p = put (tmp, "version.npy", b->data, b->len);
      npy_expect_data_error (p, want, "expected 1.0, 2.0 or 3.0");
    }
  /* Truncated inside the preamble: after the version of 1.0, inside 2.0's 4-byte length. */
  {
    g_autofree char *p = put (tmp, "preamble1.npy", "\x93NUMPY\x01\x00\x76", 9);
    npy_expect_data_error (p, "9 bytes is too short", "expected at least 10");
  }
  {
    g_autofree char *p = put (tmp, "preamble2.npy", "\x93NUMPY\x02\x00\x76\x00\x00", 11);
    npy_expect_data_error (p, "ends at byte offset 11", "expected 12 bytes");
  }
  /* A header length past the end of the file, in both widths. */
  {
    g_autoptr (GByteArray) b = npy_bytes (1, good_dict, v, sizeof v);
    g_autofree char *p = NULL;
    b->data[8] = 0xff;
    b->data[9] = 0xff;
    p = put (tmp, "past-end1.npy", b->data, b->len);
    npy_expect_data_error (p, "header is 65535 bytes", "past the end of the file (152 bytes)",
                           "expected the header to end within the file");
  }
  {
    g_autoptr (GByteArray) b = npy_bytes (2, good_dict, v, sizeof v);
    g_autofree char *p = NULL;
    memset (b->data + 8, 0xff, 4);
    p = put (tmp, "past-end2.npy", b->data, b->len);
    npy_expect_data_error (p, "header is 4294967295 bytes", "past the end", "expected");
  }
  /* A header that is there but far too long. */
  {
    g_autoptr (GString) dict = g_string_new (good_dict);
    g_autoptr (GByteArray) b = NULL;
    g_autofree char *p = NULL;
    for (guint i = 0; i < 70000; i++)
      g_string_append_c (dict, ' ');
    b = npy_bytes (2, dict->str, v, sizeof v);
    p = put (tmp, "long-header.npy", b->data, b->len);
    npy_expect_data_error (p, "header is 70068 bytes", "expected at most 65536");
  }
  /* Dicts that do not parse, each with what was expected. */
  {
    static const struct
    {
      const char *dict;
      const char *want[2];
    } cases[] = {
      { "{'descr': '<f4', 'fortran_order': False, }", { "no 'shape'", "expected the keys" } },
      { "{'shape': (2, 3), 'fortran_order': False}", { "no 'descr'", "expected the keys" } },
      { "{}", { "no 'descr'", "'fortran_order' and 'shape'" } },
      { "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), 'extra': 1}",
        { "key 'extra'", "expected only 'descr'" } },
      { "{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (2, 3)}",
        { "'descr' twice", "expected each key once" } },
      { "'descr': '<f4', 'fortran_order': False, 'shape': (2, 3)", { "found '''", "'{'" } },
      { "{'descr': '<f4", { "found a newline", "expected the closing '" } },
      { "{'descr' '<f4', 'fortran_order': False, 'shape': (2, 3)}", { "found '''", "':'" } },
      { "{'descr': '<f4' 'fortran_order': False, 'shape': (2, 3)}", { "expected ',' or '}'" } },
      { "{'descr': '<f4', 'fortran_order': 0, 'shape': (2, 3)}", { "found '0'", "True or False" } },
      { "{'descr': '<f4', 'fortran_order': False, 'shape': (6)}", { "found ')'", "(5,)" } },
      { "{'descr': '<f4', 'fortran_order': False, 'shape': [2, 3]}", { "found '['", "tuple" } },
      { "{'descr': '<f4', 'fortran_order': False, 'shape': (2, -3)}",
        { "found '-'", "non-negative integer" } },
      { "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3}", { "found '}'", "',' or ')'" } },
      { "{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999,)}",
        { "expected a dimension below 2^64" } },
      { "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 1, 1, 1, 1, 1, 1, 1, 6)}",
        { "more than 8 dimensions", "expected at most 8" } },
      { "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3)} x",
        { "found 'x'", "only spaces and a newline" } },
      { "{'descr': '<f\\x34', 'fortran_order': False, 'shape': (2, 3)}", { "backslash" } },
      { "{'descr': 4, 'fortran_order': False, 'shape': (2, 3)}", { "found '4'", "in quotes" } },
      { "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3)}\x01",
        { "byte 0x01", "expected an ASCII Python dict" } },
      { "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), '\xc3\xa9': 1}",
        { "byte 0xc3", "ASCII" } },
    };
    for (guint c = 0; c < G_N_ELEMENTS (cases); c++)
      {
        g_autofree char *name = g_strdup_printf ("dict-%u.npy", c);
        g_autofree char *p = put_npy (tmp, name, cases[c].dict, v, sizeof v);
        if (cases[c].want[1])
          npy_expect_data_error (p, cases[c].want[0], cases[c].want[1]);
        else
          npy_expect_data_error (p, cases[c].want[0]);
      }
  }
  /* A NUL inside the header, and UTF-8 from version 3.0 (valid, then not). */
  {
    g_autoptr (GByteArray) b = npy_bytes (1, good_dict, v, sizeof v);
    g_autofree char *p = NULL;
    b->data[20] = 0;
    p = put (tmp, "nul.npy", b->data, b->len);
    npy_expect_data_error (p, "byte 0x00 at byte offset 20", "expected an ASCII Python dict");
  }
  {
    g_autoptr (GByteArray) b = npy_bytes (
        3, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), '\xc3\xa9': 1}", v, sizeof v);
    g_autofree char *p = put (tmp, "utf8.npy", b->data, b->len);
    npy_expect_data_error (p, "key '\\303\\251'", "expected only");
  }
  {
    g_autoptr (GByteArray) b = npy_bytes (
        3, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), '\xc3\xc3': 1}", v, sizeof v);
    g_autofree char *p = put (tmp, "not-utf8.npy", b->data, b->len);
    npy_expect_data_error (p, "not valid UTF-8 at byte offset 71", "expected UTF-8");
  }
  /* Dtypes Kilt does not read. */
  {
    static const struct
    {
      const char *descr, *want;
    } cases[] = {
      { "'<x4'", "dtype '<x4' (an unknown type)" },
      { "'<f2'", "dtype '<f2' (float16)" },
      { "'<U5'", "dtype '<U5' (Unicode strings)" },
      { "'<M8[ns]'", "dtype '<M8[ns]' (dates)" },
      { "'<i3'", "dtype '<i3' (integers of that size)" },
      { "'<f'", "dtype '<f' (" },
      { "''", "dtype '' (" },
      { "'<f4 '", "dtype '<f4 ' (" },
      { "[('a', '<f4'), ('b', '<i4')]", "dtype at byte offset 20 is structured" },
    };
    for (guint c = 0; c < G_N_ELEMENTS (cases); c++)
      {
        g_autofree char *dict = g_strdup_printf (
            "{'descr': %s, 'fortran_order': False, 'shape': (2, 3), }", cases[c].descr);
        g_autofree char *name = g_strdup_printf ("dtype-%u.npy", c);
        g_autofree char *p = put_npy (tmp, name, dict, v, sizeof v);
        npy_expect_data_error (p, cases[c].want, "expected float32 or float64");
      }
  }
  {
    g_autofree char *p
        = put_npy (tmp, "fortran.npy", "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3), }",
                   v, sizeof v);
    npy_expect_data_error (p, "Fortran (column-major) order", "expected C order");
  }
}

/* Shapes that overflow or that the file does not hold, and too many values. */
static void
test_hostile_size (void)
{
  g_autofree char *tmp = kilt_test_tmpdir ();
  float v[7] = { 1, 2, 3, 4, 5, 6, 7 };

  {
    static const char *shapes[] = {
      "(4294967296, 4294967296, 16)",    /* 2^68 values */
      "(4294967296, 4294967296)",        /* 2^64 values */
      "(4611686018427387904,)",          /* 2^62 values of 4 bytes: 2^64 bytes */
      "(0, 4294967296, 4294967296, 16)", /* empty, but no real array has it */
    };
    for (guint c = 0; c < G_N_ELEMENTS (shapes); c++)
      {
        g_autofree char *dict = g_strdup_printf (
            "{'descr': '<f4', 'fortran_order': False, 'shape': %s, }", shapes[c]);
        g_autofree char *name = g_strdup_printf ("overflow-%u.npy", c);
        g_autofree char *p = put_npy (tmp, name, dict, v, sizeof (float) * 6);
        npy_expect_data_error (p, shapes[c], "overflows", "expected a shape");
      }
  }
  /* One byte short, one long, and a huge shape the file does not hold (nothing allocated). */
  {
    g_autoptr (GByteArray) b = npy_bytes (1, good_dict, v, 7 * sizeof (float));
    g_autofree char *p = put (tmp, "short.npy", b->data, 151);
    npy_expect_data_error (p, "short.npy: the file is 151 bytes", "(24 bytes of data) make 152",
                           "expected exactly", "cut short");
    g_free (p);
    p = put (tmp, "long.npy", b->data, 153);
    npy_expect_data_error (p, "long.npy: the file is 153 bytes", "make 152", "expected exactly",
                           "longer than its array");
  }
  {
    g_autofree char *p = put_npy (
        tmp, "huge.npy", "{'descr': '|u1', 'fortran_order': False, 'shape': (1000000000000,), }", v,
        sizeof v);
    npy_expect_data_error (p, "the file is 156 bytes", "make 1000000000128", "expected exactly");
  }
  /* max_values is exceeded by one (the same file reads under a cap of 6). */
  {
    g_autofree char *p = put_npy (tmp, "max.npy", good_dict, v, 6 * sizeof (float));
    g_autoptr (GError) error = NULL;
    KiltNpy a;
    npy_expect_fail (p, 5, KILT_ENGINE_ERROR_DATA, "shape (2, 3) holds 6 values",
                     "expected at most 5");
    g_assert_true (kilt_npy_read (p, 6, &a, &error));
    kilt_npy_clear (&a);
  }
  /* Missing, a folder, and larger than Kilt reads (a sparse file: no disk used). */
  {
    g_autofree char *p = g_build_filename (tmp, "absent.npy", NULL);
    npy_expect_fail (p, G_MAXUINT64, KILT_ENGINE_ERROR_IO, "cannot be read",
                     "expected a readable .npy file");
    npy_expect_fail (tmp, G_MAXUINT64, KILT_ENGINE_ERROR_IO, "cannot be read",
                     "expected a readable");
  }
  {
    g_autofree char *p = g_build_filename (tmp, "sparse.npy", NULL);
    int fd = g_open (p, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    g_assert_cmpint (fd, >=, 0);
    if (ftruncate (fd, (off_t)KILT_DATA_MAX_FILE_BYTES + 1) == 0)
      npy_expect_data_error (p, "the file is", "expected at most 8589934592 (8.0 GiB)");
    else
      g_test_message ("no sparse files here: the size cap is not checked");
    close (fd);
    g_unlink (p);
  }
}

/* Non-finite and out-of-range floats, named by index. */
static void
test_hostile_values (void)
{
  g_autofree char *tmp = kilt_test_tmpdir ();
  float f[6] = { 1, 2, 3, NAN, 5, 6 };
  double d[6] = { 1, 2, 3, 4, -INFINITY, 6 };

  {
    g_autofree char *p = put_npy (tmp, "nan.npy", good_dict, f, sizeof f);
    npy_expect_data_error (p, "value NaN at index 3 ([1, 0]) (byte offset 140)",
                           "expected finite values");
  }
  {
    g_autofree char *p = put_npy (
        tmp, "inf.npy", "{'descr': '<f8', 'fortran_order': False, 'shape': (6,), }", d, sizeof d);
    npy_expect_data_error (p, "value -inf at index 4 (byte offset 160)", "expected finite");
  }
  {
    g_autofree char *p = NULL;
    d[4] = 1e300;
    p = put_npy (tmp, "range.npy", "{'descr': '<f8', 'fortran_order': False, 'shape': (6,), }", d,
                 sizeof d);
    npy_expect_data_error (p, "value 1e+300 at index 4", "outside float32's range",
                           "expected values of magnitude at most");
  }
  /* A big-endian NaN (7f c0 00 00) in the first place. */
  {
    guint8 be[8] = { 0x7f, 0xc0, 0, 0, 0x3f, 0x80, 0, 0 };
    g_autofree char *p
        = put_npy (tmp, "nan-be.npy", "{'descr': '>f4', 'fortran_order': False, 'shape': (2,), }",
                   be, sizeof be);
    npy_expect_data_error (p, "value NaN at index 0 (byte offset 128)", "expected finite");
  }
}

/* A good file cut at every length and with every header byte changed to odd values: never
 * a crash (the sanitizer pass runs this), and every error names the file. */
static void
test_damaged_everywhere (void)
{
  g_autofree char *tmp = kilt_test_tmpdir ();
  g_autofree char *src = fixture ("f4-c.npy");
  g_autofree char *p = g_build_filename (tmp, "damaged.npy", NULL);
  g_autofree guint8 *good = NULL;
  static const guint8 values[] = { 0, 0x20, 0x7f, 0xff, '(', ')', ',', '\'', '9', '}', 'L', '\n' };
  gsize len;
  guint ok = 0;

  g_assert_true (g_file_get_contents (src, (char **)&good, &len, NULL));
  for (gsize cut = 0; cut < len; cut++)
    {
      data_test_write (p, good, cut, FALSE);
      npy_expect_data_error (p, "expected");
    }
  for (gsize i = 0; i < 128 && i < len; i++)
    for (guint v = 0; v < G_N_ELEMENTS (values); v++)
      {
        g_autofree guint8 *bad = g_memdup2 (good, len);
        g_autoptr (GError) error = NULL;
        KiltNpy a;
        bad[i] = values[v];
        data_test_write (p, bad, len, FALSE);
        if (kilt_npy_read (p, G_MAXUINT64, &a, &error))
          {
            g_assert_nonnull (a.data);
            ok++;
            kilt_npy_clear (&a);
          }
        else if (g_test_verbose ())
          g_printerr ("  byte %" G_GSIZE_FORMAT " = 0x%02x: %s\n", i, values[v], error->message);
        if (error != NULL
            && (!g_str_has_prefix (error->message, p) || !strstr (error->message, "expected")))
          g_error ("byte %" G_GSIZE_FORMAT " = 0x%02x: %s", i, values[v], error->message);
      }
  /* Padding spaces and a few harmless changes still read. */
  g_assert_cmpuint (ok, >, 0);
}

static void
test_write_errors (void)
{
  g_autofree char *tmp = kilt_test_tmpdir ();
  float v[2] = { 1, 2 };
  guint64 shape[1] = { 2 };

  {
    g_autofree char *p = g_build_filename (tmp, "no-such-folder", "a.npy", NULL);
    g_autoptr (GError) error = NULL;
    g_assert_false (kilt_npy_write_f32 (p, v, shape, 1, &error));
    data_test_assert_error (error, KILT_ENGINE_ERROR_IO, p, "a.npy.part", "expected a file path",
                            NULL);
  }
  /* A folder in the way: the rename fails and the .part is removed. */
  {
    g_autofree char *p = g_build_filename (tmp, "folder.npy", NULL);
    g_autofree char *inside = g_build_filename (p, "x", NULL);
    g_autofree char *part = g_strconcat (p, ".part", NULL);
    g_autoptr (GError) error = NULL;
    g_assert_cmpint (g_mkdir (p, 0755), ==, 0);
    data_test_write (inside, "x", 1, FALSE);
    g_assert_false (kilt_npy_write_f32 (p, v, shape, 1, &error));
    data_test_assert_error (error, KILT_ENGINE_ERROR_IO, p, "renaming", "expected", NULL);
    g_assert_false (g_file_test (part, G_FILE_TEST_EXISTS));
  }
  /* A shape whose product overflows is refused before anything is written. */
  {
    g_autofree char *p = g_build_filename (tmp, "overflow.npy", NULL);
    guint64 big[3] = { G_GUINT64_CONSTANT (1) << 32, G_GUINT64_CONSTANT (1) << 32, 16 };
    g_autoptr (GError) error = NULL;
    g_assert_false (kilt_npy_write_f32 (p, v, big, 3, &error));
    data_test_assert_error (error, KILT_ENGINE_ERROR_INVALID, p, "overflows", NULL);
    g_assert_false (g_file_test (p, G_FILE_TEST_EXISTS));
  }
}

/* The one allocation a file's size decides fails cleanly, naming the file. */
static void
test_alloc_failure (void)
{
  g_autofree char *p = fixture ("f4-c.npy");
  g_autoptr (GError) error = NULL;
  KiltNpy a;

  kilt_data_fail_alloc (1);
  g_assert_false (kilt_npy_read (p, G_MAXUINT64, &a, &error));
  g_assert_cmpuint (kilt_data_fail_alloc (0), ==, 1);
  data_test_assert_error (error, KILT_ENGINE_ERROR_OUT_OF_MEMORY, p, "not enough memory", NULL);
  g_assert_null (a.data);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/data/npy/round-trip", test_round_trip);
  g_test_add_func ("/data/npy/numpy-files", test_numpy_files);
  g_test_add_func ("/data/npy/variants", test_variants);
  g_test_add_func ("/data/npy/hostile-header", test_hostile_header);
  g_test_add_func ("/data/npy/hostile-size", test_hostile_size);
  g_test_add_func ("/data/npy/hostile-values", test_hostile_values);
  g_test_add_func ("/data/npy/damaged-everywhere", test_damaged_everywhere);
  g_test_add_func ("/data/npy/write-errors", test_write_errors);
  g_test_add_func ("/data/npy/alloc-failure", test_alloc_failure);
  return g_test_run ();
}
