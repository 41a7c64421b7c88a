/* Writes seeds for fuzz-folder into the folder given: real PNG, JPEG and BMP files made by
 * gdk-pixbuf, in fuzz-folder's input format (flags, two size bytes, "KIMG"-separated images
 * whose first byte picks class, split and extension). */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#include <gdk-pixbuf/gdk-pixbuf.h>
#include <stdio.h>
#include <string.h>

static void
add_image (GByteArray *out, guint8 pick, const char *type, int w, int h, guint seed)
{
  g_autoptr (GdkPixbuf) pb = gdk_pixbuf_new (GDK_COLORSPACE_RGB, FALSE, 8, w, h);
  g_autofree char *buf = NULL;
  gsize len = 0;
  guint8 *px = gdk_pixbuf_get_pixels (pb);
  int stride = gdk_pixbuf_get_rowstride (pb);

  for (int y = 0; y < h; y++)
    for (int x = 0; x < w * 3; x++)
      px[y * stride + x] = (guint8)(seed * 37 + y * 11 + x * 5);
  if (!gdk_pixbuf_save_to_buffer (pb, &buf, &len, type, NULL, NULL))
    {
      fprintf (stderr, "make-folder-seeds: gdk-pixbuf cannot write %s\n", type);
      return;
    }
  if (out->len > 3)
    g_byte_array_append (out, (const guint8 *)"KIMG", 4);
  g_byte_array_append (out, &pick, 1);
  g_byte_array_append (out, (const guint8 *)buf, (guint)len);
}

static void
save (const char *dir, const char *name, GByteArray *b)
{
  g_autofree char *p = g_build_filename (dir, name, NULL);
  if (!g_file_set_contents (p, (const char *)b->data, b->len, NULL))
    fprintf (stderr, "make-folder-seeds: cannot write %s\n", p);
  g_byte_array_unref (b);
}

static GByteArray *
head (guint8 flags, guint8 w, guint8 h)
{
  GByteArray *b = g_byte_array_new ();
  guint8 x[3] = { flags, w, h };
  g_byte_array_append (b, x, 3);
  return b;
}

int
main (int argc, char **argv)
{
  GByteArray *b;

  if (argc != 2)
    return 2;
  /* Pick byte: class (bits 0-1), split (bits 2-3: train, test, val), extension (bits 4-5:
   * .png .jpg .bmp .JPEG). Two classes of PNG at the first image's size. */
  b = head (0, 0, 0);
  add_image (b, 0x00, "png", 4, 3, 1);
  add_image (b, 0x01, "png", 4, 3, 2);
  add_image (b, 0x01, "png", 4, 3, 3);
  save (argv[1], "png", b);
  /* train/ and test/ of JPEG and BMP, at a chosen 8 x 8. */
  b = head (8 | 4, 7, 7);
  add_image (b, 0x10, "jpeg", 6, 5, 4);
  add_image (b, 0x21, "bmp", 6, 5, 5);
  add_image (b, 0x14, "jpeg", 6, 5, 6);
  add_image (b, 0x25, "bmp", 6, 5, 7);
  save (argv[1], "splits", b);
  /* Grey, mixed sizes, the odd class names, through the cache and back. */
  b = head (128 | 1, 0, 0);
  add_image (b, 0x02, "png", 5, 5, 8);
  add_image (b, 0x03, "png", 9, 4, 9);
  add_image (b, 0x32, "jpeg", 3, 7, 10);
  save (argv[1], "cache-grey", b);
  /* Cropped to 4 x 6, one unreadable image tolerated. */
  b = head (2 | 4 | 64, 3, 5);
  add_image (b, 0x00, "png", 10, 3, 11);
  add_image (b, 0x01, "bmp", 3, 10, 12);
  g_byte_array_append (b, (const guint8 *)"KIMG\x11\xff\xd8\xff\xe0 not a jpeg", 19);
  save (argv[1], "crop-bad", b);
  return 0;
}
