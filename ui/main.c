/* Entry point of `kilt`, the window. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "config.h"

#include "kilt-application.h"

#include <stdio.h>

int
main (int argc, char **argv)
{
  g_autoptr (KiltApplication) app = NULL;
  GSettingsSchemaSource *source;
  g_autoptr (GSettingsSchema) schema = NULL;

  /* Run from the build tree (./run.sh) with the schema compiled there; installed copies find
   * theirs in the system folders as usual. */
  if (g_getenv ("GSETTINGS_SCHEMA_DIR") == NULL
      && g_file_test (KILT_BUILD_SCHEMA_DIR "/gschemas.compiled", G_FILE_TEST_EXISTS))
    g_setenv ("GSETTINGS_SCHEMA_DIR", KILT_BUILD_SCHEMA_DIR, TRUE);
  source = g_settings_schema_source_get_default ();
  schema = source ? g_settings_schema_source_lookup (source, KILT_APP_ID, TRUE) : NULL;
  if (schema == NULL)
    {
      /* GSettings would abort; say what is wrong instead. */
      fprintf (stderr,
               "kilt: the settings schema %s is not installed; run "
               "glib-compile-schemas on the folder holding %s.gschema.xml\n",
               KILT_APP_ID, KILT_APP_ID);
      return 1;
    }
  app = kilt_application_new (G_APPLICATION_DEFAULT_FLAGS);
  return g_application_run (G_APPLICATION (app), argc, argv);
}
