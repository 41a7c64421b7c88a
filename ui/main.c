/* Entry point of `kilt`, the window. */
/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "kilt-application.h"

int
main (int argc, char **argv)
{
  g_autoptr (KiltApplication) app = kilt_application_new (G_APPLICATION_DEFAULT_FLAGS);

  return g_application_run (G_APPLICATION (app), argc, argv);
}
