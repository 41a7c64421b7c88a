/* Number formats the pages share, so a figure reads the same on every page. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "kilt-format.h"

#include <string.h>

char *
kilt_format_thousands (guint64 n)
{
  g_autofree char *digits = g_strdup_printf ("%" G_GUINT64_FORMAT, n);
  GString *s = g_string_new (NULL);
  gsize len = strlen (digits);

  for (gsize i = 0; i < len; i++)
    {
      if (i > 0 && (len - i) % 3 == 0)
        g_string_append_c (s, ',');
      g_string_append_c (s, digits[i]);
    }
  return g_string_free (s, FALSE);
}
